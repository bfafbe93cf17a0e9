/*
 * test_malloc_map.c - the two ways from a pointer to its superblock agree,
 * and umpa works without the fast one.
 *
 * superblock_of (the fast map: one byte per 64 KiB, the header computed
 * from the pointer) and superblock_of_slow (the region map, then the
 * region's superblock map) must name the same header for blocks of every
 * class, interior pointers included, and NULL for large blocks, foreign
 * memory and addresses past 47 bits; a region's superblock map is its part
 * of the fast map when it has one, and then its own is never written; the
 * fast map is readable only in a window around the regions.
 * Then the test runs itself again under an RLIMIT_AS too tight for the fast
 * map's 2 GiB reservation (umpa makes none below 32 GiB): every free goes
 * through the region maps, and
 * blocks of every class still allocate, free, are reused, and bad frees
 * are still caught.  (The tight run is skipped under AddressSanitizer, whose
 * shadow memory needs terabytes of address space.)
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <umpa.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"

#include "as_pages.h"

#define MiB ((size_t)1 << 20)

/* Both maps agree on p; returns the superblock (NULL if none). */
static struct superblock *agreed(const void *p) {
  struct superblock *fast = superblock_of(p);
  struct superblock *slow = superblock_of_slow(p, NULL);
  CHECK_MSG(fast == slow, "%p: fast %p, slow %p", p, (void *)fast,
            (void *)slow);
  return slow;
}

/* p's superblock is in exactly one map: the fast one, or else its
 * region's own (reading an own map that was never written faults in the
 * zero page, which is what it must hold). */
static void one_map(const void *p) {
  struct region *r = region_of(p);
  REQUIRE(r);
  size_t g = ((uintptr_t)p - r->base) >> GRANULE_SHIFT;
  unsigned own = atomic_load(&r->xsb_map[g]);
  unsigned fast = r->fast_map ? sb_map_shift((uintptr_t)p) : 0;
  CHECK_MSG(r->fast_map ? own == 0 && fast != 0 : own != 0,
            "%p: fast map %d, own %u, fast %u", p, r->fast_map, own, fast);
}

/* Blocks of every small size: each lies in a superblock whose header both
 * ways name, sits in the superblock's first page, and describes it. */
static void every_class(void) {
  past_as_pages();
  enum { N = 64 };
  static char *blocks[N * 40];
  size_t count = 0;
  for (size_t n = 1; n <= SMALL_MAX && count < N * 40; n += n < 256 ? 15 : n / 5)
    for (int i = 0; i < N && count < N * 40; i++) {
      char *p = umpa_malloc(n);
      REQUIRE(p);
      memset(p, (int)(n & 0xff), n);
      struct superblock *sb = agreed(p);
      CHECK(sb != NULL);
      one_map(p);
      if (sb) {
        CHECK(sb->size >= n);
        CHECK((uintptr_t)sb % SUPERBLOCK_HEADER == 0);
        CHECK((uintptr_t)sb - (uintptr_t)sb_start(sb) <= SB_COLOR_MAX);
        /* Behind the header, or in front of it. */
        CHECK(((char *)p >= sb_blocks(sb) &&
               (char *)p < sb_blocks(sb) + (size_t)sb_main(sb) * sb->size) ||
              ((char *)p >= sb_start(sb) &&
               (char *)p + sb->size <= (char *)sb));
        CHECK(agreed(p + n - 1) == sb); /* interior */
      }
      blocks[count++] = p;
    }
  /* Free every other one, then all: the slots come back. */
  for (size_t i = 0; i < count; i += 2) umpa_free(blocks[i]);
  for (size_t i = 0; i < count; i += 2) {
    blocks[i] = umpa_malloc(24);
    REQUIRE(blocks[i]);
    CHECK(agreed(blocks[i]) != NULL);
  }
  for (size_t i = 0; i < count; i++) umpa_free(blocks[i]);
}

static void not_superblocks(void) {
  char *large = umpa_malloc(SMALL_MAX + 1);
  REQUIRE(large);
  CHECK(agreed(large) == NULL);
  CHECK(agreed(large + 70000) == NULL);
  umpa_free(large);
  char local[16];
  CHECK(agreed(local) == NULL);
  CHECK(agreed(NULL) == NULL);
  CHECK(agreed((void *)((uintptr_t)1 << 47)) == NULL);
  CHECK(agreed((void *)~(uintptr_t)0xfff) == NULL);
  void *page = userpage_malloc(1 << 16, 0);
  REQUIRE(page);
  CHECK(agreed(page) == NULL);
  userpage_free(page, 1 << 16);
}

static void free_interior(void) {
  char *p = umpa_malloc(64);
  umpa_free(p + 16);
}

static void free_stack(void) {
  char buf[64];
  umpa_free(buf + 16);
}

static void all_cases(void) {
  every_class();
  not_superblocks();
  CHECK(dies_with(free_interior, "not allocated"));
  CHECK(dies_with(free_stack, "not allocated"));
}

/* The fast map serves umpa's blocks, and is readable only in a window
 * around the regions (so that mlockall does not lock 2 GiB of it): an
 * address on either side of the window is answered without reading the
 * map, where a read would fault. */
static void window(void) {
  uint64_t w = atomic_load(&umpa_sb_fast.window);
  size_t len = sb_window_len(w), lo = sb_window_lo(w);
  CHECK(len > 0);
  CHECK_MSG(len <= 64 * MiB, "window of %zu MiB", len >> 20);
  char *p = umpa_malloc(64);
  REQUIRE(p);
  CHECK(sb_map_shift((uintptr_t)p) != 0);
  CHECK(region_of(p)->fast_map);
  umpa_free(p);
  if (lo > 0) CHECK(sb_map_shift((lo - 1) << GRANULE_SHIFT) == 0);
  CHECK(sb_map_shift((lo + len) << GRANULE_SHIFT) == 0);
  CHECK(agreed((void *)((lo + len) << GRANULE_SHIFT)) == NULL);
}

static int tight(void) {
  /* Set by the parent before exec: no region of a GiB, no fast map. */
  void *p = umpa_malloc(100); /* the first allocation makes a region */
  REQUIRE(p);
  CHECK(sb_window_len(atomic_load(&umpa_sb_fast.window)) == 0);
  CHECK(!region_of(p)->fast_map);
  umpa_free(p);
  all_cases();
  return check_done("test_malloc_map (tight RLIMIT_AS)");
}

/* Every free reads the fast map's two words: they have a cache line of
 * their own, and the page layer's counters (written on every page taken
 * or given back) lines of theirs.  Linked as two variables beside
 * umpa_pc, the words shared its busiest line, and each page operation of
 * one thread cost the next free of every other thread a cache miss. */
static void own_lines(void) {
  CHECK((uintptr_t)&umpa_sb_fast % 64 == 0 && sizeof umpa_sb_fast == 64);
  CHECK((uintptr_t)&umpa_pc % 64 == 0 && sizeof umpa_pc % 64 == 0);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "tight") == 0) return tight();
  own_lines();
  all_cases();
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY)
    window();
#if !UNDER_ASAN
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    /* Room for the program and regions of up to 256 MiB, not for 2 GiB. */
    struct rlimit tight_rl = {768 * MiB, 768 * MiB};
    if (setrlimit(RLIMIT_AS, &tight_rl) != 0) _exit(3);
    char *args[] = {argv[0], "tight", NULL};
    execv("/proc/self/exe", args);
    _exit(4);
  }
  int status;
  waitpid(pid, &status, 0);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
            status);
#endif
  return check_done("test_malloc_map");
}
