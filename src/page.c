/*
 * page.c - the user-mode page allocator: the paper's five calls.
 *
 * A block is a run of whole pages inside one region.  Its head page's
 * metadata says PM_USED with its exact size; a request of N pages holds N
 * pages, the rest of the power-of-two run it came from goes straight back
 * to the free runs.  Each region keeps a bit per page saying whether the
 * page may hold data / has memory ("backed"); a clear bit means the page
 * reads as zero and costs a fault to use, so the layer knows what to
 * populate and what to clear without asking the kernel.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

struct page_counters umpa_pc;
UMPA_EARLY_DATA static _Atomic int page_state; /* 0 new, 1 initialising,
                                                   2 ready */
/* Populates this large or larger have their faults measured. */
#define POPULATE_MEASURED ((size_t)1 << 20)

void page_init(void) {
  if (atomic_load_explicit(&page_state, memory_order_acquire) == 2) return;
  int expected = 0;
  if (atomic_compare_exchange_strong(&page_state, &expected, 1)) {
    options_init();
    locks_init();
    buddy_init(&umpa_buddy, umpa_opt.page_lock);
    cache_init();
    atomic_store_explicit(&page_state, 2, memory_order_release);
    return;
  }
  while (atomic_load_explicit(&page_state, memory_order_acquire) != 2)
    os_yield();
}

static inline void page_ready(void) {
  if (UMPA_UNLIKELY(atomic_load_explicit(&page_state, memory_order_acquire) !=
                    2))
    page_init();
}

/* ---------------------------------------------------------------------------
 * Preparing pages: populate what is not backed, clear what must be zero.
 * ------------------------------------------------------------------------- */

static void advise_huge_part(struct region *r, size_t idx, size_t n) {
  const size_t hp = (size_t)1 << HUGE_ORDER;
  size_t lo = (idx + hp - 1) & ~(hp - 1), hi = (idx + n) & ~(hp - 1);
  if (!r->thp && hi > lo) os_advise_huge(region_addr(r, lo), (hi - lo) << PAGE_SHIFT);
}

UMPA_HOT
int page_prepare(struct region *r, size_t idx, size_t n, unsigned flags,
                 size_t *moved) {
  if (moved) *moved = 0;
  /* Every block with pages that hold no data comes through here (or
   * through the UMPA_RESERVE path of page_alloc_ex) before it is used. */
  if (!region_open(r, idx, n)) return ENOMEM;
  if (flags & UMPA_HUGE) advise_huge_part(r, idx, n);
  /* Cached pages elsewhere cost a remap per 2 MiB; the kernel's cost a
   * fault per 4 KiB. */
  size_t in = (!(flags & UMPA_LAZY) || (flags & PAGE_WARM))
                  ? remap_fill(r, idx, n)
                  : 0;
  if (moved) *moved = in;
  size_t end = idx + n, populated = 0, cleared = 0;
  uint64_t faults = 0;
  int err = 0;
  /* In a locked process, pages without data may have been closed. */
  bool locked = region_locked();
  for (size_t i = idx; i < end;) {
    bool backed = bitmap_test(r->xbacked, i);
    size_t j = bitmap_find(r->xbacked, i, end - i, !backed);
    size_t len = (j - i) << PAGE_SHIFT;
    if (backed) {
      if (flags & UMPA_ZERO) {
        memset(region_addr(r, i), 0, len);
        cleared += j - i;
      }
    } else if (UMPA_UNLIKELY(locked) &&
               !os_open(region_addr(r, i), len, true)) {
      err = ENOMEM;
      break;
    } else if (!(flags & UMPA_LAZY)) {
      /* Each page whose bit is clear takes one fault (unless a lazy
       * block's owner touched it and the bits never learnt): below
       * POPULATE_MEASURED that is what is counted, since measuring costs
       * two system calls, a good part of a small populate. */
      uint64_t f = j - i;
      err = os_populate(region_addr(r, i), len, true,
                        len >= POPULATE_MEASURED ? &f : NULL);
      faults += f;
      if (err) {
        /* Whatever the kernel populated before failing is zero: drop it
         * so that the bitmap stays exact. */
        os_release(region_addr(r, i), len);
        break;
      }
      bitmap_set(r->xbacked, i, j - i);
      region_back_meta(r, i, j - i);
      populated += j - i;
    }
    i = j;
  }
  if (populated) {
    PC_ADD(xpopulated, populated);
    PC_ADD(xbacked, populated);
  }
  if (faults) PC_ADD(xfaults, faults);
  if (cleared) PC_ADD(xcleared, cleared);
  return err ? ENOMEM : 0;
}

