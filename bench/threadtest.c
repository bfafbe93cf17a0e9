/*
 * threadtest.c - Hoard's threadtest through malloc/free.
 *
 * T threads share a fixed amount of work: `rounds` times, each thread
 * allocates its share (objects / T) of small blocks of one size, writes
 * into each, then frees them all in allocation order.  No block crosses
 * threads, so an allocator with per-thread heaps should scale with the
 * cores; one with a shared lock should not.  Reports million malloc+free
 * pairs per second over all threads and the wall time.
 *
 * Usage: threadtest [--quick] [threads [rounds [objects [size]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct worker {
  pthread_t tid;
  pthread_barrier_t *go;
  long rounds, objects;
  size_t size;
};

static void *work(void *arg) {
  struct worker *w = arg;
  char **a = xmalloc((size_t)w->objects * sizeof *a);
  pthread_barrier_wait(w->go);
  for (long r = 0; r < w->rounds; r++) {
    for (long i = 0; i < w->objects; i++) {
      a[i] = xmalloc(w->size);
      a[i][0] = (char)i;
    }
    for (long i = 0; i < w->objects; i++) free(a[i]);
  }
  free(a);
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long rounds = num_arg(argc, argv, 1, quick ? 20 : 1000);
  long objects = num_arg(argc, argv, 2, 30000);
  long size = num_arg(argc, argv, 3, 64);
  if (threads < 1 || threads > 1024 || rounds < 1 || objects < threads ||
      size < 1) {
    fprintf(stderr, "usage: threadtest [--quick] [threads [rounds [objects "
                    "[size]]]]\n");
    return 2;
  }

  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
  struct worker *w = xmalloc((size_t)threads * sizeof *w);
  for (int t = 0; t < threads; t++) {
    w[t].go = &go;
    w[t].rounds = rounds;
    w[t].objects = objects / threads;
    w[t].size = (size_t)size;
    start_thread(&w[t].tid, work, &w[t]);
  }
  pthread_barrier_wait(&go);
  uint64_t t0 = now_ns();
  for (int t = 0; t < threads; t++) pthread_join(w[t].tid, NULL);
  double secs = (double)(now_ns() - t0) / 1e9;
  pthread_barrier_destroy(&go);
  free(w);
  rss_mark_end(&m);

  double pairs = (double)rounds * (double)(objects / threads) * threads;
  printf("threadtest: %d threads, %ld rounds of %ld objects of %ld bytes "
         "(%ld per thread)\n",
         threads, rounds, objects, size, objects / threads);
  printf("%.1f M malloc+free pairs in %.3f s: %.2f M pairs/s\n", pairs / 1e6,
         secs, pairs / secs / 1e6);
  print_rss_text(&m);
  printf("result: bench=threadtest threads=%d mops=%.3f secs=%.6f", threads,
         pairs / secs / 1e6, secs);
  print_rss_fields(&m);
  return 0;
}
