/*
 * bench.h - helpers shared by the benchmarks: the page-layer ones
 * (pagefault, fig7_pages, realloc_pages) and the malloc ones (threadtest,
 * larson, cache_scratch, cache_thrash, smallobj, fig7_malloc), which use
 * nothing but the standard allocation calls so that LD_PRELOAD picks the
 * allocator they measure.
 *
 * Each benchmark is one translation unit, so everything here is static
 * inline: unused helpers cost nothing and trigger no warnings.
 */
#ifndef UMPA_BENCH_H
#define UMPA_BENCH_H

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define PAGE ((size_t)4096)

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Process-wide minor faults: the kernel counts faults taken inside
 * MADV_POPULATE_WRITE / MAP_POPULATE here too, so populating is not free. */
static inline uint64_t minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)ru.ru_minflt;
}

/* Resident bytes; *anon (if not NULL) gets the anonymous part alone, which
 * leaves out file pages (the code of libc and of the benchmark) that the
 * run pages in whatever the allocator does. */
static inline size_t rss_bytes_anon(size_t *anon) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0, shared = 0;
  if (f) {
    if (fscanf(f, "%lu %lu %lu", &size, &resident, &shared) != 3)
      resident = shared = 0;
    fclose(f);
  }
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (anon) *anon = (size_t)(resident - shared) * page;
  return (size_t)resident * page;
}

static inline size_t rss_bytes(void) { return rss_bytes_anon(NULL); }

/* Median of n values; sorts v in place (n is a handful of repeats). */
static inline double median(double *v, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      double t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One store per page through a volatile pointer: the loop the benchmarks
 * time, which the compiler may neither drop nor turn into memset. */
static inline void touch_pages(void *p, size_t bytes) {
  volatile char *c = p;
  for (size_t off = 0; off < bytes; off += PAGE) c[off] = (char)off;
}

static inline bool has_flag(int argc, char **argv, const char *flag) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], flag) == 0) return true;
  return false;
}

/* The n-th argument that is not a --flag, as a number, or dflt. */
static inline long num_arg(int argc, char **argv, int n, long dflt) {
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1] == '-') continue;
    if (n-- == 0) return strtol(argv[i], NULL, 0);
  }
  return dflt;
}

static inline const char *fmt_size(char *buf, size_t len, size_t bytes) {
  if (bytes >= GiB && bytes % GiB == 0)
    snprintf(buf, len, "%zu GiB", bytes / GiB);
  else if (bytes >= MiB && bytes % MiB == 0)
    snprintf(buf, len, "%zu MiB", bytes / MiB);
  else
    snprintf(buf, len, "%zu KiB", bytes / KiB);
  return buf;
}

/* A tiny table: right-aligned columns as wide as their headers (at least
 * 8; the first at least first_width), a rule under the header, cells
 * filled left to right. */
struct table {
  int ncols, col;
  int width[24];
};

static inline void table_begin(struct table *t, const char *const *names,
                               int ncols, int first_width) {
  t->ncols = ncols;
  t->col = 0;
  int total = 0;
  for (int i = 0; i < ncols; i++) {
    int w = (int)strlen(names[i]);
    int min = i == 0 ? first_width : 8;
    t->width[i] = w < min ? min : w;
    total += t->width[i] + 2;
    printf("%*s%s", t->width[i], names[i], i + 1 < ncols ? "  " : "\n");
  }
  for (int i = 0; i < total - 2; i++) putchar('-');
  putchar('\n');
}

static inline void table_str(struct table *t, const char *s) {
  int i = t->col;
  printf("%*s%s", t->width[i], s, i + 1 < t->ncols ? "  " : "\n");
  t->col = (i + 1) % t->ncols;
}

static inline void table_num(struct table *t, double v, int decimals) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.*f", decimals, v);
  table_str(t, buf);
}

static inline void table_size(struct table *t, size_t bytes) {
  char buf[32];
  table_str(t, fmt_size(buf, sizeof buf, bytes));
}

/* ---- malloc benchmarks ------------------------------------------------- */

/* xorshift64: a fixed seed gives every allocator the same request stream.
 * The state must not be 0. */
