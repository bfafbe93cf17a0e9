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

#include <string.h>

struct superblock umpa_sb_empty = {.group = SB_CURRENT};

static void init(struct superblock *sb, unsigned cls, struct heap *owner,
                 bool fresh);

/* A thread heap's 64 KiB superblocks made from fresh pages are cut in
 * turn from a chunk of CHUNK_PAGES it takes whole, so that each thread's
 * superblocks lie together (docs/ARCHITECTURE.md, "Superblocks").  The
 * uncut rest is lazy (no memory) and goes back when the heap is abandoned
 * or trimmed. */
#define CHUNK_PAGES ((size_t)256) /* 1 MiB */
/* The superblocks cut from chunks: those of 64 KiB (classes up to 1 KiB),
 * which a chunk holds 16 of, aligned as each must be. */
#define CHUNKED_SB_PAGES ((size_t)1 << (GRANULE_SHIFT - PAGE_SHIFT))

void superblock_chunk_drop(struct heap *h) {
  struct pmeta *pm = h->chunk;
  if (!pm) return;
  h->chunk = NULL;
  page_free(pmeta_addr(pm), pm->count, KIND_SUPERBLOCK,
            "free (superblock chunk)");
}

/* The next `pages` pages of h's chunk (a new chunk when it has none left),
 * or NULL; *fresh says whether they read as zero. */
UMPA_HOT
static char *chunk_cut(struct heap *h, size_t pages, bool *fresh) {
  struct pmeta *pm = h->chunk;
  if (!pm) {
    char *c = page_alloc(CHUNK_PAGES, UMPA_LAZY | PAGE_WARM, KIND_SUPERBLOCK);
    if (!c) return NULL;
    pm = pmeta_at(c);
  }
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  /* Nobody has touched the uncut pages: their backed bits are exact. */
  *fresh = bitmap_count(r->xbacked, idx, pages) == 0;
  h->chunk = pm->count > pages ? page_split(pm, pages) : NULL;
  return region_addr(r, idx);
}

static bool owns_chunks(const struct heap *h) {
  return h && h != &umpa_heap_global && h != &umpa_heap_stored &&
         h != HEAP_NONE;
}

UMPA_HOT
struct superblock *superblock_new(unsigned cls, struct heap *owner) {
  const struct size_class *sc = &umpa_class[cls];
  /* Memory that is there first: a warm run of the page layer, else a piece
   * of a freed large block, else fresh pages, lazily: the pages of blocks
   * never carved cost nothing.  A fresh superblock faults its header and
   * first blocks in, at 2-10 us a fault where no page near it has memory
   * yet (Figure 7's 8-32 KiB requests). */
  bool fresh = false;
  char *start = NULL;
  bool warm = buddy_has_warm(&umpa_buddy, log2_ceil(sc->sb_pages));
  if (!warm) start = largecache_take_aligned(sc->sb_pages, KIND_SUPERBLOCK);
  if (!start && !warm && sc->sb_pages == CHUNKED_SB_PAGES &&
      owns_chunks(owner)) {
    /* Without a chunk (no free run of 1 MiB), a run of the superblock's
     * own size may still be had below. */
    start = chunk_cut(owner, sc->sb_pages, &fresh);
    if (start) heap_account_arena((ssize_t)sc->sb_pages << PAGE_SHIFT);
  }
  if (!start) {
    start = page_alloc_ex(sc->sb_pages, UMPA_LAZY | PAGE_WARM,
                          KIND_SUPERBLOCK, &fresh);
    if (!start) return NULL;
    heap_account_arena((ssize_t)sc->sb_pages << PAGE_SHIFT);
  }
  struct superblock *sb =
      sb_header_at((uintptr_t)start, sb_shift_of(sc->sb_pages));
  init(sb, cls, owner, fresh);
  region_map_superblock(start, sc->sb_pages);
  return sb;
}

