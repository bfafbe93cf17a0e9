/*
 * region.c - address-space regions and the map from addresses to them.
 *
 * A region is a reservation aligned to its own size (a power of two, 1 GiB
 * by default), so that every buddy run inside it is naturally aligned:
 * runs of 2 MiB and more are 2 MiB aligned (whole page tables move on
 * mremap, THP can back them) and 64 KiB runs are 64 KiB aligned.  A short
 * region (region_create_short) reserves only the front of its size.
 * Regions are reserved inaccessible and opened in 2 MiB pieces as blocks
 * are handed out (region_open), so that mlockall locks what is used.
 *
 * The region map answers "does umpa own this address, and which region?"
 * without touching the address itself, so a foreign pointer is recognised
 * safely.  One slot per GiB of the 47-bit address space (1 MiB of .bss,
 * backed only where used); a slot that holds regions smaller than a GiB
 * (made when a tight RLIMIT_AS forbids big reservations) points to a
 * second table with one slot per 4 MiB.
 */
#include "internal.h"

#include <errno.h>

struct subtable {
  struct region *_Atomic r[MAP_SUB_SLOTS];
};

/* The first subtable: a process whose regions are all smaller than a GiB
 * needs one, and a mapping of its own cost a system call and a VMA. */
static struct subtable first_subtable;
static bool first_subtable_used; /* growth lock */

/* Low bit set: a subtable pointer; otherwise a region pointer (or 0). */
UMPA_BIG_BSS static _Atomic uintptr_t region_map[MAP_SLOTS];
static struct region *_Atomic regions_head;
/* The fast superblock map (see superblock_of in internal.h): one byte per
 * 64 KiB of the address space, set up with the first region. */
struct sb_fast umpa_sb_fast;
static _Atomic size_t reserved_bytes, metadata_bytes;
static _Atomic uint64_t regions_made, regions_retired;
_Atomic uint32_t umpa_retire_gen;

/* The metadata mappings of retired regions, released (they read zero) and
 * kept for the next regions of their size: a stale pointer into one (a
 * walk that began before, a region_of racing an invalid free) still reads
 * mapped memory, and a program that fills and empties its address space
 * again and again reserves no more of them than it had regions at once.
 * Before, each retired region left its mapping behind, about 1 % of the
 * region, and after 180 such cycles under a 600 MB limit a 64 MiB malloc
 * failed.  Growth lock held. */
#define META_KEEP 64
static struct {
  char *m;
  size_t size;
} meta_kept[META_KEEP];
static unsigned meta_nkept;

static char *meta_take(size_t size) {
  for (unsigned i = meta_nkept; i-- > 0;)
    if (meta_kept[i].size == size) {
      char *m = meta_kept[i].m;
      meta_kept[i] = meta_kept[--meta_nkept];
      return m;
    }
  return os_map(size);
}

/* Give back a metadata mapping that reads zero. */
static void meta_give(char *m, size_t size) {
  if (meta_nkept < META_KEEP) {
    meta_kept[meta_nkept].m = m;
    meta_kept[meta_nkept++].size = size;
  } else {
    os_unmap(m, size);
  }
}

UMPA_HOT
struct region *region_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  if (a >> ADDRESS_BITS) return NULL;
  uintptr_t e = atomic_load_explicit(&region_map[a >> MAP_SLOT_SHIFT],
                                     memory_order_acquire);
  if (e & 1) {
    struct subtable *t = (struct subtable *)(e & ~(uintptr_t)1);
    e = (uintptr_t)atomic_load_explicit(
        &t->r[(a >> MAP_SUB_SHIFT) & (MAP_SUB_SLOTS - 1)],
        memory_order_acquire);
  }
  struct region *r = (struct region *)e;
  if (r && a >= r->base && a - r->base < (r->mapped << PAGE_SHIFT)) return r;
  return NULL;
}

/* The fast map's window may span at most this many granules (bytes of the
 * map, 4 TiB of address space): its gaps between regions are readable,
 * and mlockall locks what is readable.  Regions are reserved next to one
 * another, so the window is normally little more than they are. */
