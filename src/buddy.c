/*
 * buddy.c - the parallel binary buddy system under the page layer.
 *
 * Runs of 2^k pages sit on free lists per order k, each order with its own
 * lock, so requests of different sizes do not contend (Johnson and Davis's
 * design, the one the parallel-buddy seed builds on).  A thread holds one
 * order lock at a time, except when merging upwards (order k, then k+1):
 * a split takes a run from order k+1 and then lists its upper half at order
 * k; a merge takes the buddy from order k and then lists the pair at order
 * k+1.  Between those steps the run is "in flight": its head says PM_BUSY,
 * so no other thread can take or merge it.
 *
 * Invariant that makes this safe: a head entry changes to or from
 * PM_TAG(PM_FREE, k) only while the order-k lock is held.  So a thread
 * holding that lock can trust "my buddy is free at order k".
 *
 * Each free run knows how many of its pages are backed (`count`).  Each
 * order has two lists: `warm` holds fully backed runs; `other` holds
 * partly backed runs in front and cold runs at the back.  Ordinary requests
 * take the smallest fully backed run of sufficient order first, so the
 * cache serves them without a fault even when a cold run of the exact order
 * exists; lazy/reserve requests take cold runs from the back.
 *
 * Coalescing is lazy below 2 MiB (Barkley and Lee's lazy buddy): while an
 * order holds fewer than LAZY_RUNS free runs, a freed run is listed as it
 * is, without looking for its buddy.  Otherwise a program that allocates
 * and frees one page out of a fresh 1 GiB region would split 18 times and
 * merge 18 times per pair of calls.  What lazy frees leave unmerged is
 * bounded (LAZY_RUNS runs per order) and is merged by buddy_coalesce()
 * before the layer reserves more address space or when a request could be
 * served warm after merging.
 */
#include "internal.h"

struct buddy umpa_buddy;

/* Order k's lock: on the page of locks fork takes (internal.h), as the
 * one buddy there is, umpa_buddy, is the page layer's. */
static inline ulock_t *order_lock(unsigned k) {
  return &umpa_locks.order[k].lock;
}

#define LAZY_ORDERS HUGE_ORDER /* orders below 2 MiB may stay unmerged */
#define LAZY_RUNS 8

static void list_init(struct pmeta *sentinel) {
  sentinel->next = sentinel->prev = sentinel;
}

void buddy_init(struct buddy *b, int lock_kind) {
  for (unsigned k = 0; k <= MAX_ORDER; k++) {
    struct buddy_level *lv = &b->level[k];
    ulock_init(order_lock(k), lock_kind);
    list_init(&lv->warm);
    list_init(&lv->other);
    atomic_init(&lv->xfree_runs, 0);
    atomic_init(&lv->xwarm_runs, 0);
    atomic_init(&lv->xlazy, 0);
    atomic_init(&lv->xsplits, 0);
    atomic_init(&lv->xmerges, 0);
  }
  atomic_init(&b->xbacked_free, 0);
  atomic_init(&b->xmax_order, 0);
  atomic_init(&b->xfree_orders, 0);
  atomic_init(&b->xwarm_orders, 0);
  ulock_init(&umpa_locks.buddy_grow, lock_kind);
}

static inline bool run_is_warm(const struct pmeta *pm, unsigned k) {
  return pm->count == ((uint32_t)1 << k);
}

/* Count a run in or out of an order's counter (its lock held), keeping the
 * order's bit in `orders` equal to "the counter is not zero". */
static inline void count_in(_Atomic uint64_t *counter, _Atomic uint32_t *orders,
                            unsigned k) {
  uint64_t n = atomic_load_explicit(counter, memory_order_relaxed);
  if (n == 0)
    atomic_fetch_or_explicit(orders, (uint32_t)1 << k, memory_order_relaxed);
  atomic_store_explicit(counter, n + 1, memory_order_relaxed);
}

static inline void count_out(_Atomic uint64_t *counter,
                             _Atomic uint32_t *orders, unsigned k) {
  uint64_t n = atomic_load_explicit(counter, memory_order_relaxed) - 1;
  atomic_store_explicit(counter, n, memory_order_relaxed);
  if (n == 0)
    atomic_fetch_and_explicit(orders, ~((uint32_t)1 << k),
                              memory_order_relaxed);
}

