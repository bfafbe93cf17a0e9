/*
 * test_page_huge.c - populated blocks get their whole 2 MiB pieces as
 * transparent huge pages (MADV_COLLAPSE), and nothing else changes: the
 * contents read as zero, every page is resident, releasing part of a piece
 * and writing again keep the other bytes, and lazy blocks get none.
 *
 * Run twice by CTest: as is, and with UMPA_COLLAPSE=0, where no huge page
 * may appear.  A process collapses only after populating a while by small
 * pages (os.c); the test says when that was paid (os_collapse_arm).  A
 * kernel that has no MADV_COLLAPSE for anonymous memory (before 6.1, or
 * transparent huge pages set to "never") is found by a probe of the
 * test's own; the test then says so and checks that umpa fell back to
 * small pages with the same contents.
 */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define PG ((size_t)UMPA_PAGE_SIZE)
#define HUGE ((size_t)2 * MiB)

/* The AnonHugePages of the mapping that holds p, in bytes. */
static size_t huge_bytes_at(const void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  REQUIRE(f);
  char line[512];
  bool in = false;
  size_t kb = 0;
  bool found = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') &&
        line[0] != ' ') {
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      continue;
    }
    if (in && sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) {
      found = true;
      break;
    }
  }
  fclose(f);
  REQUIRE(found);
  return kb * KiB;
}

/* Whether this kernel collapses an anonymous range of the test's own. */
static bool kernel_collapses(void) {
  char *m = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(m != MAP_FAILED);
  char *c = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
  bool ok = madvise(c, PG, MADV_POPULATE_WRITE) == 0 &&
            madvise(c, HUGE, MADV_COLLAPSE) == 0;
  if (!ok)
    printf("the kernel does not collapse anonymous memory (%s): "
           "checking the small-page fallback only\n", strerror(errno));
  munmap(m, 2 * HUGE);
  return ok;
}

static bool all_zero(const unsigned char *p, size_t bytes) {
  for (size_t i = 0; i < bytes; i++)
    if (p[i]) return false;
  return true;
}

static void fill(unsigned char *p, size_t bytes, unsigned seed) {
  for (size_t i = 0; i < bytes; i += 64) p[i] = (unsigned char)(seed + i / 64);
}

static bool filled(const unsigned char *p, size_t bytes, unsigned seed) {
  for (size_t i = 0; i < bytes; i += 64)
    if (p[i] != (unsigned char)(seed + i / 64)) return false;
  return true;
}

int main(void) {
  const char *env = getenv("UMPA_COLLAPSE");
  bool off = env && strcmp(env, "0") == 0;
  bool kernel = kernel_collapses();
  bool want = kernel && !off;

  /* A populated block of 8 MiB and three pages: 2 MiB aligned, so its
   * first four pieces are whole; the three pages stay small.  A process
   * collapses only once it has spent 40 ms populating by small pages:
   * this one has not, so its first block gets none. */
  size_t size = 4 * HUGE + 3 * PG;
  umpa_page_trim(3); /* no cached pages: the block is fresh */
  unsigned char *p = userpage_malloc(size, 0);
  REQUIRE(p);
  CHECK(((uintptr_t)p & (HUGE - 1)) == 0);
  CHECK_MSG(huge_bytes_at(p) == 0, "%zu KiB of huge pages before any "
            "populating was paid", huge_bytes_at(p) / KiB);
  CHECK(resident_pages(p, size) == size / PG);
  CHECK(all_zero(p, size));
  userpage_free(p, size);
  umpa_page_trim(3);

  /* Paid (as a test may say): the same block again, in huge pages. */
  os_collapse_arm();
  p = userpage_malloc(size, 0);
  REQUIRE(p);
  CHECK(((uintptr_t)p & (HUGE - 1)) == 0);
  size_t huge = huge_bytes_at(p);
  /* A collapse that failed or was slow (the kernel compacting, the host
   * backing the memory again, or the thread preempted) sends the next
   * pieces to small pages: allowed, and counted. */
  unsigned backoffs = os_collapse_backoffs();
  if (want)
    CHECK_MSG(huge >= 4 * HUGE || (backoffs && huge <= 4 * HUGE),
              "%zu KiB of huge pages, %u back-offs", huge / KiB, backoffs);
  else
    CHECK_MSG(huge == 0 && backoffs == 0, "%zu KiB of huge pages",
              huge / KiB);
  if (backoffs)
    printf("%u collapses failed or were slow: %zu KiB of huge pages\n",
           backoffs, huge / KiB);
  bool all = want && huge >= 4 * HUGE;
  CHECK(resident_pages(p, size) == size / PG);
  CHECK(all_zero(p, size));
  fill(p, size, 1);

  /* Half of the second piece given back: it reads as zero, the rest keeps
   * its bytes, and committed again it is zero and resident. */
  CHECK(userpage_release(p + HUGE + HUGE / 2, HUGE / 2) == 0);
  CHECK(resident_pages(p + HUGE + HUGE / 2, HUGE / 2) == 0);
  CHECK(all_zero(p + HUGE + HUGE / 2, HUGE / 2));
  CHECK(filled(p, HUGE + HUGE / 2, 1));
  CHECK(filled(p + 2 * HUGE, size - 2 * HUGE, 1 + (unsigned)(2 * HUGE / 64)));
  CHECK(userpage_commit(p + HUGE + HUGE / 2, HUGE / 2) == 0);
  CHECK(resident_pages(p, size) == size / PG);
  CHECK(all_zero(p + HUGE + HUGE / 2, HUGE / 2));

  /* A whole piece given back frees its huge page.  Committed again it is
   * populated by small pages: after a release the owner may have written
   * pages the layer thinks empty, and only an empty range is collapsed. */
  size_t before = huge_bytes_at(p);
  CHECK(userpage_release(p + 3 * HUGE, HUGE) == 0);
  CHECK(huge_bytes_at(p) + (all ? HUGE : 0) == before);
  CHECK(huge_bytes_at(p) + HUGE >= before);
  CHECK(resident_pages(p + 3 * HUGE, HUGE) == 0);
  CHECK(userpage_commit(p + 3 * HUGE, HUGE) == 0);
  CHECK(resident_pages(p + 3 * HUGE, HUGE) == HUGE / PG);
  CHECK(huge_bytes_at(p) + (all ? HUGE : 0) == before);
  CHECK(all_zero(p + 3 * HUGE, HUGE));
  CHECK(filled(p, HUGE, 1));
  userpage_free(p, size);
  umpa_page_trim(3);
  CHECK(resident_pages(p, size) == 0);
  CHECK(huge_bytes_at(p) == 0);

  /* A lazy block is not populated, so it gets no huge page. */
  unsigned char *l = userpage_malloc(4 * HUGE, UMPA_LAZY);
  REQUIRE(l);
  CHECK(resident_pages(l, 4 * HUGE) == 0);
  l[0] = 1;
  CHECK(huge_bytes_at(l) == 0);
  userpage_free(l, 4 * HUGE);
  umpa_page_trim(3);

  /* Under 2 MiB there is no whole piece. */
  unsigned char *s = userpage_malloc(HUGE - PG, 0);
  REQUIRE(s);
  CHECK(resident_pages(s, HUGE - PG) == (HUGE - PG) / PG);
  CHECK(huge_bytes_at(s) == 0);
  CHECK(all_zero(s, HUGE - PG));
  userpage_free(s, HUGE - PG);
  umpa_page_trim(3);
  CHECK(umpa_page_check() == 0);
  return check_done("test_page_huge");
}
