/*
 * store.c - the global heap's store of empty superblocks, in stripes.
 *
 * As in Hoard, an empty superblock that its thread heap may not keep goes
 * to the global heap, where any thread reuses it: whole, with its free list
 * and carved blocks, so the next superblock a class needs costs no
 * page-layer call, no map update and no carving.  threadtest empties about
 * 30 superblocks a round and built them again the next: keeping them made
 * it 7 % faster at one thread.  (A free list left in the order of random
 * frees is cut afresh when taken back: superblock_reorder.)  The store and
 * the page cache hold the same kind of memory (freed, backed, reusable) and
 * share one budget, 1.5 times the page cache's limit, of which the store
 * takes at most the limit (see store_cap); the store counts as idle memory
 * in the caches' adaptive limits.  A superblock nobody took for
 * UMPA_DECAY_MS, or that finds the store full, goes back to the page layer,
 * whose own limit and decay then apply.  A list's age is checked whenever
 * its stripe stores or takes one of its class, and every list of a heap's
 * stripe (and in turn of one other) on the heap's tick, which also comes
 * while a program only allocates (bench/fragment), with no background
 * thread, so a class nobody uses any more does not keep its
 * superblocks.  (Sweeping the whole stripe on each store and take, 40
 * classes, was 1 % of threadtest at two threads.)
 *
 * Threads that empty superblocks of one class at the same moment
 * (threadtest's rounds, a pool of workers between batches) all store and
 * take them at once, a lock operation per superblock; with one lock per
 * class they queue for it (1.7 % of its acquisitions waited at 2 threads
 * on 2 cores; threadtest with 300000 objects ran at 0.63-0.86x mimalloc's
 * speed at 8-16 threads on 16 cores).  So each class's store is cut
 * into STORE_STRIPES lists with a lock each, and a heap stores into the
 * stripe its index picks and takes from it first: threads on different
 * stripes never meet on a lock, and a heap finds its own superblocks where
 * it left them.  Only when its stripe has none of the class does it look
 * at the others (a mask per class says which hold any), so one thread
 * still reuses what another stored.  Each stripe counts its own pages, and
 * a heap checks the cap against its stripe's count and the others' as of
 * its last tick: one count for the whole store, and the page layer's idle
 * count, were two read-modify-writes of shared lines on every store and
 * take (threadtest at two threads: 4.4 % of its time in store_add and
 * unlink_locked, 2.9 % with the stripes' counts alone, perf).
 *
 * A stored superblock's owner is umpa_heap_stored: a free into it is a free
 * of a block that is free already, which superblock_free_remote reports
 * without taking a lock.
 */
#include "internal.h"

#define STORE_STRIPES 16 /* a power of two, at most 32 (the mask) */

/* One class in one stripe: a cache line of its own, as threads on other
 * stripes and classes write theirs. */
struct store_list {
  ulock_t lock;
  struct superblock *head, *tail; /* most recently stored first */
  _Atomic uint32_t xcount;        /* read unlocked to peek */
} __attribute__((aligned(64)));

struct stripe {
  struct store_list list[NUM_CLASSES];
  /* Each list's tail stamp, 0 when empty: the sweeps and expire_locked
   * read these, packed, instead of a line per class or the tail's
   * header. */
  _Atomic uint64_t xoldest[NUM_CLASSES];
  /* Bit c: class c's list is not empty.  A sweep visits those alone (a
   * thread's tick sweeps two stripes: the 44 classes of the time cost
   * 570 instructions a sweep, a sixth of a slow path). */
  _Atomic uint64_t xclasses;
  /* Pages of the superblocks it holds.  Counted per stripe, not in one
   * word: threads on two stripes that each store and take their
   * superblocks every round (threadtest) made that word's line bounce
   * between them on every store and take.  The page layer's idle count
   * (umpa_pc.xidle, which only sizes the caches) gets them in batches:
   * xunpublished holds what it has not seen yet. */
  _Atomic size_t xpages;
  _Atomic ssize_t xunpublished;
} __attribute__((aligned(PAGE_SIZE))); /* fork writes each used stripe's
                                          locks: one page to copy, not two */
