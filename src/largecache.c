/*
 * largecache.c - freed large malloc blocks, kept as spans and reused best
 * fit: tcmalloc's page heap over the page layer's blocks.
 *
 * The page layer hands out runs of 2^k pages and gives back what a request
 * does not need, so a freed 5 MiB block becomes a 4 MiB and a 1 MiB run,
 * and the next 6 MiB request needs a free, backed, aligned 8 MiB run, which
 * a busy heap rarely has: populating one costs a fault per page.  Here a
 * freed large block stays a block ("span"), merged with the cached spans
 * and the free runs on either side of it; a request takes the best fitting
 * span and the surplus becomes a span of its own (or, under 8 pages and
 * with memory, stays with the block as its slack).  A request that fits
 * memory-backed pages is served with no system call and no fault.
 *
 * A span may include pages without memory: the unused tail of a run a
 * block came from (merged in up to the block's own size), and above all
 * the rest of the stretch fresh blocks are carved from.  A request that no
 * span fits and no warm run of the page layer serves takes a 64 MiB run of
 * address space (no memory) and carves the block off its front; the rest
 * is a span that the next fresh blocks are carved from in turn, so fresh
 * blocks lie next to each other, as in tcmalloc's page heap, and not each
 * in its own power-of-two run with a tail.  Blocks allocated together are
 * mostly freed together, and their spans merge into one that fits what
 * comes next: Figure 7 through malloc faulted 10 pages in per operation
 * instead of 40, at a peak RSS of 2189 MiB instead of 2272 (tcmalloc's:
 * 2173).  Pages without memory are left to fault in where the program
 * touches them (or populated ahead: see largecache_ahead).  They
 * are not given other spans' memory by moving it (mremap): that moved 29
 * pages per fault it saved, since the donors' holes fault in later, and
 * a page moved by its page-table entry cost 5-6 us at its next write on a
 * VM whose host shadows the page tables (a fault: 11 us).
 *
 * Spans are listed by size class (four per power of two), most recently
 * freed first; the links live in the page layer's entries for the span's
 * second and third pages, so a span needs no memory of its own.  A span's
 * ends are marked in its region's `xcached` byte map with its arena,
 * changed only under that arena's lock (below), so a neighbour is
 * recognised without reading another thread's block.  The memory the
 * cache holds is bounded (UMPA_LARGE_CACHE, and twice the memory in use
 * by default); past it, the spans freed longest ago go back to the page
 * layer, whose own cache limit then applies.
 */
#include "internal.h"

#include <errno.h>

#include <string.h>

#define LC_MIN_PAGES 8                 /* 32 KiB: smaller are superblocks */
_Static_assert(LC_MIN_PAGES == 8,
               "largecache_take's contract (internal.h) says 7 more at most");
_Static_assert(LC_MIN_PAGES >= 4, "a span's last page is past its links");
#define LC_MAX_PAGES ((size_t)1 << 14) /* 64 MiB: bigger go straight back */
#define LC_SPAN_MAX_PAGES ((size_t)1 << 16) /* 256 MiB: see merge_back */
#define LC_GROW_MIN_ORDER 10           /* 4 MiB: the least a stretch is */
#define LC_TOUCHED_PAGES 32            /* 128 KiB: see largecache_put */
#define LC_DENSE_SHARE 248             /* of 256: see may_populate */
#define LC_SAMPLE 8                    /* blocks per lazy one while dense */
#define LC_POPULATE_MAX 4096           /* 16 MiB: the most populated ahead */
#define LC_CLASSES 48
#define LC_KEEP_DIV 8                  /* decay keeps 1/8 of live memory */
#define LC_ALIGNED_LOOKS 64            /* spans looked into for a window */
#define LC_ASK_SHARE 64                /* time per time asking, if sparse */

/* The cache is cut into arenas, each a cache of its own: lists, lock and
 * clock.  A thread takes from the arena its heap's index picks, and only
 * when its own has no span that fits, for memory, from the other one with
 * the most; a block goes back to the arena it was cut from (its head's
 * mark: set_origin), by another thread through a stack that the arena's
 * next lock holder lists (give_returned).  With one lock for all, two
 * threads whose large blocks all met in the cache waited for each other
 * and moved its lists' lines between their cores at every call
 * (bench/malloc's buffers_mt:
 * sparsevar took 1044 ns a pair at two threads against 353 at one, and
 * 752 with arenas; mimalloc 337).  Spans of different arenas never merge.
 * A span's ends carry its arena's mark (see mark_ends), so a holder of one
 * arena's lock recognises its own spans among the others' without reading
 * theirs. */
#define LC_ARENAS 8

struct lc_arena {
  bool ready;
  /* Bit c: class c's list holds a span.  The searches visit those classes
   * alone: a class's sentinel is a cache line read even when its list is
   * empty, and a request that found its span several classes up read every
   * sentinel on the way (a new superblock's search in Figure 7, a process's
   * first large blocks). */
  uint64_t classes;
  uint64_t now; /* the clock at the last lock */
  uint64_t age, late_at; /* see age_in_force */
  size_t count[LC_CLASSES];
  /* Sentinels of the class lists and of the LRU list (most recent first). */
  struct pmeta list[LC_CLASSES];
  struct pmeta lru;
  /* Written under the lock, read without: */
  _Atomic size_t xpages;  /* pages in spans */
  _Atomic size_t xbacked; /* of those, pages with memory */
  /* Blocks cut from this arena that other threads freed, linked through
   * their heads' `next` (give_returned), for the next holder of the lock
   * to list: on a line of their own, which those threads write. */
  _Atomic(struct pmeta *) xreturned __attribute__((aligned(64)));
  _Atomic uint64_t xreturned_n; /* about: their pages << 16 | blocks */
} __attribute__((aligned(64)));
_Static_assert(LC_CLASSES <= 64, "one bit a class");
_Static_assert(LC_ARENAS <= 255, "an arena's index is a byte");

static struct lc_arena lc_arenas[LC_ARENAS];

/* The arenas' locks: the first's on the page of locks fork takes
 * (internal.h), so that a program with one thread forks writing no page
 * more than before the arenas; the others a line each on a page of their
 * own, which a fork writes once two arenas are open (the fork_locks page
 * has no room left for them). */
static struct order_lock lc_locks[LC_ARENAS - 1]
    __attribute__((aligned(PAGE_SIZE)));

static inline ulock_t *arena_lock_at(unsigned i) {
  return i == 0 ? &umpa_locks.large : &lc_locks[i - 1].lock;
}

static inline ulock_t *arena_mutex(struct lc_arena *a) {
  return arena_lock_at((unsigned)(a - lc_arenas));
}

/* Arenas [0, lc_used) have held spans: the others are never looked at. */
static _Atomic unsigned lc_used = 1;

static unsigned arenas_used(void) {
  return atomic_load_explicit(&lc_used, memory_order_relaxed);
}
/* Whether more than one arena may be in use: then fork takes every
 * arena's lock (largecache_lock_all). */
static _Atomic bool lc_shared;

/* Of the pages without memory that recent lazy blocks were handed out
 * with, the share (of 256) the program touched before freeing them. */
static _Atomic unsigned lc_touched = 256;
static _Atomic unsigned lc_samples; /* frees that asked the kernel */
/* Blocks that may still be populated ahead before a lazy one's free has
 * confirmed that the program touches its blocks whole. */
static _Atomic unsigned lc_credit;
/* While lazy blocks are sparse, no free asks the kernel before this time
 * (os_fine_ns): see settle_backed. */
static _Atomic uint64_t lc_ask_after;

static unsigned class_of(size_t pages) {
  if (pages < LC_MIN_PAGES) return 0; /* a window for a small block */
  unsigned k = log2_floor(pages); /* k >= 3 */
  unsigned quarter = (unsigned)((pages >> (k - 2)) & 3);
  unsigned c = (k - 3) * 4 + quarter;
  return c < LC_CLASSES ? c : LC_CLASSES - 1;
}

/* The classes from `first` (a class_of, so below 64) up that hold a span
 * in arena a (its lock held). */
static uint64_t classes_from(struct lc_arena *a, unsigned first) {
  return a->classes & ~(((uint64_t)1 << first) - 1);
}

