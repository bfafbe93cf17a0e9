/*
 * check.h - the tests' tiny harness: CHECK(expr) records a failure with
 * its line and carries on; check_done() prints a summary and gives the
 * process exit status, so CTest sees every failure.
 */
#ifndef UMPA_TEST_CHECK_H
#define UMPA_TEST_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures, check_count;

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

/* Sanitizer builds run the tests with UMPA_TEST_QUICK=1: heavy tests then
 * do a fraction of their work (ThreadSanitizer is 10-50x slower). */
static inline long test_scaled(long n) {
  const char *q = getenv("UMPA_TEST_QUICK");
  return q && *q == '1' ? (n / 10 > 0 ? n / 10 : 1) : n;
}

static inline int check_done(const char *name) {
  fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count,
          check_failures);
  return check_failures ? 1 : 0;
}

#endif
