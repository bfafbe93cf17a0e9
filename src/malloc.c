/*
 * malloc.c - the malloc family: umpa_malloc & co., and with UMPA_OVERRIDE
 * the standard names (malloc, free, ...) and glibc's __libc_* aliases.
 *
 * Requests up to the large threshold (32 KiB, or less by mallopt) come from
 * the thread's heap; larger ones are page-layer blocks of their own, so
 * growing them with realloc moves pages instead of copying bytes, and
 * calloc of fresh pages costs no memset.  The file is compiled twice: with
 * UMPA_OVERRIDE for libumpa (the process's allocator), without it for
 * tests and programs that use umpa beside another malloc.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>

static _Atomic size_t large_threshold = SMALL_MAX;
static _Atomic size_t large_blocks, large_bytes;

/* ---------------------------------------------------------------------------
 * Small blocks: the fast paths.
 * ------------------------------------------------------------------------- */

/* Requests of 1 up to this many bytes (the large threshold) take the
 * direct-slot fast path; 0 turns it off (checked mode). */
static _Atomic size_t direct_max = SMALL_MAX;

/* Out of memory or address space, while the caches hold freed memory
 * that other sizes cannot use as it lies: empty superblocks in the store,
 * spans in the large cache, runs the buddy has not merged.  Under
 * `ulimit -v`, a program that filled the space with blocks of one size and
 * freed them all got NULL for every other size.  So a failing request
 * gives everything back as malloc_trim(0) does, and is tried once more;
 * only when the caches hold something, so that a program failing again
 * and again does not pay a trim each time (under RLIMIT_AS, regions left
 * empty are retired either way).  True if worth a retry. */
static UMPA_NOINLINE bool reclaim_for_retry(void) {
  int saved = errno;
  if (!largecache_bytes() && !heap_store_bytes(-1) && !cache_held_pages()) {
    /* Nothing cached; but under RLIMIT_AS regions left empty hold address
     * space that a new region needs. */
    bool retired = buddy_retire_free(&umpa_buddy) != 0;
    errno = saved;
    return retired;
  }
  umpa_malloc_trim(0);
  errno = saved;
  return true;
}

static void *large_alloc(size_t n, size_t align, bool zero);

/* heap_alloc_slow, and once more after reclaim_for_retry; errno ENOMEM
 * when it fails. */
static UMPA_NOINLINE void *small_alloc_slow(size_t n, bool *zero) {
  /* A thread's first malloc sets up its heap first: its first block of
   * 5 KiB is one of the few its class serves as pages too. */
  if (n > PAGE_SIZE / 2 &&
      heap_as_pages(umpa_tl_heap != HEAP_NONE ? umpa_tl_heap
                                               : thread_heap_init(),
                    n)) {
    int saved = errno;
    void *p = large_alloc(n, 0, zero != NULL);
    if (p) {
      if (zero) *zero = true;
      return p;
    }
    errno = saved; /* a superblock may still be had */
  }
  void *p = heap_alloc_slow(umpa_tl_heap, n, zero);
  if (UMPA_UNLIKELY(!p)) {
    /* The failed try set errno: a retry that succeeds puts it back. */
    int saved = errno;
    if (reclaim_for_retry()) p = heap_alloc_slow(umpa_tl_heap, n, zero);
    errno = p ? saved : ENOMEM;
  }
  return p;
}

/* Pop a block off sb's free list (the thread's current superblock of its
 * class): malloc's fast path, no lock and no atomic read-modify-write;
 * NULL when the list is empty.
 *
 * The next block is fetched ahead: a run of mallocs of one class is a
 * chain of loads, each block's link read from the block the last one
 * found, and past the L1 each waited its full latency (threadtest: 45 %
 * of malloc's samples on that load; 176-192 M pairs/s pinned, mimalloc
 * 194-206, with the prefetch 196-214).  A random free list (larson) pays
 * for the prefetches it does not use: 2-4 % slower there, still 1.2x
 * mimalloc.  Choosing which to fetch by the distance between the two
 * blocks cost larson more (a branch mispredicted, or a cmov in the
 * chain).  A NULL link is fetched harmlessly. */
static inline void *direct_pop(struct superblock *sb) {
  struct block *b = sb->free;
  if (UMPA_LIKELY(b)) {
    struct block *n = b->next;
    sb->free = n;
    __builtin_prefetch(n);
    atomic_store_explicit(
        &sb->xused, atomic_load_explicit(&sb->xused, memory_order_relaxed) + 1,
        memory_order_relaxed);
  }
  return b;
}

static inline void *small_alloc(size_t n) {
  void *p = direct_pop(umpa_tl_heap->direct[sizeclass_of(n)]);
  if (UMPA_LIKELY(p)) return p;
  return small_alloc_slow(n, NULL);
}

/* The block p lies in: p itself unless aligned blocks were handed out. */
static inline struct block *block_of(struct superblock *sb, void *p,
                                     const char *who) {
  if (UMPA_LIKELY(sb_holds_block(sb, p) || sb_holds_front(sb, p)))
    return (struct block *)p;
  return superblock_block_of(sb, p, who);
}

/* The owner's free of block b of sb, once it passed the tests: on the
 * free list, one block fewer out.  A superblock the heap is not
 * allocating from does the bookkeeping (relist, release, Hoard's
 * threshold) only when it leaves its quarter of fullness; the current one
 * has lo_mark 0.  Nothing else is written: no branch on which superblock
 * it is (in larson that is random, and it mispredicted 0.35 times per
 * free), no count in the heap. */
static inline void own_free(struct heap *h, struct superblock *sb,
                            struct block *b) {
  b->next = sb->free;
  sb->free = b;
  uint32_t used = atomic_load_explicit(&sb->xused, memory_order_relaxed) - 1;
  atomic_store_explicit(&sb->xused, used, memory_order_relaxed);
  if (UMPA_UNLIKELY(used < sb->lo_mark)) heap_free_slow(h, sb);
}

/* Everything but the owner's free of a plain block pointer: aligned or
 * invalid pointers, double frees, frees by other threads. */
