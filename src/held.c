/*
 * held.c - a thread's freed large blocks, kept whole for its next malloc of
 * the same size (the big one: of up to its size, down to half).
 *
 * A program that mallocs and frees a buffer of one size again and again
 * (an I/O buffer of 64 KiB, a scratch array) went through the large-block
 * cache each time: its one lock, its span lists, the block merged with its
 * free neighbours on free and cut off again on malloc.  That took 353 ns a
 * pair in bench/buffers (64 KiB, a byte written per page; 63 ns held),
 * where glibc takes 94 (its heap serves 64 KiB from free lists), and
 * every thread doing it would queue on the one lock.  So each
 * thread heap holds up to HEAP_HELD freed blocks, of HEAP_HELD_PAGES pages
 * (1 MiB) in all, as they are, in slots that its owner fills and that
 * anyone may empty: the owner taking a block back for a malloc of the same
 * number of pages (a plain load and store: see claim), a free evicting one
 * when the slots are full or the pages would pass the total, the heap's
 * tick releasing those not refilled since the last tick (16 slow-path
 * events), malloc_trim from any thread, the thread's exit (an atomic
 * exchange each).  Held, a buffer of which
 * the program writes only a few pages also escapes the mincore that the
 * large cache asked on its every free to learn which pages have memory:
 * a 512 KiB or 1 MiB buffer with one page written cost 2.3-2.6 us a pair
 * (glibc: under 0.1).  A block that leaves the slots goes to the cache,
 * which asks then, or flags it loose (largecache.c).  A thread thus holds
 * at most 1 MiB this way, less than its Hoard allowance of empty
 * superblocks; a thread that stops calling malloc keeps them until a trim
 * or its exit, as it keeps its spares.
 *
 * Bigger buffers used lightly pay that mincore too, and more: 4.7 us a pair
 * for 4 MiB with two bytes written, 2.8 us for aligned_alloc(2 MiB, 2 MiB)
 * with one (glibc 53 ns and 8-23 us, mimalloc 231 and 254 ns).  So while the
 * lazy blocks the cache asked about lately had most of their pages
 * untouched (largecache_lazy_sparse), one lazy block of up to
 * HEAP_HELD_BIG_PAGES (16 MiB) may be held besides the 1 MiB, in a slot of
 * its own kind: a second one evicts the first.  Its memory is what the
 * program touched in it, unknown until it leaves; in a program whose lazy
 * blocks are dense (Figure 7's ring) none is held, and their blocks come
 * populated anyway (largecache_ahead), which no slot holds.
 *
 * A held block is in use for the page layer (its tag), and free for
 * malloc: PMF_HELD makes a free, realloc or malloc_usable_size of it a
 * reported misuse, as PMF_CACHED does in the large cache.  Its flags are
 * written by whoever holds it: the owner before it publishes the block
 * (release), the taker after its exchange (acquire).  A trim that cannot
 * fence the other threads (no membarrier, or a seccomp filter that might
 * kill the program for it) takes nothing from under them:
 * it asks, and each owner releases its blocks at its next tick.
 */
#include "internal.h"

#include <string.h>

_Static_assert(HEAP_HELD == 4, "holds_any tests the four slots one by one");

static void release(struct pmeta *pm) {
  pm->flags &= (uint8_t)~PMF_HELD;
  large_release(pm);
}

/* The caller's heap, set up if the thread has none yet (its blocks so far
 * were all large); NULL if none can be had. */
static struct heap *own_heap(void) {
  struct heap *h = umpa_tl_heap;
  if (UMPA_LIKELY(h != HEAP_NONE)) return h;
  h = thread_heap_init();
  return h == HEAP_NONE ? NULL : h;
}