#define IDLE_BATCH 64 /* pages: at most 4 MiB unseen over 16 stripes */
_Static_assert(NUM_CLASSES <= 64, "a stripe's class mask is one word");

UMPA_BIG_BSS struct heap umpa_heap_stored;
UMPA_BIG_BSS static struct stripe stripes[STORE_STRIPES];
static _Atomic uint32_t nonempty[NUM_CLASSES]; /* bit s: stripe s has some */
/* Stripes any heap has used: the rest are never locked, so that fork and
 * the flushes touch no page of theirs. */
static _Atomic unsigned stripes_used = 1;

unsigned store_stripe_of(unsigned heap_index) {
  unsigned s = heap_index & (STORE_STRIPES - 1);
  if (s >= atomic_load_explicit(&stripes_used, memory_order_relaxed))
    atomic_store_explicit(&stripes_used, s + 1, memory_order_relaxed);
  return s;
}

static unsigned used_stripes(void) {
  return atomic_load_explicit(&stripes_used, memory_order_relaxed);
}

static size_t store_pages(void) {
  size_t n = 0;
  for (unsigned s = 0, used = used_stripes(); s < used; s++)
    n += atomic_load_explicit(&stripes[s].xpages, memory_order_relaxed);
  return n;
}

static size_t stripe_pages(unsigned s) {
  return atomic_load_explicit(&stripes[s].xpages, memory_order_relaxed);
}

/* The pages stored in stripes other than s, now. */
static size_t pages_outside(unsigned s) {
  size_t all = store_pages(), own = stripe_pages(s);
  return all > own ? all - own : 0;
}

/* Stripe s gained (or lost, n < 0) n pages. */
static void stripe_count(unsigned s, ssize_t n) {
  struct stripe *st = &stripes[s];
  atomic_fetch_add_explicit(&st->xpages, (size_t)n, memory_order_relaxed);
  ssize_t u =
      atomic_fetch_add_explicit(&st->xunpublished, n, memory_order_relaxed) +
      n;
  if (u >= IDLE_BATCH || u <= -IDLE_BATCH) {
    u = atomic_exchange_explicit(&st->xunpublished, 0, memory_order_relaxed);
    PC_ADD(xidle, (size_t)u);
  }
}

/* The pages stored in stripes other than s, as heap h stores into s: as of
 * h's last tick for a thread heap (reading them on every store made the
 * lines bounce as much as one shared count did), else now. */
static size_t others_for(struct heap *h, unsigned s) {
  if (h != &umpa_heap_global && h->store_cap) return h->store_others;
  return pages_outside(s);
}

static unsigned stripe_of(struct superblock *sb) {
  return sb->last_owner->stripe;
}

/* The heap storing sb: its owner (a thread heap, or the global heap). */
static struct heap *storer(struct superblock *sb) {
  struct heap *owner = atomic_load_explicit(&sb->xowner, memory_order_relaxed);
  return owner ? owner : &umpa_heap_global; /* made for a test, no heap */
}

UMPA_HOT
static void destroy_chain(struct superblock *sb) {
  while (sb) {
    struct superblock *next = sb->next;
    superblock_destroy(sb);
    sb = next;
  }
}

/* The last stripe holding class cls emptied: its bit in
 * umpa_class_masks.xstored goes, unless another stripe stored one
 * meanwhile.  Each stripe changes its bit in nonempty[cls] under its own
 * list's lock, so a stripe storing the first one again may set the class's
 * bit before this clears it: the load after the clear (all in one total
 * order) then sees that stripe's bit and sets it again.  A bit left set
 * with nothing stored costs a look, no more. */