/* Drop the memory of every run of pages in [idx, idx+n) whose backed bit
 * equals `value` (bits are left as they are); with `close`, by closing
 * them (os_close: pages no block will use before page_prepare opens them). */
static void release_runs(struct region *r, size_t idx, size_t n, bool value,
                         bool close) {
  for (size_t i = idx, end = idx + n; i < end;) {
    size_t e, s = bitmap_run(r->xbacked, i, end, value, &e);
    if (s == end) break;
    if (close) os_close(region_addr(r, s), (e - s) << PAGE_SHIFT, r->thp);
    else os_release(region_addr(r, s), (e - s) << PAGE_SHIFT);
    i = e;
  }
}

/* Set the backed bits of [s, s+len); returns how many were clear. */
static size_t mark_backed(struct region *r, size_t s, size_t len) {
  size_t had = bitmap_count(r->xbacked, s, len);
  if (had == len) return 0;
  bitmap_set(r->xbacked, s, len);
  /* Metadata only where pages are resident: a huge lazy block the program
   * touched a little would otherwise populate 32 bytes of metadata per
   * page of it (sort: 29 MiB for a 3.7 GB buffer). */
  region_back_meta(r, s, len);
  return len - had;
}

void page_assume_backed(struct region *r, size_t idx, size_t n) {
  size_t added = mark_backed(r, idx, n);
  if (added) PC_ADD(xbacked, added);
}

/* The first entry of mincore's vec[i, n) whose page is not `resident`
 * (n if none), eight entries at a time: a block's pages are nearly all
 * resident or all not, and a byte at a time the scan of a 4-8 MiB block
 * took 6,600 instructions of its free. */
static size_t vec_skip(const unsigned char *vec, size_t i, size_t n,
                       bool resident) {
  const uint64_t ones = 0x0101010101010101ull;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, vec + i, 8);
    w &= ones; /* bit 0 of each byte: resident; the others are reserved */
    if (resident) w ^= ones;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    if (w) return i + (size_t)__builtin_clzll(w) / 8;
#else
    if (w) return i + (size_t)__builtin_ctzll(w) / 8;
#endif
  }
  while (i < n && (bool)(vec[i] & 1) == resident) i++;
  return i;
}

UMPA_HOT
void page_refresh_backed(struct region *r, size_t idx, size_t n) {
  /* One mincore per 16 MiB: with 4 MiB a time, freeing a 4-8 MiB block of
   * Figure 7 took 3.9 us instead of 3.2. */
  unsigned char vec[4096];
  size_t added = 0;
  for (size_t done = 0; done < n;) {
    size_t chunk = n - done < sizeof vec ? n - done : sizeof vec;
    if (os_residency(region_addr(r, idx + done), chunk, vec) != 0) {
      /* Cannot tell: assume every page may hold data. */
      memset(vec, 1, chunk);
    }
    /* Runs of resident pages, their bits set a word at a time. */
    for (size_t i = 0; i < chunk;) {
      i = vec_skip(vec, i, chunk, false);
      if (i == chunk) break;
      size_t j = vec_skip(vec, i + 1, chunk, true);
      added += mark_backed(r, idx + done + i, j - i);
      i = j;
    }
    done += chunk;
  }
  if (added) PC_ADD(xbacked, added);
  /* A page written and then swapped out is not resident yet holds data:
   * with swap present, drop what we cannot account for so that a clear
   * bit keeps meaning "reads as zero". */
  if (os_has_swap()) release_runs(r, idx, n, false, false);
}