/* A cached span's bookkeeping lives in the page layer's entries for its
 * second and third pages: a span has at least LC_MIN_PAGES pages, and the
 * entries inside a block are otherwise unused (their tags stay PM_NONE).
 * Entry 1 links the span into its class list, its count holds the span's
 * pages with memory; entry 2 links it into the LRU list, its stamp holds
 * when the span was freed.  Kept in the span's first page, the lists cost
 * a TLB miss per span touched and a page populated for every span without
 * memory at its start: a large malloc in smallobj's mixed ring took 440 ns
 * instead of 305. */
static struct pmeta *class_link(struct pmeta *pm) { return pm + 1; }
static struct pmeta *lru_link(struct pmeta *pm) { return pm + 2; }
static struct pmeta *of_class_link(struct pmeta *l) { return l - 1; }
static struct pmeta *of_lru_link(struct pmeta *l) { return l - 2; }
static size_t listed_backed(struct pmeta *pm) { return class_link(pm)->count; }

/* Spans are far apart in the page layer's entries (32 bytes a page: an
 * 8 MiB span's head and last entry are 64 KiB apart), and a program that
 * wrote its large blocks has pushed them all out of the caches and the
 * TLB.  A free or a cut reads and writes several of them, each a miss
 * that the next waited for (perf: a free's time was in two loads, the
 * next block's bit and tag); asked for together at the start, the misses
 * overlap. */
static inline void prefetch_list_neighbours(struct pmeta *pm) {
  struct pmeta *n = class_link(pm), *l = lru_link(pm);
  __builtin_prefetch(n->prev, 1);
  __builtin_prefetch(n->next, 1);
  __builtin_prefetch(l->prev, 1);
  __builtin_prefetch(l->next, 1);
}

size_t largecache_listed_backed(struct pmeta *pm) { return listed_backed(pm); }

/* Pages with memory among the n from page `from` of span pm: its bits do
 * not change while it is cached (only a taken block is populated), so a
 * listed span's count stays exact and the pieces cut from it can be
 * counted from it. */
UMPA_HOT
static size_t backed_in(struct pmeta *pm, size_t from, size_t n) {
  if (pm->flags & PMF_FULL) return n;
  return bitmap_count(pm->region->xbacked, pmeta_index(pm) + from, n);
}

UMPA_HOT
static void count_span(struct lc_arena *a, struct pmeta *pm, size_t b,
                       int sign) {
  atomic_store_explicit(&a->xpages,
                        atomic_load(&a->xpages) + (size_t)sign * pm->count,
                        memory_order_relaxed);
  atomic_store_explicit(&a->xbacked,
                        atomic_load(&a->xbacked) + (size_t)sign * b,
                        memory_order_relaxed);
}

/* Pages in spans, and of those pages with memory, in all arenas. */
static size_t total_pages(void) {
  size_t n = 0;
  for (unsigned i = 0, used = arenas_used(); i < used; i++)
    n += atomic_load_explicit(&lc_arenas[i].xpages, memory_order_relaxed);
  return n;
}

static size_t total_backed(void) {
  size_t n = 0;
  for (unsigned i = 0, used = arenas_used(); i < used; i++)
    n += atomic_load_explicit(&lc_arenas[i].xbacked, memory_order_relaxed);
  return n;
}

/* The calling thread's arena's index, which its heap picks (the first
 * for a thread without a heap yet; for one whose exit gave its heap up,
 * that heap's: see umpa_tl_gone_stripe); the arena may not be open yet. */
static unsigned own_index(void) {
  struct heap *h = umpa_tl_heap;
  return (h != HEAP_NONE ? h->stripe : umpa_tl_gone_stripe) % LC_ARENAS;
}

/* The other arenas' counts as the thread last read them, at most a tick
 * of the coarse clock (4 ms) ago.  The sums above read a line that each
 * other arena's owner writes on its every large malloc and free: two
 * threads taking aligned buffers of varied sizes (bench/buffers' alvar)
 * spent half of their puts' and takes' time in those reads, for limits
 * and hints that a few milliseconds' lag does not change.  A program
 * with one arena reads its count exactly, as before. */
struct others_seen {
  uint64_t at;
  unsigned own;
  size_t pages, backed;
};
static __thread struct others_seen tl_others
    __attribute__((tls_model("initial-exec")));

static const struct others_seen *others_seen(unsigned own) {
  struct others_seen *o = &tl_others;
  uint64_t now = now_coarse();
  if (o->at == now && o->own == own) return o;
  o->at = now;
  o->own = own;
  o->pages = o->backed = 0;
  for (unsigned i = 0, used = arenas_used(); i < used; i++)
    if (i != own) {
      o->pages +=
          atomic_load_explicit(&lc_arenas[i].xpages, memory_order_relaxed);
      o->backed +=
          atomic_load_explicit(&lc_arenas[i].xbacked, memory_order_relaxed);
    }
  return o;
}

/* Pages in the calling thread's own arena's spans, the only ones that
 * take_window and take_room search. */
static size_t own_pages(void) {
  unsigned own = own_index();
  return own < arenas_used() ? atomic_load_explicit(&lc_arenas[own].xpages,
                                                    memory_order_relaxed)
                             : 0;
}

/* total_pages and total_backed with the other arenas' counts as seen. */
static size_t near_pages(void) {
  if (arenas_used() == 1) return total_pages();
  return own_pages() + others_seen(own_index())->pages;
}

static size_t near_backed(struct lc_arena *a) {
  if (arenas_used() == 1) return total_backed();
  return atomic_load_explicit(&a->xbacked, memory_order_relaxed) +
         others_seen((unsigned)(a - lc_arenas))->backed;
}

/* A span's mark: its arena's index + 1 (0: no span ends there). */
static inline uint8_t mark_of(struct lc_arena *a) {
  return (uint8_t)(a - lc_arenas + 1);
}

/* A block handed out from arena a's spans remembers a in its head's
 * mark, to be freed back there (largecache_put). */
static inline void set_origin(struct lc_arena *a, struct pmeta *pm) {
  atomic_store_explicit(&pm->xmark, mark_of(a), memory_order_relaxed);
}

/* Whether page i of r is an end of a span listed in arena a. */
static inline bool own_mark(struct lc_arena *a, struct region *r, size_t i) {
  return atomic_load_explicit(&r->xcached[i], memory_order_acquire) ==
         mark_of(a);
}

/* A listed span is marked at both ends: its head's and its last page's
 * bytes of the region's `xcached` map hold its arena's mark, and its last
 * page's entry holds its length, so that a block freed right after it
 * finds its head at once (merge_back).  The head was found by searching
 * the heads bitmap backwards, a word per 64 pages: with spans of up to
 * 256 MiB that search took 8.8 M of Figure 7's 217 M instructions
 * (callgrind), 520 a free.  Entries inside a block are otherwise unused
 * (LC_MIN_PAGES >= 4 keeps the length off the links), and only its
 * arena's lock holder writes them while the mark is set.  A byte a page,
 * not a bit: spans of two arenas may end within 64 pages of each other,
 * so a bit's word was changed by locked instructions once two arenas were
 * in use, and each waited for the stores before it (a fifth of the time
 * of a pair of aligned buffers of varied sizes, bench/buffers' alvar:
 * 265 ns at one thread against 212 with plain stores).  Each byte has one
 * writer, the holder of its span's arena's lock. */
UMPA_HOT
static void mark_ends(struct lc_arena *a, struct pmeta *pm, bool on) {
  size_t idx = pmeta_index(pm), last = idx + pm->count - 1;
  uint8_t m = on ? mark_of(a) : 0;
  /* The length before the mark that lets a neighbour read it. */
  if (on) pm[pm->count - 1].count = pm->count;
  atomic_store_explicit(&pm->region->xcached[idx], m, memory_order_release);
  atomic_store_explicit(&pm->region->xcached[last], m, memory_order_release);
}

/* List a span (its arena's lock held); `recent` puts it first in LRU
 * order, else it keeps the LRU place its node already has.  `backed` is
 * its pages with memory when the caller knows them, else SIZE_MAX:
 * counting them costs a scan of the span's bits, kept in the node for its
 * lifetime. */
