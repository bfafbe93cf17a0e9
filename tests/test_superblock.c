/*
 * test_superblock.c - superblocks as the heap sees them: every block of
 * every class lies inside its superblock, after the header, 16-byte
 * aligned, and carving hands blocks out a page at a time, so a class a
 * program takes a few blocks of touches only the pages they are in; every
 * request size gets the smallest class that holds it, within the documented
 * waste.
 */
#include "check.h"
#include "internal.h"

#include "as_pages.h"

#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PER_CLASS 6 /* superblocks per class: their header colours differ */
#define CARVES 3    /* carves checked per superblock: each touches a page */

static uintptr_t page_of(const void *p) {
  return (uintptr_t)p & ~(uintptr_t)(PAGE_SIZE - 1);
}

/* One carve: the blocks it lists start in the page of the first one, follow
 * each other, and continue where the previous carve stopped. */
static uint32_t check_carve(struct superblock *sb, char **expect) {
  uint32_t before = sb->carved;
  if (!superblock_carve(sb)) return 0;
  uint32_t n = 0;
  char *first = (char *)sb->free;
  CHECK_MSG(first == *expect, "class %u: carve starts at %p, not %p",
            (unsigned)sb->cls, (void *)first, (void *)*expect);
  for (struct block *b = sb->free; b; b = b->next, n++) {
    CHECK_MSG(page_of(b) == page_of(first),
              "class %u: block %u of a carve from %p is on the next page",
              (unsigned)sb->cls, n, (void *)first);
    CHECK(((uintptr_t)b & 15) == 0);
    CHECK((char *)b == first + (size_t)n * sb->size);
  }
  CHECK(n == sb->carved - before);
  *expect = first + (size_t)n * sb->size;
  sb->free = NULL; /* handed out: the next carve starts a new list */
  return n;
}

static void test_carve_a_page_at_a_time(void) {
  umpa_free(umpa_malloc(1)); /* initialise the heap and the page layer */
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    struct superblock *sbs[PER_CLASS];
    for (int k = 0; k < PER_CLASS; k++) {
      struct superblock *sb = sbs[k] = superblock_new(cls, NULL);
      REQUIRE(sb);
      size_t bytes = (size_t)umpa_class[cls].sb_pages << PAGE_SHIFT;
      char *start = (char *)sb_start(sb), *expect = sb_blocks(sb);
      CHECK(expect >= (char *)sb + SUPERBLOCK_HEADER);
      for (int c = 0; c < CARVES; c++) {
        uint32_t n = check_carve(sb, &expect);
        if (!n) break;
        CHECK(expect <= start + bytes);
      }
      CHECK(superblock_of(expect - 1) == sb);
    }
    for (int k = 0; k < PER_CLASS; k++) superblock_destroy(sbs[k]);
  }
  umpa_page_check();
}

/* The free path's boundary test agrees with offset % size == 0 and the
 * superblock's bounds at every 16-byte offset a pointer in the
 * superblock's aligned bytes can have (blocks and pointers the program
 * frees are 16-byte aligned or caught earlier), and at odd ones.  With
 * UMPA_CHECK=1 it passes nothing, so that every free takes the checked
 * path (div_bound is 0). */
static void test_boundary(void) {
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    struct superblock *sb = superblock_new(cls, NULL);
    REQUIRE(sb);
    intptr_t span = (intptr_t)sb_main(sb) * sb->size;
    intptr_t lo = (intptr_t)sb_start(sb) - (intptr_t)sb_blocks(sb);
    intptr_t hi = lo + ((intptr_t)umpa_class[cls].sb_pages << PAGE_SHIFT);
    unsigned wrong = 0;
    bool open = !umpa_opt.check;
    for (intptr_t off = lo; off < hi; off += 16)
      if (sb_is_boundary(sb, (uintptr_t)off) !=
          (open && off >= 0 && off < span && off % sb->size == 0))
        wrong++;
    for (intptr_t off = lo + 1; off < hi; off += 997)
      if (sb_is_boundary(sb, (uintptr_t)off) !=
          (open && off >= 0 && off < span && off % sb->size == 0))
        wrong++;
    CHECK_MSG(wrong == 0, "class %u (%u bytes): %u offsets misjudged", cls,
              (unsigned)sb->size, wrong);
    superblock_destroy(sb);
  }
}

/* Blocks fill every superblock, whatever its header's colour offset: all
 * that fit between the first block and the superblock's end (at least the
 * class's capacity, which is at the largest offset), then all that fit in
 * front of the header.  Carving hands out exactly that many, each once,
 * none over the header, the last behind it inside the superblock; the
 * boundary test knows those behind the header, sb_holds_front those in
 * front, superblock_block_of (the free path's slow form) all of them. */