/* The owner empties slot i of its heap h and returns what it held.
 * Without a locked instruction: an exchange here waited for every store
 * before it, and a buffer malloc'd, written a byte a page and freed spent
 * two thirds of its time on it (64 KiB: 88 ns a pair).  A thread taking
 * other threads' blocks (held_flush_all) sets `steal` first, then fences
 * every thread and waits for `busy` to clear: either this saw `steal`
 * and exchanges, or that sees `busy` (or, once it clears, the slot
 * emptied).  The signal fences keep the compiler from moving the slot's
 * accesses out from between the flag's. */
static struct pmeta *claim(struct heap *h, unsigned i) {
  atomic_store_explicit(&h->xheld_busy, 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  struct pmeta *pm;
  if (UMPA_UNLIKELY(
          atomic_load_explicit(&h->xheld_steal, memory_order_acquire))) {
    pm = atomic_exchange_explicit(&h->xheld[i], NULL, memory_order_acquire);
  } else {
    pm = atomic_load_explicit(&h->xheld[i], memory_order_relaxed);
    atomic_store_explicit(&h->xheld[i], NULL, memory_order_relaxed);
  }
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&h->xheld_busy, 0, memory_order_release);
  return pm;
}

/* Whether a held block of `held` pages may serve a malloc of `pages`: one
 * of as many pages, or, for a big one (above HEAP_HELD_PAGES), of down to
 * half as many.  Exact sizes alone missed every time for a buffer sized
 * to each request (bench/buffers' sparsevar, 1 to 1.875 MiB in turn):
 * each free evicted the big block held before, a locked exchange that
 * waited for the program's writes into the block, and each malloc took
 * the large cache's lock, shared by all threads (two threads: 0.55-1.5 us
 * a pair each, glibc 0.14).  The big one is lazy and used sparsely, so
 * what it has beyond a request is mostly pages without memory; the block
 * keeps its size (malloc_usable_size, realloc in place).  The others
 * count as touched whole: given out for smaller requests in a ring of
 * varied blocks (Figure 7) they held memory for nothing, and holding each
 * one that could serve a recent request kept it from merging with the
 * large cache's spans: 5-10 % more faults there. */
static inline bool held_fits(size_t held, size_t pages) {
  if (held <= HEAP_HELD_PAGES) return held == pages;
  return held - pages <= pages; /* wraps when held < pages */
}

UMPA_HOT
void *held_take(size_t pages, bool zero, size_t align) {
  struct heap *h = own_heap();
  if (!h) return NULL;
  /* Every large request counts, so that the size of a block malloc'd
   * long ago (a ring of varied blocks) is no longer wanted at its free. */
  h->held_wanted[h->held_next_want] =
      (uint16_t)(pages <= HEAP_HELD_BIG_PAGES ? pages : 0);
  h->held_next_want = (uint8_t)((h->held_next_want + 1) % HEAP_HELD);
  if (pages > HEAP_HELD_BIG_PAGES) return NULL;
  unsigned skip = 0; /* slots put back for this request */
  for (;;) {
    /* The smallest block that fits.  A stale value, left by a trim that
     * emptied the slot, finds NULL. */
    unsigned i = HEAP_HELD;
    size_t best = SIZE_MAX;
    for (unsigned j = 0; j < HEAP_HELD; j++) {
      size_t n = atomic_load_explicit(&h->xheld_pages[j],
                                      memory_order_relaxed);
      if (held_fits(n, pages) && n < best && !(skip & (1u << j))) {
        best = n;
        i = j;
        if (n == pages) break; /* none fits better */
      }
    }
    if (i == HEAP_HELD) break;
    struct pmeta *pm = claim(h, i);
    /* The owner alone writes the pages: once the slot is empty, they are
     * 0 again. */
    atomic_store_explicit(&h->xheld_pages[i], 0, memory_order_relaxed);
    if (!pm) continue;
    if ((zero && (pm->flags & (PMF_FULL | PMF_LOOSE)) != PMF_FULL) ||
        ((uintptr_t)pmeta_addr(pm) & (align - 1))) {
      /* Clearing it would populate what the program left untouched, which
       * the large cache keeps as holes that read as zero: not for calloc.
       * Nor for an alignment its address lacks.  Back into its slot,
       * which only the owner fills, and passed over for this request. */
      atomic_store_explicit(&h->xheld_pages[i], (uint32_t)best,
                            memory_order_relaxed);
      atomic_store_explicit(&h->xheld[i], pm, memory_order_release);
      skip |= 1u << i;
      continue;
    }
    pm->flags &= (uint8_t)~PMF_HELD;
    void *p = pmeta_addr(pm);
    if (zero) memset(p, 0, pages << PAGE_SHIFT);
    return p;
  }
  return NULL;
}