void page_exact_backed(struct region *r, size_t idx, size_t n) {
  size_t was = bitmap_count(r->xbacked, idx, n);
  bitmap_clear(r->xbacked, idx, n);
  PC_ADD(xbacked, -was);
  page_refresh_backed(r, idx, n);
}

/* ---------------------------------------------------------------------------
 * Taking and publishing blocks.
 * ------------------------------------------------------------------------- */

UMPA_HOT
struct pmeta *page_take(size_t npages, unsigned flags) {
  unsigned order = log2_ceil(npages);
  bool cold = (flags & (UMPA_LAZY | UMPA_RESERVE)) != 0;
  cold = cold && !(flags & PAGE_WARM);
  struct pmeta *pm = buddy_alloc(&umpa_buddy, order, cold);
  if (UMPA_UNLIKELY(!pm)) {
    /* Merge what lazy frees left apart before reserving more space. */
    buddy_coalesce(&umpa_buddy);
    int saved = errno;
    while (!(pm = buddy_alloc(&umpa_buddy, order, cold))) {
      if (flags & PAGE_NO_GROW) return NULL;
      if (!buddy_grow(&umpa_buddy, order)) {
        /* No room for a power-of-two run (address space is short): free
         * runs side by side may hold npages, or a region of that size. */
        pm = buddy_claim_span(&umpa_buddy, npages);
        if (!pm) pm = buddy_grow_short(&umpa_buddy, npages);
        if (pm) errno = saved;
        return pm;
      }
    }
  }
  if (pm->count) cache_note_level();
  size_t run = (size_t)1 << order;
  if (npages < run) {
    struct region *r = pm->region;
    size_t idx = pmeta_index(pm), tail = run - npages;
    bool full = pm->count == run;
    size_t tail_backed = full ? tail
                         : pm->count == 0
                             ? 0
                             : bitmap_count(r->xbacked, idx + npages, tail);
    pm->count -= (uint32_t)tail_backed;
    buddy_free_range(&umpa_buddy, r, idx + npages, tail, full);
  }
  return pm;
}

void page_publish(struct pmeta *pm, size_t npages, unsigned kind,
                  unsigned flags, size_t backed) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  if (backed == SIZE_MAX) backed = bitmap_count(r->xbacked, idx, npages);
  pm->count = (uint32_t)npages;
  pm->kind = (uint8_t)kind;
  pm->flags = backed == npages ? PMF_FULL
              : (flags & (UMPA_LAZY | UMPA_RESERVE)) ? PMF_UNKNOWN
                                                     : 0;
  bitmap_set_bit(r->xheads, idx);
  PC_ADD(xin_use, npages);
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_USED, 0), memory_order_release);
}

/* Blocks this big, and growths by this much, first ask the kernel's
 * overcommit policy (os_may_commit), so that a request bigger than memory
 * and swap fails as it does under glibc.  Smaller ones no machine with a
 * few hundred MiB would refuse, and asking costs two system calls; the
 * large cache's 64 MiB stretches stay below it.  Reservations are exempt:
 * address space is what they ask for. */
#define COMMIT_CHECK_PAGES ((size_t)32768) /* 128 MiB */

static bool commit_refused(size_t npages, unsigned flags) {
  return npages >= COMMIT_CHECK_PAGES && !(flags & UMPA_RESERVE) &&
         !os_may_commit(npages << PAGE_SHIFT);
}

static void *page_ready_block(struct pmeta *pm, size_t npages, unsigned flags,
                              unsigned kind, bool *fresh);

UMPA_HOT
void *page_alloc(size_t npages, unsigned flags, unsigned kind) {
  return page_alloc_ex(npages, flags, kind, NULL);
}

UMPA_HOT
void *page_alloc_ex(size_t npages, unsigned flags, unsigned kind,
                    bool *fresh) {
  page_ready();
  if (npages == 0 || npages > MAX_REQUEST_PAGES ||
      commit_refused(npages, flags)) {
    errno = ENOMEM;
    return NULL;
  }
  struct pmeta *pm = page_take(npages, flags);
  if (!pm) {
    errno = ENOMEM;
    return NULL;
  }
  return page_ready_block(pm, npages, flags, kind, fresh);
}

