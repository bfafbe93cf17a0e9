/*
 * test_options.c - UMPA_* environment options: size syntax, invalid
 * values (warned about and ignored), empty ones (unset, silently), and
 * that the parsed values reach the page layer, in a copy of this test run
 * with the options in its environment from the start.
 */
#include "check.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct umpa_page_stats st;

/* Run with the environment of main's list: options are parsed in one
 * pass over it, on the library's first use (or before main): only exact
 * names count, the first of two entries wins (as with getenv), and an
 * invalid value is warned about and ignored, as if it were unset (so a
 * cache limit or region size given wrongly does not become a fixed
 * one). */
static int parsed(void) {
  umpa_page_stats(&st);
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
  return check_done("test_options (parsed)");
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "parsed")) return parsed();
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

  /* The options given at the start, as a program gets them: this test
   * runs itself with the environment below, its stderr into a file.
   * (Linked in, the library parses them before main, in its
   * constructor; a test that swapped environ in main saw them parsed
   * already whenever the constructor's object was linked in.) */
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
  FILE *err = tmpfile();
  REQUIRE(err);
  fflush(stderr);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fileno(err), 2);
    char *args[] = {argv[0], "parsed", NULL};
    execve("/proc/self/exe", args, env);
    _exit(127);
  }
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  char warned[4096];
  rewind(err);
  size_t len = fread(warned, 1, sizeof warned - 1, err);
  warned[len] = 0;
  fclose(err);
  fputs(warned, stderr); /* the child's failed checks, if any */
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child's checks failed (status %d)", status);
  /* Each invalid value named once; an empty one (a script's
   * UMPA_CHECK=$X with X unset) is unset without a word. */
  CHECK(strstr(warned, "UMPA_REGION_SIZE=3M") != NULL);
  CHECK(strstr(warned, "UMPA_THP=maybe") != NULL);
  CHECK(strstr(warned, "UMPA_LARGE_CACHE=lots") != NULL);
  CHECK(strstr(warned, "UMPA_PAGE_LOCK=mutex") == NULL);
  CHECK(strstr(warned, "UMPA_MALLOC_POPULATE") == NULL);
  CHECK(strstr(warned, "UMPA_CHECK") == NULL);
  return check_done("test_options");
}