/* The lowest order from k up whose bit is set in `orders`, or
 * UMPA_PAGE_ORDERS when none is. */
static inline unsigned order_from(const _Atomic uint32_t *orders, unsigned k) {
  if (k >= UMPA_PAGE_ORDERS) return UMPA_PAGE_ORDERS;
  uint32_t m = atomic_load_explicit(orders, memory_order_relaxed) &
               (~(uint32_t)0 << k);
  return m ? (unsigned)__builtin_ctz(m) : UMPA_PAGE_ORDERS;
}

/* Make pm the head of a free run of order k.  Order-k lock held. */
UMPA_HOT
static void put_free(struct buddy *b, unsigned k, struct region *r,
                     struct pmeta *pm, size_t backed) {
  struct buddy_level *lv = &b->level[k];
  pm->region = r;
  pm->count = (uint32_t)backed;
  struct pmeta *at;
  if (run_is_warm(pm, k)) {
    at = &lv->warm;
    count_in(&lv->xwarm_runs, &b->xwarm_orders, k);
  } else {
    at = backed ? &lv->other : lv->other.prev;
  }
  pm->prev = at;
  pm->next = at->next;
  at->next->prev = pm;
  at->next = pm;
  count_in(&lv->xfree_runs, &b->xfree_orders, k);
  if (backed)
    atomic_fetch_add_explicit(&b->xbacked_free, backed, memory_order_relaxed);
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_FREE, k), memory_order_release);
  /* After the tag, released: a claim walk that counts this listing (its
   * acquire) sees the run (see puts_so_far). */
  atomic_store_explicit(
      &lv->xputs, atomic_load_explicit(&lv->xputs, memory_order_relaxed) + 1,
      memory_order_release);
}

/* Take the free run headed by pm off its list.  Order-k lock held. */
UMPA_HOT
static void take_free(struct buddy *b, unsigned k, struct pmeta *pm) {
  struct buddy_level *lv = &b->level[k];
  pm->prev->next = pm->next;
  pm->next->prev = pm->prev;
  count_out(&lv->xfree_runs, &b->xfree_orders, k);
  if (run_is_warm(pm, k)) count_out(&lv->xwarm_runs, &b->xwarm_orders, k);
  if (pm->count)
    atomic_fetch_sub_explicit(&b->xbacked_free, pm->count,
                              memory_order_relaxed);
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_BUSY, 0), memory_order_relaxed);
}

UMPA_HOT
static void insert_locked(struct buddy *b, unsigned k, struct region *r,
                          struct pmeta *pm, size_t backed) {
  ulock_acquire(order_lock(k));
  put_free(b, k, r, pm, backed);
  ulock_release(order_lock(k));
}

enum pick { PICK_WARM, PICK_ANY_WARMEST, PICK_COLD };

/* Take a run from order k per `how`, or NULL (take_lowest asks only of
 * orders whose bit says they have one). */
UMPA_HOT
static struct pmeta *take_from(struct buddy *b, unsigned k, enum pick how) {
  struct buddy_level *lv = &b->level[k];
  ulock_acquire(order_lock(k));
  struct pmeta *pm;
  bool has_warm = lv->warm.next != &lv->warm;
  bool has_other = lv->other.next != &lv->other;
  if (how == PICK_WARM)
    pm = has_warm ? lv->warm.next : NULL;
  else if (how == PICK_COLD)
    pm = has_other ? lv->other.prev : has_warm ? lv->warm.next : NULL;
  else
    pm = has_warm ? lv->warm.next : has_other ? lv->other.next : NULL;
  if (pm) take_free(b, k, pm);
  ulock_release(order_lock(k));
  return pm;
}

/* Split the taken run pm of order k down to `order`, keeping the half
 * that suits the request (more backed pages for warm requests, fewer for
 * cold) and listing the other. */