/* The blocks a superblock whose header is at sb holds after it: as many
 * as fit between its first block and its end (less the check map's room),
 * so that no superblock keeps room for the largest colour offset.  The
 * class's capacity is the least of these, at the largest offset. */
static uint32_t capacity_at(struct superblock *sb,
                            const struct size_class *sc) {
  size_t room = (size_t)(sb_start(sb) + ((size_t)sc->sb_pages << PAGE_SHIFT) -
                         sb_blocks(sb));
  return sizeclass_fit(room, sc->size);
}

/* The blocks that fit in front of the header, in the bytes its colour
 * offset skips (2 KiB on average, 3 % of a 64 KiB superblock).  They are
 * handed out last; the boundary test counts from the first block after
 * the header, so their frees take a second test out of line
 * (small_free_front in malloc.c, sb_holds_front).  None with
 * UMPA_CHECK=1, whose marks index the blocks after it, nor for a paged
 * class (the offset is less than a block). */
static uint16_t front_at(struct superblock *sb, const struct size_class *sc) {
  if (umpa_opt.check || sc->paged) return 0;
  return (uint16_t)((size_t)((char *)sb - sb_start(sb)) / sc->size);
}

/* The header of a superblock of class cls with no block carved. */
UMPA_HOT
static void init(struct superblock *sb, unsigned cls, struct heap *owner,
                 bool fresh) {
  const struct size_class *sc = &umpa_class[cls];
  sb->free = NULL;
  atomic_store_explicit(&sb->xused, 0, memory_order_relaxed);
  sb->carved = 0;
  sb->size = sc->size;
  sb->cls = (uint8_t)cls;
  sb->group = SB_CURRENT;
  sb->lo_mark = 0;
  sb->zeroed = fresh;
  sb->holes = 0;
  atomic_store_explicit(&sb->xaligned, 0, memory_order_relaxed);
  sb->next = sb->prev = NULL;
  sb->recip = sc->recip;
  sb->div_inv = sc->div_inv;
  sb->div_shift = sc->div_shift;
  /* Colour offset + header <= PAGE_SIZE: a paged class's first block is
   * the next page, and its capacity is what the class table says. */
  sb->first_off = (uint16_t)(sc->paged ? (size_t)(sb_start(sb) + PAGE_SIZE -
                                                  (char *)sb)
                                       : SUPERBLOCK_HEADER);
  sb->div_base = 0u - (uint32_t)sb->first_off * sc->div_inv;
  sb->front = front_at(sb, sc);
  uint32_t main = capacity_at(sb, sc);
  sb->capacity = main + sb->front;
  sb->div_bound = umpa_opt.check ? 0 : main;
  atomic_store_explicit(&sb->xremote, 0, memory_order_relaxed);
  atomic_store_explicit(&sb->xowner, owner, memory_order_relaxed);
  if (umpa_opt.check) {
    /* Cached pages hold whatever their last use left there. */
    _Atomic uint64_t *map = sb_check_map(sb, sc->sb_pages);
    for (size_t i = 0, n = (sb->capacity + 63) / 64; i < n; i++)
      atomic_store_explicit(&map[i], 0, memory_order_relaxed);
  }
}

UMPA_HOT
bool superblock_recut(struct superblock *sb, unsigned cls) {
  /* Same pages, so the maps stand; a trimmed one would need its released
   * pages accounted for, and is not recut. */
  if (sb->holes) return false;
  init(sb, cls, atomic_load_explicit(&sb->xowner, memory_order_relaxed),
       false);
  return true;
}

UMPA_HOT
void superblock_reorder(struct superblock *sb) {
  /* Frees in (reverse) allocation order leave a list whose links step one
   * block: it is kept, as cutting anew costs a carve per page (10 % more
   * instructions in threadtest).  The first links tell. */
  if (sb->holes) return; /* recut refuses it anyway */
  const intptr_t size = (intptr_t)sb->size;
  unsigned steps = 0;
  for (struct block *b = sb->free; b && b->next && steps < 4;
       b = b->next, steps++) {
    intptr_t d = (char *)b->next - (char *)b;
    if (d != size && d != -size) {
      superblock_recut(sb, sb->cls);
      return;
    }
  }
}

