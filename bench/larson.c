/*
 * larson.c - Larson & Krishnan's server benchmark through malloc/free.
 *
 * Each of T lanes owns an array of `chunks` blocks of random sizes in
 * [min, max].  A lane's thread repeatedly frees a random slot and puts a
 * new block of random size there.  After rounds * chunks such operations
 * (Larson's NumBlocks; 100 rounds as mimalloc-bench runs it) the thread
 * starts a new thread on the same array and exits, so the blocks one thread
 * allocated are freed by its successor; the initial blocks are allocated
 * by the main thread and freed by the workers, and whatever is left at the
 * end is freed by the main thread again.  An allocator that returns freed
 * blocks to the freeing thread without bound, or serialises on one lock,
 * shows it here.  The run lasts `ms` milliseconds; reports million
 * free+malloc pairs per second over all threads.
 *
 * Each new thread joins its predecessor first, so the lane's fields are
 * handed over with a happens-before edge and the main thread can join the
 * last thread of each lane.
 *
 * Usage: larson [--quick] [threads [ms [min [max [chunks [rounds]]]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct lane {
  char **blocks;
  size_t min, max;
  long chunks, life;
  uint64_t rng;
  long ops, threads;      /* totals over all of this lane's threads */
  pthread_t tid, prev;    /* newest thread; the one that created it */
  bool has_prev;
  atomic_int done;
};

static atomic_int stop;

static void *lane_thread(void *arg) {
  struct lane *l = arg;
  if (l->has_prev) pthread_join(l->prev, NULL);
  long n = 0;
  for (; n < l->life; n++) {
    if ((n & 63) == 0 && atomic_load_explicit(&stop, memory_order_relaxed))
      break;
    long victim = (long)(xorshift64_next(&l->rng) % (uint64_t)l->chunks);
    free(l->blocks[victim]);
    size_t size = rand_between(&l->rng, l->min, l->max);
    char *p = xmalloc(size);
    p[0] = (char)size;
    l->blocks[victim] = p;
  }
  l->ops += n;
  l->threads++;
  if (n == l->life && !atomic_load_explicit(&stop, memory_order_relaxed)) {
    l->prev = pthread_self();
    l->has_prev = true;
    start_thread(&l->tid, lane_thread, l);
    return NULL;
  }
  atomic_store_explicit(&l->done, 1, memory_order_release);
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long ms = num_arg(argc, argv, 1, quick ? 100 : 1000);
  long min = num_arg(argc, argv, 2, 16);
  long max = num_arg(argc, argv, 3, 128);
  long chunks = num_arg(argc, argv, 4, 1000);
  long rounds = num_arg(argc, argv, 5, 100);
  if (threads < 1 || threads > 1024 || ms < 1 || min < 1 || max < min ||
      chunks < 1 || rounds < 1) {
    fprintf(stderr, "usage: larson [--quick] [threads [ms [min [max [chunks "
                    "[rounds]]]]]]\n");
    return 2;
  }

  struct rss_marks m;
  rss_mark_start(&m);
  struct lane *lanes = xmalloc((size_t)threads * sizeof *lanes);
  for (int t = 0; t < threads; t++) {
    struct lane *l = &lanes[t];
    memset(l, 0, sizeof *l);
    l->min = (size_t)min;
    l->max = (size_t)max;
    l->chunks = chunks;
    l->life = rounds * chunks;
    l->rng = 0x9e3779b97f4a7c15u * (uint64_t)(t + 1);
    atomic_init(&l->done, 0);
    l->blocks = xmalloc((size_t)chunks * sizeof *l->blocks);
    for (long i = 0; i < chunks; i++) {
      size_t size = rand_between(&l->rng, l->min, l->max);
      l->blocks[i] = xmalloc(size);
      l->blocks[i][0] = (char)size;
    }
  }

  uint64_t t0 = now_ns();
  for (int t = 0; t < threads; t++)
    start_thread(&lanes[t].tid, lane_thread, &lanes[t]);
  struct timespec nap = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&nap, NULL);
  atomic_store_explicit(&stop, 1, memory_order_relaxed);
  struct timespec tick = {0, 200000};
  for (int t = 0; t < threads; t++) {
    while (!atomic_load_explicit(&lanes[t].done, memory_order_acquire))
      nanosleep(&tick, NULL);
    pthread_join(lanes[t].tid, NULL);
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  rss_mark_peak(&m);

  long ops = 0, spawned = 0;
  for (int t = 0; t < threads; t++) {
    ops += lanes[t].ops;
    spawned += lanes[t].threads;
    for (long i = 0; i < chunks; i++) free(lanes[t].blocks[i]);
    free(lanes[t].blocks);
  }
  free(lanes);
  rss_mark_end(&m);

  printf("larson: %d threads, %ld ms, sizes %ld..%ld bytes, %ld blocks per "
         "thread, %ld operations per thread life\n",
         threads, ms, min, max, chunks, rounds * chunks);
  printf("%.2f M free+malloc pairs in %.3f s by %ld threads: %.2f M pairs/s\n",
         (double)ops / 1e6, secs, spawned, (double)ops / secs / 1e6);
  print_rss_text(&m);
  printf("result: bench=larson threads=%d min=%ld max=%ld mops=%.3f "
         "secs=%.6f spawned=%ld",
         threads, min, max, (double)ops / secs / 1e6, secs, spawned);
  print_rss_fields(&m);
  return 0;
}
