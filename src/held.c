/*
 * held.c - a thread's freed large blocks, kept whole for its next malloc of
 * the same size.
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
 * anyone may empty with an atomic exchange: the owner taking a block back
 * for a malloc of the same number of pages, a free evicting one when the
 * slots are full or the pages would pass the total, the heap's tick
 * releasing those not refilled since the last tick (16 slow-path events),
 * malloc_trim from any thread, the thread's exit.  Held, a buffer of which
 * the program writes only a few pages also escapes the mincore that the
 * large cache asks on its every free to learn which pages have memory:
 * a 512 KiB or 1 MiB buffer with one page written cost 2.3-2.6 us a pair
 * (glibc: under 0.1).  A block that leaves the slots goes to the cache,
 * which asks then.  A thread thus holds at most 1 MiB this way, less than its
 * Hoard allowance of empty superblocks; a thread that stops calling
 * malloc keeps them until a trim or its exit, as it keeps its spares.
 *
 * Bigger buffers used lightly pay that mincore too, and more: 4.7 us a pair
 * for 4 MiB with two bytes written, 2.8 us for aligned_alloc(2 MiB, 2 MiB)
 * with one (glibc 20 ns and 23 us, mimalloc 0.8 and 0.26 us).  So while the
 * lazy blocks the cache asked about lately had most of their pages
 * untouched (largecache_lazy_sparse), one lazy block of up to
 * HEAP_HELD_BIG_PAGES (16 MiB) may be held besides the 1 MiB, in a slot of
 * its own kind: a second one evicts the first.  Its memory is what the
 * program touched in it, unknown until it leaves; in a program whose lazy
 * blocks are dense (Figure 7's ring) none is held, and their blocks come
 * populated anyway (largecache_populate_ahead), which no slot holds.
 *
 * A held block is in use for the page layer (its tag), and free for
 * malloc: PMF_HELD makes a free, realloc or malloc_usable_size of it a
 * reported misuse, as PMF_CACHED does in the large cache.  Its flags are
 * written by whoever holds it: the owner before it publishes the block
 * (release), the taker after its exchange (acquire).
 */
#include "internal.h"

#include <string.h>

static void release(struct pmeta *pm) {
  pm->flags &= (uint8_t)~PMF_HELD;
  large_release(pm);
}

/* The caller's heap, set up if the thread has none yet (its blocks so far
 * were all large); NULL if none can be had. */
static struct heap *own_heap(void) {
  struct heap *h = umpa_tl_heap;
  if (h == &umpa_heap_empty) h = thread_heap_init();
  return h == &umpa_heap_empty || h == &umpa_heap_dead ? NULL : h;
}

void *held_take(size_t pages, bool zero, size_t align) {
  struct heap *h = own_heap();
  if (!h) return NULL;
  /* Every large request counts, so that the size of a block malloc'd
   * long ago (a ring of varied blocks) is no longer wanted at its free. */
  h->held_wanted[h->held_next_want] =
      (uint16_t)(pages <= HEAP_HELD_BIG_PAGES ? pages : 0);
  h->held_next_want = (uint8_t)((h->held_next_want + 1) % HEAP_HELD);
  if (pages > HEAP_HELD_BIG_PAGES) return NULL;
  for (unsigned i = 0; i < HEAP_HELD; i++) {
    /* A stale value, left by a trim that emptied the slot, finds NULL. */
    if (atomic_load_explicit(&h->xheld_pages[i], memory_order_relaxed) !=
        pages)
      continue;
    struct pmeta *pm =
        atomic_exchange_explicit(&h->xheld[i], NULL, memory_order_acquire);
    /* The owner alone writes the pages: once the slot is empty, they are
     * 0 again. */
    atomic_store_explicit(&h->xheld_pages[i], 0, memory_order_relaxed);
    if (!pm) continue;
    if ((zero && !(pm->flags & PMF_FULL)) ||
        ((uintptr_t)pmeta_addr(pm) & (align - 1))) {
      /* Clearing it would populate what the program left untouched, which
       * the large cache keeps as holes that read as zero: not for calloc.
       * Nor for an alignment its address lacks.  Back into its slot,
       * which only the owner fills. */
      atomic_store_explicit(&h->xheld_pages[i], (uint32_t)pages,
                            memory_order_relaxed);
      atomic_store_explicit(&h->xheld[i], pm, memory_order_release);
      continue;
    }
    pm->flags &= (uint8_t)~PMF_HELD;
    void *p = pmeta_addr(pm);
    if (zero) memset(p, 0, pages << PAGE_SHIFT);
    return p;
  }
  return NULL;
}