static void test_capacity_follows_colour(void) {
  enum { N = 40 }; /* more than SB_COLORS superblocks side by side */
  static unsigned char seen[512 << 10];
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    const struct size_class *sc = &umpa_class[cls];
    size_t bytes = (size_t)sc->sb_pages << PAGE_SHIFT;
    struct superblock *sbs[N];
    unsigned above = 0, with_front = 0;
    for (int k = 0; k < N; k++) {
      struct superblock *sb = sbs[k] = superblock_new(cls, NULL);
      REQUIRE(sb);
      char *start = sb_start(sb), *end = start + bytes, *first = sb_blocks(sb);
      size_t main = sb_main(sb), front = sb->front;
      CHECK(main >= sc->capacity);
      CHECK(first + main * sc->size <= end);
      if (!umpa_opt.check) {
        CHECK_MSG(first + (main + 1) * sc->size > end,
                  "class %u: room for another block after %zu", cls, main);
        CHECK_MSG(sc->paged || start + (front + 1) * sc->size > (char *)sb,
                  "class %u: room for another block in front", cls);
      }
      CHECK(start + front * sc->size <= (char *)sb);
      if (main > sc->capacity) above++;
      with_front += front > 0;
      /* Every block once, none over the header. */
      memset(seen, 0, bytes);
      memset(seen + ((char *)sb - start), 1, SUPERBLOCK_HEADER);
      size_t got = 0, bad = 0;
      while (superblock_carve(sb)) {
        for (struct block *b = sb->free; b; b = b->next, got++) {
          size_t at = (size_t)((char *)b - start);
          if (at + sc->size > bytes) {
            bad++;
            continue;
          }
          for (size_t i = 0; i < sc->size; i += 16) bad += seen[at + i]++ != 0;
          bool behind = (char *)b >= first;
          if (behind != sb_holds_block(sb, b) && !umpa_opt.check) bad++;
          if (behind == sb_holds_front(sb, b) && !umpa_opt.check) bad++;
          if (superblock_block_of(sb, b, "test") != b) bad++;
        }
        sb->free = NULL;
      }
      CHECK_MSG(bad == 0, "class %u: %zu blocks misplaced", cls, bad);
      CHECK_MSG(got == sb->capacity && sb->carved == sb->capacity,
                "class %u: carved %zu of %u", cls, got, sb->capacity);
      CHECK(superblock_of(first + main * sc->size - 1) == sb);
    }
    /* Up to 1 KiB the largest offset's room is 4 blocks or more: most
     * offsets leave room for one more behind the header, and all but the
     * smallest for some in front. */
    if (sc->size <= 1024 && !umpa_opt.check) {
      CHECK_MSG(above >= N / 2,
                "class %u (%u bytes): %u of %d superblocks above the "
                "class's capacity", cls, (unsigned)sc->size, above, N);
      CHECK_MSG(with_front >= N / 2, "class %u: %u of %d superblocks with "
                "blocks in front", cls, with_front, N);
    }
    for (int k = 0; k < N; k++) superblock_destroy(sbs[k]);
  }
  umpa_page_check();
}

/* Blocks in front of a header, as a program meets them: handed out once
 * the blocks behind it are, the size asked for usable, realloc'd in place,
 * freed by their owner (the second boundary test, small_free_front) and
 * by another thread (the slow path), and aligned blocks cut from them
 * freed through their interior pointer.  No block overlaps another or a
 * header. */
#define FRONT_MAX 20000
static void *front_blocks[FRONT_MAX];

static void *free_one(void *p) {
  umpa_free(p);
  return NULL;
}

static void test_front_blocks_via_malloc(void) {
  static const size_t sizes[] = {16, 48, 200, 1000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t size = sizes[k], n = 0, fronts = 0;
    unsigned cls = sizeclass_of(size);
    char *front = NULL;
    /* Enough for a few superblocks, each giving out its front last, and
     * more while none had a front: a header's colour offset follows the
     * superblock's address, superblocks cut one after another from a
     * chunk take consecutive colours, and for 1000 bytes the first eight
     * colours leave no room in front (five superblocks from colour 0 had
     * none). */
    size_t want = 4 * umpa_class[cls].capacity + 10,
           most = 40 * (size_t)umpa_class[cls].capacity;
    if (most > FRONT_MAX) most = FRONT_MAX;
    REQUIRE(want <= FRONT_MAX);
    while (n < want || (fronts == 0 && !umpa_opt.check && n < most)) {
      char *p = umpa_malloc(size);
      REQUIRE(p);
      memset(p, (int)(n & 0xff), size);
      front_blocks[n++] = p;
      struct superblock *sb = superblock_of(p);
      if (p < (char *)sb) {
        fronts++;
        if (!front) front = p;
        CHECK(p + size <= (char *)sb);
        CHECK(umpa_malloc_usable_size(p) == umpa_class[cls].size);
      }
    }
    /* UMPA_CHECK=1 keeps the front empty (see front_at). */
    CHECK_MSG((fronts > 0) != umpa_opt.check,
              "%zu bytes: %zu blocks in front of a header", size, fronts);
    /* Contents intact: no block overlapped another, and headers still
     * say what they hold. */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      unsigned char *p = front_blocks[i];
      for (size_t j = 0; j < size; j++)
        bad += p[j] != (unsigned char)(i & 0xff);
      bad += superblock_of(p)->cls != cls;
    }
    CHECK_MSG(bad == 0, "%zu bytes: %zu bytes or headers changed", size, bad);
    if (front) {
      CHECK(umpa_realloc(front, size) == front); /* same class: in place */
      size_t at;
      for (at = 0; front_blocks[at] != front; at++) {}
      pthread_t t;
      REQUIRE(pthread_create(&t, NULL, free_one, front) == 0);
      pthread_join(t, NULL);
      front_blocks[at] = NULL;
    }
    for (size_t i = 0; i < n; i++) umpa_free(front_blocks[i]);
  }
  /* aligned_alloc(256, 100) cuts its block from a 384-byte one (100 + 256
   * - 16 bytes, room to align), its pointer inside the block where the
   * block is not 256-aligned: in front of a header too. */
  size_t n = 0, fronts = 0, inside = 0;
  unsigned cls = sizeclass_of(100 + 256 - 16);
  /* More while no pointer fell inside a block in front (as above). */
  size_t want = 4 * umpa_class[cls].capacity + 10,
         most = 40 * (size_t)umpa_class[cls].capacity;
  while ((n < want || (inside == 0 && !umpa_opt.check && n < most)) &&
         n < FRONT_MAX) {
    char *p = umpa_aligned_alloc(256, 100);
    REQUIRE(p && ((uintptr_t)p & 255) == 0);
    memset(p, 7, 100);
    struct superblock *sb = superblock_of(p);
    if (p < (char *)sb) {
      fronts++;
      inside += ((uintptr_t)p - (uintptr_t)sb_start(sb)) %
                    umpa_class[cls].size != 0;
    }
    front_blocks[n++] = p;
  }
  CHECK_MSG((inside > 0) != umpa_opt.check,
            "%zu aligned pointers inside blocks in front", inside);
  for (size_t i = 0; i < n; i++) umpa_free(front_blocks[i]);
  fprintf(stderr, "front blocks: %zu of %zu aligned ones in front of a "
          "header, %zu of them inside their block\n", fronts, n, inside);
  umpa_malloc_trim(0);
}

