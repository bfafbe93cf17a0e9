/*
 * teardown.c - a table of small objects freed in random order and built
 * again, round after round.
 *
 * A hash table, a parse tree or an interpreter's objects freed when a
 * request or a phase ends: the frees come in no particular order, so every
 * superblock (or page, or span) empties about as fast as the others, and
 * the blocks built again next come from free lists in the order of those
 * frees.  Each thread keeps a table of its own of `objects` blocks of 5 to
 * 44 bytes, and every round frees them all in a fresh random order, then
 * allocates them again (writing the first and last byte of each).  Reports
 * ns per malloc and per free of one thread (wall time of the phase over the
 * blocks of one thread, so perfect scaling keeps them constant), and the
 * resident memory.
 *
 * Usage: teardown [--quick] [threads [rounds [objects]]]
 */
#define _GNU_SOURCE
#include "bench.h"

struct worker {
  pthread_t tid;
  int index;
  pthread_barrier_t *sync;
  long rounds, objects;
  struct rss_marks *marks;
};

static uint64_t malloc_ns, free_ns;

static uint64_t next(uint64_t *r) {
  *r = *r * 6364136223846793005ull + 1442695040888963407ull;
  return *r >> 33;
}

static void build(char **t, long n, uint64_t *r) {
  for (long i = 0; i < n; i++) {
    size_t size = 5 + next(r) % 40;
    t[i] = xmalloc(size);
    t[i][0] = (char)i;
    t[i][size - 1] = (char)size;
  }
}

static void shuffle(char **t, long n, uint64_t *r) {
  for (long i = n - 1; i > 0; i--) {
    long j = (long)(next(r) % (uint64_t)(i + 1));
    char *x = t[i];
    t[i] = t[j];
    t[j] = x;
  }
}

/* Time of the phase between two barriers, as thread 0 sees it. */
static void lap(struct worker *w, uint64_t *t, uint64_t *sum) {
  pthread_barrier_wait(w->sync);
  if (w->index == 0) {
    uint64_t now = now_ns();
    if (sum) *sum += now - *t;
    *t = now;
  }
}

static void *work(void *arg) {
  struct worker *w = arg;
  char **t = xmalloc((size_t)w->objects * sizeof *t);
  uint64_t r = 1 + (uint64_t)w->index, start = 0;
  build(t, w->objects, &r);
  for (long round = 0; round < w->rounds; round++) {
    shuffle(t, w->objects, &r); /* untimed */
    lap(w, &start, NULL);
    for (long i = 0; i < w->objects; i++) free(t[i]);
    lap(w, &start, &free_ns);
    build(t, w->objects, &r);
    if (w->index == 0) rss_mark_peak(w->marks);
    lap(w, &start, &malloc_ns);
  }
  for (long i = 0; i < w->objects; i++) free(t[i]);
  free(t);
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long rounds = num_arg(argc, argv, 1, quick ? 3 : 50);
  long objects = num_arg(argc, argv, 2, quick ? 20000 : 200000);
  if (threads < 1 || threads > 1024 || rounds < 1 || objects < 1) {
    fprintf(stderr, "usage: teardown [--quick] [threads [rounds [objects]]]\n");
    return 2;
  }
  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t sync;
  pthread_barrier_init(&sync, NULL, (unsigned)threads);
  struct worker *w = calloc((size_t)threads, sizeof *w);
  if (!w) {
    perror("calloc");
    return 1;
  }
  for (int i = 0; i < threads; i++) {
    w[i].index = i;
    w[i].sync = &sync;
    w[i].rounds = rounds;
    w[i].objects = objects;
    w[i].marks = &m;
    start_thread(&w[i].tid, work, &w[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  free(w);
  pthread_barrier_destroy(&sync);
  rss_mark_end(&m);
  double per = (double)rounds * (double)objects;
  double mns = (double)malloc_ns / per, fns = (double)free_ns / per;
  printf("teardown: %d threads, %ld rounds of %ld blocks of 5-44 B each: "
         "%.1f ns per malloc, %.1f ns per free (random order), %.1f a "
         "pair\n",
         threads, rounds, objects, mns, fns, mns + fns);
  print_rss_text(&m);
  printf("result: bench=teardown threads=%d malloc_ns=%.2f free_ns=%.2f "
         "pair_ns=%.2f",
         threads, mns, fns, mns + fns);
  print_rss_fields(&m);
  return 0;
}
