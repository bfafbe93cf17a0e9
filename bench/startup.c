/*
 * startup.c - what a short process pays for its allocator, in us.
 *
 * Build tools, shells and version control start thousands of processes
 * that each allocate a little and exit (git runs one per command, make one
 * per compile), so an allocator's set-up is paid again and again: its
 * library loaded and relocated, its constructor, the first malloc's
 * structures, a page per size class.  This runs itself as a child, again
 * and again (fork and exec: the child inherits LD_PRELOAD, so it runs under
 * the allocator being measured), and reports the median wall time of a
 * child from fork to wait, in us:
 *   bare     the child exits at once: the allocator's library and
 *            constructor only (the system row loads no library at all);
 *   one      one malloc(32) and its free;
 *   classes  blocks of 24 sizes from 16 B to 8 KiB, each written, and a
 *            64 KiB buffer with a byte written per page, all freed: the
 *            allocations of a short command.
 * The three take turns run after run, so that the machine's drift hits
 * them alike.  Differences between allocators are tens of us on a process
 * of a millisecond or two, so the medians want a few hundred runs.
 *
 * Usage: startup [--quick] [runs]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BARE, ONE, CLASSES, NPAT };
static const char *const names[NPAT] = {"bare", "one", "classes"};

static volatile char sink;

static int child(const char *pattern) {
  if (strcmp(pattern, "one") == 0) {
    char *p = xmalloc(32);
    p[0] = 1;
    sink = p[0];
    free(p);
  } else if (strcmp(pattern, "classes") == 0) {
    enum { SIZES = 24 };
    char *p[SIZES];
    size_t size = 16;
    for (int i = 0; i < SIZES; i++) {
      p[i] = xmalloc(size);
      p[i][0] = p[i][size - 1] = (char)i;
      size = size * 4 / 3 + 16; /* 16 B .. about 8 KiB */
    }
    char *buf = xmalloc(64 * KiB);
    touch_pages(buf, 64 * KiB);
    free(buf);
    for (int i = 0; i < SIZES; i++) free(p[i]);
  }
  return 0;
}

/* One child from fork to wait, in ns. */
static uint64_t spawn(const char *self, const char *pattern) {
  uint64_t t0 = now_ns();
  pid_t pid = xfork();
  if (pid == 0) {
    execl(self, self, "--child", pattern, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "startup: the %s child failed\n", pattern);
    exit(1);
  }
  return now_ns() - t0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child(argv[2]);
  bool quick = has_flag(argc, argv, "--quick");
  long runs = num_arg(argc, argv, 0, quick ? 10 : 300);
  if (runs < 1) {
    fprintf(stderr, "usage: startup [--quick] [runs]\n");
    return 2;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    perror("readlink /proc/self/exe");
    return 1;
  }
  self[n] = 0;

  struct rss_marks m;
  rss_mark_start(&m);
  double *us[NPAT];
  for (int k = 0; k < NPAT; k++) {
    us[k] = calloc((size_t)runs, sizeof *us[k]);
    if (!us[k]) {
      perror("calloc");
      return 1;
    }
  }
  for (int k = 0; k < NPAT; k++) spawn(self, names[k]); /* warm the caches */
  for (long r = 0; r < runs; r++)
    for (int k = 0; k < NPAT; k++) {
      int j = (int)((k + r) % NPAT); /* each pattern first in turn */
      us[j][r] = (double)spawn(self, names[j]) / 1e3;
    }
  rss_mark_end(&m);

  printf("startup: %ld runs of each child (fork, exec, the child's "
         "allocations, exit, wait), median us per process\n\n", runs);
  printf("result: bench=startup runs=%ld", runs);
  double med[NPAT];
  for (int k = 0; k < NPAT; k++) {
    med[k] = median(us[k], (int)runs);
    printf(" %s=%.1f", names[k], med[k]);
  }
  print_rss_fields(&m);
  for (int k = 0; k < NPAT; k++) free(us[k]);
  return 0;
}
