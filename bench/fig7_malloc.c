/*
 * fig7_malloc.c - the paper's Figure 7 protocol through malloc/free.
 *
 * The same protocol as fig7_pages, but through whatever malloc the process
 * has (LD_PRELOAD picks it): sizes uniform in [4 KiB, 8 MiB] from a
 * fixed-seed xorshift; each block is allocated, gets one byte written into
 * each 4 KiB page and goes into a ring; once the ring is full the oldest
 * block is freed before the next allocation.  One pass of the ring warms up
 * first.  Allocation, the writes and the free are timed separately and
 * summed per power-of-two size bin; "notrav" is alloc + free (the paper's
 * "notraverse"), "touch" the writes, in ns per operation.  After the timed
 * part the same writes are done again to every block still in the ring,
 * oldest first ("write", per block of the bin, not in the timed total):
 * the cost of the writes alone, to memory that is there but, written up to
 * a ring ago, no longer in the caches or the TLB.  "above" = notrav +
 * touch - write is then what the allocator adds: its own work and the
 * faults it leaves to the program's first writes.  "faults" counts those
 * page faults per operation of the bin (in its frees, mallocs and
 * writes; read between the timed intervals), and the run prints its floor:
 * the pages by which the ring outgrew its warm-up peak, which every
 * allocator must fault in.  On a VM a fault's cost varies several times
 * over with how long ago the host last backed the page; the counts do not.
 *
 * 16384 timed operations (32 turns of the ring) by default: sizes are
 * uniform, so the 4-8 KiB bin gets one operation in 2000; with 4096 it got
 * 2 and the 8-16 KiB bin 3, figures that one slow event decided.
 *
 * Before anything else a child process populates and drops 1.5 times the
 * ring's expected size with mmap (no malloc; --cold skips it).  On a VM
 * whose host takes back the guest's free memory (a balloon's free page
 * reporting, seconds after it is freed), a page the kernel hands out costs
 * about 1 us to fault in if the host still backs it and 5-12 us if not.
 * Which of the two an allocator met depended on what ran before it and
 * how long ago: the 4-8 MiB bin, where the ring's growth (the floor) is
 * faulted in, came out bimodal, 40 or 90 us per operation for the same
 * allocator in consecutive runs, and decided the comparison.  After the
 * warm-up every allocator's new pages are the cheap kind.
 *
 * Usage: fig7_malloc [--quick] [--cold] [timed_ops [ring_slots]]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>

#define MIN_SIZE (4 * KiB)
#define MAX_SIZE (8 * MiB)
#define NBINS 11 /* [4 KiB, 8 KiB) ... [4 MiB, 8 MiB], 8 MiB itself last */

struct bin {
  uint64_t allocs, frees;
  uint64_t alloc_ns, touch_ns, free_ns;
  uint64_t writes, write_ns; /* the writes again, to blocks in the ring */
  uint64_t faults;            /* in its frees, mallocs and writes */
};

struct slot {
  char *p;
  size_t size;
};

static int bin_of(size_t size) {
  int b = 63 - __builtin_clzll(size) - 12;
  return b >= NBINS ? NBINS - 1 : b;
}

/* The pages the ring's blocks span, and the most they spanned. */
struct live {
  uint64_t pages, peak;
};

static uint64_t pages_of(size_t size) { return (size + PAGE - 1) / PAGE; }

/* Run `ops` operations on the ring; accumulate into bins when given.  The
 * faults are read outside the timed intervals (a system call each). */
static void run(struct slot *ring, int slots, long ops, long *next,
                uint64_t *rng, struct bin *bins, struct live *live) {
  for (long n = 0; n < ops; n++, (*next)++) {
    struct slot *s = &ring[*next % slots];
    uint64_t f0 = bins ? minor_faults() : 0;
    if (s->p) {
      uint64_t t0 = now_ns();
      free(s->p);
      uint64_t t1 = now_ns();
      live->pages -= pages_of(s->size);
      if (bins) {
        struct bin *b = &bins[bin_of(s->size)];
        uint64_t f1 = minor_faults();
        b->frees++;
        b->free_ns += t1 - t0;
        b->faults += f1 - f0;
        f0 = f1;
      }
    }
    size_t size = rand_between(rng, MIN_SIZE, MAX_SIZE);
    uint64_t t0 = now_ns();
    char *p = xmalloc(size);
    uint64_t t1 = now_ns();
    touch_pages(p, size);
    uint64_t t2 = now_ns();
    s->p = p;
    s->size = size;
    live->pages += pages_of(size);
    if (live->pages > live->peak) live->peak = live->pages;
    if (bins) {
      struct bin *b = &bins[bin_of(size)];
      b->allocs++;
      b->alloc_ns += t1 - t0;
      b->touch_ns += t2 - t1;
      b->faults += minor_faults() - f0;
    }
  }
}

/* Have the kernel hand out `bytes` and take them back, in a child (whose
 * peak RSS is not ours): see the header.  At most half the free memory.
 * Returns the seconds it took, or -1 when it could not be done, and the
 * bytes it populated in *bytes_io. */
static double warm_host(size_t *bytes_io) {
  size_t bytes = *bytes_io;
  struct sysinfo si;
  if (sysinfo(&si) == 0) {
    size_t free_bytes = (size_t)si.freeram * si.mem_unit;
    if (bytes > free_bytes / 2) bytes = free_bytes / 2;
  }
  *bytes_io = bytes;
  uint64_t t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    _exit(p == MAP_FAILED);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    return -1;
  return (double)(now_ns() - t0) / 1e9;
}