/* A class whose size is a multiple of a page has its blocks at page
 * boundaries (the first one on the page after the header's), with the
 * capacity of the class table, and sb_holds_block (the free path's form of
 * the boundary test) agrees with the offsets.  posix_memalign, valloc and
 * aligned_alloc with an alignment of a page or less and a size up to the
 * large threshold are served by such a class: small blocks, aligned. */
static void test_paged(void) {
  unsigned paged = 0;
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    const struct size_class *sc = &umpa_class[cls];
    CHECK(sc->paged == (sc->size % PAGE_SIZE == 0));
    paged += sc->paged;
    struct superblock *sb = superblock_new(cls, NULL);
    REQUIRE(sb);
    char *first = sb_blocks(sb), *start = (char *)sb_start(sb);
    size_t bytes = (size_t)sc->sb_pages << PAGE_SHIFT;
    if (sc->paged)
      CHECK_MSG(first == start + PAGE_SIZE, "class %u: first block at %td",
                cls, first - start);
    else
      CHECK(first == (char *)sb + SUPERBLOCK_HEADER);
    CHECK(first + (size_t)sb_main(sb) * sb->size <= start + bytes);
    unsigned wrong = 0;
    for (char *p = start; p < start + bytes; p += 16) {
      intptr_t off = p - first;
      bool block = !umpa_opt.check && off >= 0 &&
                   off < (intptr_t)sb_main(sb) * sb->size &&
                   off % sb->size == 0; /* see test_boundary */
      if (sb_holds_block(sb, p) != block) wrong++;
    }
    CHECK_MSG(wrong == 0, "class %u: %u pointers misjudged", cls, wrong);
    superblock_destroy(sb);
  }
  CHECK_MSG(paged == 8, "%u paged classes", paged); /* 4 KiB .. 32 KiB */
  static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 8192, 9000,
                                 20000, SMALL_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    for (size_t align = 256; align <= PAGE_SIZE; align <<= 1) {
      void *p = NULL;
      REQUIRE(umpa_posix_memalign(&p, align, sizes[i]) == 0);
      struct superblock *sb = superblock_of(p);
      CHECK_MSG(sb && (uintptr_t)p % align == 0,
                "posix_memalign(%zu, %zu) = %p: %s", align, sizes[i], p,
                sb ? "misaligned" : "not a small block");
      CHECK(umpa_malloc_usable_size(p) >= sizes[i]);
      memset(p, 0x5a, sizes[i]);
      umpa_free(p);
    }
    char *v = umpa_valloc(sizes[i]);
    CHECK(v && superblock_of(v) && (uintptr_t)v % PAGE_SIZE == 0);
    umpa_free(v);
  }
  /* Many alive at once: distinct pages, contents kept. */
  enum { N = 200 };
  static char *blk[N];
  for (int i = 0; i < N; i++) {
    blk[i] = umpa_aligned_alloc(PAGE_SIZE, PAGE_SIZE);
    REQUIRE(blk[i] && (uintptr_t)blk[i] % PAGE_SIZE == 0);
    memset(blk[i], i, PAGE_SIZE);
  }
  unsigned bad = 0;
  for (int i = 0; i < N; i++)
    for (size_t k = 0; k < PAGE_SIZE; k += 512)
      bad += blk[i][k] != (char)i;
  CHECK_MSG(bad == 0, "%u bytes overwritten", bad);
  for (int i = 0; i < N; i++) umpa_free(blk[i]);
}

