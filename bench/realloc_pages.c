/*
 * realloc_pages.c - the paper's Figure 11: a block grown from 4 KiB to
 * 1 GiB by doubling, each growth step timed.
 *
 *   in place  userpage_realloc with the cache prefilled: the pages after
 *             the block are free, so it grows where it is
 *   move      userpage_realloc of a block whose next page is taken by a
 *             one-page blocker, so that it must move (by remapping)
 *   copy      system malloc(new) + memcpy(old bytes) + free(old), the old
 *             block fully written first so that the copy is real
 *
 * umpa_page_stats() says which way each umpa step went; the whole sequence
 * is repeated and medians are reported per step.
 *
 * Usage: realloc_pages [--quick] [repeats]
 */
#define _GNU_SOURCE
#include "bench.h"

#include <umpa.h>

#define MAX_STEPS 20
#define MAX_REPS 16

enum { IN_PLACE, MOVE, COPY, NVARIANTS };

struct sample {
  double us[NVARIANTS][MAX_REPS];
  double faults[NVARIANTS][MAX_REPS];
  int in_place, moved; /* how the IN_PLACE variant's steps went */
  int forced_moves;    /* MOVE steps that really moved */
  int blocker_missed;  /* MOVE steps where the blocker trick failed */
};

static struct sample steps[MAX_STEPS];

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Each page carries its own index so that a move that loses or shuffles
 * pages is caught. */
static void stamp(char *p, size_t from, size_t to) {
  for (size_t off = from; off < to; off += PAGE)
    *(volatile size_t *)(p + off) = off / PAGE + 1;
}

static void check(const char *p, size_t bytes) {
  size_t last = bytes - PAGE;
  if (*(const size_t *)p != 1 ||
      *(const size_t *)(p + last) != last / PAGE + 1) {
    fprintf(stderr, "realloc_pages: a %zu-byte block lost its contents\n",
            bytes);
    exit(1);
  }
}

/* A block of `old` bytes whose next page is taken by a one-page blocker,
 * so that growing it to `new` must move it.  Free-list order makes this
 * deterministic: allocate `new` (a run aligned to its size), shrink it to
 * `old`; the freed upper half cannot merge with its buddy (our block), so it
 * goes to the front of its order's list and the next request of `old`
 * bytes gets exactly it.  That blocker is then shrunk to one page. */
static char *blocked_block(size_t old, size_t new, char **blocker, int step) {
  char *p = userpage_malloc(new, 0);
  if (!p || !userpage_realloc(p, new, old, 0)) die("userpage_malloc");
  char *b = userpage_malloc(old, 0);
  if (!b) die("userpage_malloc");
  if (b != p + old) steps[step].blocker_missed++;
  *blocker = old > PAGE ? userpage_realloc(b, old, PAGE, 0) : b;
  stamp(p, 0, old);
  return p;
}

/* Pages populated and released inside the timed calls, per variant. */
static uint64_t populated[NVARIANTS], released[NVARIANTS];

/* IN_PLACE grows one block all the way; MOVE builds a blocked block of
 * each size and grows it once. */
static void run_umpa(int variant, int rep, size_t max_size) {
  size_t old = PAGE;
  char *p = userpage_malloc(old, 0), *blocker = NULL;
  if (!p) die("userpage_malloc");
  stamp(p, 0, old);
  for (int i = 0; old < max_size; i++, old *= 2) {
    size_t new = old * 2;
    if (variant == MOVE) {
      userpage_free(p, old);
      p = blocked_block(old, new, &blocker, i);
    }
    struct umpa_page_stats a, b;
    umpa_page_stats(&a);
    uint64_t f0 = minor_faults(), t0 = now_ns();
    char *q = userpage_realloc(p, old, new, 0);
    uint64_t t = now_ns() - t0, f = minor_faults() - f0;
    if (!q) die("userpage_realloc");
    umpa_page_stats(&b);
    populated[variant] += b.pages_populated - a.pages_populated;
    released[variant] += b.pages_released - a.pages_released;
    int in = (int)(b.realloc_in_place - a.realloc_in_place);
    int mv = (int)(b.realloc_moved - a.realloc_moved);
    if (blocker) userpage_free(blocker, PAGE);
    blocker = NULL;
    check(q, old);
    stamp(q, old, new);
    p = q;
    struct sample *s = &steps[i];
    s->us[variant][rep] = (double)t / 1e3;
    s->faults[variant][rep] = (double)f;
    if (variant == IN_PLACE) {
      s->in_place += in;
      s->moved += mv;
    } else {
      s->forced_moves += mv;
    }
  }
  userpage_free(p, old);
}

static void run_copy(int rep, size_t max_size) {
  size_t old = PAGE;
  char *p = malloc(old);
  if (!p) die("malloc");
  for (int i = 0; old < max_size; i++, old *= 2) {
    size_t new = old * 2;
    memset(p, i + 1, old);
    uint64_t f0 = minor_faults(), t0 = now_ns();
    char *q = malloc(new);
    if (!q) die("malloc");
    memcpy(q, p, old);
    free(p);
    uint64_t t = now_ns() - t0, f = minor_faults() - f0;
    p = q;
    steps[i].us[COPY][rep] = (double)t / 1e3;
    steps[i].faults[COPY][rep] = (double)f;
  }
  free(p);
}