UMPA_HOT
static void list_span(struct lc_arena *a, struct pmeta *pm, bool recent,
                      size_t backed) {
  unsigned c = class_of(pm->count);
  struct pmeta *n = class_link(pm);
  n->prev = &a->list[c];
  n->next = a->list[c].next;
  a->list[c].next->prev = n;
  a->list[c].next = n;
  a->count[c]++;
  a->classes |= (uint64_t)1 << c;
  if (recent) {
    struct pmeta *l = lru_link(pm);
    l->stamp = a->now;
    l->prev = &a->lru;
    l->next = a->lru.next;
    a->lru.next->prev = l;
    a->lru.next = l;
  }
  if (backed == SIZE_MAX) backed = backed_in(pm, 0, pm->count);
  if (backed == pm->count) pm->flags |= PMF_FULL;
  n->count = (uint32_t)backed;
  pm->flags |= PMF_CACHED;
  mark_ends(a, pm, true);
  count_span(a, pm, backed, 1);
}

/* Take a listed span off its lists (its arena's lock held); `keep_lru`
 * leaves its LRU place to a span that is listed again at once. */
UMPA_HOT
static void unlist_span(struct lc_arena *a, struct pmeta *pm, bool keep_lru) {
  struct pmeta *n = class_link(pm);
  n->prev->next = n->next;
  n->next->prev = n->prev;
  if (!keep_lru) {
    struct pmeta *l = lru_link(pm);
    l->prev->next = l->next;
    l->next->prev = l->prev;
  }
  unsigned c = class_of(pm->count);
  if (--a->count[c] == 0) a->classes &= ~((uint64_t)1 << c);
  pm->flags &= (uint8_t)~PMF_CACHED;
  mark_ends(a, pm, false);
  count_span(a, pm, n->count, -1);
}

/* Take the free run that starts at page pos of r, or its first `room`
 * pages (its arena's lock held).  Returns the pages taken (0: none free
 * there) and their backed count in *backed. */
UMPA_HOT
static size_t claim_run(struct region *r, size_t pos, size_t room,
                        size_t *backed) {
  if (pos >= r->mapped || room == 0) return 0;
  uint8_t tag = atomic_load_explicit(&r->meta[pos].xtag, memory_order_acquire);
  if (PM_STATE(tag) != PM_FREE) return 0;
  size_t n = (size_t)1 << PM_ORDER(tag);
  if (n > room) n = room;
  if (n > r->mapped - pos) n = r->mapped - pos;
  long b = buddy_claim(&umpa_buddy, r, pos, n);
  if (b < 0) return 0; /* taken or merged meanwhile */
  *backed = (size_t)b;
  return n;
}

/* Merge the block pm (with `*backed` pages of memory) with the cached span
 * that ends right before it, if any (its arena's lock held); returns the
 * head of the result.  A span grows this way past the largest block the cache
 * takes, up to LC_SPAN_MAX_PAGES (the cap bounds what one decay releases
 * at once), so that a new stretch (largecache_grow) merges with the span
 * left at the end of the last one, and the pages freed there are used
 * before the new stretch's are faulted in: the two together are the top
 * of a best-fit heap.  Capped at one stretch, the two stayed apart, and a
 * block that did not fit the old end faulted in a whole block of the new
 * stretch.  A simulation of best fit over Figure 7's trace (512 blocks of
 * 4 KiB-8 MiB) faults 8.2 pages in per 4-8 MiB request with spans capped
 * at 64 MiB, 5.7 without a cap.  umpa faulted 9.35 (UMPA_DECAY_MS=0) when
 * its spans were capped and, until 2026-12, grown over the free runs after
 * them when nothing fit ("hole fit", which by itself took 15 % more faults
 * in the whole run), and 7.9 with neither. */
UMPA_HOT
static struct pmeta *merge_back(struct lc_arena *a, struct pmeta *pm,
                                size_t *backed) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  if (idx == 0) return pm;
  /* The span of a's ending at idx, by its marks (see mark_ends). */
  if (!own_mark(a, r, idx - 1)) return pm;
  size_t len = r->meta[idx - 1].count, h = idx - len;
  if (len > idx || !own_mark(a, r, h) || r->meta[h].count != len ||
      len + pm->count > LC_SPAN_MAX_PAGES)
    return pm;
  struct pmeta *prev = &r->meta[h];
  *backed += listed_backed(prev);
  unlist_span(a, prev, false);
  page_join(prev, pm);
  return prev;
}

/* Merge the block pm (with `*backed` pages of memory) with cached spans
 * and free runs around it; returns the head of the result and its pages
 * with memory in *backed (its arena's lock held).  Free runs without memory are
 * merged too, up to the block's own size: a fresh block came from an
 * aligned power-of-two run whose unused tail follows it, and a span that
 * takes the tail in can serve a bigger request later, or merge with the
 * span after the tail.  The bound keeps the cache from holding much
 * address space that has no memory. */
UMPA_HOT
static struct pmeta *coalesce(struct lc_arena *a, struct pmeta *pm,
                              size_t *backed) {
  size_t cold_room = pm->count;
  pm = merge_back(a, pm, backed);
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  /* Forwards: free runs and cached spans, as long as they follow. */
  for (;;) {
    size_t next = idx + pm->count,
           room = pm->count < LC_SPAN_MAX_PAGES ? LC_SPAN_MAX_PAGES - pm->count
                                                : 0;
    if (next >= r->mapped || room == 0) break;
    uint8_t m = atomic_load_explicit(&r->xcached[next], memory_order_acquire);
    if (m) {
      if (m != mark_of(a)) break; /* another arena's */
      struct pmeta *nx = &r->meta[next];
      if (nx->count > room) break;
      *backed += listed_backed(nx);
      unlist_span(a, nx, false);
      page_join(pm, nx);
      continue;
    }
    size_t b = 0, got = claim_run(r, next, room, &b);
    if (!got) break;
    if (b < got) {
      if (got - b > cold_room) { /* too much without memory: undo */
        buddy_free_range(&umpa_buddy, r, next, got, false);
        break;
      }
      cold_room -= got - b;
      pm->flags &= (uint8_t)~PMF_FULL;
    }
    *backed += b;
    pm->count += (uint32_t)got;
    PC_ADD(xin_use, got);
    heap_account_arena((ssize_t)(got << PAGE_SHIFT));
  }
  return pm;
}

/* Return a block taken out of the cache to the page layer's free runs
 * (an arena's lock held or not: the block is nobody else's).  Neither this nor
 * give_back brings the page cache under its limit: that releases whole
 * 2 MiB pieces, 20-200 us each, which would stall every thread waiting for
 * an arena's lock and land on whatever malloc happened to cut a span (a new
 * superblock's, in Figure 7's 4-32 KiB bins).  largecache_put enforces
 * the limit once, after the lock, on the free path. */
UMPA_HOT
static void drop(struct pmeta *pm) {
  size_t pages = pm->count;
  page_give_back(pm, pages, false);
  heap_account_arena(-(ssize_t)(pages << PAGE_SHIFT));
}

/* Hand an unlisted span back to the page layer (see drop). */
UMPA_HOT
static void give_back(struct pmeta *pm) {
  size_t pages = pm->count;
  page_free_ex(pmeta_addr(pm), pages, KIND_LARGE, "free", false);
  heap_account_arena(-(ssize_t)(pages << PAGE_SHIFT));
}

/* Give at least `excess` backed pages (or all it has) back to the page
 * layer from the span freed longest ago: a tail long enough to hold them,
 * the front staying listed in its LRU place, or the whole span
 * (its arena's lock held).  Returns the backed pages given back. */
UMPA_HOT
static size_t evict(struct lc_arena *a, size_t excess) {
  if (!a->ready || a->lru.prev == &a->lru) return 0;
  struct pmeta *pm = of_lru_link(a->lru.prev);
  size_t pages = pm->count, backed = listed_backed(pm);
  size_t tail_len = excess + (pages - backed); /* holds >= excess backed */
  bool split = tail_len + LC_MIN_PAGES <= pages;
  unlist_span(a, pm, split);
  if (split) {
    struct pmeta *tail = page_split(pm, pages - tail_len);
    list_span(a, pm, false, SIZE_MAX);
    backed -= listed_backed(pm);
    pm = tail;
  }
  give_back(pm);
  return backed;
}

