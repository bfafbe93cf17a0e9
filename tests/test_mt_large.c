/*
 * test_mt_large.c - threads malloc, write, check and free large blocks of
 * 64 KiB-4 MiB at once, so that the large-block cache's arenas are all in
 * use: some blocks written whole and some a page in 16 (loose spans),
 * some calloc'd and checked zero, some grown by realloc (into the span
 * after them, which may be another arena's), and many handed to the next
 * thread to free (into the freeing thread's arena, next to spans of the
 * arena that cut them); some are aligned by posix_memalign.  Now and
 * then a thread allocates a burst of small blocks and frees them all, so
 * that the store holds empty superblocks that other threads' large blocks
 * take back (store_spill_for) while their owners store and take
 * superblocks.  One thread trims now and then.  At the end every block is
 * freed, the caches trimmed and the page layer checked.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <string.h>

#define THREADS 4
#define SLOTS 16
#define MAILBOX 32
#define PAGE 4096
#define KiB ((size_t)1 << 10)

struct blk {
  unsigned char *p;
  size_t n;
  unsigned seed;
  bool whole; /* every byte written, else a byte a page in 16 */
};

static _Atomic(struct blk *) mailbox[MAILBOX];
static _Atomic int failures;
/* Under TSan every byte written is checked: a tenth as many (15 s). */
static long iterations = UNDER_TSAN ? 250 : 2500;

static uint64_t next_rand(uint64_t *r) {
  *r ^= *r << 13;
  *r ^= *r >> 7;
  *r ^= *r << 17;
  return *r;
}

static void bad(const char *what, size_t at) {
  fprintf(stderr, "failure: %s at byte %zu\n", what, at);
  atomic_fetch_add(&failures, 1);
}

static unsigned char byte_at(const struct blk *b, size_t i) {
  return (unsigned char)(b->seed + i / PAGE * 7 + i);
}

/* The bytes a block holds: all of them, or the first of every 16th page
 * (the rest of a sparse block is never written nor read). */
static void fill(struct blk *b) {
  if (b->whole) {
    for (size_t i = 0; i < b->n; i++) b->p[i] = byte_at(b, i);
  } else {
    for (size_t i = 0; i < b->n; i += 16 * PAGE) b->p[i] = byte_at(b, i);
  }
}

static bool check(const struct blk *b, size_t n) {
  if (b->whole) {
    for (size_t i = 0; i < n; i += 509)
      if (b->p[i] != byte_at(b, i)) {
        bad("content", i);
        return false;
      }
  } else {
    for (size_t i = 0; i < n; i += 16 * PAGE)
      if (b->p[i] != byte_at(b, i)) {
        bad("sparse content", i);
        return false;
      }
  }
  return true;
}

static void release(struct blk *b) {
  check(b, b->n);
  umpa_free(b->p);
  umpa_free(b);
}

/* A phase of small blocks: written, checked and all freed. */
static void burst(uint64_t *r) {
  enum { N = 60000 };
  static __thread unsigned char *small[N];
  for (unsigned k = 0; k < N; k++) {
    small[k] = umpa_malloc(48);
    if (!small[k]) {
      bad("malloc of a small block", k);
      return;
    }
    memset(small[k], (int)(k & 0x7f), 48);
  }
  for (unsigned k = 0; k < N; k++) {
    if (small[k][47] != (unsigned char)(k & 0x7f)) bad("small content", k);
    umpa_free(small[k]);
  }
  (void)next_rand(r);
}

