/*
 * heap.c - thread heaps and the global heap (Hoard).
 *
 * Each thread allocates from its own heap: per size class a bin with a
 * current superblock (the fast path pops its free list, no lock, no atomic
 * read-modify-write), partly used superblocks in four lists by quarter of
 * fullness, parked full superblocks, and at most one empty spare.  Blocks
 * are handed out from the current superblock and, when it runs out, from
 * the fullest partial one, so the emptiest drift to empty and leave.
 *
 * Hoard's emptiness invariant keeps a heap's idle memory bounded: when a
 * free moves a superblock to an emptier quarter (the test Hoard makes on
 * every free, made here where it can change the outcome's cost), if the
 * bin holds more than K = 2 superblocks' worth of free blocks and is less
 * than (1 - f) = 3/4 used, its emptiest superblock moves to the global
 * heap, where any thread can adopt it.  Each bin keeps one empty spare to
 * avoid thrashing on a boundary; other empty superblocks go to the global
 * heap's store, whole (see store_put), and from there back to the page
 * layer when the store is full or nobody needs them.  With n bytes live,
 * largest and smallest blocks M and m and P heaps, this bounds the memory
 * held to O(n log M/m + P) (Hoard's theorem; see docs/ARCHITECTURE.md).
 *
 * The global heap has, per class, one lock and a list of partly used
 * superblocks, and the store of empty ones (store.c, striped by heap).  A
 * superblock on the list is owned by nobody; frees into it take the class
 * lock.
 */
#include "internal.h"

#include <string.h>

/* The sentinel is set up statically, since malloc's fast path reads it
 * before anything is initialised: the dynamic loader relocates its
 * pointers, writing their page in every process.  So there is one
 * sentinel, not one for "no heap yet" and one for "heap gone" (a TLS flag
 * tells those apart), and only its direct array holds pointers (nothing
 * reads its bins): a relocation per class on one page, which the loader then
 * write-protects, where two sentinels with their bins took 4 pages and a
 * page fault each.  The global heap (never allocated from: only its lists
 * are used) and the shared heap (set up when first used) start as zeros,
 * so the loader leaves their pages alone. */
const struct heap umpa_heap_empty = {
    .direct = {[0 ... NUM_CLASSES - 1] = &umpa_sb_empty}};
UMPA_BIG_BSS struct heap umpa_heap_global;

/* Threads whose heap is gone (exiting threads whose destructors still
 * allocate) share this heap under a lock. */
UMPA_BIG_BSS static struct heap heap_shared;

static _Atomic size_t arena_bytes, arena_peak;
static struct heap *heap_all, *heap_pool;
static unsigned heaps_made; /* under umpa_locks.heap_pool */
/* Where heap_acquire's sweep for heaps of dead threads goes on (under
 * umpa_locks.heap_pool); NULL: from the registry's head. */
static struct heap *sweep_next;
static void sweep_all(void);
/* Bumped by every malloc_trim: a heap that has not seen the latest trims
 * itself on its next tick (its owner alone may touch its bins). */
static _Atomic uint32_t trim_epoch;

