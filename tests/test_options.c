/*
 * test_options.c - UMPA_* environment options: size syntax, invalid
 * values (warned about and ignored), empty ones (unset, silently), and
 * that the parsed values reach the page layer.
 */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

extern char **environ;

static struct umpa_page_stats st;
static void parse_now(void) { umpa_page_stats(&st); }

int main(void) {
  size_t v;
  CHECK(options_parse_size("0", &v) && v == 0);
  CHECK(options_parse_size("4096", &v) && v == 4096);
  CHECK(options_parse_size("64K", &v) && v == 65536);
  CHECK(options_parse_size("64k", &v) && v == 65536);
  CHECK(options_parse_size("2M", &v) && v == 2u << 20);
  CHECK(options_parse_size("2MiB", &v) && v == 2u << 20);
  CHECK(options_parse_size("3G", &v) && v == (size_t)3 << 30);
  CHECK(options_parse_size("1T", &v) && v == (size_t)1 << 40);
  CHECK(!options_parse_size("", &v));
  CHECK(!options_parse_size("M", &v));
  CHECK(!options_parse_size("12X", &v));
  CHECK(!options_parse_size("-1", &v));
  CHECK(!options_parse_size("99999999999999999999999", &v));
  CHECK(!options_parse_size("20000000000T", &v));

  /* Options are parsed on first use of the library, in one pass over the
   * environment: only exact names count, the first of two entries wins
   * (as with getenv), and an invalid value is warned about and ignored,
   * as if it were unset (so a cache limit or region size given wrongly
   * does not become a fixed one). */
  char *env[] = {"PATH=/bin",
                 "UMPA_=1",
                 "UMPAX_PAGE_CACHE=1M",
                 "UMPA_CHECKS=1",
                 "UMPA_DECAY_MS",
                 "UMPA_PAGE_CACHE=12M",
                 "UMPA_PAGE_CACHE=1M",
                 "UMPA_PAGE_LOCK=mutex",
                 "UMPA_REGION_SIZE=3M", /* not a power of two */
                 "UMPA_THP=maybe",
                 "UMPA_LARGE_CACHE=lots",
                 "UMPA_DECAY_MS=7",
                 "UMPA_MALLOC_POPULATE=",
                 "UMPA_CHECK=",
                 "UMPA_CHECK=1", /* the first entry counts, empty or not */
                 NULL};
  char **saved = environ;
  environ = env;
  char warned[2048];
  capture_stderr(parse_now, warned, sizeof warned);
  environ = saved;
  /* Each invalid value named once; an empty one (a script's
   * UMPA_CHECK=$X with X unset) is unset without a word. */
  CHECK(strstr(warned, "UMPA_REGION_SIZE=3M") != NULL);
  CHECK(strstr(warned, "UMPA_THP=maybe") != NULL);
  CHECK(strstr(warned, "UMPA_LARGE_CACHE=lots") != NULL);
  CHECK(strstr(warned, "UMPA_PAGE_LOCK=mutex") == NULL);
  CHECK(strstr(warned, "UMPA_MALLOC_POPULATE") == NULL);
  CHECK(strstr(warned, "UMPA_CHECK") == NULL);
  CHECK(st.cache_limit == (size_t)12 << 20);
  CHECK(umpa_opt.page_cache_fixed);
  CHECK(st.lock_kind == 1);
  CHECK(umpa_opt.region_shift == REGION_DEFAULT_SHIFT);
  CHECK(!umpa_opt.region_size_fixed);
  CHECK(umpa_opt.thp == 0);
  CHECK(umpa_opt.large_cache == (size_t)256 << 20);
  CHECK(!umpa_opt.large_cache_fixed);
  CHECK(umpa_opt.check == 0);
  CHECK(umpa_opt.decay_ms == 7);
  CHECK(umpa_opt.malloc_populate == 0);
  /* Parsed once: later changes to the environment do not apply. */
  setenv("UMPA_PAGE_CACHE", "1M", 1);
  options_init();
  CHECK(umpa_opt.page_cache == (size_t)12 << 20);
  void *p = userpage_malloc(1, 0);
  CHECK(p != NULL);
  userpage_free(p, 1);
  return check_done("test_options");
}