UMPA_HOT
static struct pmeta *split(struct buddy *b, struct pmeta *pm, unsigned k,
                           unsigned order, bool cold) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  size_t backed = pm->count;
  if (k > order) COUNTER_ADD(b->level[k].xsplits, 1);
  while (k > order) {
    k--;
    size_t half = (size_t)1 << k;
    size_t lo_backed = backed == 0 ? 0
                       : backed == 2 * half
                           ? half
                           : bitmap_count(r->xbacked, idx, half);
    size_t hi_backed = backed - lo_backed;
    bool keep_hi = cold ? hi_backed < lo_backed : hi_backed > lo_backed;
    if (k > order) COUNTER_ADD(b->level[k].xsplits, 1);
    if (keep_hi) {
      struct pmeta *hi = &r->meta[idx + half];
      hi->region = r;
      atomic_store_explicit(&hi->xtag, PM_TAG(PM_BUSY, 0),
                            memory_order_relaxed);
      insert_locked(b, k, r, &r->meta[idx], lo_backed);
      idx += half;
      backed = hi_backed;
    } else {
      insert_locked(b, k, r, &r->meta[idx + half], hi_backed);
      backed = lo_backed;
    }
  }
  pm = &r->meta[idx];
  pm->region = r;
  pm->count = (uint32_t)backed;
  return pm;
}

/* A run of order `order` or more from the orders `orders` marks, taken
 * per `how` (smallest order first), or NULL; its order in *kp.  Orders
 * without a bit cost no lock: the mask is the peek the counters were. */
UMPA_HOT
static struct pmeta *take_lowest(struct buddy *b,
                                 const _Atomic uint32_t *orders, unsigned order,
                                 enum pick how, unsigned *kp) {
  for (unsigned k = order_from(orders, order); k < UMPA_PAGE_ORDERS;
       k = order_from(orders, k + 1)) {
    struct pmeta *pm = take_from(b, k, how);
    if (pm) {
      *kp = k;
      return pm;
    }
  }
  return NULL;
}

UMPA_HOT
struct pmeta *buddy_alloc(struct buddy *b, unsigned order, bool cold) {
  struct pmeta *pm = NULL;
  unsigned k = order;
  if (!cold) {
    /* The smallest fully backed run that is large enough... */
    pm = take_lowest(b, &b->xwarm_orders, order, PICK_WARM, &k);
    /* ...possibly after merging what lazy frees left apart, when the
     * cache holds enough pages to serve the request. */
    if (!pm && order > 0 &&
        atomic_load_explicit(&b->xbacked_free, memory_order_relaxed) >=
            ((size_t)1 << order)) {
      buddy_coalesce(b);
      pm = take_lowest(b, &b->xwarm_orders, order, PICK_WARM, &k);
    }
  }
  if (!pm)
    pm = take_lowest(b, &b->xfree_orders, order,
                     cold ? PICK_COLD : PICK_ANY_WARMEST, &k);
  return pm ? split(b, pm, k, order, cold) : NULL;
}

UMPA_HOT
bool buddy_has_warm(struct buddy *b, unsigned order) {
  return order_from(&b->xwarm_orders, order) < UMPA_PAGE_ORDERS;
}

UMPA_HOT
int buddy_max_free_order(struct buddy *b) {
  uint32_t m = atomic_load_explicit(&b->xfree_orders, memory_order_relaxed);
  return m ? 31 - __builtin_clz(m) : -1;
}

UMPA_HOT
struct pmeta *buddy_alloc_warm(struct buddy *b, unsigned order) {
  unsigned k;
  struct pmeta *pm = take_lowest(b, &b->xwarm_orders, order, PICK_WARM, &k);
  return pm ? split(b, pm, k, order, false) : NULL;
}

UMPA_HOT
void buddy_free(struct buddy *b, struct region *r, size_t idx, unsigned order,
                size_t backed) {
  unsigned k = order;
  for (;;) {
    struct buddy_level *lv = &b->level[k];
    ulock_acquire(order_lock(k));
    bool lazy = k < LAZY_ORDERS &&
                atomic_load_explicit(&lv->xfree_runs, memory_order_relaxed) <
                    LAZY_RUNS;
    if (lazy) COUNTER_ADD(lv->xlazy, 1);
    if (k < r->order && !lazy) {
      size_t bidx = idx ^ ((size_t)1 << k);
      struct pmeta *bp = &r->meta[bidx];
      if (atomic_load_explicit(&bp->xtag, memory_order_acquire) ==
          PM_TAG(PM_FREE, k)) {
        take_free(b, k, bp);
        COUNTER_ADD(lv->xmerges, 1);
        ulock_release(order_lock(k));
        backed += bp->count;
        /* The upper of the two heads becomes an interior page. */
        size_t upper = bidx > idx ? bidx : idx;
        atomic_store_explicit(&r->meta[upper].xtag, PM_TAG(PM_NONE, 0),
                              memory_order_relaxed);
        if (bidx < idx) idx = bidx;
        k++;
        continue;
      }
    }
    put_free(b, k, r, &r->meta[idx], backed);
    ulock_release(order_lock(k));
    return;
  }
}

