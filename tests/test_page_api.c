/*
 * test_page_api.c - every call and flag of the page layer, with its error
 * cases, checked against the contracts in include/umpa.h.
 */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define PG ((size_t)UMPA_PAGE_SIZE)

static struct umpa_page_stats st(void) {
  struct umpa_page_stats s;
  umpa_page_stats(&s);
  return s;
}

/* Pages of [p, p+n pages) that are resident. */
static size_t resident(void *p, size_t n) { return resident_pages(p, n * PG); }

static void fill(void *p, size_t bytes, unsigned seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < bytes; i++) c[i] = (unsigned char)(seed + i * 7);
}

static bool holds(const void *p, size_t bytes, unsigned seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < bytes; i++)
    if (c[i] != (unsigned char)(seed + i * 7)) return false;
  return true;
}

static bool all_zero(const void *p, size_t bytes) {
  const unsigned char *c = p;
  for (size_t i = 0; i < bytes; i++)
    if (c[i]) return false;
  return true;
}

static void test_malloc_errors(void) {
  errno = 0;
  CHECK(userpage_malloc(0, 0) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(userpage_malloc(PG, 0x8000u) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(userpage_malloc(PG, UMPA_NOMOVE) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(userpage_malloc(SIZE_MAX, 0) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(userpage_malloc((size_t)1 << 60, 0) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(userpage_malloc(SIZE_MAX - PG + 2, UMPA_LAZY) == NULL &&
        errno == ENOMEM);
  userpage_free(NULL, 0);
  userpage_free(NULL, 12345);
  umpa_page_check();
}

/* A block the kernel's overcommit policy refuses gets ENOMEM up front,
 * not a region reserved MAP_NORESERVE (which the default policy lets
 * through) and a populate the OOM killer answers; so does a growth by that
 * much.  A reservation is address space only and is not asked about. */
static void test_beyond_memory(void) {
  int mode;
  bool limited;
  size_t n = refused_size(&mode, &limited);
  if (!n) return;
  errno = 0;
  void *lazy = userpage_malloc(n, UMPA_LAZY | UMPA_ZERO);
  CHECK(lazy == NULL && errno == ENOMEM);
  if (lazy) { /* asking nobody: do not populate it into the OOM killer */
    userpage_free(lazy, n);
    return;
  }
  errno = 0;
  CHECK(userpage_malloc(n, 0) == NULL && errno == ENOMEM);
  char *b = userpage_malloc(MiB, 0);
  REQUIRE(b);
  memset(b, 7, MiB);
  errno = 0;
  CHECK(userpage_realloc(b, MiB, n, UMPA_LAZY) == NULL && errno == ENOMEM);
  CHECK(b[0] == 7 && b[MiB - 1] == 7);
  userpage_free(b, MiB);
  if (mode == 0 && !limited) {
    char *r = userpage_malloc(n, UMPA_RESERVE);
    CHECK(r != NULL);
    userpage_free(r, n);
  }
  umpa_page_check();
}

static void test_malloc_basic(void) {
  /* Sizes round up to pages; every page is populated and writable. */
  size_t sizes[] = {1, PG - 1, PG, PG + 1, 3 * PG, 100 * KiB, 1 * MiB + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = pages_of(sizes[i]);
    char *p = userpage_malloc(sizes[i], 0);
    REQUIRE(p);
    CHECK(((uintptr_t)p & (PG - 1)) == 0);
    CHECK(resident(p, n) == n);
    fill(p, n * PG, (unsigned)i);
    CHECK(holds(p, n * PG, (unsigned)i));
    /* Any size that rounds to the same pages is accepted by free. */
    userpage_free(p, n * PG - (sizes[i] % PG ? 0 : PG - 1));
  }
  /* Blocks of 2 MiB and more are 2 MiB aligned, also odd sizes. */
  size_t big[] = {2 * MiB, 3 * MiB, 5 * MiB + 3 * PG};
  for (size_t i = 0; i < 3; i++) {
    void *p = userpage_malloc(big[i], 0);
    REQUIRE(p);
    CHECK(((uintptr_t)p & (2 * MiB - 1)) == 0);
    userpage_free(p, big[i]);
  }
  umpa_page_check();
}

static void test_zero_flag(void) {
  /* A fixed limit above what the earlier tests left cached: under the
   * adaptive one (4 MiB here) the free below can push the cache over, and
   * the trimmer releases the smallest warm runs first, this one. */
  size_t old_limit = umpa_page_cache_limit(64 * MiB);
  /* Dirty pages come back from the cache uncleared... */
  char *p = userpage_malloc(64 * KiB, 0);
  REQUIRE(p);
  memset(p, 0xAB, 64 * KiB);
  userpage_free(p, 64 * KiB);
  uint64_t cleared = st().pages_cleared;
  char *q = userpage_malloc(64 * KiB, 0);
  CHECK(q == p); /* LIFO reuse of the warm run */
  CHECK((unsigned char)q[0] == 0xAB);
  userpage_free(q, 64 * KiB);
  /* ...and cleared only when asked. */
  q = userpage_malloc(64 * KiB, UMPA_ZERO);
  REQUIRE(q);
  CHECK(all_zero(q, 64 * KiB));
  CHECK(st().pages_cleared >= cleared + 16);
  userpage_free(q, 64 * KiB);
  /* Fresh pages are zero without clearing. */
  umpa_page_trim(3);
  cleared = st().pages_cleared;
  q = userpage_malloc(64 * KiB, UMPA_ZERO);
  REQUIRE(q);
  CHECK(all_zero(q, 64 * KiB));
  CHECK(st().pages_cleared == cleared);
  userpage_free(q, 64 * KiB);
  umpa_page_cache_limit(old_limit);
  umpa_page_check();
}

/* Pages released inside a block the owner keeps (userpage_release, and
 * malloc_trim inside superblocks) may be written again: the page layer
 * must not take them for pages without memory when the block comes back,
 * or UMPA_ZERO (calloc, a superblock taken as never written) hands out
 * their old contents.  The block was fully backed, so without a note that
 * its bits are a guess now, its free trusted them. */
static void test_release_then_write(void) {
  size_t old_limit = umpa_page_cache_limit(64 * MiB);
  char *p = userpage_malloc(64 * KiB, 0);
  REQUIRE(p);
  memset(p, 0xAB, 64 * KiB);
  CHECK(userpage_release(p + 4 * PG, 4 * PG) == 0);
  memset(p + 4 * PG, 0xCD, 4 * PG); /* faulted in again, not recorded */
  userpage_free(p, 64 * KiB);
  char *q = userpage_malloc(64 * KiB, UMPA_ZERO);
  REQUIRE(q);
  CHECK(q == p); /* LIFO reuse of the warm run */
  CHECK_MSG(all_zero(q, 64 * KiB), "old contents in a UMPA_ZERO block");
  userpage_free(q, 64 * KiB);
  umpa_page_cache_limit(old_limit);
  umpa_page_check();
}

static void test_lazy_and_reserve(void) {
  umpa_page_trim(3);
  char *p = userpage_malloc(16 * PG, UMPA_LAZY);
  REQUIRE(p);
  CHECK(resident(p, 16) == 0);
  p[5 * PG] = 1; /* the kernel faults it in */
  CHECK(resident(p, 16) == 1);
  userpage_free(p, 16 * PG);
  umpa_page_check(); /* the touched page is now accounted as cached */

  /* Reserve: no memory, even if the cache could have served it. */
  char *w = userpage_malloc(16 * PG, 0);
  userpage_free(w, 16 * PG);
  char *r = userpage_malloc(16 * PG, UMPA_RESERVE);
  REQUIRE(r);
  CHECK(resident(r, 16) == 0);
  CHECK(userpage_commit(r + 4 * PG, 4 * PG) == 0);
  CHECK(resident(r, 16) == 4);
  CHECK(resident(r + 4 * PG, 4) == 4);
  CHECK(all_zero(r + 4 * PG, 4 * PG));
  fill(r + 4 * PG, 4 * PG, 9);
  /* Committing again keeps contents. */
  CHECK(userpage_commit(r, 16 * PG) == 0);
  CHECK(resident(r, 16) == 16);
  CHECK(holds(r + 4 * PG, 4 * PG, 9));
  /* Release drops memory, keeps the range usable, reads zero. */
  CHECK(userpage_release(r + 4 * PG, 2 * PG) == 0);
  CHECK(resident(r + 4 * PG, 2) == 0);
  CHECK(all_zero(r + 4 * PG, 2 * PG));
  CHECK(holds(r + 6 * PG, 2 * PG, 9 + 2 * (unsigned)PG * 7));
  r[4 * PG] = 3;
  CHECK(r[4 * PG] == 3);
  userpage_free(r, 16 * PG);
  umpa_page_check();

  /* Commit of pages the owner wrote lazily must not lose them. */
  char *l = userpage_malloc(8 * PG, UMPA_LAZY);
  REQUIRE(l);
  memset(l + PG, 0x5A, PG);
  CHECK(userpage_commit(l, 8 * PG) == 0);
  CHECK((unsigned char)l[PG] == 0x5A && (unsigned char)l[2 * PG - 1] == 0x5A);
  userpage_free(l, 8 * PG);
  umpa_page_check();
}

/* A lazy block's free asks the kernel which pages the program touched and
 * marks them backed; a page it missed would later be handed out as
 * zeroed with the program's data in it, and the cache's counts would
 * drift from the memory.  Runs of touched pages start and end on both
 * sides of the scan's eight-page steps. */
static void test_lazy_pattern(void) {
  umpa_page_trim(3);
  const size_t n = 200;
  static const size_t runs[][2] = {{0, 3},   {7, 1},   {8, 8},  {17, 1},
                                   {63, 3},  {100, 40}, {150, 7},
                                   {165, 9}, {199, 1}};
  struct umpa_page_stats a, b;
  umpa_page_stats(&a);
  char *p = userpage_malloc(n * PG, UMPA_LAZY);
  REQUIRE(p);
  size_t touched = 0;
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    memset(p + runs[i][0] * PG, 0x77, runs[i][1] * PG);
    touched += runs[i][1];
  }
  CHECK(resident(p, n) == touched);
  userpage_free(p, n * PG);
  umpa_page_stats(&b);
  /* Every touched page is counted, and no other (a release by the
   * cache's decay meanwhile is counted back). */
  CHECK(b.committed + (b.pages_released - a.pages_released) * PG ==
        a.committed + touched * PG);
  umpa_page_check();
}

static void test_commit_release_errors(void) {
  char *p = userpage_malloc(8 * PG, 0);
  REQUIRE(p);
  int local;
  errno = 0;
  CHECK(userpage_commit(NULL, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_release(NULL, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_commit(p + 1, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_release(p, 9 * PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_commit(p + 7 * PG, 2 * PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_commit(&local, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(userpage_commit(p, 0) == -1 && errno == EINVAL);
  CHECK(userpage_commit(p + 7 * PG, PG) == 0);
  CHECK(userpage_release(p + 7 * PG, 1) == 0);
  userpage_free(p, 8 * PG);
  /* A freed block is no longer a valid range. */
  errno = 0;
  CHECK(userpage_commit(p, PG) == -1 && errno == EINVAL);
  umpa_page_check();
}

static void test_realloc(void) {
  /* NULL behaves as malloc; the same page count returns the block. */
  char *p = userpage_realloc(NULL, 0, 3 * PG, 0);
  REQUIRE(p);
  CHECK(userpage_realloc(p, 3 * PG, 3 * PG - 5, 0) == p);
  fill(p, 3 * PG, 1);
  /* Shrink keeps the pointer and the head of the contents. */
  CHECK(userpage_realloc(p, 3 * PG, 2 * PG, 0) == p);
  CHECK(holds(p, 2 * PG, 1));
  umpa_page_check();
  /* Grow in place when the neighbour is free. */
  uint64_t inplace = st().realloc_in_place;
  char *q = userpage_realloc(p, 2 * PG, 64 * PG, 0);
  REQUIRE(q);
  CHECK(holds(q, 2 * PG, 1));
  if (q == p) CHECK(st().realloc_in_place == inplace + 1);
  CHECK(resident(q, 64) == 64);
  umpa_page_check();
  /* A blocked neighbour forces a move, which keeps contents. */
  fill(q, 64 * PG, 2);
  /* Take single pages until one lands right after q. */
  char *blocker = NULL, *taken[2048];
  int ntaken = 0;
  while (ntaken < 2048 && !blocker) {
    char *b = userpage_malloc(PG, 0);
    REQUIRE(b);
    if (b == q + 64 * PG) blocker = b;
    else taken[ntaken++] = b;
  }
  while (ntaken) userpage_free(taken[--ntaken], PG);
  uint64_t moved = st().realloc_moved;
  if (blocker) {
    /* UMPA_NOMOVE fails and leaves the block as it was. */
    errno = 0;
    CHECK(userpage_realloc(q, 64 * PG, 128 * PG, UMPA_NOMOVE) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(holds(q, 64 * PG, 2));
    char *m = userpage_realloc(q, 64 * PG, 128 * PG, UMPA_ZERO);
    REQUIRE(m);
    CHECK(m != q);
    CHECK(holds(m, 64 * PG, 2));
    CHECK(all_zero(m + 64 * PG, 64 * PG));
    CHECK(st().realloc_moved == moved + 1);
    q = m;
    userpage_free(blocker, PG);
  } else {
    fprintf(stderr, "note: could not place a blocker, move not tested here\n");
    q = userpage_realloc(q, 64 * PG, 128 * PG, 0);
    REQUIRE(q);
  }
  umpa_page_check();
  /* Errors leave the block intact. */
  errno = 0;
  CHECK(userpage_realloc(q, 128 * PG, 256 * PG, 0x4000u) == NULL &&
        errno == EINVAL);
  errno = 0;
  CHECK(userpage_realloc(q, 128 * PG, SIZE_MAX, 0) == NULL &&
        errno == ENOMEM);
  CHECK(holds(q, 64 * PG, 2));
  /* new_size 0 frees. */
  CHECK(userpage_realloc(q, 128 * PG, 0, 0) == NULL);
  umpa_page_check();
  /* Large moves keep contents and take whole page tables. */
  size_t big = 8 * MiB;
  char *a = userpage_malloc(big, 0);
  REQUIRE(a);
  fill(a, big, 3);
  char *b = userpage_malloc(PG, 0); /* likely right after a */
  char *a2 = userpage_realloc(a, big, 4 * big, 0);
  REQUIRE(a2);
  CHECK(holds(a2, big, 3));
  CHECK(resident(a2 + big, 64) == 64);
  userpage_free(b, PG);
  /* Lazy growth leaves the new part unpopulated if it was cold. */
  char *a3 = userpage_realloc(a2, 4 * big, 4 * big + 16 * PG, UMPA_LAZY);
  REQUIRE(a3);
  CHECK(holds(a3, big, 3));
  userpage_free(a3, 4 * big + 16 * PG);
  umpa_page_check();
}

static void test_swap(void) {
  size_t n = 40 * PG;
  char *a = userpage_malloc(n, 0), *b = userpage_malloc(n, 0);
  REQUIRE(a && b);
  fill(a, n, 11);
  fill(b, n, 22);
  CHECK(umpa_page_swap(a, b, n) == 0);
  CHECK(holds(a, n, 22) && holds(b, n, 11));
  /* Their region's free runs are healed from now on, not only dropped
   * (page_release_free): the moves split its VMAs. */
  CHECK(atomic_load(&region_of(a)->xmoved) &&
        atomic_load(&region_of(b)->xmoved));
  /* Parts of blocks, and a block with itself. */
  CHECK(umpa_page_swap(a + 4 * PG, b + 8 * PG, 2 * PG) == 0);
  CHECK(holds(a + 4 * PG, 2 * PG, 11 + 8 * (unsigned)PG * 7));
  CHECK(umpa_page_swap(a, a, n) == 0);
  umpa_page_check();
  /* With a block whose pages were never touched: contents move, the
   * other side reads zero. */
  char *c = userpage_malloc(n, UMPA_RESERVE);
  REQUIRE(c);
  fill(b, n, 11);
  CHECK(umpa_page_swap(b, c, n) == 0);
  CHECK(all_zero(b, n));
  CHECK(holds(c, n, 11));
  umpa_page_check();
  int local;
  errno = 0;
  CHECK(umpa_page_swap(a, a + PG, 2 * PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(umpa_page_swap(a, &local, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(umpa_page_swap(a, b, 0) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(umpa_page_swap(a + 1, b, PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(umpa_page_swap(a, b, n + PG) == -1 && errno == EINVAL);
  errno = 0;
  CHECK(umpa_page_swap(NULL, b, PG) == -1 && errno == EINVAL);
  userpage_free(a, n);
  userpage_free(b, n);
  userpage_free(c, n);
  umpa_page_check();
  /* Big, 2 MiB aligned blocks. */
  size_t big = 16 * MiB;
  char *x = userpage_malloc(big, 0), *y = userpage_malloc(big, 0);
  REQUIRE(x && y);
  fill(x, big, 5);
  fill(y, big, 6);
  CHECK(umpa_page_swap(x, y, big) == 0);
  CHECK(holds(x, big, 6) && holds(y, big, 5));
  userpage_free(x, big);
  userpage_free(y, big);
  umpa_page_check();
}

static void test_cache_trim_prefill(void) {
  /* Every test before restored the limit it found: adaptive, unless the
   * environment set one. */
  bool fixed = cache_limit_fixed();
  size_t limit = st().cache_limit;
  size_t old = umpa_page_cache_limit(64 * MiB);
  CHECK(old == (fixed ? limit : UMPA_PAGE_CACHE_ADAPTIVE));
  CHECK(umpa_page_cache_limit(64 * MiB) == 64 * MiB);
  umpa_page_trim(3);
  CHECK(st().cached == 0);
  char *p = userpage_malloc(8 * MiB, 0);
  REQUIRE(p);
  userpage_free(p, 8 * MiB);
  CHECK(st().cached >= 8 * MiB);
  CHECK(umpa_page_trim(0) == 0); /* below the limit: nothing to do */
  size_t rel = umpa_page_trim(3);
  CHECK(rel >= 8 * MiB);
  CHECK(st().cached == 0);
  /* The limit bounds what frees leave cached. */
  umpa_page_cache_limit(1 * MiB);
  p = userpage_malloc(8 * MiB, 0);
  REQUIRE(p);
  userpage_free(p, 8 * MiB);
  CHECK(st().cached <= 1 * MiB);
  umpa_page_check();
  /* Prefill populates ahead; the next allocation takes no fault. */
  umpa_page_cache_limit(64 * MiB);
  umpa_page_prefill(32 * MiB);
  CHECK(st().cached >= 32 * MiB);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  uint64_t hits = st().cache_hits;
  p = userpage_malloc(32 * MiB, 0);
  getrusage(RUSAGE_SELF, &r1);
  REQUIRE(p);
  CHECK(st().cache_hits == hits + 1);
  CHECK_MSG(r1.ru_minflt - r0.ru_minflt <= 2, "%ld faults",
            r1.ru_minflt - r0.ru_minflt);
  userpage_free(p, 32 * MiB);
  /* Prefill is capped at the limit. */
  umpa_page_trim(3);
  umpa_page_cache_limit(4 * MiB);
  umpa_page_prefill(32 * MiB);
  CHECK(st().cached <= 4 * MiB && st().cached >= 2 * MiB);
  umpa_page_cache_limit(old);
  umpa_page_check();
}

/* Given UMPA_PAGE_CACHE_ADAPTIVE, the limit adapts again: it follows the
 * memory in use, where an exact one stays put; umpa_page_cache_limit
 * returns UMPA_PAGE_CACHE_ADAPTIVE for it, so a caller that restores what
 * it got restores the adapting limit.  mallopt's "never trim" (-1) is the
 * largest exact limit. */
static void test_cache_limit_adaptive(void) {
  size_t old = umpa_page_cache_limit(UMPA_PAGE_CACHE_ADAPTIVE);
  CHECK(!cache_limit_fixed());
  CHECK(umpa_page_cache_limit(8 * MiB) == UMPA_PAGE_CACHE_ADAPTIVE);
  CHECK(st().cache_limit == 8 * MiB);
  char *p = userpage_malloc(40 * MiB, 0);
  REQUIRE(p);
  CHECK(st().cache_limit == 8 * MiB); /* exact: stays */
  CHECK(umpa_page_cache_limit(UMPA_PAGE_CACHE_ADAPTIVE) == 8 * MiB);
  size_t max = umpa_opt.page_cache;
  size_t want = 40 * MiB < max ? 40 * MiB : max;
  CHECK_MSG(st().cache_limit >= want && st().cache_limit <= max,
            "adaptive limit %zu with 40 MiB in use", st().cache_limit);
  userpage_free(p, 40 * MiB);
  /* A limit set and given back: adaptive again, whatever it read. */
  size_t was = umpa_page_cache_limit(4 * MiB);
  umpa_page_cache_limit(was);
  CHECK(!cache_limit_fixed());
  CHECK(umpa_mallopt(M_TRIM_THRESHOLD, -1) == 1);
  CHECK(cache_limit_fixed());
  size_t huge = umpa_page_cache_limit(UMPA_PAGE_CACHE_ADAPTIVE);
  CHECK_MSG(huge != UMPA_PAGE_CACHE_ADAPTIVE && huge > ((size_t)1 << 60),
            "limit %zu after M_TRIM_THRESHOLD -1", huge);
  umpa_page_cache_limit(old);
  umpa_page_check();
}

static void test_stats(void) {
  struct umpa_page_stats a = st();
  char *p = userpage_malloc(5 * PG, 0);
  struct umpa_page_stats b = st();
  CHECK(b.in_use == a.in_use + 5 * PG);
  CHECK(b.allocs == a.allocs + 1);
  CHECK(b.committed >= b.in_use && b.committed >= b.cached);
  CHECK(b.reserved >= b.committed);
  CHECK(b.regions >= 1);
  CHECK(b.metadata > 0);
  userpage_free(p, 5 * PG);
  struct umpa_page_stats c = st();
  CHECK(c.in_use == a.in_use);
  CHECK(c.frees == a.frees + 1);
  uint64_t acquires = 0;
  for (int k = 0; k < UMPA_PAGE_ORDERS; k++) acquires += c.order[k].lock_acquires;
  CHECK(acquires > 0);
  CHECK(c.order[c.max_order].free_runs + c.order[0].free_runs > 0 ||
        c.max_order > 0);
}

/* Regions grow: 64 MiB first, each next one twice the last (up to 1 GiB),
 * so a small process pays for little metadata.  Run first, in a process
 * that has made no region yet. */
static void test_region_growth(void) {
  if (getenv("UMPA_REGION_SIZE")) return; /* then every region is that size */
  void *p = userpage_malloc(4096, 0);
  REQUIRE(p);
  struct umpa_page_stats s;
  umpa_page_stats(&s);
  CHECK(s.regions == 1);
  CHECK_MSG(s.reserved == ((size_t)64 << 20), "first region %zu bytes",
            s.reserved);
  /* Bigger than the first region: the next one is made big enough. */
  void *q = userpage_malloc((size_t)100 << 20, UMPA_RESERVE);
  REQUIRE(q);
  umpa_page_stats(&s);
  CHECK(s.regions == 2);
  CHECK_MSG(s.reserved == ((size_t)(64 + 128) << 20), "%zu bytes reserved",
            s.reserved);
  userpage_free(q, (size_t)100 << 20);
  userpage_free(p, 4096);
}

/* A full trim leaves a wholly free region four pages of metadata: its
 * header, the bitmap of populated pmeta pages, the pmeta page of the free
 * run's head and the first page of the superblock map (which a superblock
 * cut there later would fault in).  The page bitmaps read as zero, and
 * their pages where they meet (one holds the end of one bitmap and the
 * start of the next) go too. */
static void test_trim_metadata(void) {
  if (getenv("UMPA_REGION_SIZE")) return; /* one region for everything */
  size_t size = (size_t)64 << 20;
  char *q = userpage_malloc(size, 0); /* the 128 MiB region, wholly */
  REQUIRE(q);
  struct region *r = region_of(q);
  REQUIRE(r && r->npages == 32768 && region_index(r, q) == 0);
  userpage_free(q, size);
  umpa_page_trim(3);
  size_t pages = r->meta_size / PG, res = 0;
  unsigned char *vec = malloc(pages);
  REQUIRE(vec);
  REQUIRE(mincore(r, r->meta_size, vec) == 0);
  for (size_t i = 0; i < pages; i++) res += vec[i] & 1;
  free(vec);
  CHECK_MSG(res <= 4, "%zu metadata pages resident", res);
  umpa_page_check();
}

/* A full trim empties the cache, then gives back the metadata of free runs.
 * A free from another thread can list a backed run between the two (frees
 * take the order locks, not the trimmer's), and that run's backed bits
 * must stay: released, they read as "no memory here", so a zeroed
 * allocation of the run skipped clearing the old data, and the next trim
 * spun, its count of cached pages never falling.  malloc_trim(0) in a loop
 * beside a thread that freed and calloc'd 256 MiB found it in seconds;
 * here the free comes between the halves every time.  256 MiB: a run
 * must span a whole page of the backed bitmap (128 MiB) to lose one. */
static void test_trim_metadata_after_free(void) {
  size_t size = (size_t)256 << 20;
  size_t old = umpa_page_cache_limit((size_t)1 << 30); /* keep it whole */
  unsigned char *p = userpage_malloc(size, 0);
  REQUIRE(p);
  for (size_t i = 0; i < size; i += PG) p[i] = 0xAA;
  umpa_page_trim(3);
  userpage_free(p, size);
  CHECK(st().cached >= size);
  cache_trim_metadata(); /* what the trimmer did next */
  umpa_page_check();     /* every free run's count is its bitmap's */
  unsigned char *q = userpage_malloc(size, UMPA_ZERO);
  REQUIRE(q);
  size_t dirty = 0;
  for (size_t i = 0; i < size; i += PG) dirty += q[i] != 0;
  CHECK_MSG(dirty == 0, "%zu pages of a zeroed block hold old data", dirty);
  userpage_free(q, size);
  umpa_page_trim(3); /* returns: the cached count matches the bitmaps */
  CHECK(st().cached == 0);
  umpa_page_cache_limit(old);
  umpa_page_check();
}

/* os_move is all or nothing.  A range the kernel refuses to move whole
 * (EFAULT: it spans VMAs that earlier moves split) is moved in halves; if
 * the second half fails, the first is moved back, and if that fails too
 * (out of VMAs) it is copied back: a caller that then copies the block
 * (realloc) must find every byte at the source.  The kernel's refusals
 * come from os_move_script. */
static void test_move_all_or_nothing(void) {
  const size_t n = 8 * PG;
  const uint64_t efault = 14, enomem = 12;
  REQUIRE(EFAULT == efault && ENOMEM == enomem);
  static const uint64_t scripts[] = {
      efault | 0 << 8 | enomem << 16,                 /* moved back */
      efault | 0 << 8 | enomem << 16 | enomem << 24,  /* copied back */
  };
  for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
    char *src = mmap(NULL, n, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *dst = mmap(NULL, n, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(src != MAP_FAILED && dst != MAP_FAILED);
    fill(src, n, (unsigned)i + 7);
    atomic_store(&os_move_script, scripts[i]);
    CHECK(os_move(src, dst, n) == ENOMEM);
    CHECK_MSG(atomic_load(&os_move_script) == 0, "script %zu: %llx left", i,
              (unsigned long long)atomic_load(&os_move_script));
    CHECK_MSG(holds(src, n, (unsigned)i + 7), "script %zu: source lost bytes",
              i);
    /* And a move the kernel allows takes everything. */
    CHECK(os_move(src, dst, n) == 0);
    CHECK(holds(dst, n, (unsigned)i + 7));
    CHECK(resident(src, 8) == 0);
    munmap(src, n);
    munmap(dst, n);
  }
}

/* A cached run the trimmer releases reads zero afterwards even when the
 * kernel refuses the fresh mapping that releases it (out of VMAs): its
 * backed bits are cleared, and a clear bit promises zero, so UMPA_ZERO
 * would clear nothing there.  The refusals come from os_fresh_refusals.
 * With `locked`, the program locked the pages (mlock), which the fallback
 * (MADV_DONTNEED) refuses too. */
static void heal_refused(bool locked) {
  size_t old = umpa_page_cache_limit(64 * MiB);
  char *p = userpage_malloc(2 * MiB, 0);
  REQUIRE(p);
  memset(p, 0xAB, 2 * MiB);
  if (locked && mlock(p, 2 * MiB) != 0) {
    fprintf(stderr, "refused release of locked pages: skipped, mlock: %s\n",
            strerror(errno));
    userpage_free(p, 2 * MiB);
    umpa_page_cache_limit(old);
    return;
  }
  userpage_free(p, 2 * MiB);
  atomic_store(&os_fresh_refusals, 1000);
  umpa_page_trim(3);
  unsigned left = atomic_exchange(&os_fresh_refusals, 0);
  CHECK_MSG(left < 1000, "no release was refused (%u left)", left);
  /* Read in place: the run is the page layer's, mapped, and a read maps
   * nothing but the zero page. */
  CHECK(all_zero(p, 2 * MiB));
  if (locked) munlock(p, 2 * MiB);
  char *q = userpage_malloc(2 * MiB, UMPA_ZERO);
  REQUIRE(q);
  CHECK(all_zero(q, 2 * MiB));
  userpage_free(q, 2 * MiB);
  umpa_page_cache_limit(old);
  umpa_page_check();
}

/* Released pages read zero even where the program locked them (mlock),
 * which MADV_DONTNEED refuses, and even when the fresh mapping that drops
 * them then is refused too. */
static void test_release_locked(void) {
  const size_t n = 16 * PG;
  char *p = userpage_malloc(n, 0);
  REQUIRE(p);
  memset(p, 0xCD, n);
  if (mlock(p + 4 * PG, 8 * PG) != 0) {
    fprintf(stderr, "release of locked pages: skipped, mlock: %s\n",
            strerror(errno));
    userpage_free(p, n);
    return;
  }
  CHECK(userpage_release(p, n) == 0);
  CHECK(all_zero(p, n));
  munlock(p, n);
  CHECK(userpage_commit(p, n) == 0);
  CHECK(all_zero(p, n));
  /* And where the fresh mapping is refused too (out of VMAs). */
  memset(p, 0xCD, n);
  REQUIRE(mlock(p, n) == 0);
  atomic_store(&os_fresh_refusals, 1);
  CHECK(userpage_release(p, n) == 0);
  /* AddressSanitizer's mlock locks nothing: the first way works there. */
  unsigned left = atomic_exchange(&os_fresh_refusals, 0);
  CHECK(left == 0 || UNDER_ASAN);
  CHECK(all_zero(p, n));
  munlock(p, n);
  userpage_free(p, n);
  umpa_page_check();
}

int main(void) {
  test_region_growth();
  test_trim_metadata();
  test_trim_metadata_after_free();
  test_malloc_errors();
  test_beyond_memory();
  test_malloc_basic();
  test_zero_flag();
  test_release_then_write();
  test_lazy_and_reserve();
  test_lazy_pattern();
  test_commit_release_errors();
  test_realloc();
  test_swap();
  test_move_all_or_nothing();
  heal_refused(false);
  heal_refused(true);
  test_release_locked();
  test_cache_trim_prefill();
  test_cache_limit_adaptive();
  test_stats();
  return check_done("test_page_api");
}