UMPA_HOT
static UMPA_NOINLINE void small_free_slow(struct superblock *sb, void *p) {
  struct block *b = block_of(sb, p, "free");
  if (UMPA_UNLIKELY(umpa_opt.check)) check_on_free(sb, b);
  struct heap *h = umpa_tl_heap;
  struct heap *owner = atomic_load_explicit(&sb->xowner, memory_order_relaxed);
  if (owner != h) {
    /* The global heap's (Hoard's threshold gave it away; a thread freeing
     * its own table in random order makes most of its frees here): straight
     * to the deferred frees, not through the remote path's checks. */
    if (owner == &umpa_heap_global) heap_global_free(h, sb, b);
    else superblock_free_remote(sb, b);
    return;
  }
  if (b == sb->free) umpa_fatal("umpa: free(%p): double free\n", p);
  own_free(h, sb, b);
}

/* The owner's free of a block in front of the header (see front_at in
 * superblock.c), 3 % of a class's blocks: a second boundary test, out of
 * the fast path (where it cost every free two loads) and short of the
 * slow path (where these frees cost threadtest 6 %). */
UMPA_HOT
static UMPA_NOINLINE void small_free_front(struct superblock *sb, void *p) {
  struct heap *h = umpa_tl_heap;
  struct block *b = p;
  if (UMPA_UNLIKELY(
          !sb_holds_front(sb, p) ||
          atomic_load_explicit(&sb->xowner, memory_order_relaxed) != h ||
          b == sb->free)) {
    small_free_slow(sb, p);
    return;
  }
  own_free(h, sb, b);
}

static inline void small_free(struct superblock *sb, void *p) {
  struct heap *h = umpa_tl_heap;
  struct block *b = p;
  /* A block boundary behind the header (never true with UMPA_CHECK=1;
   * else the test for one in front, out of line), ours, and not the block
   * freed just before (the cheap double-free check).  The boundary test
   * is one multiply, an add, a rotate and a compare (see sb_holds_block). */
  if (UMPA_UNLIKELY(!sb_holds_block(sb, p))) {
    small_free_front(sb, p);
    return;
  }
  if (UMPA_UNLIKELY(
          atomic_load_explicit(&sb->xowner, memory_order_relaxed) != h ||
          b == sb->free)) {
    small_free_slow(sb, p);
    return;
  }
  own_free(h, sb, b);
}

/* ---------------------------------------------------------------------------
 * Large blocks: page-layer blocks of kind KIND_LARGE.
 * ------------------------------------------------------------------------- */

/* Large blocks handed out (the large cache's are held, not in use), in
 * the thread's heap's counts, else (no heap) in the shared ones.  Two
 * locked adds to shared lines on every large malloc and free were 16 % of
 * a lazy 1-2 MiB pair at one thread (perf): a locked instruction waits for
 * the stores before it, here the program's writes into the block, cache
 * misses; at two threads the lines moved between the cores as well. */
static void large_inuse(ssize_t blocks, ssize_t bytes) {
  struct heap *h = umpa_tl_heap;
  if (UMPA_LIKELY(h != HEAP_NONE)) {
    atomic_store_explicit(
        &h->xlarge_blocks,
        atomic_load_explicit(&h->xlarge_blocks, memory_order_relaxed) +
            (size_t)blocks,
        memory_order_relaxed);
    atomic_store_explicit(
        &h->xlarge_bytes,
        atomic_load_explicit(&h->xlarge_bytes, memory_order_relaxed) +
            (size_t)bytes,
        memory_order_relaxed);
    return;
  }
  atomic_fetch_add_explicit(&large_blocks, (size_t)blocks, memory_order_relaxed);
  atomic_fetch_add_explicit(&large_bytes, (size_t)bytes, memory_order_relaxed);
}

/* The page-layer flags for `pages` new pages of a large block.  They take
 * what the caches hold and leave the rest to fault in where the program
 * touches them, as glibc's mmap does: programs reserve buffers they never
 * fill, and a block bigger than the memory free would be populated into
 * the OOM killer.  While the program's blocks have been touched whole,
 * the rest may be populated instead, cheaper than its faults (PAGE_AHEAD:
 * docs/ARCHITECTURE.md).  UMPA_MALLOC_POPULATE (default 0) populates
 * fresh blocks up to a size always.  `zero` adds UMPA_ZERO (calloc). */
static unsigned large_flags(size_t pages, bool zero) {
  unsigned z = zero ? UMPA_ZERO : 0;
  if ((pages << PAGE_SHIFT) <= umpa_opt.malloc_populate) return z;
  return UMPA_LAZY | PAGE_WARM | z |
         (largecache_may_populate(pages) ? PAGE_AHEAD : 0);
}

/* A large block that no span of the large cache gave: freed, it goes to
 * the freeing thread's arena (see largecache_put). */
static char *no_origin(char *p) {
  if (p) atomic_store_explicit(&pmeta_at(p)->xmark, 0, memory_order_relaxed);
  return p;
}

/* A run of `pages` pages where stored superblocks gave way to it (their
 * window merged into free runs with memory), or NULL. */
static char *spilled_run(size_t pages, unsigned flags) {
  void *w = store_spill_for(pages);
  char *p = w ? no_origin(page_alloc_at(w, pages, largecache_ahead(flags),
                                        KIND_LARGE))
              : NULL;
  if (p) heap_account_arena((ssize_t)(pages << PAGE_SHIFT));
  return p;
}

/* A run of `pages` pages from the large cache (or from memory the store
 * gives up for it), else the page layer; the caller counts it in use.
 * `exact`: as for largecache_take. */
