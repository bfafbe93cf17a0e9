/*
 * superblock.c - superblocks: page-layer blocks cut into blocks of one size.
 *
 * A superblock belongs to one heap at a time (Hoard), so two threads'
 * blocks never share a cache line: the allocator induces no false sharing.
 * Its owner allocates and frees through the plain `free` list; any other
 * thread that frees one of its blocks pushes it on the atomic `xremote`
 * list, which the owner collects when it runs out, so a block always goes
 * back to its own superblock and producer-consumer programs stay bounded.
 *
 * A full superblock that the owner has parked is not looked at again until
 * something frees into it.  Parking sets bit 0 of `xremote` (only if no
 * remote free is waiting); the push that finds the bit set clears it and
 * bumps the bin's `xpending` counter, which the owner checks before getting
 * a new superblock.  Flag and list share one word, so the freer learns it
 * must notify in the same CAS that hands over its block, and it never
 * touches the superblock after that CAS: from then on the owner may
 * collect the block and release the superblock at any moment.
 */
#include "internal.h"

struct superblock umpa_sb_empty = {.group = SB_CURRENT};

struct superblock *superblock_new(unsigned cls, struct heap *owner) {
  const struct size_class *sc = &umpa_class[cls];
  /* Memory that is there first: a warm run of the page layer, else a piece
   * of a freed large block, else fresh pages, lazily: the pages of blocks
   * never carved cost nothing.  A fresh superblock faults its header and
   * first blocks in, at 2-10 us a fault where no page near it has memory
   * yet (Figure 7's 8-32 KiB requests). */
  bool fresh = false;
  char *start = NULL;
  if (!buddy_has_warm(&umpa_buddy, log2_ceil(sc->sb_pages)))
    start = largecache_take_aligned(sc->sb_pages, KIND_SUPERBLOCK);
  if (!start) {
    start = page_alloc_ex(sc->sb_pages, UMPA_LAZY | PAGE_WARM,
                          KIND_SUPERBLOCK, &fresh);
    if (!start) return NULL;
    heap_account_arena((ssize_t)sc->sb_pages << PAGE_SHIFT);
  }
  struct superblock *sb =
      sb_header_at((uintptr_t)start, sb_shift_of(sc->sb_pages));
  sb->free = NULL;
  atomic_store_explicit(&sb->xused, 0, memory_order_relaxed);
  sb->capacity = sc->capacity;
  sb->carved = 0;
  sb->size = sc->size;
  sb->cls = (uint8_t)cls;
  sb->group = SB_CURRENT;
  sb->lo_mark = 0;
  sb->zeroed = fresh;
  atomic_store_explicit(&sb->xaligned, 0, memory_order_relaxed);
  sb->next = sb->prev = NULL;
  sb->recip = sc->recip;
  sb->div_inv = sc->div_inv;
  sb->div_bound = umpa_opt.check ? 0 : sb->capacity;
  sb->div_shift = sc->div_shift;
  atomic_store_explicit(&sb->xremote, 0, memory_order_relaxed);
  atomic_store_explicit(&sb->xowner, owner, memory_order_relaxed);
  if (umpa_opt.check) {
    /* Cached pages hold whatever their last use left there. */
    _Atomic uint64_t *map = sb_check_map(sb, sc->sb_pages);
    for (size_t i = 0, n = (sb->capacity + 63) / 64; i < n; i++)
      atomic_store_explicit(&map[i], 0, memory_order_relaxed);
  }
  region_map_superblock(start, sc->sb_pages);
  return sb;
}

void superblock_destroy(struct superblock *sb) {
  const struct size_class *sc = &umpa_class[sb->cls];
  region_unmap_superblock(sb_start(sb), sc->sb_pages);
  page_free(sb_start(sb), sc->sb_pages, KIND_SUPERBLOCK, "free (superblock)");
  heap_account_arena(-((ssize_t)sc->sb_pages << PAGE_SHIFT));
}

struct superblock *superblock_of_slow(const void *p) {
  struct region *r = region_of(p);
  unsigned shift = r ? region_superblock_shift(r, p) : 0;
  return shift ? sb_header_at((uintptr_t)p, shift) : NULL;
}

