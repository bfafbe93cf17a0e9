/*
 * bench.h - helpers shared by the page-layer benchmarks.
 *
 * Each benchmark is one translation unit, so everything here is static
 * inline: unused helpers cost nothing and trigger no warnings.
 */
#ifndef UMPA_BENCH_H
#define UMPA_BENCH_H

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

static inline size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

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

#endif /* UMPA_BENCH_H */