#define SB_WINDOW_MAX ((uint64_t)64 << 20)
_Static_assert(ADDRESS_BITS - GRANULE_SHIFT <= 32 && SB_WINDOW_MAX >> 32 == 0,
               "the window's lo and len fit one word (umpa_sb_fast.window)");

/* Open r's part of the fast superblock map for writing, and the window
 * around it for reading (reserving the map with the first region).
 * Without it r's superblocks are found through the region map: slower,
 * still correct.  Growth lock held. */
static void fast_map_open(struct region *r) {
  const size_t len = (size_t)1 << (ADDRESS_BITS - GRANULE_SHIFT);
  /* Under an address-space limit the 2 GiB would be taken from the
   * program's budget: only reserve it when it is a small part of that. */
  if (!umpa_sb_fast.map && os_address_space_limit() / 16 >= len)
    umpa_sb_fast.map = os_reserve(len);
  if (!umpa_sb_fast.map) return;
  uint64_t win =
      atomic_load_explicit(&umpa_sb_fast.window, memory_order_relaxed);
  uint64_t w = sb_window_len(win), wlo = sb_window_lo(win), whi = wlo + w;
  uint64_t glo = r->base >> GRANULE_SHIFT;
  uint64_t ghi = glo + (r->mapped >> (GRANULE_SHIFT - PAGE_SHIFT));
  /* The map in whole pages: glo and ghi rounded out to PAGE_SIZE bytes. */
  glo &= ~(uint64_t)(PAGE_SIZE - 1);
  ghi = (ghi + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
  uint64_t nlo = w && wlo < glo ? wlo : glo, nhi = w && whi > ghi ? whi : ghi;
  if (nhi - nlo > SB_WINDOW_MAX) return;
  char *m = (char *)umpa_sb_fast.map;
  /* The gap between the old window and r is opened for reading, then r's
   * part for writing; the new window is published last, so a reader
   * inside it only ever reads opened pages. */
  bool ok = true;
  if (w && ghi < wlo) ok = os_open(m + ghi, wlo - ghi, false);
  if (w && whi < glo) ok = os_open(m + whi, glo - whi, false);
  r->fast_map = ok && os_open(m + glo, ghi - glo, true) &&
                os_populate(m + glo, ghi - glo, true, NULL) == 0;
  if (r->fast_map)
    atomic_store_explicit(&umpa_sb_fast.window, (nhi - nlo) << 32 | nlo,
                          memory_order_release);
}

/* r's superblock map: its part of the fast map when it has one, else its
 * own.  Not both: the own map of a fast-mapped region would be written
 * on every new and every destroyed superblock and read by nothing, and
 * its page was a cold one to write: in Figure 7, 7-11 us in a third of
 * the new superblocks of 4-8 KiB classes on the 2-core VM, with no page
 * fault counted (a page not touched for a while costs that there). */
static inline _Atomic uint8_t *sb_map_of(struct region *r) {
  return r->fast_map ? &umpa_sb_fast.map[r->base >> GRANULE_SHIFT]
                     : r->xsb_map;
}

/* Write `shift` into the superblock map for the superblock of `pages`
 * pages at start (0: none there). */
static void set_superblock_shift(void *start, size_t pages, uint8_t shift) {
  struct region *r = region_of(start);
  _Atomic uint8_t *map = sb_map_of(r);
  size_t g = ((uintptr_t)start - r->base) >> GRANULE_SHIFT;
  size_t n = pages >> (GRANULE_SHIFT - PAGE_SHIFT);
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&map[g + i], shift, memory_order_release);
}

UMPA_HOT
void region_map_superblock(void *start, size_t pages) {
  set_superblock_shift(start, pages, (uint8_t)sb_shift_of(pages));
}

UMPA_HOT
void region_unmap_superblock(void *start, size_t pages) {
  set_superblock_shift(start, pages, 0);
}

uint8_t region_superblock_shift(struct region *r, const void *p) {
  return atomic_load_explicit(
      &sb_map_of(r)[((uintptr_t)p - r->base) >> GRANULE_SHIFT],
      memory_order_acquire);
}

/* Point the region map at r for its reserved pages: a GiB slot that r
 * covers whole directly, one it covers in part through the slot's table
 * of 4 MiB slots, which other regions may share.  The tables are made
 * first, so that a failure leaves no entry behind.  Growth lock held. */
