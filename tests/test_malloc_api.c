/*
 * test_malloc_api.c - the malloc family side by side with the system
 * allocator.  Every scenario runs once against the plain names (glibc's
 * malloc; ASan's in a sanitizer build) and once against umpa's umpa_*
 * functions, and yields an observable outcome as a short string: NULL or
 * not, errno, return code, alignment, usable >= requested, contents
 * preserved, zeroed, *out untouched ...  umpa's outcome must be the one the
 * contract in include/umpa.h (glibc's semantics) gives, and the same as
 * glibc's.  Addresses and exact malloc_usable_size values differ between
 * allocators and are never compared: only "usable >= requested and every
 * usable byte writable".  Facts that are printed but not compared (errno
 * where the contract leaves it open, usable sizes) go in a note.
 *
 * Each scenario runs in a child process (fork), so that an abort or a
 * crash is reported as that scenario's outcome and the rest still run, and
 * so that settings (mallopt) do not leak from one scenario to the next.
 * The parent first gives both allocators a used, fragmented heap, which
 * every child inherits.
 *
 * Under ASan the system side is ASan's allocator, which legitimately
 * differs from glibc (exact usable sizes, mallopt, mallinfo2, malloc_trim,
 * non-power-of-two alignments): umpa is then checked against the contract
 * only.  Under LD_PRELOAD=libumpa.so the plain names are umpa's too; the
 * test compares umpa with itself and must still pass: nothing here assumes
 * the two sides differ.
 */
#define _GNU_SOURCE
#include "check.h"
#include "umpa.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


#if UNDER_ASAN
/* Huge requests must give NULL (as glibc's do), not an ASan report. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define PDMAX ((size_t)PTRDIFF_MAX)
#define ERRNO_SENTINEL 4242
#define OUT_SENTINEL ((void *)(uintptr_t)0x5e5e5e5e5e5e5e50u)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static size_t page;

/* Hides a constant from the compiler, so that calls such as malloc(SIZE_MAX)
 * draw no -Walloc-size-larger-than warning and are not folded away. */
static size_t hide(size_t x) {
  __asm__ volatile("" : "+r"(x));
  return x;
}

/* ---------------------------------------------------------------------------
 * The two allocators.
 * ------------------------------------------------------------------------- */

struct heapinfo {
  size_t arena;  /* bytes the allocator holds from the system */
  size_t in_use; /* bytes in allocated blocks */
};

