/*
 * test_mt_held.c - a thread's freed large blocks, held for its next malloc
 * of the same size (src/held.c): reused whole (by calloc too, cleared),
 * held only for a size the thread asked for lately and not while the
 * caches are off; released by the heap's tick, by malloc_trim from
 * another thread (the owner idle or busy) and by the thread's exit;
 * counted by mallinfo as free, not in use.  Blocks aligned past a page
 * are cut to their own pages and held like the others.  One lazy block of
 * up to 16 MiB is held besides, while lazy blocks are found sparse; it
 * serves a malloc of down to half its size, and of two such the bigger
 * stays while its size is asked for.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <umpa.h>

#include "large.h"

static size_t held_now(void) {
  size_t blocks;
  return heap_held_bytes(&blocks);
}

/* A 64 KiB buffer malloc'd and freed again and again is one block. */
static void test_reuse(void) {
  umpa_malloc_trim(0);
  struct umpa_mallinfo before = umpa_mallinfo();
  char *p = umpa_malloc(64 * KiB);
  REQUIRE(p);
  memset(p, 5, 64 * KiB);
  umpa_free(p);
  CHECK(held_now() == 64 * KiB);
  struct umpa_mallinfo freed = umpa_mallinfo();
  CHECK(freed.hblks == before.hblks && freed.hblkhd == before.hblkhd);
  CHECK(freed.fordblks >= before.fordblks + 64 * KiB);
  bool same = true;
  for (int i = 0; i < 1000; i++) {
    char *q = umpa_malloc(64 * KiB - 100); /* the same 16 pages */
    if (q != p) same = false;
    q[0] = 1;
    umpa_free(q);
  }
  CHECK(same);
  /* calloc takes a held block only if all its pages have memory, and
   * clears it: a block of up to 128 KiB is taken as touched whole when it
   * is held, as the large cache takes it (a bigger one handed out lazily
   * may have holes, which read as zero without being populated). */
  char *z = umpa_calloc(1, 64 * KiB);
  REQUIRE(z);
  size_t nonzero = 0;
  for (size_t i = 0; i < 64 * KiB; i++) nonzero += z[i] != 0;
  CHECK(nonzero == 0);
  memset(z, 9, 64 * KiB);
  umpa_free(z);
  for (int round = 0; round < 3; round++) {
    char *y = umpa_calloc(1, 64 * KiB);
    REQUIRE(y);
    nonzero = 0;
    for (size_t i = 0; i < 64 * KiB; i++) nonzero += y[i] != 0;
    CHECK_MSG(nonzero == 0, "%zu bytes not zero", nonzero);
    CHECK(y == z);
    memset(y, 9, 64 * KiB);
    umpa_free(y);
  }
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
}

/* Free lazy 200 KiB blocks, untouched or filled, through the large cache
 * (which asks the kernel which of their pages have memory) until the
 * share of their pages touched says `sparse`. */
static void set_lazy_mode(bool sparse) {
  for (int i = 0; i < 400 && largecache_lazy_sparse() != sparse; i++) {
    char *p = umpa_malloc(200 * KiB);
    REQUIRE(p);
    if (!sparse) memset(p, 1, 200 * KiB);
    largecache_ask_after(0); /* its free asks, whatever the last cost */
    umpa_free(p);
    held_flush(umpa_tl_heap); /* held, as a size just asked for */
    umpa_malloc_trim(0); /* the next one lazy again, not the same pages */
  }
  REQUIRE_MSG(largecache_lazy_sparse() == sparse, "lazy blocks not %s",
              sparse ? "sparse" : "dense");
}

/* A block whose size the thread did not ask for in its last HEAP_HELD
 * large mallocs goes to the large cache: in a ring of varied blocks,
 * held ones would stand between spans that could merge. */