static char *large_run(size_t pages, unsigned flags, bool exact) {
  int saved = errno;
  uint64_t clock = clock_scope_begin();
  for (int again = 1;; again = 0) {
    bool declined = false;
    char *p = largecache_take(pages, flags, exact, &declined);
    if (!p && (declined || store_may_spill(pages))) {
      p = spilled_run(pages, flags);
      if (!p && declined) p = largecache_take(pages, flags, exact, NULL);
    }
    if (!p) p = largecache_take_small(pages, flags, exact);
    if (!p) p = largecache_grow(pages, flags);
    if (!p) {
      /* A warm run, or one of a new region: decided before it is known. */
      p = no_origin(page_alloc(pages, largecache_ahead(flags), KIND_LARGE));
      if (p) heap_account_arena((ssize_t)(pages << PAGE_SHIFT));
    }
    if (p) {
      errno = saved; /* a first try that failed set it */
      clock_scope_end(clock);
      return p;
    }
    if (!again || !reclaim_for_retry()) break; /* errno: ENOMEM */
  }
  clock_scope_end(clock);
  return NULL;
}

/* Pages of a large block that nobody uses: to the large cache, else the
 * page layer.  `freed`: the program had them (see largecache_put). */
static void large_give_back(struct pmeta *pm, bool freed) {
  void *head = pmeta_addr(pm);
  size_t pages = pm->count;
  if (largecache_put(pm, freed)) return;
  page_free(head, pages, KIND_LARGE, "free");
  heap_account_arena(-(ssize_t)(pages << PAGE_SHIFT));
}

/* page_split for a large block: the tail goes back to, or is handed
 * out from, the same arena as the head (its origin, largecache_put). */
static struct pmeta *large_split(struct pmeta *pm, size_t keep) {
  struct pmeta *tail = page_split(pm, keep);
  atomic_store_explicit(&tail->xmark,
                        atomic_load_explicit(&pm->xmark, memory_order_relaxed),
                        memory_order_relaxed);
  return tail;
}

/* Give back a piece of a run that was never handed out.  The page layer's
 * bits say exactly which of its pages have memory (the program never
 * touched them), where a lazy block's are only a guess: without this, the
 * large cache took a small piece as touched whole. */
static void large_give_back_piece(struct pmeta *pm) {
  if (pm->flags & PMF_UNKNOWN) {
    size_t backed = bitmap_count(pm->region->xbacked, pmeta_index(pm),
                                 pm->count);
    pm->flags &= (uint8_t)~(PMF_UNKNOWN | PMF_FULL);
    if (backed == pm->count) pm->flags |= PMF_FULL;
  }
  large_give_back(pm, false);
}

/* A block of `pages` pages at an address aligned to align (a power of two
 * above PAGE_SIZE): a run of align - PAGE_SIZE bytes more, whose pages
 * before and after the aligned part go back at once.  The block is then
 * one like any other, its head the aligned address, so the thread may hold
 * it and the large cache take it when it is freed.  Before, the whole run
 * was the block, with the pointer at an offset into it, and such a block
 * was neither held nor cached: aligned_alloc(8192, 8192) and free took
 * 308 ns a pair (glibc 53), aligned_alloc(2 MiB, 2 MiB) 32 us. */
static void *large_alloc_aligned(size_t pages, size_t align, bool zero) {
  char *p = held_take(pages, zero, align);
  if (p) return p;
  size_t extra = (align >> PAGE_SHIFT) - 1;
  unsigned flags = large_flags(pages, zero);
  uint64_t clock = clock_scope_begin(); /* the run and both pieces */
  p = largecache_take_window(pages, align, flags);
  if (p) {
    clock_scope_end(clock);
    large_inuse(1, (ssize_t)(pages << PAGE_SHIFT));
    return p;
  }
  p = large_run(pages + extra, flags, false); /* the back cuts a slack */
  if (!p) {
    clock_scope_end(clock);
    return NULL;
  }
  char *a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
  size_t front = (size_t)(a - p) >> PAGE_SHIFT;
  struct pmeta *pm = pmeta_at(p);
  if (front) {
    struct pmeta *rest = large_split(pm, front);
    large_give_back_piece(pm);
    pm = rest;
  }
  /* The back, and what the run kept beyond it (its slack). */
  if (pm->count > pages) large_give_back_piece(large_split(pm, pages));
  clock_scope_end(clock);
  large_inuse(1, (ssize_t)(pages << PAGE_SHIFT));
  return a;
}

UMPA_HOT
static void *large_alloc(size_t n, size_t align, bool zero) {
  if (n == 0) n = 1;
  size_t extra = align > PAGE_SIZE ? align - PAGE_SIZE : 0;
  if (n > (size_t)PTRDIFF_MAX - extra) {
    errno = ENOMEM;
    return NULL;
  }
  size_t pages = pages_of(n);
  if (extra) return large_alloc_aligned(pages, align, zero);
  /* A block this thread freed, which never stopped counting as in use
   * (see large_free).  Before the flags: a block populated ahead spends
   * one of the large cache's credits, which a held block must not. */
  char *p = held_take(pages, zero, PAGE_SIZE);
  if (p) return p;
  /* A size asked for again: exact, so that the thread may hold it. */
  p = large_run(pages, large_flags(pages, zero), held_repeated(pages));
  /* Its count: a block from the large cache may have kept a surplus. */
  if (p) large_inuse(1, (ssize_t)((size_t)pmeta_at(p)->count << PAGE_SHIFT));
  return p;
}

/* The large block holding p, which lies in region r (NULL: in none), or
 * abort naming `who`. */
UMPA_HOT
static struct pmeta *large_head(struct region *r, void *p, const char *who) {
  if (!r) umpa_fatal("umpa: %s(%p): pointer was not allocated by umpa\n", who, p);
  size_t idx = region_index(r, p);
  /* The entry is read next, and both it and the bit are cold in a program
   * that wrote its blocks since: the two misses overlap (largecache.c,
   * prefetch_list_neighbours). */
  __builtin_prefetch(&r->meta[idx]);
  /* A block's pointer is its head: test that page's bit before any
   * search, which only a bad pointer needs. */
  size_t h = bitmap_test(r->xheads, idx) ? idx
                                          : bitmap_find_last_set(r->xheads, idx);
  struct pmeta *pm = h == SIZE_MAX ? NULL : &r->meta[h];
  if (!pm || pm->kind != KIND_LARGE || h + pm->count <= idx)
    umpa_fatal("umpa: %s(%p): pointer was not allocated by umpa, or was "
               "freed already\n", who, p);
  if ((uintptr_t)p != (uintptr_t)region_addr(r, h))
    umpa_fatal("umpa: %s(%p): pointer was not allocated by umpa (it points "
               "inside a block)\n", who, p);
  if (pm->flags & (PMF_CACHED | PMF_HELD))
    umpa_fatal("umpa: %s(%p): %s\n", who, p,
               strcmp(who, "free") ? "block was freed already" : "double free");
  return pm;
}