/* Every size up to SMALL_MAX: the class holds it, the class below does not,
 * and the waste is at most 15 bytes up to 128, under 1/9 of the block
 * where there are eight classes per power of two (256 B to 2 KiB: jq's
 * 392-byte objects; 4 to 8 KiB: sqlite's page cache) and under 1/5
 * elsewhere. */
static void test_classes(void) {
  umpa_free(umpa_malloc(1)); /* the tables are built on the first malloc */
  CHECK(umpa_class[NUM_CLASSES - 1].size == SMALL_MAX);
  unsigned bad = 0, prev = 0;
  for (size_t n = 1; n <= SMALL_MAX; n++) {
    unsigned c = sizeclass_of(n);
    size_t size = umpa_class[c].size, waste = size - n;
    bool ok = c < NUM_CLASSES && size >= n && size % 16 == 0 &&
              (c == 0 || umpa_class[c - 1].size < n) && c >= prev &&
              (n <= 128 ? waste <= 15
               : (n > 256 && n <= 2048) || (n > 4096 && n <= 8192)
                   ? waste * 9 < size
                   : waste * 5 < size);
    if (!ok && bad++ < 5)
      CHECK_MSG(false, "%zu bytes: class %u of %zu bytes", n, c, size);
    prev = c;
  }
  CHECK_MSG(bad == 0, "%u sizes in the wrong class", bad);
}

/* A heap serves the first HEAP_AS_PAGES_FIRST blocks of each class of
 * 4-8 KiB as pages (heap_as_pages): page-aligned large blocks of whole
 * pages, which free, realloc, calloc and malloc_usable_size treat as any
 * other, from another thread too; the class's next block is in a
 * superblock, and classes below a page or above 8 KiB get superblocks at
 * once.  In a thread of its own: a new heap, no class used yet. */
#define AS_PAGES_SIZE 5000
static void *as_pages_thread(void *arg) {
  char **out = arg;
  const size_t page = PAGE_SIZE;
  /* UMPA_CHECK=1 (test_superblock_checked) gives every class superblocks:
   * its marks are per superblock block. */
  const bool pages = !umpa_opt.check;
  unsigned cls = sizeclass_of(AS_PAGES_SIZE);
  for (int i = 0; i <= HEAP_AS_PAGES_FIRST; i++) {
    char *p = out[i] = umpa_malloc(AS_PAGES_SIZE);
    REQUIRE(p);
    struct superblock *sb = superblock_of(p);
    if (pages && i < HEAP_AS_PAGES_FIRST)
      CHECK_MSG(!sb && (uintptr_t)p % page == 0 &&
                    umpa_malloc_usable_size(p) == 2 * page,
                "block %d of %d bytes: %p, usable %zu, superblock %p", i,
                AS_PAGES_SIZE, (void *)p, umpa_malloc_usable_size(p),
                (void *)sb);
    else
      CHECK_MSG(sb && sb->cls == cls &&
                    umpa_malloc_usable_size(p) == umpa_class[cls].size,
                "block %d of %d bytes not in a superblock of its class", i,
                AS_PAGES_SIZE);
    memset(p, i + 1, AS_PAGES_SIZE);
  }
  char *one = umpa_malloc(page), *below = umpa_malloc(3000),
       *above = umpa_malloc(9000);
  REQUIRE(one && below && above);
  CHECK(!superblock_of(one) == pages && umpa_malloc_usable_size(one) == page);
  CHECK(superblock_of(below) && superblock_of(above));
  umpa_free(one);
  umpa_free(below);
  umpa_free(above);
  /* calloc after the same pages were dirtied and freed. */
  char *dirty = umpa_malloc(6000);
  REQUIRE(dirty);
  CHECK(!superblock_of(dirty) == pages);
  memset(dirty, 0xab, umpa_malloc_usable_size(dirty));
  umpa_free(dirty);
  char *z = umpa_calloc(1, 6000);
  REQUIRE(z);
  CHECK(!superblock_of(z) == pages);
  size_t nonzero = 0;
  for (size_t k = 0; k < 6000; k++) nonzero += z[k] != 0;
  CHECK_MSG(nonzero == 0, "calloc: %zu bytes not zero", nonzero);
  /* realloc within its pages keeps it; below half of them moves it. */
  memset(z, 0x33, 6000);
  char *g = umpa_realloc(z, 7000);
  REQUIRE(g);
  if (pages) CHECK(g == z);
  memset(g + 6000, 0x33, 1000);
  char *small = umpa_realloc(g, 1000);
  REQUIRE(small);
  CHECK(small != g && superblock_of(small));
  size_t wrong = 0;
  for (size_t k = 0; k < 1000; k++) wrong += small[k] != 0x33;
  CHECK_MSG(wrong == 0, "realloc: %zu bytes lost", wrong);
  umpa_free(small);
  return NULL;
}

static void test_as_pages(void) {
  char *blocks[HEAP_AS_PAGES_FIRST + 1];
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, as_pages_thread, blocks) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  /* Freed by this thread, after their owner's exit. */
  for (int i = 0; i <= HEAP_AS_PAGES_FIRST; i++) {
    size_t wrong = 0;
    for (size_t k = 0; k < AS_PAGES_SIZE; k++)
      wrong += blocks[i][k] != (char)(i + 1);
    CHECK_MSG(wrong == 0, "block %d: %zu bytes overwritten", i, wrong);
    umpa_free(blocks[i]);
  }
  CHECK(umpa_page_check() == 0);
}

