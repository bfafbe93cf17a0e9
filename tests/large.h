/*
 * large.h - what the large-block tests (test_malloc_large.c,
 * test_malloc_realloc.c) share: the process's faults and resident memory,
 * a fixed large-cache limit, and decay turned off so that their counts
 * do not depend on timing.
 */
#ifndef UMPA_TEST_LARGE_H
#define UMPA_TEST_LARGE_H

#include "check.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* Minor and major faults of the process so far. */
static inline long faults(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt + r.ru_majflt;
}

static inline long resident_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * 4;
}

/* Of every `step`-th byte of [p, p+n), how many are not zero. */
static inline size_t nonzero_bytes(const char *p, size_t n, size_t step) {
  size_t k = 0;
  for (size_t i = 0; i < n; i += step) k += p[i] != 0;
  return k;
}

/* UMPA_LARGE_CACHE as a fixed 256 MiB (the cache must not shrink with the
 * memory in use), and back. */
struct large_cache_opt {
  size_t bytes;
  bool fixed;
};

static inline struct large_cache_opt fix_large_cache(void) {
  struct large_cache_opt was = {umpa_opt.large_cache,
                                umpa_opt.large_cache_fixed};
  umpa_opt.large_cache = 256 * MiB;
  umpa_opt.large_cache_fixed = true;
  return was;
}

static inline void restore_large_cache(struct large_cache_opt was) {
  umpa_opt.large_cache = was.bytes;
  umpa_opt.large_cache_fixed = was.fixed;
}

/* The thread holds no large block and has asked for none lately, as at
 * its start: a freed block is held when it could serve one of the
 * thread's latest large mallocs (held.c; a big one, one of down to half
 * its size), which earlier tests made. */
static inline void forget_held(void) {
  struct heap *h = umpa_tl_heap;
  held_flush(h);
  memset(h->held_wanted, 0, sizeof h->held_wanted);
}

/* First in main: decay off, so that timing cannot matter.  These tests
 * count faults, and in a slow run (ASan on a loaded CI machine) cached
 * memory aged out between their steps: 1633 faults where 123 are
 * measured.  The decay tests set their own ages.  The heap is touched
 * first: the options are parsed on first use and would overwrite it. */
static inline void decay_off(void) {
  umpa_free(umpa_malloc(1));
  umpa_opt.decay_ms = 0;
}

#endif
