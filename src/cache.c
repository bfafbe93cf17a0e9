/*
 * cache.c - the lookaside cache: backed pages in free runs.
 *
 * Freed pages keep their memory, so the next request reuses them without
 * a fault or zeroing.  The cache is not a separate store: it is the set of
 * backed pages that sit in the buddy's free runs (counted in
 * umpa_buddy.xbacked_free).  Its size is bounded by a limit; when frees
 * push it over, the trimmer takes runs with memory off the free lists
 * (partly backed ones first, then the smallest fully backed: a big one
 * serves a big request without a fault, a small one costs few faults to
 * refill), releases their memory and puts them back cold.
 *
 * Unless its limit was set explicitly, the cache also decays: what stayed
 * in it through a whole UMPA_DECAY_MS interval (its low-water mark over the
 * interval) was not needed there and goes back to the kernel, the way Go's
 * scavenger and tcmalloc's release judge idle memory.  No background
 * thread: the interval is checked when pages are freed.
 */
#include "internal.h"

static _Atomic size_t limit_pages; /* the maximum (or the exact limit) */
static _Atomic bool limit_fixed;
static _Atomic uint64_t epoch_ns;                 /* start of the interval */
static _Atomic size_t low_water = SIZE_MAX;       /* its fewest cached pages */

void cache_init(void) {
  atomic_store(&limit_pages, umpa_opt.page_cache >> PAGE_SHIFT);
  atomic_store(&limit_fixed, umpa_opt.page_cache_fixed);
  ulock_init(&umpa_locks.cache_trim, LOCK_SPIN);
}

/* The most memory in use seen in the current window and the one before,
 * a window being UMPA_DECAY_MS (50 ms when decay is off). */
static _Atomic size_t live_peak[2];
static _Atomic uint64_t live_window;

/* The memory the program had in use lately, at least what it has now.
 * Seen when a cache asks for its limit, which frees do: the first free
 * after a phase of mallocs sees its peak.  Limits that followed the memory
 * in use at the moment emptied the caches each time a program freed
 * everything it had and then allocated it all again (threadtest with 19
 * MiB of blocks took 295k faults over 100 rounds, mimalloc 8k): the
 * trough of a cycle is when the caches are fullest and the limits were
 * lowest.  Memory nobody takes again still goes back after UMPA_DECAY_MS. */
UMPA_HOT
static size_t live_recent(void) {
  size_t live = pages_live();
  uint64_t win = decay_age_ns();
  if (!win) win = 50 * 1000000ull;
  uint64_t now = now_coarse(),
           start = atomic_load_explicit(&live_window, memory_order_relaxed);
  /* (A window another thread opened after `now` was read is not over.) */
  if (now > start && now - start >= win &&
      atomic_compare_exchange_strong(&live_window, &start, now)) {
    atomic_store_explicit(&live_peak[1], atomic_load(&live_peak[0]),
                          memory_order_relaxed);
    atomic_store_explicit(&live_peak[0], live, memory_order_relaxed);
  } else if (live > atomic_load_explicit(&live_peak[0], memory_order_relaxed)) {
    /* Racing writers may lose a maximum for a window: a limit, no more. */
    atomic_store_explicit(&live_peak[0], live, memory_order_relaxed);
  }
  size_t a = atomic_load_explicit(&live_peak[0], memory_order_relaxed),
         b = atomic_load_explicit(&live_peak[1], memory_order_relaxed);
  size_t peak = a > b ? a : b;
  return peak > live ? peak : live;
}

/* Limits that follow the memory in use (lately) count neither cache's own
 * memory: counting it let them feed each other (sqlite held 14 MiB of
 * large spans and 11 MiB of free runs at exit with 8 MiB in superblocks).
 * Idle memory also decays (UMPA_DECAY_MS), so the large cache can be
 * generous: a ring of random 64 KiB..4 MiB blocks (smallobj mixed) keeps
 * about 0.8x its live data in spans that do not fit the next request; at
 * 1x the limit evicted spans that were then faulted in again (2.1x the
 * faults and a higher peak, as evicted memory sat in the page cache), at
 * half the phase took 6x longer. */
UMPA_HOT
size_t cache_adaptive(size_t max_pages, unsigned halves) {
  size_t v = live_recent() / 2 * halves;
  size_t floor = (size_t)4 << (20 - PAGE_SHIFT);
  if (v < floor) v = floor;
  return v < max_pages ? v : max_pages;
}

/* By default the cache holds at most as much as the memory in use lately
 * (at least 4 MiB, at most UMPA_PAGE_CACHE): a small program does not keep
 * hundreds of MiB it freed, one that frees and allocates again keeps it
 * all.  At half, threadtest's 19 MiB rounds still faulted 82k pages in
 * (mimalloc: 8k) and ran at half speed: the store of empty superblocks
 * takes what this cache leaves of 1.5 times this limit, at most the limit
 * (store_cap), so the two together hold 1.5x, 2x while this cache
 * refills after the store took its share.  A
 * limit set by UMPA_PAGE_CACHE, umpa_page_cache_limit or mallopt is
 * exact. */
