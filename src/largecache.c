/*
 * largecache.c - freed large malloc blocks, kept as spans and reused best
 * fit: tcmalloc's page heap over the page layer's blocks.
 *
 * The page layer hands out runs of 2^k pages and gives back what a request
 * does not need, so a freed 5 MiB block becomes a 4 MiB and a 1 MiB run,
 * and the next 6 MiB request needs a free, backed, aligned 8 MiB run, which
 * a busy heap rarely has: populating one costs a fault per page.  Here a
 * freed large block stays a block ("span"), merged with the cached spans
 * and the backed free runs on either side of it; a request takes the
 * smallest span that fits and the surplus becomes a span of its own.  A
 * request that fits is served with no system call and no fault.
 *
 * Spans are listed by size class (four per power of two), most recently
 * freed first; the list node lives in the span's first bytes, which are
 * backed (only fully backed blocks are cached).  A span's head is marked
 * in its region's `xcached` bitmap, changed only under the cache's lock,
 * so a neighbour is recognised without reading another thread's block.
 * One lock: large requests are rare next to small ones, and each one costs
 * page-layer work anyway.  The cache is bounded (UMPA_LARGE_CACHE); past
 * it, the oldest spans of the largest classes go back to the page layer,
 * whose own cache limit then applies.
 */
#include "internal.h"

#define LC_MIN_PAGES 8                 /* 32 KiB: smaller are superblocks */
#define LC_MAX_PAGES ((size_t)1 << 14) /* 64 MiB: bigger go straight back */
#define LC_CLASSES 48

struct lc_node {
  struct lc_node *next, *prev;         /* its class list */
  struct lc_node *lru_next, *lru_prev; /* all spans, most recent first */
};

static ulock_t lc_lock;
static struct lc_node lc_list[LC_CLASSES]; /* sentinels, most recent first */
static struct lc_node lc_lru;              /* sentinel */
static size_t lc_count[LC_CLASSES];
static _Atomic size_t lc_pages; /* written under lc_lock */
static bool lc_ready;

static unsigned class_of(size_t pages) {
  unsigned k = log2_floor(pages); /* pages >= 8: k >= 3 */
  unsigned quarter = (unsigned)((pages >> (k - 2)) & 3);
  unsigned c = (k - 3) * 4 + quarter;
  return c < LC_CLASSES ? c : LC_CLASSES - 1;
}

static struct pmeta *head_of(void *p) {
  struct region *r = region_of(p);
  return &r->meta[region_index(r, p)];
}

static void *addr_of(struct pmeta *pm) {
  return region_addr(pm->region, pmeta_index(pm));
}

/* List a span (lc_lock held); `recent` puts it first in LRU order, else
 * it keeps the LRU place its node already has. */
static void list_span(struct pmeta *pm, bool recent) {
  if (!lc_ready) {
    for (unsigned c = 0; c < LC_CLASSES; c++)
      lc_list[c].next = lc_list[c].prev = &lc_list[c];
    lc_lru.lru_next = lc_lru.lru_prev = &lc_lru;
    lc_ready = true;
  }
  unsigned c = class_of(pm->count);
  struct lc_node *n = addr_of(pm);
  n->prev = &lc_list[c];
  n->next = lc_list[c].next;
  lc_list[c].next->prev = n;
  lc_list[c].next = n;
  lc_count[c]++;
  if (recent) {
    n->lru_prev = &lc_lru;
    n->lru_next = lc_lru.lru_next;
    lc_lru.lru_next->lru_prev = n;
    lc_lru.lru_next = n;
  }
  pm->flags |= PMF_CACHED;
  bitmap_set(pm->region->xcached, pmeta_index(pm), 1);
  atomic_store_explicit(&lc_pages, atomic_load(&lc_pages) + pm->count,
                        memory_order_relaxed);
}

/* Take a listed span off its lists (lc_lock held); `keep_lru` leaves its
 * LRU place to a span that is listed again at once. */
static void unlist_span(struct pmeta *pm, bool keep_lru) {
  struct lc_node *n = addr_of(pm);
  n->prev->next = n->next;
  n->next->prev = n->prev;
  if (!keep_lru) {
    n->lru_prev->lru_next = n->lru_next;
    n->lru_next->lru_prev = n->lru_prev;
  }
  lc_count[class_of(pm->count)]--;
  pm->flags &= (uint8_t)~PMF_CACHED;
  bitmap_clear(pm->region->xcached, pmeta_index(pm), 1);
  atomic_store_explicit(&lc_pages, atomic_load(&lc_pages) - pm->count,
                        memory_order_relaxed);
}

/* Merge the block pm with cached spans and backed free runs around it;
 * returns the head of the result (lc_lock held). */
