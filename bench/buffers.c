/*
 * buffers.c - buffers malloc'd and freed again and again, in ns per pair.
 *
 * Not small objects: the blocks a server or a database takes for one
 * request and gives back, one size at a time.
 *   64k       malloc(64 KiB), write a byte into each of its pages, free: an
 *             I/O buffer that a read fills.
 *   256k      the same with 256 KiB.
 *   align4k   posix_memalign(4096, 4 KiB), one byte written: an O_DIRECT
 *             page.
 *   align64k  posix_memalign(4096, 64 KiB), a byte into each page.
 *   calloc    calloc(1, 100000): a zeroed table, one byte read.
 *   shrink    malloc(64 KiB), then realloc to 1 KiB, then free: a buffer
 *             cut down to what it received.
 *   sparse1m  malloc(1 MiB), one byte written: a buffer reserved for the
 *             largest request and used for a small one.
 *   al64k     aligned_alloc(64 KiB, 64 KiB), a byte into each page: a
 *             buffer aligned to its size (DMA, a ring).
 *   al2m      aligned_alloc(2 MiB, 2 MiB), one byte written: a buffer
 *             placed for a huge page.
 *   sparse4m  malloc(4 MiB), a byte written in its first and in its last
 *             MiB: a big buffer reserved for the largest request.
 *   sparsevar malloc of 1 MiB to 1.875 MiB, eight sizes in turn, a byte
 *             written per 64 KiB: a buffer sized to each request and
 *             used in part (no size comes back before four others).
 *   alvar     posix_memalign with alignments of 64 KiB to 2 MiB in turn,
 *             of half the alignment plus 0-56 KiB (24 size and alignment
 *             pairs in turn), one byte written: buffers aligned for
 *             hardware or huge pages, of varied sizes.
 *   ring      64 buffers live, of 32-256 KiB (sizes at random, the same
 *             for every allocator); each step frees the oldest and
 *             mallocs one in its place, a byte written per page: buffers
 *             sized to each request and kept a while (a server's replies,
 *             a compiler's arrays).  The figure is per step, a free and a
 *             malloc, once the allocator has settled: the ring is filled
 *             and run for half as many steps again before the timing
 *             (umpa's first 5000 steps averaged 1.6 us, its next 295000
 *             0.4, as it gathered freed spans that fit), and emptied
 *             after.
 *   handoff   buffers of 32-256 KiB (random sizes), a byte written per
 *             page, each handed to the next thread (the last to the
 *             first) through a queue of 64, which frees it after reading
 *             its first byte: a pipeline's stages (producer and consumer;
 *             one thread hands them to itself).  Per buffer, after half
 *             as many untimed.
 * With T threads every thread runs the same patterns at once (a barrier
 * between patterns); the figure is wall time per pair of one thread, so
 * perfect scaling keeps it constant.
 *
 * Usage: buffers [--quick] [threads [pairs]]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <string.h>

enum { B64K, B256K, ALIGN4K, ALIGN64K, CALLOC, SHRINK, SPARSE, AL64K, AL2M,
       SPARSE4M, SPARSEVAR, ALVAR, RING, HANDOFF, NPAT };
static const char *const names[NPAT] = {
    "64k",      "256k",     "align4k",   "align64k", "calloc",
    "shrink",   "sparse1m", "al64k",     "al2m",     "sparse4m",
    "sparsevar", "alvar",   "ring",      "handoff"};

#define RING_SLOTS 64
#define RING_MIN (32 * KiB)
#define RING_MAX (256 * KiB)

/* The handoff pattern's queue into one thread: its predecessor fills the
 * slots in turn, it empties them in turn. */
struct queue {
  _Atomic(char *) slot[RING_SLOTS];
} __attribute__((aligned(64)));

struct worker {
  pthread_t tid;
  int index;
  pthread_barrier_t *sync;
  long pairs;
  struct rss_marks *marks;
  struct queue *in, *out; /* own queue, the next thread's */
};

static uint64_t pattern_ns[NPAT];
static volatile char sink;