/* The fast path serves every size up to the large threshold, past 1 KiB
 * too (one class table for all), and mallopt's lower threshold sends the
 * sizes above it to the page layer from the fast path as well. */
static void test_threshold(void) {
  static const size_t sizes[] = {1024, 1025, 2048, 5000, 20000, SMALL_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    for (int k = 0; k < 3; k++) { /* the second on takes the fast path */
      char *p = umpa_malloc(sizes[i]);
      REQUIRE(p);
      struct superblock *sb = superblock_of(p);
      CHECK_MSG(sb && sb->size >= sizes[i] &&
                    sb->size == umpa_class[sizeclass_of(sizes[i])].size,
                "%zu bytes: not in a superblock of its class", sizes[i]);
      memset(p, 1, sizes[i]);
      umpa_free(p);
    }
  }
  char *large = umpa_malloc(SMALL_MAX + 1);
  CHECK(large && !superblock_of(large));
  umpa_free(large);
  CHECK(umpa_mallopt(M_MMAP_THRESHOLD, 4096) == 1);
  for (int k = 0; k < 3; k++) {
    char *small = umpa_malloc(4096), *big = umpa_malloc(4097);
    CHECK(small && superblock_of(small));
    CHECK_MSG(big && !superblock_of(big), "4097 bytes in a superblock");
    umpa_free(small);
    umpa_free(big);
  }
  CHECK(umpa_mallopt(M_MMAP_THRESHOLD, (int)SMALL_MAX) == 1);
  char *p = umpa_malloc(5000);
  CHECK(p && superblock_of(p));
  umpa_free(p);
}

/* malloc_trim gives the kernel the pages of a superblock that hold only
 * free blocks while other blocks of it are still out; the free blocks on
 * them come back when the superblock runs out, each exactly once. */
#define TRIM_SBS 3 /* superblocks' worth of blocks per size */
#define TRIM_MAX (TRIM_SBS * 1300)
static char *trim_blocks[5 * TRIM_MAX], *trim_more[4 * TRIM_MAX];

static void tag(char *p, size_t size, uintptr_t v) {
  memcpy(p, &v, sizeof v);
  memcpy(p + size - sizeof v, &v, sizeof v);
}
static bool tagged(const char *p, size_t size, uintptr_t v) {
  uintptr_t a, b;
  memcpy(&a, p, sizeof a);
  memcpy(&b, p + size - sizeof b, sizeof b);
  return a == v && b == v;
}
static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (char *const *)a, y = (uintptr_t) * (char *const *)b;
  return x < y ? -1 : x > y;
}

/* The n-th block of a refill: calloc for odd n (it may take never-used
 * blocks past `carved`, and must read zero), malloc for even; tagged. */
static char *refill_one(size_t size, size_t n) {
  char *q = n % 2 ? umpa_calloc(1, size) : umpa_malloc(size);
  REQUIRE(q);
  if (n % 2) {
    size_t nonzero = 0;
    for (size_t i = 0; i < size; i++) nonzero += q[i] != 0;
    CHECK_MSG(nonzero == 0, "%zu bytes: calloc block has %zu bytes set", size,
              nonzero);
  }
  tag(q, size, (uintptr_t)q);
  return q;
}

/* With UMPA_CHECK=1 superblocks keep every page: the marks at a
 * superblock's end cover every block, and a trim that released pages of
 * free blocks would have to keep them (superblock_trim declines). */
static bool trim_declined(void) {
  if (!umpa_opt.check) return false;
  void *p = umpa_malloc(48), *q = umpa_malloc(48);
  REQUIRE(p && q);
  umpa_free(q); /* a free block in p's superblock */
  CHECK(superblock_trim(superblock_of(p)) == 0);
  umpa_free(p);
  return true;
}