void *page_alloc_at(void *p, size_t npages, unsigned flags, unsigned kind) {
  struct region *r = region_of(p);
  if (!r || npages == 0) return NULL;
  size_t idx = region_index(r, p);
  long backed = buddy_claim_within(&umpa_buddy, r, idx, npages);
  if (backed < 0) return NULL;
  struct pmeta *pm = &r->meta[idx];
  pm->region = r;
  pm->count = (uint32_t)backed;
  atomic_store_explicit(&pm->xtag, PM_TAG(PM_BUSY, 0), memory_order_relaxed);
  if (backed) cache_note_level();
  int saved = errno;
  void *q = page_ready_block(pm, npages, flags, kind, NULL);
  errno = saved;
  return q;
}

/* A run taken out of the free lists (head PM_BUSY, count = its backed
 * pages) made a block of `kind`: its pages prepared as `flags` ask, then
 * published.  NULL (errno ENOMEM, the run freed again) when they cannot
 * be. */
UMPA_HOT
static void *page_ready_block(struct pmeta *pm, size_t npages, unsigned flags,
                              unsigned kind, bool *fresh) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  size_t backed = pm->count, moved = 0;
  bool hit = backed == npages || (flags & (UMPA_LAZY | UMPA_RESERVE));
  if (flags & UMPA_RESERVE) {
    /* In a locked process its pages without data may have been closed. */
    if (!region_open(r, idx, npages) ||
        (region_locked() &&
         !os_open(region_addr(r, idx), npages << PAGE_SHIFT, true))) {
      buddy_free_range(&umpa_buddy, r, idx, npages, false);
      errno = ENOMEM;
      return NULL;
    }
    backed = 0;
    if (pm->count) {
      /* Reserved blocks start without memory, even if the run was warm. */
      size_t n = bitmap_count(r->xbacked, idx, npages);
      release_runs(r, idx, npages, true, false);
      bitmap_clear(r->xbacked, idx, npages);
      PC_ADD(xbacked, -n);
      PC_ADD(xreleased, n);
    }
  } else if (backed < npages || (flags & UMPA_ZERO)) {
    if (page_prepare(r, idx, npages, flags, &moved)) {
      buddy_free_range(&umpa_buddy, r, idx, npages, false);
      errno = ENOMEM;
      return NULL;
    }
    backed = flags & UMPA_LAZY ? SIZE_MAX : npages;
  }
  /* Unbacked pages read as zero; cached or moved-in ones may not. */
  if (fresh) *fresh = pm->count == 0 && moved == 0;
  page_publish(pm, npages, kind, flags, backed);
  PC_ADD(xallocs, 1);
  if (hit) PC_ADD(xhits, 1);
  else PC_ADD(xmisses, 1);
  return region_addr(r, idx);
}

/* ---------------------------------------------------------------------------
 * Finding and checking blocks.
 * ------------------------------------------------------------------------- */

static struct pmeta *head_of(void *p, struct region **rp) {
  struct region *r = region_of(p);
  if (!r || ((uintptr_t)p & (PAGE_SIZE - 1))) return NULL;
  *rp = r;
  return &r->meta[region_index(r, p)];
}

static const char *misuse(struct pmeta *pm, size_t npages, unsigned kind) {
  if (!pm) return "pointer was not allocated by umpa's page layer";
  uint8_t tag = atomic_load_explicit(&pm->xtag, memory_order_acquire);
  if (PM_STATE(tag) == PM_FREE || PM_STATE(tag) == PM_NONE)
    return "block is not allocated (double free or interior pointer)";
  if (PM_STATE(tag) == PM_BUSY) return "block is being freed by another call";
  if (pm->kind != kind) return "block belongs to another part of umpa";
  if (pm->count != npages) return "size does not match the block's size";
  return NULL;
}