static double per_op(uint64_t ns, uint64_t n) {
  return n ? (double)ns / (double)n : 0;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  bool cold = has_flag(argc, argv, "--cold");
  long ops = num_arg(argc, argv, 0, quick ? 256 : 16384);
  int slots = (int)num_arg(argc, argv, 1, quick ? 64 : 512);
  if (ops < 1 || slots < 1) {
    fprintf(stderr,
            "usage: fig7_malloc [--quick] [--cold] [timed_ops [ring_slots]]\n");
    return 2;
  }
  /* The ring holds `slots` blocks of (MIN_SIZE + MAX_SIZE) / 2 on average. */
  size_t ring_bytes = (size_t)slots * ((MIN_SIZE + MAX_SIZE) / 2);
  size_t warm_bytes = ring_bytes + ring_bytes / 2;
  double warm_secs = cold ? 0 : warm_host(&warm_bytes);

  struct rss_marks m;
  rss_mark_start(&m);
  struct bin bins[NBINS];
  memset(bins, 0, sizeof bins);
  struct slot *ring = calloc((size_t)slots, sizeof *ring);
  if (!ring) {
    perror("calloc");
    return 1;
  }
  uint64_t rng = 0x9e3779b97f4a7c15u;
  long next = 0;
  struct live live = {0, 0};
  run(ring, slots, slots, &next, &rng, NULL, &live);
  uint64_t warm_peak = live.peak;
  uint64_t f0 = minor_faults(), t0 = now_ns();
  run(ring, slots, ops, &next, &rng, bins, &live);
  uint64_t secs_ns = now_ns() - t0, faults = minor_faults() - f0;
  /* Pages the ring spans beyond its warm-up peak: memory no allocator had
   * at the start of the timed part, so faulted in by any (or moved from a
   * cache that the warm-up could not have filled). */
  uint64_t floor_pages = live.peak - warm_peak;
  rss_mark_peak(&m);
  for (long n = 0; n < slots; n++) {
    struct slot *s = &ring[(next + n) % slots]; /* oldest first */
    uint64_t w0 = now_ns();
    touch_pages(s->p, s->size);
    bins[bin_of(s->size)].write_ns += now_ns() - w0;
    bins[bin_of(s->size)].writes++;
  }
  for (int i = 0; i < slots; i++) free(ring[i].p);
  free(ring);
  rss_mark_end(&m);

  printf("fig7_malloc: %ld timed operations, ring of %d blocks, sizes "
         "uniform in [4 KiB, 8 MiB], through malloc/free\n", ops, slots);
  printf("ns per operation, averaged per size bin; notrav = alloc + free, "
         "touch = 1 byte per page,\nwrite = the same writes again to the "
         "blocks left in the ring (not in the total),\nabove = notrav + "
         "touch - write: what the allocator adds\n\n");
  static const char *const cols[] = {"bin",   "ops",   "notrav", "touch",
                                     "total", "write", "above",  "faults"};
  struct table t;
  table_begin(&t, cols, sizeof cols / sizeof cols[0], 15);
  uint64_t sum_notrav = 0, sum_touch = 0;
  double notrav[NBINS], touch[NBINS], write[NBINS], above[NBINS];
  double flt[NBINS];
  for (int i = 0; i < NBINS; i++) {
    struct bin *b = &bins[i];
    /* Allocs and frees of a bin differ in number: average each apart. */
    notrav[i] = per_op(b->alloc_ns, b->allocs) + per_op(b->free_ns, b->frees);
    touch[i] = per_op(b->touch_ns, b->allocs);
    write[i] = per_op(b->write_ns, b->writes);
    above[i] = notrav[i] + touch[i] - write[i];
    flt[i] = per_op(b->faults, b->allocs);
    sum_notrav += b->alloc_ns + b->free_ns;
    sum_touch += b->touch_ns;
    char lo[16], hi[16], name[40];
    snprintf(name, sizeof name, "%s-%s",
             fmt_size(lo, sizeof lo, MIN_SIZE << i),
             fmt_size(hi, sizeof hi, MIN_SIZE << (i + 1)));
    table_str(&t, name);
    table_num(&t, (double)b->allocs, 0);
    table_num(&t, notrav[i], 0);
    table_num(&t, touch[i], 0);
    table_num(&t, notrav[i] + touch[i], 0);
    table_num(&t, write[i], 0);
    table_num(&t, above[i], 0);
    table_num(&t, flt[i], 1);
  }
  printf("\ntimed part %.3f s (alloc+free %.3f s, touch %.3f s), %llu minor "
         "faults (%.1f per operation)\n",
         (double)secs_ns / 1e9, (double)sum_notrav / 1e9,
         (double)sum_touch / 1e9, (unsigned long long)faults,
         (double)faults / (double)ops);
  printf("the ring grew %llu pages past its warm-up peak: faults that no "
         "allocator avoids\n",
         (unsigned long long)floor_pages);
  if (cold)
    printf("no host warm-up (--cold)\n");
  else if (warm_secs < 0)
    printf("host warm-up failed; new pages may cost several times more\n");
  else
    printf("host warm-up: %zu MiB populated and dropped first, in %.2f s\n",
           warm_bytes >> 20, warm_secs);
  print_rss_text(&m);
  printf("result: bench=fig7_malloc secs=%.6f notrav_secs=%.6f "
         "touch_secs=%.6f faults=%llu floor=%llu",
         (double)secs_ns / 1e9, (double)sum_notrav / 1e9,
         (double)sum_touch / 1e9, (unsigned long long)faults,
         (unsigned long long)floor_pages);
  for (int i = 0; i < NBINS; i++) /* a bin nothing fell into: no figure */
    if (bins[i].allocs)
      printf(" notrav%d=%.0f touch%d=%.0f write%d=%.0f above%d=%.0f "
             "faults%d=%.2f",
             i, notrav[i], i, touch[i], i, write[i], i, above[i], i, flt[i]);
  print_rss_fields(&m);
  return 0;
}