UMPA_HOT
size_t cache_limit_pages(void) {
  size_t max = atomic_load_explicit(&limit_pages, memory_order_relaxed);
  if (atomic_load_explicit(&limit_fixed, memory_order_relaxed)) return max;
  return cache_adaptive(max, 2); /* once */
}

UMPA_HOT
size_t cache_limit_max(void) {
  return atomic_load_explicit(&limit_pages, memory_order_relaxed);
}

bool cache_limit_fixed(void) {
  return atomic_load_explicit(&limit_fixed, memory_order_relaxed);
}

UMPA_HOT
size_t cache_held_pages(void) {
  return atomic_load_explicit(&umpa_buddy.xbacked_free, memory_order_relaxed);
}

/* Release up to `want` backed pages of the taken run [idx, idx+len),
 * whole 2 MiB pieces first so that huge pages are not split.  Returns the
 * pages released. */
static size_t release_some(struct region *r, size_t idx, size_t len,
                           size_t want) {
  const size_t hp = (size_t)1 << HUGE_ORDER;
  size_t step = len >= hp ? hp : len;
  size_t released = 0;
  for (size_t off = 0; off < len && released < want; off += step) {
    size_t n = bitmap_count(r->xbacked, idx + off, step);
    if (n == 0) continue;
    page_release_free(r, idx + off, step);
    bitmap_clear(r->xbacked, idx + off, step);
    released += n;
  }
  return released;
}

UMPA_HOT
static size_t shrink(size_t target) {
  size_t released = 0;
  for (;;) {
    size_t cached = cache_held_pages();
    if (cached <= target) break;
    unsigned k;
    struct pmeta *pm = buddy_take_warm(&umpa_buddy, &k);
    if (!pm) break;
    struct region *r = pm->region;
    size_t idx = pmeta_index(pm), backed = pm->count;
    /* The run left the cache count when it was taken. */
    size_t over = cached - target;
    size_t n = release_some(r, idx, (size_t)1 << k, over);
    released += n;
    buddy_free(&umpa_buddy, r, idx, k, backed - n);
  }
  if (released) {
    PC_ADD(xbacked, -released);
    PC_ADD(xreleased, released);
  }
  return released;
}