static void test_only_wanted(void) {
  umpa_malloc_trim(0);
  set_lazy_mode(false); /* else one block above 1 MiB may be held */
  char *p = umpa_malloc(100 * KiB);
  REQUIRE(p);
  char *other[HEAP_HELD];
  for (int i = 0; i < HEAP_HELD; i++) {
    other[i] = umpa_malloc((size_t)(1100 + 100 * i) * KiB);
    REQUIRE(other[i]);
    /* Filled: as the large cache learns of them, lazy blocks stay dense. */
    memset(other[i], 1, (size_t)(1100 + 100 * i) * KiB);
  }
  umpa_free(p);
  CHECK(held_now() == 0);
  /* 1.1-1.4 MiB: bigger than HEAP_HELD_PAGES, and lazy blocks dense. */
  for (int i = 0; i < HEAP_HELD; i++) umpa_free(other[i]);
  CHECK(held_now() == 0);
  /* Of the sizes asked for lately, up to HEAP_HELD are held; a fifth
   * evicts one, and so does a block that would pass HEAP_HELD_PAGES in
   * all. */
  char *b[HEAP_HELD + 1];
  for (int i = 0; i <= HEAP_HELD; i++) {
    b[i] = umpa_malloc((size_t)(40 + 8 * i) * KiB);
    REQUIRE(b[i]);
  }
  for (int i = 0; i <= HEAP_HELD; i++) umpa_free(b[i]);
  size_t blocks;
  heap_held_bytes(&blocks);
  CHECK_MSG(blocks == HEAP_HELD - 1 || blocks == HEAP_HELD,
            "%zu blocks held", blocks);
  char *big = umpa_malloc(900 * KiB);
  REQUIRE(big);
  umpa_free(big);
  size_t bytes = heap_held_bytes(&blocks);
  CHECK_MSG(bytes <= (size_t)HEAP_HELD_PAGES * 4096 && bytes >= 900 * KiB,
            "%zu bytes held in %zu blocks", bytes, blocks);
  umpa_malloc_trim(0);
}

/* A held block of up to 1 MiB serves a malloc of its number of pages
 * only; the big one also serves a malloc of down to half its size,
 * keeping its size, after any held block that fits exactly. */
static void test_fits(void) {
  umpa_malloc_trim(0);
  forget_held();
  set_lazy_mode(true);
  char *a = umpa_malloc(100 * KiB);
  REQUIRE(a);
  memset(a, 1, 100 * KiB);
  umpa_free(a);
  CHECK(held_now() == 100 * KiB);
  char *c = umpa_malloc(60 * KiB);
  REQUIRE(c);
  CHECK(c != a);
  umpa_free(c);
  char *d = umpa_malloc(100 * KiB - 100);
  CHECK(d == a);
  umpa_free(d);
  umpa_malloc_trim(0);
  forget_held();
  char *m = umpa_malloc(MiB), *big = umpa_malloc(3 * MiB / 2);
  REQUIRE(m && big);
  m[0] = big[0] = 1;
  umpa_free(m);
  umpa_free(big);
  CHECK_MSG(held_now() == 5 * MiB / 2, "%zu bytes held", held_now());
  char *e = umpa_malloc(MiB - 100), *f = umpa_malloc(MiB);
  CHECK(e == m && f == big);
  CHECK(umpa_malloc_usable_size(f) == 3 * MiB / 2);
  CHECK(f[0] == 1); /* the program's own bytes */
  umpa_free(e);
  umpa_free(f);
  char *g = umpa_malloc(700 * KiB); /* less than half the big one */
  REQUIRE(g);
  CHECK(g != big && g != m);
  umpa_free(g);
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
  umpa_page_check();
}

/* A buffer sized to each request, of 1.125 to 2 MiB in turn and written a
 * byte per 64 KiB (as bench/buffers' sparsevar), is one block once the
 * biggest was freed: exact sizes alone missed every time.  Of two big
 * blocks freed, the bigger stays held while the thread asks for its size. */
static void test_varied_big(void) {
  umpa_malloc_trim(0);
  forget_held();
  set_lazy_mode(true);
  char *seen = NULL;
  bool same = true;
  for (int i = 0; i < 64; i++) {
    size_t n = MiB + (size_t)(i % 8 + 1) * (MiB / 8);
    char *p = umpa_malloc(n);
    REQUIRE(p);
    for (size_t at = 0; at < n; at += 64 * KiB) p[at] = (char)i;
    if (i == 8) seen = p;
    if (i >= 8 && p != seen) same = false;
    umpa_free(p);
  }
  CHECK(same);
  CHECK_MSG(held_now() == 2 * MiB, "%zu bytes held", held_now());
  char *x = umpa_malloc(2 * MiB), *y = umpa_malloc(1200 * KiB);
  REQUIRE(x && y);
  CHECK(x == seen && y != seen);
  x[0] = y[0] = 1;
  umpa_free(x);
  umpa_free(y); /* smaller: released, x stays */
  CHECK_MSG(held_now() == 2 * MiB, "%zu bytes held", held_now());
  x = umpa_malloc(2 * MiB);
  y = umpa_malloc(1200 * KiB);
  REQUIRE(x && y);
  CHECK(x == seen);
  x[0] = y[0] = 1;
  umpa_free(y);
  CHECK(held_now() == 1200 * KiB);
  umpa_free(x); /* bigger: replaces y */
  CHECK_MSG(held_now() == 2 * MiB, "%zu bytes held", held_now());
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
  umpa_page_check();
}