static bool map_register(struct region *r) {
  const uintptr_t slot_size = (uintptr_t)1 << MAP_SLOT_SHIFT;
  const uintptr_t end = r->base + (r->mapped << PAGE_SHIFT);
  for (int pass = 0; pass < 2; pass++) {
    for (uintptr_t a = r->base; a < end;) {
      size_t slot = a >> MAP_SLOT_SHIFT;
      uintptr_t slot_end = (a | (slot_size - 1)) + 1;
      if ((a & (slot_size - 1)) == 0 && end >= slot_end) {
        if (pass)
          atomic_store_explicit(&region_map[slot], (uintptr_t)r,
                                memory_order_release);
        a = slot_end;
        continue;
      }
      uintptr_t e =
          atomic_load_explicit(&region_map[slot], memory_order_acquire);
      if (e == 0) {
        struct subtable *t = first_subtable_used ? os_map(sizeof *t)
                                                 : &first_subtable;
        if (!t) return false;
        first_subtable_used = true;
        atomic_fetch_add(&metadata_bytes, sizeof *t);
        e = (uintptr_t)t | 1;
        atomic_store_explicit(&region_map[slot], e, memory_order_release);
      }
      struct subtable *t = (struct subtable *)(e & ~(uintptr_t)1);
      uintptr_t stop = end < slot_end ? end : slot_end;
      for (; a < stop; a += (uintptr_t)1 << MAP_SUB_SHIFT)
        if (pass)
          atomic_store_explicit(
              &t->r[(a >> MAP_SUB_SHIFT) & (MAP_SUB_SLOTS - 1)], r,
              memory_order_release);
      a = stop;
    }
  }
  return true;
}

static size_t round_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

/* Make a region of 2^shift bytes, the first `mapped` pages of it reserved
 * at an address aligned to `align`, or NULL. */
static struct region *region_try(unsigned shift, size_t mapped,
                                 size_t align) {
  size_t size = (size_t)1 << shift;
  size_t npages = size >> PAGE_SHIFT;
  size_t reserve = mapped << PAGE_SHIFT;
  size_t bitmap_bytes = round_up((npages + 63) / 64 * 8, 64);
  size_t meta_pages = pages_of(npages * sizeof(struct pmeta));
  size_t meta_bitmap_bytes = round_up((meta_pages + 63) / 64 * 8, 64);
  size_t open_bytes = round_up(((npages >> OPEN_ORDER) + 63) / 64 * 8, 64);
  size_t sb_map_bytes =
      round_up(npages >> (GRANULE_SHIFT - PAGE_SHIFT), PAGE_SIZE);
  size_t cached_bytes = round_up(npages, PAGE_SIZE);
  /* Header and bitmaps (backed at once), the superblock map (backed at
   * once when the region has no part of the fast map, else unused), the
   * large cache's byte map and the pmeta array (backed as used), each part
   * starting on its own page.  The byte map is 8 times a bitmap's size,
   * and a process that caches no large block never touches it. */
  size_t hot_bytes = round_up(round_up(sizeof(struct region), 64) +
                                  2 * bitmap_bytes + meta_bitmap_bytes +
                                  open_bytes,
                              PAGE_SIZE);
  size_t cached_off = hot_bytes + sb_map_bytes;
  size_t meta_off = cached_off + cached_bytes;
  size_t meta_size = meta_off + meta_pages * PAGE_SIZE;
  char *m = meta_take(meta_size);
  if (!m) return NULL;
  void *base = os_reserve_aligned(reserve, align, m);
  if (!base) {
    meta_give(m, meta_size); /* nothing written */
    return NULL;
  }
  /* The header and bitmaps are read on every call: back them now, so that
   * cache hits never fault on the layer's own bookkeeping. */
  if (os_populate(m, hot_bytes, true, NULL) != 0) goto fail;
  struct region *r = (struct region *)m;
  r->base = (uintptr_t)base;
  r->npages = npages;
  r->mapped = mapped;
  r->order = shift - PAGE_SHIFT;
  r->thp = umpa_opt.thp != 0;
  r->xbacked = (_Atomic uint64_t *)(m + round_up(sizeof(struct region), 64));
  r->xheads = (_Atomic uint64_t *)((char *)r->xbacked + bitmap_bytes);
  r->xmeta_backed = (_Atomic uint64_t *)((char *)r->xheads + bitmap_bytes);
  r->xopen = (_Atomic uint64_t *)((char *)r->xmeta_backed + meta_bitmap_bytes);
  r->xsb_map = (_Atomic uint8_t *)(m + hot_bytes);
  r->xcached = (_Atomic uint8_t *)(m + cached_off);
  r->meta = (struct pmeta *)(m + meta_off);
  r->meta_size = meta_size;
  /* The fast map first: the region's own superblock map is only used, and
   * backed (16 KiB per GiB: each page covers 256 MiB, where superblocks
   * cut from freed large blocks land anywhere, and its faults were two of
   * the three a new superblock took in Figure 7), without it.  A window
   * opened for a region that then fails reads zero, as gaps do. */
  fast_map_open(r);
  if ((!r->fast_map && os_populate(m + hot_bytes, sb_map_bytes, true, NULL)) ||
      !map_register(r))
    goto fail;
  if (r->thp) os_advise_huge(base, reserve);
  r->next = atomic_load_explicit(&regions_head, memory_order_relaxed);
  atomic_store_explicit(&regions_head, r, memory_order_release);
  atomic_fetch_add(&reserved_bytes, reserve);
  atomic_fetch_add(&metadata_bytes, meta_size);
  atomic_fetch_add(&regions_made, 1);
  return r;
fail:
  os_unmap(base, reserve);
  os_release(m, meta_size);
  meta_give(m, meta_size);
  return NULL;
}