static void lap(struct worker *w, uint64_t *t, int pattern) {
  pthread_barrier_wait(w->sync);
  if (w->index == 0) {
    uint64_t now = now_ns();
    if (pattern >= 0) pattern_ns[pattern] = now - *t;
    *t = now;
  }
}

static void *aligned(size_t align, size_t size) {
  void *p = NULL;
  if (posix_memalign(&p, align, size) != 0) {
    fprintf(stderr, "buffers: posix_memalign(%zu, %zu) failed\n", align, size);
    exit(1);
  }
  return p;
}

/* calloc clears 100000 bytes a pair: a tenth as many; al2m and sparse4m
 * map their block afresh a pair under some allocators (80 us with glibc
 * for al2m): a hundredth; sparsevar writes 16-30 pages a pair, and alvar
 * maps its block afresh under glibc: a tenth. */
static long pairs_of(int pattern, long pairs) {
  return pattern == CALLOC || pattern == SPARSEVAR || pattern == ALVAR
             ? pairs / 10
         : pattern == AL2M || pattern == SPARSE4M ? pairs / 100
         : pattern == RING || pattern == HANDOFF  ? pairs / 4
                                                  : pairs;
}

static void pair(int pattern, long i) {
  char *p;
  switch (pattern) {
    case B64K:
    case B256K: {
      size_t n = pattern == B64K ? 64 * KiB : 256 * KiB;
      p = xmalloc(n);
      touch_pages(p, n);
      break;
    }
    case ALIGN4K:
      p = aligned(4096, 4096);
      p[0] = (char)i;
      break;
    case ALIGN64K:
      p = aligned(4096, 64 * KiB);
      touch_pages(p, 64 * KiB);
      break;
    case CALLOC:
      p = calloc(1, 100000);
      if (!p) {
        perror("calloc");
        exit(1);
      }
      sink = p[i % 100000];
      break;
    case SPARSE:
      p = xmalloc(MiB);
      p[(size_t)i % 4096] = (char)i;
      break;
    case AL64K:
      p = aligned(64 * KiB, 64 * KiB);
      touch_pages(p, 64 * KiB);
      break;
    case AL2M:
      p = aligned(2 * MiB, 2 * MiB);
      p[(size_t)i % (2 * MiB)] = (char)i;
      break;
    case SPARSE4M:
      p = xmalloc(4 * MiB);
      p[(size_t)i % MiB] = (char)i;
      p[3 * MiB + (size_t)i % MiB] = (char)i;
      break;
    case SPARSEVAR: {
      size_t n = MiB + (size_t)(i % 8) * (MiB / 8);
      p = xmalloc(n);
      for (size_t at = (size_t)i % 4096; at < n; at += 64 * KiB)
        p[at] = (char)i;
      break;
    }
    case ALVAR: {
      size_t align = 64 * KiB << (i % 6);
      p = aligned(align, align / 2 + (size_t)(i % 8) * 8 * KiB);
      p[0] = (char)i;
      break;
    }
    default: /* SHRINK */
      p = xmalloc(64 * KiB);
      p[0] = (char)i;
      p = realloc(p, 1024);
      if (!p || p[0] != (char)i) {
        fprintf(stderr, "buffers: realloc lost the block\n");
        exit(1);
      }
      break;
  }
  free(p);
}

/* A buffer of the ring and handoff patterns: of a random size, a byte
 * written per page. */
static char *ring_buffer(uint64_t *rng) {
  size_t n = rand_between(rng, RING_MIN, RING_MAX);
  char *p = xmalloc(n);
  touch_pages(p, n);
  return p;
}

/* A ring buffer of the ring pattern: a new one in slot s. */
static void ring_fill(char **ring, long s, uint64_t *rng) {
  ring[s] = ring_buffer(rng);
}

/* Steps of the ring pattern: the oldest buffer freed, a new one in its
 * place. */
static void ring_steps(char **ring, long steps, uint64_t *rng) {
  for (long i = 0; i < steps; i++) {
    free(ring[i % RING_SLOTS]);
    ring_fill(ring, i % RING_SLOTS, rng);
  }
}

