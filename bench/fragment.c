/*
 * fragment.c - what malloc_trim(0) gives back while a few blocks stay out.
 *
 * A server's cache fills, then most of it is dropped: the few blocks that
 * remain are spread over all the memory the peak took.  Per pattern, the
 * program allocates about `mib` MiB of random sizes, writes every block,
 * frees all but one block in `keep` (chosen by a fixed-seed xorshift, the
 * same for every allocator), and reads the resident memory after the frees
 * and again after malloc_trim(0); then it frees the rest.
 *   small   16..128 bytes, one block in 50 stays
 *   medium  128..1024 bytes, one block in 200 stays
 * An allocator that only returns wholly empty superblocks or spans keeps
 * nearly the whole peak; one that releases the free pages between the
 * survivors (glibc's malloc_trim does) keeps about the pages they are on.
 * Figures are MiB resident above the start, lower is better.
 *
 * Usage: fragment [--quick] [mib]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <malloc.h>

struct pattern {
  const char *name;
  size_t min, max;
  unsigned keep;
};

static const struct pattern patterns[] = {
    {"small", 16, 128, 50},
    {"medium", 128, 1024, 200},
};
#define NPATTERNS (sizeof patterns / sizeof *patterns)

struct outcome {
  double peak, freed, trimmed; /* MiB above the start */
  double live;                 /* MiB in the blocks that stay */
};

static struct outcome run(const struct pattern *pat, size_t bytes,
                          size_t start, struct rss_marks *m) {
  size_t n = bytes / ((pat->min + pat->max) / 2);
  char **blocks = xmalloc(n * sizeof *blocks);
  /* The sizes' stream is drawn twice (to count the survivors' bytes
   * without storing every size), the choice of survivors from another. */
  uint64_t seed = 0x9E3779B97F4A7C15u ^ pat->max, rng = seed, pick = ~seed;
  size_t live = 0;
  for (size_t i = 0; i < n; i++) {
    size_t size = rand_between(&rng, pat->min, pat->max);
    blocks[i] = xmalloc(size);
    memset(blocks[i], (int)(i & 0x7f) | 1, size);
  }
  struct outcome o;
  rss_mark_peak(m);
  o.peak = mib_above(rss_bytes(), start);
  rng = seed;
  for (size_t i = 0; i < n; i++) {
    size_t size = rand_between(&rng, pat->min, pat->max);
    if (xorshift64_next(&pick) % pat->keep == 0) {
      live += size;
      continue;
    }
    free(blocks[i]);
    blocks[i] = NULL;
  }
  o.freed = mib_above(rss_bytes(), start);
  malloc_trim(0);
  o.trimmed = mib_above(rss_bytes(), start);
  o.live = (double)live / (double)MiB;
  /* The survivors are intact. */
  for (size_t i = 0; i < n; i++)
    if (blocks[i] && blocks[i][0] != (char)((i & 0x7f) | 1)) {
      fprintf(stderr, "fragment: block %zu lost its contents\n", i);
      exit(1);
    }
  for (size_t i = 0; i < n; i++) free(blocks[i]);
  free(blocks);
  return o;
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  long mib = num_arg(argc, argv, 0, quick ? 16 : 256);
  if (mib < 1 || mib > 65536) {
    fprintf(stderr, "usage: fragment [--quick] [mib]\n");
    return 2;
  }
  struct rss_marks m;
  rss_mark_start(&m);
  struct outcome o[NPATTERNS];
  for (size_t p = 0; p < NPATTERNS; p++)
    o[p] = run(&patterns[p], (size_t)mib * MiB, m.start, &m);
  rss_mark_end(&m);

  printf("fragment: %ld MiB of blocks per pattern, then all but a few "
         "freed; MiB resident above the start\n", mib);
  static const char *const head[] = {"pattern", "sizes", "keep", "live",
                                     "peak", "freed", "trimmed"};
  struct table t;
  table_begin(&t, head, 7, 8);
  for (size_t p = 0; p < NPATTERNS; p++) {
    char sizes[32], keep[16];
    snprintf(sizes, sizeof sizes, "%zu..%zu", patterns[p].min, patterns[p].max);
    snprintf(keep, sizeof keep, "1/%u", patterns[p].keep);
    table_str(&t, patterns[p].name);
    table_str(&t, sizes);
    table_str(&t, keep);
    table_num(&t, o[p].live, 1);
    table_num(&t, o[p].peak, 1);
    table_num(&t, o[p].freed, 1);
    table_num(&t, o[p].trimmed, 1);
  }
  print_rss_text(&m);
  printf("result: bench=fragment small_freed=%.2f small_trimmed=%.2f "
         "medium_freed=%.2f medium_trimmed=%.2f",
         o[0].freed, o[0].trimmed, o[1].freed, o[1].trimmed);
  print_rss_fields(&m);
  return 0;
}
