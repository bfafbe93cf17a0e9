/*
 * test_page_nofault.c - memory reused from the cache takes no page fault
 * (measured with getrusage), for blocks from one page to 64 MiB, warm
 * reallocs included.
 */
#include "check.h"

#include <string.h>
#include <sys/resource.h>
#include <umpa.h>

#define PG ((size_t)UMPA_PAGE_SIZE)

static long faults(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt + r.ru_majflt;
}

static void touch(char *p, size_t bytes) {
  for (size_t i = 0; i < bytes; i += PG) p[i] = (char)i;
}

/* Allocate, touch and free each size; grow and shrink by realloc. */
static void round_trip(void) {
  static const size_t sizes[] = {PG, 4 * PG, 64 << 10, 1 << 20, 3 << 20,
                                 16 << 20, 64 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = userpage_malloc(sizes[i], 0);
    REQUIRE(p);
    touch(p, sizes[i]);
    userpage_free(p, sizes[i]);
  }
  char *p = userpage_malloc(PG, 0);
  REQUIRE(p);
  size_t sz = PG;
  for (; sz < (32u << 20); sz *= 2) {
    p = userpage_realloc(p, sz, sz * 2, 0);
    REQUIRE(p);
    touch(p, sz * 2);
  }
  userpage_free(p, sz);
}

int main(void) {
  umpa_page_cache_limit((size_t)256 << 20);
  umpa_page_prefill((size_t)192 << 20);
  round_trip(); /* first pass: also backs the layer's metadata */
  long before = faults();
  for (int i = 0; i < 5; i++) round_trip();
  long taken = faults() - before;
  CHECK_MSG(taken == 0, "%ld page faults while reusing cached pages", taken);
  struct umpa_page_stats st;
  umpa_page_stats(&st);
  CHECK(st.cache_hits > 0);
  return check_done("test_page_nofault");
}