static void class_gone(unsigned cls) {
  atomic_fetch_and(&umpa_class_masks.xstored, ~((uint64_t)1 << cls));
  if (atomic_load(&nonempty[cls]))
    atomic_fetch_or(&umpa_class_masks.xstored, (uint64_t)1 << cls);
}

/* A stored superblock is marked in the page entries of its first two
 * pages: its class (with STORED_MARK) in the first, its stripe + 1 in the
 * second, each written only under the lock of its list.  store_spill_for
 * reads them, atomic bytes of the page layer's metadata, to find windows
 * of stored superblocks without reading a header that may not be its to
 * read (and, in a locked process, may even be closed), and to know which
 * list's lock to take. */
#define STORED_MARK 0x80u /* in the first mark: class 0 reads nonzero */

static void mark_stored(struct superblock *sb, unsigned s1, unsigned cls) {
  struct pmeta *pm = pmeta_at(sb_start(sb));
  uint8_t m = s1 ? (uint8_t)(STORED_MARK | cls) : 0;
  atomic_store_explicit(&pm[1].xmark, (uint8_t)s1, memory_order_relaxed);
  atomic_store_explicit(&pm->xmark, m, memory_order_release);
}

/* Take sb off its stripe's list and its heap's list (its list's lock
 * held). */
UMPA_HOT
static void unlink_locked(struct superblock *sb) {
  unsigned cls = sb->cls, s = stripe_of(sb);
  struct store_list *l = &stripes[s].list[cls];
  mark_stored(sb, 0, 0);
  if (sb->owner_prev) sb->owner_prev->owner_next = sb->owner_next;
  else sb->last_owner->bins[cls].stored = sb->owner_next;
  if (sb->owner_next) sb->owner_next->owner_prev = sb->owner_prev;
  sb->owner_next = sb->owner_prev = NULL;
  if (sb->prev) sb->prev->next = sb->next;
  else l->head = sb->next;
  if (sb->next) {
    sb->next->prev = sb->prev;
  } else {
    l->tail = sb->prev;
    atomic_store_explicit(&stripes[s].xoldest[cls],
                          l->tail ? l->tail->stamp : 0, memory_order_relaxed);
  }
  sb->next = sb->prev = NULL;
  uint32_t count = atomic_load_explicit(&l->xcount, memory_order_relaxed) - 1;
  atomic_store_explicit(&l->xcount, count, memory_order_relaxed);
  if (!count) {
    uint32_t had = atomic_fetch_and(&nonempty[cls], ~(1u << s));
    if (had == 1u << s) class_gone(cls);
    atomic_fetch_and_explicit(&stripes[s].xclasses, ~((uint64_t)1 << cls),
                              memory_order_relaxed);
  }
  size_t pages = umpa_class[cls].sb_pages;
  stripe_count(s, -(ssize_t)pages);
}

/* Unlink sb (its list's lock held) onto the chain `gone` for
 * destroy_chain; returns the chain. */
UMPA_HOT
static struct superblock *remove_locked(struct superblock *sb,
                                        struct superblock *gone) {
  unlink_locked(sb);
  sb->next = gone;
  return sb;
}

/* Take the superblocks of stripe s's class cls stored longer than
 * UMPA_DECAY_MS ago off the store (its lock held), chained onto `gone` for
 * destroy_chain. */
static struct superblock *expire_locked(unsigned s, unsigned cls,
                                        uint64_t now,
                                        struct superblock *gone) {
  struct store_list *l = &stripes[s].list[cls];
  uint64_t age = decay_age_ns();
  /* `now` was read before the lock: a stamp may be a little later.  The
   * tail's stamp is read from xoldest, in the stripe's lines: the tail's
   * own header, idle the longest, is a cache miss on every store and
   * take. */
  for (;;) {
    uint64_t oldest =
        atomic_load_explicit(&stripes[s].xoldest[cls], memory_order_relaxed);
    if (!age || !oldest || now <= oldest || now - oldest < age) return gone;
    gone = remove_locked(l->tail, gone);
  }
}