UMPA_HOT
void heap_account_arena(ssize_t bytes) {
  size_t now = atomic_fetch_add_explicit(&arena_bytes, (size_t)bytes,
                                         memory_order_relaxed) + (size_t)bytes;
  size_t peak = atomic_load_explicit(&arena_peak, memory_order_relaxed);
  while (bytes > 0 && now > peak &&
         !atomic_compare_exchange_weak_explicit(&arena_peak, &peak, now,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

size_t heap_arena_bytes(size_t *peak) {
  *peak = atomic_load_explicit(&arena_peak, memory_order_relaxed);
  return atomic_load_explicit(&arena_bytes, memory_order_relaxed);
}

static inline uint32_t used_of(struct superblock *sb) {
  return atomic_load_explicit(&sb->xused, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------
 * Superblock lists (NULL-terminated, doubly linked, first in first out).
 *
 * A superblock joins its list at the tail, and next_superblock takes the
 * head of the fullest list: the one that has waited longest and gathered
 * the most frees.  Taken from the head, the superblock that had just come
 * off the full list with a single free block was taken back at once, and
 * a thread replacing its blocks at random switched superblocks every few
 * mallocs (see list_in).
 * ------------------------------------------------------------------------- */

static void list_append(struct bin *b, unsigned g, struct superblock *sb) {
  sb->next = NULL;
  sb->prev = b->tails[g];
  if (sb->prev) sb->prev->next = sb;
  else b->lists[g] = sb;
  b->tails[g] = sb;
}

static void list_push(struct bin *b, unsigned g, struct superblock *sb) {
  sb->prev = NULL;
  sb->next = b->lists[g];
  if (sb->next) sb->next->prev = sb;
  else b->tails[g] = sb;
  b->lists[g] = sb;
}

static void list_unlink(struct bin *b, unsigned g, struct superblock *sb) {
  if (sb->prev) sb->prev->next = sb->next;
  else b->lists[g] = sb->next;
  if (sb->next) sb->next->prev = sb->prev;
  else b->tails[g] = sb->prev;
  sb->next = sb->prev = NULL;
}

static unsigned group_of(struct superblock *sb) {
  uint32_t u = used_of(sb);
  return u >= sb->capacity ? SB_FULL : (unsigned)(4u * u / sb->capacity);
}

/* Blocks out in the bin, as Hoard's threshold counts them: a listed
 * superblock counts what it had out when it was listed, so that a free
 * into it writes nothing but the superblock (see list_in). */
static size_t bin_used(struct bin *b) {
  return b->used_other + used_of(b->current);
}

/* The exact figure, for statistics: walks the lists. */
static size_t bin_used_exact(struct bin *b) {
  size_t used = used_of(b->current);
  for (unsigned g = 0; g <= SB_GROUPS; g++)
    for (struct superblock *sb = b->lists[g]; sb; sb = sb->next)
      used += used_of(sb);
  return used;
}

static size_t held_of(struct bin *b) {
  return atomic_load_explicit(&b->xheld, memory_order_relaxed);
}

/* The number of superblocks a thread's bin holds changed: so does the
 * threshold under which it must give one away. */
static void held_add(struct bin *b, unsigned cls, ssize_t delta) {
  size_t held = held_of(b) + (size_t)delta;
  atomic_store_explicit(&b->xheld, held, memory_order_relaxed);
  b->mark = hoard_mark(held, umpa_class[cls].capacity);
}

/* A full superblock leaves the full list once 1/FULL_SLACK of its blocks
 * are free, not at the first free: with blocks freed at random (a cache's
 * entries replaced) every full superblock came back with one free block,
 * one malloc, and full again, a slow path each way.  The blocks freed
 * meanwhile wait, counted as out, as a listed superblock's frees do: at
 * most 1/16 of them, about 3 % more memory (scratch runs, 65536 blocks of
 * 16..1024 bytes replaced at random: 35 ns a pair instead of 100, peak
 * 42.9 MB instead of 41.8). */
#define FULL_SLACK 16

/* List a superblock in group g (a partial quarter or SB_FULL), and note
 * below how many blocks out it leaves the group.  The bin counts its
 * blocks out as of now: frees into it only change the count when they move
 * it to another group, so a listed superblock is counted at most a quarter
 * of its blocks above the truth.  (A count kept exact on every free cost
 * larson 14 %: a read-modify-write of the heap's bin, whose address waits
 * for the superblock's class, on the free path.) */
static void list_in(struct bin *b, struct superblock *sb, unsigned g) {
  sb->group = (uint8_t)g;
  sb->counted = used_of(sb);
  b->used_other += sb->counted;
  sb->lo_mark = g == SB_FULL ? sb->capacity - sb->capacity / FULL_SLACK
                : g == 0     ? 1
                             : (g * sb->capacity + 3) / 4;
  list_append(b, g, sb);
}

/* Take a listed superblock off its list, and out of the bin's count. */
static void list_out(struct bin *b, struct superblock *sb) {
  list_unlink(b, sb->group, sb);
  b->used_other -= sb->counted;
}

/* Make sb the current superblock of h's bin cls (and its copy in the
 * fast path's array). */
static void set_current(struct heap *h, unsigned cls, struct superblock *sb) {
  h->bins[cls].current = sb;
  h->direct[cls] = sb;
}

/* Every bin of h without a current superblock (a new, bare or
 * shared heap). */
static void no_currents(struct heap *h) {
  for (unsigned c = 0; c < NUM_CLASSES; c++) set_current(h, c, &umpa_sb_empty);
}

/* What heap_class_stats reports for a thread's bin, refreshed on slow paths. */
static void snapshot(struct bin *b) {
  atomic_store_explicit(&b->xused_snap, bin_used(b), memory_order_relaxed);
}

/* ---------------------------------------------------------------------------
 * The global heap.
 * ------------------------------------------------------------------------- */

struct class_masks umpa_class_masks;

/* List sb in the global heap, and take it off (class lock held). */
static void global_list_in(unsigned cls, struct superblock *sb) {
  struct bin *g = &umpa_heap_global.bins[cls];
  if (!g->lists[0])
    atomic_fetch_or_explicit(&umpa_class_masks.xglobal, (uint64_t)1 << cls,
                             memory_order_relaxed);
  list_push(g, 0, sb); /* newest first: see global_put */
  COUNTER_ADD(g->xheld, 1);
}

static void global_list_out(unsigned cls, struct superblock *sb) {
  struct bin *g = &umpa_heap_global.bins[cls];
  list_unlink(g, 0, sb);
  COUNTER_ADD(g->xheld, -1);
  if (!g->lists[0])
    atomic_fetch_and_explicit(&umpa_class_masks.xglobal,
                              ~((uint64_t)1 << cls), memory_order_relaxed);
}

bool heap_masks_agree(void) {
  bool ok = true;
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    ulock_acquire(&umpa_locks.heap_global[c]);
    bool bit = (atomic_load(&umpa_class_masks.xglobal) >> c) & 1;
    ok &= bit == (umpa_heap_global.bins[c].lists[0] != NULL);
    ulock_release(&umpa_locks.heap_global[c]);
  }
  return ok && store_masks_agree();
}

UMPA_HOT
static void global_put(struct superblock *sb) {
  unsigned cls = sb->cls;
  ulock_acquire(&umpa_locks.heap_global[cls]);
  sb->group = SB_GLOBAL;
  atomic_store_explicit(&sb->xowner, &umpa_heap_global, memory_order_release);
  /* Remote frees that raced with the hand-over. */
  superblock_collect(sb);
  if (used_of(sb) == 0) {
    /* Rare (a heap gives away its emptiest partial superblock): the clock
     * is read under the lock, not on every call. */
    struct superblock *gone = store_add(sb, os_now_ns(), store_cap());
    ulock_release(&umpa_locks.heap_global[cls]);
    store_destroy(gone);
    return;
  }
  /* Newest first: a heap that gave it away lately may want it back. */
  global_list_in(cls, sb);
  ulock_release(&umpa_locks.heap_global[cls]);
}

uint64_t heap_slow_events(void) { return umpa_tl_heap->slow_events; }

unsigned heap_count_in_use(void) {
  unsigned n = 0;
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all)
    n += atomic_load_explicit(&h->xin_use, memory_order_relaxed) != 0;
  ulock_release(&umpa_locks.heap_pool);
  return n;
}

void heap_large_counts(size_t *blocks, size_t *bytes) {
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all) {
    *blocks += atomic_load_explicit(&h->xlarge_blocks, memory_order_relaxed);
    *bytes += atomic_load_explicit(&h->xlarge_bytes, memory_order_relaxed);
  }
  ulock_release(&umpa_locks.heap_pool);
}

unsigned heap_count_made(void) {
  ulock_acquire(&umpa_locks.heap_pool);
  unsigned n = heaps_made;
  ulock_release(&umpa_locks.heap_pool);
  return n;
}

uint64_t heap_global_acquires(unsigned cls) {
  return atomic_load_explicit(&umpa_locks.heap_global[cls].xacquires,
                              memory_order_relaxed);
}

static struct superblock *global_take(unsigned cls, struct heap *h) {
  uint64_t any =
      atomic_load_explicit(&umpa_class_masks.xglobal, memory_order_relaxed);
  if (!(any & ((uint64_t)1 << cls))) return NULL; /* racy peek */
  ulock_acquire(&umpa_locks.heap_global[cls]);
  struct superblock *sb = umpa_heap_global.bins[cls].lists[0];
  if (sb) {
    global_list_out(cls, sb);
    atomic_store_explicit(&sb->xowner, h, memory_order_release);
  }
  ulock_release(&umpa_locks.heap_global[cls]);
  if (sb) superblock_collect(sb);
  return sb;
}

static void adopt(struct heap *h, struct superblock *sb);

/* The fewest blocks out that a superblock of class cls must have for h's
 * bin to adopt it without falling under Hoard's threshold at once, which
 * would hand its emptiest superblock straight back.  The bin is h's own
 * thread's, so the figure holds while that thread frees under the class
 * lock (computed per block, it was a fifth of a deferred free's
 * instructions in bench/teardown). */
static size_t adopt_need(struct heap *h, unsigned cls) {
  struct bin *b = &h->bins[cls];
  size_t mark = hoard_mark(held_of(b) + 1, umpa_class[cls].capacity);
  size_t used = bin_used(b);
  return mark > used ? mark - used : 0;
}

/* Add the chain `more` (linked through next) to the chain *gone. */
static void chain_add(struct superblock **gone, struct superblock *more) {
  if (!more) return;
  struct superblock *last = more;
  while (last->next) last = last->next;
  last->next = *gone;
  *gone = more;
}

/* Free the n blocks of d[] (at most HEAP_DEFERRED), whose superblocks were
 * the global heap's when they were freed: one round of the class lock per
 * class.  A superblock that empties goes to the store, through the heap
 * `h` (the caller's own, or NULL) when there is one, so that it lands in
 * h's stripe of the store, where h looks first.  h adopts a superblock
 * (as mimalloc reclaims abandoned pages on free) when its bin has room for
 * one: its next frees into it are local, and its mallocs reuse it. */
UMPA_HOT
static void global_free_blocks(struct heap *h, struct deferred *d,
                               unsigned n) {
  /* Sorted by class first (a block still out keeps its superblock's
   * class), a header read each, then a round of the class lock per class.
   * The headers and the blocks are fetched a few entries ahead: fetched
   * all at once, before the lock, most of the 128 requests found no
   * free fill buffer and were dropped, and the loads under the lock
   * missed one after another (perf, bench/teardown). */
  enum { AHEAD = 8 };
  _Static_assert(HEAP_DEFERRED <= 255 && NUM_CLASSES <= 255,
                 "entries and classes are indexed by bytes");
  uint8_t cls_of[HEAP_DEFERRED], order[HEAP_DEFERRED];
  uint8_t count[NUM_CLASSES] = {0};
  for (unsigned i = 0; i < n; i++) {
    if (i + AHEAD < n) __builtin_prefetch(d[i + AHEAD].sb);
    cls_of[i] = d[i].sb->cls;
    count[cls_of[i]]++;
  }
  /* Each class's slice of order[], in order of first appearance. */
  uint8_t at[NUM_CLASSES];
  unsigned next = 0;
  for (unsigned i = 0; i < n; i++)
    if (count[cls_of[i]]) {
      at[cls_of[i]] = (uint8_t)next;
      next += count[cls_of[i]];
      count[cls_of[i]] = 0;
    }
  for (unsigned i = 0; i < n; i++) order[at[cls_of[i]]++] = (uint8_t)i;
  for (unsigned g = 0; g < n;) {
    unsigned cls = cls_of[order[g]], end = g;
    while (end < n && cls_of[order[end]] == cls) end++;
    unsigned nredo = 0, nadopt = 0;
    struct deferred redo[HEAP_DEFERRED];
    struct superblock *adopted[HEAP_DEFERRED], *gone = NULL;
    size_t need = h ? adopt_need(h, cls) : SIZE_MAX;
    for (unsigned j = g; j < end && j < g + AHEAD; j++)
      __builtin_prefetch(d[order[j]].b, 1);
    ulock_acquire(&umpa_locks.heap_global[cls]);
    for (unsigned j = g; j < end; j++) {
      if (j + AHEAD < end) __builtin_prefetch(d[order[j + AHEAD]].b, 1);
      struct superblock *sb = d[order[j]].sb;
      struct block *b = d[order[j]].b;
      /* Adopted since (a superblock leaves the global heap only under
       * this lock): a remote free to its new owner.  It cannot have been
       * stored: this block is still out. */
      if (atomic_load_explicit(&sb->xowner, memory_order_relaxed) !=
          &umpa_heap_global) {
        redo[nredo++] = d[order[j]];
        continue;
      }
      /* The lock makes the free list ours.  Frees that raced with the
       * hand-over wait on the remote list. */
      if (UMPA_UNLIKELY(b == sb->free))
        umpa_fatal("umpa: free(%p): double free\n", (void *)b);
      b->next = sb->free;
      sb->free = b;
      atomic_store_explicit(&sb->xused, used_of(sb) - 1, memory_order_relaxed);
      superblock_collect(sb); /* frees that raced with a hand-over */
      bool empty = used_of(sb) == 0;
      if (empty && !h) {
        global_list_out(cls, sb);
        chain_add(&gone, store_add(sb, os_now_ns(), store_cap()));
      } else if (h && (empty || (!nadopt && used_of(sb) >= need))) {
        global_list_out(cls, sb);
        atomic_store_explicit(&sb->xowner, h, memory_order_release);
        adopted[nadopt++] = sb;
      }
    }
    ulock_release(&umpa_locks.heap_global[cls]);
    for (unsigned i = 0; i < nredo; i++)
      superblock_free_remote(redo[i].sb, redo[i].b);
    for (unsigned i = 0; i < nadopt; i++) adopt(h, adopted[i]);
    store_destroy(gone);
    g = end;
  }
}

/* Make h's deferred frees, `adopter` adopting (h, or NULL).  Copied out
 * first: global_free_blocks compacts the array it works on, and a free it
 * makes may defer again. */
UMPA_HOT
static void flush_deferred(struct heap *h, struct heap *adopter) {
  unsigned n = h->ndeferred;
  if (!n) return;
  struct deferred d[HEAP_DEFERRED];
  memcpy(d, h->deferred, n * sizeof *d);
  h->ndeferred = 0;
  global_free_blocks(adopter, d, n);
}

void heap_global_flush(struct heap *h) { flush_deferred(h, h); }

/* A thread that frees in random order (a table torn down) leaves its
 * superblocks about equally full, so as its use falls Hoard's threshold
 * hands most of them to the global heap, and most of its frees land here.
 * Each one adopted the superblock it freed into and the threshold gave one
 * back at once, two rounds of the class lock; and a round of a lock waits
 * for the writes before it, here into the freed block, a cache miss, where
 * the owner's frees overlap theirs.  bench/teardown's frees took 62 ns
 * each, mimalloc's 2.7, and with two threads each freeing its own table,
 * 340 ns: the class lock is the same for both.  So a thread with a heap
 * defers such frees and makes HEAP_DEFERRED of them at a time, under one
 * round of the lock per class; it adopts a superblock only when its bin
 * has room for it, and otherwise the block goes onto the superblock's list
 * under the lock, which is all Hoard's global heap does. */
UMPA_HOT
void heap_global_free(struct heap *h, struct superblock *sb,
                      struct block *b) {
  if (h == HEAP_NONE) {
    struct deferred d = {sb, b};
    global_free_blocks(NULL, &d, 1);
    return;
  }
  /* The cheap double-free check, as the owner's free makes it. */
  unsigned n = h->ndeferred;
  if (UMPA_UNLIKELY(n && h->deferred[n - 1].b == b))
    umpa_fatal("umpa: free(%p): double free\n", (void *)b);
  h->deferred[n].sb = sb;
  h->deferred[n].b = b;
  h->ndeferred = (uint8_t)(n + 1);
  if (n + 1 == HEAP_DEFERRED) heap_global_flush(h);
}

/* ---------------------------------------------------------------------------
 * Bins.
 * ------------------------------------------------------------------------- */

/* An empty superblock leaves its list: kept as the spare or stored. */
UMPA_HOT
static void retire_empty(struct bin *b, struct superblock *sb) {
  if (!b->spare) {
    sb->group = SB_SPARE;
    b->spare = sb;
    return;
  }
  held_add(b, sb->cls, -1);
  store_put(sb);
}

/* Put a non-current superblock on the list its fullness calls for. */
static void relist(struct bin *b, struct superblock *sb) {
  unsigned g = group_of(sb);
  if (g == sb->group) return;
  list_out(b, sb);
  list_in(b, sb, g);
}

/* Collect remote frees into a listed superblock and relist it (one on the
 * full list may have had frees of its own). */
static void collect_listed(struct bin *b, struct superblock *sb) {
  superblock_collect(sb);
  if (used_of(sb) == 0) {
    list_out(b, sb);
    retire_empty(b, sb);
  } else {
    relist(b, sb);
  }
}

/* Bin cls's spare, which it then no longer holds. */
static struct superblock *spare_out(struct bin *b, unsigned cls) {
  struct superblock *sb = b->spare;
  b->spare = NULL;
  held_add(b, cls, -1);
  return sb;
}

/* Hoard's invariant: give the emptiest superblock to the global heap. */
static void enforce_threshold(struct bin *b, unsigned cls) {
  if (bin_used(b) >= b->mark) return;
  if (b->spare) {
    store_put(spare_out(b, cls));
    return;
  }
  for (unsigned g = 0; g < SB_GROUPS; g++) {
    struct superblock *sb = b->lists[g];
    if (!sb) continue;
    list_out(b, sb);
    held_add(b, cls, -1);
    global_put(sb);
    return;
  }
}

/* Take a superblock whose owner was just set to h into h's bin. */
static void adopt(struct heap *h, struct superblock *sb) {
  unsigned cls = sb->cls;
  struct bin *b = &h->bins[cls];
  superblock_collect(sb);
  held_add(b, cls, 1);
  if (used_of(sb) == 0) {
    retire_empty(b, sb);
  } else {
    list_in(b, sb, group_of(sb));
  }
  enforce_threshold(b, cls);
  snapshot(b);
}

/* The current superblock ran out: park it full, or list it if remote
 * frees are waiting. */
UMPA_HOT
static void retire_current(struct heap *h, unsigned cls) {
  struct bin *b = &h->bins[cls];
  struct superblock *sb = b->current;
  if (sb == &umpa_sb_empty) return;
  set_current(h, cls, &umpa_sb_empty);
  if (used_of(sb) == 0) {
    retire_empty(b, sb);
    return;
  }
  list_in(b, sb, group_of(sb));
  if (sb->group == SB_FULL && !superblock_park(sb)) collect_listed(b, sb);
}

/* Parked superblocks got remote frees: collect them all. */
static void check_pending(struct bin *b) {
  if (!atomic_load_explicit(&b->xpending, memory_order_relaxed)) return;
  atomic_store_explicit(&b->xpending, 0, memory_order_relaxed);
  for (struct superblock *sb = b->lists[SB_FULL], *next; sb; sb = next) {
    next = sb->next;
    collect_listed(b, sb);
  }
}

/* A bin keeps its current superblock when its last block comes back, and
 * one empty spare, for the class's next mallocs, until a trim or the
 * thread's exit.  A superblock cut from a freed large block's pages has
 * memory in every page, so in sqlite's workload (tests/preload) five
 * classes used in earlier statements each held an empty 256 or 512 KiB
 * superblock at the peak (1.5 MB of its 18.8), while the class its last
 * statement filled took new pages for 60 superblocks.  So a tick notes,
 * every IDLE_SWEEP_NS at most, which bins have an empty current superblock
 * or a spare (a load of each current's count), and a class that holds
 * superblocks and needs one more takes one of those of its size first, cut
 * anew (steal_idle).  Not for a class's first superblock: one that takes a
 * few blocks would leave a fully backed superblock mostly unused while
 * the class it came from, used again, takes a new one (gcc's peak: 0.7 %
 * above the old code without this rule, 0.15 % with it).
 * Moving them to the store instead (where other classes take them too)
 * cost Figure 7's 4-8 KiB requests 40 %: a class's second request found
 * its superblock gone. */
#define IDLE_SWEEP_NS ((uint64_t)25 * 1000000)

/* A class whose bin IDLE_RETIRE_SWEEPS sweeps in a row (a second at
 * least) found idle gives its empty superblocks to the store, from where
 * UMPA_DECAY_MS later they go back to the page layer: else a thread that
 * used many classes once kept up to two superblocks of each (16 MiB for
 * the 24 classes above 1 KiB) for as long as it ran.  A class used again
 * within the second keeps them (moving them at once cost Figure 7's
 * 4-8 KiB requests 40 %, above), and one used now and then finds its own
 * in the store. */
#define IDLE_RETIRE_SWEEPS 40

/* Whether bin b's current superblock is a real one with no block out. */
static bool current_empty(struct bin *b) {
  return b->current != &umpa_sb_empty && used_of(b->current) == 0;
}

/* Bin c's current superblock, which it then no longer holds. */
static struct superblock *current_out(struct heap *h, unsigned c) {
  struct superblock *sb = h->bins[c].current;
  set_current(h, c, &umpa_sb_empty);
  held_add(&h->bins[c], c, -1);
  return sb;
}

/* Bin c's empty superblocks (its spare, its current one if empty) to the
 * store.  The class, idle for a second, is served as pages again. */
static void retire_idle(struct heap *h, unsigned c) {
  struct bin *b = &h->bins[c];
  b->as_pages = 0;
  if (b->spare) store_put(spare_out(b, c));
  if (current_empty(b)) store_put(current_out(h, c));
}

static void sweep_idle(struct heap *h, uint64_t now) {
  if (now - h->idle_swept < IDLE_SWEEP_NS) return;
  h->idle_swept = now;
  bool retire = decay_age_ns() != 0; /* UMPA_DECAY_MS=0 keeps them */
  uint64_t idle = 0;
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    struct bin *b = &h->bins[c];
    if (!b->spare && !current_empty(b)) {
      h->idle_sweeps[c] = 0;
      continue;
    }
    if (retire && ++h->idle_sweeps[c] >= IDLE_RETIRE_SWEEPS) {
      h->idle_sweeps[c] = 0;
      retire_idle(h, c);
      continue;
    }
    idle |= (uint64_t)1 << c;
  }
  h->idle = idle;
}

/* An empty superblock of another class of cls's size from h's bins, cut
 * anew for cls, or NULL: a spare, or a current superblock with no block
 * out, among the classes the last sweep found so (checked again now). */
static struct superblock *steal_idle(struct heap *h, unsigned cls) {
  uint32_t pages = umpa_class[cls].sb_pages;
  for (uint64_t m = h->idle & ~((uint64_t)1 << cls); m; m &= m - 1) {
    unsigned c = (unsigned)__builtin_ctzll(m);
    if (umpa_class[c].sb_pages != pages) continue;
    h->idle &= ~((uint64_t)1 << c); /* taken, or found in use */
    struct bin *b = &h->bins[c];
    struct superblock *sb =
        b->spare ? b->spare : current_empty(b) ? b->current : NULL;
    if (!sb || sb->holes) continue; /* in use again, or trimmed: recut
                                       refuses it */
    if (sb == b->spare) spare_out(b, c);
    else current_out(h, c);
    superblock_recut(sb, cls);
    return sb;
  }
  return NULL;
}

/* A class of blocks of a page or more gets no superblock for its first
 * HEAP_AS_PAGES_FIRST blocks in a heap: they are large blocks of whole
 * pages, from the thread's held blocks, the page layer's backed free runs
 * or a cached span's memory (largecache_take_small).  A class's first
 * superblock cost its first malloc and free 4 us in Figure 7 (4-8 KiB: a
 * 256 KiB run cut from the large cache or fresh pages, the header's first
 * write a fault, every line of it cold), where a class used a few times
 * needs none: Figure 7's 4-8 KiB requests are
 * one in 2000, each of its eight classes used about once a run, as a
 * program's occasional 5 KiB buffer is.  Served as pages they took 2.8 us
 * above the writes against 4.4 (medians of 8 interleaved runs).  The
 * waste is bounded: under a page per block, HEAP_AS_PAGES_FIRST blocks per
 * class, counted again once the class's superblocks went idle for a
 * second (retire_idle).  Not above 8 KiB: the classes of 8-16 KiB, each
 * used four times a run, reuse their first superblock, and served as
 * pages took 2.0 us against 1.6; runs of 5-8 pages are seldom backed in
 * the page layer (faulted in, Figure 7's 16-32 KiB took 8-12 us instead
 * of 1.7).  Not in checked mode, which marks superblock blocks. */
bool heap_as_pages(struct heap *h, size_t n) {
  if (h == HEAP_NONE || n > HEAP_AS_PAGES_MAX || umpa_opt.check) return false;
  unsigned cls = sizeclass_of(n);
  struct bin *b = &h->bins[cls];
  if (umpa_class[cls].size < PAGE_SIZE || held_of(b) ||
      b->as_pages >= HEAP_AS_PAGES_FIRST)
    return false;
  b->as_pages++;
  return true;
}

UMPA_HOT
static struct superblock *next_superblock(struct heap *h, struct bin *b,
                                          unsigned cls) {
  /* Deferred frees may empty superblocks the thread can take back (in
   * address order, when the store gives them: superblock_reorder). */
  heap_global_flush(h);
  check_pending(b);
  for (unsigned g = SB_GROUPS; g-- > 0;) { /* fullest first */
    struct superblock *sb = b->lists[g];
    if (sb) {
      list_out(b, sb);
      return sb;
    }
  }
  if (b->spare) {
    struct superblock *sb = b->spare;
    b->spare = NULL;
    return sb;
  }
  struct superblock *sb = global_take(cls, h);
  if (!sb) sb = store_take(cls, h);
  if (!sb && held_of(b)) sb = steal_idle(h, cls);
  if (!sb) sb = superblock_new(cls, h);
  if (sb) held_add(b, cls, 1);
  return sb;
}

/* The caches age on the paths that free into them and on large requests;
 * a program that stops both would keep what they hold until it exits.
 * Every HEAP_TICK_EVERY events of a heap's slow paths (a superblock run
 * out, or one changing its quarter of fullness), it ages them too, the
 * store of empty superblocks included: a clock read (two while the large
 * cache holds more than it keeps) and a load per class of the heap's
 * stripe and of one other when there is nothing to release; and it trims
 * the heap if a malloc_trim came since its last tick. */
#define HEAP_TICK_EVERY 16
static size_t trim_bins(struct heap *h, size_t *pages);
static void retire_orphans_now(void);

/* The orphans of a fork, if any (see heap_after_fork_child): one load. */
static inline void retire_orphans(void) {
  if (UMPA_UNLIKELY(atomic_load_explicit(&umpa_locks.xorphans,
                                         memory_order_relaxed)))
    retire_orphans_now();
}

UMPA_HOT
static UMPA_NOINLINE void tick(struct heap *h) {
  h->ticks = HEAP_TICK_EVERY - 1; /* this event was the 16th */
  retire_orphans();
  heap_global_flush(h);
  held_age(h);
  largecache_decay_idle();
  uint64_t now = os_now_ns();
  store_tick(h, now);
  sweep_idle(h, now);
  cache_enforce();
  uint32_t epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
  if (UMPA_UNLIKELY(epoch != h->trim_seen)) {
    size_t pages = 0;
    h->trim_seen = epoch;
    trim_bins(h, &pages);
  }
}

/* A slow-path event of h: counted, and every HEAP_TICK_EVERY-th ticks. */
static inline void slow_event(struct heap *h) {
  h->slow_events++;
  if (UMPA_UNLIKELY(h->ticks-- == 0)) tick(h);
}

/* Allocate from heap h's bin cls (the caller owns h).  *zero is set when
 * the block is known to read as zero. */
UMPA_HOT
static void *bin_alloc(struct heap *h, unsigned cls, bool *zero) {
  struct bin *b = &h->bins[cls];
  for (;;) {
    struct superblock *sb = b->current;
    struct block *blk = sb->free;
    if (blk) {
      sb->free = blk->next;
      atomic_store_explicit(&sb->xused, used_of(sb) + 1, memory_order_relaxed);
      return blk;
    }
    if (zero && sb->zeroed && sb->carved < sb_main(sb) && !sb->holes) {
      /* Never written since the kernel zeroed it: calloc needs no memset. */
      blk = (struct block *)(sb_blocks(sb) + (size_t)sb->carved++ * sb->size);
      atomic_store_explicit(&sb->xused, used_of(sb) + 1, memory_order_relaxed);
      *zero = true;
      return blk;
    }
    if (superblock_carve(sb)) continue;
    if (sb != &umpa_sb_empty && superblock_collect(sb)) continue;
    slow_event(h);
    retire_current(h, cls);
    sb = next_superblock(h, b, cls);
    if (!sb) {
      snapshot(b);
      return NULL;
    }
    sb->group = SB_CURRENT;
    sb->lo_mark = 0;
    set_current(h, cls, sb);
    snapshot(b);
  }
}

UMPA_HOT
void *heap_alloc_slow(struct heap *h, size_t n, bool *zero) {
  if (UMPA_UNLIKELY(h == HEAP_NONE)) h = thread_heap_init();
  unsigned cls = sizeclass_of(n); /* the tables are ready now */
  if (UMPA_UNLIKELY(h == HEAP_NONE)) { /* no heap to be had, or gone */
    ulock_acquire(&umpa_locks.heap_shared);
    if (UMPA_UNLIKELY(!heap_shared.bins[0].current)) no_currents(&heap_shared);
    void *p = bin_alloc(&heap_shared, cls, zero);
    ulock_release(&umpa_locks.heap_shared);
    return p;
  }
  return bin_alloc(h, cls, zero);
}

UMPA_HOT
void heap_free_slow(struct heap *h, struct superblock *sb) {
  /* The class before retire_empty: a store over its cap destroys sb, and
   * its header may then read zero, belong to another superblock or, under
   * mlockall, be unmapped (test_malloc_mlock with UMPA_PAGE_CACHE=0). */
  unsigned cls = sb->cls;
  struct bin *b = &h->bins[cls];
  if (used_of(sb) == 0) {
    list_out(b, sb);
    retire_empty(b, sb);
  } else {
    relist(b, sb);
  }
  enforce_threshold(b, cls);
  snapshot(b);
  /* Last: a tick may trim the heap, sb's list included. */
  slow_event(h);
}

/* ---------------------------------------------------------------------------
 * Heap lifecycle.
 * ------------------------------------------------------------------------- */

/* The whole pages of a heap in front of `ticks`: the direct array and the
 * bins, which a pooled heap holds empty.  A trim gives them back (a
 * thousand threads that came and went kept 4 MB there); the fields from
 * `ticks` on keep the heap in the registry and the pool. */
#define HEAP_BARE_PAGES (offsetof(struct heap, ticks) >> PAGE_SHIFT)

/* Give back the front pages of every pooled heap; returns the bytes.  Not
 * of one whose bins still head lists of superblocks it stored (the spares
 * it had at its thread's exit, until taken or flushed): the store updates
 * those heads.  A pooled heap stores nothing more, so once they are empty
 * only a free by another thread that read a stale owner may still write
 * there (a notification count), which brings back a page, no more. */
static size_t bare_pooled(void) {
  size_t pages = 0;
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_pool; h && HEAP_BARE_PAGES; h = h->next_free)
    if (!h->bare && !store_holds_from(h)) {
      page_release_pages(h, HEAP_BARE_PAGES);
      h->bare = true;
      pages += HEAP_BARE_PAGES;
    }
  ulock_release(&umpa_locks.heap_pool);
  return pages << PAGE_SHIFT;
}

