/*
 * stats.c - umpa_page_stats: a snapshot of the page layer's figures.
 */
#include "internal.h"

#include <string.h>

static uint64_t load(_Atomic uint64_t *x) {
  return atomic_load_explicit(x, memory_order_relaxed);
}

void umpa_page_stats(struct umpa_page_stats *out) {
  page_init();
  memset(out, 0, sizeof *out);
  out->reserved = region_reserved_bytes();
  out->metadata = region_metadata_bytes();
  out->committed = atomic_load(&umpa_pc.xbacked) << PAGE_SHIFT;
  out->in_use = atomic_load(&umpa_pc.xin_use) << PAGE_SHIFT;
  out->cached = atomic_load(&umpa_buddy.xbacked_free) << PAGE_SHIFT;
  /* A page populated after `committed` was read and freed before this read
   * counts in `cached` only: the cache holds nearly all committed memory
   * when a program has freed most of it, and a snapshot must not show
   * more cached than committed. */
  if (out->cached > out->committed) out->cached = out->committed;
  out->cache_limit = cache_limit_pages() << PAGE_SHIFT;
  out->allocs = load(&umpa_pc.xallocs);
  out->frees = load(&umpa_pc.xfrees);
  out->cache_hits = load(&umpa_pc.xhits);
  out->cache_misses = load(&umpa_pc.xmisses);
  out->pages_populated = load(&umpa_pc.xpopulated);
  out->page_faults = load(&umpa_pc.xfaults);
  out->pages_released = load(&umpa_pc.xreleased);
  out->pages_cleared = load(&umpa_pc.xcleared);
  out->remaps = load(&umpa_pc.xremaps);
  out->pages_remapped = load(&umpa_pc.xpages_remapped);
  out->realloc_in_place = load(&umpa_pc.xgrow_in_place);
  out->realloc_moved = load(&umpa_pc.xgrow_moved);
  out->copies = load(&umpa_pc.xcopies);
  out->regions = region_count();
  out->lock_kind = (unsigned)umpa_locks.order[0].lock.kind;
  out->max_order = atomic_load(&umpa_buddy.xmax_order);
  for (unsigned k = 0; k < UMPA_PAGE_ORDERS; k++) {
    struct buddy_level *lv = &umpa_buddy.level[k];
    struct umpa_order_stats *o = &out->order[k];
    o->free_runs = load(&lv->xfree_runs);
    o->lock_acquires = load(&umpa_locks.order[k].lock.xacquires);
    o->lock_waits = load(&umpa_locks.order[k].lock.xwaits);
    o->waiters_max = atomic_load_explicit(
        &umpa_locks.order[k].lock.xwaiters_max, memory_order_relaxed);
    o->splits = load(&lv->xsplits);
    o->merges = load(&lv->xmerges);
  }
}
