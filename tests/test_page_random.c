/*
 * test_page_random.c - long random sequences of every page-layer operation,
 * with the buddy structure and the accounting verified by umpa_page_check()
 * along the way and every block's contents verified before it is freed.
 * Ends with the resident-memory bound: RSS within 10% of (bytes in use +
 * cache limit).
 */
#include "check.h"

#include <stdio.h>
#include "internal.h"

#include <string.h>
#include <unistd.h>

#define SLOTS 256
#define PG ((size_t)UMPA_PAGE_SIZE)

struct slot {
  unsigned char *p;
  size_t pages;
  unsigned seed;
  bool lazy; /* contents only where written */
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { return xorshift64(&rng_state); }

/* Mostly small blocks, some up to 2 MiB, rarely up to 16 MiB. */
static size_t random_pages(void) {
  uint64_t r = rnd() % 100;
  if (r < 60) return 1 + rnd() % 16;
  if (r < 98) return 1 + rnd() % 512;
  return 1 + rnd() % 4096;
}

/* One word per page is enough to catch a page in the wrong place. */
static void stamp(struct slot *s) {
  for (size_t i = 0; i < s->pages; i++)
    memcpy(s->p + i * PG + (i % 64) * 8, &(uint64_t){s->seed * 1000003ull + i},
           8);
}

static bool stamped(const struct slot *s) {
  for (size_t i = 0; i < s->pages; i++) {
    uint64_t v;
    memcpy(&v, s->p + i * PG + (i % 64) * 8, 8);
    if (v != s->seed * 1000003ull + i) return false;
  }
  return true;
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Lines of /proc/self/maps: the process's mappings (VMAs). */
static long vma_count(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  long n = 0;
  for (int c; (c = fgetc(f)) != EOF;) n += c == '\n';
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  long ops = argc > 1 ? atol(argv[1]) : test_scaled(20000);
  long start_vmas = vma_count(), max_vmas = start_vmas;
  struct slot slots[SLOTS] = {{0}};
  unsigned next_seed = 1;
  size_t limit = (size_t)64 << 20;
  umpa_page_cache_limit(limit);
  for (long op = 0; op < ops; op++) {
    struct slot *s = &slots[rnd() % SLOTS];
    unsigned what = (unsigned)(rnd() % 100);
    if (!s->p) {
      s->pages = random_pages();
      unsigned flags = what < 10 ? UMPA_LAZY : what < 15 ? UMPA_ZERO : 0;
      s->p = userpage_malloc(s->pages * PG, flags);
      REQUIRE(s->p);
      s->seed = next_seed++;
      s->lazy = (flags & UMPA_LAZY) != 0;
      stamp(s);
    } else if (what < 40) {
      CHECK_MSG(stamped(s), "block %p of %zu pages corrupted", (void *)s->p,
                s->pages);
      userpage_free(s->p, s->pages * PG);
      s->p = NULL;
    } else if (what < 70) {
      CHECK(stamped(s));
      size_t np = random_pages();
      unsigned flags = what < 50 ? UMPA_NOMOVE : 0;
      unsigned char *q = userpage_realloc(s->p, s->pages * PG, np * PG, flags);
      if (q) {
        size_t keep = np < s->pages ? np : s->pages;
        s->p = q;
        s->pages = keep;
        CHECK(stamped(s));
        s->pages = np;
        stamp(s);
      } else {
        CHECK(flags & UMPA_NOMOVE);
        CHECK(stamped(s));
      }
    } else if (what < 80) {
      struct slot *t = &slots[rnd() % SLOTS];
      if (t->p && t != s) {
        size_t n = s->pages < t->pages ? s->pages : t->pages;
        /* Swap the leading n pages; then re-stamp both fully. */
        CHECK(umpa_page_swap(s->p, t->p, n * PG) == 0);
        stamp(s);
        stamp(t);
      }
    } else if (what < 85) {
      size_t off = rnd() % s->pages, n = 1 + rnd() % (s->pages - off);
      CHECK(userpage_release(s->p + off * PG, n * PG) == 0);
      CHECK(userpage_commit(s->p + off * PG, n * PG) == 0);
      stamp(s);
    } else if (what < 87) {
      umpa_page_trim((int)(rnd() % 4));
    } else if (what < 88) {
      limit = ((size_t)1 << 20) << (rnd() % 8); /* 1..128 MiB */
      umpa_page_cache_limit(limit);
    }
    if (op % 2000 == 0) umpa_page_check();
    if (op % 500 == 0) {
      long v = vma_count();
      if (v > max_vmas) max_vmas = v;
    }
  }
  umpa_page_check();
  /* Moves split mappings; sources are remapped and pieces are at least
   * 2 MiB, so the count stays small instead of growing toward the
   * kernel's vm.max_map_count (65530), where mmap and mremap fail. */
  fprintf(stderr, "most mappings at once: %ld (at start %ld)\n", max_vmas,
          start_vmas);
  CHECK_MSG(max_vmas < start_vmas + 512, "%ld mappings", max_vmas);

  /* The resident-memory bound, with a fixed limit and the cache full. */
  limit = (size_t)64 << 20;
  umpa_page_cache_limit(limit);
  struct umpa_page_stats st;
  umpa_page_stats(&st);
  size_t rss = rss_bytes();
  size_t bound = st.in_use + limit;
  /* The program itself (binary, libc, stack, metadata) is a few MiB. */
  size_t slack = st.metadata / 8 + ((size_t)8 << 20);
  fprintf(stderr, "allocs %llu hits %llu misses %llu populated %llu released %llu remaps %llu\n",
          (unsigned long long)st.allocs, (unsigned long long)st.cache_hits,
          (unsigned long long)st.cache_misses,
          (unsigned long long)st.pages_populated,
          (unsigned long long)st.pages_released, (unsigned long long)st.remaps);
  fprintf(stderr, "rss %zu MiB, in use %zu MiB, cached %zu MiB, limit %zu MiB\n",
          rss >> 20, st.in_use >> 20, st.cached >> 20, limit >> 20);
  CHECK_MSG(rss <= bound + bound / 10 + slack, "rss %zu > 1.1 * %zu + %zu", rss,
            bound, slack);
  CHECK(st.cached <= limit);

  for (int i = 0; i < SLOTS; i++)
    if (slots[i].p) {
      CHECK(stamped(&slots[i]));
      userpage_free(slots[i].p, slots[i].pages * PG);
    }
  umpa_page_check();
  umpa_page_stats(&st);
  CHECK(st.in_use == 0);
  umpa_page_trim(3);
  umpa_page_stats(&st);
  CHECK(st.cached == 0 && st.committed == 0);
  umpa_page_check();
  return check_done("test_page_random");
}