/* A thread gives its heap up in a pthread key's destructor, but one whose
 * first malloc comes in the last round of destructors sets the key after
 * glibc's last look: its heap stays in use after it is gone, and a
 * program whose threads each do that (a destructor that logs) would keep
 * a heap, and what its superblocks hold, a thread.  So a thread that finds
 * the pool empty checks whether the threads of SWEEP_PROBES heaps in use
 * are alive, going round the registry, before it makes a new heap; a heap
 * whose thread is gone is given up, as its thread would have, and pooled.
 * Dead threads then keep no more heaps than the most that were ever in use
 * at once, and a pooled heap costs a thread no check (its id, one system
 * call, is all); malloc_trim checks them all.  Not the heaps of another
 * fork generation: their threads are in the parent (orphans), or the
 * survivor's id changed with the fork. */
#define SWEEP_PROBES 2
#define SWEEP_STEPS 16 /* heaps looked at, under the pool lock, at most */

static bool sweepable(struct heap *h) {
  return atomic_load_explicit(&h->xtid, memory_order_relaxed) &&
         h->fork_gen == umpa_locks.fork_gen;
}

/* Give h up if its thread is gone. */
static void sweep_one(struct heap *h) {
  int tid = atomic_load_explicit(&h->xtid, memory_order_acquire);
  /* The exchange makes it ours alone: its thread, exiting now, could only
   * find 0 (heap_abandon). */
  if (tid && !os_thread_alive(tid) &&
      atomic_compare_exchange_strong_explicit(&h->xtid, &tid, 0,
                                              memory_order_acquire,
                                              memory_order_relaxed))
    heap_abandon(h);
}