UMPA_HOT
void large_release(struct pmeta *pm) {
  large_inuse(-1, -(ssize_t)((size_t)pm->count << PAGE_SHIFT));
  uint64_t clock = clock_scope_begin();
  large_give_back(pm, true);
  clock_scope_end(clock);
}

/* Free the large block p (in region r); `hold`: the thread may keep it
 * for its next malloc of the same size (held.c).  A held block still
 * counts in large_blocks and large_bytes, and mallinfo takes the held ones
 * out: two atomic adds to shared lines on each free and malloc were half
 * the time of a 64 KiB pair. */
static void large_free_head(struct pmeta *pm, bool hold) {
  if (hold && held_put(pm)) return;
  large_release(pm);
}

static void large_free(struct region *r, void *p, bool hold) {
  large_free_head(large_head(r, p, "free"), hold);
}

/* Grow large block p (pm, `old` pages) to `pages` by moving it into a
 * cached span (largecache_take_room: its middle, with room after it):
 * the memory the span holds there takes the growth without a fault,
 * where a run of the page layer would have faulted it in, and the memory
 * under the old pages the kernel frees as they land (a cheaper loss than
 * the exchange that would keep it: three remaps).  The growth is left to
 * fault where the span has no memory, since populating first would
 * populate the pages the move then frees.  NULL when no span is big
 * enough, p unchanged. */
static void *large_move(void *p, struct pmeta *pm, size_t old, size_t pages,
                        unsigned flags) {
  char *q = largecache_take_room(pages, (flags | UMPA_LAZY) & ~PAGE_AHEAD);
  if (!q) return NULL;
  struct pmeta *qm = pmeta_at(q);
  large_inuse(1, (ssize_t)(pages << PAGE_SHIFT));
  if (remap_move_over(pm->region, pmeta_index(pm), qm->region,
                      pmeta_index(qm), old) != 0) {
    large_free(qm->region, q, false);
    return NULL;
  }
  /* The front's bits are the old block's: unknown if they were. */
  if ((pm->flags | qm->flags) & PMF_UNKNOWN)
    qm->flags = (uint8_t)((qm->flags & ~PMF_FULL) | PMF_UNKNOWN);
  else if (bitmap_count(qm->region->xbacked, pmeta_index(qm), pages) == pages)
    qm->flags |= PMF_FULL;
  else
    qm->flags &= (uint8_t)~PMF_FULL;
  qm->flags |= (uint8_t)(pm->flags & PMF_LOOSE);   /* its bits moved too */
  pm->flags &= (uint8_t)~(PMF_FULL | PMF_UNKNOWN); /* no memory left there */
  large_free(pm->region, p, false); /* no memory left to reuse */
  PC_ADD(xgrow_moved, 1);
  return q;
}

/* A large block's pointer is its head (aligned ones included). */
static size_t large_usable(struct pmeta *pm) {
  return (size_t)pm->count << PAGE_SHIFT;
}

/* ---------------------------------------------------------------------------
 * The API.
 * ------------------------------------------------------------------------- */

static inline size_t threshold(void) {
  return atomic_load_explicit(&large_threshold, memory_order_relaxed);
}

void check_on_malloc(void *p) {
  struct superblock *sb = superblock_of(p);
  size_t idx = (size_t)(((uint64_t)((char *)p - sb_blocks(sb)) * sb->recip) >> 40);
  uint64_t bit = (uint64_t)1 << (idx & 63);
  _Atomic uint64_t *w =
      &sb_check_map(sb, umpa_class[sb->cls].sb_pages)[idx >> 6];
  if (atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit)
    umpa_fatal("umpa: malloc: block %p handed out twice (heap corrupted: "
               "a write after free?)\n", p);
}

void check_on_free(struct superblock *sb, struct block *b) {
  size_t idx = (size_t)(((uint64_t)((char *)b - sb_blocks(sb)) * sb->recip) >> 40);
  uint64_t bit = (uint64_t)1 << (idx & 63);
  _Atomic uint64_t *w =
      &sb_check_map(sb, umpa_class[sb->cls].sb_pages)[idx >> 6];
  if (!(atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed) & bit))
    umpa_fatal("umpa: free(%p): double free\n", (void *)b);
}