UMPA_HOT
void buddy_free_range(struct buddy *b, struct region *r, size_t idx, size_t n,
                      bool full) {
  while (n) {
    unsigned k = idx ? (unsigned)__builtin_ctzll(idx) : r->order;
    unsigned fit = log2_floor(n);
    if (fit < k) k = fit;
    size_t len = (size_t)1 << k;
    size_t backed = full ? len : bitmap_count(r->xbacked, idx, len);
    buddy_free(b, r, idx, k, backed);
    idx += len;
    n -= len;
  }
}

UMPA_HOT
long buddy_claim(struct buddy *b, struct region *r, size_t idx, size_t n) {
  if (idx + n > r->mapped || idx + n < idx) return -1;
  size_t pos = idx, end = idx + n;
  long backed = 0;
  while (pos < end) {
    /* The page before pos belongs to the caller, so a free run that holds
     * pos must start at pos: its head tag says whether and at what order. */
    struct pmeta *pm = &r->meta[pos];
    uint8_t tag = atomic_load_explicit(&pm->xtag, memory_order_acquire);
    if (PM_STATE(tag) != PM_FREE) goto fail;
    unsigned k = PM_ORDER(tag);
    ulock_acquire(order_lock(k));
    if (atomic_load_explicit(&pm->xtag, memory_order_relaxed) != tag) {
      ulock_release(order_lock(k)); /* merged or taken meanwhile: look again */
      continue;
    }
    take_free(b, k, pm);
    ulock_release(order_lock(k));
    backed += pm->count;
    atomic_store_explicit(&pm->xtag, PM_TAG(PM_NONE, 0), memory_order_relaxed);
    pos += (size_t)1 << k;
  }
  if (pos > end) {
    size_t extra = pos - end;
    backed -= (long)bitmap_count(r->xbacked, end, extra);
    buddy_free_range(b, r, end, extra, false);
  }
  return backed;
fail:
  if (pos > idx) buddy_free_range(b, r, idx, pos - idx, false);
  return -1;
}

long buddy_claim_within(struct buddy *b, struct region *r, size_t idx,
                        size_t n) {
  /* The run holding idx: its head is idx aligned down to some order k
   * (a head whose run ends before idx, or a block in use, ends the
   * search). */
  for (unsigned k = 0; k <= r->order; k++) {
    size_t h = idx & ~(((size_t)1 << k) - 1);
    uint8_t tag = atomic_load_explicit(&r->meta[h].xtag, memory_order_acquire);
    if (PM_STATE(tag) == PM_NONE) continue;
    if (PM_STATE(tag) != PM_FREE || h + ((size_t)1 << PM_ORDER(tag)) <= idx)
      return -1;
    if (h == idx) return buddy_claim(b, r, idx, n);
    long got = buddy_claim(b, r, h, idx + n - h);
    if (got < 0) return -1;
    got -= (long)bitmap_count(r->xbacked, h, idx - h);
    buddy_free_range(b, r, h, idx - h, false);
    return got;
  }
  return -1;
}

size_t buddy_claim_warm(struct buddy *b, struct region *r, size_t pos) {
  if (pos >= r->mapped) return 0;
  struct pmeta *pm = &r->meta[pos];
  uint8_t tag = atomic_load_explicit(&pm->xtag, memory_order_acquire);
  if (PM_STATE(tag) != PM_FREE) return 0;
  unsigned k = PM_ORDER(tag);
  ulock_acquire(order_lock(k));
  if (atomic_load_explicit(&pm->xtag, memory_order_relaxed) != tag ||
      !run_is_warm(pm, k)) {
    ulock_release(order_lock(k));
    return 0;
  }
  take_free(b, k, pm);
  ulock_release(order_lock(k));
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_NONE, 0), memory_order_relaxed);
  return (size_t)1 << k;
}