/* Expire what stripe s's classes other than `skip` stored too long ago.
 * A list whose lock is busy is left for the next time. */
UMPA_HOT
static void sweep(unsigned s, unsigned skip, uint64_t now) {
  uint64_t age = decay_age_ns();
  if (!age || !now) return;
  uint64_t classes =
      atomic_load_explicit(&stripes[s].xclasses, memory_order_relaxed);
  for (; classes; classes &= classes - 1) {
    unsigned c = (unsigned)__builtin_ctzll(classes);
    uint64_t oldest =
        atomic_load_explicit(&stripes[s].xoldest[c], memory_order_relaxed);
    if (!oldest || c == skip || now <= oldest || now - oldest < age ||
        !ulock_try(&stripes[s].list[c].lock))
      continue;
    struct superblock *gone = expire_locked(s, c, now, NULL);
    ulock_release(&stripes[s].list[c].lock);
    destroy_chain(gone);
  }
}

UMPA_HOT
void store_tick(struct heap *h, uint64_t now) {
  h->store_cap = store_cap();
  h->store_others = pages_outside(h->stripe);
  /* The heap's own stripe, and in turn one other: a stripe whose threads
   * have all gone idle still ages while any thread works. */
  sweep(h->stripe, NUM_CLASSES, now);
  unsigned used = used_stripes();
  if (used > 1) {
    h->sweep = (uint8_t)((h->sweep + 1u) % used);
    if (h->sweep != h->stripe) sweep(h->sweep, NUM_CLASSES, now);
  }
}

/* A thread that exits stores every empty superblock it had at once.  With
 * the store capped at half the page cache's limit, threadchurn's threads
 * (3000 blocks of 16..3000 B each, 46 superblocks, 7.2 MB) stored half
 * and gave the rest to the page layer; the next thread made 21 new
 * superblocks a round in warm runs that earlier superblocks had backed
 * whole, so its peak was 9.5 MiB (mimalloc 8.1) at 5.3k
 * threads/s.  Storing them all: 8.4 MiB at 7.3k.  Memory the store holds
 * is memory the page cache would otherwise hold, so the budget is
 * shared: the store fills what the page cache leaves of 1.5 limits, up
 * to one limit (the page cache refills to its own limit later, so the
 * two may reach 2 limits for a while). */
size_t store_cap(void) {
  size_t limit = cache_limit_pages(), budget = limit + limit / 2;
  size_t cached = cache_held_pages();
  size_t room = cached < budget ? budget - cached : 0;
  return room < limit ? room : limit;
}

UMPA_HOT
struct superblock *store_add(struct superblock *sb, uint64_t now, size_t cap) {
  unsigned cls = sb->cls;
  struct heap *owner = storer(sb);
  unsigned s = owner->stripe;
  struct store_list *l = &stripes[s].list[cls];
  ulock_acquire(&l->lock);
  struct superblock *gone = expire_locked(s, cls, now, NULL);
  size_t pages = umpa_class[cls].sb_pages;
  /* No lock covers every stripe: stripes storing at once may each pass the
   * cap by what they stored since their heap's last tick. */
  if (stripe_pages(s) + others_for(owner, s) + pages > cap) {
    ulock_release(&l->lock);
    sb->next = gone;
    return sb;
  }
  sb->group = SB_STORED;
  mark_stored(sb, s + 1, cls);
  sb->stamp = now;
  sb->last_owner = owner;
  sb->owner_prev = NULL;
  sb->owner_next = owner->bins[cls].stored;
  if (sb->owner_next) sb->owner_next->owner_prev = sb;
  owner->bins[cls].stored = sb;
  /* No block of it is out: nothing is at an offset any more. */
  atomic_store_explicit(&sb->xaligned, 0, memory_order_relaxed);
  atomic_store_explicit(&sb->xowner, &umpa_heap_stored, memory_order_release);
  sb->prev = NULL;
  sb->next = l->head;
  if (sb->next) {
    sb->next->prev = sb;
  } else {
    l->tail = sb;
    atomic_store_explicit(&stripes[s].xoldest[cls], now, memory_order_relaxed);
  }
  l->head = sb;
  uint32_t count = atomic_load_explicit(&l->xcount, memory_order_relaxed) + 1;
  atomic_store_explicit(&l->xcount, count, memory_order_relaxed);
  if (count == 1) {
    if (!atomic_fetch_or(&nonempty[cls], 1u << s))
      atomic_fetch_or(&umpa_class_masks.xstored, (uint64_t)1 << cls);
    atomic_fetch_or_explicit(&stripes[s].xclasses, (uint64_t)1 << cls,
                             memory_order_relaxed);
  }
  stripe_count(s, (ssize_t)pages);
  ulock_release(&l->lock);
  return gone;
}