UMPA_HOT
static UMPA_NOINLINE void *malloc_slow(size_t n) {
  /* The options are parsed here on a process's first malloc: UMPA_CHECK
   * must be known before that block is handed out, or its free would look
   * like a double free. */
  umpa_init();
  if (UMPA_UNLIKELY(umpa_opt.check) && n <= threshold()) {
    void *p = small_alloc(n);
    if (p) check_on_malloc(p);
    return p;
  }
  if (n <= threshold()) return small_alloc(n);
  if (n > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  umpa_init();
  return large_alloc(n, 0, false);
}

void malloc_configure(void) {
  /* Checked mode: every malloc goes through malloc_slow, which marks. */
  if (umpa_opt.check) atomic_store(&direct_max, 0);
}

static inline bool direct_path(size_t n) {
  /* n - 1 wraps for malloc(0), which takes the slow path: with checking
   * on nothing may bypass the marking, malloc(0) included. */
  return n - 1 < atomic_load_explicit(&direct_max, memory_order_relaxed);
}

static inline void *do_malloc(size_t n) {
  /* The fast path is a leaf: everything else is a tail call away. */
  if (UMPA_LIKELY(direct_path(n))) {
    void *p = direct_pop(umpa_tl_heap->direct[sizeclass_of(n)]);
    if (UMPA_LIKELY(p)) return p;
  }
  return malloc_slow(n);
}

UMPA_HOT
static UMPA_NOINLINE void free_slow(void *p) {
  if (!p) return;
  struct region *r = region_of(p);
  /* do_free's map said "no superblock": for a region mirrored in it, whose
   * granules were in the window before any of its blocks was handed out,
   * that is the answer, and only a large block is left to look for. */
  unsigned shift = r && !r->fast_map ? region_superblock_shift(r, p) : 0;
  if (shift) small_free(sb_header_at((uintptr_t)p, shift), p);
  else large_free(r, p, true);
}

static inline void do_free(void *p) {
  /* NULL, large blocks and what the fast map does not know fall to
   * free_slow.  The 64 KiB case is spelled out so that the header's loads
   * need not wait for the map's byte (see docs/ARCHITECTURE.md). */
  unsigned shift = sb_map_shift((uintptr_t)p);
  if (UMPA_LIKELY(shift == SB_SMALL_SHIFT))
    small_free(sb_header_at((uintptr_t)p, SB_SMALL_SHIFT), p);
  else if (shift) small_free(sb_header_at((uintptr_t)p, shift), p);
  else free_slow(p);
}

UMPA_HOT
void *umpa_malloc(size_t n) { return do_malloc(n); }

UMPA_HOT
void umpa_free(void *p) { do_free(p); }

UMPA_HOT
void umpa_free_sized(void *p, size_t size) {
  (void)size;
  do_free(p);
}

UMPA_HOT
void umpa_free_aligned_sized(void *p, size_t align, size_t size) {
  (void)align;
  (void)size;
  do_free(p);
}

UMPA_HOT
void *umpa_calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total) || total > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  /* malloc's fast path, then the clearing: a block from the free list has
   * been used, so there is nothing to learn of it, and the way through
   * small_alloc_slow and the heap's bin (which knows when a block never
   * written is carved, and skips the memset then) cost every calloc 115
   * instructions more than a malloc. */
  if (UMPA_LIKELY(direct_path(total))) {
    void *p = direct_pop(umpa_tl_heap->direct[sizeclass_of(total)]);
    if (UMPA_LIKELY(p)) return memset(p, 0, total);
  }
  if (total > threshold()) {
    umpa_init();
    return large_alloc(total, 0, true);
  }
  bool zero = false;
  void *p = small_alloc_slow(total, &zero);
  if (!p) return NULL;
  if (UMPA_UNLIKELY(umpa_opt.check)) check_on_malloc(p);
  if (!zero) memset(p, 0, total);
  return p;
}

UMPA_HOT
size_t umpa_malloc_usable_size(void *p) {
  if (!p) return 0;
  struct region *r = NULL;
  struct superblock *sb = superblock_lookup(p, &r);
  if (sb) {
    struct block *b = block_of(sb, p, "malloc_usable_size");
    return sb->size - (size_t)((char *)p - (char *)b);
  }
  /* A pointer umpa does not own: nothing is usable, and no abort (glibc
   * would read its own header there; programs only ask out of curiosity). */
  if (!r) return 0;
  return large_usable(large_head(r, p, "malloc_usable_size"));
}

/* The large block p that the thread resized last, found again without
 * the region map and the heads bitmap: its page-layer head, if that is
 * still the head of a large block in use at p, neither cached nor held
 * (what large_head checks); else NULL.  Found through the maps, each step
 * of a buffer grown 16 bytes at a time took 10 ns, glibc's 5.5.  A
 * sentinel heap's realloc_last is NULL. */
static struct pmeta *resized_last(struct heap *h, void *p) {
  if (p != h->realloc_last ||
      h->realloc_gen !=
          atomic_load_explicit(&umpa_retire_gen, memory_order_acquire))
    return NULL;
  struct pmeta *pm = h->realloc_pm;
  if (PM_STATE(atomic_load_explicit(&pm->xtag, memory_order_acquire)) !=
          PM_USED ||
      pm->kind != KIND_LARGE || (pm->flags & (PMF_CACHED | PMF_HELD)))
    return NULL;
  return pm;
}

/* Resize the large block p (head pm) to n > threshold() bytes by pages: in
 * place, or moved by remapping, never copied.  NULL (errno ENOMEM) leaves
 * it unchanged. */
static void *large_resize(void *p, struct pmeta *pm, size_t n) {
  size_t old = pm->count, pages = pages_of(n);
  /* The same pages: nothing moves and nothing is counted.  Three atomic
   * adds of 0 to shared counters and a second check of the block made a
   * buffer grown 16 bytes at a time twice as slow (bench/realloc_chain).
   * The block must still be in use, as page_check_block checks: else that
   * reports. */
  if (pages == old &&
      PM_STATE(atomic_load_explicit(&pm->xtag, memory_order_acquire)) ==
          PM_USED)
    return p;
  page_check_block(p, old, KIND_LARGE, "realloc");
  unsigned fl = 0;
  if (pages > old) {
    fl = large_flags(pages - old, false);
    /* First over a cached span right after the block (see
     * largecache_extend): its pages are in the arena already. */
    if (largecache_extend(pm, pages, fl)) {
      large_inuse(0, (ssize_t)((pages - old) << PAGE_SHIFT));
      return p;
    }
    /* Then moved into the memory of a cached span, with room after it
     * (see large_move); the page layer last. */
    void *moved = large_move(p, pm, old, pages, fl);
    if (moved) return moved;
  }
  void *q = page_resize(p, pm, old, pages, largecache_ahead(fl));
  if (q && q != p) no_origin(q);
  if (q) {
    ssize_t delta = ((ssize_t)pages - (ssize_t)old) * (ssize_t)PAGE_SIZE;
    large_inuse(0, delta);
    heap_account_arena(delta);
  }
  return q;
}

/* Whether a small block of `avail` bytes stays where it is for a realloc
 * to n: while it is at least half used (a block of 32 bytes or less, the
 * smallest classes, never moves down). */
static inline bool realloc_keeps(size_t n, size_t avail) {
  return n <= avail && (n >= avail / 2 || avail <= 32);
}

/* realloc's cheap check of free, before anything is copied: b is the
 * block h freed last into sb, its own superblock. */
static inline bool freed_last(struct heap *h, struct superblock *sb,
                              const void *b) {
  return atomic_load_explicit(&sb->xowner, memory_order_relaxed) == h &&
         b == sb->free;
}

