/*
 * test_mt_malloc_stress.c - threads allocate, fill, verify and free blocks
 * of every size class and some large ones, hand many of them to other
 * threads through a shared mailbox (so most frees are cross-thread), and
 * reallocate, while one of them calls malloc_trim now and then (a fifth
 * of the blocks are aligned, to 16 B up to 2 MiB); then a
 * shorter round with more threads than the store has stripes (so heaps
 * share stripes, and take what other stripes stored); at the end every
 * heap is trimmed and the page layer checked.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define THREADS 4
#define MANY_THREADS 18 /* more heaps than the store's 16 stripes */
#define SLOTS 256
#define MAILBOX 64
#define TRIM_EVERY 1000

static _Atomic(unsigned char *) mailbox[MAILBOX];
static _Atomic int failures;
static long iterations = 100000, its; /* its: this round's, per thread */

/* Block layout: 8-byte size, 8-byte seed, then bytes derived from both. */
static void fill(unsigned char *p, size_t n, uint64_t seed) {
  memcpy(p, &n, 8);
  memcpy(p + 8, &seed, 8);
  for (size_t i = 16; i < n; i++) p[i] = (unsigned char)(seed + i);
}

static bool intact(const unsigned char *p) {
  size_t n;
  uint64_t seed;
  memcpy(&n, p, 8);
  memcpy(&seed, p + 8, 8);
  for (size_t i = 16; i < n; i++)
    if (p[i] != (unsigned char)(seed + i)) return false;
  return true;
}

static size_t random_size(uint64_t *r) {
  uint64_t x = xorshift64(r) % 1000;
  if (x < 700) return 16 + *r / 1000 % 240;      /* small */
  if (x < 990) return 16 + *r / 1000 % 32768;    /* every class */
  if (x < 997) return 16 + *r / 1000 % (1 << 20); /* large */
  return 16 + *r / 1000 % (8 << 20);              /* spans of the cache */
}

static void bad(const char *what) {
  fprintf(stderr, "failure: %s\n", what);
  atomic_fetch_add(&failures, 1);
}

static void *worker(void *arg) {
  uint64_t r = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
  unsigned char *slot[SLOTS] = {0};
  for (long it = 0; it < its; it++) {
    /* One thread trims now and then: its superblocks and the global
     * heap's lose the pages of free blocks while the others free into
     * them, and the holes come back as it allocates. */
    if ((uintptr_t)arg == 0 && it % TRIM_EVERY == TRIM_EVERY - 1)
      umpa_malloc_trim(0);
    size_t i = (size_t)(r >> 7) % SLOTS;
    size_t n = random_size(&r);
    unsigned op = (unsigned)(r % 10);
    if (!slot[i]) {
      /* Aligned blocks too: inside superblocks (the first aligned block of
       * a run, blocks in front of the header) and windows of large ones,
       * all freed by whichever thread gets them. */
      size_t align = (size_t)16 << ((r >> 40) % 18); /* 16 B to 2 MiB */
      if (op < 2) {
        slot[i] = umpa_calloc(1, n);
        align = 16;
      } else if (op == 2) {
        void *q = NULL;
        slot[i] = umpa_posix_memalign(&q, align, n) == 0 ? q : NULL;
      } else if (op == 3) {
        slot[i] = umpa_aligned_alloc(align, n);
      } else {
        slot[i] = umpa_malloc(n);
        align = 16;
      }
      if (!slot[i]) {
        bad("malloc");
        continue;
      }
      if ((uintptr_t)slot[i] & (align - 1)) bad("requested alignment");
      if (op < 2) {
        for (size_t k = 0; k < n; k++)
          if (slot[i][k]) {
            fprintf(stderr, "calloc(1, %zu) = %p: byte %zu is %#x\n", n,
                    (void *)slot[i], k, slot[i][k]);
            bad("calloc not zero");
            break;
          }
      }
      if (umpa_malloc_usable_size(slot[i]) < n) bad("usable size");
      if ((uintptr_t)slot[i] & 15) bad("alignment");
      fill(slot[i], n, r);
    } else if (op < 4) {
      if (!intact(slot[i])) bad("contents before free");
      umpa_free(slot[i]);
      slot[i] = NULL;
    } else if (op < 8) {
      if (!intact(slot[i])) bad("contents before handing over");
      unsigned char *got = atomic_exchange(&mailbox[r % MAILBOX], slot[i]);
      slot[i] = NULL;
      if (got) {
        if (!intact(got)) bad("contents of a received block");
        umpa_free(got);
      }
    } else {
      if (!intact(slot[i])) bad("contents before realloc");
      size_t old;
      memcpy(&old, slot[i], 8);
      unsigned char *q = umpa_realloc(slot[i], n);
      if (!q) {
        bad("realloc");
        continue;
      }
      size_t keep = n < old ? n : old;
      memcpy(q, &keep, 8); /* the prefix must have survived */
      if (!intact(q)) bad("contents after realloc");
      slot[i] = q;
      fill(q, n, r);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i]) {
      if (!intact(slot[i])) bad("final contents");
      umpa_free(slot[i]);
    }
  return NULL;
}

int main(int argc, char **argv) {
  /* A count given (the checked variant's) is scaled down too. */
  iterations = test_scaled(argc > 1 ? atol(argv[1]) : iterations);
  pthread_t th[MANY_THREADS];
  its = iterations;
  for (uintptr_t i = 0; i < THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  its = iterations / 16 + 1;
  for (uintptr_t i = 0; i < MANY_THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
  for (int i = 0; i < MANY_THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < MAILBOX; i++) {
    unsigned char *p = atomic_exchange(&mailbox[i], NULL);
    if (p) {
      CHECK(intact(p));
      umpa_free(p);
    }
  }
  CHECK(atomic_load(&failures) == 0);
  /* Every block is back: after a trim nothing of the heap is in use. */
  umpa_malloc_trim(0);
  struct umpa_mallinfo mi = umpa_mallinfo();
  CHECK_MSG(mi.uordblks == 0, "%zu bytes still in use", mi.uordblks);
  CHECK_MSG(mi.hblks == 0, "%zu large blocks left", mi.hblks);
  umpa_page_check();
  return check_done("test_mt_malloc_stress");
}