int main(int argc, char **argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int reps = (int)num_arg(argc, argv, 0, quick ? 3 : 5);
  if (reps < 1 || reps > MAX_REPS) {
    fprintf(stderr, "usage: realloc_pages [--quick] [repeats 1..%d]\n",
            MAX_REPS);
    return 2;
  }
  /* Quick mode stops at 64 MiB: well under 1 GiB of memory. */
  size_t max_size = quick ? 64 * MiB : 1 * GiB;
  int nsteps = 0;
  for (size_t s = PAGE; s < max_size; s *= 2) nsteps++;

  /* As in the paper: a cache limit of ~3 GiB, prefilled, so that the grown
   * part of a block never needs fresh pages.  The move variant holds the
   * old block, the new one and a scratch run at once.  Every repeat starts
   * from a topped-up cache: moves release cached pages. */
  size_t prefill = 3 * max_size;
  umpa_page_cache_limit(prefill + 64 * MiB);

  struct umpa_page_stats s0, s1;
  umpa_page_stats(&s0);
  for (int v = IN_PLACE; v <= MOVE; v++)
    for (int r = 0; r < reps; r++) {
      umpa_page_prefill(prefill);
      run_umpa(v, r, max_size);
    }
  umpa_page_stats(&s1);
  /* The baseline gets the memory the cache held. */
  umpa_page_trim(3);
  for (int r = 0; r < reps; r++) run_copy(r, max_size);

  printf("realloc_pages: grow a block by doubling from 4 KiB to %zu MiB; "
         "time (us) and minor faults per growth step, median of %d\n",
         max_size / MiB, reps);
  printf("in place/move: userpage_realloc; copy: malloc + memcpy + free "
         "(system malloc)\n\n");
  static const char *const cols[] = {
      "step",      "in-place us", "in-place flt", "grew(a)",
      "move us",   "move flt",    "copy us",      "copy flt",
      "copy/in-place", "copy/move"};
  struct table t;
  table_begin(&t, cols, sizeof cols / sizeof cols[0], 16);
  double sum[NVARIANTS] = {0};
  for (int i = 0; i < nsteps; i++) {
    struct sample *s = &steps[i];
    double us[NVARIANTS], flt[NVARIANTS];
    for (int v = 0; v < NVARIANTS; v++) {
      us[v] = median(s->us[v], reps);
      flt[v] = median(s->faults[v], reps);
      sum[v] += us[v];
    }
    char a[16], b[16], name[40], how[24];
    snprintf(name, sizeof name, "%s->%s", fmt_size(a, sizeof a, PAGE << i),
             fmt_size(b, sizeof b, PAGE << (i + 1)));
    if (s->moved == 0) snprintf(how, sizeof how, "in place");
    else if (s->in_place == 0) snprintf(how, sizeof how, "moved");
    else snprintf(how, sizeof how, "%d/%d moved", s->moved, reps);
    table_str(&t, name);
    table_num(&t, us[IN_PLACE], 1);
    table_num(&t, flt[IN_PLACE], 0);
    table_str(&t, how);
    if (s->forced_moves == reps) {
      table_num(&t, us[MOVE], 1);
      table_num(&t, flt[MOVE], 0);
    } else {
      /* Some repeat did not move: show how many did instead of a time. */
      snprintf(how, sizeof how, "%d/%d", s->forced_moves, reps);
      table_str(&t, how);
      table_str(&t, "-");
    }
    table_num(&t, us[COPY], 1);
    table_num(&t, flt[COPY], 0);
    table_num(&t, us[COPY] / us[IN_PLACE], 1);
    table_num(&t, us[COPY] / us[MOVE], 1);
  }
  int missed = 0;
  for (int i = 0; i < nsteps; i++) missed += steps[i].blocker_missed;
  printf("\ninside the timed umpa calls: in place %llu pages populated, "
         "%llu released; move %llu populated, %llu released\n",
         (unsigned long long)populated[IN_PLACE],
         (unsigned long long)released[IN_PLACE],
         (unsigned long long)populated[MOVE],
         (unsigned long long)released[MOVE]);
  printf("umpa over the whole run (prefills included): %llu grown in place, "
         "%llu moved, %llu remaps, %llu copies, %llu pages populated, "
         "%llu pages released; blocker misplaced %d times\n",
         (unsigned long long)(s1.realloc_in_place - s0.realloc_in_place),
         (unsigned long long)(s1.realloc_moved - s0.realloc_moved),
         (unsigned long long)(s1.remaps - s0.remaps),
         (unsigned long long)(s1.copies - s0.copies),
         (unsigned long long)(s1.pages_populated - s0.pages_populated),
         (unsigned long long)(s1.pages_released - s0.pages_released), missed);
  printf("summary: whole growth to %zu MiB (sum of median steps): in place "
         "%.0f us, move %.0f us, copy %.0f us; last step copy/in-place "
         "%.0fx, copy/move %.0fx\n",
         max_size / MiB, sum[IN_PLACE], sum[MOVE], sum[COPY],
         median(steps[nsteps - 1].us[COPY], reps) /
             median(steps[nsteps - 1].us[IN_PLACE], reps),
         median(steps[nsteps - 1].us[COPY], reps) /
             median(steps[nsteps - 1].us[MOVE], reps));
  return 0;
}
