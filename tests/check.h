/*
 * check.h - the tests' tiny harness: CHECK(expr) records a failure with
 * its line and carries on; check_done() prints a summary and gives the
 * process exit status, so CTest sees every failure.
 */
#ifndef UMPA_TEST_CHECK_H
#define UMPA_TEST_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_failures, check_count;

/* 1 when built with AddressSanitizer, whose allocator and address-space
 * needs some tests must allow for. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
/* 1 under ThreadSanitizer, which ends a child of a multithreaded fork
 * that makes threads (its die_after_fork). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define CHECK(expr)                                                       \
  do {                                                                    \
    check_count++;                                                        \
    if (!(expr)) {                                                        \
      check_failures++;                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,    \
              #expr);                                                     \
    }                                                                     \
  } while (0)

#define CHECK_MSG(expr, ...)                                              \
  do {                                                                    \
    check_count++;                                                        \
    if (!(expr)) {                                                        \
      check_failures++;                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__,    \
              #expr);                                                     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* A fatal precondition: stop the test at once. */
#define REQUIRE(expr)                                                     \
  do {                                                                    \
    if (!(expr)) {                                                        \
      fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__,  \
              #expr);                                                     \
      exit(1);                                                            \
    }                                                                     \
  } while (0)

#define REQUIRE_MSG(expr, ...)                                            \
  do {                                                                    \
    if (!(expr)) {                                                        \
      fprintf(stderr, "%s:%d: REQUIRE failed: %s: ", __FILE__, __LINE__,  \
              #expr);                                                     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
      exit(1);                                                            \
    }                                                                     \
  } while (0)

/* Call fn with stderr going to a temporary file, and put what it printed
 * in buf (at most size - 1 bytes, NUL-terminated); returns its length. */
static inline size_t capture_stderr(void (*fn)(void), char *buf,
                                    size_t size) {
  FILE *tmp = tmpfile();
  REQUIRE(tmp);
  fflush(stderr);
  int saved = dup(2);
  REQUIRE(saved >= 0 && dup2(fileno(tmp), 2) == 2);
  fn();
  fflush(stderr);
  REQUIRE(dup2(saved, 2) == 2);
  close(saved);
  rewind(tmp);
  size_t len = fread(buf, 1, size - 1, tmp);
  buf[len] = 0;
  fclose(tmp);
  return len;
}

/* Run fn in a forked child, which exits with what it returns; its wait
 * status.  The child counts its own checks: inherited ones made every
 * child after a failed one report failures of its own. */
static inline int child_status(int (*fn)(void)) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    check_failures = check_count = 0;
    _exit(fn());
  }
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return status;
}

/* Run fn in a forked child with its stderr captured: true if the child
 * aborted (SIGABRT) after printing exactly one line that starts with
 * "umpa: " and contains `expect`. */
#include <signal.h>
#include <string.h>
static inline bool dies_with(void (*fn)(void), const char *expect) {
  int fd[2];
  REQUIRE(pipe(fd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    fn();
    _exit(0); /* not reached if the misuse is detected */
  }
  close(fd[1]);
  char buf[1024];
  size_t len = 0;
  ssize_t n;
  while ((n = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = '\0';
  close(fd[0]);
  int status;
  waitpid(pid, &status, 0);
  bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  bool one_line = len > 0 && strchr(buf, '\n') == buf + len - 1;
  bool says = strstr(buf, expect) != NULL && strncmp(buf, "umpa: ", 6) == 0;
  if (!aborted || !one_line || !says)
    fprintf(stderr, "expected abort with \"%s\", got status %d, stderr: %s\n",
            expect, status, buf);
  return aborted && one_line && says;
}

#include <time.h>
/* CLOCK_MONOTONIC in ns. */
static inline uint64_t mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Marsaglia's xorshift64 (13, 7, 17): advances *s and returns it.  Tests
 * use it for reproducible sequences. */
static inline uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Sanitizer builds run the tests with UMPA_TEST_QUICK=1: heavy tests then
 * do a fraction of their work (ThreadSanitizer is 10-50x slower). */
static inline long test_scaled(long n) {
  const char *q = getenv("UMPA_TEST_QUICK");
  return q && *q == '1' ? (n / 10 > 0 ? n / 10 : 1) : n;
}

/* A size the kernel refuses to map (private, without MAP_NORESERVE), as
 * glibc's malloc maps large blocks: twice memory and swap together, which
 * the default heuristic overcommit policy (mode 0) and the strict one
 * (mode 2) refuse, as does an RLIMIT_AS below it.  0 when nothing would
 * refuse it (mode 1, "always"), when it is too big to mean anything (4 TiB
 * and more), or under an RLIMIT_AS above it, where umpa does not ask the
 * policy (os_may_commit); the test is then skipped, which this prints.
 * *mode receives vm.overcommit_memory (-1 unreadable) and *limited whether
 * RLIMIT_AS alone refuses it. */
#include <sys/resource.h>
#include <sys/sysinfo.h>
static inline size_t refused_size(int *mode, bool *limited) {
  struct sysinfo si;
  REQUIRE(sysinfo(&si) == 0);
  size_t mem = ((size_t)si.totalram + (size_t)si.totalswap) * si.mem_unit;
  size_t gib = (size_t)1 << 30;
  size_t n = (2 * mem + gib) & ~(gib - 1);
  *mode = -1;
  FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
  if (f) {
    if (fscanf(f, "%d", mode) != 1) *mode = -1;
    fclose(f);
  }
  struct rlimit as;
  REQUIRE(getrlimit(RLIMIT_AS, &as) == 0);
  *limited = as.rlim_cur != RLIM_INFINITY && as.rlim_cur < n;
  if ((*mode != 0 && *mode != 2 && !*limited) || n >= (size_t)1 << 42 ||
      (as.rlim_cur != RLIM_INFINITY && !*limited)) {
    fprintf(stderr, "beyond memory: skipped (overcommit mode %d, or an "
                    "RLIMIT_AS above the size)\n", *mode);
    return 0;
  }
  return n;
}

static inline int check_done(const char *name) {
  fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count,
          check_failures);
  return check_failures ? 1 : 0;
}

/* How many of the 4 KiB pages of [p, p+bytes) are resident (mincore);
 * p is page-aligned.  Thread-safe: the vector is on the stack, in steps. */
static inline size_t resident_pages(const void *p, size_t bytes) {
  unsigned char vec[1024];
  const size_t step = sizeof vec * 4096;
  size_t r = 0;
  for (size_t off = 0; off < bytes; off += step) {
    size_t len = bytes - off < step ? bytes - off : step;
    REQUIRE(mincore((char *)p + off, len, vec) == 0);
    for (size_t i = 0; i < len / 4096; i++) r += vec[i] & 1;
  }
  return r;
}

#endif