UMPA_HOT
struct pmeta *buddy_take_warm(struct buddy *b, unsigned *order) {
  /* Partly backed runs first: a request can use them only by populating
   * the rest, and moves take only fully backed runs.  Then fully backed
   * runs, smallest first: big ones serve big requests without a fault. */
  for (int pass = 0; pass < 2; pass++) {
    const _Atomic uint32_t *orders = pass ? &b->xwarm_orders : &b->xfree_orders;
    for (unsigned k = order_from(orders, 0); k < UMPA_PAGE_ORDERS;
         k = order_from(orders, k + 1)) {
      struct buddy_level *lv = &b->level[k];
      ulock_acquire(order_lock(k));
      struct pmeta *pm =
          pass ? (lv->warm.next != &lv->warm ? lv->warm.next : NULL)
               : (lv->other.next != &lv->other && lv->other.next->count
                      ? lv->other.next
                      : NULL);
      if (pm) {
        take_free(b, k, pm);
        ulock_release(order_lock(k));
        *order = k;
        return pm;
      }
      ulock_release(order_lock(k));
    }
  }
  return NULL;
}

/* Find a pair of free buddies on one of order k's lists.  Lock held. */
static struct pmeta *find_pair(struct pmeta *list, unsigned k) {
  for (struct pmeta *pm = list->next; pm != list; pm = pm->next) {
    struct region *r = pm->region;
    if (k >= r->order) continue;
    size_t bidx = pmeta_index(pm) ^ ((size_t)1 << k);
    if (atomic_load_explicit(&r->meta[bidx].xtag, memory_order_relaxed) ==
        PM_TAG(PM_FREE, k))
      return pm;
  }
  return NULL;
}

/* Merge the free buddies that lazy frees left apart, lowest order first.
 * A merged run is freed one order up through buddy_free, which merges it
 * further (eagerly from 2 MiB up).  The order-k lock is held while
 * buddy_free takes higher orders' locks: locks nest only upwards, the order
 * every other path respects. */
UMPA_HOT
void buddy_coalesce(struct buddy *b) {
  unsigned top = atomic_load_explicit(&b->xmax_order, memory_order_acquire);
  for (unsigned k = 0; k < top && k < LAZY_ORDERS; k++) {
    struct buddy_level *lv = &b->level[k];
    if (atomic_load_explicit(&lv->xlazy, memory_order_relaxed) == 0) continue;
    ulock_acquire(order_lock(k));
    atomic_store_explicit(&lv->xlazy, 0, memory_order_relaxed);
    struct pmeta *pm;
    while ((pm = find_pair(&lv->warm, k)) || (pm = find_pair(&lv->other, k))) {
      struct region *r = pm->region;
      size_t idx = pmeta_index(pm), bidx = idx ^ ((size_t)1 << k);
      struct pmeta *bp = &r->meta[bidx];
      size_t backed = (size_t)pm->count + bp->count;
      take_free(b, k, pm);
      take_free(b, k, bp);
      COUNTER_ADD(lv->xmerges, 1);
      size_t lo = idx < bidx ? idx : bidx, hi = idx ^ bidx ^ lo;
      atomic_store_explicit(&r->meta[hi].xtag, PM_TAG(PM_NONE, 0),
                            memory_order_relaxed);
      buddy_free(b, r, lo, k + 1, backed);
    }
    ulock_release(order_lock(k));
  }
}

/* Let the searches look as high as a new region's order.  Growth lock
 * held. */
static void raise_max_order(struct buddy *b, unsigned order) {
  unsigned top = atomic_load_explicit(&b->xmax_order, memory_order_relaxed);
  if (order > top)
    atomic_store_explicit(&b->xmax_order, order, memory_order_release);
}

void buddy_add_region(struct buddy *b, struct region *r) {
  insert_locked(b, r->order, r, &r->meta[0], 0);
  raise_max_order(b, r->order);
}

bool buddy_grow(struct buddy *b, unsigned order) {
  ulock_acquire(&umpa_locks.buddy_grow);
  /* Another thread may have added a region while we waited. */
  if (buddy_max_free_order(b) >= (int)order) {
    ulock_release(&umpa_locks.buddy_grow);
    return true;
  }
  struct region *r = region_create(order);
  if (r) buddy_add_region(b, r);
  ulock_release(&umpa_locks.buddy_grow);
  return r != NULL;
}

