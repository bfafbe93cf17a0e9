/*
 * pagefault.c - the paper's Table 1 on this machine: what it costs per page
 * to obtain a block, write one byte into each page and give it back.
 *
 *   lazy      mmap + touch + munmap: one page fault per page
 *   populate  mmap + MADV_POPULATE_WRITE (or MAP_POPULATE) + touch + munmap
 *   umpa      userpage_malloc + touch + userpage_free, served by the cache
 *   touch     the same loop over a buffer that is already resident: the
 *             floor that no allocator can beat
 *
 * Usage: pagefault [--quick]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <sys/mman.h>
#include <umpa.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

enum { LAZY, POPULATE, UMPA, TOUCH, NMETHODS };

static bool use_madvise = true;
static char *resident; /* the TOUCH buffer of the size being measured */

static void *map(size_t bytes, int extra) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return p;
}

static void *map_populated(size_t bytes) {
  if (!use_madvise) return map(bytes, MAP_POPULATE);
  void *p = map(bytes, 0);
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    perror("madvise(MADV_POPULATE_WRITE)");
    exit(1);
  }
  return p;
}

static void run_once(int m, size_t bytes) {
  void *p;
  switch (m) {
  case LAZY:
    p = map(bytes, 0);
    touch_pages(p, bytes);
    munmap(p, bytes);
    break;
  case POPULATE:
    p = map_populated(bytes);
    touch_pages(p, bytes);
    munmap(p, bytes);
    break;
  case UMPA:
    p = userpage_malloc(bytes, 0);
    if (!p) {
      perror("userpage_malloc");
      exit(1);
    }
    touch_pages(p, bytes);
    userpage_free(p, bytes);
    break;
  default:
    touch_pages(resident, bytes);
    break;
  }
}

struct result {
  double ns, faults; /* per page, medians over the repeats */
};

static struct result measure(int m, size_t bytes, int reps, uint64_t min_ns) {
  /* One warm-up run (first-use costs would skew the calibration), then
   * grow the iteration count until one repeat takes min_ns. */
  run_once(m, bytes);
  long iters = 1;
  for (;;) {
    uint64_t t0 = now_ns();
    for (long i = 0; i < iters; i++) run_once(m, bytes);
    uint64_t t = now_ns() - t0;
    if (t >= min_ns) break;
    double scale = t ? 1.3 * (double)min_ns / (double)t : 100;
    iters = (long)((double)iters * (scale < 2 ? 2 : scale > 100 ? 100 : scale));
  }
  double ns[16], flt[16];
  double pages = (double)iters * (double)(bytes / PAGE);
  for (int r = 0; r < reps; r++) {
    uint64_t f0 = minor_faults(), t0 = now_ns();
    for (long i = 0; i < iters; i++) run_once(m, bytes);
    uint64_t t = now_ns() - t0, f = minor_faults() - f0;
    ns[r] = (double)t / pages;
    flt[r] = (double)f / pages;
  }
  return (struct result){median(ns, reps), median(flt, reps)};
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  static const size_t sizes[] = {16 * KiB, 1 * MiB, 16 * MiB, 512 * MiB};
  enum { NSIZES = sizeof sizes / sizeof sizes[0] };
  const size_t largest = sizes[NSIZES - 1];
  uint64_t min_ns = quick ? 2000000 : 20000000;

  void *probe = map(PAGE, 0);
  if (madvise(probe, PAGE, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
    use_madvise = false;
  munmap(probe, PAGE);

  /* Let the cache hold the largest block with room to spare, and fill it
   * up front so that every umpa allocation below is a cache hit. */
  umpa_page_cache_limit(largest + 64 * MiB);
  umpa_page_prefill(largest + 16 * MiB);

  printf("pagefault: obtain a block, write 1 byte per 4 KiB page, give it "
         "back (ns and minor faults per page, median)\n");
  printf("populate uses %s; umpa cache prefilled with %zu MiB\n\n",
         use_madvise ? "MADV_POPULATE_WRITE" : "MAP_POPULATE",
         (largest + 16 * MiB) / MiB);
  static const char *const cols[] = {
      "size",         "lazy ns/pg",   "populate ns/pg", "umpa ns/pg",
      "touch ns/pg",  "lazy flt/pg",  "pop flt/pg",     "umpa flt/pg",
      "touch flt/pg", "lazy/umpa",    "umpa/touch"};
  struct table t;
  table_begin(&t, cols, sizeof cols / sizeof cols[0], 8);

  struct result res[NSIZES][NMETHODS];
  struct umpa_page_stats s0[NSIZES], s1[NSIZES];
  for (int i = 0; i < NSIZES; i++) {
    size_t bytes = sizes[i];
    int reps = bytes >= 256 * MiB ? (quick ? 1 : 3) : (quick ? 3 : 7);
    for (int m = 0; m < NMETHODS; m++) {
      /* Only while it is used, to keep the peak memory down. */
      if (m == TOUCH) resident = map_populated(bytes);
      if (m == UMPA) umpa_page_stats(&s0[i]);
      res[i][m] = measure(m, bytes, reps, min_ns);
      if (m == UMPA) umpa_page_stats(&s1[i]);
    }
    munmap(resident, bytes);
    struct result *r = res[i];
    table_size(&t, bytes);
    for (int m = 0; m < NMETHODS; m++) table_num(&t, r[m].ns, 1);
    for (int m = 0; m < NMETHODS; m++) table_num(&t, r[m].faults, 3);
    table_num(&t, r[LAZY].ns / r[UMPA].ns, 1);
    table_num(&t, r[UMPA].ns / r[TOUCH].ns, 1);
    fflush(stdout);
  }
  printf("\numpa cache per size (allocations, cache misses, pages populated, "
         "pages released by the cache):\n");
  for (int i = 0; i < NSIZES; i++) {
    char buf[32];
    printf("  %8s  %9llu allocs  %6llu misses  %8llu populated  %8llu "
           "released\n", fmt_size(buf, sizeof buf, sizes[i]),
           (unsigned long long)(s1[i].allocs - s0[i].allocs),
           (unsigned long long)(s1[i].cache_misses - s0[i].cache_misses),
           (unsigned long long)(s1[i].pages_populated - s0[i].pages_populated),
           (unsigned long long)(s1[i].pages_released - s0[i].pages_released));
  }
  printf("summary: lazy/umpa per page");
  for (int i = 0; i < NSIZES; i++) {
    char buf[32];
    printf(" %s %.1fx%s", fmt_size(buf, sizeof buf, sizes[i]),
           res[i][LAZY].ns / res[i][UMPA].ns, i + 1 < NSIZES ? "," : ";");
  }
  double worst = 0;
  for (int i = 0; i < NSIZES; i++)
    if (res[i][UMPA].faults > worst) worst = res[i][UMPA].faults;
  printf(" umpa faults/page <= %.3f\n", worst);
  return 0;
}