/* Unless UMPA_REGION_SIZE is given, the first region is 64 MiB and each
 * next one twice the last, up to the 1 GiB default: a region's bitmaps are
 * populated when it is made (64 KiB per GiB), and a short-lived process
 * such as each of git's paid 60 us more to start with a 1 GiB region.
 * Under RLIMIT_AS, regions are at most a 32nd of the limit: the free part
 * of each counts against it, and Python's 300 MiB bytearray under a
 * 390 MiB limit did not fit beside a 64 MiB first region. */
struct region *region_create(unsigned order) {
  unsigned need = order + PAGE_SHIFT;
  if (need < REGION_MIN_SHIFT) need = REGION_MIN_SHIFT;
  unsigned want = umpa_opt.region_shift;
  if (!umpa_opt.region_size_fixed) {
    uint64_t made = atomic_load(&regions_made);
    if (REGION_FIRST_SHIFT + made < want)
      want = REGION_FIRST_SHIFT + (unsigned)made;
    size_t limit = os_address_space_limit();
    if (limit != SIZE_MAX) {
      unsigned cap = limit >> 5 ? log2_floor(limit >> 5) : 0;
      if (cap < REGION_MIN_SHIFT) cap = REGION_MIN_SHIFT;
      if (cap < want) want = cap;
    }
  }
  unsigned shift = want > need ? want : need;
  int saved = errno;
  /* Under RLIMIT_AS or a small vm.max_map_count a big reservation can fail
   * while a smaller one still fits: halve down to what the request needs. */
  for (;; shift--) {
    size_t size = (size_t)1 << shift;
    struct region *r = region_try(shift, size >> PAGE_SHIFT, size);
    /* The size the request needs, at no aligned address: any 4 MiB
     * boundary does, as for a short region.  Under RLIMIT_AS the 160 MiB
     * hole that retired regions left, aligned to 64 MiB only, could not
     * take a 128 MiB region, nor the 256 MiB that aligning one costs. */
    if (!r && shift == need && size > ((size_t)1 << MAP_SUB_SHIFT))
      r = region_try(shift, size >> PAGE_SHIFT, (size_t)1 << MAP_SUB_SHIFT);
    if (r) {
      errno = saved;
      return r;
    }
    if (shift == need) break;
  }
  errno = ENOMEM;
  return NULL;
}