UMPA_HOT
void store_destroy(struct superblock *chain) { destroy_chain(chain); }

/* The cap a thread heap stores under: computed on its ticks, since the
 * adaptive limit reads lines every thread writes.  Between ticks (16 slow
 * events) the store may pass a cap that fell by what those events put.
 * A limit that was set applies at once. */
static size_t cap_for(struct heap *h) {
  if (h == &umpa_heap_global || !h->store_cap || cache_limit_fixed())
    return store_cap();
  return h->store_cap;
}

UMPA_HOT
void store_put(struct superblock *sb) {
  /* Other classes age on the heap's ticks (store_tick), not here. */
  destroy_chain(store_add(sb, os_now_ns(), cap_for(storer(sb))));
}

/* Take a stored superblock of class c for h, chaining what expired onto
 * *gone.  For c's own use, the newest that h stored itself, else the
 * newest of h's stripe, else of another stripe: its blocks were last
 * written by h's thread and are still in that core's caches.  Threads that
 * empty their superblocks at the same moment (threadtest's rounds) took
 * each other's from the store, and every block of them then cost a
 * transfer between cores (threadtest at 2-8 threads ran at 0.8x mimalloc's
 * speed on a 16-core Xeon, at one thread even).  Each heap's stored
 * superblocks are a list of their own, so finding one costs no look at
 * other threads' headers under the lock: looking through the 8 newest for
 * one made threadtest with 300000 objects at 16 threads 15 % slower.  For
 * another class, the oldest: the one c is least likely to want back. */
UMPA_HOT
static struct superblock *take_from(unsigned c, struct heap *h, uint64_t now,
                                    bool oldest, struct superblock **gone) {
  uint32_t mask = atomic_load_explicit(&nonempty[c], memory_order_relaxed);
  struct superblock *sb = NULL;
  unsigned own = h->stripe;
  for (unsigned i = 0; i < STORE_STRIPES && mask && !sb; i++) {
    unsigned s = (own + i) & (STORE_STRIPES - 1);
    if (!(mask & (1u << s))) continue;
    struct store_list *l = &stripes[s].list[c];
    ulock_acquire(&l->lock);
    *gone = expire_locked(s, c, now, *gone);
    /* Everything on h's own list is in h's stripe. */
    sb = oldest ? l->tail
         : i == 0 && h->bins[c].stored ? h->bins[c].stored
                                       : l->head;
    if (sb) {
      unlink_locked(sb);
      atomic_store_explicit(&sb->xowner, h, memory_order_release);
    }
    ulock_release(&l->lock);
  }
  return sb;
}

/* When none of the class is stored, a stored superblock of another class
 * of the same size is cut anew for it: a program whose phases use
 * different classes (bench/fragment: small blocks, then medium ones)
 * otherwise held the first phase's superblocks while the next one's came
 * from fresh pages, until they expired. */
