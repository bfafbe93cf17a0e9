/*
 * test_os_refusals.c - allocation goes on when a seccomp filter makes
 * madvise fail (sandboxes do: EPERM, or ENOSYS for a call they do not
 * know).  umpa populates with MADV_POPULATE_WRITE; taking the refusal for
 * "no memory" made every malloc fail.  Each case is a child that installs
 * the filter after umpa has populated with madvise, then allocates blocks
 * of every kind, writes them and checks that calloc's read as zero.
 */
#define _GNU_SOURCE
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static bool deny(int nr, int err) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & 0xffff)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

static int denied_errno; /* what the child's filter makes madvise fail with */

static int child(void) {
  if (!deny(SYS_madvise, denied_errno)) return 10; /* no seccomp: no test */
  /* First, whole 2 MiB pieces: madvise worked before the filter came, so
   * umpa populates them as huge pages (UMPA_COLLAPSE), and that way too
   * must take the refusal for what it is, not for "no memory". */
  void *huge = userpage_malloc(8 << 20, 0);
  if (!huge) return 5;
  userpage_free(huge, 8 << 20);
  static const size_t sizes[] = {16, 1000, 20000, 40000, 1 << 20, 64 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    char *p = umpa_malloc(n);
    if (!p) return 1;
    memset(p, 0xAB, n);
    umpa_free(p);
    char *z = umpa_calloc(1, n);
    if (!z) return 2;
    for (size_t j = 0; j < n; j += 997)
      if (z[j]) return 3;
    umpa_free(z);
  }
  void *page = userpage_malloc(1 << 20, 0);
  if (!page) return 4;
  userpage_free(page, 1 << 20);
  return 0;
}

int main(void) {
  /* Populated with madvise first, as a program that sandboxes itself
   * later has. */
  umpa_free(umpa_malloc((size_t)1 << 20));
  const int errs[] = {EPERM, ENOSYS};
  for (int i = 0; i < 2; i++) {
    denied_errno = errs[i];
    int status = child_status(child);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 10) {
      printf("test_os_refusals: no seccomp filters here, skipped\n");
      return 0;
    }
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "madvise refused with %d: child status %#x", errs[i], status);
  }
  return check_done("test_os_refusals");
}