/* Under `ulimit -v 400000` a 300 MiB block needed a 512 MiB region, and
 * failed where glibc's mmap of 300 MiB succeeded.  The region keeps its
 * power-of-two size for the buddy's arithmetic (its metadata mapping is
 * sized for all of it, 0.8 % of that in address space, never populated
 * past `mapped`), but only its first `mapped` pages are reserved; if no
 * address aligned to its size is free, any 4 MiB boundary does, since runs
 * of 4 MiB and less (every superblock, every huge page) stay aligned. */
struct region *region_create_short(size_t npages) {
  const size_t unit = (size_t)1 << (MAP_SUB_SHIFT - PAGE_SHIFT);
  size_t mapped = round_up(npages, unit);
  unsigned shift = log2_ceil(mapped) + PAGE_SHIFT;
  size_t size = (size_t)1 << shift;
  if (mapped == size >> PAGE_SHIFT) { /* no shorter than what failed */
    errno = ENOMEM;
    return NULL;
  }
  int saved = errno;
  struct region *r = region_try(shift, mapped, size);
  if (!r) r = region_try(shift, mapped, (size_t)1 << MAP_SUB_SHIFT);
  errno = r ? saved : ENOMEM;
  return r;
}

/* umpa_locks.region_open serialises opening, so that two threads never
 * open the same piece (the second mprotect would be harmless, but it costs
 * a system call).  A mutex: under mlockall an opening populates its piece,
 * milliseconds. */
static _Atomic bool locked;
static _Atomic size_t opened_bytes; /* written under umpa_locks.region_open */

size_t region_opened_bytes(void) {
  return atomic_load_explicit(&opened_bytes, memory_order_relaxed);
}

bool region_locked(void) {
  return atomic_load_explicit(&locked, memory_order_relaxed);
}

bool region_open(struct region *r, size_t idx, size_t n) {
  size_t first = idx >> OPEN_ORDER, end = ((idx + n - 1) >> OPEN_ORDER) + 1;
  if (UMPA_LIKELY(bitmap_find(r->xopen, first, end - first, false) == end))
    return true;
  bool ok = true;
  void *opened = NULL;
  ulock_acquire(&umpa_locks.region_open);
  for (size_t i = first; i < end && ok;) {
    size_t e, s = bitmap_run(r->xopen, i, end, false, &e);
    if (s == end) break;
    size_t lo = s << OPEN_ORDER, hi = e << OPEN_ORDER;
    if (hi > r->mapped) hi = r->mapped; /* a short region's last piece */
    ok = os_open(region_addr(r, lo), (hi - lo) << PAGE_SHIFT, true);
    if (ok) {
      if (!opened) opened = region_addr(r, lo);
      bitmap_set(r->xopen, s, e - s);
      atomic_store_explicit(&opened_bytes,
                            region_opened_bytes() + ((hi - lo) << PAGE_SHIFT),
                            memory_order_relaxed);
    }
    i = e;
  }
  /* Once per opening, which comes once per 2 MiB of address space used.
   * The pieces were never accessible, so nothing wrote them: if the first
   * one has memory, the kernel populated it because the mapping is locked
   * (mlockall's MCL_CURRENT marked the reservation, or MCL_FUTURE a
   * region reserved after it).  One mincore; mapping a page of its own to
   * look at took three system calls and 8 us. */
  if (opened && !region_locked() && os_page_resident(opened))
    atomic_store_explicit(&locked, true, memory_order_relaxed);
  ulock_release(&umpa_locks.region_open);
  return ok;
}

UMPA_FORK
void region_lock_all(void) { ulock_acquire_fork(&umpa_locks.region_open); }
UMPA_FORK
void region_unlock_all(void) { ulock_release_fork(&umpa_locks.region_open); }

UMPA_HOT
void region_back_meta(struct region *r, size_t idx, size_t n) {
  const size_t per_page = PAGE_SIZE / sizeof(struct pmeta);
  size_t first = idx / per_page, end = (idx + n + per_page - 1) / per_page;
  for (size_t i = first; i < end;) {
    size_t e, s = bitmap_run(r->xmeta_backed, i, end, false, &e);
    if (s == end) break;
    /* Best effort: if this fails the entries are faulted in on use. */
    if (os_populate((char *)r->meta + s * PAGE_SIZE, (e - s) * PAGE_SIZE,
                    false, NULL) == 0)
      bitmap_set(r->xmeta_backed, s, e - s);
    i = e;
  }
}