UMPA_HOT
struct superblock *store_take(unsigned cls, struct heap *h) {
  uint64_t now = 0, bit = (uint64_t)1 << cls;
  uint64_t classes =
      atomic_load_explicit(&umpa_class_masks.xstored, memory_order_relaxed);
  struct superblock *sb = NULL, *gone = NULL;
  if (classes & bit) {
    now = os_now_ns();
    sb = take_from(cls, h, now, false, &gone);
    if (sb) superblock_reorder(sb);
  }
  for (uint64_t m = classes & ~bit; m && !sb; m &= m - 1) {
    unsigned c = (unsigned)__builtin_ctzll(m);
    if (umpa_class[c].sb_pages != umpa_class[cls].sb_pages) continue;
    if (!now) now = os_now_ns();
    sb = take_from(c, h, now, true, &gone);
    if (sb && !superblock_recut(sb, cls)) {
      sb->next = gone; /* trimmed: its pages go back to the page layer */
      gone = sb;
      sb = NULL;
    }
  }
  destroy_chain(gone);
  return sb;
}

bool store_masks_agree(void) {
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    bool any = false;
    for (unsigned s = 0, n = used_stripes(); s < n; s++)
      any |= atomic_load(&stripes[s].list[c].xcount) != 0;
    bool flags = atomic_load(&nonempty[c]) != 0;
    bool bit = (atomic_load(&umpa_class_masks.xstored) >> c) & 1;
    if (any != flags || any != bit) return false;
  }
  return true;
}

size_t store_flush(void) {
  size_t released = 0;
  for (unsigned s = 0, n = used_stripes(); s < n; s++)
    for (unsigned c = 0; c < NUM_CLASSES; c++) {
      struct store_list *l = &stripes[s].list[c];
      if (!atomic_load_explicit(&l->xcount, memory_order_relaxed)) continue;
      struct superblock *gone = NULL;
      ulock_acquire(&l->lock);
      while (l->head) {
        gone = remove_locked(l->head, gone);
        released += (size_t)umpa_class[c].sb_pages << PAGE_SHIFT;
      }
      ulock_release(&l->lock);
      destroy_chain(gone);
    }
  return released;
}

bool store_holds_from(struct heap *h) {
  struct stripe *st = &stripes[h->stripe];
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    if (!atomic_load_explicit(&st->list[c].xcount, memory_order_relaxed))
      continue; /* h's list of the class is empty with the stripe's */
    ulock_acquire(&st->list[c].lock);
    bool any = h->bins[c].stored != NULL;
    ulock_release(&st->list[c].lock);
    if (any) return true;
  }
  return false;
}

size_t heap_store_bytes(int cls) {
  if (cls < 0)
    return store_pages() << PAGE_SHIFT;
  size_t n = 0;
  for (unsigned s = 0, used = used_stripes(); s < used; s++)
    n += atomic_load_explicit(&stripes[s].list[cls].xcount,
                              memory_order_relaxed);
  return n * ((size_t)umpa_class[cls].sb_pages << PAGE_SHIFT);
}

/* ---------------------------------------------------------------------------
 * Spilling: stored superblocks give way to a large block.
 *
 * A program that frees a phase's small blocks and then allocates large
 * ones (a compiler between passes, a loader that parses and then builds)
 * left the store holding its empty superblocks and the page cache the
 * free runs between them, 64 KiB pieces that merge into no run a large
 * block can take: the large blocks came from fresh pages, and the phase's
 * memory stayed resident beside them until it decayed (8 M blocks of 48
 * bytes, freed, then 400 blocks of 1 MiB: peak RSS 727 MiB, mimalloc 474,
 * glibc 550).  Spilling the oldest stored superblocks instead brought the
 * peak down, but those rarely freed a whole run, and a ring of small and
 * large blocks (smallobj mixed) spent 40-80 % more time rebuilding them.
 * So only a whole window of the block's size, every piece of it a free run
 * or a stored superblock, is given back, and the block takes the warm run
 * its pieces merge into.
 * ------------------------------------------------------------------------- */