/* Holding is caching: with either cache turned off, nothing is held. */
static void test_caches_off(void) {
  umpa_malloc_trim(0);
  size_t was = umpa_opt.large_cache;
  bool fixed = umpa_opt.large_cache_fixed;
  umpa_opt.large_cache = 0;
  umpa_opt.large_cache_fixed = true;
  umpa_free(umpa_malloc(64 * KiB));
  umpa_free(umpa_malloc(64 * KiB));
  CHECK(held_now() == 0);
  umpa_opt.large_cache = was;
  umpa_opt.large_cache_fixed = fixed;
  size_t old = umpa_page_cache_limit(0);
  umpa_free(umpa_malloc(64 * KiB));
  umpa_free(umpa_malloc(64 * KiB));
  CHECK(held_now() == 0);
  umpa_page_cache_limit(old);
  umpa_free(umpa_malloc(64 * KiB));
  CHECK(held_now() == 64 * KiB);
  umpa_malloc_trim(0);
}

/* Blocks not taken back by the heap's second tick are released.  Ticks
 * come every 16 slow-path events: a few thousand superblocks' worth of
 * small blocks bring many. */
static void test_aged(void) {
  umpa_malloc_trim(0);
  char *p = umpa_malloc(64 * KiB);
  REQUIRE(p);
  umpa_free(p);
  CHECK(held_now() == 64 * KiB);
  enum { N = 100000 };
  static void *small[N];
  for (int i = 0; i < N; i++) {
    small[i] = umpa_malloc(16 + (size_t)(i % 64) * 16);
    REQUIRE(small[i]);
  }
  CHECK(held_now() == 0);
  for (int i = 0; i < N; i++) umpa_free(small[i]);
  umpa_malloc_trim(0);
}

/* malloc_trim from another thread takes the blocks of a thread that holds
 * some and sleeps; its exit releases what it holds. */
static pthread_barrier_t meet;

/* A 96 KiB block, written, freed: held by the thread. */
static void hold_one(void) {
  char *p = umpa_malloc(96 * KiB);
  REQUIRE(p);
  memset(p, 3, 96 * KiB);
  umpa_free(p);
}

static void *idle_holder(void *arg) {
  (void)arg;
  hold_one();
  pthread_barrier_wait(&meet); /* holding it */
  pthread_barrier_wait(&meet); /* trimmed */
  char *q = umpa_malloc(96 * KiB);
  REQUIRE(q);
  umpa_free(q); /* held again, until the thread exits */
  pthread_barrier_wait(&meet);
  pthread_barrier_wait(&meet); /* counted */
  return NULL;
}

static void test_trim_and_exit(void) {
  umpa_malloc_trim(0);
  pthread_barrier_init(&meet, NULL, 2);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, idle_holder, NULL) == 0);
  pthread_barrier_wait(&meet);
  CHECK(held_now() == 96 * KiB);
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
  pthread_barrier_wait(&meet);
  pthread_barrier_wait(&meet);
  CHECK(held_now() == 96 * KiB);
  pthread_barrier_wait(&meet);
  pthread_join(t, NULL);
  CHECK(held_now() == 0);
  pthread_barrier_destroy(&meet);
  umpa_page_check();
}

/* Without membarrier (a kernel before 4.14, or a seccomp filter) a trim
 * cannot take a thread's blocks from under it: it asks, and the owner
 * releases them at its next tick. */
