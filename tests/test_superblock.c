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
 * frees are 16-byte aligned or caught earlier), and at odd ones. */
static void test_boundary(void) {
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    struct superblock *sb = superblock_new(cls, NULL);
    REQUIRE(sb);
    intptr_t span = (intptr_t)sb->capacity * sb->size;
    intptr_t lo = (intptr_t)sb_start(sb) - (intptr_t)sb_blocks(sb);
    intptr_t hi = lo + ((intptr_t)umpa_class[cls].sb_pages << PAGE_SHIFT);
    unsigned wrong = 0;
    for (intptr_t off = lo; off < hi; off += 16)
      if (sb_is_boundary(sb, (uintptr_t)off) !=
          (off >= 0 && off < span && off % sb->size == 0))
        wrong++;
    for (intptr_t off = lo + 1; off < hi; off += 997)
      if (sb_is_boundary(sb, (uintptr_t)off) !=
          (off >= 0 && off < span && off % sb->size == 0))
        wrong++;
    CHECK_MSG(wrong == 0, "class %u (%u bytes): %u offsets misjudged", cls,
              (unsigned)sb->size, wrong);
    superblock_destroy(sb);
  }
}

/* Every size up to SMALL_MAX: the class holds it, the class below does not,
 * and the waste is at most 15 bytes up to 128 and under 20 % above. */
static void test_classes(void) {
  umpa_free(umpa_malloc(1)); /* the tables are built on the first malloc */
  CHECK(umpa_class[NUM_CLASSES - 1].size == SMALL_MAX);
  unsigned bad = 0, prev = 0;
  for (size_t n = 1; n <= SMALL_MAX; n++) {
    unsigned c = sizeclass_of(n);
    size_t size = umpa_class[c].size, waste = size - n;
    bool ok = c < NUM_CLASSES && size >= n && size % 16 == 0 &&
              (c == 0 || umpa_class[c - 1].size < n) && c >= prev &&
              (n <= 128 ? waste <= 15 : waste * 5 < size);
    if (!ok && bad++ < 5)
      CHECK_MSG(false, "%zu bytes: class %u of %zu bytes", n, c, size);
    prev = c;
  }
  CHECK_MSG(bad == 0, "%u sizes in the wrong class", bad);
}

int main(void) {
  test_classes();
  test_carve_a_page_at_a_time();
  test_boundary();
  return check_done("test_superblock");
}