/* Every case of realloc; umpa_realloc answers the commonest first. */
UMPA_HOT
static UMPA_NOINLINE void *realloc_slow(void *p, size_t n) {
  if (!p) return do_malloc(n);
  if (n == 0) {
    do_free(p);
    return NULL;
  }
  if (n > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  struct heap *h = umpa_tl_heap;
  struct pmeta *pm = resized_last(h, p);
  struct superblock *sb = NULL;
  if (!pm) {
    struct region *r = NULL;
    sb = superblock_lookup(p, &r);
    if (!sb) pm = large_head(r, p, "realloc");
  }
  size_t avail;
  if (sb) {
    struct block *b = block_of(sb, p, "realloc");
    if (UMPA_UNLIKELY(freed_last(h, sb, b)))
      umpa_fatal("umpa: realloc(%p): block was freed already\n", p);
    avail = sb->size - (size_t)((char *)p - (char *)b);
  } else {
    avail = large_usable(pm);
    if (n > threshold()) {
      int saved = errno;
      void *q = large_resize(p, pm, n);
      /* Once more after the caches gave back what they hold, as malloc
       * does: growing a block failed where a malloc of its new size
       * succeeded. */
      if (UMPA_UNLIKELY(!q) && reclaim_for_retry())
        q = large_resize(p, pm, n);
      if (q) errno = saved;
      /* Remembered for the next realloc; not in a sentinel heap, which
       * threads share. */
      if (q && h != HEAP_NONE) {
        h->realloc_last = q;
        h->realloc_pm = q == p ? pm : pmeta_at(q);
        h->realloc_gen =
            atomic_load_explicit(&umpa_retire_gen, memory_order_relaxed);
      }
      return q; /* on failure errno is ENOMEM, p unchanged */
    }
  }
  /* A block that stays at least half used stays: a small one, or one of
   * the pages a class's first few blocks are (heap_as_pages). */
  if (realloc_keeps(n, avail)) return p;
  int saved = errno;
  void *q = do_malloc(n);
  if (!q) {
    /* A shrink that found no room for the copy keeps the block, as glibc's
     * realloc shrinks in place: out of address space, a program cutting
     * its buffers down got NULL. */
    if (n > avail) return NULL;
    errno = saved;
    return p;
  }
  memcpy(q, p, n < avail ? n : avail);
  /* Freed as free() would, without looking the block up again: for a
   * large block shrunk into a small one (a buffer cut down to what it
   * received), the second lookup was a fifth of the call. */
  if (sb) small_free(sb, p);
  else large_free_head(pm, true);
  return q;
}

/* A buffer grown a few bytes at a time stays where it is in all but a
 * few of its reallocs: a small block that stays at least half used (the
 * start of its block, so neither an aligned block nor one in front of the
 * header, and not the block its owner freed last), and a large block
 * this thread resized last that keeps its pages.  Those return here,
 * without the frame of realloc_slow: its prologue and epilogue (eight
 * registers saved and restored) and the save of errno around the large
 * path were a third of the 74 instructions such a realloc took, where
 * tcmalloc takes 57 (bench/realloc_chain's 16 B steps).  Everything else,
 * and these again if a test fails, goes to realloc_slow. */
UMPA_HOT
void *umpa_realloc(void *p, size_t n) {
  if (UMPA_LIKELY(p != NULL && n - 1 < (size_t)PTRDIFF_MAX)) {
    struct heap *h = umpa_tl_heap;
    unsigned shift = sb_map_shift((uintptr_t)p);
    if (shift) {
      struct superblock *sb = sb_header_at((uintptr_t)p, shift);
      if (sb_holds_block(sb, p) && realloc_keeps(n, sb->size) &&
          !freed_last(h, sb, p))
        return p;
    } else if (p == h->realloc_last) {
      struct pmeta *pm = resized_last(h, p);
      if (pm && n > threshold() && pages_of(n) == pm->count) return p;
    }
  }
  return realloc_slow(p, n);
}

void *umpa_reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return umpa_realloc(p, total);
}

/* Aligned blocks: small ones come from a class whose blocks are already
 * aligned, or from a bigger block with the pointer moved forward (the
 * superblock then accepts interior pointers); large ones are cut to start
 * at an aligned page (large_alloc_aligned). */
static void *aligned_alloc_pow2(size_t align, size_t n) {
  if (align <= 16) return do_malloc(n);
  if (n > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  size_t limit = threshold();
  if (align <= PAGE_SIZE && n <= limit) {
    /* Blocks start 128 bytes after a 128-aligned superblock header, and a
     * paged class's at page boundaries: a class whose size is a multiple
     * of align has every block aligned when align <= 128, or when the
     * class is paged.  So posix_memalign(4096, 4096), an O_DIRECT buffer,
     * is a small block: 12.5 ns a pair, where a one-page large block took
     * 28-31 (bench/buffers' align4k). */
    size_t rounded = ((n ? n : 1) + align - 1) & ~(align - 1);
    if (rounded <= limit) {
      umpa_init();
      const struct size_class *sc = &umpa_class[sizeclass_of(rounded)];
      /* Through malloc's fast path: malloc_slow (a call, its checks and
       * small_alloc's) cost a posix_memalign(64, 100) 30 instructions. */
      if (sc->size % align == 0 && (align <= SUPERBLOCK_HEADER || sc->paged))
        return do_malloc(rounded);
    }
    size_t need = n + align - 16;
    if (align < PAGE_SIZE && need <= limit) {
      char *p = do_malloc(need);
      if (!p) return NULL;
      char *a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
      if (a != p)
        atomic_store_explicit(&superblock_of(p)->xaligned, 1,
                              memory_order_relaxed);
      return a;
    }
  }
  umpa_init();
  return large_alloc(n, align, false);
}

UMPA_HOT
void *umpa_memalign(size_t align, size_t n) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (align & (align - 1)) align = (size_t)1 << log2_ceil(align);
  return aligned_alloc_pow2(align, n);
}

UMPA_HOT
void *umpa_aligned_alloc(size_t align, size_t n) {
  return umpa_memalign(align, n);
}