struct pmeta *page_check_block(void *p, size_t npages, unsigned kind,
                               const char *who) {
  struct region *r;
  struct pmeta *pm = head_of(p, &r);
  const char *why = misuse(pm, npages, kind);
  if (why)
    umpa_fatal("umpa: %s(%p, %zu pages): %s\n", who, p, npages, why);
  return pm;
}

struct pmeta *page_block_containing(void *p, size_t npages) {
  struct region *r = region_of(p);
  if (!r || ((uintptr_t)p & (PAGE_SIZE - 1)) || npages == 0) return NULL;
  size_t idx = region_index(r, p);
  if (npages > r->mapped - idx) return NULL;
  size_t h = bitmap_find_last_set(r->xheads, idx);
  if (h == SIZE_MAX) return NULL;
  struct pmeta *pm = &r->meta[h];
  if (PM_STATE(atomic_load_explicit(&pm->xtag, memory_order_acquire)) !=
      PM_USED)
    return NULL;
  if (h + pm->count < idx + npages) return NULL;
  return pm;
}

UMPA_HOT
struct pmeta *page_split(struct pmeta *pm, size_t keep) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  struct pmeta *tail = &r->meta[idx + keep];
  tail->region = r;
  tail->count = pm->count - (uint32_t)keep;
  tail->kind = pm->kind;
  tail->flags = pm->flags;
  pm->count = (uint32_t)keep;
  bitmap_set_bit(r->xheads, idx + keep);
  atomic_store_explicit(&tail->xtag, PM_TAG(PM_USED, 0), memory_order_release);
  return tail;
}

UMPA_HOT
void page_join(struct pmeta *a, struct pmeta *b) {
  struct region *r = a->region;
  size_t ib = pmeta_index(b);
  a->count += b->count;
  if (!(b->flags & PMF_FULL)) a->flags &= (uint8_t)~PMF_FULL;
  a->flags |= (uint8_t)(b->flags & PMF_LOOSE);
  bitmap_clear_bit(r->xheads, ib);
  atomic_store_explicit(&b->xtag, PM_TAG(PM_NONE, 0), memory_order_relaxed);
}

/* Return a taken-out block's pages to the buddy and the cache. */
UMPA_HOT
void page_give_back(struct pmeta *pm, size_t npages, bool enforce) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  bitmap_clear_bit(r->xheads, idx);
  if (pm->flags & PMF_UNKNOWN) page_refresh_backed(r, idx, npages);
  PC_ADD(xin_use, -npages);
  buddy_free_range(&umpa_buddy, r, idx, npages, (pm->flags & PMF_FULL) != 0);
  if (enforce) cache_enforce();
}

UMPA_HOT
void page_free_ex(void *p, size_t npages, unsigned kind, const char *who,
                  bool enforce) {
  struct region *r;
  struct pmeta *pm = head_of(p, &r);
  uint8_t used = PM_TAG(PM_USED, 0);
  /* The CAS makes exactly one of two racing frees of a block win. */
  if (!pm || pm->kind != kind || pm->count != npages ||
      !atomic_compare_exchange_strong_explicit(&pm->xtag, &used,
                                               PM_TAG(PM_BUSY, 0),
                                               memory_order_acquire,
                                               memory_order_relaxed)) {
    const char *why = misuse(pm, npages, kind);
    umpa_fatal("umpa: %s(%p, %zu pages): %s\n", who, p, npages,
               why ? why : "block is being freed by another call");
  }
  PC_ADD(xfrees, 1);
  page_give_back(pm, npages, enforce);
}

/* ---------------------------------------------------------------------------
 * The public calls.
 * ------------------------------------------------------------------------- */

#define PUBLIC_FLAGS (UMPA_ZERO | UMPA_LAZY | UMPA_HUGE | UMPA_RESERVE)

void *userpage_malloc(size_t size, unsigned flags) {
  if (size == 0 || (flags & ~PUBLIC_FLAGS)) {
    errno = EINVAL;
    return NULL;
  }
  if (size > MAX_REQUEST_PAGES << PAGE_SHIFT) {
    errno = ENOMEM;
    return NULL;
  }
  return page_alloc(pages_of(size), flags, KIND_PAGE);
}

