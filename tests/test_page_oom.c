/*
 * test_page_oom.c - running out of address space under RLIMIT_AS gives
 * NULL + ENOMEM at allocation time, and the process carries on: smaller
 * requests still succeed, freed memory is reused.
 * (Not run under AddressSanitizer, whose shadow memory needs terabytes of
 * address space.)
 */
#define _GNU_SOURCE
#include "check.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <umpa.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static size_t vsz_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0;
  if (f) {
    if (fscanf(f, "%lu", &size) != 1) size = 0;
    fclose(f);
  }
  return size * (size_t)sysconf(_SC_PAGESIZE);
}

static int child(void) {
  /* Leave 96 MiB of address space: the default 1 GiB region cannot be
   * reserved, smaller regions can. */
  struct rlimit rl = {vsz_bytes() + 96 * MiB, vsz_bytes() + 96 * MiB};
  REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0);
  errno = 0;
  void *big = userpage_malloc(256 * MiB, 0);
  CHECK(big == NULL && errno == ENOMEM);
  /* A success leaves errno alone even though bigger tries failed. */
  errno = 0;
  void *lazy = userpage_malloc(32 * MiB, UMPA_LAZY);
  CHECK(lazy != NULL && errno == 0);
  userpage_free(lazy, 32 * MiB);
  /* The process continues: modest requests are served... */
  char *p = userpage_malloc(8 * MiB, 0);
  CHECK(p != NULL);
  if (p) memset(p, 1, 8 * MiB);
  /* ...until the space is gone, which is again NULL + ENOMEM. */
  char *held[64];
  int n = 0;
  for (; n < 64; n++) {
    errno = 0;
    held[n] = userpage_malloc(4 * MiB, 0);
    if (!held[n]) break;
  }
  CHECK(n < 64 && errno == ENOMEM);
  /* Freeing makes room again. */
  while (n > 0) userpage_free(held[--n], 4 * MiB);
  void *again = userpage_malloc(4 * MiB, 0);
  CHECK(again != NULL);
  userpage_free(again, 4 * MiB);
  if (p) userpage_free(p, 8 * MiB);
  return check_done("test_page_oom (child)");
}

int main(void) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(child());
  int status;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return check_done("test_page_oom");
}
