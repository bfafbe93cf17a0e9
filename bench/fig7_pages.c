/*
 * fig7_pages.c - the paper's Figure 7 protocol on the page layer.
 *
 * Sizes are drawn uniformly from [4 KiB, 8 MiB] by a fixed-seed xorshift,
 * the same sequence for both allocators.  Each block is allocated, gets one
 * byte written into each page and goes into a ring; once the ring is full
 * the oldest block is freed before the next allocation.  Allocation,
 * traversal (the writes) and free are timed separately and summed per
 * power-of-two size bin.  One full pass of the ring warms up first.
 *
 * umpa runs with its cache limit raised above the ring's working set and
 * prefilled, as the paper preloaded the cache; mmap/munmap is the baseline.
 *
 * Usage: fig7_pages [--quick] [timed_ops [ring_slots [prefill_percent]]]
 * prefill_percent is the prefill as a share of the ring's mean working set.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sys/mman.h>
#include <umpa.h>

#define MIN_SIZE (4 * KiB)
#define MAX_SIZE (8 * MiB)
#define NBINS 11 /* [4 KiB, 8 KiB) ... [4 MiB, 8 MiB], 8 MiB itself last */

enum { UMPA, MMAP };

struct bin {
  uint64_t allocs, frees;
  uint64_t alloc_ns, touch_ns, free_ns;
};

struct slot {
  char *p;
  size_t size;
};

static uint64_t rng;

static uint64_t xorshift64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static size_t next_size(void) {
  return MIN_SIZE + (size_t)(xorshift64() % (MAX_SIZE - MIN_SIZE + 1));
}

static int bin_of(size_t size) {
  int b = 63 - __builtin_clzll(size) - 12;
  return b >= NBINS ? NBINS - 1 : b;
}

static void *alloc(int who, size_t size) {
  void *p;
  if (who == UMPA) {
    p = userpage_malloc(size, 0);
  } else {
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) p = NULL;
  }
  if (!p) {
    perror(who == UMPA ? "userpage_malloc" : "mmap");
    exit(1);
  }
  return p;
}

static void release(int who, void *p, size_t size) {
  if (who == UMPA) userpage_free(p, size);
  else munmap(p, size);
}

/* Run `ops` operations on the ring; accumulate into bins when given. */
static void run(int who, struct slot *ring, int slots, long ops,
                long *next, struct bin *bins) {
  for (long n = 0; n < ops; n++, (*next)++) {
    struct slot *s = &ring[*next % slots];
    if (s->p) {
      uint64_t t0 = now_ns();
      release(who, s->p, s->size);
      uint64_t t1 = now_ns();
      if (bins) {
        bins[bin_of(s->size)].frees++;
        bins[bin_of(s->size)].free_ns += t1 - t0;
      }
    }
    size_t size = next_size();
    uint64_t t0 = now_ns();
    char *p = alloc(who, size);
    uint64_t t1 = now_ns();
    touch_pages(p, size);
    uint64_t t2 = now_ns();
    s->p = p;
    s->size = size;
    if (bins) {
      struct bin *b = &bins[bin_of(size)];
      b->allocs++;
      b->alloc_ns += t1 - t0;
      b->touch_ns += t2 - t1;
    }
  }
}

struct outcome {
  struct bin bins[NBINS];
  uint64_t faults, seconds_ns;
  size_t rss_end;
};

static struct outcome bench(int who, int slots, long ops) {
  struct outcome o;
  memset(&o, 0, sizeof o);
  struct slot *ring = calloc((size_t)slots, sizeof *ring);
  long next = 0;
  rng = 0x9e3779b97f4a7c15u;
  run(who, ring, slots, slots, &next, NULL);
  uint64_t f0 = minor_faults(), t0 = now_ns();
  run(who, ring, slots, ops, &next, o.bins);
  o.seconds_ns = now_ns() - t0;
  o.faults = minor_faults() - f0;
  o.rss_end = rss_bytes();
  for (int i = 0; i < slots; i++) release(who, ring[i].p, ring[i].size);
  free(ring);
  return o;
}