static void *asked_holder(void *arg) {
  (void)arg;
  hold_one();
  pthread_barrier_wait(&meet); /* holding it */
  pthread_barrier_wait(&meet); /* trimmed: asked only */
  held_age(umpa_tl_heap);      /* its first tick since: not an old slot */
  pthread_barrier_wait(&meet);
  pthread_barrier_wait(&meet); /* counted */
  return NULL;
}

static void test_trim_without_fence(void) {
  umpa_malloc_trim(0);
  pthread_barrier_init(&meet, NULL, 2);
  held_no_fence = true;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, asked_holder, NULL) == 0);
  pthread_barrier_wait(&meet);
  CHECK(held_now() == 96 * KiB);
  umpa_malloc_trim(0);
  CHECK(held_now() == 96 * KiB);
  pthread_barrier_wait(&meet);
  pthread_barrier_wait(&meet);
  CHECK(held_now() == 0);
  pthread_barrier_wait(&meet);
  pthread_join(t, NULL);
  held_no_fence = false;
  pthread_barrier_destroy(&meet);
  umpa_page_check();
}

/* Owners reuse their blocks while another thread trims in a loop: each
 * block is taken by exactly one of them, and no bytes are lost. */
static _Atomic bool stop;

static void *owner(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  long rounds = getenv("UMPA_TEST_QUICK") ? 20000 : 200000;
  for (long i = 0; i < rounds; i++) {
    size_t n = (size_t)(48 + 16 * (i % 3) + 4 * id) * KiB;
    char *p = umpa_malloc(n);
    REQUIRE(p);
    long tag = i ^ (long)id << 40;
    memcpy(p, &tag, sizeof tag);
    memcpy(p + n - sizeof tag, &tag, sizeof tag);
    long a, b;
    memcpy(&a, p, sizeof a);
    memcpy(&b, p + n - sizeof b, sizeof b);
    if (a != tag || b != tag) {
      CHECK_MSG(false, "block %p of thread %lu overwritten", (void *)p,
                (unsigned long)id);
      break;
    }
    umpa_free(p);
  }
  return NULL;
}

static void *trimmer(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) umpa_malloc_trim(0);
  return NULL;
}

static void test_trim_races_owners(void) {
  pthread_t own[3], trim;
  REQUIRE(pthread_create(&trim, NULL, trimmer, NULL) == 0);
  for (uintptr_t i = 0; i < 3; i++)
    REQUIRE(pthread_create(&own[i], NULL, owner, (void *)i) == 0);
  for (int i = 0; i < 3; i++) pthread_join(own[i], NULL);
  atomic_store(&stop, true);
  pthread_join(trim, NULL);
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
  umpa_page_check();
}

/* A block aligned past a page holds exactly its own pages (the rest of
 * the run it was cut from goes back at once), and is held and reused like
 * any other: aligned_alloc(8192, 8192) and free took 308 ns a pair when
 * the whole run was the block and was never held or cached. */
static void test_aligned(void) {
  static const size_t aligns[] = {8 * KiB, 64 * KiB, 1024 * KiB,
                                  2048 * KiB};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t a = aligns[i], n = a - 100;
    held_flush(umpa_tl_heap);
    struct umpa_mallinfo before = umpa_mallinfo();
    char *p = umpa_aligned_alloc(a, n);
    REQUIRE(p);
    CHECK_MSG((uintptr_t)p % a == 0, "%p not aligned to %zu", (void *)p, a);
    CHECK(umpa_malloc_usable_size(p) == a);
    memset(p, 7, n);
    struct umpa_mallinfo mid = umpa_mallinfo();
    CHECK_MSG(mid.hblkhd - before.hblkhd == a && mid.hblks == before.hblks + 1,
              "align %zu: %zu bytes in %zu more large blocks", a,
              mid.hblkhd - before.hblkhd, mid.hblks - before.hblks);
    umpa_free(p);
    /* Up to 1 MiB the thread holds it for its next request of the size,
     * which that alignment then finds. */
    bool same = true, aligned = true;
    for (int k = 0; k < 100; k++) {
      char *q = umpa_aligned_alloc(a, n);
      REQUIRE(q);
      if (q != p) same = false;
      if ((uintptr_t)q % a) aligned = false;
      q[n - 1] = 1;
      umpa_free(q);
    }
    CHECK(aligned);
    if (a <= 1024 * KiB) CHECK_MSG(same, "align %zu: not reused", a);
    /* A held block of the size but not of the alignment is left held. */
    char *u = umpa_malloc(n);
    REQUIRE(u);
    umpa_free(u);
    char *v = umpa_aligned_alloc(a, n);
    REQUIRE(v);
    CHECK((uintptr_t)v % a == 0);
    umpa_free(v);
  }
  held_flush(umpa_tl_heap);
  umpa_malloc_trim(0);
  umpa_page_check();
}

