/*
 * remap.c - moving pages instead of copying bytes: realloc by move and
 * umpa_page_swap.
 *
 * mremap with MREMAP_DONTUNMAP moves a range's page-table entries to a new
 * address and leaves the old range mapped but empty, so the reservation
 * never has a hole another mmap could fall into.  Moving onto a range that
 * holds pages would free those pages (a cost of ~250 ns per page here), so
 * when the destination is backed its pages are first parked in scratch
 * address space and then moved to the source: an exchange, which keeps the
 * cache.  After a single move the emptied source is re-mapped fresh
 * (os_heal) so that the kernel can merge the VMAs that the move split.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define SMALL_MOVE_PAGES 16 /* 64 KiB */

/* A region pages were moved in or out of: its releases heal VMAs from
 * now on (page_release_free).  Scratch space is no region. */
static void moved(void *p) {
  struct region *r = region_of(p);
  if (r && !atomic_load_explicit(&r->xmoved, memory_order_relaxed))
    atomic_store_explicit(&r->xmoved, true, memory_order_relaxed);
}

static int move(void *src, void *dst, size_t n) {
  int err = os_move(src, dst, n << PAGE_SHIFT);
  if (!err) {
    PC_ADD(xremaps, 1);
    PC_ADD(xpages_remapped, n);
    moved(src);
    moved(dst);
  }
  return err;
}

UMPA_HOT
size_t remap_fill(struct region *r, size_t idx, size_t n) {
  const unsigned min_order = HUGE_ORDER; /* 2 MiB: whole page tables move,
                                            and VMAs split at most once per
                                            2 MiB */
  if (n < ((size_t)1 << min_order) ||
      atomic_load_explicit(&umpa_buddy.xbacked_free, memory_order_relaxed) <
          ((size_t)1 << min_order))
    return 0;
  size_t filled = 0;
  for (size_t pos = idx, end = idx + n; pos < end;) {
    /* The largest aligned piece at pos that fits. */
    unsigned k = pos ? (unsigned)__builtin_ctzll(pos) : r->order;
    unsigned fit = log2_floor(end - pos);
    if (fit < k) k = fit;
    size_t len = (size_t)1 << k;
    if (k < min_order || bitmap_find(r->xbacked, pos, len, true) != pos + len) {
      pos += len; /* too small, or partly backed already */
      continue;
    }
    struct pmeta *src = NULL;
    unsigned got = k;
    for (; got >= min_order && !(src = buddy_alloc_warm(&umpa_buddy, got)); got--) {
    }
    if (!src) break; /* the cache holds no 2 MiB run any more */
    len = (size_t)1 << got;
    struct region *rs = src->region;
    size_t is = pmeta_index(src);
    if (move(region_addr(rs, is), region_addr(r, pos), len)) {
      buddy_free(&umpa_buddy, rs, is, got, len);
      break;
    }
    bitmap_set(r->xbacked, pos, len);
    bitmap_clear(rs->xbacked, is, len);
    region_back_meta(r, pos, len);
    page_release_free(rs, is, len);
    buddy_free(&umpa_buddy, rs, is, got, 0);
    filled += len;
    pos += len;
  }
  if (filled) cache_note_level();
  return filled;
}

int remap_exchange(struct region *rs, size_t is, struct region *rd, size_t id,
                   size_t n, bool dst_unknown) {
  void *src = region_addr(rs, is), *dst = region_addr(rd, id);
  size_t bytes = n << PAGE_SHIFT;
  if (!dst_unknown && bitmap_count(rd->xbacked, id, n) == 0)
    return remap_move_over(rs, is, rd, id, n); /* nothing to give up */
  /* Every page of the destination is moved to the source, so all of it
   * must be open: a piece never opened would carry its PROT_NONE into the
   * source, whose piece is open, and a block there would fault (a run
   * taken to grow a block into can be warm at its front and reach into a
   * piece nobody used yet). */
  if (!region_open(rd, id, n)) return ENOMEM;
  /* The destination holds pages: park them in scratch address space
   * outside the regions (so no cached page is given up for it), move the
   * source in, and move the parked pages to the source. */
  const size_t huge = (size_t)1 << HUGE_SHIFT;
  /* Aligned like the runs, so that the moves still take whole page tables. */
  void *scratch =
      os_reserve_aligned(bytes, bytes >= huge ? huge : PAGE_SIZE, NULL);
  if (!scratch) return ENOMEM;
  int err = move(dst, scratch, n);
  if (!err) {
    err = move(src, dst, n);
    if (err) {
      /* Put the destination's pages back where they were. */
      if (move(scratch, dst, n)) {
        memcpy(dst, scratch, bytes);
        PC_ADD(xcopies, 1);
      }
    } else {
      if (move(scratch, src, n)) {
        memcpy(src, scratch, bytes);
        PC_ADD(xcopies, 1);
      }
      bitmap_swap(rs->xbacked, is, rd->xbacked, id, n);
    }
  }
  os_unmap(scratch, bytes);
  return err;
}

