/*
 * test_options.c - UMPA_* environment options: size syntax, invalid
 * values (warned about and ignored), and that the parsed values reach the
 * page layer.
 */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

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

  /* Options are parsed on first use of the library. */
  setenv("UMPA_PAGE_CACHE", "12M", 1);
  setenv("UMPA_PAGE_LOCK", "mutex", 1);
  setenv("UMPA_REGION_SIZE", "3M", 1); /* not a power of two: ignored */
  setenv("UMPA_THP", "maybe", 1);      /* invalid: ignored */
  struct umpa_page_stats st;
  umpa_page_stats(&st);
  CHECK(st.cache_limit == (size_t)12 << 20);
  CHECK(st.lock_kind == 1);
  CHECK(umpa_opt.region_shift == REGION_DEFAULT_SHIFT);
  CHECK(umpa_opt.thp == 0);
  /* Parsed once: later changes to the environment do not apply. */
  setenv("UMPA_PAGE_CACHE", "1M", 1);
  options_init();
  CHECK(umpa_opt.page_cache == (size_t)12 << 20);
  void *p = userpage_malloc(1, 0);
  CHECK(p != NULL);
  userpage_free(p, 1);
  return check_done("test_options");
}
