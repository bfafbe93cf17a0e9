/*
 * smallobj.c - small-object patterns through malloc/free, in ns per pair.
 *
 * Sizes come from a fixed-seed xorshift, the same for every allocator.
 *   pair   malloc(random 16..1024 bytes), write a byte, free it at once:
 *          the fast path.
 *   lifo   allocate a batch of 1000 (random 16..1024), free them newest
 *          first: building and tearing down a structure.
 *   calloc the same through calloc(1, n): zeroed structures (every block
 *          reused, so each is cleared).
 *   random 4096 live blocks of 16..2048 bytes; each step frees one chosen
 *          at random and puts a block of a random size in its place (a
 *          cache or a server's live objects in steady state; one untimed
 *          pass fills the slots first).
 *   random_big  the same with 65536 live blocks of 16..1024 bytes (about
 *          34 MB, past the caches), for a quarter as many steps: each
 *          superblock's header and each block is a cache miss.
 *   mixed  the paper's Figures 9-10 mix: 90% of requests small (16..1024),
 *          10% large (64 KiB .. 4 MiB); each block goes into a 512-slot
 *          ring, the oldest is freed once it is full (one warm-up pass
 *          first).  A large block gets one byte written per 4 KiB page; that
 *          writing is timed apart: "mixed" is alloc + free only, "mixed
 *          touch" the page writes, both per pair over all requests, and
 *          "mixed all" their sum (a page populated in malloc is not
 *          faulted in the writes).
 * With T threads every thread runs the same patterns at once (each its own
 * stream, a barrier between patterns); the figure is wall time per pair of
 * one thread, so perfect scaling keeps it constant.
 *
 * Usage: smallobj [--quick] [threads [pairs [mixed_ops]]]
 */
#define _GNU_SOURCE
#include "bench.h"

#define SMALL_MIN 16
#define SMALL_MAX 1024
#define LARGE_MIN (64 * KiB)
#define LARGE_MAX (4 * MiB)
#define NSIZES 4096 /* precomputed small sizes, so the loop times malloc */
#define BATCH 1000
#define RING 512
#define LIVE 4096 /* random: live blocks, a power of two */
#define LIVE_BIG 65536 /* random_big: live blocks, a power of two */
#define RANDOM_MAX 2048

enum { PAIR, LIFO, CALLOC, RANDOM, RANDOM_BIG, MIXED, NPAT };

struct worker {
  pthread_t tid;
  int index;
  pthread_barrier_t *sync;
  long pairs, mixed_ops;
  uint64_t touch_ns;      /* mixed: time spent writing large blocks */
  struct rss_marks *marks; /* thread 0 samples the peak RSS */
};

static uint64_t pattern_ns[NPAT];

/* Between patterns: everyone waits, thread 0 reads the clock. */
static void lap(struct worker *w, uint64_t *t, int pattern) {
  pthread_barrier_wait(w->sync);
  if (w->index == 0) {
    uint64_t now = now_ns();
    if (pattern >= 0) pattern_ns[pattern] = now - *t;
    *t = now;
  }
}

static size_t mixed_size(uint64_t *rng) {
  if (xorshift64_next(rng) % 10 == 0)
    return rand_between(rng, LARGE_MIN, LARGE_MAX);
  return rand_between(rng, SMALL_MIN, SMALL_MAX);
}

/* One request of the mixed pattern into ring slot s. */
static void mixed_step(char **ring, size_t *sizes, long s, uint64_t *rng,
                       uint64_t *touch_ns) {
  free(ring[s]);
  size_t size = mixed_size(rng);
  char *p = xmalloc(size);
  if (size >= LARGE_MIN) {
    uint64_t t0 = now_ns();
    touch_pages(p, size);
    *touch_ns += now_ns() - t0;
  } else {
    p[0] = 1;
  }
  ring[s] = p;
  sizes[s] = size;
}

/* The lifo patterns: batches of BATCH blocks (sizes from `small`), each
 * written and then freed newest first, `pairs` blocks in all; through
 * calloc(1, n) when `zeroed`.  Inlined with a constant flag, so the malloc
 * loop has no test of it. */
static inline void lifo_batches(char **batch, const size_t *small, long pairs,
                                bool zeroed) {
  long k = 0;
  for (long b = 0; b < pairs / BATCH; b++) {
    for (int i = 0; i < BATCH; i++, k++) {
      size_t n = small[k & (NSIZES - 1)];
      batch[i] = zeroed ? calloc(1, n) : malloc(n);
      if (!batch[i]) {
        perror(zeroed ? "calloc" : "malloc");
        exit(1);
      }
      batch[i][0] = (char)i;
    }
    for (int i = BATCH - 1; i >= 0; i--) free(batch[i]);
  }
}

/* The random patterns: fill n live slots (a power of two; untimed), then
 * `steps` times free a slot chosen at random and put a block of the next
 * size in its place, then free them all (untimed). */
static void replace_random(struct worker *w, uint64_t *t, int pattern,
                           char **live, long n, const size_t *size,
                           long steps, uint64_t *rng) {
  for (long s = 0; s < n; s++) live[s] = xmalloc(size[s & (NSIZES - 1)]);
  lap(w, t, -1);
  for (long i = 0; i < steps; i++) {
    size_t s = xorshift64_next(rng) & (size_t)(n - 1);
    free(live[s]);
    live[s] = xmalloc(size[i & (NSIZES - 1)]);
    live[s][0] = (char)i;
  }
  lap(w, t, pattern);
  for (long s = 0; s < n; s++) free(live[s]);
}