UMPA_HOT
int umpa_posix_memalign(void **out, size_t align, size_t n) {
  if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
  void *p = aligned_alloc_pow2(align, n);
  if (!p) return ENOMEM; /* errno is ENOMEM too, as glibc leaves it */
  *out = p;
  return 0;
}

void *umpa_valloc(size_t n) { return aligned_alloc_pow2(PAGE_SIZE, n); }

void *umpa_pvalloc(size_t n) {
  if (n > (size_t)PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  return aligned_alloc_pow2(PAGE_SIZE, n ? pages_of(n) << PAGE_SHIFT
                                         : PAGE_SIZE);
}

/* ---------------------------------------------------------------------------
 * Trimming, options and statistics.
 * ------------------------------------------------------------------------- */

int umpa_malloc_trim(size_t pad) {
  umpa_init();
  size_t released = heap_trim(umpa_tl_heap);
  released += largecache_flush();
  released += cache_shrink_to(pad >> PAGE_SHIFT) << PAGE_SHIFT;
  /* Under RLIMIT_AS, the address space of regions left empty. */
  released += buddy_retire_free(&umpa_buddy) << PAGE_SHIFT;
  return released > 0;
}

int umpa_mallopt(int param, int value) {
  umpa_init();
  /* Return values follow glibc 2.36: 1 except M_MXFAST above 160; like
   * glibc, a negative threshold is read as a huge one ("never"). */
  size_t v = (size_t)(ssize_t)value;
  switch (param) {
    case M_TRIM_THRESHOLD:
      /* -1, glibc's "never trim", is the largest limit, not "adaptive". */
      umpa_page_cache_limit(v == UMPA_PAGE_CACHE_ADAPTIVE ? v - 1 : v);
      return 1;
    case M_MMAP_THRESHOLD:
      atomic_store(&large_threshold, v < SMALL_MAX ? v : SMALL_MAX);
      if (!umpa_opt.check)
        atomic_store(&direct_max, v < SMALL_MAX ? v : SMALL_MAX);
      return 1;
    case M_MXFAST:
      return value >= 0 && value <= 160; /* accepted, no fast bins here */
    default:
      return 1; /* accepted and ignored, as glibc accepts unknown ones */
  }
}

/* The figures of mallinfo, from the per-class ones left in fig; fordblks
 * is the sum of *sb_free (free blocks in superblocks) and *cached (the
 * large-block cache and the blocks threads hold). */
static struct umpa_mallinfo mallinfo_parts(struct umpa_page_stats *ps,
                                           struct class_figures *fig,
                                           size_t *sb_free, size_t *cached) {
  umpa_init();
  heap_class_stats(fig);
  size_t blocks = 0, peak;
  *sb_free = 0;
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    blocks += fig[c].used;
    *sb_free += fig[c].held - fig[c].used;
  }
  umpa_page_stats(ps);
  size_t held_blocks, held = heap_held_bytes(&held_blocks);
  *cached = largecache_bytes() + held;
  struct umpa_mallinfo mi = {0};
  /* Read apart, the held figures may be ahead of the counters. */
  size_t lbytes = atomic_load(&large_bytes);
  size_t lblocks = atomic_load(&large_blocks);
  heap_large_counts(&lblocks, &lbytes);
  lbytes = lbytes > held ? lbytes - held : 0;
  lblocks = lblocks > held_blocks ? lblocks - held_blocks : 0;
  mi.arena = heap_arena_bytes(&peak);
  mi.hblks = lblocks;
  mi.hblkhd = lbytes;
  mi.usmblks = peak;
  mi.uordblks = blocks + lbytes;
  mi.fordblks = *sb_free + *cached;
  mi.keepcost = ps->cached + *cached;
  return mi;
}

struct umpa_mallinfo umpa_mallinfo(void) {
  struct umpa_page_stats ps;
  struct class_figures fig[NUM_CLASSES];
  size_t sb_free, cached;
  return mallinfo_parts(&ps, fig, &sb_free, &cached);
}

void umpa_malloc_stats(void) {
  struct umpa_page_stats ps;
  struct class_figures fig[NUM_CLASSES];
  size_t sb_free, cached;
  struct umpa_mallinfo mi = mallinfo_parts(&ps, fig, &sb_free, &cached);
  char buf[1024];
  size_t n = umpa_format(
      buf, sizeof buf,
      "Arena 0:\nsystem bytes     = %zu\nin use bytes     = %zu\n"
      "Total (incl. mmap):\nsystem bytes     = %zu\nin use bytes     = %zu\n"
      "max mmap regions = %zu\nmax mmap bytes   = %zu\n"
      "umpa: large blocks %zu (%zu bytes); free in superblocks %zu bytes; "
      "large-block cache %zu bytes\n"
      "umpa: pages reserved %zu, committed %zu, in use %zu, cached %zu "
      "(limit %zu); cache hits %zu, misses %zu, faults %zu\n",
      mi.arena, mi.uordblks, mi.arena, mi.uordblks, mi.hblks, mi.hblkhd,
      mi.hblks, mi.hblkhd, sb_free, cached, ps.reserved, ps.committed,
      ps.in_use, ps.cached, ps.cache_limit, (size_t)ps.cache_hits,
      (size_t)ps.cache_misses, (size_t)ps.page_faults);
  os_write_stderr(buf, n);
}

/* Write the n bytes of buf to the caller's stream; false (errno set) if
 * it failed.  The one place the library calls stdio: the stream is the
 * caller's, and no umpa lock is held, so it may allocate. */
static bool emit(FILE *stream, const char *buf, size_t n) {
  return fwrite(buf, 1, n, stream) == n;
}

/* One <size> entry: `count` free blocks of from..to bytes, `total` in all. */
static bool emit_size(FILE *stream, size_t from, size_t to, size_t total,
                      size_t count) {
  char buf[160];
  return emit(stream, buf,
              umpa_format(buf, sizeof buf,
                          "  <size from=\"%zu\" to=\"%zu\" total=\"%zu\" "
                          "count=\"%zu\"/>\n",
                          from, to, total, count));
}