#define SPILL_LOOK 64 /* stored superblocks looked at per try, at most */
#define SPILL_BACKOFF 6 /* after k failed tries in a row, skip 2^k - 1 */

/* The backoff: tries to skip, and the store's pages at the last failure
 * (a store grown by a window's worth since may hold new windows). */
static _Atomic unsigned spill_fails, spill_skip;
static _Atomic size_t spill_mark;
static _Atomic uint64_t spills; /* windows given back, for tests */
/* Where the last window given back ended: superblocks made one after
 * another lie side by side, so the next window is likely there, and
 * looking at it costs no walk of a list (whose headers are each a cache
 * miss). */
static _Atomic uintptr_t spill_next;

uint64_t store_spills(void) {
  return atomic_load_explicit(&spills, memory_order_relaxed);
}

/* A stored superblock's class and stripe at page idx of r, from its marks
 * (as a hint, unless its list's lock is held); false if none is marked. */
static bool stored_at(struct region *r, size_t idx, unsigned *cls,
                      unsigned *s) {
  uint8_t m = atomic_load_explicit(&r->meta[idx].xmark, memory_order_acquire);
  if (!(m & STORED_MARK)) return false;
  unsigned s1 =
      atomic_load_explicit(&r->meta[idx + 1].xmark, memory_order_relaxed);
  if (!s1 || s1 > STORE_STRIPES) return false;
  *cls = m & (STORED_MARK - 1);
  *s = s1 - 1;
  return *cls < NUM_CLASSES;
}

/* Walk the window [lo, end) of r piece by piece: a free run, or a stored
 * superblock (`take`: taken off its list onto *gone).  False at the first
 * piece that is neither, or (with `take`) a superblock that left the
 * store meanwhile. */
static bool walk_window(struct region *r, size_t lo, size_t end, bool take,
                        struct superblock **gone) {
  for (size_t i = lo; i < end;) {
    uint8_t tag =
        atomic_load_explicit(&r->meta[i].xtag, memory_order_acquire);
    if (PM_STATE(tag) == PM_FREE) {
      i += (size_t)1 << PM_ORDER(tag);
      continue;
    }
    unsigned cls, s, shift;
    if (PM_STATE(tag) != PM_USED || !stored_at(r, i, &cls, &s) ||
        !(shift = region_superblock_shift(r, region_addr(r, i))))
      return false;
    if (take) {
      struct store_list *l = &stripes[s].list[cls];
      unsigned c2, s2;
      ulock_acquire(&l->lock);
      /* Under its list's lock the marks are exact, and the header is the
       * store's to read. */
      bool here = stored_at(r, i, &c2, &s2) && c2 == cls && s2 == s;
      if (here)
        *gone = remove_locked(
            sb_header_at((uintptr_t)region_addr(r, i), shift), *gone);
      ulock_release(&l->lock);
      if (!here) return false;
    }
    i += (size_t)1 << (shift - PAGE_SHIFT);
  }
  return true;
}

/* Give back the stored superblocks of the window of 2^order pages that
 * holds address a, if it holds nothing else but free runs; returns the
 * window's first byte, or NULL. */
static void *spill_window(uintptr_t a, unsigned order) {
  struct region *r = region_of((void *)a);
  if (!r || order > r->order) return NULL;
  size_t lo = region_index(r, (void *)a) & ~(((size_t)1 << order) - 1),
         end = lo + ((size_t)1 << order);
  if (end > r->mapped || !walk_window(r, lo, end, false, NULL)) return NULL;
  struct superblock *gone = NULL;
  bool whole = walk_window(r, lo, end, true, &gone);
  destroy_chain(gone); /* to the page layer, whole window or not */
  return whole && gone ? region_addr(r, lo) : NULL;
}

/* Up to `room` stored superblocks of list l, oldest first: the addresses
 * of their windows of 2^order pages, into w[] (no two alike in a row). */