static void test_trim_inside_superblocks(void) {
  if (trim_declined()) return;
  static const size_t sizes[] = {48, 320, 1024, 3000, 20000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t size = sizes[k];
    unsigned cls = sizeclass_of(size);
    size_t cap = umpa_class[cls].capacity, pages = umpa_class[cls].sb_pages;
    size_t n = cap * TRIM_SBS - cap / 3;
    REQUIRE(n <= TRIM_MAX);
    for (size_t i = 0; i < n; i++) {
      REQUIRE((trim_blocks[i] = umpa_malloc(size)));
      tag(trim_blocks[i], size, (uintptr_t)trim_blocks[i]);
    }
    /* Superblocks whose every carved block is ours or listed keep two of
     * ours: the middle one and the last, so pages on both sides of them
     * go.  The last superblock is carved only in part: it keeps its first
     * and middle ones, so the page where carving stopped goes too. */
    struct superblock *mine[TRIM_SBS + 1];
    size_t first[TRIM_SBS + 1], count[TRIM_SBS + 1];
    int nmine = 0;
    qsort(trim_blocks, n, sizeof *trim_blocks, by_address);
    for (size_t i = 0, j; i < n; i = j) {
      struct superblock *sb = superblock_of(trim_blocks[i]);
      for (j = i; j < n && superblock_of(trim_blocks[j]) == sb; j++) {}
      size_t listed = 0;
      for (struct block *b = sb->free; b; b = b->next) listed++;
      if (j - i + listed == sb->carved && !(atomic_load(&sb->xremote) & ~REMOTE_NOTIFY) &&
          nmine <= TRIM_SBS) {
        mine[nmine] = sb;
        first[nmine] = i;
        count[nmine++] = j - i;
      }
    }
    REQUIRE_MSG(nmine >= TRIM_SBS - 1, "%zu bytes: %d superblocks of ours",
                size, nmine);
    size_t kept = 0, total = n;
    for (int m = 0; m < nmine; m++) {
      char *mid = trim_blocks[first[m] + count[m] / 2];
      size_t other = mine[m]->carved < cap ? 0 : count[m] - 1;
      char *last = trim_blocks[first[m] + other];
      trim_blocks[first[m] + count[m] / 2] = NULL;
      trim_blocks[first[m] + other] = NULL;
      trim_more[kept++] = mid;
      if (last != mid) trim_more[kept++] = last;
    }
    for (size_t i = 0; i < total; i++) umpa_free(trim_blocks[i]);
    memcpy(trim_blocks, trim_more, kept * sizeof *trim_blocks);
    umpa_malloc_trim(0);
    for (int m = 0; m < nmine; m++) {
      struct superblock *sb = mine[m];
      char *start = sb_start(sb);
      CHECK_MSG(sb->holes, "%zu bytes: no page of superblock %p released",
                size, (void *)sb);
      unsigned char vec[128];
      REQUIRE(pages <= sizeof vec && mincore(start, pages << PAGE_SHIFT, vec) == 0);
      /* The trim's record of the pages gone lies in a free block, on a
       * page that stays when one holds a free block; else on its own. */
      char *rec = sb->holes ? sb_blocks(sb) + (size_t)(sb->holes - 1u) * sb->size
                            : NULL;
      size_t stray = 0;
      for (size_t pg = 1; pg < pages; pg++) {
        bool out = rec && (size_t)(rec - start) >> PAGE_SHIFT == pg;
        for (size_t i = 0; i < kept; i++) {
          size_t a = (size_t)(trim_blocks[i] - start) >> PAGE_SHIFT;
          size_t b = (size_t)(trim_blocks[i] + size - 1 - start) >> PAGE_SHIFT;
          out |= superblock_of(trim_blocks[i]) == sb && pg >= a && pg <= b;
        }
        stray += (vec[pg] & 1) && !out;
      }
      CHECK_MSG(stray == 0, "%zu bytes: %zu free pages stayed resident", size,
                stray);
    }
    for (size_t i = 0; i < kept; i++)
      CHECK(tagged(trim_blocks[i], size, (uintptr_t)trim_blocks[i]));
    /* Allocate until the trimmed superblocks are full again: every block
     * of theirs came back once, and none overlaps another. */
    size_t got = 0;
    bool full = false;
    while (!full && got < 4 * TRIM_MAX) {
      trim_more[got] = refill_one(size, got);
      got++;
      full = true;
      for (int m = 0; m < nmine; m++)
        full &= atomic_load(&mine[m]->xused) == mine[m]->capacity;
    }
    CHECK_MSG(full, "%zu bytes: trimmed superblocks not full after %zu "
              "mallocs", size, got);
    for (int m = 0; m < nmine; m++) CHECK(mine[m]->holes == 0);
    for (size_t i = 0; i < got; i++) trim_blocks[kept + i] = trim_more[i];
    qsort(trim_blocks, kept + got, sizeof *trim_blocks, by_address);
    size_t bad = 0;
    for (size_t i = 0; i < kept + got; i++) {
      bad += !tagged(trim_blocks[i], size, (uintptr_t)trim_blocks[i]);
      bad += i > 0 && (size_t)(trim_blocks[i] - trim_blocks[i - 1]) < size;
    }
    CHECK_MSG(bad == 0, "%zu bytes: %zu blocks overlap or were overwritten",
              size, bad);
    for (size_t i = 0; i < kept + got; i++) umpa_free(trim_blocks[i]);
  }
  umpa_malloc_trim(0);
  umpa_page_check();
}

/* A superblock trimmed once is trimmed again after more of its blocks are
 * freed, with some of its released pages brought back meanwhile: the pages
 * that hold no live block go too, and filling it again lists every block
 * once. */
/* Whether a block of live[0..n) lies on page pg of sb (its whole block,
 * the class's size, not the size asked for: a page that holds only the
 * unused end of a live block stays). */
static bool live_on(char *const *live, size_t n, struct superblock *sb,
                    size_t pg) {
  char *start = sb_start(sb);
  for (size_t i = 0; i < n; i++) {
    if (!live[i] || superblock_of(live[i]) != sb) continue;
    size_t a = (size_t)(live[i] - start) >> PAGE_SHIFT;
    size_t b = (size_t)(live[i] + sb->size - 1 - start) >> PAGE_SHIFT;
    if (pg >= a && pg <= b) return true;
  }
  return false;
}

