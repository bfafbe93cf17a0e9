/*
 * test_malloc_mlock.c - a program that locks its memory (mlockall) gets
 * locked what it uses, not what umpa reserves.
 *
 * Regions and the fast superblock map are reserved inaccessible and opened
 * in pieces as blocks are handed out (region_open, fast_map_open), so
 * mlockall(MCL_CURRENT) leaves the reservations that exist alone and
 * MCL_FUTURE populates only what is opened.  When they were reserved
 * readable and writable, a program that locked itself and allocated 130 MB
 * was resident at 2.3 GB (the 2 GiB map and every region whole), where
 * glibc's was at 139 MB.  The test also checks that blocks work under the
 * lock (contents, realloc moving pages, calloc reading zero after frees
 * whose releases MADV_DONTNEED refuses), that a region made under
 * MCL_FUTURE is opened, not populated, whole, and that freed memory goes
 * back at a trim although it is locked.  Skipped when mlockall is
 * refused (no CAP_IPC_LOCK and a small RLIMIT_MEMLOCK) and under
 * AddressSanitizer, whose terabytes of shadow mlockall would populate.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <umpa.h>

#include "check.h"
#include "internal.h"

#define MiB ((size_t)1 << 20)

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  REQUIRE(f);
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb << 10;
}

static uint64_t rng = 88172645463325252ull;

static bool holds(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v) return false;
  return true;
}

/* mlockall(MCL_CURRENT) alone marks the reservations that exist, so the
 * pieces umpa opens of them afterwards come back populated: that is how
 * the lock is noticed (new mappings are not locked, so a probe of a fresh
 * mapping would miss it).  In a child: the lock, and umpa's notice of it,
 * last as long as the process. */
static void current_alone(void) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (mlockall(MCL_CURRENT) != 0) _exit(77);
    bool before = region_locked();
    /* 8 MiB of small blocks: new pieces of the first region. */
    for (int i = 0; i < 4096; i++) {
      char *p = umpa_malloc(2000);
      if (!p) _exit(2);
      memset(p, 1, 2000);
    }
    _exit(!before && region_locked() ? 0 : 1);
  }
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
    fprintf(stderr, "test_malloc_mlock: MCL_CURRENT case skipped, mlockall "
                    "refused\n");
  else
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "MCL_CURRENT alone: not noticed (status %d)", status);
}

int main(void) {
#if UNDER_ASAN
  fprintf(stderr, "test_malloc_mlock: skipped under AddressSanitizer\n");
  return check_done("test_malloc_mlock");
#endif
  /* umpa's first region and map exist before the lock (MCL_CURRENT). */
  void *first = umpa_malloc(100);
  REQUIRE(first);
  current_alone();
  uint64_t regions_before = region_count();
  CHECK_MSG(!region_locked(), "a lock noticed before mlockall");
  size_t rss_unlocked = rss_bytes();
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "test_malloc_mlock: skipped, mlockall: %s\n",
            strerror(errno));
    umpa_free(first);
    return check_done("test_malloc_mlock");
  }
  size_t rss0 = rss_bytes();
  /* MCL_CURRENT populates what is accessible: the program's own pages and
   * umpa's metadata, none of its reservations. */
  CHECK_MSG(rss0 - rss_unlocked < 32 * MiB, "mlockall: resident %zu -> %zu MiB",
            rss_unlocked >> 20, rss0 >> 20);
  /* Small and large blocks, about 90 MB: more than the first 64 MiB
   * region holds, so a region is made under MCL_FUTURE. */
  enum { N = 30000 };
  static unsigned char *blocks[N];
  static size_t sizes[N];
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    size_t n = i % 200 == 0 ? 256 * 1024 + (size_t)xorshift64(&rng) % (1536 * 1024)
                            : 16 + (size_t)xorshift64(&rng) % 2000;
    blocks[i] = umpa_malloc(n);
    REQUIRE(blocks[i]);
    sizes[i] = n;
    memset(blocks[i], (unsigned char)i, n);
    total += n;
  }
  size_t rss1 = rss_bytes();
  CHECK_MSG(region_count() > regions_before, "regions %llu before, %llu now",
            (unsigned long long)regions_before,
            (unsigned long long)region_count());
  /* What the lock made resident beyond the blocks: bounded by a fraction
   * of them, not by what is reserved (2 GiB and more). */
  CHECK_MSG(rss1 - rss_unlocked < total + total / 2 + 32 * MiB,
            "%zu MiB allocated, resident grew by %zu MiB", total >> 20,
            (rss1 - rss_unlocked) >> 20);
  fprintf(stderr,
          "%zu MiB allocated under mlockall: resident %zu MiB before the "
          "lock, %zu after it, %zu after the blocks\n",
          total >> 20, rss_unlocked >> 20, rss0 >> 20, rss1 >> 20);
  int bad = 0;
  for (int i = 0; i < N; i++)
    if (!holds(blocks[i], sizes[i], (unsigned char)i)) bad++;
  CHECK_MSG(bad == 0, "%d blocks lost their contents", bad);

  /* Growing a large block moves its pages (or copies them). */
  unsigned char *big = umpa_malloc(3 * MiB);
  REQUIRE(big);
  memset(big, 0x5A, 3 * MiB);
  big = umpa_realloc(big, 24 * MiB);
  REQUIRE(big);
  CHECK(holds(big, 3 * MiB, 0x5A));
  memset(big + 3 * MiB, 0xA5, 21 * MiB);
  umpa_free(big);

  /* Everything freed and trimmed: the releases that MADV_DONTNEED refuses
   * for locked pages are made by fresh mappings, so calloc still reads
   * zero where umpa believes the pages fresh. */
  for (int i = 0; i < N; i++) umpa_free(blocks[i]);
  umpa_malloc_trim(0);
  /* Freed and trimmed, the memory goes back although it was locked: the
   * first opening under the lock came back resident, and from then on
   * free pages are released by closing them (a fresh PROT_NONE mapping),
   * since MADV_DONTNEED refuses locked pages. */
  size_t rss2 = rss_bytes();
  CHECK_MSG(region_locked(), "the lock was not noticed");
  CHECK_MSG(rss2 < rss0 + 32 * MiB,
            "resident %zu MiB after free and trim (%zu after the lock)",
            rss2 >> 20, rss0 >> 20);
  fprintf(stderr, "after free and malloc_trim: %zu MiB resident\n", rss2 >> 20);
  for (int i = 0; i < 64; i++) {
    size_t n = i % 8 == 0 ? 2 * MiB : 1 + (size_t)xorshift64(&rng) % 4000;
    unsigned char *z = umpa_calloc(1, n);
    REQUIRE(z);
    CHECK(holds(z, n, 0));
    blocks[i] = z;
  }
  for (int i = 0; i < 64; i++) umpa_free(blocks[i]);
  umpa_free(first);
  munlockall();
  return check_done("test_malloc_mlock");
}