static unsigned windows_of(struct store_list *l, unsigned order,
                           uintptr_t *w, unsigned room) {
  uintptr_t mask = ~(((uintptr_t)PAGE_SIZE << order) - 1);
  unsigned n = 0;
  ulock_acquire(&l->lock);
  for (struct superblock *sb = l->tail; sb && n < room; sb = sb->prev) {
    uintptr_t win = (uintptr_t)sb_start(sb) & mask;
    if (!n || w[n - 1] != win) w[n++] = win;
  }
  ulock_release(&l->lock);
  return n;
}

/* A window of 2^order pages from win was given back. */
static void *spilled(void *win, unsigned order) {
  atomic_fetch_add_explicit(&spills, 1, memory_order_relaxed);
  atomic_store_explicit(&spill_fails, 0, memory_order_relaxed);
  atomic_store_explicit(&spill_skip, 0, memory_order_relaxed);
  atomic_store_explicit(&spill_next,
                        (uintptr_t)win + ((uintptr_t)PAGE_SIZE << order),
                        memory_order_relaxed);
  return win;
}

bool store_may_spill(size_t pages) {
  unsigned order = log2_ceil(pages);
  if (order >= UMPA_PAGE_ORDERS || buddy_has_warm(&umpa_buddy, order))
    return false;
  size_t stored = store_pages(), window = (size_t)1 << order;
  if (stored < window / 4) return false;
  /* A program whose windows all hold live blocks would pay the look on
   * every large block that misses the caches. */
  unsigned skip = atomic_load_explicit(&spill_skip, memory_order_relaxed);
  if (skip &&
      stored < atomic_load_explicit(&spill_mark, memory_order_relaxed) + window) {
    atomic_store_explicit(&spill_skip, skip - 1, memory_order_relaxed);
    return false;
  }
  return true;
}

void *store_spill_for(size_t pages) {
  unsigned order = log2_ceil(pages);
  uintptr_t next = atomic_load_explicit(&spill_next, memory_order_relaxed);
  void *win = next ? spill_window(next, order) : NULL;
  if (win) return spilled(win, order);
  uintptr_t w[SPILL_LOOK];
  unsigned looked = 0, used = used_stripes();
  struct heap *h = umpa_tl_heap;
  unsigned own = h != HEAP_NONE ? h->stripe : 0;
  for (unsigned i = 0; i < used && looked < SPILL_LOOK; i++) {
    unsigned s = (own + i) % used;
    uint64_t classes =
        atomic_load_explicit(&stripes[s].xclasses, memory_order_relaxed);
    for (; classes && looked < SPILL_LOOK; classes &= classes - 1) {
      unsigned c = (unsigned)__builtin_ctzll(classes);
      unsigned n =
          windows_of(&stripes[s].list[c], order, w, SPILL_LOOK - looked);
      looked += n;
      for (unsigned k = 0; k < n; k++)
        if ((win = spill_window(w[k], order))) return spilled(win, order);
    }
  }
  unsigned f = atomic_load_explicit(&spill_fails, memory_order_relaxed);
  if (f < SPILL_BACKOFF) f++;
  atomic_store_explicit(&spill_fails, f, memory_order_relaxed);
  atomic_store_explicit(&spill_mark, store_pages(), memory_order_relaxed);
  atomic_store_explicit(&spill_skip, (1u << f) - 1, memory_order_relaxed);
  return NULL;
}

UMPA_FORK
void store_lock_all(void) {
  for (unsigned s = 0, n = used_stripes(); s < n; s++)
    for (unsigned c = 0; c < NUM_CLASSES; c++)
      ulock_acquire_fork(&stripes[s].list[c].lock);
}

UMPA_FORK
void store_unlock_all(void) {
  for (unsigned s = used_stripes(); s-- > 0;)
    for (unsigned c = NUM_CLASSES; c-- > 0;)
      ulock_release_fork(&stripes[s].list[c].lock);
}
