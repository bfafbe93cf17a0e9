/*
 * options.c - UMPA_* environment options, parsed once.
 *
 * The table below is the single list of options; README.md documents the
 * same table.  Parsing reads the environment block directly (no getenv, no
 * allocation) because it can run inside the first malloc of a process.
 */
#include "internal.h"

#include <string.h>

struct umpa_options umpa_opt = {
    .page_cache = (size_t)256 << 20,
    .region_shift = REGION_DEFAULT_SHIFT,
    .page_lock = LOCK_SPIN,
    .populate = POPULATE_AUTO,
    .thp = 0,
    .collapse = 1,
    .malloc_populate = 0,
    .large_cache = (size_t)256 << 20,
    .decay_ms = 50,
    .check = 0,
};

enum opt_type { OPT_SIZE, OPT_BOOL, OPT_CHOICE, OPT_POW2 };

struct option_def {
  const char *name;
  enum opt_type type;
  void *target;           /* size_t*, int* or unsigned* (shift) */
  const char *choices[5]; /* OPT_CHOICE: value i is choices[i] */
};

static const struct option_def option_table[] = {
    {"UMPA_PAGE_CACHE", OPT_SIZE, &umpa_opt.page_cache, {0}},
    {"UMPA_REGION_SIZE", OPT_POW2, &umpa_opt.region_shift, {0}},
    {"UMPA_PAGE_LOCK", OPT_CHOICE, &umpa_opt.page_lock, {"spin", "mutex", 0}},
    {"UMPA_POPULATE",
     OPT_CHOICE,
     &umpa_opt.populate,
     {"auto", "madvise", "map", "touch", 0}},
    {"UMPA_THP", OPT_BOOL, &umpa_opt.thp, {0}},
    {"UMPA_COLLAPSE", OPT_BOOL, &umpa_opt.collapse, {0}},
    {"UMPA_MALLOC_POPULATE", OPT_SIZE, &umpa_opt.malloc_populate, {0}},
    {"UMPA_LARGE_CACHE", OPT_SIZE, &umpa_opt.large_cache, {0}},
    {"UMPA_DECAY_MS", OPT_SIZE, &umpa_opt.decay_ms, {0}},
    {"UMPA_CHECK", OPT_BOOL, &umpa_opt.check, {0}},
};

bool options_parse_size(const char *s, size_t *out) {
  if (!s || !*s) return false;
  size_t v = 0;
  const char *c = s;
  for (; *c >= '0' && *c <= '9'; c++) {
    size_t d = (size_t)(*c - '0');
    if (v > (SIZE_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (c == s) return false;
  unsigned shift = 0;
  switch (*c) {
    case 'k': case 'K': shift = 10; c++; break;
    case 'm': case 'M': shift = 20; c++; break;
    case 'g': case 'G': shift = 30; c++; break;
    case 't': case 'T': shift = 40; c++; break;
    default: break;
  }
  if (shift && (*c == 'i' || *c == 'I')) c++;
  if (shift && (*c == 'b' || *c == 'B')) c++;
  if (*c != '\0') return false;
  if (shift && v > (SIZE_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

#define NUM_OPTIONS (sizeof option_table / sizeof option_table[0])

/* The index of the option a "NAME=value" entry of the environment sets,
 * or NUM_OPTIONS. */
static size_t option_named(const char *entry) {
  size_t i = 0;
  for (; i < NUM_OPTIONS; i++) {
    size_t len = strlen(option_table[i].name);
    if (strncmp(entry, option_table[i].name, len) == 0 && entry[len] == '=')
      break;
  }
  return i;
}

/* Sets the option from its value; false (with a warning) if invalid. */
static bool apply(const struct option_def *o, const char *v) {
  switch (o->type) {
    case OPT_SIZE: {
      size_t n;
      if (options_parse_size(v, &n)) {
        *(size_t *)o->target = n;
        return true;
      }
      break;
    }
    case OPT_POW2: {
      size_t n;
      if (options_parse_size(v, &n) && n && (n & (n - 1)) == 0 &&
          n >= ((size_t)1 << REGION_MIN_SHIFT) &&
          n <= ((size_t)1 << (MAX_ORDER + PAGE_SHIFT))) {
        *(unsigned *)o->target = log2_floor(n);
        return true;
      }
      break;
    }
    case OPT_BOOL:
      if (strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 ||
          strcmp(v, "on") == 0) {
        *(int *)o->target = 1;
        return true;
      }
      if (strcmp(v, "0") == 0 || strcmp(v, "no") == 0 ||
          strcmp(v, "off") == 0) {
        *(int *)o->target = 0;
        return true;
      }
      break;
    case OPT_CHOICE:
      for (int i = 0; o->choices[i]; i++)
        if (strcmp(v, o->choices[i]) == 0) {
          *(int *)o->target = i;
          return true;
        }
      break;
  }
  umpa_warn("umpa: ignoring %s=%s (invalid value)\n", o->name, v);
  return false;
}

/* 0: not parsed, 1: being parsed, 2: done. */
UMPA_EARLY_DATA static _Atomic int options_state;

void options_init(void) {
  if (atomic_load_explicit(&options_state, memory_order_acquire) == 2) return;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&options_state, &expected, 1)) {
    while (atomic_load_explicit(&options_state, memory_order_acquire) == 1)
      os_yield();
    return;
  }
  char **env = os_environ();
  if (env == NULL) {
    /* Called before libc set up the environment (first malloc of a
     * preloaded process): keep the defaults and parse on a later call. */
    atomic_store_explicit(&options_state, 0, memory_order_release);
    return;
  }
  /* One pass over the environment, looking closer only at UMPA_ entries:
   * a search of it per option cost every process 20k instructions (for
   * `git status` with 37 variables set, 2.4 % of all it ran), now 2k. */
  unsigned seen = 0; /* the first of two entries counts, as for getenv */
  _Static_assert(NUM_OPTIONS <= 32, "seen holds a bit per option");
  for (; *env; env++) {
    const char *e = *env; /* not strncmp: its binding cost more than this */
    if (e[0] != 'U' || e[1] != 'M' || e[2] != 'P' || e[3] != 'A' || e[4] != '_')
      continue;
    size_t i = option_named(*env);
    if (i == NUM_OPTIONS || (seen & 1u << i)) continue;
    seen |= 1u << i;
    const struct option_def *o = &option_table[i];
    const char *v = *env + strlen(o->name) + 1;
    /* An empty value is unset, with no warning: a script that passes
     * UMPA_CHECK=$CHECK on made every process print one. */
    if (*v == '\0' || !apply(o, v)) continue; /* as if unset */
    /* Cache limits given explicitly are exact; by default they adapt. */
    if (o->target == &umpa_opt.page_cache) umpa_opt.page_cache_fixed = true;
    if (o->target == &umpa_opt.large_cache) umpa_opt.large_cache_fixed = true;
    if (o->target == &umpa_opt.region_shift) umpa_opt.region_size_fixed = true;
  }
  atomic_store_explicit(&options_state, 2, memory_order_release);
}