static void *work(void *arg) {
  struct worker *w = arg;
  uint64_t rng = 0x9e3779b97f4a7c15u * (uint64_t)(w->index + 1);
  size_t *small = xmalloc(NSIZES * sizeof *small);
  size_t *wide = xmalloc(NSIZES * sizeof *wide);
  for (int i = 0; i < NSIZES; i++) {
    small[i] = rand_between(&rng, SMALL_MIN, SMALL_MAX);
    wide[i] = rand_between(&rng, SMALL_MIN, RANDOM_MAX);
  }
  char **live = xmalloc(LIVE_BIG * sizeof *live);
  char **batch = xmalloc(BATCH * sizeof *batch);
  char **ring = calloc(RING, sizeof *ring);
  size_t *sizes = calloc(RING, sizeof *sizes);
  if (!ring || !sizes) {
    perror("calloc");
    exit(1);
  }
  uint64_t t = 0;

  lap(w, &t, -1);
  for (long i = 0; i < w->pairs; i++) {
    char *p = xmalloc(small[i & (NSIZES - 1)]);
    p[0] = (char)i;
    free(p);
  }
  lap(w, &t, PAIR);

  lifo_batches(batch, small, w->pairs, false);
  lap(w, &t, LIFO);

  lifo_batches(batch, small, w->pairs, true);
  lap(w, &t, CALLOC);

  replace_random(w, &t, RANDOM, live, LIVE, wide, w->pairs, &rng);
  replace_random(w, &t, RANDOM_BIG, live, LIVE_BIG, small, w->pairs / 4,
                 &rng);

  /* Warm-up: one pass fills the ring, untimed (its touch time dropped). */
  uint64_t warm_touch = 0;
  for (long s = 0; s < RING; s++) mixed_step(ring, sizes, s, &rng, &warm_touch);
  lap(w, &t, -1);
  for (long i = 0; i < w->mixed_ops; i++)
    mixed_step(ring, sizes, i % RING, &rng, &w->touch_ns);
  lap(w, &t, MIXED);
  if (w->index == 0) rss_mark_peak(w->marks);
  for (long s = 0; s < RING; s++) free(ring[s]);

  free(sizes);
  free(ring);
  free(batch);
  free(live);
  free(wide);
  free(small);
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long pairs = num_arg(argc, argv, 1, quick ? 200000 : 10000000);
  long mixed_ops = num_arg(argc, argv, 2, quick ? 2000 : 40000);
  if (threads < 1 || threads > 1024 || pairs < BATCH || mixed_ops < 1) {
    fprintf(stderr, "usage: smallobj [--quick] [threads [pairs "
                    "[mixed_ops]]]\n");
    return 2;
  }
  pairs -= pairs % BATCH;

  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t sync;
  pthread_barrier_init(&sync, NULL, (unsigned)threads);
  struct worker *w = xmalloc((size_t)threads * sizeof *w);
  for (int t = 0; t < threads; t++) {
    w[t].index = t;
    w[t].sync = &sync;
    w[t].pairs = pairs;
    w[t].mixed_ops = mixed_ops;
    w[t].touch_ns = 0;
    w[t].marks = &m;
    start_thread(&w[t].tid, work, &w[t]);
  }
  uint64_t touch_ns = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(w[t].tid, NULL);
    touch_ns += w[t].touch_ns;
  }
  pthread_barrier_destroy(&sync);
  free(w);
  rss_mark_end(&m);

  /* Touching is done inside the mixed lap: take each thread's mean out. */
  double touch = (double)touch_ns / threads;
  double ns[NPAT + 1] = {
      (double)pattern_ns[PAIR] / (double)pairs,
      (double)pattern_ns[LIFO] / (double)pairs,
      (double)pattern_ns[CALLOC] / (double)pairs,
      (double)pattern_ns[RANDOM] / (double)pairs,
      (double)pattern_ns[RANDOM_BIG] / (double)(pairs / 4),
      ((double)pattern_ns[MIXED] - touch) / (double)mixed_ops,
      touch / (double)mixed_ops,
  };
  printf("smallobj: %d threads, %ld pairs (pair, lifo batches of %d), %ld "
         "mixed requests (10%% of 64 KiB..4 MiB, ring of %d)\n",
         threads, pairs, BATCH, mixed_ops, RING);
  printf("ns per malloc+free pair: pair %.1f, lifo %.1f, calloc %.1f, "
         "random %.1f, random_big %.1f, mixed %.1f (+ %.1f writing large "
         "blocks)\n",
         ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6]);
  print_rss_text(&m);
  /* mixed_all: an allocator may populate a block in malloc or leave its
   * pages to fault in the writes, so only the sum compares them all. */
  printf("result: bench=smallobj threads=%d pair=%.2f lifo=%.2f calloc=%.2f "
         "random=%.2f random_big=%.2f mixed=%.2f mixed_touch=%.2f "
         "mixed_all=%.2f",
         threads, ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6],
         ns[5] + ns[6]);
  print_rss_fields(&m);
  return 0;
}