/* Whether pm may be held as the big one: lazy with pages unaccounted for,
 * or counted whole without asking (loose), while lazy blocks are found
 * sparse; a populated block is one the program fills. */
static bool big_ok(struct pmeta *pm) {
  return pm->count <= HEAP_HELD_BIG_PAGES &&
         ((pm->flags & PMF_LOOSE) ||
          (pm->flags & (PMF_UNKNOWN | PMF_FULL)) == PMF_UNKNOWN) &&
         largecache_lazy_sparse();
}

/* Whether any of h's slots holds a block (a hint: anyone may empty one).
 * Spelled out: as a loop, held_put's common case (all four empty) took 14
 * instructions more a free. */
static bool holds_any(struct heap *h) {
  return atomic_load_explicit(&h->xheld[0], memory_order_relaxed) ||
         atomic_load_explicit(&h->xheld[1], memory_order_relaxed) ||
         atomic_load_explicit(&h->xheld[2], memory_order_relaxed) ||
         atomic_load_explicit(&h->xheld[3], memory_order_relaxed);
}

/* Empty slot i, releasing its block. */
UMPA_HOT
static void evict(struct heap *h, unsigned i) {
  struct pmeta *old =
      atomic_exchange_explicit(&h->xheld[i], NULL, memory_order_acquire);
  if (old) release(old);
}

/* Whether a block of `pages` pages could serve one of the thread's last
 * HEAP_HELD large mallocs.  A sentinel heap never asks (held_take sets up
 * a heap first), so nothing is held for a thread without one. */
static bool wanted(const struct heap *h, size_t pages) {
  bool w = false;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    w |= held_fits(pages, h->held_wanted[i]);
  return w;
}

bool held_repeated(size_t pages) {
  const struct heap *h = umpa_tl_heap;
  unsigned n = 0;
  for (unsigned i = 0; i < HEAP_HELD; i++) n += h->held_wanted[i] == pages;
  return n >= 2;
}

/* An empty slot of h's for a block of `pages` pages (`big`: the big one),
 * with the blocks held within HEAP_HELD_PAGES in all (a big one apart,
 * and the only one of its kind); the slots in turn are emptied until both
 * hold; HEAP_HELD when a bigger big one is held and still wanted.  The
 * pages of a slot are the owner's to write, so a filled slot's are its
 * block's. */
static unsigned make_room(struct heap *h, size_t pages, bool big) {
  for (;;) {
    size_t held = 0;
    unsigned big_slot = HEAP_HELD, pick = HEAP_HELD;
    for (unsigned i = 0; i < HEAP_HELD; i++) {
      if (atomic_load_explicit(&h->xheld[i], memory_order_relaxed)) {
        size_t n = atomic_load_explicit(&h->xheld_pages[i],
                                        memory_order_relaxed);
        if (n > HEAP_HELD_PAGES) big_slot = i;
        else held += n;
      } else if (pick == HEAP_HELD) {
        pick = i;
      }
    }
    if (big && big_slot != HEAP_HELD) {
      /* The bigger of the two, while the thread still asks for its size:
       * it serves the requests the smaller one would. */
      size_t n = atomic_load_explicit(&h->xheld_pages[big_slot],
                                      memory_order_relaxed);
      if (n >= pages && wanted(h, n)) return HEAP_HELD;
      evict(h, big_slot);
      continue;
    }
    if (pick != HEAP_HELD && (big || held + pages <= HEAP_HELD_PAGES))
      return pick;
    unsigned next = h->held_next;
    h->held_next = (uint8_t)((next + 1) % HEAP_HELD);
    evict(h, next);
  }
}