static void sweep_some(void) {
  struct heap *pick[SWEEP_PROBES];
  unsigned n = 0;
  ulock_acquire(&umpa_locks.heap_pool);
  struct heap *h = sweep_next;
  for (unsigned step = 0; step < SWEEP_STEPS && n < SWEEP_PROBES; step++) {
    if (!h && !(h = heap_all)) break;
    if (sweepable(h)) pick[n++] = h;
    h = h->next_all;
  }
  sweep_next = h;
  ulock_release(&umpa_locks.heap_pool);
  for (unsigned i = 0; i < n; i++) sweep_one(pick[i]);
}

static void sweep_all(void) {
  /* A heap stays in the registry and its link never changes: the walk
   * goes on after the lock was let go for a check. */
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all) {
    if (!sweepable(h)) continue;
    ulock_release(&umpa_locks.heap_pool);
    sweep_one(h); /* gives the heap up: takes the pool lock */
    ulock_acquire(&umpa_locks.heap_pool);
  }
  ulock_release(&umpa_locks.heap_pool);
}

struct heap *heap_acquire(void) {
  int tid = os_thread_id();
  ulock_acquire(&umpa_locks.heap_pool);
  struct heap *h = heap_pool;
  if (!h) {
    ulock_release(&umpa_locks.heap_pool);
    sweep_some();
    ulock_acquire(&umpa_locks.heap_pool);
    h = heap_pool;
  }
  if (h) {
    heap_pool = h->next_free;
    if (h->bare) {
      /* Its bins read as zero: what a new heap has, but for the current
       * superblocks. */
      no_currents(h);
      h->bare = false;
    }
  } else {
    h = page_alloc(pages_of(sizeof *h), UMPA_ZERO, KIND_META);
    if (h) {
      no_currents(h);
      /* Its first tick after HEAP_TICK_EVERY events, not at the first:
       * there is nothing to age yet, and a short process (each of git's)
       * would pay the clock and the store's and the cache's pages for it. */
      h->ticks = HEAP_TICK_EVERY - 1;
      h->stripe = (uint8_t)store_stripe_of(heaps_made++);
      h->sweep = h->stripe;
      h->next_all = heap_all;
      heap_all = h;
    }
  }
  if (h) {
    /* Trims before the thread began are not its to answer. */
    h->trim_seen = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
    h->fork_gen = umpa_locks.fork_gen;
    atomic_store_explicit(&h->xin_use, 1, memory_order_relaxed);
    atomic_store_explicit(&h->xtid, tid, memory_order_relaxed);
  }
  ulock_release(&umpa_locks.heap_pool);
  retire_orphans();
  return h;
}