/* The next buffer from w's queue, freed; false if none is there yet. */
static bool handoff_take(struct worker *w, long *taken) {
  _Atomic(char *) *s = &w->in->slot[*taken % RING_SLOTS];
  char *p = atomic_load_explicit(s, memory_order_acquire);
  if (!p) return false;
  atomic_store_explicit(s, NULL, memory_order_relaxed);
  sink = p[0];
  free(p);
  ++*taken;
  return true;
}

/* `steps` buffers handed on, and as many taken from the predecessor. */
static void handoff_steps(struct worker *w, long steps, uint64_t *rng) {
  long taken = 0;
  for (long i = 0; i < steps; i++) {
    char *p = ring_buffer(rng);
    _Atomic(char *) *s = &w->out->slot[i % RING_SLOTS];
    while (atomic_load_explicit(s, memory_order_acquire)) {
      if (!handoff_take(w, &taken)) sched_yield(); /* the next one is behind */
    }
    atomic_store_explicit(s, p, memory_order_release);
    while (handoff_take(w, &taken)) {
    }
  }
  while (taken < steps)
    if (!handoff_take(w, &taken)) sched_yield();
}

static void *work(void *arg) {
  struct worker *w = arg;
  uint64_t t = 0;
  char *ring[RING_SLOTS];
  uint64_t rng = 0x9e3779b97f4a7c15u * (uint64_t)(w->index + 1);
  lap(w, &t, -1);
  for (int pattern = 0; pattern < NPAT; pattern++) {
    long n = pairs_of(pattern, w->pairs);
    if (pattern == RING) {
      for (long s = 0; s < RING_SLOTS; s++) ring_fill(ring, s, &rng);
      ring_steps(ring, n / 2, &rng);
      lap(w, &t, -1);
      ring_steps(ring, n, &rng);
    } else if (pattern == HANDOFF) {
      handoff_steps(w, n / 2, &rng);
      lap(w, &t, -1);
      handoff_steps(w, n, &rng);
    } else {
      for (long i = 0; i < n; i++) pair(pattern, i);
    }
    if (w->index == 0) rss_mark_peak(w->marks);
    lap(w, &t, pattern);
    if (pattern == RING)
      for (long s = 0; s < RING_SLOTS; s++) free(ring[s]);
  }
  return NULL;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int threads = (int)num_arg(argc, argv, 0, 1);
  long pairs = num_arg(argc, argv, 1, quick ? 2000 : 200000);
  if (threads < 1 || threads > 1024 || pairs < 100) {
    fprintf(stderr, "usage: buffers [--quick] [threads [pairs]]\n");
    return 2;
  }
  struct rss_marks m;
  rss_mark_start(&m);
  pthread_barrier_t sync;
  pthread_barrier_init(&sync, NULL, (unsigned)threads);
  struct worker *w = calloc((size_t)threads, sizeof *w);
  struct queue *q = aligned_alloc(64, (size_t)threads * sizeof *q);
  if (!w || !q) {
    perror("calloc");
    return 1;
  }
  memset(q, 0, (size_t)threads * sizeof *q);
  for (int i = 0; i < threads; i++) {
    w[i].in = &q[i];
    w[i].out = &q[(i + 1) % threads];
    w[i].index = i;
    w[i].sync = &sync;
    w[i].pairs = pairs;
    w[i].marks = &m;
    start_thread(&w[i].tid, work, &w[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  free(w);
  free(q);
  rss_mark_end(&m);
  double ns[NPAT];
  for (int p = 0; p < NPAT; p++)
    ns[p] = (double)pattern_ns[p] / (double)pairs_of(p, pairs);
  printf("buffers: %d threads, %ld pairs each (calloc, sparsevar and alvar "
         "%ld, al2m and sparse4m %ld, ring and handoff %ld steps): ns per "
         "pair:",
         threads, pairs, pairs_of(CALLOC, pairs), pairs_of(AL2M, pairs),
         pairs_of(RING, pairs));
  for (int p = 0; p < NPAT; p++) printf(" %s %.1f", names[p], ns[p]);
  printf("\n");
  print_rss_text(&m);
  printf("result: bench=buffers threads=%d", threads);
  for (int p = 0; p < NPAT; p++) printf(" %s=%.2f", names[p], ns[p]);
  print_rss_fields(&m);
  return 0;
}