UMPA_HOT
bool held_put(struct pmeta *pm) {
  size_t pages = pm->count;
  struct heap *h = umpa_tl_heap;
  /* Only a size the thread asked for lately: a block nobody takes back
   * stays out of the large cache's spans, which cannot merge across it.
   * The cheapest test first: most frees that get past it are of a block
   * taken back from a slot, all four of them empty again. */
  if (!wanted(h, pages)) return false;
  bool big = pages > HEAP_HELD_PAGES;
  if (big && !big_ok(pm)) return false;
  /* Holding is caching: not while the caches are off. */
  if (!umpa_opt.large_cache || !cache_limit_max()) return false;
  unsigned pick = holds_any(h) ? make_room(h, pages, big) : 0;
  if (pick == HEAP_HELD) return false;
  /* As the large cache would take it: then calloc may reuse it too. */
  if (pm->flags & PMF_UNKNOWN) largecache_assume_touched(pm);
  pm->flags |= PMF_HELD;
  h->held_old &= (uint8_t)~(1u << pick);
  atomic_store_explicit(&h->xheld_pages[pick], (uint32_t)pages,
                        memory_order_relaxed);
  atomic_store_explicit(&h->xheld[pick], pm, memory_order_release);
  return true;
}

/* Release the blocks of the slots in `mask`. */
static void release_slots(struct heap *h, unsigned mask) {
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (mask & (1u << i)) evict(h, i);
}

UMPA_HOT
void held_age(struct heap *h) {
  /* A trim from another thread that could not fence this one. */
  if (UMPA_UNLIKELY(atomic_load_explicit(&h->xheld_flush,
                                         memory_order_relaxed))) {
    atomic_store_explicit(&h->xheld_flush, 0, memory_order_relaxed);
    held_flush(h);
  }
  release_slots(h, h->held_old);
  unsigned now = 0;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (atomic_load_explicit(&h->xheld[i], memory_order_relaxed))
      now |= 1u << i;
  h->held_old = (uint8_t)now;
}

void held_flush(struct heap *h) { release_slots(h, (1u << HEAP_HELD) - 1); }

static bool stealable(struct heap *h, struct heap *self) {
  return h != self && atomic_load_explicit(&h->xin_use, memory_order_relaxed) &&
         holds_any(h);
}

bool held_no_fence;

void held_flush_all(struct heap *all) {
  struct heap *self = umpa_tl_heap;
  /* A block a thread holds meanwhile stays held, as it would if it came
   * a moment after the trim. */
  bool any = false;
  for (struct heap *h = all; h; h = h->next_all)
    if (stealable(h, self)) {
      atomic_store_explicit(&h->xheld_steal, 1, memory_order_relaxed);
      any = true;
    }
  bool fenced = any && !held_no_fence && os_membarrier();
  for (struct heap *h = all; h; h = h->next_all) {
    if (h == self) {
      held_flush(h);
      continue;
    }
    if (!atomic_load_explicit(&h->xheld_steal, memory_order_relaxed))
      continue;
    if (fenced) {
      for (unsigned spins = 0;
           atomic_load_explicit(&h->xheld_busy, memory_order_acquire);
           spins++)
        if (spins > 100) os_yield();
      held_flush(h);
    } else {
      /* No way to fence the owner: it releases them at its next tick. */
      atomic_store_explicit(&h->xheld_flush, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&h->xheld_steal, 0, memory_order_release);
  }
}

size_t held_bytes(struct heap *h, size_t *blocks) {
  size_t pages = 0;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (atomic_load_explicit(&h->xheld[i], memory_order_relaxed)) {
      pages += atomic_load_explicit(&h->xheld_pages[i], memory_order_relaxed);
      ++*blocks;
    }
  return pages << PAGE_SHIFT;
}