int umpa_malloc_info(int options, FILE *stream) {
  if (options != 0) return EINVAL; /* glibc's answer (its manual: -1) */
  struct umpa_page_stats ps;
  struct class_figures fig[NUM_CLASSES];
  size_t sb_free, cached;
  struct umpa_mallinfo mi = mallinfo_parts(&ps, fig, &sb_free, &cached);
  size_t largest, spans = largecache_spans(&largest);
  static const char head[] = "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n";
  bool ok = emit(stream, head, sizeof head - 1);
  /* Free blocks of each class, as glibc lists its bins' free chunks. */
  size_t count = 0, total = 0;
  for (unsigned c = 0; c < NUM_CLASSES && ok; c++) {
    size_t size = umpa_class[c].size, n = (fig[c].held - fig[c].used) / size;
    if (n == 0) continue;
    ok = emit_size(stream, c ? (size_t)umpa_class[c - 1].size + 1 : 1, size,
                   n * size, n);
    count += n;
    total += n * size;
  }
  if (spans && ok) {
    ok = emit_size(stream, SMALL_MAX + 1, largest, cached, spans);
    count += spans;
    total += cached;
  }
  /* The heap's totals, then the whole allocator's: one heap, the same
   * figures, with the large blocks in use as glibc's mmapped chunks. */
  char tot[160], sys[320], lg[96];
  size_t nt = umpa_format(
      tot, sizeof tot,
      "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
      "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n",
      count, total);
  size_t ns = umpa_format(sys, sizeof sys,
                          "<system type=\"current\" size=\"%zu\"/>\n"
                          "<system type=\"max\" size=\"%zu\"/>\n"
                          "<aspace type=\"total\" size=\"%zu\"/>\n"
                          "<aspace type=\"mprotect\" size=\"%zu\"/>\n",
                          mi.arena, mi.usmblks, ps.reserved,
                          region_opened_bytes());
  size_t nm = umpa_format(lg, sizeof lg,
                          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n",
                          mi.hblks, mi.hblkhd);
  ok = ok && emit(stream, "</sizes>\n", 9) && emit(stream, tot, nt) &&
       emit(stream, sys, ns) && emit(stream, "</heap>\n", 8) &&
       emit(stream, tot, nt) && emit(stream, lg, nm) &&
       emit(stream, sys, ns) && emit(stream, "</malloc>\n", 10);
  return ok ? 0 : -1;
}

/* ---------------------------------------------------------------------------
 * The standard names.
 * ------------------------------------------------------------------------- */

#ifdef UMPA_OVERRIDE
#define ALIAS(target) __attribute__((alias(#target), visibility("default")))

void *malloc(size_t n) ALIAS(umpa_malloc);
void free(void *p) ALIAS(umpa_free);
void *calloc(size_t n, size_t size) ALIAS(umpa_calloc);
void *realloc(void *p, size_t n) ALIAS(umpa_realloc);
void *reallocarray(void *p, size_t n, size_t size) ALIAS(umpa_reallocarray);
int posix_memalign(void **out, size_t align, size_t n)
    ALIAS(umpa_posix_memalign);
void *aligned_alloc(size_t align, size_t n) ALIAS(umpa_aligned_alloc);
void *memalign(size_t align, size_t n) ALIAS(umpa_memalign);
void *valloc(size_t n) ALIAS(umpa_valloc);
void *pvalloc(size_t n) ALIAS(umpa_pvalloc);
size_t malloc_usable_size(void *p) ALIAS(umpa_malloc_usable_size);
int malloc_trim(size_t pad) ALIAS(umpa_malloc_trim);
int mallopt(int param, int value) ALIAS(umpa_mallopt);
void malloc_stats(void) ALIAS(umpa_malloc_stats);
int malloc_info(int options, FILE *stream) ALIAS(umpa_malloc_info);
void cfree(void *p) ALIAS(umpa_free);
void free_sized(void *p, size_t size) ALIAS(umpa_free_sized);
void free_aligned_sized(void *p, size_t align, size_t size)
    ALIAS(umpa_free_aligned_sized);

/* glibc's internal names: libc and old binaries call some of these
 * directly, and a block they allocate must be one our free accepts. */
void *__libc_malloc(size_t n) ALIAS(umpa_malloc);
void __libc_free(void *p) ALIAS(umpa_free);
void *__libc_calloc(size_t n, size_t size) ALIAS(umpa_calloc);
void *__libc_realloc(void *p, size_t n) ALIAS(umpa_realloc);
void *__libc_memalign(size_t align, size_t n) ALIAS(umpa_memalign);
void *__libc_valloc(size_t n) ALIAS(umpa_valloc);
void *__libc_pvalloc(size_t n) ALIAS(umpa_pvalloc);
void __libc_cfree(void *p) ALIAS(umpa_free);
int __posix_memalign(void **out, size_t align, size_t n)
    ALIAS(umpa_posix_memalign);

__attribute__((visibility("default"))) struct mallinfo2 mallinfo2(void) {
  struct umpa_mallinfo u = umpa_mallinfo();
  struct mallinfo2 m = {u.arena, u.ordblks, u.smblks, u.hblks, u.hblkhd,
                        u.usmblks, u.fsmblks, u.uordblks, u.fordblks,
                        u.keepcost};
  return m;
}

/* The int-sized original: figures above 2 GiB are clamped, not wrapped. */
__attribute__((visibility("default"))) struct mallinfo mallinfo(void) {
  struct umpa_mallinfo u = umpa_mallinfo();
#define CLAMP(v) ((int)((v) > (size_t)__INT_MAX__ ? (size_t)__INT_MAX__ : (v)))
  struct mallinfo m = {CLAMP(u.arena), CLAMP(u.ordblks), CLAMP(u.smblks),
                       CLAMP(u.hblks), CLAMP(u.hblkhd), CLAMP(u.usmblks),
                       CLAMP(u.fsmblks), CLAMP(u.uordblks), CLAMP(u.fordblks),
                       CLAMP(u.keepcost)};
#undef CLAMP
  return m;
}
#endif /* UMPA_OVERRIDE */