UMPA_HOT
void superblock_destroy(struct superblock *sb) {
  const struct size_class *sc = &umpa_class[sb->cls];
  region_unmap_superblock(sb_start(sb), sc->sb_pages);
  page_free(sb_start(sb), sc->sb_pages, KIND_SUPERBLOCK, "free (superblock)");
  heap_account_arena(-((ssize_t)sc->sb_pages << PAGE_SHIFT));
}

UMPA_HOT
struct superblock *superblock_of_slow(const void *p, struct region **rp) {
  struct region *r = region_of(p);
  unsigned shift = r ? region_superblock_shift(r, p) : 0;
  if (rp) *rp = r;
  return shift ? sb_header_at((uintptr_t)p, shift) : NULL;
}

static bool restore_page(struct superblock *sb);

/* Put the n blocks from `first` on the free list, as carved. */
static bool carve_run(struct superblock *sb, char *first, uint32_t n) {
  for (uint32_t i = 0; i + 1 < n; i++)
    ((struct block *)(first + (size_t)i * sb->size))->next =
        (struct block *)(first + (size_t)(i + 1) * sb->size);
  ((struct block *)(first + (size_t)(n - 1) * sb->size))->next = sb->free;
  sb->free = (struct block *)first;
  sb->carved += n;
  return true;
}

/* The blocks in front of the header, after those behind it: all in the
 * header's page, which is there anyway. */
static bool carve_front(struct superblock *sb) {
  uint32_t done = sb->carved - sb_main(sb), n = sb->front - done;
  if (n == 0) return false;
  if (n > umpa_class[sb->cls].carve) n = umpa_class[sb->cls].carve;
  return carve_run(sb, sb_start(sb) + (size_t)done * sb->size, n);
}

UMPA_HOT
bool superblock_carve(struct superblock *sb) {
  if (UMPA_UNLIKELY(sb->holes)) return restore_page(sb);
  uint32_t left = sb_main(sb) - sb->carved;
  if (UMPA_UNLIKELY((int32_t)left <= 0)) return carve_front(sb);
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
  return carve_run(sb, first, n);
}

