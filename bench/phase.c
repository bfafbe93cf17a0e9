/*
 * phase.c - a phase of small blocks, all freed, then a phase of large ones.
 *
 * A compiler between passes, a loader that parses and then builds, a batch
 * job between steps: the program allocates many small blocks, frees them
 * all, and then allocates large buffers.  Memory the first phase freed can
 * serve the second only if the allocator lets freed small-block memory
 * merge into runs a large block can take; otherwise the large blocks come
 * from fresh pages while the first phase's memory stays resident beside
 * them, and the peak is the sum of the two phases rather than their
 * maximum.  Per pattern, in a child process of its own (so that no pattern
 * finds what an earlier one left): `mib` MiB of 48-byte blocks, each
 * written, all freed in the order they were allocated; then `mib` MiB of
 * large blocks of the pattern's size, each written whole; then everything
 * freed.
 *   128k, 1m, 4m   the large blocks' size
 * Figures: "small" = MiB resident above the start after the first phase,
 * "peak" = MiB resident above the start at the end of the second (the
 * most the process held: every large block is still live), "large-ms" =
 * milliseconds of the second phase (malloc and the writes), "faults" =
 * page faults in it, per MiB of large blocks (256 when every page is
 * fresh).  The best peak is about max(small, mib).
 *
 * Usage: phase [--quick] [mib]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sys/wait.h>

#define SMALL 48

struct pattern {
  const char *name;
  size_t size;
};

static const struct pattern patterns[] = {
    {"128k", 128 * KiB},
    {"1m", MiB},
    {"4m", 4 * MiB},
};
#define NPATTERNS (sizeof patterns / sizeof *patterns)

struct outcome {
  double small, peak; /* MiB above the start */
  double large_ms, faults_per_mib;
};

static struct outcome run(const struct pattern *pat, size_t bytes) {
  struct rss_marks m;
  rss_mark_start(&m);
  size_t n = bytes / SMALL, nl = bytes / pat->size;
  char **small = xmalloc(n * sizeof *small), **large = xmalloc(nl * sizeof *large);
  for (size_t i = 0; i < n; i++) {
    small[i] = xmalloc(SMALL);
    memset(small[i], (int)(i & 0x7f) | 1, SMALL);
  }
  struct outcome o;
  o.small = mib_above(rss_bytes(), m.start);
  for (size_t i = 0; i < n; i++) {
    if (small[i][SMALL - 1] != (char)((i & 0x7f) | 1)) {
      fprintf(stderr, "phase: block %zu lost its contents\n", i);
      exit(1);
    }
    free(small[i]);
  }
  uint64_t f0 = minor_faults(), t0 = now_ns();
  for (size_t i = 0; i < nl; i++) {
    large[i] = xmalloc(pat->size);
    memset(large[i], (int)(i & 0x7f) | 1, pat->size);
  }
  uint64_t t1 = now_ns(), f1 = minor_faults();
  o.peak = mib_above(rss_bytes(), m.start);
  o.large_ms = (double)(t1 - t0) / 1e6;
  o.faults_per_mib = (double)(f1 - f0) / ((double)(nl * pat->size) / MiB);
  for (size_t i = 0; i < nl; i++) {
    if (large[i][pat->size - 1] != (char)((i & 0x7f) | 1)) {
      fprintf(stderr, "phase: large block %zu lost its contents\n", i);
      exit(1);
    }
    free(large[i]);
  }
  free(small);
  free(large);
  return o;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  long mib = num_arg(argc, argv, 0, quick ? 16 : 256);
  if (mib < 4 || mib > 65536) {
    fprintf(stderr, "usage: phase [--quick] [mib]\n");
    return 2;
  }
  struct outcome o[NPATTERNS];
  for (size_t p = 0; p < NPATTERNS; p++) {
    /* Each pattern in a fresh process; its outcome comes back by a pipe. */
    int fd[2];
    if (pipe(fd)) {
      perror("pipe");
      return 1;
    }
    pid_t pid = xfork();
    if (pid == 0) {
      close(fd[0]);
      struct outcome r = run(&patterns[p], (size_t)mib * MiB);
      _exit(write(fd[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], &o[p], sizeof o[p]);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof o[p] || !WIFEXITED(status) ||
        WEXITSTATUS(status)) {
      fprintf(stderr, "phase: pattern %s failed\n", patterns[p].name);
      return 1;
    }
  }

  printf("phase: %ld MiB of %d-byte blocks, all freed, then %ld MiB of "
         "large blocks; MiB resident above the start\n", mib, SMALL, mib);
  static const char *const head[] = {"pattern", "small", "peak", "large-ms",
                                     "faults/MiB"};
  struct table t;
  table_begin(&t, head, 5, 10);
  for (size_t p = 0; p < NPATTERNS; p++) {
    table_str(&t, patterns[p].name);
    table_num(&t, o[p].small, 1);
    table_num(&t, o[p].peak, 1);
    table_num(&t, o[p].large_ms, 1);
    table_num(&t, o[p].faults_per_mib, 1);
  }
  printf("result: bench=phase");
  for (size_t p = 0; p < NPATTERNS; p++)
    printf(" %s_peak=%.2f %s_ms=%.2f %s_faults=%.1f", patterns[p].name,
           o[p].peak, patterns[p].name, o[p].large_ms, patterns[p].name,
           o[p].faults_per_mib);
  /* No RSS fields: the memory is the children's (the peak column). */
  printf("\n");
  return 0;
}