bool superblock_carve(struct superblock *sb) {
  uint32_t left = sb->capacity - sb->carved;
  if (left == 0) return false;
  uint32_t n = umpa_class[sb->cls].carve;
  if (n > left) n = left;
  char *first = sb_blocks(sb) + (size_t)sb->carved * sb->size;
  /* Only blocks that start in the page `first` is in: the next page is
   * touched when one of its blocks is handed out.  A header's colour
   * offset puts the first blocks near the end of a page, and a program
   * that takes a few blocks of many classes (each of git's processes)
   * faulted a second page per superblock. */
  size_t room = PAGE_SIZE - ((uintptr_t)first & (PAGE_SIZE - 1));
  uint32_t in_page = (uint32_t)((room + sb->size - 1) / sb->size);
  if (n > in_page) n = in_page;
  for (uint32_t i = 0; i + 1 < n; i++)
    ((struct block *)(first + (size_t)i * sb->size))->next =
        (struct block *)(first + (size_t)(i + 1) * sb->size);
  ((struct block *)(first + (size_t)(n - 1) * sb->size))->next = sb->free;
  sb->free = (struct block *)first;
  sb->carved += n;
  return true;
}

uint32_t superblock_collect(struct superblock *sb) {
  if (!atomic_load_explicit(&sb->xremote, memory_order_relaxed)) return 0;
  uintptr_t word =
      atomic_exchange_explicit(&sb->xremote, 0, memory_order_acquire);
  struct block *list = (struct block *)(word & ~REMOTE_NOTIFY);
  if (!list) return 0;
  uint32_t n = 1;
  struct block *tail = list;
  while (tail->next) {
    tail = tail->next;
    n++;
  }
  tail->next = sb->free;
  sb->free = list;
  atomic_store_explicit(
      &sb->xused, atomic_load_explicit(&sb->xused, memory_order_relaxed) - n,
      memory_order_relaxed);
  return n;
}

bool superblock_park(struct superblock *sb) {
  uintptr_t empty = 0;
  return atomic_compare_exchange_strong_explicit(
      &sb->xremote, &empty, REMOTE_NOTIFY, memory_order_release,
      memory_order_relaxed);
}

/* Push b on sb's remote list; returns the word it replaced. */
static uintptr_t push_remote(struct superblock *sb, struct block *b) {
  uintptr_t old = atomic_load_explicit(&sb->xremote, memory_order_relaxed);
  do {
    b->next = (struct block *)(old & ~REMOTE_NOTIFY);
  } while (!atomic_compare_exchange_weak_explicit(
      &sb->xremote, &old, (uintptr_t)b, memory_order_release,
      memory_order_relaxed));
  return old;
}

void superblock_free_remote(struct superblock *sb, struct block *b) {
  /* Read everything needed before the push: afterwards the superblock may
   * be gone.  A stale owner only costs a notification that goes to the
   * wrong heap; the next one makes the owner scan all its parked
   * superblocks. */
  struct heap *owner = atomic_load_explicit(&sb->xowner, memory_order_acquire);
  if (owner == &umpa_heap_global) {
    heap_global_free(sb, b);
    return;
  }
  unsigned cls = sb->cls;
  if (push_remote(sb, b) & REMOTE_NOTIFY)
    atomic_fetch_add_explicit(&owner->bins[cls].xpending, 1,
                              memory_order_relaxed);
}

void superblock_push_locked(struct superblock *sb, struct block *b) {
  push_remote(sb, b);
}

struct block *superblock_block_of(struct superblock *sb, const void *p,
                                  const char *who) {
  uintptr_t off = (uintptr_t)p - (uintptr_t)sb_blocks(sb);
  uint64_t idx = ((uint64_t)off * sb->recip) >> 40;
  uintptr_t start = (uintptr_t)idx * sb->size;
  /* An offset past the last block (or before the first: off wraps) is not
   * a block; an interior pointer is one only if aligned blocks were handed
   * out of this superblock. */
  if (UMPA_UNLIKELY(idx >= sb->capacity ||
                    (start != off &&
                     !atomic_load_explicit(&sb->xaligned,
                                           memory_order_relaxed))))
    umpa_fatal("umpa: %s(%p): pointer was not allocated by umpa\n", who, p);
  return (struct block *)(sb_blocks(sb) + start);
}

size_t hoard_mark(size_t held, size_t cap) {
  /* f = 1/4, K = 2 superblocks (docs/ARCHITECTURE.md gives the bound):
   * used < total - K*cap and used < (1 - f) * total. */
  size_t total = held * cap;
  if (total <= 2 * cap) return 0;
  size_t k_term = total - 2 * cap, f_term = (3 * total + 3) / 4;
  return k_term < f_term ? k_term : f_term;
}

bool hoard_over_threshold(size_t used, size_t held, size_t cap) {
  return used < hoard_mark(held, cap);
}