static void test_trim_again(void) {
  if (trim_declined()) return;
  static const size_t sizes[] = {48, 1024, 3000, 20000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t size = sizes[k];
    unsigned cls = sizeclass_of(size);
    size_t cap = umpa_class[cls].capacity, pages = umpa_class[cls].sb_pages;
    size_t n = 2 * cap;
    REQUIRE(n <= TRIM_MAX);
    for (size_t i = 0; i < n; i++) {
      REQUIRE((trim_blocks[i] = umpa_malloc(size)));
      tag(trim_blocks[i], size, (uintptr_t)trim_blocks[i]);
    }
    qsort(trim_blocks, n, sizeof *trim_blocks, by_address);
    /* Every eighth block of the first half stays, and every 256th of the
     * second half, so that some pages hold no live block whatever the
     * size; the rest go, and the first trim runs. */
    for (size_t i = 0; i < n; i++)
      if (i < n / 2 ? i % 8 : i % 256) {
        umpa_free(trim_blocks[i]);
        trim_blocks[i] = NULL;
      }
    umpa_malloc_trim(0);
    struct superblock *sbs[4];
    int nsb = 0;
    for (size_t i = 0; i < n; i += 8) {
      if (!trim_blocks[i]) continue;
      struct superblock *sb = superblock_of(trim_blocks[i]);
      if (sb->holes && (nsb == 0 || sbs[nsb - 1] != sb) && nsb < 4)
        sbs[nsb++] = sb;
    }
    CHECK_MSG(nsb >= 1, "%zu bytes: no superblock trimmed", size);
    /* Some blocks again: released pages come back as the list runs dry. */
    size_t more = cap / 4, got = 0;
    for (size_t i = 0; i < more; i++) {
      REQUIRE((trim_more[i] = umpa_malloc(size)));
      tag(trim_more[i], size, (uintptr_t)trim_more[i]);
    }
    /* Half of the kept ones and of those go, and the second trim. */
    for (size_t i = 0; i < n; i += 16) {
      umpa_free(trim_blocks[i]);
      trim_blocks[i] = NULL;
    }
    for (size_t i = 0; i < more; i += 2) {
      umpa_free(trim_more[i]);
      trim_more[i] = NULL;
    }
    umpa_malloc_trim(0);
    for (int m = 0; m < nsb; m++) {
      struct superblock *sb = sbs[m];
      unsigned char vec[128];
      REQUIRE(pages <= sizeof vec &&
              mincore(sb_start(sb), pages << PAGE_SHIFT, vec) == 0);
      /* The record's pages stay, with page 0 (the header). */
      size_t rec_lo = SIZE_MAX, rec_hi = 0;
      if (sb->holes) {
        char *rec = sb_blocks(sb) + (size_t)(sb->holes - 1u) * sb->size;
        rec_lo = (size_t)(rec - sb_start(sb)) >> PAGE_SHIFT;
        rec_hi = (size_t)(rec + 4 * sizeof(uint64_t) - 1 - sb_start(sb)) >>
                 PAGE_SHIFT;
      }
      size_t stray = 0;
      for (size_t pg = 1; pg < pages; pg++)
        stray += (vec[pg] & 1) && !(pg >= rec_lo && pg <= rec_hi) &&
                 !live_on(trim_blocks, n, sb, pg) &&
                 !live_on(trim_more, more, sb, pg);
      CHECK_MSG(stray == 0, "%zu bytes: %zu free pages stayed resident after "
                "the second trim", size, stray);
    }
    /* Fill the superblocks again: no block twice, none overlapping. */
    size_t live = 0;
    for (size_t i = 0; i < n; i++)
      if (trim_blocks[i]) trim_blocks[live++] = trim_blocks[i];
    for (size_t i = 0; i < more; i++)
      if (trim_more[i]) trim_blocks[live++] = trim_more[i];
    bool full = false;
    while (!full && live + got < 5 * TRIM_MAX) {
      trim_blocks[live + got] = refill_one(size, got);
      got++;
      full = true;
      for (int m = 0; m < nsb; m++)
        full &= atomic_load(&sbs[m]->xused) == sbs[m]->capacity;
    }
    CHECK_MSG(full, "%zu bytes: superblocks trimmed twice not full again",
              size);
    for (int m = 0; m < nsb; m++) CHECK(sbs[m]->holes == 0);
    size_t total = live + got, bad = 0;
    qsort(trim_blocks, total, sizeof *trim_blocks, by_address);
    for (size_t i = 0; i < total; i++) {
      bad += !tagged(trim_blocks[i], size, (uintptr_t)trim_blocks[i]);
      bad += i > 0 && (size_t)(trim_blocks[i] - trim_blocks[i - 1]) < size;
    }
    CHECK_MSG(bad == 0, "%zu bytes: %zu blocks overlap or were overwritten",
              size, bad);
    for (size_t i = 0; i < total; i++) umpa_free(trim_blocks[i]);
  }
  umpa_malloc_trim(0);
  umpa_page_check();
}

/* Slow-path events until the heap has ticked at least twice since the
 * call (a tick comes every 16): superblocks of 64-byte blocks filled, then
 * freed. */