/* Give every superblock of h away: empty ones to the page layer, the rest
 * to the global heap, where frees that arrive later still find them. */
void heap_abandon(struct heap *h) {
  /* Its thread's exit and the sweep (heap_acquire) both come here, the
   * second only once the first cannot. */
  atomic_store_explicit(&h->xtid, 0, memory_order_relaxed);
  held_flush(h);
  flush_deferred(h, NULL); /* no adoption: the heap is going */
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    struct bin *b = &h->bins[c];
    retire_current(h, c);
    if (b->spare) store_put(b->spare);
    for (unsigned g = 0; g <= SB_GROUPS; g++)
      while (b->lists[g]) {
        struct superblock *sb = b->lists[g];
        list_unlink(b, g, sb);
        global_put(sb); /* collects and releases it if it became empty */
      }
    b->spare = NULL;
    b->used_other = 0;
    b->mark = 0;
    atomic_store_explicit(&b->xheld, 0, memory_order_relaxed);
    atomic_store_explicit(&b->xused_snap, 0, memory_order_relaxed);
    atomic_store_explicit(&b->xpending, 0, memory_order_relaxed);
    b->as_pages = 0;
  }
  h->idle = 0;
  memset(h->idle_sweeps, 0, sizeof h->idle_sweeps);
  superblock_chunk_drop(h);
  if (h == &heap_shared) return;
  ulock_acquire(&umpa_locks.heap_pool);
  atomic_store_explicit(&h->xin_use, 0, memory_order_relaxed);
  h->next_free = heap_pool;
  heap_pool = h;
  ulock_release(&umpa_locks.heap_pool);
}