int remap_move_over(struct region *rs, size_t is, struct region *rd,
                    size_t id, size_t n) {
  size_t gone = bitmap_count(rd->xbacked, id, n);
  void *src = region_addr(rs, is);
  int err = move(src, region_addr(rd, id), n);
  if (err) return err;
  if (gone) {
    PC_ADD(xbacked, -gone);
    PC_ADD(xreleased, gone);
  }
  bitmap_copy(rd->xbacked, id, rs->xbacked, is, n);
  bitmap_clear(rs->xbacked, is, n);
  region_back_meta(rd, id, n);
  os_heal(src, n << PAGE_SHIFT, rs->thp);
  return 0;
}

void *remap_grow(void *p, struct pmeta *pm, size_t old, size_t new,
                 unsigned flags) {
  struct region *ro = pm->region;
  size_t io = pmeta_index(pm);
  /* Small blocks go to a cold run: one remap and a few populated pages
   * cost less than parking a warm run's pages (three remaps). */
  bool small = new <= SMALL_MOVE_PAGES;
  struct pmeta *qm =
      page_take(new, (flags & UMPA_HUGE) | (small ? UMPA_LAZY : 0));
  if (!qm) return NULL;
  struct region *rn = qm->region;
  size_t in = pmeta_index(qm);
  void *q = region_addr(rn, in);
  bool warm = qm->count == new; /* every page of the new run is backed */
  /* Prepare the grown part first: if that fails the original block has
   * not been touched. */
  if ((!warm || (flags & UMPA_ZERO)) &&
      page_prepare(rn, in + old, new - old, flags, NULL)) {
    buddy_free_range(&umpa_buddy, rn, in, new, false);
    return NULL;
  }
  bool lazy = (pm->flags & PMF_UNKNOWN) || (flags & UMPA_LAZY);
  size_t backed = SIZE_MAX;
  if (remap_exchange(ro, io, rn, in, old, false) == 0) {
    /* The old range now holds the new run's former first pages. */
    if (warm && (pm->flags & PMF_FULL)) backed = new;
    pm->flags = warm ? PMF_FULL : 0;
  } else {
    /* The kernel refused the remap (vm.max_map_count): copy. */
    if (page_prepare(rn, in, old, 0, NULL)) {
      buddy_free_range(&umpa_buddy, rn, in, new, false);
      return NULL;
    }
    memcpy(q, p, old << PAGE_SHIFT);
    PC_ADD(xcopies, 1);
  }
  page_publish(qm, new, pm->kind, lazy ? UMPA_LAZY : 0, backed);
  uint8_t used = PM_TAG(PM_USED, 0);
  atomic_compare_exchange_strong(&pm->xtag, &used, PM_TAG(PM_BUSY, 0));
  page_give_back(pm, old, true);
  PC_ADD(xgrow_moved, 1);
  return q;
}

int umpa_page_swap(void *a, void *b, size_t size) {
  page_init();
  size_t n = pages_of(size);
  struct pmeta *pa = a && n ? page_block_containing(a, n) : NULL;
  struct pmeta *pb = b && n ? page_block_containing(b, n) : NULL;
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b, bytes = n << PAGE_SHIFT;
  if (!pa || !pb || (x != y && x < y + bytes && y < x + bytes)) {
    errno = EINVAL;
    return -1;
  }
  if (x == y) return 0;
  struct region *ra = pa->region, *rb = pb->region;
  size_t ia = region_index(ra, a), ib = region_index(rb, b);
  bool unknown = ((pa->flags | pb->flags) & PMF_UNKNOWN) != 0;
  if (remap_exchange(ra, ia, rb, ib, n, (pb->flags & PMF_UNKNOWN) != 0)) {
    /* The kernel refused: exchange by copying through a scratch block. */
    void *s = page_alloc(n, 0, KIND_PAGE);
    if (!s) {
      errno = ENOMEM;
      return -1;
    }
    memcpy(s, a, bytes);
    memcpy(a, b, bytes);
    memcpy(b, s, bytes);
    page_free(s, n, KIND_PAGE, "umpa_page_swap");
    size_t was = bitmap_count(ra->xbacked, ia, n) +
                 bitmap_count(rb->xbacked, ib, n);
    bitmap_set(ra->xbacked, ia, n);
    bitmap_set(rb->xbacked, ib, n);
    PC_ADD(xbacked, 2 * n - was);
    PC_ADD(xcopies, 1);
  }
  /* The flags are hints for the free path: keep them conservative. */
  bool full = (pa->flags & pb->flags & PMF_FULL) != 0;
  uint8_t f = (uint8_t)((full ? PMF_FULL : 0) | (unknown ? PMF_UNKNOWN : 0));
  pa->flags = f;
  pb->flags = f;
  return 0;
}