/* Head the claimed run at idx of r: busy, with `backed` pages backed. */
static struct pmeta *claimed_head(struct region *r, size_t idx, long backed) {
  struct pmeta *pm = &r->meta[idx];
  pm->region = r;
  pm->count = (uint32_t)backed;
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_BUSY, 0), memory_order_relaxed);
  return pm;
}

_Atomic uint64_t buddy_claim_walks;

/* Runs listed so far, in every order.  Nothing is freed into the buddy
 * (and no region added) without a listing, and a walk of buddy_claim_span
 * finds only listed runs: while this sum stays put, a walk that failed
 * fails again for as many pages or more. */
static uint64_t puts_so_far(struct buddy *b) {
  uint64_t n = 0;
  for (unsigned k = 0; k <= MAX_ORDER; k++)
    n += atomic_load_explicit(&b->level[k].xputs, memory_order_acquire);
  return n;
}

static struct pmeta *claim_walk(struct buddy *b, size_t npages);

struct pmeta *buddy_claim_span(struct buddy *b, size_t npages) {
  /* Each failing malloc at the address-space limit walked every region's
   * metadata: 230 us a call at a 2 GB limit, against glibc's 1 us.  The
   * sum is read before the walk, so a run listed during it makes the next
   * caller walk again. */
  uint64_t puts = puts_so_far(b);
  /* The growth lock keeps the list of regions still (buddy_retire_free
   * takes regions off it) and guards the record of the last failure. */
  ulock_acquire(&umpa_locks.buddy_grow);
  if (b->claim_failed_pages && b->claim_failed_puts == puts &&
      npages >= b->claim_failed_pages) {
    ulock_release(&umpa_locks.buddy_grow); /* known to fail */
    return NULL;
  }
  atomic_fetch_add_explicit(&buddy_claim_walks, 1, memory_order_relaxed);
  struct pmeta *pm = claim_walk(b, npages);
  if (!pm && (b->claim_failed_puts != puts || !b->claim_failed_pages ||
              npages < b->claim_failed_pages)) {
    b->claim_failed_pages = npages;
    b->claim_failed_puts = puts;
  }
  ulock_release(&umpa_locks.buddy_grow);
  return pm;
}

/* buddy_claim_span's walk.  Growth lock held. */
static struct pmeta *claim_walk(struct buddy *b, size_t npages) {
  /* Aligned as a buddy run of its size is, up to 2 MiB: a superblock's
   * header is found from its pointer by its size's alignment, and blocks
   * of 2 MiB and more are 2 MiB aligned.  A span at any page gave
   * superblocks that overlapped their neighbours' blocks (a helper found
   * live memory overwritten under ulimit -v). */
  size_t align = (size_t)1 << log2_floor(npages);
  if (align > ((size_t)1 << HUGE_ORDER)) align = (size_t)1 << HUGE_ORDER;
  for (struct region *r = region_list(); r; r = r->next) {
    if (r->mapped < npages) continue;
    /* Walk the tags without locks: they are hints, which buddy_claim
     * checks under the order locks.  Past an allocated block by the size
     * its head gives (its owner may be changing it: a hint too), else a
     * page at a time; this runs only when address space is short, in
     * place of failing (a page at a time throughout, each failing malloc
     * at a 2 GB limit took a millisecond). */
    for (size_t i = 0; i + npages <= r->mapped;) {
      uint8_t tag = atomic_load_explicit(&r->meta[i].xtag,
                                         memory_order_acquire);
      if (PM_STATE(tag) != PM_FREE) {
        uint32_t n = PM_STATE(tag) == PM_USED
                         ? __atomic_load_n(&r->meta[i].count, __ATOMIC_RELAXED)
                         : 0;
        i += n ? n : 1;
        continue;
      }
      size_t start = (i + align - 1) & ~(align - 1), end = i;
      while (end < r->mapped && end < start + npages) {
        uint8_t t = atomic_load_explicit(&r->meta[end].xtag,
                                         memory_order_acquire);
        if (PM_STATE(t) != PM_FREE) break;
        end += (size_t)1 << PM_ORDER(t);
      }
      if (end >= start + npages && start + npages <= r->mapped) {
        /* From the free run's head (buddy_claim starts at one), the
         * pages before the aligned start given back. */
        long backed = buddy_claim(b, r, i, start - i + npages);
        if (backed >= 0) {
          if (start > i) {
            backed -= (long)bitmap_count(r->xbacked, i, start - i);
            buddy_free_range(b, r, i, start - i, false);
          }
          return claimed_head(r, start, backed);
        }
      }
      i = end > i ? end : i + 1;
    }
  }
  return NULL;
}