static struct pmeta *coalesce(struct pmeta *pm) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  /* Backwards: the span ending right before idx. */
  if (idx > 0) {
    size_t h = bitmap_find_last_set(r->xheads, idx - 1);
    if (h != SIZE_MAX && bitmap_test(r->xcached, h) &&
        h + r->meta[h].count == idx &&
        r->meta[h].count + pm->count <= LC_MAX_PAGES) {
      struct pmeta *prev = &r->meta[h];
      unlist_span(prev, false);
      page_join(prev, pm);
      pm = prev;
      idx = h;
    }
  }
  /* Forwards: a cached span, then free runs that are fully backed. */
  size_t next = idx + pm->count;
  if (next < r->npages && bitmap_test(r->xcached, next) &&
      pm->count + r->meta[next].count <= LC_MAX_PAGES) {
    struct pmeta *nx = &r->meta[next];
    unlist_span(nx, false);
    page_join(pm, nx);
  }
  size_t got = 0, more;
  while (pm->count + got < LC_MAX_PAGES &&
         (more = buddy_claim_warm(&umpa_buddy, r, idx + pm->count + got)))
    got += more;
  if (got) {
    pm->count += (uint32_t)got;
    PC_ADD(xin_use, got);
    heap_account_arena((ssize_t)(got << PAGE_SHIFT));
  }
  return pm;
}

/* Give up to `excess` pages back to the page layer, from the span freed
 * longest ago: its tail if it is bigger than that, else all of it
 * (lc_lock held).  Returns the pages given back. */
static size_t evict(size_t excess) {
  if (!lc_ready || lc_lru.lru_prev == &lc_lru) return 0;
  struct lc_node *n = lc_lru.lru_prev;
  struct pmeta *pm = head_of(n);
  size_t pages = pm->count;
  if (pages >= excess + LC_MIN_PAGES) {
    /* Keep the front listed (in its LRU place), free the tail. */
    unlist_span(pm, true);
    struct pmeta *tail = page_split(pm, pages - excess);
    list_span(pm, false);
    page_free(addr_of(tail), excess, KIND_LARGE, "free");
    pages = excess;
  } else {
    unlist_span(pm, false);
    page_free(n, pages, KIND_LARGE, "free");
  }
  heap_account_arena(-(ssize_t)(pages << PAGE_SHIFT));
  return pages;
}

bool largecache_put(void *p, struct pmeta *pm) {
  size_t pages = pm->count;
  size_t limit = umpa_opt.large_cache >> PAGE_SHIFT;
  if (!umpa_opt.large_cache_fixed)
    limit = cache_adaptive(
        limit, atomic_load_explicit(&umpa_pc.xin_use, memory_order_relaxed));
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES || pages > limit ||
      !(pm->flags & PMF_FULL) || pm->user_offset != 0)
    return false;
  (void)p;
  ulock_acquire(&lc_lock);
  list_span(coalesce(pm), true);
  size_t cached;
  while ((cached = atomic_load_explicit(&lc_pages, memory_order_relaxed)) >
             limit &&
         evict(cached - limit)) {
  }
  ulock_release(&lc_lock);
  return true;
}

void *largecache_take(size_t pages) {
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES ||
      atomic_load_explicit(&lc_pages, memory_order_relaxed) < pages)
    return NULL;
  ulock_acquire(&lc_lock);
  /* The smallest class that can hold the request: in its own class only
   * spans at least as big fit (look at a few: each look is a cache miss),
   * in the classes above the first one does. */
  struct pmeta *pm = NULL;
  unsigned first = class_of(pages);
  for (unsigned c = first; c < LC_CLASSES && !pm && lc_ready; c++) {
    int looks = c == first ? 4 : 1;
    for (struct lc_node *n = lc_list[c].next; n != &lc_list[c] && looks--;
         n = n->next) {
      struct pmeta *cand = head_of(n);
      if (cand->count >= pages) {
        pm = cand;
        break;
      }
    }
  }
  if (!pm) {
    ulock_release(&lc_lock);
    return NULL;
  }
  unlist_span(pm, false);
  size_t surplus = pm->count - pages;
  if (surplus >= LC_MIN_PAGES) {
    list_span(page_split(pm, pages), true);
  } else if (surplus) {
    /* Too small to keep as a span: back to the page layer, backed. */
    struct region *r = pm->region;
    size_t tail = pmeta_index(pm) + pages;
    pm->count = (uint32_t)pages;
    PC_ADD(xin_use, -surplus);
    buddy_free_range(&umpa_buddy, r, tail, surplus, true);
    heap_account_arena(-(ssize_t)(surplus << PAGE_SHIFT));
  }
  ulock_release(&lc_lock);
  return addr_of(pm);
}

size_t largecache_flush(void) {
  size_t released = 0;
  ulock_acquire(&lc_lock);
  size_t cached;
  while ((cached = atomic_load_explicit(&lc_pages, memory_order_relaxed)) != 0) {
    size_t n = evict(cached);
    if (!n) break;
    released += n;
  }
  ulock_release(&lc_lock);
  cache_enforce();
  return released << PAGE_SHIFT;
}

size_t largecache_bytes(void) {
  return atomic_load_explicit(&lc_pages, memory_order_relaxed) << PAGE_SHIFT;
}

void largecache_lock_all(void) { ulock_acquire(&lc_lock); }
void largecache_unlock_all(void) { ulock_release(&lc_lock); }
