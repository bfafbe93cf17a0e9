/*
 * cache_sharing.c - Hoard's false-sharing benchmarks, built twice:
 * cache_scratch (PASSIVE=1) and cache_thrash (PASSIVE=0).
 *
 * Each of T threads `iterations / T` times allocates a small object,
 * writes every byte of it `repetitions` times and frees it.  The work is
 * fixed, so with T cores the time should fall to 1/T; objects of different
 * threads in one cache line make the writes bounce the line between cores.
 *   cache_thrash (active): nothing is shared by the program; an allocator
 *     that carves different threads' objects out of one cache line (one
 *     heap for all threads) causes the sharing itself.
 *   cache_scratch (passive): the main thread first allocates one object
 *     per thread, one after the other (likely neighbours in one line), and
 *     each thread starts by freeing the one it was handed.  An allocator
 *     that lets a thread reuse that block (a per-thread cache filled by
 *     remote frees) gives threads objects in one cache line.
 *
 * Reports wall time and how many threads' first objects shared a cache
 * line with another thread's (scratch: also how many got back the object
 * they were handed).
 *
 * Usage: cache_scratch|cache_thrash [--quick] [threads [iterations [size
 *        [repetitions]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

#if PASSIVE
#define NAME "cache_scratch"
#else
#define NAME "cache_thrash"
#endif

struct worker {
  pthread_t tid;
  pthread_barrier_t *go;
  char *given; /* scratch: the object to free first */
  void *first;
  long iterations, repetitions;
  size_t size;
};

static void *work(void *arg) {
  struct worker *w = arg;
  pthread_barrier_wait(w->go);
  if (PASSIVE) free(w->given);
  /* In locals: the volatile stores below may alias *w, so the loop
   * reloaded w->size after each one, and when the object and the worker
   * lay at the same offset in their pages (4K aliasing) each reload waited
   * for the store: 0.24 s instead of 0.11 under any allocator, whichever
   * layout ASLR dealt (Hoard's original keeps these in locals too). */
  const long iterations = w->iterations, repetitions = w->repetitions;
  const size_t size = w->size;
  for (long i = 0; i < iterations; i++) {
    volatile char *obj = xmalloc(size);
    if (i == 0) w->first = (void *)obj;
    for (long r = 0; r < repetitions; r++)
      for (size_t k = 0; k < size; k++) {
        obj[k] = (char)k;
        char c = obj[k];
        (void)c;
      }
    free((void *)obj);
  }
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long iterations = num_arg(argc, argv, 1, 1000);
  long size = num_arg(argc, argv, 2, 8);
  long repetitions = num_arg(argc, argv, 3, quick ? 2000 : 40000);
  if (threads < 1 || threads > 1024 || iterations < threads || size < 1 ||
      repetitions < 1) {
    fprintf(stderr, "usage: " NAME " [--quick] [threads [iterations "
                    "[size [repetitions]]]]\n");
    return 2;
  }

  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
  struct worker *w = xmalloc((size_t)threads * sizeof *w);
  void **given = xmalloc((size_t)threads * sizeof *given);
  void **first = xmalloc((size_t)threads * sizeof *first);
  for (int t = 0; t < threads; t++)
    given[t] = PASSIVE ? xmalloc((size_t)size) : NULL;
  for (int t = 0; t < threads; t++) {
    w[t].go = &go;
    w[t].given = given[t];
    w[t].first = NULL;
    w[t].iterations = iterations / threads;
    w[t].repetitions = repetitions;
    w[t].size = (size_t)size;
    start_thread(&w[t].tid, work, &w[t]);
  }
  pthread_barrier_wait(&go);
  uint64_t t0 = now_ns();
  for (int t = 0; t < threads; t++) pthread_join(w[t].tid, NULL);
  double secs = (double)(now_ns() - t0) / 1e9;
  pthread_barrier_destroy(&go);
  for (int t = 0; t < threads; t++) first[t] = w[t].first;
  int shared = count_shared_lines(first, threads);
  int reused = 0;
  for (int t = 0; t < threads; t++) reused += PASSIVE && first[t] == given[t];
  free(first);
  free(given);
  free(w);
  rss_mark_end(&m);

  printf(NAME ": %d threads, %ld objects of %ld bytes in all, each "
              "written %ld times\n",
         threads, iterations, size, repetitions);
  printf("%.3f s; %d of %d threads got a first object in a cache line "
         "shared with another thread's",
         secs, shared, threads);
  if (PASSIVE) printf(", %d got back the object they were handed", reused);
  printf("\n");
  print_rss_text(&m);
  printf("result: bench=" NAME " threads=%d secs=%.6f shared=%d", threads,
         secs, shared);
  if (PASSIVE) printf(" reused=%d", reused);
  print_rss_fields(&m);
  return 0;
}