/* Whether every page of r is in a free run.  All order locks held. */
static bool all_free(struct region *r) {
  for (size_t i = 0; i < r->mapped;) {
    uint8_t tag = atomic_load_explicit(&r->meta[i].xtag, memory_order_relaxed);
    if (PM_STATE(tag) != PM_FREE) return false;
    i += (size_t)1 << PM_ORDER(tag);
  }
  return true;
}

/* Under a limit the free part of a region counts against it as its used
 * part does: after a phase of small blocks freed and trimmed, glibc's
 * heap gives its address space back and umpa's regions kept it, so a
 * 64 MiB mmap, a thread's stack or a 64 MiB malloc failed where glibc's
 * succeeded.  Without a limit address space is no cost, and a region kept
 * saves the next phase its system calls and faults. */
size_t buddy_retire_free(struct buddy *b) {
  if (os_address_space_limit() == SIZE_MAX) return 0;
  size_t pages = 0;
  struct region *gone = NULL;
  ulock_acquire(&umpa_locks.buddy_grow);
  for (unsigned k = 0; k <= MAX_ORDER; k++) ulock_acquire(order_lock(k));
  for (struct region *r = region_list(); r; r = r->next) {
    if (!all_free(r)) continue;
    size_t backed = bitmap_count(r->xbacked, 0, r->mapped);
    for (size_t i = 0; i < r->mapped;) {
      struct pmeta *pm = &r->meta[i];
      unsigned k = PM_ORDER(atomic_load_explicit(&pm->xtag,
                                                 memory_order_relaxed));
      take_free(b, k, pm);
      atomic_store_explicit(&pm->xtag, PM_TAG(PM_NONE, 0),
                            memory_order_relaxed);
      i += (size_t)1 << k;
    }
    if (backed) {
      bitmap_clear(r->xbacked, 0, r->mapped);
      PC_ADD(xbacked, -backed);
    }
    /* Listed for retiring (r->next is the list's until then): `gone`
     * threads them through their first entry's link, unused now. */
    r->meta[0].next = (struct pmeta *)gone;
    gone = r;
    pages += r->mapped;
  }
  for (unsigned k = MAX_ORDER + 1; k-- > 0;) ulock_release(order_lock(k));
  /* Out of every list, their pages reach no thread: unmapped without the
   * order locks, which a munmap of populated pages would hold for
   * milliseconds. */
  while (gone) {
    struct region *r = gone;
    gone = (struct region *)r->meta[0].next;
    r->meta[0].next = NULL;
    region_retire(r);
  }
  ulock_release(&umpa_locks.buddy_grow);
  return pages;
}

struct pmeta *buddy_grow_short(struct buddy *b, size_t npages) {
  ulock_acquire(&umpa_locks.buddy_grow);
  struct region *r = region_create_short(npages);
  if (!r) {
    ulock_release(&umpa_locks.buddy_grow);
    return NULL;
  }
  /* The caller's run is never listed, so no other thread can take it
   * between the growth and the claim. */
  struct pmeta *pm = claimed_head(r, 0, 0);
  buddy_free_range(b, r, npages, r->mapped - npages, false);
  raise_max_order(b, r->order);
  ulock_release(&umpa_locks.buddy_grow);
  return pm;
}

UMPA_FORK
void buddy_lock_all(void) {
  ulock_acquire_fork(&umpa_locks.buddy_grow);
  for (unsigned k = 0; k <= MAX_ORDER; k++) ulock_acquire_fork(order_lock(k));
}

UMPA_FORK
void buddy_unlock_all(void) {
  for (unsigned k = MAX_ORDER + 1; k-- > 0;) ulock_release_fork(order_lock(k));
  ulock_release_fork(&umpa_locks.buddy_grow);
}