static void *worker(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  uint64_t r = 0x9E3779B97F4A7C15ull * (id + 1);
  struct blk *slot[SLOTS] = {0};
  for (long it = 0; it < iterations; it++) {
    if (id == 0 && it % 500 == 499) umpa_malloc_trim(0);
    if (it % 50 == (long)id * 12) burst(&r);
    unsigned i = (unsigned)(next_rand(&r) % SLOTS);
    struct blk *b = slot[i];
    uint64_t what = next_rand(&r) % 16;
    if (b && what == 0) {
      /* Grown by half: in place into a span after it, or moved. */
      size_t n = b->n + b->n / 2;
      unsigned char *q = umpa_realloc(b->p, n);
      if (!q) {
        bad("realloc", n);
        continue;
      }
      b->p = q;
      if (!check(b, b->n)) continue;
      b->n = n;
      fill(b);
      continue;
    }
    if (b) {
      slot[i] = NULL;
      /* Every third block goes to the next thread to free. */
      unsigned m = (unsigned)(next_rand(&r) % MAILBOX);
      if (what % 3 == 1) b = atomic_exchange(&mailbox[m], b);
      if (b) release(b);
    }
    b = umpa_malloc(sizeof *b);
    if (!b) {
      bad("malloc of a record", 0);
      continue;
    }
    b->n = 64 * KiB + (size_t)(next_rand(&r) % (4032 * KiB));
    b->seed = (unsigned)next_rand(&r);
    b->whole = what % 4 == 0;
    bool zero = what % 5 == 2;
    if (!zero && what % 7 == 3) {
      /* Aligned: a window of a cached span, or a run with its ends given
       * back. */
      size_t align = 64 * KiB << (next_rand(&r) % 6);
      void *q = NULL;
      if (umpa_posix_memalign(&q, align, b->n) == 0 &&
          ((uintptr_t)q & (align - 1)))
        bad("alignment", align);
      b->p = q;
    } else {
      b->p = zero ? umpa_calloc(1, b->n) : umpa_malloc(b->n);
    }
    if (!b->p) {
      bad("malloc", b->n);
      umpa_free(b);
      continue;
    }
    if (zero)
      for (size_t k = 0; k < b->n; k += 4093)
        if (b->p[k] != 0) {
          bad("calloc not zero", k);
          break;
        }
    fill(b);
    slot[i] = b;
  }
  for (unsigned i = 0; i < SLOTS; i++)
    if (slot[i]) release(slot[i]);
  return NULL;
}

static void *free_them(void *arg) {
  void **v = arg;
  for (unsigned i = 0; i < 8; i++) umpa_free(v[i]);
  return NULL;
}

/* mallinfo's large blocks (hblks, hblkhd) are counted per heap, a block
 * freed by another thread than its own taken off the freeing thread's
 * count: the sum over the heaps still says what is in use. */
static void test_counts_across_threads(void) {
  struct umpa_mallinfo m0 = umpa_mallinfo();
  void *v[8];
  size_t bytes = 0;
  for (unsigned i = 0; i < 8; i++) {
    size_t n = 256 * KiB + i * PAGE;
    REQUIRE((v[i] = umpa_malloc(n)));
    bytes += n;
  }
  struct umpa_mallinfo m1 = umpa_mallinfo();
  CHECK_MSG(m1.hblks == m0.hblks + 8 && m1.hblkhd == m0.hblkhd + bytes,
            "%zu large blocks (%zu bytes) in use, %zu (%zu) before",
            (size_t)m1.hblks, (size_t)m1.hblkhd, (size_t)m0.hblks,
            (size_t)m0.hblkhd);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, free_them, v) == 0);
  pthread_join(t, NULL);
  struct umpa_mallinfo m2 = umpa_mallinfo();
  CHECK_MSG(m2.hblks == m0.hblks && m2.hblkhd == m0.hblkhd,
            "%zu large blocks (%zu bytes) in use once another thread freed "
            "them, %zu (%zu) before",
            (size_t)m2.hblks, (size_t)m2.hblkhd, (size_t)m0.hblks,
            (size_t)m0.hblkhd);
}

/* A thread whose own arena has no span for a request takes another
 * arena's only for its memory.  A new thread's first large block is not
 * cut from the cold rest of the stretch another thread's block came from
 * (the two threads' blocks would lie side by side for good, writing the
 * same lines of the page bitmaps and span marks), but a block another
 * thread freed, with its memory, is taken back (a thread that frees what
 * another mallocs strands nothing). */
static void *malloc_one(void *arg) {
  size_t n = (size_t)(uintptr_t)arg;
  unsigned char *p = umpa_malloc(n);
  if (p) memset(p, 9, n);
  return p;
}

static void *malloc_free_one(void *arg) {
  void *p = malloc_one(arg);
  umpa_free(p); /* held, then cached when the thread exits */
  return p;
}

static void *run_one(void *(*fn)(void *), size_t n) {
  pthread_t t;
  void *p = NULL;
  REQUIRE(pthread_create(&t, NULL, fn, (void *)(uintptr_t)n) == 0);
  pthread_join(t, &p);
  return p;
}