static double per_op(uint64_t ns, uint64_t n) {
  return n ? (double)ns / (double)n : 0;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  long ops = num_arg(argc, argv, 0, quick ? 512 : 4096);
  int slots = (int)num_arg(argc, argv, 1, quick ? 64 : 512);
  long prefill_pct = num_arg(argc, argv, 2, 150);
  if (ops < 1 || slots < 1 || prefill_pct < 0) {
    fprintf(stderr, "usage: fig7_pages [--quick] [timed_ops [ring_slots "
                    "[prefill_percent]]]\n");
    return 2;
  }

  /* The ring holds slots * 4 MiB on average.  A block of N pages sits in a
   * 2^k-page run whose tail only fits smaller requests, so the cache needs
   * slack beyond the mean: at 125% a 512-slot ring still missed on 111 of
   * 4608 operations (which then cost most of umpa's time), at 150% on none. */
  size_t working = (size_t)slots * (MAX_SIZE / 2);
  size_t prefill = working / 100 * (size_t)prefill_pct;
  umpa_page_cache_limit(2 * working + 256 * MiB);
  umpa_page_prefill(prefill);

  struct umpa_page_stats s0, s1;
  umpa_page_stats(&s0);
  struct outcome u = bench(UMPA, slots, ops);
  umpa_page_stats(&s1);
  /* Hand the cache back so the mmap run starts from the same memory. */
  umpa_page_trim(3);
  struct outcome m = bench(MMAP, slots, ops);

  printf("fig7_pages: %ld timed operations, ring of %d blocks, sizes uniform "
         "in [4 KiB, 8 MiB]; umpa cache prefilled with %zu MiB\n", ops, slots,
         prefill / MiB);
  printf("ns per operation, averaged per size bin; notrav = alloc + free, "
         "touch = 1 byte per page, total = alloc + touch + free\n\n");
  static const char *const cols[] = {
      "bin",          "ops",          "umpa notrav", "umpa touch",
      "umpa total",   "mmap notrav",  "mmap touch",  "mmap total",
      "notrav mmap/umpa", "total mmap/umpa"};
  struct table t;
  table_begin(&t, cols, sizeof cols / sizeof cols[0], 15);
  for (int i = 0; i < NBINS; i++) {
    struct bin *bu = &u.bins[i], *bm = &m.bins[i];
    /* Allocs and frees of a bin differ in number: average each apart. */
    double un = per_op(bu->alloc_ns, bu->allocs) +
                per_op(bu->free_ns, bu->frees);
    double ut = per_op(bu->touch_ns, bu->allocs);
    double mn = per_op(bm->alloc_ns, bm->allocs) +
                per_op(bm->free_ns, bm->frees);
    double mt = per_op(bm->touch_ns, bm->allocs);
    char lo[16], hi[16], name[40];
    snprintf(name, sizeof name, "%s-%s",
             fmt_size(lo, sizeof lo, MIN_SIZE << i),
             fmt_size(hi, sizeof hi, MIN_SIZE << (i + 1)));
    table_str(&t, name);
    table_num(&t, (double)bu->allocs, 0);
    table_num(&t, un, 0);
    table_num(&t, ut, 0);
    table_num(&t, un + ut, 0);
    table_num(&t, mn, 0);
    table_num(&t, mt, 0);
    table_num(&t, mn + mt, 0);
    table_num(&t, un > 0 ? mn / un : 0, 2);
    table_num(&t, un + ut > 0 ? (mn + mt) / (un + ut) : 0, 2);
  }
  printf("\ntimed part: umpa %.2f s, %llu minor faults; mmap %.2f s, %llu "
         "minor faults\n",
         (double)u.seconds_ns / 1e9, (unsigned long long)u.faults,
         (double)m.seconds_ns / 1e9, (unsigned long long)m.faults);
  printf("umpa (warm-up + timed): %llu cache misses, %llu pages populated, "
         "%llu pages released; RSS at end of timed part: umpa %zu MiB, "
         "mmap %zu MiB\n",
         (unsigned long long)(s1.cache_misses - s0.cache_misses),
         (unsigned long long)(s1.pages_populated - s0.pages_populated),
         (unsigned long long)(s1.pages_released - s0.pages_released),
         u.rss_end / MiB, m.rss_end / MiB);
  printf("summary: alloc+touch+free mmap/umpa %.1fx overall (%.2f s vs "
         "%.2f s), faults in timed part umpa %llu vs mmap %llu\n",
         (double)m.seconds_ns / (double)u.seconds_ns,
         (double)u.seconds_ns / 1e9, (double)m.seconds_ns / 1e9,
         (unsigned long long)u.faults, (unsigned long long)m.faults);
  return 0;
}
