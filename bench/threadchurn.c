/*
 * threadchurn.c - short-lived threads, as a server with a thread per task
 * makes them.
 *
 * Each round starts T threads and joins them.  A thread first frees the
 * blocks the previous round's thread of the lane before it handed over
 * (allocated by a thread that has exited since), then allocates `blocks`
 * blocks of random sizes in [16, max] bytes, writes the first 64 bytes of
 * each, frees all but `keep` of them and hands those to the next round's
 * thread of the next lane, and exits.  What a heap does when its thread
 * exits with blocks still out, and what a new thread's first allocations
 * cost, decide the speed: an allocator that gives a thread's memory back to
 * the kernel when the thread ends faults it in again in the next one.
 * Reports thousand threads per second (each one `blocks` malloc+free
 * pairs) over the whole run, and the page faults per thread.
 *
 * Usage: threadchurn [--quick] [threads [rounds [blocks [max [keep]]]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct lane {
  void **handed[2]; /* blocks left for the next round, by round parity */
  uint64_t rng;
};

static struct lane *lanes;
static int nlanes;
static long nblocks, nkeep;
static size_t max_size;

struct task {
  int lane;
  long round;
};

static void *task(void *arg) {
  struct task *t = arg;
  struct lane *l = &lanes[t->lane];
  int cur = (int)(t->round & 1);
  /* What the previous round's thread of the lane before left here. */
  for (long k = 0; k < nkeep; k++) {
    free(l->handed[!cur][k]);
    l->handed[!cur][k] = NULL;
  }
  char **p = xmalloc((size_t)nblocks * sizeof *p);
  for (long k = 0; k < nblocks; k++) {
    size_t n = rand_between(&l->rng, 16, max_size);
    p[k] = xmalloc(n);
    memset(p[k], (int)k, n < 64 ? n : 64);
  }
  struct lane *next = &lanes[(t->lane + 1) % nlanes];
  for (long k = 0; k < nblocks; k++) {
    if (k < nkeep)
      next->handed[cur][k] = p[k];
    else
      free(p[k]);
  }
  free(p);
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  nlanes = (int)num_arg(argc, argv, 0, 1);
  long rounds = num_arg(argc, argv, 1, quick ? 20 : 400);
  nblocks = num_arg(argc, argv, 2, 3000);
  max_size = (size_t)num_arg(argc, argv, 3, 3000);
  nkeep = num_arg(argc, argv, 4, 100);
  if (nlanes < 1 || nlanes > 1024 || rounds < 1 || nblocks < 1 ||
      max_size < 16 || nkeep < 0 || nkeep > nblocks) {
    fprintf(stderr, "usage: threadchurn [--quick] [threads [rounds [blocks "
                    "[max [keep]]]]]\n");
    return 2;
  }

  struct rss_marks m;
  rss_mark_start(&m);
  lanes = xmalloc((size_t)nlanes * sizeof *lanes);
  struct task *tasks = xmalloc((size_t)nlanes * sizeof *tasks);
  pthread_t *tid = xmalloc((size_t)nlanes * sizeof *tid);
  for (int i = 0; i < nlanes; i++) {
    for (int c = 0; c < 2; c++) {
      lanes[i].handed[c] = xmalloc(((size_t)nkeep + 1) * sizeof(void *));
      memset(lanes[i].handed[c], 0, ((size_t)nkeep + 1) * sizeof(void *));
    }
    lanes[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
  }
  uint64_t f0 = minor_faults();
  uint64_t t0 = now_ns();
  for (long r = 0; r < rounds; r++) {
    for (int i = 0; i < nlanes; i++) {
      tasks[i].lane = i;
      tasks[i].round = r;
      start_thread(&tid[i], task, &tasks[i]);
    }
    for (int i = 0; i < nlanes; i++) pthread_join(tid[i], NULL);
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  uint64_t faults = minor_faults() - f0;
  for (int i = 0; i < nlanes; i++)
    for (int c = 0; c < 2; c++) {
      for (long k = 0; k < nkeep; k++) free(lanes[i].handed[c][k]);
      free(lanes[i].handed[c]);
    }
  free(lanes);
  free(tasks);
  free(tid);
  rss_mark_end(&m);

  double threads = (double)rounds * nlanes;
  printf("threadchurn: %ld rounds of %d threads, each %ld blocks of 16..%zu "
         "bytes (%ld handed on)\n",
         rounds, nlanes, nblocks, max_size, nkeep);
  printf("%.0f threads in %.3f s: %.2f k threads/s, %.1f page faults a "
         "thread\n",
         threads, secs, threads / secs / 1e3, (double)faults / threads);
  print_rss_text(&m);
  printf("result: bench=threadchurn threads=%d kthreads=%.3f secs=%.6f "
         "faults=%.1f",
         nlanes, threads / secs / 1e3, secs, (double)faults / threads);
  print_rss_fields(&m);
  return 0;
}
