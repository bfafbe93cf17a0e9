/*
 * os.c - the OS layer: every system call umpa makes is in this file.
 *
 * Calls go through syscall()/libc wrappers that never allocate, so the
 * allocator can run before libc is initialised and inside a preloaded
 * malloc.  errno is saved and restored around calls whose failure the
 * caller handles, so the layer never leaks a stray errno to the user.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7 */
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define ANON_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

void *os_reserve_aligned(size_t size, size_t align, void *hint) {
  /* Where the next top-down mapping would go: just below the caller's
   * last one.  One system call instead of three when that is free (each
   * process's first region: a short-lived one pays for each). */
  uintptr_t want = (uintptr_t)hint;
  if (want > size) {
    int saved = errno;
    want = (want - size) & ~(align - 1);
    void *q = mmap((void *)want, size, PROT_NONE,
                   ANON_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == (void *)want) return q;
    if (q != MAP_FAILED) munmap(q, size); /* old kernel ignored the flag */
    errno = saved;
  }
  /* Over-reserve and trim: the kernel has no "aligned mmap".  A first try
   * with exactly `size` often comes back aligned already when regions are
   * reserved back to back, and costs no extra address space under
   * RLIMIT_AS. */
  void *p = mmap(NULL, size, PROT_NONE, ANON_FLAGS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if (((uintptr_t)p & (align - 1)) == 0) return p;
  munmap(p, size);
  /* Try the aligned address just below, where the next top-down mapping
   * would have gone anyway. */
  uintptr_t below = ((uintptr_t)p & ~(align - 1));
  if (below >= align) {
    void *q = mmap((void *)below, size, PROT_NONE,
                   ANON_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == (void *)below) return q;
    if (q != MAP_FAILED) munmap(q, size); /* old kernel ignored the flag */
  }
  if (size + align < size) {
    errno = ENOMEM;
    return NULL;
  }
  char *raw = mmap(NULL, size + align, PROT_NONE, ANON_FLAGS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  uintptr_t start = ((uintptr_t)raw + align - 1) & ~(align - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = align - head;
  if (head) munmap(raw, head);
  if (tail) munmap((char *)start + size, tail);
  return (void *)start;
}

void *os_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, ANON_FLAGS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *os_reserve(size_t size) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_NONE, ANON_FLAGS, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

/* Reservations are inaccessible until opened: mlockall populates and locks
 * every accessible page, readable ones too (and a kernel without the
 * shared zero page backs each page read), so a reservation opened whole
 * would be locked whole.  Opening a piece of a locked reservation for
 * writing populates just that piece, which is what a program that locks
 * its memory asks for. */
bool os_open(void *p, size_t size, bool write) {
  int saved = errno;
  bool ok = mprotect(p, size, write ? PROT_READ | PROT_WRITE : PROT_READ) == 0;
  errno = saved;
  return ok;
}

/* Regions are reserved MAP_NORESERVE, which the kernel's default
 * (heuristic) overcommit policy never refuses, so without this a block
 * bigger than memory and swap together would be handed out and the
 * program killed when it fills it, where glibc's mmap fails with ENOMEM.
 * The same mapping without the flag gets the policy's answer.  Not under
 * RLIMIT_AS: there the question itself takes `size` of the address space
 * the limit counts, and could refuse a block a region already holds room
 * for; the limit bounds what the program can reserve anyway. */
bool os_may_commit(size_t size) {
  if (os_address_space_limit() != SIZE_MAX) return true;
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) munmap(p, size);
  errno = saved;
  return p != MAP_FAILED;
}

void os_unmap(void *p, size_t size) {
  int saved = errno;
  munmap(p, size);
  errno = saved;
}

/* MADV_POPULATE_WRITE reports out-of-memory as an error; MAP_POPULATE
 * cannot report it; touching is the last resort and turns out-of-memory
 * into a signal.  Auto mode probes once and remembers what works. */
static _Atomic int populate_mode = POPULATE_AUTO;

static int populate_touch(void *p, size_t size) {
  /* An atomic add of zero takes one write fault and keeps what the page
   * holds; a plain read would first map the shared zero page. */
  char *c = p;
  for (size_t off = 0; off < size; off += PAGE_SIZE)
    __atomic_fetch_add(&c[off], 0, __ATOMIC_RELAXED);
  return 0;
}

static int populate_map(void *p, size_t size) {
  /* The range is unbacked (the caller only populates unbacked runs), so
   * replacing it by a fresh populated mapping loses nothing. */
  void *q = mmap(p, size, PROT_READ | PROT_WRITE,
                 ANON_FLAGS | MAP_FIXED | MAP_POPULATE, -1, 0);
  return q == MAP_FAILED ? errno : 0;
}

/* Whole 2 MiB pieces of an empty range are populated as transparent huge
 * pages: the piece's first page by MADV_POPULATE_WRITE, then MADV_COLLAPSE
 * (Linux 6.1), which puts one zeroed huge page under the piece without
 * advising the mapping (no MADV_HUGEPAGE, so no split mapping and no huge
 * page later under a small run that reuses the range).  Here that took
 * 185-250 us a piece against 0.8-1 ms by 4 KiB pages.  But a huge page can
 * cost more than its small pages: the kernel may have to compact memory
 * for one, and on this VM the host takes back the guest's free memory in
 * 2 MiB blocks (free page reporting), so a huge page is made of memory the
 * host must back again, 5-9 ms a piece unless huge pages were freed
 * lately, where small pages come from memory freed lately.  One such
 * collapse made bench/smallobj's mixed phase, which populates 11 MiB in
 * big ranges, 19 % slower.  So collapsing is paid for by populating: it
 * is tried only once the process spent COLLAPSE_FIRST_NS populating big
 * ranges by small pages, and a collapse that fails or takes longer than
 * the piece's small pages would (COLLAPSE_SLOW_NS, wall time: the host's
 * work is steal time, outside the thread's CPU time) must be repaid
 * COLLAPSE_REPAY times over the same way before the next try.  What
 * collapsing can lose is then a share of the populating (under 5 % once
 * repaid, and the first slow one a fifth of the first 40 ms), while fast
 * ones go on.  A kernel or a filter that refuses the call the first time
 * it is made (EINVAL: no MADV_COLLAPSE, or huge pages set to never; EPERM,
 * ENOSYS: seccomp) is not asked again. */
#define COLLAPSE_SLOW_NS 1000000
#define COLLAPSE_FIRST_NS 40000000
#define COLLAPSE_REPAY 20
#define COLLAPSE_DEBT_MAX_NS 2000000000 /* a stall past 100 ms counts so */
static _Atomic int collapse_state; /* 0 untried, 1 works, -1 refused */
/* Populating time (ns) earned towards the next try: it may try at 0. */
static _Atomic int64_t collapse_credit = -COLLAPSE_FIRST_NS;
static _Atomic unsigned collapse_slowed; /* slow or failed ones (tests) */

/* A clock in ns, read from the vDSO; 0 if it cannot be read. */
static uint64_t clock_ns(clockid_t id) {
  struct timespec t;
  if (clock_gettime(id, &t) != 0) return 0;
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The fine clock: the coarse one (os_now_ns) ticks every 4 ms. */
uint64_t os_fine_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

unsigned os_collapse_backoffs(void) {
  return atomic_load_explicit(&collapse_slowed, memory_order_relaxed);
}

void os_collapse_arm(void) {
  atomic_store_explicit(&collapse_credit, 0, memory_order_relaxed);
}

/* Try to make the empty 2 MiB piece at c (aligned) one huge page with
 * memory; false leaves it to be populated by small pages (its first page
 * may have memory then, which populating again keeps). */
static bool collapse_piece(char *c) {
  if (atomic_load_explicit(&collapse_state, memory_order_relaxed) < 0 ||
      atomic_load_explicit(&collapse_credit, memory_order_relaxed) < 0)
    return false;
  uint64_t t0 = os_fine_ns();
  if (madvise(c, PAGE_SIZE, MADV_POPULATE_WRITE) != 0) return false;
  int ok = madvise(c, (size_t)1 << HUGE_SHIFT, MADV_COLLAPSE) == 0;
  uint64_t took = os_fine_ns() - t0;
  if (!ok && (errno == EINVAL || errno == EPERM || errno == ENOSYS) &&
      atomic_load_explicit(&collapse_state, memory_order_relaxed) == 0) {
    atomic_store_explicit(&collapse_state, -1, memory_order_relaxed);
    return false;
  }
  /* A preempted thread may find a fast collapse slow: a debt for nothing,
   * which costs only the difference. */
  if (!ok || took > COLLAPSE_SLOW_NS) {
    atomic_fetch_add_explicit(&collapse_slowed, 1, memory_order_relaxed);
    int64_t debt = took < COLLAPSE_SLOW_NS ? COLLAPSE_SLOW_NS : (int64_t)took;
    debt *= COLLAPSE_REPAY;
    atomic_store_explicit(&collapse_credit,
                          debt < COLLAPSE_DEBT_MAX_NS ? -debt
                                                      : -COLLAPSE_DEBT_MAX_NS,
                          memory_order_relaxed);
  } else {
    atomic_store_explicit(&collapse_state, 1, memory_order_relaxed);
  }
  return ok;
}

/* MADV_POPULATE_WRITE over [p, p+size) by small pages, the time it took
 * earned towards collapsing; 0 or its errno. */
static int populate_earning(char *p, size_t size) {
  uint64_t t0 = os_fine_ns();
  if (madvise(p, size, MADV_POPULATE_WRITE) != 0) return errno;
  atomic_fetch_add_explicit(&collapse_credit, (int64_t)(os_fine_ns() - t0),
                            memory_order_relaxed);
  return 0;
}

/* Populate the empty range [p, p+size) with MADV_POPULATE_WRITE, its whole
 * 2 MiB pieces as huge pages where the kernel gives them; 0 or the errno
 * of the populate that failed. */
static int populate_huge(char *p, size_t size) {
  const uintptr_t huge = (uintptr_t)1 << HUGE_SHIFT;
  char *lo = (char *)(((uintptr_t)p + huge - 1) & ~(huge - 1));
  char *hi = (char *)(((uintptr_t)p + size) & ~(huge - 1));
  char *from = p; /* the start of what is left to populate by small pages */
  for (char *c = lo; c < hi; c += huge) {
    if (!collapse_piece(c)) continue;
    int err = c > from ? populate_earning(from, (size_t)(c - from)) : 0;
    if (err) return err;
    from = c + huge;
  }
  char *end = p + size;
  return end > from ? populate_earning(from, (size_t)(end - from)) : 0;
}

/* Populate [p, p+size) by small pages, the way `mode` says (switching
 * to MAP_POPULATE for good where madvise is refused); 0 or an errno. */
static int populate_small(void *p, size_t size, bool empty, int mode) {
  if (mode == POPULATE_AUTO || mode == POPULATE_MADVISE) {
    if (madvise(p, size, MADV_POPULATE_WRITE) == 0) {
      atomic_store_explicit(&populate_mode, POPULATE_MADVISE,
                            memory_order_relaxed);
      return 0;
    }
    if (umpa_opt.populate == POPULATE_AUTO &&
        ((errno == EINVAL && mode == POPULATE_AUTO) || errno == EPERM ||
         errno == ENOSYS)) {
      /* A kernel older than 5.14 (EINVAL at the first try), or a seccomp
       * filter that refuses madvise (EPERM, ENOSYS), perhaps installed
       * after it had worked: with madvise taken for "no memory", every
       * malloc failed.  Asked for by name (UMPA_POPULATE=madvise), it is
       * not replaced. */
      atomic_store_explicit(&populate_mode, POPULATE_MAP,
                            memory_order_relaxed);
      return empty ? populate_map(p, size) : populate_touch(p, size);
    }
    /* ENOMEM: no memory; EFAULT/EHWPOISON: treat as no memory too. */
    return ENOMEM;
  }
  if (mode == POPULATE_MAP && empty) return populate_map(p, size);
  return populate_touch(p, size);
}

int os_populate(void *p, size_t size, bool empty, uint64_t *faults) {
  int saved = errno;
  uint64_t before = faults ? os_thread_faults() : 0; /* a system call */
  int known = atomic_load_explicit(&populate_mode, memory_order_relaxed);
  int mode = known == POPULATE_AUTO ? umpa_opt.populate : known;
  int err = -1;
  if (known == POPULATE_MADVISE && empty && umpa_opt.collapse &&
      size >= ((size_t)1 << HUGE_SHIFT)) {
    /* MADV_POPULATE_WRITE has worked before: the kernel is 5.14 or later.
     * Refused since (a seccomp filter: EPERM, ENOSYS), the range goes the
     * small pages' way, which takes another road; what its pieces got is
     * zero, and the range was empty. */
    err = populate_huge(p, size);
    if (err == EPERM || err == ENOSYS) err = -1;
    else if (err) err = ENOMEM;
  }
  if (err < 0) err = populate_small(p, size, empty, mode);
  if (faults) *faults = os_thread_faults() - before;
  errno = saved;
  return err;
}

_Atomic unsigned os_fresh_refusals;

/* A fresh mapping over [p, p+size), or false. */
static bool map_fixed(void *p, size_t size, int prot) {
  unsigned refuse = atomic_load_explicit(&os_fresh_refusals, memory_order_relaxed);
  if (UMPA_UNLIKELY(refuse)) {
    atomic_fetch_sub_explicit(&os_fresh_refusals, 1, memory_order_relaxed);
    return false;
  }
  return mmap(p, size, prot, ANON_FLAGS | MAP_FIXED, -1, 0) != MAP_FAILED;
}

static bool map_fresh(void *p, size_t size) {
  return map_fixed(p, size, PROT_READ | PROT_WRITE);
}

void os_release(void *p, size_t size) {
  int saved = errno;
  /* MADV_DONTNEED refuses locked pages (mlock, mlockall); a fresh mapping
   * drops them too, and the callers promise that the range reads zero: if
   * that is refused as well (out of VMAs), the bytes are cleared. */
  if (madvise(p, size, MADV_DONTNEED) != 0 && !map_fresh(p, size))
    memset(p, 0, size);
  errno = saved;
}

void os_heal(void *p, size_t size, bool thp) {
  int saved = errno;
  bool ok = map_fresh(p, size);
  /* A kernel out of VMAs refuses the mapping and leaves the pages as they
   * were; the callers have cleared their backed bits, which promise that
   * the range reads zero, so the memory goes the way that needs no VMA,
   * and if the pages are locked (which that way refuses) it is cleared. */
  if (!ok) {
    if (madvise(p, size, MADV_DONTNEED) != 0) memset(p, 0, size);
  } else if (thp) {
    madvise(p, size, MADV_HUGEPAGE);
  }
  errno = saved;
}

bool os_page_resident(void *p) {
  int saved = errno;
  unsigned char v = 0;
  bool resident = mincore(p, PAGE_SIZE, &v) == 0 && (v & 1);
  errno = saved;
  return resident;
}

void os_close(void *p, size_t size, bool thp) {
  int saved = errno;
  bool ok = map_fixed(p, size, PROT_NONE);
  /* The advice belongs to the mapping: the fresh one needs it again. */
  if (ok && thp) madvise(p, size, MADV_HUGEPAGE);
  errno = saved;
  if (!ok) os_heal(p, size, thp);
}

void os_advise_huge(void *p, size_t size) {
  int saved = errno;
  madvise(p, size, MADV_HUGEPAGE);
  errno = saved;
}

_Atomic uint64_t os_move_script;

int os_move(void *src, void *dst, size_t size) {
  int saved = errno, err = 0;
  uint64_t script = atomic_load_explicit(&os_move_script, memory_order_relaxed);
  if (UMPA_UNLIKELY(script)) {
    atomic_store_explicit(&os_move_script, script >> 8, memory_order_relaxed);
    err = (int)(script & 0xff);
  }
  void *q = err ? MAP_FAILED
                : mremap(src, size, size,
                         MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
  if (q == MAP_FAILED) {
    if (!err) err = errno;
    /* A range that spans several VMAs (earlier moves split them) fails
     * with EFAULT: move it in two halves, cut on a 2 MiB boundary when
     * possible so that page tables still move whole. */
    if (err == EFAULT && size > PAGE_SIZE) {
      size_t half = (size / 2) & ~(PAGE_SIZE - 1);
      size_t huge = (size_t)1 << HUGE_SHIFT;
      if (size > huge && half >= huge) half &= ~(huge - 1);
      err = os_move(src, dst, half);
      if (!err) {
        err = os_move((char *)src + half, (char *)dst + half, size - half);
        /* Callers count on all or nothing: put the first half back, and
         * if the kernel refuses that too (out of VMAs), copy it back: the
         * source keeps its mapping, so the writes fault pages in there,
         * and a caller that falls back to copying (realloc) finds its
         * bytes where it left them. */
        if (err && os_move(dst, src, half) != 0) memcpy(src, dst, half);
      }
    }
  }
  errno = saved;
  return err;
}

int os_residency(void *p, size_t npages, unsigned char *vec) {
  int saved = errno;
  int r = mincore(p, npages << PAGE_SHIFT, vec);
  errno = saved;
  return r;
}

static _Atomic int swap_known = -1;

size_t os_address_space_limit(void) {
  struct rlimit rl;
  int saved = errno;
  bool ok = getrlimit(RLIMIT_AS, &rl) == 0;
  errno = saved;
  return ok && rl.rlim_cur != RLIM_INFINITY ? (size_t)rl.rlim_cur : SIZE_MAX;
}

bool os_has_swap(void) {
  int known = atomic_load_explicit(&swap_known, memory_order_relaxed);
  if (known >= 0) return known;
  /* Asked once: a process rarely outlives a swapon, and this runs on
   * every free of a lazily populated block. */
  struct sysinfo si;
  int saved = errno;
  bool has = sysinfo(&si) == 0 && si.totalswap != 0;
  errno = saved;
  atomic_store_explicit(&swap_known, has, memory_order_relaxed);
  return has;
}

uint64_t os_thread_faults(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return 0;
  return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

void os_futex_wait(_Atomic uint32_t *addr, uint32_t val) {
  int saved = errno;
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL,
          0);
  errno = saved;
}

void os_futex_wake(_Atomic uint32_t *addr, int n) {
  int saved = errno;
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
  errno = saved;
}

void os_yield(void) { sched_yield(); }

int os_thread_id(void) { return (int)syscall(SYS_gettid); }

bool os_thread_alive(int tid) {
  int saved = errno;
  /* Signal 0 only checks: nothing is sent.  tgkill, not tkill: it is what
   * raise and abort call, so a seccomp filter that kills on calls it does
   * not list lets it through; and an id another process took meanwhile
   * reads as gone, as our thread is. */
  bool gone = syscall(SYS_tgkill, getpid(), tid, 0) != 0 && errno == ESRCH;
  errno = saved;
  return !gone;
}

bool os_membarrier(void) {
  /* 0: not asked yet, 1: registered, -1: none (a kernel before 4.14).
   * Not under a seccomp filter at all: one whose action for calls it does
   * not list is to kill (systemd's SystemCallFilter=, sandboxes) would
   * kill the program on a malloc_trim.  Racing first calls both
   * register: harmless. */
  static _Atomic int state;
  int s = atomic_load_explicit(&state, memory_order_acquire);
  if (s == 0) {
    s = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 0 &&
                syscall(SYS_membarrier,
                        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
            ? 1
            : -1;
    atomic_store_explicit(&state, s, memory_order_release);
  }
  return s > 0 &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* Here rather than with the other thread-locals of thread.c: the page
 * layer reads it, and a program linking the page layer alone (the page
 * API's tests) must not pull thread.c's constructor in with it. */
__thread uint64_t umpa_tl_now __attribute__((tls_model("initial-exec")));

UMPA_HOT
uint64_t os_now_ns(void) {
  /* The coarse clock is read from the vDSO without entering the kernel. */
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}

void os_write_stderr(const char *s, size_t len) {
  int saved = errno;
  while (len > 0) {
    ssize_t w = write(2, s, len);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;
    }
    s += w;
    len -= (size_t)w;
  }
  errno = saved;
}

void os_abort(void) { abort(); }

extern char **environ;
char **os_environ(void) { return environ; }
