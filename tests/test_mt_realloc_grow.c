/*
 * test_mt_realloc_grow.c - threads grow buffers side by side by near
 * doubling, from a few bytes or tens of KiB to megabytes, as programs
 * grow column arrays or string builders: each growth meets a neighbour,
 * so large blocks move (into cached spans, or by remapping into runs of
 * the page layer), while other threads do the same, one trims now and
 * then, and halfway through every thread takes over the buffers of the
 * next one, so blocks grow in threads that did not allocate them.  Every
 * page of every buffer is checked after each step.
 *
 * A scratch version of this program found a realloc handing out pages
 * that were still PROT_NONE (2 crashes in 26 runs, before moves went into
 * cached spans first); that layout is now built on purpose by
 * test_exchange_opens_destination (test_malloc_realloc.c), and this test
 * did not reach it in 12 runs with the fix taken out.  It keeps the
 * threaded moves, trims and handovers of large blocks under test, TSan
 * included: a run parks a destination's pages 30-50 times among 170
 * exchanges.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define THREADS 4
#define BUFS 3
#define STEPS 7   /* growths per round: 40-90 KB become 5-11 MB */
#define HANDOFF 3 /* the step at which buffers change threads */
#define PAGE 4096

struct buf {
  unsigned char *p;
  size_t n;
  unsigned seed;
};

static struct buf bufs[THREADS][BUFS];
static pthread_barrier_t step_barrier;
static _Atomic int failures;
static long rounds = 24;

/* The byte at offset i: varies by page and by buffer, so a page that
 * lands in the wrong place or the wrong buffer is seen. */
static unsigned char expected(unsigned seed, size_t i) {
  return (unsigned char)(seed * 31 + i / PAGE * 7 + 1);
}

static void fill(struct buf *b, size_t from, size_t to) {
  while (from < to) {
    size_t end = (from / PAGE + 1) * PAGE;
    if (end > to) end = to;
    memset(b->p + from, expected(b->seed, from), end - from);
    from = end;
  }
}

/* Whether [0, n) holds what fill wrote: the first and last byte of each
 * page and every 256th between (a page moved to the wrong place, lost
 * or never given memory shows in all of them). */
static bool intact(const struct buf *b, size_t n) {
  for (size_t off = 0; off < n; off += PAGE) {
    size_t len = n - off < PAGE ? n - off : PAGE;
    unsigned char c = expected(b->seed, off);
    if (b->p[off + len - 1] != c) return false;
    for (size_t i = 0; i < len; i += 256)
      if (b->p[off + i] != c) return false;
  }
  return true;
}

static void bad(const char *what, const struct buf *b) {
  fprintf(stderr, "failure: %s (%p, %zu bytes)\n", what, (void *)b->p, b->n);
  atomic_fetch_add(&failures, 1);
}

/* Out of memory here is a failure, and the other threads would wait at
 * the barrier for this one: stop at once. */
static void *need(void *p, const struct buf *b, size_t n) {
  if (!p) {
    fprintf(stderr, "failure: no memory for %zu bytes (was %zu)\n", n, b->n);
    exit(1);
  }
  return p;
}

static void *worker(void *arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  uint64_t r = 0x9E3779B97F4A7C15ull * (t + 1);
  for (long round = 0; round < rounds; round++) {
    unsigned row = t; /* whose buffers this thread grows */
    for (int k = 0; k < BUFS; k++) {
      struct buf *b = &bufs[row][k];
      /* A third start small (in a superblock), the rest 40-90 KB. */
      b->n = xorshift64(&r) % 3 == 0 ? 16 + r % 4000 : 40000 + r % 50000;
      b->seed = (unsigned)(round * THREADS * BUFS + row * BUFS + k);
      b->p = need(umpa_malloc(b->n), b, b->n);
      fill(b, 0, b->n);
    }
    for (int step = 0; step < STEPS; step++) {
      if (step == HANDOFF) {
        pthread_barrier_wait(&step_barrier);
        row = (t + 1) % THREADS;
      }
      for (int k = 0; k < BUFS; k++) {
        struct buf *b = &bufs[row][k];
        size_t m = b->n * 2 - xorshift64(&r) % (b->n / 8 + 1);
        b->p = need(umpa_realloc(b->p, m), b, m);
        if (!intact(b, b->n)) bad("contents after realloc", b);
        fill(b, b->n, m);
        b->n = m;
      }
      if (t == 0 && step % 3 == 2) umpa_malloc_trim(0);
    }
    for (int k = 0; k < BUFS; k++) {
      struct buf *b = &bufs[row][k];
      if (!intact(b, b->n)) bad("final contents", b);
      umpa_free(b->p);
      b->p = NULL;
    }
    /* Nobody starts the next round while buffers of this one are held. */
    pthread_barrier_wait(&step_barrier);
  }
  return NULL;
}

int main(int argc, char **argv) {
  rounds = argc > 1 ? atol(argv[1]) : test_scaled(rounds);
  REQUIRE(pthread_barrier_init(&step_barrier, NULL, THREADS) == 0);
  struct umpa_page_stats a, b;
  umpa_page_stats(&a);
  pthread_t th[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&step_barrier);
  CHECK(atomic_load(&failures) == 0);
  umpa_page_stats(&b);
  /* The test is about moves: there were some, and none copied bytes. */
  CHECK_MSG(b.realloc_moved > a.realloc_moved, "no growth moved");
  CHECK_MSG(b.copies == a.copies, "%llu moves copied",
            (unsigned long long)(b.copies - a.copies));
  umpa_malloc_trim(0);
  struct umpa_mallinfo mi = umpa_mallinfo();
  CHECK_MSG(mi.hblks == 0, "%zu large blocks left", mi.hblks);
  umpa_page_check();
  return check_done("test_mt_realloc_grow");
}
