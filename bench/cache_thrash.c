/*
 * cache_thrash.c - Hoard's cache-thrash: active false sharing.
 *
 * Each of T threads `iterations / T` times allocates a small object,
 * writes every byte of it `repetitions` times and frees it.  Nothing is
 * shared by the program; an allocator that carves the objects of
 * different threads out of one cache line (one heap for all threads) makes
 * the writes bounce the line between cores.  The work is fixed, so with T
 * cores the time should fall to 1/T.
 *
 * Reports wall time and how many threads' first objects shared a cache
 * line with another thread's.
 *
 * Usage: cache_thrash [--quick] [threads [iterations [size [repetitions]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct worker {
  pthread_t tid;
  pthread_barrier_t *go;
  void *first;
  long iterations, repetitions;
  size_t size;
};

static void *work(void *arg) {
  struct worker *w = arg;
  pthread_barrier_wait(w->go);
  for (long i = 0; i < w->iterations; i++) {
    volatile char *obj = xmalloc(w->size);
    if (i == 0) w->first = (void *)obj;
    for (long r = 0; r < w->repetitions; r++)
      for (size_t k = 0; k < w->size; k++) {
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
    fprintf(stderr, "usage: cache_thrash [--quick] [threads [iterations "
                    "[size [repetitions]]]]\n");
    return 2;
  }

  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
  struct worker *w = xmalloc((size_t)threads * sizeof *w);
  void **first = xmalloc((size_t)threads * sizeof *first);
  for (int t = 0; t < threads; t++) {
    w[t].go = &go;
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
  free(first);
  free(w);
  rss_mark_end(&m);

  printf("cache_thrash: %d threads, %ld objects of %ld bytes in all, each "
         "written %ld times\n",
         threads, iterations, size, repetitions);
  printf("%.3f s; %d of %d threads got a first object in a cache line "
         "shared with another thread's\n",
         secs, shared, threads);
  print_rss_text(&m);
  printf("result: bench=cache_thrash threads=%d secs=%.6f shared=%d",
         threads, secs, shared);
  print_rss_fields(&m);
  return 0;
}