/* Undo map_register: the slots that point at r read empty again, so that
 * a region reserved there later registers as a new one would. */
static void map_unregister(struct region *r) {
  const uintptr_t slot_size = (uintptr_t)1 << MAP_SLOT_SHIFT;
  const uintptr_t end = r->base + (r->mapped << PAGE_SHIFT);
  for (uintptr_t a = r->base; a < end;) {
    size_t slot = a >> MAP_SLOT_SHIFT;
    uintptr_t slot_end = (a | (slot_size - 1)) + 1;
    uintptr_t e = atomic_load_explicit(&region_map[slot], memory_order_acquire);
    if (e == (uintptr_t)r) {
      atomic_store_explicit(&region_map[slot], 0, memory_order_release);
      a = slot_end;
      continue;
    }
    uintptr_t stop = end < slot_end ? end : slot_end;
    if (e & 1) {
      struct subtable *t = (struct subtable *)(e & ~(uintptr_t)1);
      for (; a < stop; a += (uintptr_t)1 << MAP_SUB_SHIFT) {
        struct region *_Atomic *at =
            &t->r[(a >> MAP_SUB_SHIFT) & (MAP_SUB_SLOTS - 1)];
        if (atomic_load_explicit(at, memory_order_relaxed) == r)
          atomic_store_explicit(at, NULL, memory_order_release);
      }
    }
    a = stop;
  }
}

void region_retire(struct region *r) {
  struct region *head = atomic_load_explicit(&regions_head,
                                             memory_order_relaxed);
  if (head == r) {
    atomic_store_explicit(&regions_head, r->next, memory_order_release);
  } else {
    struct region *p = head;
    while (p && p->next != r) p = p->next;
    if (p) p->next = r->next;
  }
  map_unregister(r);
  /* The fast map's bytes for r: zero once its last superblock went, but a
   * mapping someone else makes there must never read as one of ours. */
  if (r->fast_map) {
    _Atomic uint8_t *map = sb_map_of(r);
    for (size_t g = 0; g < r->mapped >> (GRANULE_SHIFT - PAGE_SHIFT); g++)
      if (atomic_load_explicit(&map[g], memory_order_relaxed))
        atomic_store_explicit(&map[g], 0, memory_order_release);
  }
  size_t bytes = r->mapped << PAGE_SHIFT, open = 0;
  size_t pieces = (r->mapped + ((size_t)1 << OPEN_ORDER) - 1) >> OPEN_ORDER;
  for (size_t i = 0; i < pieces; i++)
    if (bitmap_test(r->xopen, i)) {
      size_t lo = i << OPEN_ORDER, hi = (i + 1) << OPEN_ORDER;
      open += ((hi > r->mapped ? r->mapped : hi) - lo) << PAGE_SHIFT;
    }
  ulock_acquire(&umpa_locks.region_open);
  atomic_store_explicit(&opened_bytes, region_opened_bytes() - open,
                        memory_order_relaxed);
  ulock_release(&umpa_locks.region_open);
  os_unmap((void *)r->base, bytes);
  /* Hints into the metadata (a thread's last resized block) go stale. */
  atomic_fetch_add_explicit(&umpa_retire_gen, 1, memory_order_release);
  size_t meta_size = r->meta_size;
  atomic_fetch_sub(&reserved_bytes, bytes);
  atomic_fetch_sub(&metadata_bytes, meta_size);
  atomic_fetch_add(&regions_retired, 1);
  /* All of it, header included: a stale reader sees a region of no pages
   * (region_of: not ours), no run, no head. */
  os_release((char *)r, meta_size);
  meta_give((char *)r, meta_size);
}

uint64_t region_retired_count(void) { return atomic_load(&regions_retired); }

struct region *region_list(void) {
  return atomic_load_explicit(&regions_head, memory_order_acquire);
}
size_t region_reserved_bytes(void) { return atomic_load(&reserved_bytes); }
size_t region_metadata_bytes(void) { return atomic_load(&metadata_bytes); }
uint64_t region_count(void) { return atomic_load(&regions_made); }
