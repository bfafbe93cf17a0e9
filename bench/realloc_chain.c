/*
 * realloc_chain.c - buffers grown by doubling with realloc, again and again.
 *
 * A vector, a string builder, a file read into a growing buffer: each chain
 * mallocs 32 KiB + 8 bytes, writes it, and reallocs it to twice its size
 * minus the 8 bytes, writing the new part, up to 4 MiB + 8 (sqlite's sorter
 * did exactly this several times a second in tests/preload's workload), then
 * frees it.  The next chain can reuse the memory the last one freed; an
 * allocator that instead grows each chain into fresh pages pays a fault per
 * page.  With a pause between chains (`gap_us`), cached memory has time to
 * decay.  Side by side, four buffers grow in turn, each realloc'd once per
 * step (several vectors filled together): a buffer then has a neighbour
 * right after it, so it cannot grow in place, and an allocator that does
 * not copy must move it.  Reports ms per chain and faults per chain: back
 * to back, with a 20 ms pause, and four side by side (per chain of four).
 * Last, a string built by appending 16 bytes at a time up to 64 KiB (ns
 * per realloc): most reallocs stay within the block, small or large, and
 * cost what the allocator's bookkeeping costs; one in 256 past 32 KiB
 * needs another page.
 *
 * Usage: realloc_chain [--quick] [chains [gap_us]]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <string.h>
#include <time.h>

struct outcome {
  double ms, faults;
};

#define MAX_SIDE 4

/* Chains of `side` buffers grown in turn (1: one at a time). */
static struct outcome run(long chains, long gap_us, size_t top, int side) {
  uint64_t f0 = minor_faults(), t0 = now_ns(), paused = 0;
  for (long c = 0; c < chains; c++) {
    size_t n = 32 * 1024 + 8;
    char *p[MAX_SIDE];
    for (int k = 0; k < side; k++) {
      p[k] = xmalloc(n);
      memset(p[k], (int)(c + k), n);
    }
    while (n < top) {
      size_t m = (n - 8) * 2 + 8;
      for (int k = 0; k < side; k++) {
        char *q = realloc(p[k], m);
        if (!q) {
          fprintf(stderr, "realloc_chain: realloc(%zu) failed\n", m);
          exit(1);
        }
        p[k] = q;
        memset(p[k] + n, (int)(c + k), m - n);
      }
      n = m;
    }
    for (int k = 0; k < side; k++) {
      if (p[k][0] != (char)(c + k) || p[k][n - 1] != (char)(c + k)) {
        fprintf(stderr, "realloc_chain: contents lost\n");
        exit(1);
      }
      free(p[k]);
    }
    if (gap_us) {
      uint64_t s = now_ns();
      struct timespec ts = {gap_us / 1000000, gap_us % 1000000 * 1000};
      nanosleep(&ts, NULL);
      paused += now_ns() - s;
    }
  }
  struct outcome o;
  o.ms = (double)(now_ns() - t0 - paused) / 1e6 / (double)chains;
  o.faults = (double)(minor_faults() - f0) / (double)chains;
  return o;
}

/* Grow a buffer 16 bytes at a time from 16 B to `top`, `reps` times;
 * returns ns per realloc. */
static double run_steps(long reps, size_t top) {
  uint64_t t0 = now_ns(), ops = 0;
  for (long r = 0; r < reps; r++) {
    char *p = NULL;
    for (size_t n = 16; n <= top; n += 16, ops++) {
      char *q = realloc(p, n);
      if (!q) {
        fprintf(stderr, "realloc_chain: realloc(%zu) failed\n", n);
        exit(1);
      }
      p = q;
      memset(p + n - 16, (int)(n >> 4), 16);
    }
    for (size_t n = 16; n <= top; n += 16)
      if (p[n - 1] != (char)(n >> 4)) {
        fprintf(stderr, "realloc_chain: contents lost\n");
        exit(1);
      }
    free(p);
  }
  return (double)(now_ns() - t0) / (double)ops;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  long chains = num_arg(argc, argv, 0, quick ? 5 : 200);
  long gap_us = num_arg(argc, argv, 1, 20000);
  if (chains < 1 || gap_us < 0 || gap_us > 10000000) {
    fprintf(stderr, "usage: realloc_chain [--quick] [chains [gap_us]]\n");
    return 2;
  }
  size_t top = 4 * MiB + 8;
  struct rss_marks m;
  rss_mark_start(&m);
  long few = chains / 4 > 0 ? chains / 4 : 1;
  struct outcome busy = run(chains, 0, top, 1);
  struct outcome idle = run(few, gap_us, top, 1);
  struct outcome side = run(few, 0, top, MAX_SIDE);
  double step_ns = run_steps(quick ? 5 : 400, 64 * 1024);
  rss_mark_end(&m);
  printf("realloc_chain: %ld chains of 32 KiB..4 MiB by doubling, back to "
         "back: %.3f ms and %.1f faults a chain; %ld with %ld us between "
         "them: %.3f ms and %.1f faults a chain (the pauses not counted); "
         "%ld of %d side by side: %.3f ms and %.1f faults a chain of %d; "
         "16 B to 64 KiB by 16 B steps: %.1f ns a realloc\n",
         chains, busy.ms, busy.faults, few, gap_us, idle.ms, idle.faults,
         few, MAX_SIDE, side.ms, side.faults, MAX_SIDE, step_ns);
  print_rss_text(&m);
  printf("result: bench=realloc_chain busy_ms=%.4f busy_faults=%.1f "
         "idle_ms=%.4f idle_faults=%.1f side_ms=%.4f side_faults=%.1f "
         "step_ns=%.2f",
         busy.ms, busy.faults, idle.ms, idle.faults, side.ms, side.faults,
         step_ns);
  print_rss_fields(&m);
  return 0;
}