/* Release the whole pages of [lo, hi) (byte addresses). */
static void release_inner(uintptr_t lo, uintptr_t hi) {
  lo = (lo + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
  hi &= ~(uintptr_t)(PAGE_SIZE - 1);
  if (hi > lo) os_release((void *)lo, hi - lo);
}

/* Release the metadata that describes only pages of free runs: the pmeta
 * entries after a run's head, its bits in the two page bitmaps, its bytes
 * of the large cache's map and its slots in the superblock map.  With
 * every order's lock held nobody can take a listed run, so nobody writes
 * what describes its pages; a write after the locks are dropped faults in
 * a zero page, which reads as "empty" in each of these structures.  Only
 * for full trims: otherwise the metadata of populated data is kept so that
 * cache hits never fault.
 *
 * Only runs without memory: the shrink before this emptied the cache, but
 * a free from another thread may have listed a backed run since (frees
 * take the order locks, not the trimmer's).  Its backed bits are what
 * says its pages hold old data: released, they read as "no memory", and a
 * calloc of the run skipped clearing it (and the next shrink, counting
 * pages the bits no longer showed, never reached its target). */
static void trim_metadata(void) {
  buddy_coalesce(&umpa_buddy); /* bigger runs: more whole pages to give */
  buddy_lock_all();
  for (unsigned k = 0; k <= MAX_ORDER; k++) {
    struct buddy_level *lv = &umpa_buddy.level[k];
    for (int l = 0; l < 2; l++) {
      struct pmeta *list = l ? &lv->warm : &lv->other;
      for (struct pmeta *pm = list->next; pm != list; pm = pm->next) {
        if (pm->count) continue;
        struct region *r = pm->region;
        size_t lo = pmeta_index(pm), hi = lo + ((size_t)1 << k);
        release_inner((uintptr_t)&r->meta[lo + 1], (uintptr_t)&r->meta[hi]);
        size_t per_page = PAGE_SIZE / sizeof(struct pmeta);
        size_t first = lo / per_page + 1, end = hi / per_page;
        if (end > first) bitmap_clear(r->xmeta_backed, first, end - first);
        /* Without memory, the run has every bit clear, its head's too:
         * the bitmap page that holds the head's bit can go. */
        if (lo == 0 && hi == r->npages) {
          /* A wholly free region: the two bitmaps lie end to end and
           * share a page at their seam, which goes too. */
          release_inner((uintptr_t)r->xbacked,
                        (uintptr_t)r->xheads + (hi + 7) / 8);
        } else {
          _Atomic uint64_t *maps[2] = {r->xbacked, r->xheads};
          for (int m = 0; m < 2; m++)
            release_inner((uintptr_t)maps[m] + (lo + 7) / 8,
                          (uintptr_t)maps[m] + hi / 8);
        }
        /* No span ends in a free run: its bytes of the map are all 0. */
        release_inner((uintptr_t)&r->xcached[lo], (uintptr_t)&r->xcached[hi]);
        /* The superblock map's page that holds the head's slot stays: a
         * superblock cut from the region later would fault it in.  A
         * region in the fast map never writes its own. */
        size_t shift = GRANULE_SHIFT - PAGE_SHIFT;
        if (!r->fast_map)
          release_inner((uintptr_t)&r->xsb_map[(lo >> shift) + 1],
                        (uintptr_t)&r->xsb_map[hi >> shift]);
      }
    }
  }
  buddy_unlock_all();
}

size_t cache_shrink_to(size_t target_pages) {
  ulock_acquire(&umpa_locks.cache_trim);
  size_t n = shrink(target_pages);
  if (target_pages == 0) trim_metadata();
  ulock_release(&umpa_locks.cache_trim);
  return n;
}

void cache_trim_metadata(void) {
  ulock_acquire(&umpa_locks.cache_trim);
  trim_metadata();
  ulock_release(&umpa_locks.cache_trim);
}

void cache_note_level(void) {
  size_t c = cache_held_pages();
  if (c < atomic_load_explicit(&low_water, memory_order_relaxed))
    atomic_store_explicit(&low_water, c, memory_order_relaxed);
}

/* At the end of an interval, release what the cache never dipped into. */
static void decay(void) {
  uint64_t age = decay_age_ns();
  if (!age || atomic_load_explicit(&limit_fixed, memory_order_relaxed)) return;
  uint64_t now = now_coarse(), start = atomic_load(&epoch_ns);
  /* (An interval another thread began after `now` was read is not over.) */
  if (!now || now < start || now - start < age ||
      !atomic_compare_exchange_strong(&epoch_ns, &start, now))
    return;
  size_t idle = atomic_exchange(&low_water, cache_held_pages());
  size_t c = cache_held_pages();
  if (start == 0 || idle == SIZE_MAX || idle == 0) return;
  if (idle > c) idle = c;
  if (!ulock_try(&umpa_locks.cache_trim)) return;
  shrink(c - idle);
  ulock_release(&umpa_locks.cache_trim);
}

UMPA_HOT
void cache_enforce(void) {
  decay();
  size_t limit = cache_limit_pages();
  if (UMPA_LIKELY(cache_held_pages() <= limit)) return;
  /* One trimmer at a time; the others carry on, it will catch up. */
  if (!ulock_try(&umpa_locks.cache_trim)) return;
  shrink(limit);
  ulock_release(&umpa_locks.cache_trim);
}

UMPA_FORK
void cache_lock(void) { ulock_acquire_fork(&umpa_locks.cache_trim); }
UMPA_FORK
void cache_unlock(void) { ulock_release_fork(&umpa_locks.cache_trim); }

size_t umpa_page_trim(int severity) {
  page_init();
  size_t limit = cache_limit_pages();
  size_t target = severity <= 0 ? limit
                  : severity == 1 ? limit / 2
                  : severity == 2 ? limit / 8
                                  : 0;
  return cache_shrink_to(target) << PAGE_SHIFT;
}

/* The previous limit comes back as UMPA_PAGE_CACHE_ADAPTIVE when it
 * adapted: returned as the figure of that moment, a caller that restored
 * it fixed the limit there for good, at 4 MiB if the program was between
 * phases (test_phase_spill then found a quarter of its phase stored).
 * Two callers racing may see each other's settings half made: the limit
 * and its kind are two words, as the options that set them are. */
size_t umpa_page_cache_limit(size_t bytes) {
  page_init();
  bool was_fixed = atomic_load(&limit_fixed);
  size_t old = atomic_load(&limit_pages);
  if (bytes == UMPA_PAGE_CACHE_ADAPTIVE) {
    atomic_store(&limit_pages, umpa_opt.page_cache >> PAGE_SHIFT);
    atomic_store(&limit_fixed, false);
  } else {
    atomic_store(&limit_pages, bytes >> PAGE_SHIFT);
    atomic_store(&limit_fixed, true);
  }
  cache_enforce();
  return was_fixed ? old << PAGE_SHIFT : UMPA_PAGE_CACHE_ADAPTIVE;
}

void umpa_page_prefill(size_t bytes) {
  page_init();
  size_t want = pages_of(bytes), limit = cache_limit_pages();
  if (want > limit) want = limit;
  /* Allocate (warm runs first, then fresh populated ones) until `want`
   * pages are held, then free them all: the cache then holds them.  The
   * blocks are chained through their own first word. */
  const size_t chunk_max = (size_t)1 << (umpa_opt.region_shift - PAGE_SHIFT);
  void *chain = NULL;
  size_t held = 0;
  while (held < want) {
    size_t n = want - held < chunk_max ? want - held : chunk_max;
    void **blk = page_alloc(n, 0, KIND_PAGE);
    if (!blk) break;
    blk[0] = chain;
    blk[1] = (void *)n;
    chain = blk;
    held += n;
  }
  while (chain) {
    void **blk = chain;
    chain = blk[0];
    page_free(blk, (size_t)blk[1], KIND_PAGE, "umpa_page_prefill");
  }
}
