/*
 * check.c - a full consistency check of the page layer, for tests.
 *
 * With every lock held it walks each region run by run and verifies that
 * the runs tile the region exactly (no overlap, no lost page), that free
 * runs are aligned, fully merged and on the right list, that interior
 * metadata is clear, and that every counter adds up.
 */
#include "internal.h"

#define FAIL(...) umpa_fatal("umpa_page_check: " __VA_ARGS__)

/* Length of one of order k's lists; every run on it must be free at
 * order k and, on the warm list, fully backed (elsewhere not). */
static size_t list_length(struct pmeta *list, unsigned k, bool warm) {
  size_t n = 0;
  for (struct pmeta *pm = list->next; pm != list; pm = pm->next) {
    if (atomic_load(&pm->xtag) != PM_TAG(PM_FREE, k))
      FAIL("run on order %u list has tag %u\n", k,
           (unsigned)atomic_load(&pm->xtag));
    if (pm->next->prev != pm) FAIL("broken list links at order %u\n", k);
    if ((pm->count == ((uint32_t)1 << k)) != warm)
      FAIL("run with %u backed pages on the wrong list of order %u\n",
           pm->count, k);
    n++;
  }
  return n;
}

static void check_interior(struct region *r, size_t head, size_t len) {
  for (size_t i = head + 1; i < head + len; i++) {
    if (atomic_load(&r->meta[i].xtag) != PM_TAG(PM_NONE, 0))
      FAIL("page %zu inside run at %zu of region %p has a head tag\n", i,
           head, (void *)r->base);
  }
  if (bitmap_find(r->xheads, head + 1, len - 1, true) != head + len)
    FAIL("head bit set inside run at %zu\n", head);
}

int umpa_page_check(void) {
  page_init();
  largecache_lock_all(); /* before the buddy's locks, as fork takes them */
  buddy_lock_all();
  size_t free_runs[MAX_ORDER + 1] = {0};
  size_t used_pages = 0, cached = 0, backed = 0;
  for (struct region *r = region_list(); r; r = r->next) {
    backed += bitmap_count(r->xbacked, 0, r->mapped);
    for (size_t i = 0; i < r->mapped;) {
      struct pmeta *pm = &r->meta[i];
      uint8_t tag = atomic_load(&pm->xtag);
      size_t len;
      switch (PM_STATE(tag)) {
        case PM_FREE: {
          unsigned k = PM_ORDER(tag);
          len = (size_t)1 << k;
          if (k > r->order || (i & (len - 1)))
            FAIL("free run at %zu of order %u misaligned\n", i, k);
          if (i + len > r->mapped)
            FAIL("free run at %zu of order %u passes the region's end\n", i,
                 k);
          if (pm->region != r) FAIL("free run at %zu: wrong region\n", i);
          if (pm->count != bitmap_count(r->xbacked, i, len))
            FAIL("free run at %zu: backed count %u, bitmap says %zu\n", i,
                 pm->count, bitmap_count(r->xbacked, i, len));
          if (bitmap_test(r->xheads, i))
            FAIL("free run at %zu has its head bit set\n", i);
          /* Below 2 MiB coalescing is lazy: buddies may stay apart. */
          if (k < r->order && k >= HUGE_ORDER &&
              atomic_load(&r->meta[i ^ len].xtag) == PM_TAG(PM_FREE, k))
            FAIL("free buddies at %zu and %zu of order %u not merged\n", i,
                 i ^ len, k);
          free_runs[k]++;
          cached += pm->count;
          break;
        }
        case PM_USED:
          len = pm->count;
          if (len == 0 || i + len > r->mapped)
            FAIL("block at %zu has bad size %zu\n", i, len);
          if (!bitmap_test(r->xheads, i))
            FAIL("block at %zu lacks its head bit\n", i);
          if ((pm->flags & PMF_FULL) &&
              bitmap_count(r->xbacked, i, len) != len)
            FAIL("block at %zu marked full but not all backed\n", i);
          /* A cached span is marked at both ends (largecache.c), with
           * its arena, and nowhere inside. */
          uint8_t mark = atomic_load(&r->xcached[i]);
          if (mark && (atomic_load(&r->xcached[i + len - 1]) != mark ||
                       r->meta[i + len - 1].count != len))
            FAIL("cached span at %zu lacks its end mark\n", i);
          if (mark &&
              largecache_listed_backed(pm) != bitmap_count(r->xbacked, i, len))
            FAIL("cached span at %zu listed with %zu pages of memory, bitmap "
                 "says %zu\n", i, largecache_listed_backed(pm),
                 bitmap_count(r->xbacked, i, len));
          size_t marks = 0;
          for (size_t k = i; k < i + len; k++) marks += r->xcached[k] != 0;
          if (marks != (mark ? (len > 1 ? 2u : 1u) : 0u))
            FAIL("block at %zu has cached marks inside\n", i);
          used_pages += len;
          break;
        default:
          FAIL("page %zu of region %p is neither free nor allocated "
               "(tag %u)\n", i, (void *)r->base, (unsigned)tag);
      }
      check_interior(r, i, len);
      i += len;
    }
  }
  for (unsigned k = 0; k <= MAX_ORDER; k++) {
    struct buddy_level *lv = &umpa_buddy.level[k];
    size_t warm = list_length(&lv->warm, k, true);
    size_t n = warm + list_length(&lv->other, k, false);
    if (n != free_runs[k] || n != atomic_load(&lv->xfree_runs) ||
        warm != atomic_load(&lv->xwarm_runs))
      FAIL("order %u: %zu runs listed (%zu warm), %zu found, counters %zu "
           "(%zu warm)\n", k, n, warm, free_runs[k],
           (size_t)atomic_load(&lv->xfree_runs),
           (size_t)atomic_load(&lv->xwarm_runs));
    uint32_t bit = (uint32_t)1 << k;
    if (!(atomic_load(&umpa_buddy.xfree_orders) & bit) != !n ||
        !(atomic_load(&umpa_buddy.xwarm_orders) & bit) != !warm)
      FAIL("order %u: %zu runs (%zu warm), but the order masks say %s "
           "free, %s warm\n", k, n, warm,
           atomic_load(&umpa_buddy.xfree_orders) & bit ? "some" : "none",
           atomic_load(&umpa_buddy.xwarm_orders) & bit ? "some" : "none");
  }
  if (used_pages != atomic_load(&umpa_pc.xin_use))
    FAIL("pages in blocks %zu, counter says %zu\n", used_pages,
         atomic_load(&umpa_pc.xin_use));
  if (cached != atomic_load(&umpa_buddy.xbacked_free))
    FAIL("cached pages %zu, counter says %zu\n", cached,
         atomic_load(&umpa_buddy.xbacked_free));
  if (backed != atomic_load(&umpa_pc.xbacked))
    FAIL("backed pages %zu, counter says %zu\n", backed,
         atomic_load(&umpa_pc.xbacked));
  buddy_unlock_all();
  largecache_unlock_all();
  return 0;
}