/* The age at which a span's memory decays, UMPA_DECAY_MS to 16 times that
 * (per arena, under its lock): doubled whenever a span is taken that
 * waited half of it or more (a span that waited all of it has gone: only
 * those taken in the second half of their age can raise it), halved after
 * a whole age without one, and back to UMPA_DECAY_MS at a full trim.  A
 * program that takes spans back late (a ring of varied blocks: Figure 7's
 * spans wait 50 ms and more for a request they fit) would otherwise lose
 * them to decay and fault them in again; one that reuses its blocks at
 * once, or not at all, keeps the short age. */
static uint64_t age_most(uint64_t base) {
  return base > UINT64_MAX / 16 ? UINT64_MAX : 16 * base;
}

static uint64_t age_in_force(struct lc_arena *a, uint64_t base) {
  if (a->age < base) a->age = base;
  if (a->age > age_most(base)) a->age = age_most(base); /* option changed */
  if (a->age > base && a->now - a->late_at >= a->age) {
    a->age /= 2;
    a->late_at = a->now;
  }
  return a->age < base ? base : a->age;
}

/* A span of arena a is taken (its lock held). */
UMPA_HOT
static void took(struct lc_arena *a, struct pmeta *pm) {
  uint64_t base = decay_age_ns();
  if (!base || a->now < lru_link(pm)->stamp) return;
  if (a->age < base) a->age = base;
  if (a->now - lru_link(pm)->stamp >= a->age / 2) {
    a->late_at = a->now;
    a->age = a->age > age_most(base) / 2 ? age_most(base) : 2 * a->age;
  }
}

/* Whether the cache holds more memory than decay leaves it: an eighth of
 * the memory in use. */
static bool above_keep(void) {
  return total_backed() >
         pages_live() / LC_KEEP_DIV;
}

/* Age the cache (its arena's lock held): spans nobody took for the age in force
 * (UMPA_DECAY_MS, longer while spans are taken late) give their memory
 * back to the kernel, the oldest first.  A program that
 * reuses its large blocks keeps them; one that has moved on stops paying
 * for them (mimalloc purges after 10 ms, jemalloc decays over 10 s).
 * What is left of an eighth of the memory in use is kept whatever its age:
 * in a big ring of varied blocks (Figure 7) some spans wait longer than
 * that for a request they fit, and releasing them made the run fault 20%
 * more, and the slower the machine the more (the age is wall time): the
 * age in force grows for such a program (age_in_force).
 * Without a background thread the clock is read here, on the large paths,
 * which cost far more than the read, and on the small paths' ticks. */
UMPA_HOT
static void decay_locked(struct lc_arena *a) {
  /* Never back: stamps are taken from it, and a reading taken before the
   * lock (now_coarse) may be older than another holder's. */
  uint64_t now = now_coarse();
  if (now > a->now) a->now = now;
  uint64_t age = decay_age_ns();
  if (!age || !a->ready || !a->now) return;
  age = age_in_force(a, age);
  while (a->lru.prev != &a->lru) {
    struct pmeta *pm = of_lru_link(a->lru.prev);
    /* Stamps are taken under the lock from the same clock: never ahead.
     * The age first: above_keep reads every arena's count and the page
     * layer's, lines other threads write, and two threads each freeing
     * 1-2 MiB buffers spent 8 % of their time here reading them on every
     * free, with nothing old enough to release. */
    if (a->now - lru_link(pm)->stamp < age || !above_keep()) break;
    unlist_span(a, pm, false);
    page_release_block(pm, true);
    give_back(pm);
  }
}

static void put_locked(struct lc_arena *a, struct pmeta *pm);

/* List the blocks other threads returned to arena a (its lock held). */
static UMPA_NOINLINE void take_returned(struct lc_arena *a) {
  struct pmeta *pm =
      atomic_exchange_explicit(&a->xreturned, NULL, memory_order_acquire);
  atomic_store_explicit(&a->xreturned_n, 0, memory_order_relaxed);
  while (pm) {
    struct pmeta *next = pm->next;
    pm->flags &= (uint8_t)~PMF_CACHED;
    put_locked(a, pm);
    pm = next;
  }
}

/* Arena a just locked: its lists set up on the first lock, and what other
 * threads returned to it meanwhile listed. */
static void arena_locked(struct lc_arena *a) {
  if (UMPA_UNLIKELY(!a->ready)) {
    for (unsigned c = 0; c < LC_CLASSES; c++)
      a->list[c].next = a->list[c].prev = &a->list[c];
    a->lru.next = a->lru.prev = &a->lru;
    a->ready = true;
  }
  if (UMPA_UNLIKELY(atomic_load_explicit(&a->xreturned, memory_order_relaxed)))
    take_returned(a);
}

static void arena_lock(struct lc_arena *a) {
  ulock_acquire(arena_mutex(a));
  arena_locked(a);
}

/* Lock arena a if nobody holds it. */
static bool arena_try(struct lc_arena *a) {
  if (!ulock_try(arena_mutex(a))) return false;
  arena_locked(a);
  return true;
}

static void lock_and_decay(struct lc_arena *a) {
  arena_lock(a);
  decay_locked(a);
}

/* A first use of arena i past the first: from now on a fork must take
 * every arena's lock.  The flag is set first; taking and dropping every
 * arena's lock then waits out a fork that read it before. */
static UMPA_NOINLINE void arena_open(unsigned i) {
  atomic_store(&lc_shared, true);
  for (unsigned j = 0; j < LC_ARENAS; j++) {
    ulock_acquire(arena_lock_at(j));
    ulock_release(arena_lock_at(j));
  }
  unsigned used = atomic_load(&lc_used);
  while (used <= i && !atomic_compare_exchange_weak(&lc_used, &used, i + 1)) {
  }
}

/* The calling thread's arena, which its heap's index picks (the first for
 * a thread without a heap yet). */
static struct lc_arena *my_arena(void) {
  unsigned i = own_index();
  if (UMPA_UNLIKELY(i >= atomic_load_explicit(&lc_used, memory_order_acquire)))
    arena_open(i);
  return &lc_arenas[i];
}

/* The arena a freed large block pm goes to: the one it was cut from, if
 * its head says so, else the calling thread's. */
static struct lc_arena *origin_of(struct pmeta *pm) {
  unsigned m = atomic_load_explicit(&pm->xmark, memory_order_relaxed);
  if (m && m <= atomic_load_explicit(&lc_used, memory_order_acquire))
    return &lc_arenas[m - 1];
  return my_arena();
}

UMPA_HOT
void largecache_decay_idle(void) {
  /* Also what other threads returned to an arena whose thread has gone
   * quiet: nobody else would list it before the next trim. */
  bool decay = decay_age_ns() && above_keep();
  for (unsigned i = 0, used = arenas_used(); i < used; i++) {
    struct lc_arena *a = &lc_arenas[i];
    if (!decay && !atomic_load_explicit(&a->xreturned, memory_order_relaxed))
      continue;
    if (!arena_try(a)) continue;
    if (decay) decay_locked(a);
    ulock_release(arena_mutex(a));
  }
}

UMPA_HOT
bool largecache_may_populate(size_t pages) {
  return pages > LC_TOUCHED_PAGES && pages <= LC_POPULATE_MAX &&
         atomic_load_explicit(&lc_touched, memory_order_relaxed) >=
             LC_DENSE_SHARE &&
         atomic_load_explicit(&lc_samples, memory_order_relaxed) >= LC_SAMPLE &&
         atomic_load_explicit(&lc_credit, memory_order_relaxed) != 0;
}

/* A credit is spent only by a block that has pages to populate: spent by
 * every large malloc, as it was, the 8 went to blocks the cache served
 * whole, and in Figure 7's ring, where a lazy block's free comes 512
 * requests after its malloc, two thirds of the pages that the 4-8 MiB
 * requests needed faulted in (42.0k against 20.8k populated). */
UMPA_HOT
unsigned largecache_ahead(unsigned flags) {
  if (!(flags & PAGE_AHEAD)) return flags;
  flags &= ~PAGE_AHEAD;
  /* Racing mallocs may both spend the last credit: one block more. */
  unsigned c = atomic_load_explicit(&lc_credit, memory_order_relaxed);
  if (c == 0) return flags;
  atomic_store_explicit(&lc_credit, c - 1, memory_order_relaxed);
  return flags & ~(UMPA_LAZY | PAGE_WARM);
}

UMPA_HOT
bool largecache_lazy_sparse(void) {
  return atomic_load_explicit(&lc_touched, memory_order_relaxed) <
         LC_DENSE_SHARE;
}