static void test_other_arenas(void) {
  umpa_malloc_trim(0);
  const size_t MiB = (size_t)1 << 20;
  unsigned char *first = umpa_malloc(MiB);
  REQUIRE(first);
  size_t rest = 0;
  largecache_spans(&rest); /* the cold rest of first's stretch */
  REQUIRE(rest >= MiB);
  unsigned char *q = run_one(malloc_one, 256 * KiB);
  REQUIRE(q);
  CHECK_MSG(q < first || q >= first + MiB + rest,
            "a new thread's block %p in the stretch of block %p", (void *)q,
            (void *)first);
  unsigned char *w = run_one(malloc_free_one, 512 * KiB);
  unsigned char *z = run_one(malloc_one, 512 * KiB);
  CHECK_MSG(z == w, "block %p, another thread freed %p", (void *)z,
            (void *)w);
  CHECK(z && z[0] == 9 && z[512 * KiB - 1] == 9);
  umpa_free(z);
  umpa_free(q);
  umpa_free(first);
  umpa_malloc_trim(0);
}

/* A block freed by a thread other than the one whose arena it was cut
 * from goes back to that arena (a producer's buffers that a consumer frees
 * come back to the producer, instead of piling up in the consumer's arena
 * while the producer faults in new ones).  Its thread lists it at its next
 * lock of the arena; a thread that has returned many blocks to an idle
 * arena lists them itself. */
struct returns {
  unsigned char **blk;
  int n;
  size_t listed; /* the cache's bytes after the frees */
};

static void *free_all(void *arg) {
  struct returns *r = arg;
  umpa_free(umpa_malloc(16)); /* a heap, and an arena, of its own */
  for (int i = 0; i < r->n; i++) umpa_free(r->blk[i]);
  r->listed = largecache_bytes();
  return NULL;
}

static void test_returned_to_origin(void) {
  umpa_malloc_trim(0);
  const size_t n = 192 * KiB;
  unsigned char *b = umpa_malloc(n);
  REQUIRE(b);
  memset(b, 4, n);
  struct returns one = {&b, 1, 0};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, free_all, &one) == 0);
  pthread_join(t, NULL);
  unsigned char *again = umpa_malloc(n);
  CHECK_MSG(again == b, "block %p, freed by another thread %p",
            (void *)again, (void *)b);
  CHECK(again && again[0] == 4 && again[n - 1] == 4);
  umpa_free(again);
  umpa_malloc_trim(0);
  /* 40 blocks: the freeing thread lists them once it has returned 32 (or
   * 8 MiB), as this thread takes no lock of its arena meanwhile. */
  enum { MANY = 40 };
  unsigned char *many[MANY];
  for (int i = 0; i < MANY; i++) {
    REQUIRE(many[i] = umpa_malloc(64 * KiB + (size_t)i * 4096));
    many[i][0] = 1;
  }
  size_t before = largecache_bytes();
  struct returns all = {many, MANY, 0};
  REQUIRE(pthread_create(&t, NULL, free_all, &all) == 0);
  pthread_join(t, NULL);
  CHECK_MSG(all.listed >= before + 28 * 64 * KiB,
            "%zu bytes cached after another thread freed %d blocks, %zu "
            "before", all.listed, MANY, before);
  umpa_malloc_trim(0);
  CHECK(umpa_page_check() == 0);
}

int main(int argc, char **argv) {
  if (argc > 1) iterations = atol(argv[1]);
  test_counts_across_threads();
  test_other_arenas();
  test_returned_to_origin();
  pthread_t th[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  CHECK_MSG(largecache_arenas() >= 2, "%u large-cache arenas used",
            largecache_arenas());
  for (unsigned m = 0; m < MAILBOX; m++) {
    struct blk *b = atomic_exchange(&mailbox[m], NULL);
    if (b) release(b);
  }
  CHECK(atomic_load(&failures) == 0);
  /* (13-58 in a run here; the sanitizers' runs are too short or slow to
   * count on one, and with UMPA_PAGE_CACHE=0 nothing is stored.) */
  printf("test_mt_large: %llu windows of stored superblocks given back\n",
         (unsigned long long)store_spills());
  if (!UNDER_ASAN && !UNDER_TSAN && iterations >= 2500 && cache_limit_max())
    CHECK(store_spills() > 0);
  /* Every large block freed, a third of them by another thread than the
   * one that allocated it: the heaps' counts sum to none in use. */
  struct umpa_mallinfo mi = umpa_mallinfo();
  CHECK_MSG(mi.hblks == 0 && mi.hblkhd == 0,
            "%zu large blocks (%zu bytes) counted in use after all were freed",
            (size_t)mi.hblks, (size_t)mi.hblkhd);
  umpa_malloc_trim(0);
  CHECK(umpa_page_check() == 0);
  CHECK_MSG(largecache_bytes() == 0, "%zu bytes cached after a trim",
            largecache_bytes());
  return check_done("test_mt_large");
}