static inline uint64_t xorshift64_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

/* Uniform in [lo, hi] (the modulo bias is irrelevant at these ranges). */
static inline size_t rand_between(uint64_t *state, size_t lo, size_t hi) {
  return lo + (size_t)(xorshift64_next(state) % (hi - lo + 1));
}

/* MiB of resident memory above `start` (0 if below). */
static inline double mib_above(size_t rss, size_t start) {
  return rss > start ? (double)(rss - start) / (double)MiB : 0;
}

/* Peak resident set of the process so far (getrusage), in KiB. */
static inline long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* Resident memory at three moments: at start (once the allocator has run,
 * so its own start-up is not counted against it), when the live data is
 * largest, and after everything was freed and malloc_trim(0) was called.
 * end/start shows whether the allocator gives memory back. */
struct rss_marks {
  size_t start, peak, end;
  size_t anon_start, anon_end; /* the anonymous part of start and end */
};

static inline void rss_mark_start(struct rss_marks *m) {
  free(malloc(1));
  m->start = rss_bytes_anon(&m->anon_start);
  m->peak = 0;
  m->end = 0;
}

/* Where a benchmark knows the moment its live data peaks. */
static inline void rss_mark_peak(struct rss_marks *m) {
  size_t r = rss_bytes();
  if (r > m->peak) m->peak = r;
}

/* After the benchmark freed everything it allocated.  malloc_trim is
 * glibc's: a preloaded allocator that does not export it leaves it
 * trimming glibc's (unused) heap, so its own retention shows. */
static inline void rss_mark_end(struct rss_marks *m) {
  malloc_trim(0);
  m->end = rss_bytes_anon(&m->anon_end);
}

/* The tail of every malloc benchmark's "result:" line (the last line it
 * prints, key=value pairs that bench/malloc reads).  rss_peak_kb is the
 * sampled peak where the benchmark took one, else the getrusage peak. */
static inline void print_rss_fields(const struct rss_marks *m) {
  long peak = maxrss_kb();
  printf(" maxrss_kb=%ld rss_start_kb=%zu rss_peak_kb=%zu rss_end_kb=%zu "
         "anon_start_kb=%zu anon_end_kb=%zu\n",
         peak, m->start / KiB, m->peak ? m->peak / KiB : (size_t)peak,
         m->end / KiB, m->anon_start / KiB, m->anon_end / KiB);
}

/* Text version of the same, for people. */
static inline void print_rss_text(const struct rss_marks *m) {
  printf("RSS: start %.1f MiB, peak %.1f MiB (getrusage %.1f MiB), after "
         "free + malloc_trim(0) %.1f MiB (end/start %.2f; anonymous memory "
         "kept %+ld KiB)\n",
         (double)m->start / (double)MiB,
         (double)(m->peak ? m->peak : (size_t)maxrss_kb() * KiB) /
             (double)MiB,
         (double)maxrss_kb() / 1024.0, (double)m->end / (double)MiB,
         m->start ? (double)m->end / (double)m->start : 0,
         ((long)m->anon_end - (long)m->anon_start) / (long)KiB);
}

/* fork(), or the benchmark ends with the reason. */
static inline pid_t xfork(void) {
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  return pid;
}

static inline void *xmalloc(size_t size) {
  void *p = malloc(size);
  if (!p) {
    fprintf(stderr, "malloc(%zu) failed\n", size);
    exit(1);
  }
  return p;
}

static inline void start_thread(pthread_t *t, void *(*fn)(void *),
                                void *arg) {
  int e = pthread_create(t, NULL, fn, arg);
  if (e) {
    fprintf(stderr, "pthread_create: %s\n", strerror(e));
    exit(1);
  }
}

/* How many of n addresses share a 64-byte cache line with another one:
 * objects of different threads in one line are false sharing. */
static inline int count_shared_lines(void *const *addr, int n) {
  int shared = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      if (i != j && (uintptr_t)addr[i] / 64 == (uintptr_t)addr[j] / 64) {
        shared++;
        break;
      }
  return shared;
}

#endif /* UMPA_BENCH_H */