/* Whether pm may be held as the big one: lazy with pages unaccounted for
 * (a populated block is one the program fills), while lazy blocks are
 * found sparse. */
static bool big_ok(struct pmeta *pm) {
  return pm->count <= HEAP_HELD_BIG_PAGES &&
         (pm->flags & (PMF_UNKNOWN | PMF_FULL)) == PMF_UNKNOWN &&
         largecache_lazy_sparse();
}

/* Empty slot i (the owner), releasing its block. */
static void evict(struct heap *h, unsigned i) {
  struct pmeta *old =
      atomic_exchange_explicit(&h->xheld[i], NULL, memory_order_acquire);
  if (old) release(old);
}

bool held_put(struct pmeta *pm) {
  size_t pages = pm->count;
  struct heap *h = umpa_tl_heap;
  bool big = pages > HEAP_HELD_PAGES;
  if ((big && !big_ok(pm)) || h == &umpa_heap_empty || h == &umpa_heap_dead)
    return false;
  /* Holding is caching: not while the caches are off. */
  if (!umpa_opt.large_cache || !cache_limit_max()) return false;
  /* Only a size the thread asked for lately: a block nobody takes back
   * stays out of the large cache's spans, which cannot merge across it. */
  bool wanted = false;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (h->held_wanted[i] == pages) wanted = true;
  if (!wanted) return false;
  /* An empty slot, with the blocks held within HEAP_HELD_PAGES in all (a
   * big one apart, and the only one of its kind); else the slots in turn
   * are emptied until both hold.  The pages of a slot are the owner's to
   * write, so a filled slot's are its block's. */
  unsigned pick;
  for (;;) {
    size_t held = 0;
    unsigned big_slot = HEAP_HELD;
    pick = HEAP_HELD;
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
      evict(h, big_slot);
      continue;
    }
    if (pick != HEAP_HELD && (big || held + pages <= HEAP_HELD_PAGES)) break;
    unsigned next = h->held_next;
    h->held_next = (uint8_t)((next + 1) % HEAP_HELD);
    evict(h, next);
  }
  /* As the large cache would take it: then calloc may reuse it too. */
  largecache_assume_touched(pm);
  pm->flags |= PMF_HELD;
  h->held_old &= (uint8_t)~(1u << pick);
  atomic_store_explicit(&h->xheld_pages[pick], (uint32_t)pages,
                        memory_order_relaxed);
  atomic_store_explicit(&h->xheld[pick], pm, memory_order_release);
  return true;
}

/* Release the blocks of the slots in `mask`. */
static void release_slots(struct heap *h, unsigned mask) {
  for (unsigned i = 0; i < HEAP_HELD; i++) {
    if (!(mask & (1u << i))) continue;
    struct pmeta *pm =
        atomic_exchange_explicit(&h->xheld[i], NULL, memory_order_acquire);
    if (pm) release(pm);
  }
}

void held_age(struct heap *h) {
  release_slots(h, h->held_old);
  unsigned now = 0;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (atomic_load_explicit(&h->xheld[i], memory_order_relaxed))
      now |= 1u << i;
  h->held_old = (uint8_t)now;
}

void held_flush(struct heap *h) { release_slots(h, (1u << HEAP_HELD) - 1); }

size_t held_bytes(struct heap *h, size_t *blocks) {
  size_t pages = 0;
  for (unsigned i = 0; i < HEAP_HELD; i++)
    if (atomic_load_explicit(&h->xheld[i], memory_order_relaxed)) {
      pages += atomic_load_explicit(&h->xheld_pages[i], memory_order_relaxed);
      ++*blocks;
    }
  return pages << PAGE_SHIFT;
}