/* While lazy blocks are found sparse, a thread holds one lazy block of up
 * to 16 MiB besides: a buffer malloc'd for the largest request and used
 * a little, freed again and again, escapes the kernel's residency check
 * (4.7 us a pair for 4 MiB, 2.8 for aligned_alloc(2 MiB, 2 MiB)).  A
 * second such block replaces the first; calloc does not take it (its
 * holes are not known); the tick releases it; and while lazy blocks are
 * dense, or the block was populated, or is bigger, none is held. */
static void test_big_lazy(void) {
  umpa_malloc_trim(0);
  set_lazy_mode(true);
  char *p = umpa_aligned_alloc(2 * MiB, 2 * MiB);
  REQUIRE(p);
  p[0] = 1;
  umpa_free(p);
  CHECK(held_now() == 2 * MiB);
  bool same = true;
  for (int i = 0; i < 1000; i++) {
    char *q = umpa_aligned_alloc(2 * MiB, 2 * MiB);
    REQUIRE(q);
    if (q != p) same = false;
    CHECK(q[0] == (char)(i == 0 ? 1 : 2)); /* its pages were kept */
    q[0] = 2;
    umpa_free(q);
  }
  CHECK(same);
  /* 4 MiB, one byte written in two of its pages: replaces the 2 MiB. */
  char *b = umpa_malloc(4 * MiB);
  REQUIRE(b);
  b[0] = b[3 * MiB] = 3;
  umpa_free(b);
  CHECK_MSG(held_now() == 4 * MiB, "%zu bytes held", held_now());
  /* calloc gets zeroes, not the held block. */
  char *z = umpa_calloc(1, 4 * MiB);
  REQUIRE(z);
  CHECK(z != b);
  size_t nonzero = 0;
  for (size_t i = 0; i < 4 * MiB; i += 512) nonzero += z[i] != 0;
  CHECK_MSG(nonzero == 0, "%zu bytes not zero", nonzero);
  umpa_free(z);
  char *c = umpa_malloc(4 * MiB);
  REQUIRE(c);
  CHECK(c == b || c == z);
  umpa_free(c);
  CHECK(held_now() == 4 * MiB);
  /* The heap's ticks release it like any held block. */
  enum { N = 100000 };
  static void *small[N];
  for (int i = 0; i < N; i++)
    REQUIRE((small[i] = umpa_malloc(16 + (size_t)(i % 64) * 16)));
  CHECK(held_now() == 0);
  for (int i = 0; i < N; i++) umpa_free(small[i]);
  /* Bigger than 16 MiB: not held. */
  char *huge = umpa_malloc(17 * MiB);
  REQUIRE(huge);
  huge[0] = 1;
  umpa_free(huge);
  CHECK(held_now() == 0);
  /* A block populated in malloc (UMPA_MALLOC_POPULATE here) is not held
   * above 1 MiB: its pages all have memory, whatever the program wrote. */
  size_t was = umpa_opt.malloc_populate;
  umpa_opt.malloc_populate = 8 * MiB;
  char *f = umpa_malloc(3 * MiB);
  REQUIRE(f);
  umpa_free(f);
  CHECK(held_now() == 0);
  umpa_opt.malloc_populate = was;
  /* Lazy blocks dense: none is held above 1 MiB. */
  set_lazy_mode(false);
  char *d = umpa_malloc(3 * MiB);
  REQUIRE(d);
  umpa_free(d);
  CHECK(held_now() == 0);
  umpa_malloc_trim(0);
  CHECK(held_now() == 0);
  umpa_page_check();
}

int main(void) {
  test_reuse();
  test_aligned();
  test_only_wanted();
  test_fits();
  test_big_lazy();
  test_varied_big();
  test_caches_off();
  test_aged();
  test_trim_and_exit();
  test_trim_without_fence();
  test_trim_races_owners();
  return check_done("test_mt_held");
}
