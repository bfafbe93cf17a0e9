/*
 * test_mt_page_stress.c - threads allocate, free, realloc, swap, commit and
 * release page blocks at once, hand blocks to each other through a shared
 * mailbox (so blocks are freed by threads that did not allocate them), and
 * verify every block's contents; a trimmer thread shrinks the cache and
 * reads statistics meanwhile.  The buddy structure is checked at the end.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define PG ((size_t)UMPA_PAGE_SIZE)
#define THREADS 4
#define SLOTS 64
#define MAILBOX 32

struct header {
  size_t pages;
  uint64_t seed;
};

/* Page i holds a word derived from the seed; page 0 also holds the header
 * at offset 2048 so a receiving thread knows the block's size. */
static void stamp(unsigned char *p, size_t pages, uint64_t seed) {
  for (size_t i = 0; i < pages; i++) {
    uint64_t v = seed * 0x9E3779B97F4A7C15ull + i;
    memcpy(p + i * PG + (i % 32) * 8, &v, 8);
  }
  struct header h = {pages, seed};
  memcpy(p + 2048, &h, sizeof h);
}

static bool intact(const unsigned char *p, size_t pages, uint64_t seed) {
  struct header h;
  memcpy(&h, p + 2048, sizeof h);
  if (h.pages != pages || h.seed != seed) return false;
  for (size_t i = 0; i < pages; i++) {
    uint64_t v;
    memcpy(&v, p + i * PG + (i % 32) * 8, 8);
    if (v != seed * 0x9E3779B97F4A7C15ull + i) return false;
  }
  return true;
}

static _Atomic(unsigned char *) mailbox[MAILBOX];
static _Atomic int failures;
static _Atomic int running;
static long iterations = 6000;

struct slot {
  unsigned char *p;
  size_t pages;
  uint64_t seed;
};

static size_t random_pages(uint64_t *r) {
  uint64_t x = xorshift64(r) % 100;
  return x < 70 ? 1 + *r / 100 % 8 : x < 97 ? 1 + *r / 100 % 256
                                            : 1 + *r / 100 % 2048;
}

static void fail(const char *what) {
  fprintf(stderr, "thread check failed: %s\n", what);
  atomic_fetch_add(&failures, 1);
}

static void *worker(void *arg) {
  uint64_t r = 0x1234567ull * (uintptr_t)arg + 1, seed = (uintptr_t)arg << 40;
  struct slot slots[SLOTS] = {{0}};
  for (long it = 0; it < iterations; it++) {
    uint64_t pick = random_pages(&r);
    struct slot *s = &slots[pick % SLOTS];
    unsigned what = (unsigned)(r % 100);
    if (!s->p) {
      s->pages = random_pages(&r);
      s->p = userpage_malloc(s->pages * PG, what < 10 ? UMPA_ZERO : 0);
      if (!s->p) {
        fail("malloc");
        continue;
      }
      s->seed = ++seed;
      stamp(s->p, s->pages, s->seed);
    } else if (what < 30) {
      if (!intact(s->p, s->pages, s->seed)) fail("contents before free");
      userpage_free(s->p, s->pages * PG);
      s->p = NULL;
    } else if (what < 50) {
      /* Hand the block to whichever thread looks next; free what was
       * left there by someone else. */
      unsigned char *got = atomic_exchange(&mailbox[r % MAILBOX], s->p);
      s->p = NULL;
      if (got) {
        struct header h;
        memcpy(&h, got + 2048, sizeof h);
        if (!intact(got, h.pages, h.seed)) fail("contents of a received block");
        userpage_free(got, h.pages * PG);
      }
    } else if (what < 75) {
      size_t np = random_pages(&r);
      unsigned char *q = userpage_realloc(s->p, s->pages * PG, np * PG,
                                          what < 60 ? UMPA_NOMOVE : 0);
      if (q) {
        size_t keep = np < s->pages ? np : s->pages;
        for (size_t i = 1; i < keep; i++) {
          uint64_t v;
          memcpy(&v, q + i * PG + (i % 32) * 8, 8);
          if (v != s->seed * 0x9E3779B97F4A7C15ull + i) {
            fail("contents after realloc");
            break;
          }
        }
        s->p = q;
        s->pages = np;
        stamp(s->p, s->pages, s->seed);
      } else if (what >= 60) {
        fail("realloc");
      }
    } else if (what < 85) {
      struct slot *t = &slots[(pick + 1) % SLOTS];
      if (t->p) {
        size_t n = s->pages < t->pages ? s->pages : t->pages;
        if (umpa_page_swap(s->p, t->p, n * PG) != 0) fail("swap");
        /* After the swap each holds the other's leading pages. */
        uint64_t v;
        memcpy(&v, s->p, 8);
        if (v != t->seed * 0x9E3779B97F4A7C15ull) fail("swap contents");
        stamp(s->p, s->pages, s->seed);
        stamp(t->p, t->pages, t->seed);
      }
    } else {
      size_t off = r / 7 % s->pages, n = 1 + r / 11 % (s->pages - off);
      if (userpage_release(s->p + off * PG, n * PG) != 0) fail("release");
      if (userpage_commit(s->p + off * PG, n * PG) != 0) fail("commit");
      stamp(s->p, s->pages, s->seed);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].p) {
      if (!intact(slots[i].p, slots[i].pages, slots[i].seed)) fail("final");
      userpage_free(slots[i].p, slots[i].pages * PG);
    }
  return NULL;
}

static void *trimmer(void *arg) {
  (void)arg;
  int n = 0;
  while (atomic_load(&running)) {
    struct umpa_page_stats st;
    umpa_page_stats(&st);
    if (st.committed < st.cached) fail("stats: committed < cached");
    umpa_page_trim(n++ % 4);
    if (n % 16 == 0) umpa_page_cache_limit(((size_t)1 << 20) << (n % 7));
  }
  return NULL;
}

int main(int argc, char **argv) {
  iterations = argc > 1 ? atol(argv[1]) : test_scaled(iterations);
  pthread_t th[THREADS], tr;
  atomic_store(&running, 1);
  REQUIRE(pthread_create(&tr, NULL, trimmer, NULL) == 0);
  for (uintptr_t i = 0; i < THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, worker, (void *)(i + 1)) == 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  atomic_store(&running, 0);
  pthread_join(tr, NULL);
  for (int i = 0; i < MAILBOX; i++) {
    unsigned char *got = atomic_exchange(&mailbox[i], NULL);
    if (got) {
      struct header h;
      memcpy(&h, got + 2048, sizeof h);
      CHECK(intact(got, h.pages, h.seed));
      userpage_free(got, h.pages * PG);
    }
  }
  CHECK(atomic_load(&failures) == 0);
  umpa_page_check();
  struct umpa_page_stats st;
  umpa_page_stats(&st);
  CHECK(st.in_use == 0);
  uint64_t waits = 0, max_waiters = 0;
  for (int k = 0; k < UMPA_PAGE_ORDERS; k++) {
    waits += st.order[k].lock_waits;
    if (st.order[k].waiters_max > max_waiters)
      max_waiters = st.order[k].waiters_max;
  }
  fprintf(stderr, "allocs %llu, lock waits %llu, most waiters at once %llu\n",
          (unsigned long long)st.allocs, (unsigned long long)waits,
          (unsigned long long)max_waiters);
  return check_done("test_mt_page_stress");
}