UMPA_HOT
uint32_t superblock_collect_list(struct superblock *sb) {
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

UMPA_HOT
bool superblock_park(struct superblock *sb) {
  uintptr_t empty = 0;
  return atomic_compare_exchange_strong_explicit(
      &sb->xremote, &empty, REMOTE_NOTIFY, memory_order_release,
      memory_order_relaxed);
}

/* Push b on sb's remote list; returns the word it replaced. */
UMPA_HOT
static uintptr_t push_remote(struct superblock *sb, struct block *b) {
  uintptr_t old = atomic_load_explicit(&sb->xremote, memory_order_relaxed);
  do {
    b->next = (struct block *)(old & ~REMOTE_NOTIFY);
  } while (!atomic_compare_exchange_weak_explicit(
      &sb->xremote, &old, (uintptr_t)b, memory_order_release,
      memory_order_relaxed));
  return old;
}

UMPA_HOT
void superblock_free_remote(struct superblock *sb, struct block *b) {
  /* Read everything needed before the push: afterwards the superblock may
   * be gone.  A stale owner only costs a notification that goes to the
   * wrong heap; the next one makes the owner scan all its parked
   * superblocks. */
  struct heap *owner = atomic_load_explicit(&sb->xowner, memory_order_acquire);
  /* Every block of a stored superblock is free already.  A block still
   * out keeps its superblock from being stored, so this owner is never
   * the stale one of a valid free. */
  if (UMPA_UNLIKELY(owner == &umpa_heap_stored))
    umpa_fatal("umpa: free(%p): double free\n", (void *)b);
  if (owner == &umpa_heap_global) {
    heap_global_free(umpa_tl_heap, sb, b);
    return;
  }
  unsigned cls = sb->cls;
  if (push_remote(sb, b) & REMOTE_NOTIFY)
    atomic_fetch_add_explicit(&owner->bins[cls].xpending, 1,
                              memory_order_relaxed);
}

struct block *superblock_block_of(struct superblock *sb, const void *p,
                                  const char *who) {
  /* Behind the header, or in front of it (where the blocks count from the
   * superblock's first byte). */
  bool front = (const char *)p < (char *)sb;
  char *base = front ? sb_start(sb) : sb_blocks(sb);
  uintptr_t off = (uintptr_t)p - (uintptr_t)base;
  uint64_t idx = ((uint64_t)off * sb->recip) >> 40;
  uintptr_t start = (uintptr_t)idx * sb->size;
  /* An offset past the last block (or before the first: off wraps) is not
   * a block; an interior pointer is one only if aligned blocks were handed
   * out of this superblock. */
  if (UMPA_UNLIKELY((const char *)p < sb_start(sb) ||
                    idx >= (front ? sb->front : sb_main(sb)) ||
                    (start != off &&
                     !atomic_load_explicit(&sb->xaligned,
                                           memory_order_relaxed))))
    umpa_fatal("umpa: %s(%p): pointer was not allocated by umpa\n", who, p);
  return (struct block *)(base + start);
}

UMPA_HOT
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

/* ---------------------------------------------------------------------------
 * Trimming a superblock that still has blocks out.
 *
 * glibc's malloc_trim gives the kernel the free pages inside its heap; a
 * superblock that keeps one live block would otherwise keep all its pages
 * (larson's last superblocks: one block out each, 15 of 16 pages
 * resident).  The free blocks on a released page must leave the free list,
 * whose links live in them: they become holes, blocks below `carved` that
 * are neither out nor listed.  Which pages went is written at the start of
 * one free block, in a page that stays (the header has no room left):
 * `gone`, the pages released, and `left`, those whose holes are not listed
 * again yet, a bit a page each.  A hole comes back with the first page of
 * `gone` it overlaps, so restoring pages in any order lists each hole
 * once.  Until every page is back, carving restores instead of carving the
 * tail, so `carved` keeps its value and the record stays exact.  A trim of
 * a superblock that still has holes counts them as free, keeps the record
 * where it is and adds the pages it releases to both maps; pages that came
 * back stay in `gone`, so the blocks they listed again keep their page.
 * ------------------------------------------------------------------------- */

#define TRIM_PAGE_WORDS 2   /* 128 pages, the largest superblock (512 KiB) */
#define TRIM_BLOCKS 4096    /* 64 KiB of 16-byte blocks */

static inline bool bit_get(const uint64_t *m, size_t i) {
  return (m[i / 64] >> (i % 64)) & 1;
}
static inline void bit_put(uint64_t *m, size_t i, bool v) {
  uint64_t bit = (uint64_t)1 << (i % 64);
  m[i / 64] = v ? m[i / 64] | bit : m[i / 64] & ~bit;
}
static inline bool any_bit(const uint64_t *m, size_t words) {
  uint64_t any = 0;
  for (size_t w = 0; w < words; w++) any |= m[w];
  return any != 0;
}

/* Blocks in front of the header are numbered after those behind it, and
 * lie in its page, which a trim keeps: they are never holes. */
static inline size_t block_index(struct superblock *sb, const void *b) {
  if ((const char *)b < (char *)sb)
    return sb_main(sb) + (size_t)((const char *)b - sb_start(sb)) / sb->size;
  return (size_t)((const char *)b - sb_blocks(sb)) / sb->size;
}
static inline char *block_at(struct superblock *sb, size_t i) {
  size_t main = sb_main(sb);
  if (i >= main && i < sb->capacity)
    return sb_start(sb) + (i - main) * sb->size;
  return sb_blocks(sb) + i * sb->size;
}
static inline size_t page_at(struct superblock *sb, const char *a) {
  return (size_t)(a - sb_start(sb)) >> PAGE_SHIFT;
}

/* The blocks [*lo, *hi) that overlap page p >= 1 (the first block begins
 * after the header, at the latest where page 1 begins). */
static void blocks_on_page(struct superblock *sb, size_t p, size_t *lo,
                           size_t *hi) {
  size_t from = (size_t)(sb_start(sb) + (p << PAGE_SHIFT) - sb_blocks(sb));
  size_t h = (from + PAGE_SIZE + sb->size - 1) / sb->size;
  *hi = h < sb_main(sb) ? h : sb_main(sb);
  *lo = from / sb->size < *hi ? from / sb->size : *hi;
}

/* The first page in `gone` that block i overlaps, or SIZE_MAX. */
static size_t hole_page(struct superblock *sb, size_t i, const uint64_t *gone) {
  char *b = block_at(sb, i);
  for (size_t p = page_at(sb, b), last = page_at(sb, b + sb->size - 1);
       p <= last; p++)
    if (bit_get(gone, p)) return p;
  return SIZE_MAX;
}

static bool restore_page(struct superblock *sb) {
  size_t words = (umpa_class[sb->cls].sb_pages + 63) / 64;
  uint64_t *gone = (uint64_t *)block_at(sb, sb->holes - 1u), *left = gone + words;
  for (size_t w = 0; w < words; w++)
    while (left[w]) {
      size_t p = w * 64 + (size_t)__builtin_ctzll(left[w]), lo, hi, n = 0;
      left[w] &= left[w] - 1;
      blocks_on_page(sb, p, &lo, &hi);
      for (size_t i = lo; i < hi && i < sb->carved; i++)
        if (i != sb->holes - 1u && hole_page(sb, i, gone) == p) {
          struct block *b = (struct block *)block_at(sb, i);
          b->next = sb->free;
          sb->free = b;
          n++;
        }
      if (n) return true;
    }
  /* Every page is back: the record is a free block again. */
  struct block *rec = (struct block *)gone;
  rec->next = sb->free;
  sb->free = rec;
  sb->holes = 0;
  return true;
}

size_t superblock_trim(struct superblock *sb) {
  size_t pages = umpa_class[sb->cls].sb_pages, words = (pages + 63) / 64;
  if (umpa_opt.check || (!sb->free && !sb->holes) || words > TRIM_PAGE_WORDS ||
      sb->capacity > TRIM_BLOCKS || 2 * words * sizeof(uint64_t) > sb->size)
    return 0;
  /* Trimmed before: its record stays where it is, and its holes (blocks
   * whose first gone page is still left) count as free. */
  uint64_t *old = sb->holes ? (uint64_t *)block_at(sb, sb->holes - 1u) : NULL;
  size_t record_bytes = 2 * words * sizeof(uint64_t);
  uint64_t listed[TRIM_BLOCKS / 64] = {0};
  for (struct block *b = sb->free; b; b = b->next)
    bit_put(listed, block_index(sb, b), true);
  if (old) {
    for (size_t i = 0; i < sb->carved; i++) {
      size_t p = hole_page(sb, i, old);
      if (p != SIZE_MAX && bit_get(old + words, p)) bit_put(listed, i, true);
    }
    /* Past its first bytes the record's block holds nothing (the pages of
     * those bytes are kept below). */
    bit_put(listed, sb->holes - 1u, true);
  }
  /* Pages to release; `gone` those of them that held carved blocks.  A
   * fresh superblock's pages past the carved blocks were never touched. */
  uint64_t release[TRIM_PAGE_WORDS] = {0}, gone[TRIM_PAGE_WORDS] = {0};
  size_t rec_lo = old ? page_at(sb, (char *)old) : SIZE_MAX;
  size_t rec_hi = old ? page_at(sb, (char *)old + record_bytes - 1) : 0;
  for (size_t p = 1; p < pages; p++) {
    size_t lo, hi;
    if (p >= rec_lo && p <= rec_hi) continue;
    blocks_on_page(sb, p, &lo, &hi);
    size_t end = hi < sb->carved ? hi : sb->carved, i = lo;
    while (i < end && bit_get(listed, i)) i++;
    if (i < end || (lo >= end && sb->zeroed)) continue;
    bit_put(release, p, true);
    /* A page still left may have come back all the same: a block listed
     * again with an earlier page reaches into it, and writing that block
     * faulted it in.  It is released again, and stays as it was in the
     * record. */
    if (!old || !bit_get(old + words, p)) bit_put(gone, p, lo < end);
  }
  /* The record goes at the start of a free block, in a page that stays;
   * failing that, the page where the first free block starts stays. */
  struct block *rec = (struct block *)old;
  bool holes = any_bit(gone, words);
  if (holes && !rec) {
    for (struct block *b = sb->free; b && !rec; b = b->next)
      if (!bit_get(release, page_at(sb, (char *)b)) &&
          !bit_get(release, page_at(sb, (char *)b + record_bytes - 1)))
        rec = b;
    if (!rec) {
      rec = sb->free;
      for (size_t p = page_at(sb, (char *)rec);
           p <= page_at(sb, (char *)rec + record_bytes - 1); p++) {
        bit_put(release, p, false);
        bit_put(gone, p, false);
      }
      holes = any_bit(gone, words);
    }
  }
  if (holes) {
    /* With the pages gone before: a block belongs to the first gone page
     * it overlaps, which may now be a new one (a hole of a page still
     * left, or a listed block, becomes a hole of the new page); pages
     * gone and brought back stay in `gone`, so the blocks they listed
     * again keep them as owner and are not listed twice. */
    uint64_t left[TRIM_PAGE_WORDS];
    for (size_t w = 0; w < words; w++) {
      left[w] = gone[w] | (old ? old[words + w] : 0);
      gone[w] |= old ? old[w] : 0;
    }
    struct block **link = &sb->free;
    for (struct block *b = sb->free; b; b = b->next) {
      if (b == rec) continue;
      size_t p = hole_page(sb, block_index(sb, b), gone);
      if (p == SIZE_MAX || !bit_get(left, p)) {
        *link = b;
        link = &b->next;
      }
    }
    *link = NULL;
    uint64_t *record = (uint64_t *)rec;
    for (size_t w = 0; w < words; w++) {
      record[w] = gone[w];
      record[words + w] = left[w];
    }
    sb->holes = (uint16_t)(block_index(sb, rec) + 1);
  }
  /* Only now: the list and the record above lie in pages that stay. */
  size_t released = 0;
  for (size_t p = 1, q; p < pages; p = q + 1) {
    for (q = p; q < pages && bit_get(release, q); q++) {}
    if (q == p) continue;
    page_release_pages(sb_start(sb) + (p << PAGE_SHIFT), q - p);
    released += q - p;
  }
  /* Every page past the carved blocks went: once the rest of the page they
   * end in is cleared, the tail reads as zero, so calloc can skip clearing
   * it and the next trim need not release those pages again. */
  if (!sb->zeroed) {
    /* The end of the carved blocks behind the header (in front of it are
     * the header's page and the header). */
    size_t main = sb_main(sb);
    char *tail =
        sb_blocks(sb) + (sb->carved < main ? sb->carved : main) * sb->size;
    size_t p = page_at(sb, tail), off = (uintptr_t)tail & (PAGE_SIZE - 1);
    if (off && p < pages && !bit_get(release, p))
      memset(tail, 0, PAGE_SIZE - off);
    sb->zeroed = 1;
  }
  return released;
}