struct api {
  const char *name;
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  void *(*reallocarray)(void *, size_t, size_t);
  int (*posix_memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  void *(*memalign)(size_t, size_t);
  void *(*valloc)(size_t);
  void *(*pvalloc)(size_t);
  size_t (*usable)(void *);
  int (*trim)(size_t);
  int (*mallopt)(int, int);
  void (*info)(struct heapinfo *);
  void (*stats)(void);
  int (*info_xml)(int, FILE *);
};

/* glibc's mallinfo2 counts mmapped blocks apart (hblkhd); umpa's uordblks
 * includes its large blocks.  (Under LD_PRELOAD mallinfo2 is umpa's and
 * large blocks count twice here; every use below only needs a lower bound
 * for growth and an upper bound after freeing, which that keeps.) */
static void sys_info(struct heapinfo *h) {
  struct mallinfo2 m = mallinfo2();
  h->arena = m.arena + m.hblkhd;
  h->in_use = m.uordblks + m.hblkhd;
}

static void umpa_info(struct heapinfo *h) {
  struct umpa_mallinfo m = umpa_mallinfo();
  h->arena = m.arena;
  h->in_use = m.uordblks;
}

static const struct api sys_api = {
    UNDER_ASAN ? "asan" : "glibc",
    malloc, free, calloc, realloc, reallocarray, posix_memalign,
    aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size,
    malloc_trim, mallopt, sys_info, malloc_stats, malloc_info};

static const struct api umpa_api = {
    "umpa",
    umpa_malloc, umpa_free, umpa_calloc, umpa_realloc, umpa_reallocarray,
    umpa_posix_memalign, umpa_aligned_alloc, umpa_memalign, umpa_valloc,
    umpa_pvalloc, umpa_malloc_usable_size, umpa_malloc_trim, umpa_mallopt,
    umpa_info, umpa_malloc_stats, umpa_malloc_info};

/* ---------------------------------------------------------------------------
 * Outcomes and the scenario runner.
 * ------------------------------------------------------------------------- */

struct out {
  char s[512];    /* the outcome: compared */
  char note[256]; /* extra facts: printed only */
};

static void vappend(char *buf, size_t cap, const char *fmt, va_list ap) {
  size_t len = strlen(buf);
  if (len && len + 1 < cap) buf[len++] = ' ', buf[len] = 0;
  if (len < cap) vsnprintf(buf + len, cap - len, fmt, ap);
}

/* Append a word to the outcome. */
__attribute__((format(printf, 2, 3))) static void say(struct out *o,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vappend(o->s, sizeof o->s, fmt, ap);
  va_end(ap);
}

/* Append a fact that is printed but not compared. */
__attribute__((format(printf, 2, 3))) static void note(struct out *o,
                                                       const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vappend(o->note, sizeof o->note, fmt, ap);
  va_end(ap);
}

static const char *ename(int e) {
  static char buf[4][16];
  static int next;
  switch (e) {
    case 0: return "0";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EOVERFLOW: return "EOVERFLOW";
    case ERRNO_SENTINEL: return "unchanged";
  }
  char *b = buf[next++ & 3];
  snprintf(b, sizeof buf[0], "%d", e);
  return b;
}

struct args {
  size_t x, y;
  int k;
};

typedef void scen_fn(const struct api *a, struct args arg, struct out *o);

/* Run fn on one allocator in a child process, so that an abort or a
 * crash in one scenario is reported as its outcome and the others still
 * run.  (Each scenario therefore starts from the state the parent has,
 * and settings such as mallopt's do not leak into later scenarios.) */
static void run_side(scen_fn *fn, const struct api *a, struct args arg,
                     struct out *o) {
  memset(o, 0, sizeof *o);
  fflush(stderr);
  int fd[2];
  REQUIRE(pipe(fd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fd[0]);
    fn(a, arg, o);
    ssize_t w = write(fd[1], o, sizeof *o);
    _exit(w == (ssize_t)sizeof *o ? 0 : 3);
  }
  close(fd[1]);
  size_t got = 0;
  while (got < sizeof *o) {
    ssize_t r = read(fd[0], (char *)o + got, sizeof *o - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) REQUIRE(errno == EINTR);
  if (got != sizeof *o || !WIFEXITED(status) || WEXITSTATUS(status)) {
    memset(o, 0, sizeof *o);
    if (WIFSIGNALED(status))
      say(o, "CRASHED(%s)", strsignal(WTERMSIG(status)));
    else
      say(o, "EXITED(%d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  o->s[sizeof o->s - 1] = o->note[sizeof o->note - 1] = 0;
}

/* Check umpa's outcome against the contract (`expect`) and against the
 * system allocator's; print both when `print` or when they are not as
 * expected.  Returns whether all is as expected. */
static bool judge(const char *label, const struct out *g, const struct out *u,
                  const char *expect, bool print) {
  bool ok = strcmp(u->s, expect) == 0 &&
            (UNDER_ASAN || strcmp(u->s, g->s) == 0);
  if (print || !ok || (!UNDER_ASAN && strcmp(g->s, expect) != 0)) {
    fprintf(stderr, "%s: %s=%s umpa=%s", label, sys_api.name, g->s, u->s);
    if (g->note[0] || u->note[0])
      fprintf(stderr, "   [%s: %s; umpa: %s]", sys_api.name,
              g->note[0] ? g->note : "-", u->note[0] ? u->note : "-");
    fputc('\n', stderr);
  }
  CHECK_MSG(strcmp(u->s, expect) == 0,
            "%s: umpa gave \"%s\", the contract says \"%s\"", label, u->s,
            expect);
  if (!UNDER_ASAN) {
    CHECK_MSG(strcmp(u->s, g->s) == 0, "%s: umpa gave \"%s\", %s \"%s\"",
              label, u->s, sys_api.name, g->s);
    if (strcmp(g->s, expect) != 0)
      fprintf(stderr, "  note: %s's own outcome is not \"%s\"\n",
              sys_api.name, expect);
  }
  return ok;
}

/* Run fn on both allocators, print both outcomes and judge umpa's. */
__attribute__((format(printf, 4, 5))) static bool scenario(
    scen_fn *fn, struct args arg, const char *expect, const char *fmt, ...) {
  char label[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(label, sizeof label, fmt, ap);
  va_end(ap);
  struct out g, u;
  run_side(fn, &sys_api, arg, &g);
  run_side(fn, &umpa_api, arg, &u);
  return judge(label, &g, &u, expect, true);
}

/* An umpa-only scenario (no counterpart in glibc 2.36). */
__attribute__((format(printf, 4, 5))) static void umpa_only(
    scen_fn *fn, struct args arg, const char *expect, const char *fmt, ...) {
  char label[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(label, sizeof label, fmt, ap);
  va_end(ap);
  struct out u;
  run_side(fn, &umpa_api, arg, &u);
  fprintf(stderr, "%s: umpa=%s", label, u.s);
  if (u.note[0]) fprintf(stderr, "   [umpa: %s]", u.note);
  fputc('\n', stderr);
  CHECK_MSG(strcmp(u.s, expect) == 0,
            "%s: umpa gave \"%s\", the contract says \"%s\"", label, u.s,
            expect);
}

/* ARGS(x), ARGS(x, y) or ARGS(x, y, k); what is left out is 0. */
static struct args args_of(const size_t v[3]) {
  struct args a = {v[0], v[1], (int)v[2]};
  return a;
}
#define ARGS(...) args_of((const size_t[3]){__VA_ARGS__})

/* ---------------------------------------------------------------------------
 * Helpers.
 * ------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) { return xorshift64(&rng_state); }

/* Fill patterns: byte i of a block with seed s is tbl[(i + s) % PAT_LEN].
 * PAT_LEN is prime, so no two pages of a block look alike (a page moved
 * to the wrong place is seen), and filling and checking are memcpy and
 * memcmp, fast in every build. */
#define PAT_LEN 8191
static unsigned char pat_tbl[2 * PAT_LEN];

static void pat_init(void) {
  uint64_t x = 0x2545f4914f6cdd1du;
  for (size_t i = 0; i < PAT_LEN; i++) {
    xorshift64(&x);
    pat_tbl[i] = pat_tbl[i + PAT_LEN] = (unsigned char)(x >> 29);
  }
}

/* Bytes [from, n) of p get their pattern. */
static void fill_from(void *p, size_t from, size_t n, unsigned seed) {
  unsigned char *c = p;
  for (size_t i = from; i < n;) {
    size_t len = n - i < PAT_LEN ? n - i : PAT_LEN;
    memcpy(c + i, pat_tbl + (i + seed) % PAT_LEN, len);
    i += len;
  }
}

static void fill(void *p, size_t n, unsigned seed) { fill_from(p, 0, n, seed); }

static bool holds(const void *p, size_t n, unsigned seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n;) {
    size_t len = n - i < PAT_LEN ? n - i : PAT_LEN;
    if (memcmp(c + i, pat_tbl + (i + seed) % PAT_LEN, len)) return false;
    i += len;
  }
  return true;
}

/* The first byte is 0 and every byte equals the one before it. */
static bool all_zero(const void *p, size_t n) {
  const unsigned char *c = p;
  return n == 0 || (c[0] == 0 && memcmp(c, c + 1, n - 1) == 0);
}

static size_t pow2ceil(size_t x) {
  size_t p = 1;
  while (p < x && p) p <<= 1;
  return p;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static bool aligned(const void *p, size_t align) {
  return ((uintptr_t)p & (align - 1)) == 0;
}

/* A block that should have been allocated: non-NULL (err is errno after
 * the call), aligned to `align`, at least n usable bytes, every one of them
 * writable and reading back.  Says nothing when all holds, else what failed
 * (prefixed with `what`).  Returns whether all held. */
static bool good_block(const struct api *a, void *p, size_t n, size_t align,
                       int err, struct out *o, const char *what) {
  if (!p) {
    say(o, "%s: NULL errno=%s", what, ename(err));
    return false;
  }
  bool ok = true;
  if (!aligned(p, align)) {
    say(o, "%s: MISALIGNED(%p, want %zu)", what, p, align);
    ok = false;
  }
  size_t u = a->usable(p);
  if (u < n) {
    say(o, "%s: USABLE %zu < %zu", what, u, n);
    ok = false;
    n = u; /* write only what is promised */
  }
  unsigned seed = (unsigned)rnd();
  fill(p, n, seed);
  if (!holds(p, n, seed)) {
    say(o, "%s: READBACK FAILED", what);
    ok = false;
  }
  return ok;
}

/* ---------------------------------------------------------------------------
 * malloc and free.
 * ------------------------------------------------------------------------- */

static void sc_malloc0(const struct api *a, struct args arg, struct out *o) {
  (void)arg;
  void *p = a->malloc(hide(0)), *q = a->malloc(hide(0));
  say(o, "%s %s", p ? "non-NULL" : "NULL", q ? "non-NULL" : "NULL");
  if (p && q) say(o, p != q ? "distinct" : "SAME-POINTER");
  if (p && !aligned(p, 16)) say(o, "MISALIGNED");
  if (p) fill(p, a->usable(p), 1);
  note(o, "usable=%zu", p ? a->usable(p) : 0);
  a->free(p);
  a->free(q);
}

/* Every size lo..hi, all blocks alive at once, then all verified. */
static void sc_malloc_range(const struct api *a, struct args arg,
                            struct out *o) {
  size_t lo = arg.x, hi = arg.y, count = hi - lo + 1;
  void **blk = a->calloc(count, sizeof *blk);
  REQUIRE(blk);
  bool ok = true;
  for (size_t n = lo; n <= hi; n++) {
    char what[32];
    snprintf(what, sizeof what, "n=%zu", n);
    errno = 0;
    void *p = blk[n - lo] = a->malloc(n);
    int e = errno;
    if (!good_block(a, p, n, 16, e, o, what)) ok = false;
    if (p) fill(p, n, (unsigned)n);
    if (!ok) break;
  }
  for (size_t n = lo; ok && n <= hi; n++)
    if (!holds(blk[n - lo], n, (unsigned)n)) {
      say(o, "n=%zu: CORRUPTED by a later allocation", n);
      ok = false;
    }
  for (size_t n = lo; n <= hi; n++) a->free(blk[n - lo]);
  a->free(blk);
  if (ok) say(o, "ok");
}

/* One block of each size, checked and freed. */
static void sc_malloc_one(const struct api *a, struct args arg,
                          struct out *o) {
  errno = 0;
  void *p = a->malloc(arg.x);
  int e = errno;
  if (good_block(a, p, arg.x, 16, e, o, "block")) say(o, "ok");
  a->free(p);
}

/* A request that must fail: NULL and errno. */
static void sc_malloc_fail(const struct api *a, struct args arg,
                           struct out *o) {
  errno = 0;
  void *p = a->malloc(hide(arg.x));
  say(o, p ? "non-NULL" : "NULL errno=%s", ename(errno));
  a->free(p);
}

/* Requests of arg.x bytes, more than memory and swap hold together, by
 * malloc, calloc, realloc of a 1 MiB block and posix_memalign.  Nothing
 * is touched if one succeeds (see test_beyond_memory). */
static void sc_beyond_memory(const struct api *a, struct args arg,
                             struct out *o) {
  size_t n = arg.x;
  errno = 0;
  void *p = a->malloc(hide(n));
  say(o, "malloc:%s", p ? "non-NULL" : ename(errno));
  a->free(p);
  errno = 0;
  p = a->calloc(hide(n / 4096), 4096);
  say(o, "calloc:%s", p ? "non-NULL" : ename(errno));
  a->free(p);
  void *q = a->malloc(MiB);
  REQUIRE(q);
  fill(q, MiB, 7);
  errno = 0;
  p = a->realloc(q, hide(n));
  if (p) {
    say(o, "realloc:non-NULL");
    a->free(p);
  } else {
    say(o, "realloc:%s%s", ename(errno), holds(q, MiB, 7) ? "" : "+CHANGED");
    a->free(q);
  }
  p = OUT_SENTINEL;
  int rc = a->posix_memalign(&p, 4096, hide(n));
  say(o, "posix_memalign:%s%s", ename(rc),
      rc && p != OUT_SENTINEL ? "+OUT-CHANGED" : "");
  if (!rc) a->free(p);
}

static void sc_free_null(const struct api *a, struct args arg, struct out *o) {
  (void)arg;
  errno = ERRNO_SENTINEL;
  a->free(NULL);
  say(o, "errno=%s", ename(errno));
}

/* free leaves errno alone: one block of size x; with k, a burst of
 * blocks that empties whole superblocks / overflows the page cache. */
static void sc_free_errno(const struct api *a, struct args arg,
                          struct out *o) {
  size_t n = arg.x, count = arg.k ? (size_t)arg.k : 1;
  void **blk = a->malloc(count * sizeof *blk);
  REQUIRE(blk);
  for (size_t i = 0; i < count; i++) {
    blk[i] = a->malloc(n);
    REQUIRE(blk[i]);
    memset(blk[i], 0x5a, n);
  }
  int bad = 0;
  for (size_t i = 0; i < count; i++) {
    errno = ERRNO_SENTINEL;
    a->free(blk[i]);
    if (errno != ERRNO_SENTINEL && !bad++) say(o, "errno=%s", ename(errno));
  }
  a->free(blk);
  if (!bad) say(o, "errno=%s", ename(ERRNO_SENTINEL));
}

/* ---------------------------------------------------------------------------
 * calloc.
 * ------------------------------------------------------------------------- */

/* Zeroed when fresh, and when reusing blocks of the same size that were
 * dirtied and freed just before. */
static void sc_calloc_zero(const struct api *a, struct args arg,
                           struct out *o) {
  size_t n = arg.x, count = n >= MiB ? 4 : 16;
  void *p = a->calloc(n, 1);
  say(o, !p ? "fresh:NULL" : all_zero(p, n) ? "fresh:zeroed" : "fresh:DIRTY");
  if (p && a->usable(p) < n) say(o, "USABLE<N");
  a->free(p);
  void *blk[16];
  for (size_t i = 0; i < count; i++) {
    blk[i] = a->malloc(n);
    REQUIRE(blk[i]);
    memset(blk[i], 0xa5, a->usable(blk[i]));
  }
  for (size_t i = count; i-- > 0;) a->free(blk[i]);
  bool zero = true, null = false;
  for (size_t i = 0; i < count; i++) {
    /* calloc(1, n), calloc(n, 1) and, when n splits, calloc(n/8, 8). */
    size_t c = 1, s = n;
    if (i % 3 == 1) c = n, s = 1;
    if (i % 3 == 2 && n % 8 == 0) c = n / 8, s = 8;
    blk[i] = a->calloc(c, s);
    if (!blk[i]) null = true;
    else if (!all_zero(blk[i], n)) zero = false;
  }
  for (size_t i = 0; i < count; i++) a->free(blk[i]);
  say(o, null ? "reused:NULL" : zero ? "reused:zeroed" : "reused:DIRTY");
}

static void sc_calloc(const struct api *a, struct args arg, struct out *o) {
  errno = 0;
  void *p = a->calloc(hide(arg.x), hide(arg.y));
  int e = errno;
  if (!p) {
    say(o, "NULL errno=%s", ename(e));
    return;
  }
  say(o, "non-NULL");
  size_t n = arg.x * arg.y; /* only called with products that fit */
  if (!aligned(p, 16)) say(o, "MISALIGNED");
  if (!all_zero(p, n)) say(o, "DIRTY");
  size_t u = a->usable(p);
  fill(p, u, 3);
  if (!holds(p, u, 3)) say(o, "READBACK FAILED");
  a->free(p);
}

/* ---------------------------------------------------------------------------
 * realloc and reallocarray.
 * ------------------------------------------------------------------------- */

static void sc_realloc_null(const struct api *a, struct args arg,
                            struct out *o) {
  errno = 0;
  void *p = a->realloc(NULL, hide(arg.x));
  int e = errno;
  if (!p) {
    say(o, "NULL errno=%s", ename(e));
    return;
  }
  say(o, "non-NULL");
  good_block(a, p, arg.x, 16, e, o, "block");
  a->free(p);
}

/* realloc(p, 0) frees p and returns NULL; errno unchanged. */
static void sc_realloc_zero(const struct api *a, struct args arg,
                            struct out *o) {
  void *p = a->malloc(arg.x);
  REQUIRE(p);
  fill(p, arg.x, 9);
  errno = ERRNO_SENTINEL;
  void *q = arg.k ? a->reallocarray(p, hide(0), hide(arg.y))
                  : a->realloc(p, hide(0));
  int e = errno;
  say(o, "%s errno=%s", q ? "non-NULL" : "NULL", ename(e));
  a->free(q);
}

/* The blocks realloc(p, 0) releases come back: in-use bytes do not grow. */
static void sc_realloc_zero_frees(const struct api *a, struct args arg,
                                  struct out *o) {
  (void)arg;
  struct heapinfo before, after;
  a->info(&before);
  for (int i = 0; i < 64; i++) {
    void *p = a->malloc(MiB);
    REQUIRE(p);
    void *q = a->realloc(p, hide(0));
    a->free(q);
  }
  for (int i = 0; i < 20000; i++) {
    void *p = a->malloc(100 + (size_t)(i % 7) * 100);
    REQUIRE(p);
    void *q = a->realloc(p, hide(0));
    a->free(q);
  }
  a->info(&after);
  size_t grew = after.in_use > before.in_use ? after.in_use - before.in_use : 0;
  /* Leaking would be 64 MiB + 8 MB. */
  say(o, grew < 4 * MiB ? "freed" : "LEAKED");
  note(o, "in-use growth %zu", grew);
}

/* Resize a block of x bytes to y bytes: contents kept, new size usable. */
static bool resize_ok(const struct api *a, size_t x, size_t y,
                      struct out *o) {
  char what[64];
  snprintf(what, sizeof what, "%zu->%zu", x, y);
  void *p = a->malloc(x);
  if (!p) {
    say(o, "%s: malloc NULL", what);
    return false;
  }
  unsigned seed = (unsigned)(x * 31 + y);
  fill(p, x, seed);
  errno = 0;
  void *q = a->realloc(p, y);
  int e = errno;
  if (!q) {
    say(o, "%s: NULL errno=%s", what, ename(e));
    a->free(p);
    return false;
  }
  bool ok = true;
  if (!holds(q, x < y ? x : y, seed)) {
    say(o, "%s: CONTENTS LOST", what);
    ok = false;
  }
  if (!good_block(a, q, y, 16, 0, o, what)) ok = false;
  a->free(q);
  return ok;
}

static const size_t resize_sizes[] = {
    1,     8,      15,      16,      24,        100,      256,
    1000,  4095,   4096,    8000,    32767,     32768,    32769,
    65536, 100000, 1 << 20, 1234567, (2 << 20) + 1, 8 << 20};

/* Every pair of sizes: small->small, small->large, large->large grow and
 * shrink, large->small. */
static void sc_realloc_matrix(const struct api *a, struct args arg,
                              struct out *o) {
  (void)arg;
  size_t pairs = 0;
  for (size_t i = 0; i < COUNT(resize_sizes); i++)
    for (size_t j = 0; j < COUNT(resize_sizes); j++, pairs++)
      if (!resize_ok(a, resize_sizes[i], resize_sizes[j], o)) return;
  say(o, "ok");
  note(o, "%zu pairs", pairs);
}

/* One block grown step by step from 1 byte to 24 MiB, then shrunk back;
 * contents are checked at every step. */
static void sc_realloc_chain(const struct api *a, struct args arg,
                             struct out *o) {
  (void)arg;
  unsigned seed = 77;
  size_t n = 1, steps = 0;
  char *p = a->malloc(n);
  REQUIRE(p);
  fill(p, n, seed);
  for (;;) {
    size_t m = n < 24 * MiB ? n + n / 2 + 1 : 0;
    if (!m) break;
    char *q = a->realloc(p, m);
    if (!q) {
      say(o, "grow %zu->%zu: NULL", n, m);
      a->free(p);
      return;
    }
    p = q;
    steps++;
    if (!aligned(p, 16) || !holds(p, n, seed) || a->usable(p) < m) {
      say(o, "grow %zu->%zu: CONTENTS LOST, misaligned or short", n, m);
      a->free(p);
      return;
    }
    fill_from(p, n, m, seed);
    n = m;
  }
  while (n > 1) {
    size_t m = n / 3 * 2;
    if (!m) m = 1;
    char *q = a->realloc(p, m);
    if (!q) {
      say(o, "shrink %zu->%zu: NULL", n, m);
      a->free(p);
      return;
    }
    p = q;
    steps++;
    if (!aligned(p, 16) || !holds(p, m, seed) || a->usable(p) < m) {
      say(o, "shrink %zu->%zu: CONTENTS LOST, misaligned or short", n, m);
      a->free(p);
      return;
    }
    n = m;
  }
  a->free(p);
  say(o, "ok");
  note(o, "%zu steps", steps);
}

/* realloc of blocks from memalign (umpa may hand out interior pointers). */
static void sc_realloc_aligned(const struct api *a, struct args arg,
                               struct out *o) {
  static const size_t to[] = {1, 100, 5000, 40000, 300000, 3 << 20};
  size_t align = arg.x, n = arg.y;
  for (size_t i = 0; i < COUNT(to); i++) {
    char what[48];
    snprintf(what, sizeof what, "to %zu", to[i]);
    void *p = a->memalign(align, n);
    if (!good_block(a, p, n, align, errno, o, "memalign")) {
      a->free(p);
      return;
    }
    fill(p, n, 5);
    void *q = a->realloc(p, to[i]);
    if (!q) {
      say(o, "%s: NULL", what);
      a->free(p);
      return;
    }
    bool ok = holds(q, n < to[i] ? n : to[i], 5);
    if (!ok) say(o, "%s: CONTENTS LOST", what);
    if (!good_block(a, q, to[i], 16, 0, o, what)) ok = false;
    a->free(q);
    if (!ok) return;
  }
  say(o, "ok");
}

/* A realloc that must fail: NULL, ENOMEM, the block intact and freeable. */
static void sc_realloc_fail(const struct api *a, struct args arg,
                            struct out *o) {
  size_t n = arg.y;
  void *p = a->malloc(n);
  REQUIRE(p);
  fill(p, n, 11);
  errno = 0;
  void *q = a->realloc(p, hide(arg.x));
  int e = errno;
  if (q) {
    say(o, "non-NULL");
    a->free(q);
    return;
  }
  say(o, "NULL errno=%s %s", ename(e), holds(p, n, 11) ? "intact" : "CHANGED");
  a->free(p);
}

/* reallocarray whose product overflows or exceeds PTRDIFF_MAX. */
static void sc_reallocarray_fail(const struct api *a, struct args arg,
                                 struct out *o) {
  void *p = a->malloc(100);
  REQUIRE(p);
  fill(p, 100, 13);
  errno = 0;
  void *q = a->reallocarray(p, hide(arg.x), hide(arg.y));
  int e = errno;
  if (q) {
    say(o, "non-NULL");
    a->free(q);
    return;
  }
  say(o, "NULL errno=%s %s", ename(e), holds(p, 100, 13) ? "intact" : "CHANGED");
  a->free(p);
}

/* reallocarray(p of x bytes, y, k): contents kept, product usable. */
static void sc_reallocarray(const struct api *a, struct args arg,
                            struct out *o) {
  size_t n = arg.x, total = arg.y * (size_t)arg.k;
  void *p = n ? a->malloc(n) : NULL;
  if (n) {
    REQUIRE(p);
    fill(p, n, 17);
  }
  errno = 0;
  void *q = a->reallocarray(p, arg.y, (size_t)arg.k);
  int e = errno;
  if (!q) {
    say(o, "NULL errno=%s", ename(e));
    a->free(p);
    return;
  }
  say(o, "non-NULL");
  if (!holds(q, n < total ? n : total, 17)) say(o, "CONTENTS LOST");
  good_block(a, q, total, 16, e, o, "block");
  a->free(q);
}

/* ---------------------------------------------------------------------------
 * Aligned allocation.
 * ------------------------------------------------------------------------- */

enum { F_POSIX, F_ALIGNED, F_MEMALIGN, F_VALLOC, F_PVALLOC };
static const char *const fname[] = {"posix_memalign", "aligned_alloc",
                                    "memalign", "valloc", "pvalloc"};

/* One aligned allocation.  Success: "ok" (aligned, usable, writable);
 * failure: "NULL errno=E", or for posix_memalign the returned code and
 * whether *out was left alone (errno, which POSIX leaves open there, is a
 * note). */
static void sc_aligned(const struct api *a, struct args arg, struct out *o) {
  size_t align = arg.x, n = arg.y;
  void *p = NULL;
  int e;
  size_t want_align = align > SIZE_MAX / 2 + 1 ? 0 : pow2ceil(align);
  if (want_align < 16) want_align = 16;
  size_t want = n;
  if (UNDER_ASAN && a == &sys_api && align > (size_t)1 << 62) {
    /* ASan's allocator trips an internal CHECK on such alignments. */
    say(o, "skipped");
    return;
  }
  switch (arg.k) {
    case F_POSIX: {
      p = OUT_SENTINEL;
      errno = ERRNO_SENTINEL;
      int r = a->posix_memalign(&p, hide(align), hide(n));
      e = errno;
      if (r) {
        say(o, "%s %s", ename(r),
            p == OUT_SENTINEL ? "out-untouched" : "OUT-CHANGED");
        note(o, "errno %s", ename(e));
        return;
      }
      if (p == OUT_SENTINEL) {
        say(o, "0 OUT-NOT-SET");
        return;
      }
      break;
    }
    case F_ALIGNED:
      errno = 0;
      p = a->aligned_alloc(hide(align), hide(n));
      e = errno;
      break;
    case F_MEMALIGN:
      errno = 0;
      p = a->memalign(hide(align), hide(n));
      e = errno;
      break;
    case F_VALLOC:
      errno = 0;
      p = a->valloc(hide(n));
      e = errno;
      want_align = page;
      break;
    default:
      errno = 0;
      p = a->pvalloc(hide(n));
      e = errno;
      want_align = page;
      /* glibc 2.36 rounds pvalloc(0) to 1 byte, not to a page; umpa's
       * "one page" is checked apart. */
      want = n ? round_up(n, page) : 0;
      break;
  }
  if (!p) {
    say(o, "NULL errno=%s", ename(e));
    return;
  }
  if (good_block(a, p, want, want_align, e, o, "block")) say(o, "ok");
  note(o, "usable %zu", a->usable(p));
  a->free(p);
}

/* sc_aligned for alignment x and many sizes (not 0), in one process:
 * "ok", or the first size that is not. */
static void sc_aligned_sizes(const struct api *a, struct args arg,
                             struct out *o) {
  size_t al = arg.x;
  /* ... with the sizes where umpa's small heap ends (32 KiB). */
  size_t t = al < 32 * KiB ? 32 * KiB - al : 0;
  size_t ns[] = {1,      100,    al - 1, al,       al + 1,
                 3 * al, t + 15, t + 16, t + 17, 32 * KiB, 32 * KiB + 1};
  for (size_t j = 0; j < COUNT(ns); j++) {
    struct out one;
    memset(&one, 0, sizeof one);
    sc_aligned(a, ARGS(al, ns[j], arg.k), &one);
    if (strcmp(one.s, "ok") != 0) {
      say(o, "n=%zu: %s", ns[j], one.s);
      return;
    }
  }
  say(o, "ok");
}

/* Many small aligned blocks alive at once: aligned and not overlapping. */
static void sc_aligned_many(const struct api *a, struct args arg,
                            struct out *o) {
  size_t align = arg.x, n = arg.y;
  enum { N = 300 };
  void *blk[N];
  bool ok = true;
  for (int i = 0; i < N; i++) {
    blk[i] = NULL;
    int r = a->posix_memalign(&blk[i], align, n + (size_t)i % 5);
    if (r || !aligned(blk[i], align)) {
      if (ok) say(o, "block %d: code %s or misaligned", i, ename(r));
      ok = false;
      if (r) blk[i] = NULL;
      continue;
    }
    fill(blk[i], n + (size_t)i % 5, (unsigned)i);
  }
  for (int i = 0; i < N; i++)
    if (blk[i] && !holds(blk[i], n + (size_t)i % 5, (unsigned)i)) {
      if (ok) say(o, "block %d CORRUPTED", i);
      ok = false;
    }
  for (int i = 0; i < N; i++) a->free(blk[i]);
  if (ok) say(o, "ok");
}

/* x blocks of `arg.y` bytes aligned to arg.x by function k, alive at once
 * and interleaved with one-page blocks from valloc: each aligned block is
 * a block of its own (no pointer equals another live block's), its usable
 * bytes can be asked for and written, and freeing it leaves the others
 * intact. */
static void sc_aligned_among(const struct api *a, struct args arg,
                             struct out *o) {
  enum { N = 8 };
  size_t align = arg.x, n = arg.y;
  void *z[N], *v[N + 1];
  v[N] = a->valloc(1);
  REQUIRE(v[N]);
  memset(v[N], 0x77, 1);
  for (int i = 0; i < N; i++) {
    switch (arg.k) {
      case F_POSIX:
        if (a->posix_memalign(&z[i], align, n)) z[i] = NULL;
        break;
      case F_ALIGNED: z[i] = a->aligned_alloc(align, n); break;
      default: z[i] = a->memalign(align, n); break;
    }
    v[i] = a->valloc(100);
    REQUIRE(v[i]);
    memset(v[i], 0x40 + i, 100);
  }
  bool ok = true;
  for (int i = 0; i < N && ok; i++) {
    if (!z[i] || !aligned(z[i], align)) {
      say(o, "block %d %s", i, z[i] ? "MISALIGNED" : "NULL");
      ok = false;
    }
    for (int j = 0; j <= N && ok; j++)
      if (z[i] == v[j] || (j < N && j != i && z[i] == z[j])) {
        say(o, "block %d IS ANOTHER LIVE BLOCK", i);
        ok = false;
      }
  }
  for (int i = 0; i < N && ok; i++) {
    size_t u = a->usable(z[i]);
    if (u < n) {
      say(o, "block %d USABLE %zu", i, u);
      ok = false;
    }
    memset(z[i], 0x11, u);
  }
  /* After a failure nothing is freed: the child exits anyway. */
  for (int i = 0; i < N && ok; i++) a->free(z[i]);
  for (int i = 0; i <= N && ok; i++) {
    const unsigned char *c = v[i];
    if (c[0] != (i < N ? 0x40 + i : 0x77)) {
      say(o, "valloc block %d CHANGED by freeing the aligned blocks", i);
      ok = false;
    }
  }
  for (int i = 0; i <= N && ok; i++) a->free(v[i]);
  if (ok) say(o, "ok");
}

/* ---------------------------------------------------------------------------
 * malloc_usable_size.
 * ------------------------------------------------------------------------- */

static void sc_usable_null(const struct api *a, struct args arg,
                           struct out *o) {
  (void)arg;
  say(o, "%zu", a->usable(NULL));
}

/* Sizes 0..x (all alive) and a few larger ones: every usable byte can be
 * written, and none of it overlaps another block. */
static void sc_usable_writable(const struct api *a, struct args arg,
                               struct out *o) {
  static const size_t big[] = {4097, 10000, 32768, 32769, 65536, 100000,
                               MiB, 3 * MiB + 17};
  size_t count = arg.x + 1 + COUNT(big);
  void **blk = a->malloc(count * sizeof *blk);
  size_t *use = a->malloc(count * sizeof *use);
  REQUIRE(blk && use);
  bool ok = true;
  for (size_t i = 0; i < count; i++) {
    size_t n = i <= arg.x ? i : big[i - arg.x - 1];
    blk[i] = a->malloc(n);
    REQUIRE(blk[i]);
    use[i] = a->usable(blk[i]);
    if (use[i] < n && ok) {
      say(o, "n=%zu: USABLE %zu", n, use[i]);
      ok = false;
    }
    fill(blk[i], use[i], (unsigned)i);
  }
  for (size_t i = 0; i < count; i++)
    if (!holds(blk[i], use[i], (unsigned)i) && ok) {
      say(o, "block %zu: usable bytes CORRUPTED by another block", i);
      ok = false;
    }
  for (size_t i = 0; i < count; i++) a->free(blk[i]);
  a->free(blk);
  a->free(use);
  if (ok) say(o, "ok");
}

/* Usable bytes of blocks from calloc, realloc and the aligned functions. */
static void sc_usable_other(const struct api *a, struct args arg,
                            struct out *o) {
  (void)arg;
  void *blk[8];
  size_t need[8] = {700, 50000, 300, 40000, 100, 5000, 3000, 9000};
  blk[0] = a->calloc(7, 100);
  blk[1] = a->calloc(1, 50000);
  blk[2] = a->realloc(a->malloc(10), 300);
  blk[3] = a->realloc(a->malloc(100000), 40000);
  blk[4] = a->memalign(64, 100);
  blk[5] = a->aligned_alloc(4096, 5000);
  blk[6] = a->valloc(3000);
  blk[7] = a->memalign(65536, 9000);
  bool ok = true;
  for (int i = 0; i < 8; i++) {
    char what[16];
    snprintf(what, sizeof what, "#%d", i);
    if (!blk[i]) {
      say(o, "%s NULL", what);
      ok = false;
      continue;
    }
    size_t u = a->usable(blk[i]);
    if (u < need[i]) {
      say(o, "%s USABLE %zu < %zu", what, u, need[i]);
      ok = false;
    }
    fill(blk[i], u, (unsigned)i);
  }
  for (int i = 0; i < 8; i++) {
    if (blk[i] && !holds(blk[i], a->usable(blk[i]), (unsigned)i)) {
      say(o, "#%d CORRUPTED", i);
      ok = false;
    }
    a->free(blk[i]);
  }
  if (ok) say(o, "ok");
}

/* ---------------------------------------------------------------------------
 * malloc_trim, mallopt, mallinfo, malloc_stats.
 * ------------------------------------------------------------------------- */

static void sc_trim_idle(const struct api *a, struct args arg, struct out *o) {
  int r = a->trim(arg.x);
  say(o, r == 0 || r == 1 ? "0-or-1" : "OUT-OF-RANGE");
  note(o, "returned %d", r);
}

/* Free 64 MiB in blocks of 256 KiB and 10 MB in blocks of 100 bytes, then
 * trim: memory was released, so 1. */
static void sc_trim_after_free(const struct api *a, struct args arg,
                               struct out *o) {
  (void)arg;
  enum { BIG = 256, SMALL = 100000 };
  void **blk = a->malloc((BIG + SMALL) * sizeof *blk);
  REQUIRE(blk);
  for (int i = 0; i < BIG + SMALL; i++) {
    size_t n = i < BIG ? 256 * KiB : 100;
    blk[i] = a->malloc(n);
    REQUIRE(blk[i]);
    memset(blk[i], 1, n);
  }
  for (int i = 0; i < BIG + SMALL; i++) a->free(blk[i]);
  a->free(blk);
  say(o, "%d", a->trim(0));
}

static void sc_mallopt(const struct api *a, struct args arg, struct out *o) {
  say(o, "%d", a->mallopt((int)arg.x, arg.k));
}

/* After mallopt(M_MMAP_THRESHOLD, 4096): blocks allocated before still
 * resize and free; new ones of every kind work.  The threshold is set back
 * to 128 KiB afterwards. */
static void sc_low_threshold(const struct api *a, struct args arg,
                             struct out *o) {
  (void)arg;
  static const size_t sizes[] = {16, 100, 3000, 5000, 20000, 40000};
  void *old[COUNT(sizes)];
  for (size_t i = 0; i < COUNT(sizes); i++) {
    old[i] = a->malloc(sizes[i]);
    REQUIRE(old[i]);
    fill(old[i], sizes[i], (unsigned)i);
  }
  int r = a->mallopt(M_MMAP_THRESHOLD, 4096);
  say(o, "set=%d", r);
  bool ok = true;
  for (size_t i = 0; i < COUNT(sizes); i++) {
    size_t m = sizes[i] * 3;
    void *q = a->realloc(old[i], m);
    if (!q || !holds(q, sizes[i], (unsigned)i)) {
      say(o, "old block of %zu: realloc lost it", sizes[i]);
      ok = false;
      if (q) a->free(q);
      continue;
    }
    a->free(q);
  }
  for (size_t i = 0; i < COUNT(sizes); i++) {
    char what[32];
    snprintf(what, sizeof what, "new %zu", sizes[i]);
    void *p = a->malloc(sizes[i]);
    if (!good_block(a, p, sizes[i], 16, errno, o, what)) ok = false;
    void *c = a->calloc(1, sizes[i]);
    if (!c || !all_zero(c, sizes[i])) {
      say(o, "%s: calloc bad", what);
      ok = false;
    }
    void *m = a->memalign(256, sizes[i]);
    if (!good_block(a, m, sizes[i], 256, errno, o, what)) ok = false;
    if (p) {
      fill(p, sizes[i], 3);
      void *q = a->realloc(p, sizes[i] / 2 + 1);
      if (!q || !holds(q, sizes[i] / 2 + 1, 3)) {
        say(o, "%s: shrink lost contents", what);
        ok = false;
      }
      p = q;
    }
    a->free(p);
    a->free(c);
    a->free(m);
  }
  say(o, "restore=%d", a->mallopt(M_MMAP_THRESHOLD, 128 * 1024));
  if (ok) say(o, "ok");
}

/* mallinfo2 / umpa_mallinfo report real figures: in-use bytes grow by at
 * least what was allocated and kept (N), and fall back by about as much
 * after freeing. */
static void sc_mallinfo(const struct api *a, struct args arg, struct out *o) {
  (void)arg;
  enum { N = 2000 };
  const size_t each = 5000, large = 8 * MiB;
  const size_t total = N * each + large;
  void **blk = a->malloc((N + 1) * sizeof *blk);
  REQUIRE(blk);
  struct heapinfo before, mid, after;
  a->info(&before);
  for (int i = 0; i < N; i++) {
    blk[i] = a->malloc(each);
    REQUIRE(blk[i]);
    memset(blk[i], 2, each);
  }
  blk[N] = a->malloc(large);
  REQUIRE(blk[N]);
  memset(blk[N], 3, large);
  a->info(&mid);
  for (int i = 0; i <= N; i++) a->free(blk[i]);
  a->info(&after);
  a->free(blk);
  size_t grew = mid.in_use > before.in_use ? mid.in_use - before.in_use : 0;
  size_t fell = mid.in_use > after.in_use ? mid.in_use - after.in_use : 0;
  say(o, mid.arena > 0 ? "arena>0" : "ARENA=0");
  say(o, grew >= total ? "grew>=N" : "GREW<N");
  /* Falling back may lag by a little (umpa publishes per-thread figures
   * on slow paths), not by the bulk of what was freed. */
  say(o, fell + MiB >= total ? "fell>=N-1MiB" : "FELL<N-1MiB");
  note(o, "N=%zu grew %zu fell %zu", total, grew, fell);
}

/* malloc_stats prints glibc's summary lines on stderr. */
static void sc_stats(const struct api *a, struct args arg, struct out *o) {
  (void)arg;
  char buf[4096];
  size_t len = capture_stderr(a->stats, buf, sizeof buf);
  say(o, strstr(buf, "system bytes") && strstr(buf, "in use bytes")
             ? "system-bytes,in-use-bytes"
             : "MISSING-LINES");
  note(o, "%zu bytes printed", len);
}

/* The count and size of the last <total type="TYPE" ...> in text (the
 * whole allocator's, after the heaps'); false if there is none. */
static bool xml_total(const char *text, const char *type, size_t *count,
                      size_t *size) {
  char key[64];
  snprintf(key, sizeof key, "<total type=\"%s\" ", type);
  const char *last = NULL;
  for (const char *p = text; (p = strstr(p, key)); p++) last = p;
  return last && sscanf(last + strlen(key), "count=\"%zu\" size=\"%zu\"",
                        count, size) == 2;
}

/* The first <aspace> entries of malloc_info's XML: reserved ("total") and
 * accessible ("mprotect") bytes. */
static void xml_aspace(const char *text, size_t *total, size_t *open) {
  static const char tot_key[] = "<aspace type=\"total\" size=\"",
                    open_key[] = "<aspace type=\"mprotect\" size=\"";
  const char *at = strstr(text, tot_key), *ao = strstr(text, open_key);
  *total = at ? strtoull(at + strlen(tot_key), NULL, 10) : 0;
  *open = ao ? strtoull(ao + strlen(open_key), NULL, 10) : 0;
}

/* malloc_info writes glibc's XML with real figures: half of 1000 blocks
 * of 200 bytes freed are in "rest", a live 64 MiB block (above glibc's
 * largest mmap threshold) in "mmap", the heap holds memory ("system");
 * options other than 0 give EINVAL, returned, as glibc does. */
static void sc_malloc_info(const struct api *a, struct args arg,
                           struct out *o) {
  (void)arg;
  enum { N = 1000 };
  const size_t each = 200, big = 64 * MiB;
  void **blk = a->malloc(N * sizeof *blk);
  REQUIRE(blk);
  for (int i = 0; i < N; i++) REQUIRE((blk[i] = a->malloc(each)));
  for (int i = 0; i < N; i += 2) a->free(blk[i]);
  char *large = a->malloc(big);
  REQUIRE(large);
  large[0] = 1;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  REQUIRE(f);
  say(o, "r=%d", a->info_xml(0, f));
  errno = ERRNO_SENTINEL;
  int bad = a->info_xml(1, f);
  say(o, "bad-options=%s errno=%s", bad == EINVAL ? "EINVAL" : ename(bad),
      ename(errno));
  REQUIRE(fclose(f) == 0 && text);
  static const char head[] = "<malloc version=\"1\">\n";
  static const char tail[] = "</malloc>\n";
  say(o, strncmp(text, head, strlen(head)) == 0 && len >= strlen(tail) &&
                 strcmp(text + len - strlen(tail), tail) == 0
             ? "xml"
             : "NOT-XML");
  size_t rest_n = 0, rest_b = 0, mm_n = 0, mm_b = 0;
  say(o, xml_total(text, "rest", &rest_n, &rest_b) && rest_n >= N / 2 - 100 &&
                 rest_b >= (N / 2 - 100) * each
             ? "rest>=N/2"
             : "REST<N/2");
  say(o, xml_total(text, "mmap", &mm_n, &mm_b) && mm_n >= 1 && mm_b >= big
             ? "mmap>=64MiB"
             : "MMAP<64MiB");
  static const char sys_key[] = "<system type=\"current\" size=\"";
  const char *cur = strstr(text, sys_key);
  say(o, cur && strtoull(cur + strlen(sys_key), NULL, 10) > 0 ? "system>0"
                                                              : "SYSTEM=0");
  /* The accessible address space ("mprotect") is part of the reserved
   * ("total"); glibc counts its arenas there, not its mmapped chunks,
   * umpa the regions' pieces opened so far, not those only reserved. */
  size_t as_total, as_open;
  xml_aspace(text, &as_total, &as_open);
  say(o, as_open > 0 && as_open <= as_total ? "aspace:0<open<=total"
                                            : "ASPACE-WRONG");
  note(o, "rest %zu blocks %zu bytes, mmap %zu blocks %zu bytes, %zu bytes, "
          "aspace %zu open of %zu",
       rest_n, rest_b, mm_n, mm_b, len, as_open, as_total);
  free(text);
  a->free(large);
  for (int i = 1; i < N; i += 2) a->free(blk[i]);
  a->free(blk);
}

/* umpa's malloc_info lists each size class with free blocks once, in
 * order of size, and the class of 200-byte blocks counts at least the 500
 * this thread freed of its 1000 (other threads' figures may lag; this
 * thread's are exact). */
static void sc_malloc_info_classes(const struct api *a, struct args arg,
                                   struct out *o) {
  (void)arg;
  enum { N = 1000 };
  void **blk = a->malloc(N * sizeof *blk);
  REQUIRE(blk);
  for (int i = 0; i < N; i++) REQUIRE((blk[i] = a->malloc(200)));
  size_t cls = a->usable(blk[1]);
  for (int i = 0; i < N; i += 2) a->free(blk[i]);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  REQUIRE(f);
  say(o, "r=%d", a->info_xml(0, f));
  REQUIRE(fclose(f) == 0 && text);
  size_t from, to, total, count, last_to = 0, of_cls = 0, entries = 0;
  bool ordered = true;
  for (const char *p = text; (p = strstr(p, "<size from=")); p++) {
    REQUIRE(sscanf(p, "<size from=\"%zu\" to=\"%zu\" total=\"%zu\" "
                      "count=\"%zu\"/>",
                   &from, &to, &total, &count) == 4);
    ordered = ordered && from > last_to && from <= to && count > 0 &&
              total >= count * from && total <= count * to;
    last_to = to;
    entries++;
    if (to == cls) of_cls = count;
  }
  say(o, ordered ? "ordered" : "NOT-ORDERED");
  say(o, of_cls >= N / 2 ? "class>=N/2" : "CLASS<N/2");
  /* Regions are reserved inaccessible and opened in 2 MiB pieces as they
   * are used: the last region made is never used whole here. */
  size_t as_total, as_open;
  xml_aspace(text, &as_total, &as_open);
  say(o, as_open > 0 && as_open < as_total ? "open<reserved" : "OPEN=RESERVED");
  note(o, "%zu entries; %zu free of the %zu-byte class; %zu of %zu bytes "
          "open",
       entries, of_cls, cls, as_open, as_total);
  free(text);
  for (int i = 1; i < N; i += 2) a->free(blk[i]);
  a->free(blk);
}

/* ---------------------------------------------------------------------------
 * Interleaved allocations never overlap.
 * ------------------------------------------------------------------------- */

struct slot {
  char *p;
  size_t n;
  unsigned seed;
};

static size_t random_size(void) {
  uint64_t r = rnd();
  if (r % 200 == 0) return (size_t)(rnd() % (4 * MiB)); /* some large */
  return (size_t)(rnd() % ((size_t)16 << (r % 13))); /* < 64 KiB, log-ish */
}

static int by_address(const void *x, const void *y) {
  const struct slot *a = x, *b = y;
  return a->p < b->p ? -1 : a->p > b->p;
}

static void sc_interleaved(const struct api *a, struct args arg,
                           struct out *o) {
  enum { SLOTS = 3000, OPS = 20000 };
  rng_state = arg.x; /* the same sequence on both sides */
  struct slot *s = a->calloc(SLOTS, sizeof *s);
  REQUIRE(s);
  const char *bad = NULL;
  size_t bad_n = 0;
  for (int op = 0; op < OPS && !bad; op++) {
    struct slot *t = &s[rnd() % SLOTS];
    if (t->p && !holds(t->p, t->n, t->seed)) {
      bad = "CORRUPTED";
      bad_n = t->n;
      break;
    }
    uint64_t what = rnd() % 8;
    if (t->p && what < 3) {
      a->free(t->p);
      t->p = NULL;
      continue;
    }
    size_t n = random_size();
    unsigned seed = (unsigned)rnd();
    if (t->p && what < 6) {
      char *q = a->realloc(t->p, n ? n : 1);
      if (!q || !holds(q, t->n < n ? t->n : n, t->seed)) {
        bad = "realloc lost contents";
        bad_n = n;
        if (q) t->p = q;
        break;
      }
      t->p = q;
    } else {
      a->free(t->p);
      void *p = NULL;
      size_t al = (size_t)16 << (rnd() % 9), need = 16;
      /* Size 0 with the aligned functions has scenarios of its own. */
      uint64_t how = rnd() % 6;
      if (how >= 3 && !n) n = 1;
      switch (how) {
        case 0: p = a->malloc(n); break;
        case 1: p = a->calloc(1, n); break;
        case 2: p = a->realloc(NULL, n); break;
        case 3: p = a->memalign(al, n), need = al; break;
        case 4: p = a->aligned_alloc(al, n), need = al; break;
        default:
          if (a->posix_memalign(&p, al, n)) p = NULL;
          need = al;
          break;
      }
      t->p = p;
      if (!p || !aligned(p, need)) {
        bad = "allocation failed or misaligned";
        bad_n = n;
        break;
      }
    }
    if (t->p) {
      t->n = n;
      t->seed = seed;
      fill(t->p, n, seed);
    }
  }
  /* Everything alive still holds its pattern, and no two blocks'
   * usable ranges overlap. */
  size_t live = 0;
  for (int i = 0; i < SLOTS; i++) {
    if (!s[i].p) continue;
    if (!bad && !holds(s[i].p, s[i].n, s[i].seed)) {
      bad = "CORRUPTED";
      bad_n = s[i].n;
    }
    s[i].n = a->usable(s[i].p); /* from here on: usable bytes */
    s[live++] = s[i];
  }
  qsort(s, live, sizeof *s, by_address);
  for (size_t i = 1; i < live && !bad; i++)
    if (s[i - 1].p + s[i - 1].n > s[i].p) {
      bad = "OVERLAP";
      bad_n = s[i - 1].n;
    }
  for (size_t i = 0; i < live; i++) a->free(s[i].p);
  a->free(s);
  if (bad) say(o, "%s (size %zu)", bad, bad_n);
  else say(o, "ok");
  note(o, "%zu blocks alive at the end", live);
}

/* ---------------------------------------------------------------------------
 * The scenarios.
 * ------------------------------------------------------------------------- */

static void test_malloc(void) {
  scenario(sc_malloc0, ARGS(0), "non-NULL non-NULL distinct", "malloc(0) x2");
  scenario(sc_malloc_range, ARGS(1, 4096), "ok",
           "malloc(1..4096) all alive: aligned 16, usable >= n, rw");
  static const size_t sizes[] = {
      4097,    6000,      8191,       8192,       10000,         16384,
      32767,   32768,     32769,      65535,      65536,         100000,
      131072,  262143,    MiB - 1,    MiB,        MiB + 1,       2 * MiB - 1,
      2 * MiB, 2 * MiB + 1, 3 * MiB + 5, 8 * MiB, 16 * MiB + 1, 32 * MiB,
      64 * MiB};
  for (size_t i = 0; i < COUNT(sizes); i++)
    scenario(sc_malloc_one, ARGS(sizes[i]), "ok", "malloc(%zu)", sizes[i]);
  scenario(sc_malloc_fail, ARGS(PDMAX), "NULL errno=ENOMEM",
           "malloc(PTRDIFF_MAX)");
  scenario(sc_malloc_fail, ARGS(PDMAX + 1), "NULL errno=ENOMEM",
           "malloc(PTRDIFF_MAX+1)");
  scenario(sc_malloc_fail, ARGS(SIZE_MAX), "NULL errno=ENOMEM",
           "malloc(SIZE_MAX)");
  scenario(sc_malloc_fail, ARGS(SIZE_MAX - 4096), "NULL errno=ENOMEM",
           "malloc(SIZE_MAX-4096)");
  scenario(sc_malloc_fail, ARGS((size_t)1 << 62), "NULL errno=ENOMEM",
           "malloc(1<<62)");
}

/* Twice memory and swap together (refused_size): the kernel refuses such
 * a mapping under the default overcommit policy, so glibc's malloc returns
 * NULL with ENOMEM; umpa reserves its address space MAP_NORESERVE, which
 * that policy lets through, and must ask it. */
static void test_beyond_memory(void) {
  int mode;
  bool limited;
  size_t n = refused_size(&mode, &limited);
  if (!n) return;
  scenario(sc_beyond_memory, ARGS(n),
           "malloc:ENOMEM calloc:ENOMEM realloc:ENOMEM "
           "posix_memalign:ENOMEM",
           "beyond memory and swap: %zu GiB (overcommit mode %d%s)",
           n >> 30, mode, limited ? ", RLIMIT_AS below it" : "");
}

static void test_free(void) {
  scenario(sc_free_null, ARGS(0), "errno=unchanged", "free(NULL)");
  static const size_t sizes[] = {1,      100,    1000,    4096,   32768,
                                 32769,  100000, MiB,     8 * MiB, 64 * MiB};
  for (size_t i = 0; i < COUNT(sizes); i++)
    scenario(sc_free_errno, ARGS(sizes[i]), "errno=unchanged",
             "free keeps errno: block of %zu", sizes[i]);
  scenario(sc_free_errno, ARGS(64, 0, 20000), "errno=unchanged",
           "free keeps errno: 20000 blocks of 64 (superblocks emptied)");
  scenario(sc_free_errno, ARGS(MiB, 0, 200), "errno=unchanged",
           "free keeps errno: 200 blocks of 1 MiB (page cache overflows)");
}

static void test_calloc(void) {
  static const size_t sizes[] = {1,     16,         100,     1000,
                                 4096,  32768,      32769,   100 * KiB,
                                 MiB,   8 * MiB};
  for (size_t i = 0; i < COUNT(sizes); i++)
    scenario(sc_calloc_zero, ARGS(sizes[i]), "fresh:zeroed reused:zeroed",
             "calloc %zu: fresh, then after malloc+dirty+free", sizes[i]);
  static const size_t ok[][2] = {{1000, 100}, {3, 5}, {4096, 33}, {1, 1},
                                 {2, 4 * MiB}};
  for (size_t i = 0; i < COUNT(ok); i++)
    scenario(sc_calloc, ARGS(ok[i][0], ok[i][1]), "non-NULL",
             "calloc(%zu, %zu)", ok[i][0], ok[i][1]);
  static const size_t zero[][2] = {{0, 1}, {1, 0}, {0, 0}, {0, SIZE_MAX},
                                   {SIZE_MAX, 0}, {0, 100000}};
  for (size_t i = 0; i < COUNT(zero); i++)
    scenario(sc_calloc, ARGS(zero[i][0], zero[i][1]), "non-NULL",
             "calloc(%#zx, %#zx)", zero[i][0], zero[i][1]);
  static const size_t fail[][2] = {
      {SIZE_MAX / 2, 3},       {3, SIZE_MAX / 2},   {SIZE_MAX, SIZE_MAX},
      {(size_t)1 << 32, (size_t)1 << 32},          {PDMAX / 2 + 1, 2},
      {2, PDMAX / 2 + 1},      {1, PDMAX + 1},      {1, SIZE_MAX},
      {1, PDMAX},              {PDMAX, 1},          {SIZE_MAX / 16, 16}};
  for (size_t i = 0; i < COUNT(fail); i++)
    scenario(sc_calloc, ARGS(fail[i][0], fail[i][1]), "NULL errno=ENOMEM",
             "calloc(%#zx, %#zx)", fail[i][0], fail[i][1]);
}

static void test_realloc(void) {
  static const size_t fresh[] = {0, 1, 100, 5000, 100000, 4 * MiB};
  for (size_t i = 0; i < COUNT(fresh); i++)
    scenario(sc_realloc_null, ARGS(fresh[i]), "non-NULL",
             "realloc(NULL, %zu)", fresh[i]);
  scenario(sc_realloc_null, ARGS(SIZE_MAX), "NULL errno=ENOMEM",
           "realloc(NULL, SIZE_MAX)");
  scenario(sc_realloc_null, ARGS(PDMAX + 1), "NULL errno=ENOMEM",
           "realloc(NULL, PTRDIFF_MAX+1)");

  static const size_t zero[] = {1, 100, 32768, 32769, 100000, 8 * MiB};
  for (size_t i = 0; i < COUNT(zero); i++)
    scenario(sc_realloc_zero, ARGS(zero[i]), "NULL errno=unchanged",
             "realloc(p of %zu, 0)", zero[i]);
  scenario(sc_realloc_zero_frees, ARGS(0), "freed",
           "realloc(p, 0) x 20064: the blocks are freed");

  scenario(sc_realloc_matrix, ARGS(0), "ok",
           "realloc every pair of 20 sizes 1..8 MiB: contents, alignment, "
           "usable");
  scenario(sc_realloc_chain, ARGS(0), "ok",
           "realloc one block 1 B -> 24 MiB -> 1 B by x1.5 steps");
  static const size_t al[][2] = {{64, 100},      {256, 3000},
                                 {4096, 100},    {4096, 50000},
                                 {65536, 10},    {2 * MiB, 100000}};
  for (size_t i = 0; i < COUNT(al); i++)
    scenario(sc_realloc_aligned, ARGS(al[i][0], al[i][1]), "ok",
             "realloc of memalign(%zu, %zu) to 1..3 MiB", al[i][0], al[i][1]);

  static const size_t base[] = {100, 100000, 4 * MiB};
  static const size_t huge[] = {SIZE_MAX, PDMAX + 1, PDMAX, SIZE_MAX - 4096};
  for (size_t i = 0; i < COUNT(base); i++)
    for (size_t j = 0; j < COUNT(huge); j++)
      scenario(sc_realloc_fail, ARGS(huge[j], base[i]),
               "NULL errno=ENOMEM intact", "realloc(p of %zu, %#zx)",
               base[i], huge[j]);
}

static void test_reallocarray(void) {
  static const size_t fail[][2] = {{SIZE_MAX / 2, 3},
                                   {(size_t)1 << 33, (size_t)1 << 31},
                                   {SIZE_MAX, SIZE_MAX},
                                   {PDMAX / 2 + 1, 2},
                                   {1, SIZE_MAX}};
  for (size_t i = 0; i < COUNT(fail); i++)
    scenario(sc_reallocarray_fail, ARGS(fail[i][0], fail[i][1]),
             "NULL errno=ENOMEM intact", "reallocarray(p, %#zx, %#zx)",
             fail[i][0], fail[i][1]);
  scenario(sc_reallocarray, ARGS(100, 10, 100), "non-NULL",
           "reallocarray(p of 100, 10, 100)");
  scenario(sc_reallocarray, ARGS(1000, 10, 10), "non-NULL",
           "reallocarray(p of 1000, 10, 10)");
  scenario(sc_reallocarray, ARGS(100, 1000, 1000), "non-NULL",
           "reallocarray(p of 100, 1000, 1000)");
  scenario(sc_reallocarray, ARGS(0, 10, 10), "non-NULL",
           "reallocarray(NULL, 10, 10)");
  scenario(sc_reallocarray, ARGS(0, 0, 10), "non-NULL",
           "reallocarray(NULL, 0, 10)");
  scenario(sc_realloc_zero, ARGS(100, 10, 1), "NULL errno=unchanged",
           "reallocarray(p of 100, 0, 10)");
  scenario(sc_realloc_zero, ARGS(100000, 10, 1), "NULL errno=unchanged",
           "reallocarray(p of 100000, 0, 10)");
}

static void test_posix_memalign(void) {
  static const size_t bad[] = {0, 1, 2, 3, 4, 5, 6, 7, 12, 24, 48, 96, 100,
                               4095, 4097, 3 * MiB, SIZE_MAX / 2 + 2,
                               SIZE_MAX};
  for (size_t i = 0; i < COUNT(bad); i++)
    scenario(sc_aligned, ARGS(bad[i], 100, F_POSIX), "EINVAL out-untouched",
             "posix_memalign(&p, %#zx, 100)", bad[i]);
  for (size_t al = 8; al <= 4 * MiB; al <<= 1) {
    scenario(sc_aligned_sizes, ARGS(al, 0, F_POSIX), "ok",
             "posix_memalign(&p, a=%zu, 1|100|a-1|a|a+1|3a|32K-a+15..17|32K|"
             "32K+1)",
             al);
    scenario(sc_aligned, ARGS(al, 0, F_POSIX), "ok",
             "posix_memalign(&p, %zu, 0)", al);
  }
  static const size_t among[] = {4096, 8192, 65536, MiB};
  for (int f = F_POSIX; f <= F_MEMALIGN; f++)
    for (size_t i = 0; i < COUNT(among); i++)
      scenario(sc_aligned_among, ARGS(among[i], 0, f), "ok",
               "%s(%zu, 0) x8 among valloc(100) blocks: own blocks",
               fname[f], among[i]);
  scenario(sc_aligned_many, ARGS(64, 100), "ok",
           "posix_memalign(&p, 64, 100..104) x300 alive: no overlap");
  scenario(sc_aligned_many, ARGS(4096, 10), "ok",
           "posix_memalign(&p, 4096, 10..14) x300 alive: no overlap");
  static const size_t fail[][2] = {{16, SIZE_MAX},
                                   {16, PDMAX + 1},
                                   {64, PDMAX},
                                   {4096, SIZE_MAX - 4096},
                                   {2 * MiB, PDMAX},
                                   {SIZE_MAX / 2 + 1, 10},
                                   {(size_t)1 << 62, 10}};
  for (size_t i = 0; i < COUNT(fail); i++)
    scenario(sc_aligned, ARGS(fail[i][0], fail[i][1], F_POSIX),
             "ENOMEM out-untouched", "posix_memalign(&p, %#zx, %#zx)",
             fail[i][0], fail[i][1]);
}

static void test_aligned_alloc_memalign(void) {
  for (int f = F_ALIGNED; f <= F_MEMALIGN; f++) {
    static const size_t ok[][2] = {
        {0, 10},      {1, 5},        {2, 5},         {4, 5},
        {8, 3},       {16, 1},       {32, 0},        {64, 100},
        {64, 0},      {128, 1000},   {4096, 1},      {4096, 0},
        {8192, 100},  {8192, 0},     {65536, 70000}, {MiB, 0},
        {2 * MiB, 100}, {4 * MiB, 5 * MiB},
        /* not powers of two: glibc 2.36 rounds the alignment up */
        {3, 10},      {24, 100},     {100, 10},      {4097, 10},
        {3 * MiB, 10}};
    for (size_t i = 0; i < COUNT(ok); i++)
      scenario(sc_aligned, ARGS(ok[i][0], ok[i][1], f), "ok", "%s(%zu, %zu)",
               fname[f], ok[i][0], ok[i][1]);
    static const size_t einval[] = {SIZE_MAX, SIZE_MAX / 2 + 2};
    for (size_t i = 0; i < COUNT(einval); i++)
      scenario(sc_aligned, ARGS(einval[i], 10, f), "NULL errno=EINVAL",
               "%s(%#zx, 10)", fname[f], einval[i]);
    static const size_t enomem[][2] = {{SIZE_MAX / 2 + 1, 10},
                                       {(size_t)1 << 62, 10},
                                       {16, SIZE_MAX},
                                       {64, PDMAX},
                                       {4096, PDMAX + 1},
                                       {2 * MiB, SIZE_MAX - MiB}};
    for (size_t i = 0; i < COUNT(enomem); i++)
      scenario(sc_aligned, ARGS(enomem[i][0], enomem[i][1], f),
               "NULL errno=ENOMEM", "%s(%#zx, %#zx)", fname[f], enomem[i][0],
               enomem[i][1]);
  }
}

static void test_valloc_pvalloc(void) {
  static const size_t sizes[] = {0,    1,      100,    4095,
                                 4096, 4097,   100000, 3 * MiB + 1};
  for (int f = F_VALLOC; f <= F_PVALLOC; f++) {
    for (size_t i = 0; i < COUNT(sizes); i++)
      scenario(sc_aligned, ARGS(0, sizes[i], f), "ok", "%s(%zu)%s", fname[f],
               sizes[i],
               f == F_PVALLOC && sizes[i]
                   ? ": page aligned, usable >= size rounded to pages"
                   : ": page aligned");
    static const size_t fail[] = {SIZE_MAX, SIZE_MAX - 4094, PDMAX + 1,
                                  PDMAX};
    for (size_t i = 0; i < COUNT(fail); i++)
      scenario(sc_aligned, ARGS(0, fail[i], f), "NULL errno=ENOMEM",
               "%s(%#zx)", fname[f], fail[i]);
  }
}

static void test_usable(void) {
  scenario(sc_usable_null, ARGS(0), "0", "malloc_usable_size(NULL)");
  scenario(sc_usable_writable, ARGS(2048), "ok",
           "malloc_usable_size of malloc(0..2048) and 8 larger, all alive: "
           ">= n, every usable byte writable, no overlap");
  scenario(sc_usable_other, ARGS(0), "ok",
           "malloc_usable_size of calloc/realloc/memalign/aligned_alloc/"
           "valloc blocks");
}

static void test_trim(void) {
  scenario(sc_trim_idle, ARGS(0), "0-or-1", "malloc_trim(0)");
  scenario(sc_trim_after_free, ARGS(0), "1",
           "malloc_trim(0) after freeing 64 MiB + 10 MB of blocks");
  scenario(sc_trim_idle, ARGS(0), "0-or-1", "malloc_trim(0) again");
  scenario(sc_trim_idle, ARGS(SIZE_MAX / 2), "0-or-1",
           "malloc_trim(SIZE_MAX/2)");
}

static void test_mallinfo_stats(void) {
  scenario(sc_mallinfo, ARGS(0), "arena>0 grew>=N fell>=N-1MiB",
           "mallinfo2: 2000 x 5000 B + 8 MiB allocated, then freed");
  scenario(sc_stats, ARGS(0), "system-bytes,in-use-bytes", "malloc_stats");
  scenario(sc_malloc_info, ARGS(0),
           "r=0 bad-options=EINVAL errno=unchanged xml rest>=N/2 "
           "mmap>=64MiB system>0 aspace:0<open<=total",
           "malloc_info: 1000 x 200 B, half freed, and 64 MiB live");
  umpa_only(sc_malloc_info_classes, ARGS(0),
            "r=0 ordered class>=N/2 open<reserved",
            "malloc_info: one entry per class, in order; the freed half");
}

/* Each call runs in a child of its own: no setting carries over. */
static void test_mallopt(void) {
  static const struct {
    int param, value;
    const char *name, *expect;
  } cases[] = {
      {M_MMAP_THRESHOLD, 1 << 20, "M_MMAP_THRESHOLD, 1 MiB", "1"},
      {M_MMAP_THRESHOLD, 32 << 20, "M_MMAP_THRESHOLD, 32 MiB", "1"},
      {M_MMAP_THRESHOLD, 64 << 20, "M_MMAP_THRESHOLD, 64 MiB", "1"},
      {M_MMAP_THRESHOLD, -1, "M_MMAP_THRESHOLD, -1", "1"},
      {M_MMAP_THRESHOLD, 128 << 10, "M_MMAP_THRESHOLD, 128 KiB", "1"},
      {M_TRIM_THRESHOLD, 128 << 10, "M_TRIM_THRESHOLD, 128 KiB", "1"},
      {M_TRIM_THRESHOLD, 64 << 20, "M_TRIM_THRESHOLD, 64 MiB", "1"},
      {M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD, -1", "1"},
      {M_TOP_PAD, 0, "M_TOP_PAD, 0", "1"},
      {M_TOP_PAD, -1, "M_TOP_PAD, -1", "1"},
      {M_MMAP_MAX, 65536, "M_MMAP_MAX, 65536", "1"},
      {M_ARENA_MAX, 8, "M_ARENA_MAX, 8", "1"},
      {M_ARENA_MAX, -1, "M_ARENA_MAX, -1", "1"},
      {M_ARENA_TEST, 8, "M_ARENA_TEST, 8", "1"},
      {M_PERTURB, 0, "M_PERTURB, 0", "1"},
      {M_CHECK_ACTION, 3, "M_CHECK_ACTION, 3", "1"},
      {M_MXFAST, 64, "M_MXFAST, 64", "1"},
      {M_MXFAST, 1000, "M_MXFAST, 1000 (above glibc's 160)", "0"},
      {M_MXFAST, 128, "M_MXFAST, 128", "1"},
      {12345, 1, "12345 (unknown), 1", "1"},
      {-100, 7, "-100 (unknown), 7", "1"},
  };
  for (size_t i = 0; i < COUNT(cases); i++)
    scenario(sc_mallopt, ARGS((size_t)cases[i].param, 0, cases[i].value),
             cases[i].expect, "mallopt(%s)", cases[i].name);
  scenario(sc_low_threshold, ARGS(0), "set=1 restore=1 ok",
           "after mallopt(M_MMAP_THRESHOLD, 4096): old and new blocks work");
}

static void test_interleaved(void) {
  scenario(sc_interleaved, ARGS(0x1234567887654321u), "ok",
           "20000 random malloc/calloc/realloc/memalign/free on 3000 slots: "
           "patterns intact, no overlap");
}

/* C23 free_sized / free_aligned_sized (umpa only: glibc 2.36 has
 * neither): blocks of size x, plain and aligned to 256 and 64 KiB. */
static void sc_free_sized(const struct api *a, struct args arg,
                          struct out *o) {
  (void)a;
  size_t n = arg.x;
  void *p = umpa_malloc(n);
  if (!p) say(o, "malloc NULL");
  errno = ERRNO_SENTINEL;
  umpa_free_sized(p, n);
  if (errno != ERRNO_SENTINEL) say(o, "free_sized: errno=%s", ename(errno));
  static const size_t al[] = {256, 65536};
  for (size_t i = 0; i < COUNT(al); i++) {
    p = umpa_aligned_alloc(al[i], n);
    if (!p || !aligned(p, al[i]))
      say(o, "aligned_alloc(%zu, %zu) %s", al[i], n,
          p ? "MISALIGNED" : "NULL");
    if (p) memset(p, 1, n);
    errno = ERRNO_SENTINEL;
    umpa_free_aligned_sized(p, al[i], n);
    if (errno != ERRNO_SENTINEL)
      say(o, "free_aligned_sized: errno=%s", ename(errno));
  }
  umpa_free_sized(NULL, 0);
  umpa_free_aligned_sized(NULL, 64, 0);
  if (!o->s[0]) say(o, "ok");
}

/* umpa.h: pvalloc(0) gives one page.  (glibc 2.36 gives a page-aligned
 * block of a few bytes: it rounds 0 up to 1 byte, not to a page.) */
static void sc_pvalloc0_page(const struct api *a, struct args arg,
                             struct out *o) {
  (void)arg;
  void *p = a->pvalloc(hide(0));
  size_t u = a->usable(p);
  if (!p) say(o, "NULL");
  else if (!aligned(p, page) || u < page) say(o, "%zu bytes", u);
  else say(o, "one page");
  if (p) memset(p, 1, u);
  a->free(p);
}

static void test_umpa_only(void) {
  static const size_t sizes[] = {0, 1, 100, 32768, 32769, 100000, 3 * MiB};
  for (size_t i = 0; i < COUNT(sizes); i++)
    umpa_only(sc_free_sized, ARGS(sizes[i]), "ok",
              "umpa_free_sized / umpa_free_aligned_sized(256|65536), "
              "size %zu",
              sizes[i]);
  umpa_only(sc_pvalloc0_page, ARGS(0), "one page", "umpa_pvalloc(0)");
}

/* Before the scenarios, each allocator gets a used heap: small blocks of
 * many sizes with every other one freed, and a few large ones, so that the
 * scenarios (each in a child that inherits this state) run among holes and
 * live neighbours rather than on a pristine heap.  (Little is freed into
 * page caches: a child reusing such pages pays copy-on-write faults.) */
enum { WARM = 4000 };
static void *warm_blocks[2][WARM];

static void warm_up(const struct api *a, void **blk) {
  uint64_t saved = rng_state;
  rng_state = 0x0123456789abcdefu;
  for (int i = 0; i < WARM; i++) {
    /* Small blocks, and every 500th a large one that stays alive. */
    size_t n = i % 500 == 499 ? MiB + (size_t)(rnd() % MiB)
                              : (size_t)(rnd() % 4096);
    blk[i] = a->malloc(n);
    REQUIRE(blk[i]);
    memset(blk[i], 0xee, n);
  }
  for (int i = 0; i < WARM; i += 2)
    if (i % 500 != 499) {
      a->free(blk[i]);
      blk[i] = NULL;
    }
  rng_state = saved;
}

static void cool_down(const struct api *a, void **blk) {
  for (int i = 0; i < WARM; i++) a->free(blk[i]);
}

int main(void) {
  page = (size_t)sysconf(_SC_PAGESIZE);
  pat_init();
  REQUIRE(page >= 4096);
  fprintf(stderr, "test_malloc_api: the plain names are %s\n",
          UNDER_ASAN ? "ASan's allocator: umpa is checked against the "
                       "contract only"
                     : "glibc's (umpa's too under LD_PRELOAD=libumpa.so)");
  warm_up(&sys_api, warm_blocks[0]);
  warm_up(&umpa_api, warm_blocks[1]);
  test_malloc();
  test_beyond_memory();
  test_free();
  test_calloc();
  test_realloc();
  test_reallocarray();
  test_posix_memalign();
  test_aligned_alloc_memalign();
  test_valloc_pvalloc();
  test_usable();
  test_interleaved();
  test_umpa_only();
  test_mallinfo_stats();
  test_trim();
  test_mallopt();
  cool_down(&sys_api, warm_blocks[0]);
  cool_down(&umpa_api, warm_blocks[1]);
  return check_done("test_malloc_api");
}