UMPA_HOT
void largecache_assume_touched(struct pmeta *pm) {
  if ((pm->flags & PMF_UNKNOWN) && pm->count <= LC_TOUCHED_PAGES) {
    page_assume_backed(pm->region, pmeta_index(pm), pm->count);
    pm->flags = (uint8_t)((pm->flags & ~PMF_UNKNOWN) | PMF_FULL);
  }
}

/* Learn which pages of a freed lazy block pm have memory: one mincore,
 * which also tells whether the program touches its blocks whole
 * (lc_touched, lc_credit). */
static void ask_kernel(struct pmeta *pm) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), pages = pm->count;
  atomic_store_explicit(&lc_samples, atomic_load(&lc_samples) + 1,
                        memory_order_relaxed);
  size_t had = bitmap_count(r->xbacked, idx, pages);
  page_refresh_backed(r, idx, pages);
  /* Pages with memory, as the cache will count them. */
  size_t now = bitmap_count(r->xbacked, idx, pages);
  if (had < pages) { /* a resized block may be flagged yet full */
    /* Races between two frees lose an update, no more. */
    unsigned t = atomic_load_explicit(&lc_touched, memory_order_relaxed);
    unsigned share = (unsigned)((now - had) * 256 / (pages - had));
    atomic_store_explicit(&lc_touched, t - t / 8 + share / 8,
                          memory_order_relaxed);
    /* A block touched whole vouches for LC_SAMPLE more populated
     * ahead; any other stops them at once. */
    atomic_store_explicit(&lc_credit,
                          share >= LC_DENSE_SHARE ? LC_SAMPLE : 0,
                          memory_order_relaxed);
  }
  pm->flags &= (uint8_t)~PMF_UNKNOWN;
  if (now == pages) pm->flags |= PMF_FULL;
}

/* Make a loose block's bits exact again (its pages the caller's alone):
 * cleared, then set where the kernel says a page is resident. */
static void make_exact(struct pmeta *pm) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), pages = pm->count;
  page_exact_backed(r, idx, pages);
  pm->flags &= (uint8_t)~(PMF_LOOSE | PMF_FULL);
  if (bitmap_count(r->xbacked, idx, pages) == pages) pm->flags |= PMF_FULL;
}

/* Settle the bits of a freed block pm whose owner may have touched pages
 * they do not show (PMF_UNKNOWN), or that counts pages as backed that may
 * not be (PMF_LOOSE), before the cache lists it.  While the program
 * touches its blocks whole, each lazy one asks the kernel (they are the
 * samples that keep the share true).  While it leaves them sparse, asking
 * can be most of what a free costs: the mincore of a 2-4 MiB block written
 * a page in 16 took 8-16 us, where tcmalloc's whole malloc and free took
 * under 1 us and glibc's (mmap and munmap) 1.5-5.6.  So then a free asks
 * (and makes a loose block's bits exact again) only once the time since
 * the last ask began is LC_ASK_SHARE times what that ask took; the others
 * count the block as backed whole and flag it loose.  That is safe, as a
 * set bit only says "may hold data"; what it costs is where the bits are
 * used: a calloc would clear, and so fault in, pages the program never
 * touched (fill makes a loose block's bits exact first), and the cache's
 * figures count its pages with memory high until it is released or asked
 * about again. */
static void settle_backed(struct pmeta *pm) {
  bool unknown = (pm->flags & PMF_UNKNOWN) != 0;
  if (unknown && !largecache_lazy_sparse()) {
    ask_kernel(pm);
    return;
  }
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), pages = pm->count;
  uint64_t t0 = os_fine_ns();
  /* Racing frees may both ask, no more. */
  if (t0 < atomic_load_explicit(&lc_ask_after, memory_order_relaxed)) {
    if (unknown) {
      page_assume_backed(r, idx, pages);
      pm->flags = (uint8_t)((pm->flags & ~PMF_UNKNOWN) | PMF_FULL | PMF_LOOSE);
    }
    return;
  }
  if (unknown) {
    ask_kernel(pm); /* a loose block stays loose: its bits only grew */
  } else {
    make_exact(pm);
  }
  uint64_t spent = os_fine_ns() - t0;
  atomic_store_explicit(&lc_ask_after, t0 + LC_ASK_SHARE * spent,
                        memory_order_relaxed);
}

void largecache_ask_after(uint64_t t) {
  atomic_store_explicit(&lc_ask_after, t, memory_order_relaxed);
}

/* Return the block pm, freed by a thread of another arena, to arena a,
 * whose thread lists it at its next lock: the two threads would otherwise
 * take turns with a's lock and lines at every free.  True when a's
 * returned blocks have grown to RETURNED_MAX or RETURNED_MAX_PAGES: then
 * the caller lists them if a's lock is free (an idle arena's owner may
 * not come back for them soon). */
#define RETURNED_MAX 32
#define RETURNED_MAX_PAGES 2048 /* 8 MiB */
static bool give_returned(struct lc_arena *a, struct pmeta *pm) {
  /* Read first: once pushed, the block is the lock holder's to merge. */
  uint64_t add = ((uint64_t)pm->count << 16) + 1;
  pm->flags |= PMF_CACHED; /* a second free of it is a double free */
  struct pmeta *top = atomic_load_explicit(&a->xreturned, memory_order_relaxed);
  do {
    pm->next = top;
  } while (!atomic_compare_exchange_weak_explicit(
      &a->xreturned, &top, pm, memory_order_release, memory_order_relaxed));
  /* Counted after the push and zeroed after the take: a count that runs
   * ahead of the stack by a block or two between them only moves the
   * next listing a little earlier. */
  uint64_t n =
      atomic_fetch_add_explicit(&a->xreturned_n, add, memory_order_relaxed) +
      add;
  return (n & 0xffff) >= RETURNED_MAX || (n >> 16) >= RETURNED_MAX_PAGES;
}

/* List the freed block pm in arena a, merged with what lies around it
 * (a's lock held). */
UMPA_HOT
static void put_locked(struct lc_arena *a, struct pmeta *pm) {
  size_t backed = pm->flags & PMF_FULL
                      ? pm->count
                      : bitmap_count(pm->region->xbacked, pmeta_index(pm),
                                     pm->count);
  pm = coalesce(a, pm, &backed);
  list_span(a, pm, true, backed);
}

UMPA_HOT
bool largecache_put(struct pmeta *pm, bool freed) {
  size_t pages = pm->count;
  size_t limit = umpa_opt.large_cache >> PAGE_SHIFT;
  if (!umpa_opt.large_cache_fixed) {
    /* Twice the memory in use lately, at most the default (256 MiB) or the
     * memory in use, whichever is more: a ring of varied blocks keeps
     * spans that wait for a request they fit, about a fifth of its live
     * data (Figure 7 through malloc, with 2 GB live, faulted 10.5-11.5
     * pages in per 4-8 MiB request capped at 256 MiB, 9.3-10 uncapped). */
    size_t live = cache_adaptive(SIZE_MAX, 2); /* one read of the clock */
    if (live > limit) limit = live;
    if (2 * live < limit) limit = 2 * live;
  }
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm);
  /* What coalesce reads first: the marks of the spans on either side (see
   * prefetch_list_neighbours).  A block at a region's end prefetches past
   * its entries, which is harmless: a prefetch does not fault. */
  __builtin_prefetch(&r->xcached[idx + pages]);
  __builtin_prefetch(&r->meta[idx + pages]);
  if (idx) {
    __builtin_prefetch(&r->xcached[idx - 1]);
    __builtin_prefetch(&r->meta[idx - 1]);
  }
  /* A block populated lazily: learn which pages the program touched (one
   * mincore, or while blocks are sparse most often not: settle_backed),
   * and keep it as a span with holes.  A small block is taken
   * as touched whole, as it nearly always is: the mincore cost more than
   * the block's own faults (git's 32-128 KiB buffers).  So also when the
   * cache does not take it (one of a few pages), or the
   * page layer would ask in its place: aligned_alloc(4096, 4096) and free
   * took 1.7 us instead of 0.15.  While the program touches its blocks
   * whole, the bigger ones come populated (largecache_ahead) and
   * need no asking; the lazy ones among them are the samples that keep
   * lc_touched true. */
  largecache_assume_touched(pm);
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES || pages > limit)
    return false;
  if (freed && (pm->flags & (PMF_UNKNOWN | PMF_LOOSE))) settle_backed(pm);
  struct lc_arena *a = origin_of(pm);
  /* (Compared by index: a thread that only frees opens no arena.) */
  if ((unsigned)(a - lc_arenas) == own_index()) {
    lock_and_decay(a);
    put_locked(a, pm);
  } else {
    /* Onto a's stack; listed here (by arena_try) only once the stack has
     * grown and nobody holds a's lock, and then aged and bounded as a
     * put into a is. */
    if (!give_returned(a, pm) || !arena_try(a)) return true;
    decay_locked(a);
  }
  /* Exact sums only when the cache may be over its limit. */
  size_t cached;
  if (near_backed(a) > limit)
    while ((cached = total_backed()) > limit && evict(a, cached - limit)) {
    }
  ulock_release(arena_mutex(a));
  cache_enforce();
  return true;
}