/* Give back what the bins of h (the caller's own) hold free: empty
 * superblocks to the store, the spares and, inside superblocks with blocks
 * out, the pages with none (*pages counts those).  Returns the bytes of
 * the spares. */
static size_t trim_bins(struct heap *h, size_t *pages) {
  size_t released = 0;
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    struct bin *b = &h->bins[c];
    /* An empty current superblock goes too: the next malloc of the
     * class takes a new one. */
    if (b->current != &umpa_sb_empty) {
      superblock_collect(b->current);
      if (used_of(b->current) == 0) retire_current(h, c);
    }
    check_pending(b);
    for (unsigned g = 0; g <= SB_GROUPS; g++)
      for (struct superblock *sb = b->lists[g], *next; sb; sb = next) {
        next = sb->next;
        collect_listed(b, sb);
      }
    /* What still has blocks out keeps only the pages they are on. */
    *pages += superblock_trim(b->current);
    for (unsigned g = 0; g < SB_FULL; g++)
      for (struct superblock *sb = b->lists[g]; sb; sb = sb->next)
        *pages += superblock_trim(sb);
    if (b->spare) {
      released += (size_t)umpa_class[c].sb_pages << PAGE_SHIFT;
      superblock_destroy(spare_out(b, c));
    }
  }
  superblock_chunk_drop(h);
  return released;
}