void userpage_free(void *p, size_t size) {
  if (!p) return;
  page_ready();
  page_free(p, pages_of(size), KIND_PAGE, "userpage_free");
}

UMPA_HOT
static void *shrink(void *p, struct pmeta *pm, size_t old, size_t new) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  bool full = (pm->flags & PMF_FULL) != 0;
  if (pm->flags & PMF_UNKNOWN) page_refresh_backed(r, idx + new, old - new);
  pm->count = (uint32_t)new;
  if (!full && bitmap_count(r->xbacked, idx, new) == new)
    pm->flags = (uint8_t)((pm->flags & ~PMF_UNKNOWN) | PMF_FULL);
  PC_ADD(xin_use, -(old - new));
  buddy_free_range(&umpa_buddy, r, idx + new, old - new, full);
  cache_enforce();
  return p;
}

static void *grow_in_place(void *p, struct pmeta *pm, size_t old, size_t new,
                           unsigned flags) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), n = new - old;
  long backed = buddy_claim(&umpa_buddy, r, idx + old, n);
  if (backed < 0) return NULL;
  /* A fully backed extension (the cache) needs no bitmap walk at all. */
  if ((size_t)backed < n || (flags & UMPA_ZERO)) {
    if (page_prepare(r, idx + old, n, flags, NULL)) {
      buddy_free_range(&umpa_buddy, r, idx + old, n, false);
      return NULL;
    }
    if (!(flags & UMPA_LAZY)) backed = (long)n;
  }
  pm->count = (uint32_t)new;
  if ((size_t)backed < n) {
    pm->flags &= (uint8_t)~PMF_FULL;
    pm->flags |= PMF_UNKNOWN; /* lazy growth: the owner may touch it */
  }
  PC_ADD(xin_use, n);
  PC_ADD(xgrow_in_place, 1);
  return p;
}

void *page_resize(void *p, struct pmeta *pm, size_t old, size_t new,
                  unsigned flags) {
  if (new == old) return p;
  if (new < old) return shrink(p, pm, old, new);
  if (commit_refused(new - old, flags)) {
    errno = ENOMEM;
    return NULL;
  }
  /* The grown part of a reserved block stays unpopulated. */
  if (flags & UMPA_RESERVE)
    flags = (flags & ~(unsigned)UMPA_RESERVE) | UMPA_LAZY;
  void *q = grow_in_place(p, pm, old, new, flags);
  if (q) return q;
  if (flags & UMPA_NOMOVE) {
    errno = ENOMEM;
    return NULL;
  }
  q = remap_grow(p, pm, old, new, flags);
  if (!q) errno = ENOMEM;
  return q;
}

void *userpage_realloc(void *p, size_t old_size, size_t new_size,
                       unsigned flags) {
  if (!p) return userpage_malloc(new_size, flags & ~UMPA_NOMOVE);
  if (flags & ~(PUBLIC_FLAGS | UMPA_NOMOVE)) {
    errno = EINVAL;
    return NULL;
  }
  if (new_size == 0) {
    userpage_free(p, old_size);
    return NULL;
  }
  page_ready();
  size_t old = pages_of(old_size);
  struct pmeta *pm = page_check_block(p, old, KIND_PAGE, "userpage_realloc");
  if (new_size > MAX_REQUEST_PAGES << PAGE_SHIFT) {
    errno = ENOMEM;
    return NULL;
  }
  return page_resize(p, pm, old, pages_of(new_size), flags);
}

/* Commit/release take any page range inside one allocated block. */
static struct pmeta *range_block(void *p, size_t size, size_t *idx,
                                 size_t *n) {
  page_ready();
  *n = pages_of(size);
  struct pmeta *pm = p ? page_block_containing(p, *n) : NULL;
  if (!pm) {
    errno = EINVAL;
    return NULL;
  }
  *idx = region_index(pm->region, p);
  return pm;
}

