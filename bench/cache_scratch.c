/*
 * cache_scratch.c - Hoard's cache-scratch: passive false sharing.
 *
 * The main thread allocates one small object per thread, one after the
 * other (so they are likely neighbours in one cache line), and hands one
 * to each thread.  Each thread frees its object, then `iterations / T`
 * times allocates an object of the same size, writes every byte of it
 * `repetitions` times and frees it.  An allocator that lets a thread reuse
 * the block it was handed (a per-thread cache filled by remote frees)
 * gives threads objects in one cache line, and the writes then bounce the
 * line between cores: time does not fall, or rises, with threads.  The
 * work is fixed, so with T cores the time should fall to 1/T.
 *
 * Reports wall time and how many threads' first objects shared a cache
 * line with another thread's.
 *
 * Usage: cache_scratch [--quick] [threads [iterations [size [repetitions]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct worker {
  pthread_t tid;
  pthread_barrier_t *go;
  char *given;
  void *first;
  long iterations, repetitions;
  size_t size;
};

static void *work(void *arg) {
  struct worker *w = arg;
  pthread_barrier_wait(w->go);
  free(w->given);
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
    fprintf(stderr, "usage: cache_scratch [--quick] [threads [iterations "
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
  for (int t = 0; t < threads; t++) given[t] = xmalloc((size_t)size);
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
  for (int t = 0; t < threads; t++) reused += first[t] == given[t];
  free(first);
  free(given);
  free(w);
  rss_mark_end(&m);

  printf("cache_scratch: %d threads, %ld objects of %ld bytes in all, each "
         "written %ld times\n",
         threads, iterations, size, repetitions);
  printf("%.3f s; %d of %d threads got a first object in a cache line "
         "shared with another thread's, %d got back the object they were "
         "handed\n",
         secs, shared, threads, reused);
  print_rss_text(&m);
  printf("result: bench=cache_scratch threads=%d secs=%.6f shared=%d "
         "reused=%d",
         threads, secs, shared, reused);
  print_rss_fields(&m);
  return 0;
}