size_t heap_trim(struct heap *h) {
  size_t released = 0, pages = 0;
  retire_orphans(); /* their memory is the child's to give back */
  sweep_all();      /* and the heaps of threads gone (heap_acquire) */
  /* Other threads' heaps trim themselves on their next tick. */
  atomic_fetch_add_explicit(&trim_epoch, 1, memory_order_relaxed);
  if (h != HEAP_NONE) {
    heap_global_flush(h); /* its superblocks may become empty */
    h->trim_seen = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
    released += trim_bins(h, &pages);
  }
  /* The global heap: collect what other threads freed, release the empty. */
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    ulock_acquire(&umpa_locks.heap_global[c]);
    struct bin *g = &umpa_heap_global.bins[c];
    for (struct superblock *sb = g->lists[0], *next; sb; sb = next) {
      next = sb->next;
      superblock_collect(sb);
      if (used_of(sb) == 0) {
        global_list_out(c, sb);
        released += (size_t)umpa_class[c].sb_pages << PAGE_SHIFT;
        superblock_destroy(sb);
      } else {
        pages += superblock_trim(sb);
      }
    }
    ulock_release(&umpa_locks.heap_global[c]);
  }
  released += store_flush(); /* first: it empties the pooled heaps' lists */
  /* Every thread's held large blocks, its owner idle or not (the pool
   * lock keeps the heaps in use); counted as the large cache takes them. */
  ulock_acquire(&umpa_locks.heap_pool);
  held_flush_all(heap_all);
  ulock_release(&umpa_locks.heap_pool);
  return released + (pages << PAGE_SHIFT) + bare_pooled();
}