int userpage_commit(void *p, size_t size) {
  size_t idx, n;
  struct pmeta *pm = range_block(p, size, &idx, &n);
  if (!pm) return -1;
  struct region *r = pm->region;
  size_t populated = 0;
  uint64_t faults = 0;
  int err = 0;
  for (size_t i = idx, end = idx + n; i < end;) {
    size_t e, s = bitmap_run(r->xbacked, i, end, false, &e);
    if (s == end) break;
    uint64_t f = 0;
    /* An unknown block's clear bits may hide pages the owner wrote. */
    err = os_populate(region_addr(r, s), (e - s) << PAGE_SHIFT,
                      !(pm->flags & PMF_UNKNOWN), &f);
    faults += f;
    if (err) break;
    bitmap_set(r->xbacked, s, e - s);
    region_back_meta(r, s, e - s);
    populated += e - s;
    i = e;
  }
  PC_ADD(xpopulated, populated);
  PC_ADD(xbacked, populated);
  PC_ADD(xfaults, faults);
  size_t head = pmeta_index(pm);
  if (bitmap_count(r->xbacked, head, pm->count) == pm->count)
    pm->flags = PMF_FULL;
  if (err) {
    errno = ENOMEM;
    return -1;
  }
  return 0;
}

/* The memory of pages [idx, idx+n) of pm's block, `was` of them backed,
 * has been given back: their pages now read as zero. */
static void forget_backed(struct pmeta *pm, size_t idx, size_t n, size_t was) {
  bitmap_clear(pm->region->xbacked, idx, n);
  PC_ADD(xbacked, -was);
  PC_ADD(xreleased, was);
  pm->flags &= (uint8_t)~PMF_FULL;
}

void page_release_block(struct pmeta *pm, bool leaving) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), n = pm->count;
  size_t was = bitmap_count(r->xbacked, idx, n);
  if (!was) return;
  release_runs(r, idx, n, true, leaving && region_locked());
  forget_backed(pm, idx, n, was);
}

/* The fresh mapping that heals VMAs costs 2.5-4 us more than
 * MADV_DONTNEED for a run of 1 to 64 pages (a mapping replaced is a VMA
 * split and merged again), and a region nothing was moved in has no
 * split VMA to heal: Figure 7 through malloc made 805 such mappings, the
 * page cache trimming its runs to its limit, most of them on the frees of
 * large blocks. */
UMPA_HOT
void page_release_free(struct region *r, size_t idx, size_t n) {
  void *p = region_addr(r, idx);
  if (region_locked()) os_close(p, n << PAGE_SHIFT, r->thp);
  else if (atomic_load_explicit(&r->xmoved, memory_order_relaxed))
    os_heal(p, n << PAGE_SHIFT, r->thp);
  else os_release(p, n << PAGE_SHIFT);
}

static void release_range(struct pmeta *pm, void *p, size_t idx, size_t n) {
  size_t was = bitmap_count(pm->region->xbacked, idx, n);
  /* The owner may have touched unbacked pages too: drop the whole range. */
  os_release(p, n << PAGE_SHIFT);
  forget_backed(pm, idx, n, was);
  /* And it keeps the block, so it may write them again (a superblock
   * trimmed by malloc_trim hands their blocks out again): the bits are a
   * guess from now on, and the block's free must ask the kernel.  Without
   * this, a block that had been fully backed left pages with old contents
   * marked as having no memory, and UMPA_ZERO (calloc, a superblock taken
   * as never written) handed them out uncleared: "calloc not zero" in
   * test_mt_malloc_stress, about one run in a hundred. */
  pm->flags |= PMF_UNKNOWN;
}

int userpage_release(void *p, size_t size) {
  size_t idx, n;
  struct pmeta *pm = range_block(p, size, &idx, &n);
  if (!pm) return -1;
  release_range(pm, p, idx, n);
  return 0;
}

void page_release_pages(void *p, size_t npages) {
  struct pmeta *pm = page_block_containing(p, npages);
  if (pm) release_range(pm, p, region_index(pm->region, p), npages);
}