/* Give a taken block the memory `flags` ask for, outside the lock: the
 * pages without memory are populated, or with UMPA_LAZY left to fault in
 * where the program touches them (after the page cache's pages are moved
 * in); UMPA_ZERO clears the pages that have memory.  On failure the block
 * goes back to the page layer. */
UMPA_HOT
static void *fill(struct pmeta *pm, unsigned flags) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), pages = pm->count;
  if ((pm->flags & PMF_LOOSE) &&
      (flags & (UMPA_ZERO | UMPA_LAZY)) != UMPA_LAZY) {
    /* Cleared as loose, the pages the program never touched would fault
     * in: calloc(4 MiB) after the free of a block written a page in 16
     * took 78-88 us instead of 17-22.  A block asked for populated must
     * be, too. */
    make_exact(pm);
  }
  if (pm->flags & PMF_FULL) {
    if (flags & UMPA_ZERO) memset(pmeta_addr(pm), 0, pages << PAGE_SHIFT);
    return pmeta_addr(pm);
  }
  uint8_t loose = pm->flags & PMF_LOOSE;
  if ((flags & PAGE_AHEAD) && bitmap_count(r->xbacked, idx, pages) < pages)
    flags = largecache_ahead(flags);
  if (page_prepare(r, idx, pages, flags, NULL) != 0) {
    pm->flags = 0; /* page_prepare left the backed bits exact */
    drop(pm);
    return NULL;
  }
  pm->flags = (uint8_t)((!(flags & UMPA_LAZY) ||
                                  bitmap_count(r->xbacked, idx, pages) == pages
                              ? PMF_FULL
                              : PMF_UNKNOWN) |
                         loose);
  return pmeta_addr(pm);
}

/* Take the listed span pm off its lists and cut it to its first `pages`
 * pages (its arena's lock held): the rest stays cached as a span of its own,
 * or, too small for one, stays with the block when `slack` and it has
 * memory, else goes back to the page layer. */
UMPA_HOT
static void take_front(struct lc_arena *a, struct pmeta *pm, size_t pages,
                       bool slack) {
  prefetch_list_neighbours(pm);
  __builtin_prefetch(pm + pages, 1);       /* the surplus's head */
  __builtin_prefetch(&pm->region->xheads[(pmeta_index(pm) + pages) >> 6], 1);
  __builtin_prefetch(pm + pm->count - 1, 1); /* its last entry */
  size_t had = listed_backed(pm);
  took(a, pm);
  unlist_span(a, pm, false);
  set_origin(a, pm);
  struct region *r = pm->region;
  size_t surplus = pm->count - pages, idx = pmeta_index(pm);
  if (surplus >= LC_MIN_PAGES) {
    /* The surplus's memory: what the span had less what the front takes
     * (the front is the smaller part to count). */
    size_t left = had == 0 ? 0 : had - backed_in(pm, 0, pages);
    list_span(a, page_split(pm, pages), true, left);
  } else if (slack && (pm->flags & PMF_FULL)) {
    /* The block keeps it (docs/ARCHITECTURE.md, "Large blocks"). */
  } else if (surplus) {
    pm->count = (uint32_t)pages;
    PC_ADD(xin_use, -surplus);
    buddy_free_range(&umpa_buddy, r, idx + pages, surplus,
                     (pm->flags & PMF_FULL) != 0);
    heap_account_arena(-(ssize_t)(surplus << PAGE_SHIFT));
  }
}

/* Best fit in arena a (its lock held) among a few looks (each is a cache
 * miss): the span that needs the fewest pages populated, then the smallest
 * class, then the lowest address (which packs blocks low and leaves the
 * free space above them in one piece).  NULL if none is big enough; the
 * pages it lacks memory for in *need. */
static struct pmeta *best_fit(struct lc_arena *a, size_t pages, size_t *need) {
  struct pmeta *pm = NULL;
  size_t pm_need = 0;
  unsigned first = class_of(pages);
  for (uint64_t m = classes_from(a, first); m; m &= m - 1) {
    unsigned c = (unsigned)__builtin_ctzll(m);
    int looks = c == first ? 8 : 4;
    for (struct pmeta *n = a->list[c].next; n != &a->list[c] && looks--;
         n = n->next) {
      struct pmeta *cand = of_class_link(n);
      if (cand->count < pages) continue;
      /* It needs at least the pages the whole span lacks memory for: a
       * candidate that cannot beat the best so far is not counted. */
      if (pm && n->count < pages && pages - n->count > pm_need) continue;
      size_t cand_need = (cand->flags & PMF_FULL) ? 0
                         : n->count == 0
                             ? pages
                             : pages - bitmap_count(cand->region->xbacked,
                                                    pmeta_index(cand), pages);
      if (!pm || cand_need < pm_need ||
          (cand_need == pm_need &&
           class_of(cand->count) == class_of(pm->count) &&
           (uintptr_t)cand < (uintptr_t)pm)) {
        pm = cand;
        pm_need = cand_need;
      }
    }
    /* A warm fit ends the search; while only cold ones are found, the
     * four newest spans of every bigger class are looked at for a warm
     * one (one each missed those that older frees left warm: Figure 7
     * faulted 2 % more). */
    if (pm && !pm_need) break;
  }
  *need = pm_need;
  return pm;
}

/* The arena other than `own` whose spans hold the most memory, if more
 * than half a block of `pages` pages: where a thread looks when its own
 * has nothing that fits, before new pages (a thread that frees what
 * another mallocs would otherwise strand them).  Only for memory: pages
 * without it are had as cheaply from a stretch of the thread's own
 * (largecache_take). */
static struct lc_arena *fullest_other(struct lc_arena *own, size_t pages) {
  struct lc_arena *best = NULL;
  size_t most = pages / 2;
  for (unsigned i = 0, used = arenas_used(); i < used; i++) {
    size_t n =
        atomic_load_explicit(&lc_arenas[i].xbacked, memory_order_relaxed);
    if (&lc_arenas[i] != own && n > most) {
      best = &lc_arenas[i];
      most = n;
    }
  }
  return best;
}

UMPA_HOT
void *largecache_take(size_t pages, unsigned flags, bool exact,
                      bool *declined) {
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES ||
      near_pages() < pages / 4)
    return NULL;
  struct lc_arena *a = my_arena();
  lock_and_decay(a);
  size_t need;
  struct pmeta *pm = best_fit(a, pages, &need);
  if (!pm) {
    ulock_release(arena_mutex(a));
    if (!(a = fullest_other(a, pages))) return NULL;
    lock_and_decay(a);
    pm = best_fit(a, pages, &need);
    /* Not another arena's pages without memory (the cold end of its
     * stretch): blocks of two threads cut side by side there write the
     * same lines of the page layer's bitmaps and span marks at every
     * malloc and free (docs/ARCHITECTURE.md, "Large blocks"). */
    if (pm && need >= pages / 2) pm = NULL;
  }
  /* A fit that lacks memory for half its pages or more (a stretch's
   * fresh end, say) is worth less than stored superblocks that merge into
   * a warm run: after a phase of small blocks, the large blocks took the
   * stretch that the first of them had grown, and faulted it in beside
   * the phase's memory (store.c, "Spilling"). */
  if (pm && declined && need >= pages / 2 && store_may_spill(pages)) {
    ulock_release(arena_mutex(a));
    *declined = true;
    return NULL;
  }
  /* Populating part of a span is worth it only when the page layer has no
   * warm run to give instead (a hit there costs no fault).  With no span
   * at all, largecache_grow carves the block from a new stretch. */
  if (!pm || (need && buddy_has_warm(&umpa_buddy, log2_ceil(pages)))) {
    ulock_release(arena_mutex(a));
    return NULL;
  }
  take_front(a, pm, pages, !exact);
  ulock_release(arena_mutex(a));
  return fill(pm, flags);
}