/* ---------------------------------------------------------------------------
 * fork() and statistics.
 * ------------------------------------------------------------------------- */

UMPA_FORK
void heap_lock_all(void) {
  ulock_acquire_fork(&umpa_locks.heap_pool);
  ulock_acquire_fork(&umpa_locks.heap_shared);
  for (unsigned c = 0; c < NUM_CLASSES; c++)
    ulock_acquire_fork(&umpa_locks.heap_global[c]);
  store_lock_all(); /* after: global_put stores under the class lock */
}

UMPA_FORK
void heap_unlock_all(void) {
  store_unlock_all();
  for (unsigned c = NUM_CLASSES; c-- > 0;)
    ulock_release_fork(&umpa_locks.heap_global[c]);
  ulock_release_fork(&umpa_locks.heap_shared);
  ulock_release_fork(&umpa_locks.heap_pool);
}

UMPA_FORK
void heap_after_fork_child(struct heap *survivor) {
  heap_unlock_all();
  /* The other threads are gone, and their heaps are orphans, which the
   * child must never use (see retire_orphans_now).  Not retired here:
   * that writes a line of each, a page copied, and a child that execs at
   * once needs none of it (giving them away here, as was done once, wrote
   * their bins and every superblock header they held: 113 page faults
   * per child in bench/fork with two threads allocating, 32 under glibc).
   * So the child only notes the fork, on the lock page the unlocking
   * wrote: every heap in use now but the survivor is an orphan (a heap
   * acquired later has the new fork_gen).  Its first tick, new heap or
   * trim retires them; their blocks are freed as remote frees either
   * way. */
  umpa_locks.fork_gen++;
  umpa_locks.fork_survivor = survivor;
  atomic_store_explicit(&umpa_locks.xorphans, true, memory_order_relaxed);
}

/* Retire the orphans of the last fork (see heap_after_fork_child), once:
 * the first caller to clear the flag does.  Their threads may have stopped
 * halfway through an update that no lock covers (a free list and its
 * count, a carve, a bin's lists, the deferred frees), so nothing of theirs
 * is read.  Giving their superblocks to the global heap, as a thread's
 * exit does, handed the child the same block twice (a carve caught between
 * listing its blocks and counting them) or kept it looping on a superblock
 * whose count promised a block its list had lost.  A retired heap is out
 * of use for good (never pooled again): its superblocks keep it as owner,
 * so the child's frees of their blocks are remote frees that nobody
 * collects.  What the orphans held is lost to the child, as other
 * allocators lose other threads' caches: at most what they held at the
 * fork, which Hoard's threshold bounds. */
static UMPA_NOINLINE void retire_orphans_now(void) {
  if (!atomic_exchange_explicit(&umpa_locks.xorphans, false,
                                memory_order_relaxed))
    return;
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all)
    if (h != umpa_locks.fork_survivor &&
        h->fork_gen != umpa_locks.fork_gen &&
        atomic_load_explicit(&h->xin_use, memory_order_relaxed))
      atomic_store_explicit(&h->xin_use, 0, memory_order_relaxed);
  ulock_release(&umpa_locks.heap_pool);
}

size_t heap_held_bytes(size_t *blocks) {
  size_t bytes = 0;
  *blocks = 0;
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all)
    if (atomic_load_explicit(&h->xin_use, memory_order_relaxed))
      bytes += held_bytes(h, blocks);
  ulock_release(&umpa_locks.heap_pool);
  return bytes;
}

void heap_class_stats(struct class_figures fig[NUM_CLASSES]) {
  memset(fig, 0, NUM_CLASSES * sizeof *fig);
  /* The caller's own heap can be exact: refresh its figures first. */
  struct heap *self = umpa_tl_heap;
  if (self && atomic_load_explicit(&self->xin_use, memory_order_relaxed))
    for (unsigned c = 0; c < NUM_CLASSES; c++)
      atomic_store_explicit(&self->bins[c].xused_snap,
                            bin_used_exact(&self->bins[c]),
                            memory_order_relaxed);
  /* Other thread heaps publish their figures on slow paths: each bin's is
   * within a superblock, plus a quarter of each listed one, of the
   * truth. */
  ulock_acquire(&umpa_locks.heap_pool);
  for (struct heap *h = heap_all; h; h = h->next_all) {
    if (!atomic_load_explicit(&h->xin_use, memory_order_relaxed)) continue;
    for (unsigned c = 0; c < NUM_CLASSES; c++) {
      struct bin *b = &h->bins[c];
      size_t used = atomic_load_explicit(&b->xused_snap, memory_order_relaxed);
      size_t bytes = held_of(b) * ((size_t)umpa_class[c].sb_pages << PAGE_SHIFT);
      size_t used_bytes = used * umpa_class[c].size;
      fig[c].used += used_bytes;
      fig[c].held += bytes > used_bytes ? bytes : used_bytes;
    }
  }
  ulock_release(&umpa_locks.heap_pool);
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    ulock_acquire(&umpa_locks.heap_global[c]);
    for (struct superblock *sb = umpa_heap_global.bins[c].lists[0]; sb;
         sb = sb->next) {
      fig[c].used += (size_t)used_of(sb) * sb->size;
      fig[c].held += (size_t)umpa_class[c].sb_pages << PAGE_SHIFT;
    }
    ulock_release(&umpa_locks.heap_global[c]);
    fig[c].held += heap_store_bytes((int)c);
  }
}