static void *tick_blocks[48 * 1100];
static void make_ticks(void) {
  uint64_t start = heap_slow_events();
  size_t n = 0;
  while (heap_slow_events() - start < 40 &&
         n < sizeof tick_blocks / sizeof *tick_blocks) {
    tick_blocks[n] = umpa_malloc(64);
    REQUIRE(tick_blocks[n]);
    n++;
  }
  CHECK_MSG(heap_slow_events() - start >= 40, "%zu mallocs, %llu slow paths",
            n, (unsigned long long)(heap_slow_events() - start));
  while (n) umpa_free(tick_blocks[--n]);
}

/* A class that holds a superblock and needs another takes the empty
 * current superblock of another class of its size that a tick found idle
 * (steal_idle), cut for its own size; the class it came from gets another
 * one. */
static char *steal_blocks[400];
static void test_idle_superblock_taken(void) {
  const size_t from_size = 2000, to_size = 3000;
  unsigned from = sizeclass_of(from_size), to = sizeclass_of(to_size);
  REQUIRE(from != to &&
          umpa_class[from].sb_pages == umpa_class[to].sb_pages);
  /* Blocks for two superblocks and some of a third. */
  size_t n = 2 * (size_t)umpa_class[to].capacity + 8;
  REQUIRE(n <= sizeof steal_blocks / sizeof *steal_blocks);
  umpa_malloc_trim(0); /* neither class has a superblock now */
  char *p = umpa_malloc(from_size);
  REQUIRE(p);
  struct superblock *sb = superblock_of(p);
  REQUIRE(sb && sb->cls == from);
  memset(p, 0x5a, from_size);
  umpa_free(p); /* its class's current superblock, empty */
  usleep(30 * 1000); /* past the sweeps' period (IDLE_SWEEP_NS) */
  make_ticks();
  size_t in_sb = 0;
  for (size_t i = 0; i < n; i++) {
    char *q = steal_blocks[i] = umpa_malloc(to_size);
    REQUIRE(q);
    memset(q, (int)(i % 251) + 1, to_size);
    in_sb += superblock_of(q) == sb;
  }
  CHECK_MSG(in_sb > 0 && sb->cls == to && sb->size == umpa_class[to].size,
            "%zu blocks of %zu bytes: none in the idle superblock of %zu "
            "bytes (%p)", n, to_size, from_size, (void *)sb);
  CHECK_MSG(superblock_of(steal_blocks[0]) != sb,
            "%zu bytes: the class's first superblock taken from another",
            to_size);
  char *r = umpa_malloc(from_size);
  REQUIRE(r);
  CHECK_MSG(superblock_of(r) != sb && superblock_of(r)->cls == from,
            "%zu bytes: a block in the superblock given to %zu", from_size,
            to_size);
  for (size_t i = 0; i < n; i++) {
    size_t wrong = 0;
    for (size_t k = 0; k < to_size; k++)
      wrong += steal_blocks[i][k] != (char)(i % 251 + 1);
    CHECK_MSG(wrong == 0, "block %zu of %zu bytes: %zu bytes overwritten", i,
              to_size, wrong);
    umpa_free(steal_blocks[i]);
  }
  umpa_free(r);
  CHECK(heap_masks_agree());
  umpa_malloc_trim(0);
  CHECK(umpa_page_check() == 0);
}

/* A class whose bin the heap's ticks find idle for a second (40 sweeps,
 * at least 25 ms apart) gives its empty superblock to the store, from
 * where it goes back to the page layer; a class with a block out keeps
 * its superblock. */
static void test_idle_superblock_retired(void) {
  const size_t idle_size = 20000, busy_size = 3000;
  unsigned idle_cls = sizeclass_of(idle_size), busy_cls = sizeclass_of(busy_size);
  umpa_malloc_trim(0);
  char *p = umpa_malloc(idle_size), *keep = umpa_malloc(busy_size);
  REQUIRE(p && keep);
  struct superblock *sb = superblock_of(p), *busy = superblock_of(keep);
  umpa_free(p);
  struct heap *h = umpa_tl_heap;
  struct bin *b = &h->bins[idle_cls];
  REQUIRE(b->current == sb && atomic_load(&sb->xused) == 0);
  uint64_t start = mono_ns();
  for (int i = 0; i < 100 && b->current == sb; i++) {
    usleep(30 * 1000);
    make_ticks();
  }
  double secs = (double)(mono_ns() - start) / 1e9;
  CHECK_MSG(b->current == &umpa_sb_empty && !b->spare,
            "%zu bytes: the idle superblock still held after %.2f s",
            idle_size, secs);
  CHECK_MSG(secs >= 0.9, "%zu bytes: superblock gone after %.2f s, not 1 s",
            idle_size, secs);
  CHECK(h->bins[busy_cls].current == busy);
  umpa_free(keep);
  CHECK(heap_masks_agree());
  umpa_malloc_trim(0);
  CHECK(umpa_page_check() == 0);
}

int main(void) {
  test_classes();
  test_as_pages();
  past_as_pages(); /* the rest expect superblocks */
  test_threshold();
  test_carve_a_page_at_a_time();
  test_boundary();
  test_capacity_follows_colour();
  test_front_blocks_via_malloc();
  test_paged();
  test_trim_inside_superblocks();
  test_trim_again();
  test_idle_superblock_taken();
  test_idle_superblock_retired();
  return check_done("test_superblock");
}