bool largecache_extend(struct pmeta *pm, size_t pages, unsigned flags) {
  struct region *r = pm->region;
  size_t idx = pmeta_index(pm), old = pm->count, next = idx + old;
  size_t need = pages - old;
  /* The mark is only changed under the lock: read first as a hint (whose
   * span it is), so that a block with no span after it costs no lock;
   * own_mark says for sure under the lock. */
  if (pages <= old || next >= r->mapped) return false;
  unsigned m = atomic_load_explicit(&r->xcached[next], memory_order_relaxed);
  if (m == 0 || m > arenas_used()) return false;
  struct lc_arena *a = &lc_arenas[m - 1];
  lock_and_decay(a);
  struct pmeta *nx = &r->meta[next];
  if (!own_mark(a, r, next) || nx->count < need) {
    ulock_release(arena_mutex(a));
    return false;
  }
  take_front(a, nx, need, false);
  ulock_release(arena_mutex(a));
  /* The front gets its memory as a taken block does, before it joins: on
   * failure fill gives it back to the page layer and the block is as it
   * was. */
  if (!fill(nx, flags)) return false;
  bool unknown = (nx->flags & PMF_UNKNOWN) != 0;
  page_join(pm, nx); /* clears PMF_FULL unless the front has it */
  if (unknown) pm->flags |= PMF_UNKNOWN; /* the owner may touch them */
  PC_ADD(xgrow_in_place, 1);
  return true;
}

/* Hand a piece cut from a span back to arena a, or to the page layer
 * when it is too small to be a span (a's lock held); `backed` as for
 * list_span. */
static void shed(struct lc_arena *a, struct pmeta *pm, bool recent,
                 size_t backed) {
  if (pm->count >= LC_MIN_PAGES) list_span(a, pm, recent, backed);
  else drop(pm);
}

/* Take the window of `pages` pages at `off` pages into the listed span
 * pm, `in_win` of them with memory, off its lists (its arena's lock held);
 * returns the window's head.  The front and the back stay cached, or go to
 * the page layer when too small for a span.  Their memory comes from the
 * span's count: of the two only the shorter is counted (counting both read
 * the whole span's bits on every new superblock, up to 8 KiB of them for a
 * span of 256 MiB).  A front long enough to stay a span keeps the span's
 * place in LRU order; the back is listed as freed now, as in
 * largecache_take. */
static struct pmeta *cut_window(struct lc_arena *a, struct pmeta *pm,
                                size_t off, size_t pages, size_t in_win) {
  size_t had = listed_backed(pm), back = pm->count - off - pages;
  size_t front_backed = off <= back
                            ? backed_in(pm, 0, off)
                            : had - in_win - backed_in(pm, off + pages, back);
  took(a, pm);
  unlist_span(a, pm, off >= LC_MIN_PAGES);
  struct pmeta *win = pm;
  if (off) {
    win = page_split(pm, off);
    shed(a, pm, false, front_backed);
  }
  if (back) shed(a, page_split(win, pages), true, had - front_backed - in_win);
  set_origin(a, win);
  return win;
}

/* Where in span pm (pages from its head) a block of `pages` pages whose
 * address is aligned to `align` bytes begins, or SIZE_MAX if none fits;
 * how many of its pages lack memory in *need. */
static size_t window_in(struct pmeta *pm, size_t pages, size_t align,
                        size_t *need) {
  uintptr_t a = (uintptr_t)pmeta_addr(pm);
  size_t off = (((a + align - 1) & ~(uintptr_t)(align - 1)) - a) >> PAGE_SHIFT;
  if (off + pages > pm->count) return SIZE_MAX;
  *need = (pm->flags & PMF_FULL) ? 0 : pages - backed_in(pm, off, pages);
  return off;
}

UMPA_HOT
void *largecache_take_window(size_t pages, size_t align, unsigned flags) {
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES || own_pages() < pages)
    return NULL;
  struct lc_arena *a = my_arena();
  lock_and_decay(a);
  /* As best_fit, a few looks per class: the window that needs the fewest
   * pages populated. */
  struct pmeta *pm = NULL;
  size_t off = 0, need = 0;
  for (uint64_t m = classes_from(a, class_of(pages)); m; m &= m - 1) {
    unsigned c = (unsigned)__builtin_ctzll(m);
    int looks = 4;
    for (struct pmeta *n = a->list[c].next; n != &a->list[c] && looks--;
         n = n->next) {
      struct pmeta *cand = of_class_link(n);
      size_t cand_need, o = window_in(cand, pages, align, &cand_need);
      if (o != SIZE_MAX && (!pm || cand_need < need)) {
        pm = cand;
        off = o;
        need = cand_need;
      }
    }
    if (pm && !need) break;
  }
  if (!pm || (need && buddy_has_warm(&umpa_buddy, log2_ceil(pages)))) {
    ulock_release(arena_mutex(a));
    return NULL;
  }
  struct pmeta *win = cut_window(a, pm, off, pages, pages - need);
  ulock_release(arena_mutex(a));
  return fill(win, flags);
}

void *largecache_take_room(size_t pages, unsigned flags) {
  if (pages < LC_MIN_PAGES || pages > LC_MAX_PAGES / 2 ||
      own_pages() < 2 * pages)
    return NULL;
  /* The thread's own arena alone: a move that finds no room there grows
   * the block by the page layer's means. */
  struct lc_arena *a = my_arena();
  lock_and_decay(a);
  /* Among the first few spans of each class from the top, the one with
   * the most memory, then the largest: buffers moved side by side split
   * it in halves, quarters, ..., each with its room (best fit put each
   * right after the last, and every growth moved again). */
  struct pmeta *pm = NULL;
  size_t pm_backed = 0;
  for (uint64_t m = classes_from(a, class_of(2 * pages)); m;) {
    unsigned c = 63u - (unsigned)__builtin_clzll(m);
    m &= ~((uint64_t)1 << c);
    int looks = 8;
    for (struct pmeta *n = a->list[c].next; n != &a->list[c] && looks--;
         n = n->next) {
      struct pmeta *cand = of_class_link(n);
      if (cand->count < 2 * pages) continue;
      size_t backed = listed_backed(cand);
      if (!pm || backed > pm_backed ||
          (backed == pm_backed && cand->count > pm->count)) {
        pm = cand;
        pm_backed = backed;
      }
    }
  }
  if (!pm) {
    ulock_release(arena_mutex(a));
    return NULL;
  }
  took(a, pm);
  unlist_span(a, pm, false);
  /* Centred: the front and the room are each at least half the block
   * (the span holds twice the block), so no piece is empty. */
  struct pmeta *blk = page_split(pm, (pm->count - pages) / 2);
  struct pmeta *room = page_split(blk, pages);
  set_origin(a, blk);
  shed(a, pm, true, SIZE_MAX);
  shed(a, room, true, SIZE_MAX);
  ulock_release(arena_mutex(a));
  return fill(blk, flags);
}

/* Where in span pm (in pages from its head) a window of `pages` pages,
 * aligned to its size (a power of two), has memory in every page, or
 * SIZE_MAX.  Every run with memory is looked at, not only the span's first
 * window: a span that grew over cold runs, or was merged with cold ones,
 * keeps its memory anywhere in it, and missing it cost a new superblock's
 * first blocks 6 to 9 faults (Figure 7's 16-32 KiB bin: 0.74 a request). */
static size_t aligned_window(struct pmeta *pm, size_t pages) {
  size_t i = pmeta_index(pm), end = i + pm->count; /* regions are aligned */
  if (pm->flags & PMF_FULL) {
    size_t w = (i + pages - 1) & ~(pages - 1);
    return w + pages <= end ? w - pmeta_index(pm) : SIZE_MAX;
  }
  _Atomic uint64_t *bits = pm->region->xbacked;
  while (i < end) {
    size_t e, s = bitmap_run(bits, i, end, true, &e);
    if (s == end) break;
    size_t w = (s + pages - 1) & ~(pages - 1);
    if (w + pages <= e) return w - pmeta_index(pm);
    i = e;
  }
  return SIZE_MAX;
}

/* In arena a (its lock held), a span with an aligned window of `pages`
 * pages that all have memory, the window's offset in *off; NULL if none.
 * The smallest classes first: a superblock should not cut into the big
 * spans that large requests need whole.  Each look is a cache miss or
 * two, each miss here costs the caller fresh pages: its header and first
 * blocks fault in, 6 to 9 faults of 1.5 us.  So a few looks per class, up
 * to LC_ALIGNED_LOOKS spans with memory enough, and a span with too
 * little memory costs only the load of its count. */
static struct pmeta *aligned_fit(struct lc_arena *a, size_t pages,
                                 size_t *off) {
  int looks = LC_ALIGNED_LOOKS, visits = 4 * LC_ALIGNED_LOOKS;
  for (uint64_t m = classes_from(a, class_of(pages));
       m && looks > 0 && visits > 0; m &= m - 1) {
    unsigned c = (unsigned)__builtin_ctzll(m);
    int in_class = 8;
    for (struct pmeta *n = a->list[c].next;
         n != &a->list[c] && in_class > 0 && visits-- > 0; n = n->next) {
      struct pmeta *cand = of_class_link(n);
      if (listed_backed(cand) < pages) continue;
      in_class--;
      size_t skip = aligned_window(cand, pages);
      if (skip != SIZE_MAX) {
        *off = skip;
        return cand;
      }
      if (--looks == 0) break;
    }
  }
  return NULL;
}

UMPA_HOT
void *largecache_take_aligned(size_t pages, unsigned kind) {
  if (total_backed() < pages) return NULL;
  /* The thread's own arena first, then the others with memory enough. */
  struct lc_arena *own = my_arena(), *a = own;
  size_t off = 0;
  arena_lock(a);
  struct pmeta *pm = aligned_fit(a, pages, &off);
  if (!pm) {
    ulock_release(arena_mutex(a));
    for (unsigned i = 0, used = arenas_used(); i < used && !pm; i++) {
      a = &lc_arenas[i];
      if (a == own ||
          atomic_load_explicit(&a->xbacked, memory_order_relaxed) < pages)
        continue;
      arena_lock(a);
      if (!(pm = aligned_fit(a, pages, &off))) ulock_release(arena_mutex(a));
    }
    if (!pm) return NULL;
  }
  struct pmeta *win = cut_window(a, pm, off, pages, pages); /* all backed */
  ulock_release(arena_mutex(a));
  /* A superblock's mark is the store's (store.c): none until stored. */
  if (kind != KIND_LARGE)
    atomic_store_explicit(&win->xmark, 0, memory_order_relaxed);
  win->kind = (uint8_t)kind;
  win->flags = PMF_FULL;
  return pmeta_addr(win);
}

UMPA_HOT
void *largecache_take_small(size_t pages, unsigned flags, bool exact) {
  if (pages >= LC_MIN_PAGES || buddy_has_warm(&umpa_buddy, log2_ceil(pages)))
    return NULL;
  size_t window = (size_t)1 << log2_ceil(pages);
  char *p = largecache_take_aligned(window, KIND_LARGE);
  if (!p) return NULL;
  struct pmeta *pm = pmeta_at(p);
  if (window > pages && exact) drop(page_split(pm, pages));
  if (flags & UMPA_ZERO) memset(p, 0, (size_t)pm->count << PAGE_SHIFT);
  return p;
}

UMPA_HOT
void *largecache_grow(size_t pages, unsigned flags) {
  /* The largest span there is: blocks carved from it can merge back.  But
   * no new region for it while a region has a free run of a few MiB: a
   * program's first large block nearly always comes after its first
   * superblocks, which leave the first region no 64 MiB run, and a second
   * region (its reservation, map entries and metadata) cost each short
   * git process about 10 system calls and 15 faults more than the block. */
  size_t chunk = LC_MAX_PAGES;
  int have = buddy_max_free_order(&umpa_buddy);
  if (have >= LC_GROW_MIN_ORDER && ((size_t)1 << have) < chunk &&
      pages <= ((size_t)1 << have) / 2)
    chunk = (size_t)1 << have;
  if (pages < LC_MIN_PAGES || pages > chunk / 2 ||
      buddy_has_warm(&umpa_buddy, log2_ceil(pages)))
    return NULL;
  /* A free run of the stretch's size was there: if another thread took it
   * meanwhile, no new region for this one (the caller takes the block
   * alone from the page layer).  Threads that grew the cache at once, each
   * seeing the same free run, got a region each but one: a program whose
   * short-lived threads malloc'd 200 KB blocks reserved 17 GiB in 2 s for
   * 3 MB of RSS. */
  unsigned grow = have >= (int)log2_ceil(chunk) ? PAGE_NO_GROW : 0;
  int saved = errno;
  char *p = page_alloc(chunk, UMPA_LAZY | grow, KIND_LARGE);
  if (!p) {
    errno = saved;
    return NULL;
  }
  struct pmeta *pm = pmeta_at(p);
  /* Nobody touched it yet: its backed bits are exact. */
  pm->flags &= (uint8_t)~PMF_UNKNOWN;
  heap_account_arena((ssize_t)(chunk << PAGE_SHIFT));
  struct lc_arena *a = my_arena();
  lock_and_decay(a);
  /* The stretch's bits are counted before it merges with the span that
   * ends before it: at most 64 MiB's worth, where the merged surplus's
   * could be 256 MiB's. */
  size_t backed = backed_in(pm, 0, chunk);
  pm = merge_back(a, pm, &backed);
  size_t front = backed_in(pm, 0, pages);
  list_span(a, page_split(pm, pages), true, backed - front);
  set_origin(a, pm);
  ulock_release(arena_mutex(a));
  return fill(pm, flags);
}

size_t largecache_flush(void) {
  size_t released = 0;
  for (unsigned i = 0, used = arenas_used(); i < used; i++) {
    struct lc_arena *a = &lc_arenas[i];
    arena_lock(a);
    a->age = 0; /* an empty cache starts again from UMPA_DECAY_MS */
    size_t cached;
    while ((cached = atomic_load_explicit(&a->xpages, memory_order_relaxed)) !=
           0) {
      released += evict(a, cached);
      if (atomic_load_explicit(&a->xpages, memory_order_relaxed) == cached)
        break;
    }
    ulock_release(arena_mutex(a));
  }
  cache_enforce();
  return released << PAGE_SHIFT;
}

size_t largecache_bytes(void) { return total_pages() << PAGE_SHIFT; }

size_t largecache_pages_near(void) { return near_pages(); }

unsigned largecache_arenas(void) { return arenas_used(); }

size_t largecache_spans(size_t *largest) {
  size_t spans = 0, most = 0;
  for (unsigned i = 0, used = arenas_used(); i < used; i++) {
    struct lc_arena *a = &lc_arenas[i];
    arena_lock(a);
    for (unsigned c = 0; c < LC_CLASSES; c++) spans += a->count[c];
    /* The largest is in the highest class that holds any. */
    bool found = false;
    for (unsigned c = LC_CLASSES; c-- > 0 && !found;)
      for (struct pmeta *n = a->list[c].next; n != &a->list[c]; n = n->next) {
        found = true;
        if (of_class_link(n)->count > most) most = of_class_link(n)->count;
      }
    ulock_release(arena_mutex(a));
  }
  *largest = most << PAGE_SHIFT;
  return spans;
}

/* fork: every arena's lock once more than one may be in use, else the
 * first's.  The first is taken before the flag is read: a thread opening
 * an arena sets lc_shared before it takes any lock, and then waits for
 * the first (arena_open), so none can be in another arena unseen. */
static unsigned lc_forked;

UMPA_FORK
void largecache_lock_all(void) {
  ulock_acquire_fork(arena_lock_at(0));
  unsigned n = atomic_load(&lc_shared) ? LC_ARENAS : 1;
  for (unsigned i = 1; i < n; i++) ulock_acquire_fork(arena_lock_at(i));
  lc_forked = n;
}
UMPA_FORK
void largecache_unlock_all(void) {
  for (unsigned i = lc_forked; i-- > 0;) ulock_release_fork(arena_lock_at(i));
}
