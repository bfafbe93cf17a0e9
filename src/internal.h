/*
 * internal.h - types, constants and cross-file prototypes of umpa.
 *
 * Naming: `umpa_`/`userpage_` is public (include/umpa.h); everything here is
 * internal and hidden from the shared library's symbol table.  Fields whose
 * name starts with `x` are _Atomic so that atomic accesses stand out.
 */
#ifndef UMPA_INTERNAL_H
#define UMPA_INTERNAL_H

#include "umpa.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UMPA_HIDDEN __attribute__((visibility("hidden")))
#define UMPA_NOINLINE __attribute__((noinline))
/* The functions that malloc's and free's paths run in a steady state, the
 * slow ones included: the linker gathers .text.hot.* ahead of the rest of
 * the text, so a slow path run on a cold cache (a new superblock) reads a
 * few pages of code instead of one per source file it passes through
 * (docs/ARCHITECTURE.md, "Code layout").  Not on a small static function
 * that a caller outside the section also calls: GCC then keeps it out of
 * line for every caller (enforce_threshold was). */
#define UMPA_HOT __attribute__((section(".text.hot.umpa")))
/* The fork handlers and the lock_all/unlock_all functions they call: the
 * linker gathers .text.sorted.* in one place (GNU ld's default script),
 * and a child runs them before anything else, on code pages that fork
 * did not map into it (file pages are faulted in on first use): one or two
 * pages instead of one per source file. */
#define UMPA_FORK __attribute__((section(".text.sorted.umpa_fork")))
#define UMPA_NORETURN __attribute__((noreturn))
#define UMPA_LIKELY(x) __builtin_expect(!!(x), 1)
#define UMPA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define UMPA_CACHE_LINE 64
/* For the big zero-initialised tables of which a process touches a page or
 * two (the region map, the store's stripes, the heaps that belong to no
 * thread): the linker puts .lbss after .bss, so the small variables that
 * every process touches at its start share a few pages instead of being
 * spread among the tables (12 pages of .bss were touched, a fault each). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define UMPA_BIG_BSS __attribute__((section(".lbss")))
#else
#define UMPA_BIG_BSS
#endif
/* For the few zero-initialised flags that every process reads and then
 * writes at its start (the init states): in .bss the read mapped the zero
 * page and the write copied it, two faults each; .data shares its page
 * with the GOT, which the dynamic loader has written by then. */
#define UMPA_EARLY_DATA __attribute__((section(".data")))

/* ---------------------------------------------------------------------------
 * Geometry.
 * ------------------------------------------------------------------------- */

#define PAGE_SHIFT 12
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
#define HUGE_SHIFT 21 /* 2 MiB: x86-64 PMD, the THP size */
#define HUGE_ORDER (HUGE_SHIFT - PAGE_SHIFT)

/* Highest buddy order: a run of 2^31 pages = 8 TiB, the largest request the
 * page layer accepts (16 of them fill the 47-bit user address space). */
#define MAX_ORDER (UMPA_PAGE_ORDERS - 1)
#define MAX_REQUEST_PAGES ((size_t)1 << MAX_ORDER)

/* Regions are aligned to their size, which is a power of two between
 * REGION_MIN_SHIFT and 2^(MAX_ORDER+PAGE_SHIFT).  The region map resolves an
 * address in two steps: one slot per GiB, and for slots shared by regions
 * smaller than a GiB a second table with one slot per 4 MiB. */
#define REGION_MIN_SHIFT 22     /* 4 MiB */
#define REGION_DEFAULT_SHIFT 30 /* 1 GiB */
#define REGION_FIRST_SHIFT 26   /* 64 MiB: see region_create */
#define MAP_SLOT_SHIFT 30
#define MAP_SUB_SHIFT REGION_MIN_SHIFT
#define MAP_SUB_SLOTS (1u << (MAP_SLOT_SHIFT - MAP_SUB_SHIFT))
#define ADDRESS_BITS 47
#define MAP_SLOTS ((size_t)1 << (ADDRESS_BITS - MAP_SLOT_SHIFT))

/* ---------------------------------------------------------------------------
 * Options (src/options.c), parsed once from UMPA_* environment variables.
 * ------------------------------------------------------------------------- */

enum { POPULATE_AUTO, POPULATE_MADVISE, POPULATE_MAP, POPULATE_TOUCH };
enum { LOCK_SPIN = 0, LOCK_MUTEX = 1 };

struct umpa_options {
  size_t page_cache;    /* UMPA_PAGE_CACHE: cache limit in bytes */
  unsigned region_shift;/* UMPA_REGION_SIZE as a shift */
  int page_lock;        /* UMPA_PAGE_LOCK: LOCK_SPIN or LOCK_MUTEX */
  int populate;         /* UMPA_POPULATE: POPULATE_* */
  int thp;              /* UMPA_THP: advise regions MADV_HUGEPAGE */
  int collapse;         /* UMPA_COLLAPSE: populate whole 2 MiB pieces as
                           huge pages (MADV_COLLAPSE) */
  size_t malloc_populate; /* UMPA_MALLOC_POPULATE: populate malloc blocks
                             up to this size up front */
  size_t large_cache;   /* UMPA_LARGE_CACHE: bytes of freed large blocks
                           kept whole for reuse */
  size_t decay_ms;      /* UMPA_DECAY_MS: freed large blocks unused this
                           long give their memory back (0: never) */
  int check;            /* UMPA_CHECK: exact double-free detection */
  bool page_cache_fixed;  /* UMPA_PAGE_CACHE given: an exact limit */
  bool large_cache_fixed; /* UMPA_LARGE_CACHE given: an exact limit */
  bool region_size_fixed; /* UMPA_REGION_SIZE given: every region that size */
};

UMPA_HIDDEN extern struct umpa_options umpa_opt;

/* UMPA_DECAY_MS in ns (0: no decay), saturated. */
static inline uint64_t decay_age_ns(void) {
  size_t ms = umpa_opt.decay_ms;
  return ms < UINT64_MAX / 1000000u ? (uint64_t)ms * 1000000u : UINT64_MAX;
}
/* Parse the environment once (idempotent, thread safe, no allocation). */
UMPA_HIDDEN void options_init(void);
/* Parse "123", "64K", "2M", "1G"...; returns false on a malformed value. */
UMPA_HIDDEN bool options_parse_size(const char *s, size_t *out);

/* ---------------------------------------------------------------------------
 * OS layer (src/os.c): the only file that makes system calls.
 * ------------------------------------------------------------------------- */

/* Reserve `size` bytes of address space aligned to `align` (a power of
 * two), inaccessible until os_open opens parts of it (a move onto it needs
 * no opening), tried first just below `hint` when it is not NULL.  NULL
 * with errno on failure. */
UMPA_HIDDEN void *os_reserve_aligned(size_t size, size_t align, void *hint);
/* Plain anonymous mapping for metadata (lazily backed). */
UMPA_HIDDEN void *os_map(size_t size);
UMPA_HIDDEN void os_unmap(void *p, size_t size);
/* Whether the kernel's overcommit policy lets an ordinary private mapping
 * of `size` bytes be made now (asked by making one and dropping it).
 * errno is left unchanged. */
UMPA_HIDDEN bool os_may_commit(size_t size);
/* `size` bytes of inaccessible address space, costing neither memory nor
 * commit charge (nor locked memory under mlockall) until os_open opens
 * parts of it; NULL on failure (RLIMIT_AS, ...).  errno is left unchanged
 * by both. */
UMPA_HIDDEN void *os_reserve(size_t size);
/* Make [p, p+size) of a reservation readable, and writable if `write`
 * (which under mlockall populates it); false if the kernel refuses (out
 * of VMAs, or the commit limit under vm.overcommit_memory=2). */
UMPA_HIDDEN bool os_open(void *p, size_t size, bool write);
/* Back [p, p+size) with memory now, keeping what backed pages hold.
 * `empty` says the range holds no data, so it may be replaced wholesale,
 * and its whole 2 MiB pieces may get huge pages (UMPA_COLLAPSE).
 * Returns 0 or an errno value (ENOMEM when the kernel has no memory for
 * it).  *faults receives the page faults the call took. */
UMPA_HIDDEN int os_populate(void *p, size_t size, bool empty,
                            uint64_t *faults);
/* How many times a huge-page collapse failed or was slow, so that the next
 * pieces went by small pages until populating repaid it (tests). */
UMPA_HIDDEN unsigned os_collapse_backoffs(void);
/* Let the next piece be collapsed without first populating 40 ms' worth by
 * small pages (tests). */
UMPA_HIDDEN void os_collapse_arm(void);
/* Drop the memory of [p, p+size); the range stays reserved and reads zero. */
UMPA_HIDDEN void os_release(void *p, size_t size);
/* Replace [p, p+size) by a fresh mapping, which drops its memory and lets
 * the kernel merge it with its neighbours again after mremap moves split
 * the VMA.  The range reads zero afterwards even if the kernel refuses the
 * mapping (out of VMAs): its memory is then dropped in place. */
UMPA_HIDDEN void os_heal(void *p, size_t size, bool thp);
/* Drop the memory of [p, p+size) and make it inaccessible again, even
 * where its pages are locked (a fresh PROT_NONE mapping, which mlockall
 * does not populate; advised MADV_HUGEPAGE again with `thp`); if the
 * kernel refuses (out of VMAs), as os_heal: the range stays accessible and
 * reads zero. */
UMPA_HIDDEN void os_close(void *p, size_t size, bool thp);
/* Whether the page at p has memory (one mincore).  Asked of the first
 * page of a piece of a region just opened, which nothing has touched: the
 * kernel populated it only if it locks the mapping (mlockall). */
UMPA_HIDDEN bool os_page_resident(void *p);
/* For the tests: how many of the next fresh mappings that replace memory
 * (os_heal's, os_release's fallback) are refused, as a kernel at
 * vm.max_map_count would. */
UMPA_HIDDEN extern _Atomic unsigned os_fresh_refusals;
/* Advise transparent huge pages for [p, p+size). */
UMPA_HIDDEN void os_advise_huge(void *p, size_t size);
/* Move the pages of [src, src+size) to dst; src stays mapped and empty.
 * Returns 0 or an errno value (ENOMEM at vm.max_map_count, ...); after a
 * failure src holds its bytes as before (dst may hold a copy of some). */
UMPA_HIDDEN int os_move(void *src, void *dst, size_t size);
/* For the tests: the results of the next calls of os_move, one byte each
 * from the lowest (an errno value, or 0 for the real call), so that the
 * paths a kernel out of VMAs takes can be run. */
UMPA_HIDDEN extern _Atomic uint64_t os_move_script;
/* Which of the pages of [p, p+npages pages) are resident: vec[i] & 1. */
UMPA_HIDDEN int os_residency(void *p, size_t npages, unsigned char *vec);
UMPA_HIDDEN bool os_has_swap(void);
/* RLIMIT_AS in bytes, SIZE_MAX when unlimited. */
UMPA_HIDDEN size_t os_address_space_limit(void);
/* Minor + major page faults of the calling thread so far. */
UMPA_HIDDEN uint64_t os_thread_faults(void);
UMPA_HIDDEN void os_futex_wait(_Atomic uint32_t *addr, uint32_t val);
UMPA_HIDDEN void os_futex_wake(_Atomic uint32_t *addr, int n);
UMPA_HIDDEN void os_yield(void);
/* The calling thread's kernel id. */
UMPA_HIDDEN int os_thread_id(void);
/* False only when this process has no thread `tid`; true when it has, or
 * when the kernel will not say (a seccomp filter). */
UMPA_HIDDEN bool os_thread_alive(int tid);
/* A full memory barrier in every running thread of the process
 * (membarrier, private expedited; registered on the first call), so that
 * a thread that takes something with plain loads and stores needs no
 * fence of its own against a rare taker from another thread.  False if
 * the kernel has none, or a seccomp filter is on: then nothing was
 * fenced. */
UMPA_HIDDEN bool os_membarrier(void);
/* A monotonic clock in ns, coarse (a few ms): for ageing, not timing. */
UMPA_HIDDEN uint64_t os_now_ns(void);
/* The coarse clock as read when the thread's current large-block call
 * began (clock_scope_begin), 0 outside one.  The caches' limits and decay
 * read the clock four times a large free and as often again for each
 * piece an aligned malloc gives back (12 reads, 60 of its 560 ns): within
 * a call, now_coarse gives them that one reading.  A reading so taken may
 * be older than another thread's, by as long as the call has run, so
 * whoever compares it with a time another thread stored allows for that
 * (the large cache's arenas keep their clock monotonic; the windows of
 * cache.c ignore a start after it). */
UMPA_HIDDEN extern __thread uint64_t umpa_tl_now
    __attribute__((tls_model("initial-exec")));
static inline uint64_t now_coarse(void) {
  uint64_t t = umpa_tl_now;
  return t ? t : os_now_ns();
}
/* Open a scope in which now_coarse returns one reading (nested scopes keep
 * the outer one's); pass what it returns to clock_scope_end. */
static inline uint64_t clock_scope_begin(void) {
  uint64_t was = umpa_tl_now;
  if (!was) umpa_tl_now = os_now_ns();
  return was;
}
static inline void clock_scope_end(uint64_t was) { umpa_tl_now = was; }
/* The same, fine (a vDSO read of CLOCK_MONOTONIC): for timing what the
 * allocator does; 0 if it cannot be read. */
UMPA_HIDDEN uint64_t os_fine_ns(void);
UMPA_HIDDEN void os_write_stderr(const char *s, size_t len);
UMPA_HIDDEN UMPA_NORETURN void os_abort(void);
/* The environment block, or NULL before libc has set it up. */
UMPA_HIDDEN char **os_environ(void);

/* ---------------------------------------------------------------------------
 * Messages (src/report.c): formatted without malloc.
 * Formats: %s %d %u %zu %zx %p %%.
 * ------------------------------------------------------------------------- */

UMPA_HIDDEN UMPA_NORETURN void umpa_fatal(const char *fmt, ...);
UMPA_HIDDEN void umpa_warn(const char *fmt, ...);
/* Format into buf (always NUL-terminated); returns the length. */
UMPA_HIDDEN size_t umpa_format(char *buf, size_t cap, const char *fmt, ...);

/* ---------------------------------------------------------------------------
 * Locks (src/lock.c).  One type serves as spinlock or futex mutex, chosen
 * when the lock is initialised, and counts how often it was contended and
 * how many threads waited at once (the buddy seed's "pending requests").
 * ------------------------------------------------------------------------- */

typedef struct ulock {
  _Atomic uint32_t xword;     /* 0 free, 1 held, 2 held with sleepers */
  _Atomic uint32_t xwaiting;  /* threads in the slow path now */
  _Atomic uint64_t xacquires; /* updated while held, read racily */
  _Atomic uint64_t xwaits;
  /* 32 bits: a lock is 32 bytes, and the fork page holds one per size
   * class (struct fork_locks). */
  _Atomic uint32_t xwaiters_max;
  uint8_t kind;               /* LOCK_SPIN or LOCK_MUTEX */
  uint8_t fork_held;          /* taken by fork's prepare handler */
  uint16_t fork_depth;        /* its thread's acquisitions since */
} ulock_t;
_Static_assert(sizeof(ulock_t) == 32, "see xwaiters_max");

UMPA_HIDDEN void ulock_init(ulock_t *l, int kind);
UMPA_HIDDEN void ulock_acquire_slow(ulock_t *l);
UMPA_HIDDEN void ulock_release_slow(ulock_t *l);
/* Set while the thread forks with every lock of umpa held (from thread.c's
 * prepare handler to its parent or child handler): its own acquisitions
 * of those locks (fork_held) only count, and their releases uncount, as
 * it holds them already.  glibc runs the prepare handlers in the reverse
 * order of their registration, so one that a library registered before
 * umpa did (under LD_PRELOAD, in a constructor that ran before umpa's)
 * runs after umpa's; if it allocated, it waited forever for a lock its
 * own thread held.  Any other lock (a store stripe no heap had used) is
 * taken and released as usual. */
UMPA_HIDDEN extern __thread bool umpa_tl_forking
    __attribute__((tls_model("initial-exec")));

/* Counter bump for a field only written under a lock we hold: a relaxed
 * load/store pair, no locked instruction, yet racy readers stay defined. */
#define COUNTER_ADD(field, n)                                                \
  atomic_store_explicit(&(field),                                            \
                        atomic_load_explicit(&(field), memory_order_relaxed) \
                            + (n),                                           \
                        memory_order_relaxed)

static inline void ulock_acquire(ulock_t *l) {
  uint32_t expected = 0;
  if (UMPA_UNLIKELY(!atomic_compare_exchange_strong_explicit(
          &l->xword, &expected, 1, memory_order_acquire,
          memory_order_relaxed)))
    ulock_acquire_slow(l);
  COUNTER_ADD(l->xacquires, 1);
}

static inline bool ulock_try(ulock_t *l) {
  uint32_t expected = 0;
  return atomic_compare_exchange_strong_explicit(
      &l->xword, &expected, 1, memory_order_acquire, memory_order_relaxed);
}

static inline void ulock_release(ulock_t *l) {
  if (UMPA_UNLIKELY(l->fork_depth)) { /* see umpa_tl_forking */
    l->fork_depth--;
    return;
  }
  /* A spinlock's word is never 2, and nobody sleeps on it: a plain
   * release store, where the exchange's locked instruction would wait for
   * every store before it (the program's page writes included). */
  if (l->kind == LOCK_SPIN) {
    atomic_store_explicit(&l->xword, 0, memory_order_release);
    return;
  }
  if (UMPA_UNLIKELY(atomic_exchange_explicit(&l->xword, 0,
                                             memory_order_release) == 2))
    ulock_release_slow(l);
}

/* The fork handlers' acquisition and release (see umpa_tl_forking), also
 * used by the others that take every lock (a full trim, the page check),
 * which a prepare handler running during the fork may call: then the
 * locks are the fork's, and stay marked. */
static inline void ulock_acquire_fork(ulock_t *l) {
  ulock_acquire(l);
  l->fork_held = 1;
}
static inline void ulock_release_fork(ulock_t *l) {
  if (!l->fork_depth) l->fork_held = 0;
  ulock_release(l);
}

/* ---------------------------------------------------------------------------
 * Per-page metadata.  Every page of a region has one entry, kept outside the
 * region so that free runs can be listed without touching (and so faulting
 * in) their memory.  Only the entry of a run's first page (its head) means
 * anything; the entries of the other pages are PM_NONE.
 * ------------------------------------------------------------------------- */

enum pm_state {
  PM_NONE = 0, /* not the head of a run */
  PM_FREE = 1, /* head of a free run; the tag's low bits hold its order */
  PM_USED = 2, /* head of an allocated block */
  PM_BUSY = 3  /* head of a run some thread is working on (in flight) */
};

#define PM_TAG(state, order) ((uint8_t)(((state) << 6) | (order)))
#define PM_STATE(tag) ((tag) >> 6)
#define PM_ORDER(tag) ((tag)&63u)

/* Owner of an allocated block: the page API, and room for upper layers. */
enum pm_kind { KIND_PAGE = 1, KIND_SUPERBLOCK = 2, KIND_LARGE = 3, KIND_META = 4 };

/* Flags of an allocated block. */
#define PMF_FULL 0x01u    /* every page is backed: frees need no bitmap scan */
#define PMF_UNKNOWN 0x02u /* the owner may have touched unbacked pages */
#define PMF_CACHED 0x04u  /* a large malloc block parked in the large cache */
#define PMF_HELD 0x08u    /* a freed large malloc block a thread holds (held.c) */
#define PMF_LOOSE 0x10u   /* bits set without asking the kernel: pages counted
                             as backed may have no memory (largecache.c) */

struct region;

struct pmeta {
  struct pmeta *next;        /* free head: list links */
  struct pmeta *prev;
  union {
    struct region *region;   /* set on heads of runs and blocks */
    uint64_t stamp;          /* inside a cached span: see largecache.c */
  };
  uint32_t count;            /* free head: backed pages; used head: pages */
  _Atomic uint8_t xtag;      /* PM_TAG(state, order) */
  uint8_t kind;              /* used head: enum pm_kind */
  uint8_t flags;             /* used head: PMF_* */
  _Atomic uint8_t xmark;     /* a stored superblock's first two pages:
                                its class and stripe (store.c); a large
                                block's head: the large cache's arena it
                                was cut from + 1, or 0 (largecache.c) */
};

/* ---------------------------------------------------------------------------
 * Regions (src/region.c): aligned reservations of address space.  A region's
 * metadata (this struct, two page bitmaps and the pmeta array) lives in a
 * separate lazily backed mapping.
 * ------------------------------------------------------------------------- */

struct region {
  uintptr_t base;         /* aligned to its size (a short region's
                             perhaps to 4 MiB only) */
  size_t npages;          /* a power of two */
  size_t mapped;          /* pages reserved from base: npages, or fewer in
                             a short region (region_create_short) */
  unsigned order;         /* log2(npages): the largest run it can hold */
  bool thp;               /* advised MADV_HUGEPAGE as a whole */
  struct pmeta *meta;     /* npages entries */
  _Atomic uint64_t *xbacked; /* bit per page: may hold data / has memory */
  _Atomic uint64_t *xheads;  /* bit per page: head of an allocated block */
  _Atomic uint64_t *xmeta_backed; /* bit per page of `meta`: populated */
  _Atomic uint8_t *xcached;  /* byte per page: at a large-cache span's
                                ends, its arena's index + 1, else 0
                                (backed as used) */
  _Atomic uint64_t *xopen;   /* bit per 2^OPEN_ORDER pages: accessible */
  _Atomic uint8_t *xsb_map; /* per 64 KiB: log2 of the size of the
                               superblock there, 0 if none; unused (not
                               backed) when fast_map */
  bool fast_map;          /* its superblock map is in umpa_sb_fast.map */
  _Atomic bool xmoved;    /* pages were moved in or out (remap.c): its
                             VMAs may be split, see page_release_free */
  size_t meta_size;       /* bytes of the metadata mapping */
  struct region *next;    /* all regions, newest first */
};

UMPA_HIDDEN struct region *region_of(const void *p);
/* Reserve a region able to hold a run of 2^order pages and register it.
 * Caller holds the buddy's growth lock.  NULL with errno on failure. */
UMPA_HIDDEN struct region *region_create(unsigned order);
/* A region with room for npages only (rounded up to 4 MiB), for when no
 * power-of-two region of that size can be reserved (a tight RLIMIT_AS).
 * Its pages past `mapped` are not reserved: they are never listed free,
 * and the region map does not cover them.  Caller holds the growth lock.
 * NULL with errno on failure. */
UMPA_HIDDEN struct region *region_create_short(size_t npages);
UMPA_HIDDEN struct region *region_list(void);
/* Make pages [idx, idx+n) of r accessible (regions are reserved
 * inaccessible and opened in pieces of 2^OPEN_ORDER pages as blocks are
 * handed out, so that mlockall locks what is used, not what is reserved).
 * Pages that hold data are always open.  Thread-safe; false (ENOMEM for
 * the caller) if the kernel refuses. */
UMPA_HIDDEN bool region_open(struct region *r, size_t idx, size_t n);
/* Bytes of the regions opened so far (what malloc_info reports as the
 * accessible address space: pieces closed under mlockall still count). */
UMPA_HIDDEN size_t region_opened_bytes(void);
/* Open pieces are opened once and stay open; but see region_locked. */
#define OPEN_ORDER HUGE_ORDER
/* Whether the process has been seen locking its new mappings
 * (mlockall(MCL_FUTURE), asked whenever pieces are opened): a fresh
 * mapping that drops memory would then be populated again at once.  From
 * then on free pages are released by closing them (os_close), so a page
 * without data may be inaccessible even in an open piece, and page_prepare
 * opens every such run it hands out.  (Under MCL_CURRENT alone the fresh
 * mappings that replace refused MADV_DONTNEEDs are not locked: memory goes
 * back without this.) */
UMPA_HIDDEN bool region_locked(void);
UMPA_HIDDEN void region_lock_all(void);
UMPA_HIDDEN void region_unlock_all(void);
/* Record in the superblock maps that the superblock of `pages` pages (a
 * power of two, at least 64 KiB) starts at `start`, or that it is gone.
 * The caller owns those pages. */
UMPA_HIDDEN void region_map_superblock(void *start, size_t pages);
UMPA_HIDDEN void region_unmap_superblock(void *start, size_t pages);
/* log2 of the size of the superblock that holds p in r, or 0. */
UMPA_HIDDEN uint8_t region_superblock_shift(struct region *r, const void *p);
/* Populate the metadata of pages [idx, idx+n) of r.  Called whenever data
 * pages are populated, so that a backed page's metadata never faults. */
UMPA_HIDDEN void region_back_meta(struct region *r, size_t idx, size_t n);
UMPA_HIDDEN size_t region_reserved_bytes(void);
UMPA_HIDDEN size_t region_metadata_bytes(void);
UMPA_HIDDEN uint64_t region_count(void);
/* Give the address space of r back to the kernel: r is off the region
 * list and the region map from then on.  Its pages must all be free and
 * out of the buddy's lists (buddy_retire_free).  Growth lock held. */
UMPA_HIDDEN void region_retire(struct region *r);
/* Regions retired so far (tests). */
UMPA_HIDDEN uint64_t region_retired_count(void);
/* Bumped when a region is retired: a pointer into its metadata, which a
 * later region of the same size may take over, is good only while this
 * holds still. */
UMPA_HIDDEN extern _Atomic uint32_t umpa_retire_gen;

static inline size_t region_index(const struct region *r, const void *p) {
  return ((uintptr_t)p - r->base) >> PAGE_SHIFT;
}
static inline void *region_addr(const struct region *r, size_t idx) {
  return (void *)(r->base + (idx << PAGE_SHIFT));
}
/* The metadata entry of the page at p, which must lie in a region. */
static inline struct pmeta *pmeta_at(const void *p) {
  struct region *r = region_of(p);
  return &r->meta[region_index(r, p)];
}

/* Bitmap helpers over a region's page bitmaps (src/bitmap.c). */
UMPA_HIDDEN size_t bitmap_count(_Atomic uint64_t *map, size_t from, size_t n);
/* The same without the POPCNT instruction (what bitmap_count falls back to
 * on processors without it; tests compare the two). */
UMPA_HIDDEN size_t bitmap_count_portable(_Atomic uint64_t *map, size_t from,
                                         size_t n);
UMPA_HIDDEN void bitmap_set(_Atomic uint64_t *map, size_t from, size_t n);
UMPA_HIDDEN void bitmap_clear(_Atomic uint64_t *map, size_t from, size_t n);
/* Copy n bits from src[from_s..] to dst[from_d..]. */
UMPA_HIDDEN void bitmap_copy(_Atomic uint64_t *dst, size_t from_d,
                             _Atomic uint64_t *src, size_t from_s, size_t n);
/* Exchange the n bits at a[ia..] with those at b[ib..] (no overlap). */
UMPA_HIDDEN void bitmap_swap(_Atomic uint64_t *a, size_t ia,
                             _Atomic uint64_t *b, size_t ib, size_t n);
/* First index in [from, from+n) whose bit equals `value`, or from+n. */
UMPA_HIDDEN size_t bitmap_find(_Atomic uint64_t *map, size_t from, size_t n,
                               bool value);
/* The first run of bits equal to `value` in [from, end): its first index
 * (end when there is none), and the index after its last in *stop. */
static inline size_t bitmap_run(_Atomic uint64_t *map, size_t from,
                                size_t end, bool value, size_t *stop) {
  size_t s = bitmap_find(map, from, end - from, value);
  *stop = s == end ? end : bitmap_find(map, s, end - s, !value);
  return s;
}
/* Last set bit at or below `from`, or SIZE_MAX. */
UMPA_HIDDEN size_t bitmap_find_last_set(_Atomic uint64_t *map, size_t from);
/* One bit: a locked or (and), without bitmap_set's loop over words. */
static inline void bitmap_set_bit(_Atomic uint64_t *map, size_t i) {
  atomic_fetch_or_explicit(&map[i >> 6], (uint64_t)1 << (i & 63),
                           memory_order_relaxed);
}
static inline void bitmap_clear_bit(_Atomic uint64_t *map, size_t i) {
  atomic_fetch_and_explicit(&map[i >> 6], ~((uint64_t)1 << (i & 63)),
                            memory_order_relaxed);
}
static inline bool bitmap_test(_Atomic uint64_t *map, size_t i) {
  return (atomic_load_explicit(&map[i >> 6], memory_order_relaxed) >>
          (i & 63)) & 1;
}

/* ---------------------------------------------------------------------------
 * Parallel binary buddy system (src/buddy.c) over the pages of all regions.
 * One lock per order; fully backed runs (warm) sit on their own list so
 * that ordinary requests are served from the cache first.
 * ------------------------------------------------------------------------- */

/* An order's lock is on the page of locks fork takes (umpa_locks). */
struct buddy_level {
  struct pmeta warm;  /* sentinel: fully backed runs */
  struct pmeta other; /* sentinel: partly backed in front, cold at back */
  _Atomic uint64_t xfree_runs; /* runs on both lists */
  _Atomic uint64_t xwarm_runs; /* runs on the warm list */
  _Atomic uint64_t xlazy;      /* runs listed without trying to merge */
  _Atomic uint64_t xsplits;
  _Atomic uint64_t xmerges;
  _Atomic uint64_t xputs; /* runs ever listed here (buddy_claim_span) */
} __attribute__((aligned(UMPA_CACHE_LINE)));

struct buddy {
  struct buddy_level level[MAX_ORDER + 1];
  _Atomic size_t xbacked_free; /* backed pages in free runs: the cache */
  _Atomic unsigned xmax_order; /* highest order that ever held a run */
  /* Bit k: order k holds runs (free) or fully backed runs (warm).  Set and
   * cleared under order k's lock as its counter leaves or reaches zero, so
   * a search reads one word instead of a line per order (12 lines for a
   * new superblock's "is there a warm run" on a cold cache). */
  _Atomic uint32_t xfree_orders, xwarm_orders;
  /* buddy_claim_span's last failed walk: the pages it wanted and the runs
   * listed by then (the sum of the levels' xputs); under the growth
   * lock. */
  size_t claim_failed_pages;
  uint64_t claim_failed_puts;
};

UMPA_HIDDEN extern struct buddy umpa_buddy;

UMPA_HIDDEN void buddy_init(struct buddy *b, int lock_kind);
/* Take a run of exactly 2^order pages, splitting larger ones; prefers warm
 * runs unless `cold`.  The head comes back PM_BUSY with `count` = backed
 * pages.  NULL when no free run is large enough. */
UMPA_HIDDEN struct pmeta *buddy_alloc(struct buddy *b, unsigned order,
                                      bool cold);
/* Give the run of 2^order pages at index idx of r back, merging with free
 * buddies.  `backed` = backed pages in the run. */
UMPA_HIDDEN void buddy_free(struct buddy *b, struct region *r, size_t idx,
                            unsigned order, size_t backed);
/* Give back an arbitrary page range [idx, idx+n) of r, as aligned runs.
 * `full` says every page is backed (skips the bitmap scan). */
UMPA_HIDDEN void buddy_free_range(struct buddy *b, struct region *r, size_t idx,
                                  size_t n, bool full);
/* Take the pages [idx, idx+n) of r out of the free runs if they are all
 * free; returns the number of backed pages taken, or -1 (nothing changed).
 * The caller owns page idx-1 (a free run holding idx starts there). */
UMPA_HIDDEN long buddy_claim(struct buddy *b, struct region *r, size_t idx,
                             size_t n);
/* The same where a free run may begin before idx: its part before idx
 * goes back to the free lists. */
UMPA_HIDDEN long buddy_claim_within(struct buddy *b, struct region *r,
                                    size_t idx, size_t n);
/* If the free run starting at page pos of r is fully backed, take it (the
 * caller owns pos-1, so a free run holding pos starts there) and return
 * its pages; else 0.  Used to grow a block over its free neighbour. */
UMPA_HIDDEN size_t buddy_claim_warm(struct buddy *b, struct region *r,
                                    size_t pos);
/* Take a fully backed run of exactly 2^order pages (splitting a larger
 * fully backed one), or NULL: never a cold one, never a new region. */
UMPA_HIDDEN struct pmeta *buddy_alloc_warm(struct buddy *b, unsigned order);
/* Whether a fully backed free run of order >= `order` exists (a hint). */
UMPA_HIDDEN bool buddy_has_warm(struct buddy *b, unsigned order);
/* The highest order of any free run, warm or cold, or -1 if there is none
 * (a hint: another thread may take it). */
UMPA_HIDDEN int buddy_max_free_order(struct buddy *b);
/* Take a free run with memory for the cache trimmer: a partly backed one
 * if any, else the smallest fully backed one; *order receives its order.
 * NULL if there is none. */
UMPA_HIDDEN struct pmeta *buddy_take_warm(struct buddy *b, unsigned *order);
/* Merge free buddies that lazy coalescing left apart. */
UMPA_HIDDEN void buddy_coalesce(struct buddy *b);
/* Reserve a new region big enough for order; false (errno ENOMEM) when
 * the kernel refuses.  Returns true at once if another thread grew. */
UMPA_HIDDEN bool buddy_grow(struct buddy *b, unsigned order);
/* The last resort when buddy_grow fails: a short region whose first npages
 * are returned as a taken run (head busy, no pages backed), the rest of it
 * listed free.  NULL when even that cannot be reserved. */
UMPA_HIDDEN struct pmeta *buddy_grow_short(struct buddy *b, size_t npages);
/* Claim the first npages pages that free runs side by side cover, in any
 * region, aligned as a buddy run of that size is (at most 2 MiB): what a
 * power-of-two run cannot give when address space is short (runs that
 * are not buddies never merge).  Same result as
 * buddy_grow_short; NULL if there are none.  Walks every region, unless
 * a walk for as few pages failed and no run was listed since. */
UMPA_HIDDEN struct pmeta *buddy_claim_span(struct buddy *b, size_t npages);
/* Under an address-space limit (RLIMIT_AS), give back every region whose
 * pages are all free (region_retire): a region's free pages count against
 * the limit, and a program that freed everything could not map memory or
 * start a thread.  Returns the pages given back; 0 without a limit. */
UMPA_HIDDEN size_t buddy_retire_free(struct buddy *b);
/* Test hook: the walks buddy_claim_span made. */
UMPA_HIDDEN extern _Atomic uint64_t buddy_claim_walks;
/* Add a new region's pages as free runs. */
UMPA_HIDDEN void buddy_add_region(struct buddy *b, struct region *r);
/* Lock/unlock the growth lock and every order of umpa_buddy (fork and
 * consistency checks). */
UMPA_HIDDEN void buddy_lock_all(void);
UMPA_HIDDEN void buddy_unlock_all(void);
static inline size_t pmeta_index(const struct pmeta *pm) {
  return (size_t)(pm - pm->region->meta);
}
/* The first page of the run or block whose head entry is pm. */
static inline void *pmeta_addr(const struct pmeta *pm) {
  return region_addr(pm->region, pmeta_index(pm));
}

/* ---------------------------------------------------------------------------
 * The page layer (src/page.c, src/remap.c, src/cache.c).
 * ------------------------------------------------------------------------- */

struct page_counters {
  _Atomic uint64_t xallocs, xfrees, xhits, xmisses;
  _Atomic uint64_t xpopulated, xfaults, xreleased, xcleared;
  _Atomic uint64_t xremaps, xpages_remapped, xcopies;
  _Atomic uint64_t xgrow_in_place, xgrow_moved;
  _Atomic size_t xin_use; /* pages in allocated blocks */
  _Atomic size_t xidle;   /* of those, pages the store of empty
                             superblocks holds (within a batch per stripe);
                             the large cache counts its own per arena */
  _Atomic size_t xbacked; /* pages with a set backed bit */
} __attribute__((aligned(64))); /* written often: no other data on its lines */
UMPA_HIDDEN extern struct page_counters umpa_pc;

#define PC_ADD(field, n) \
  atomic_fetch_add_explicit(&umpa_pc.field, (n), memory_order_relaxed)

/* Bytes in the large cache's spans: its arenas' own counts.  Added to one
 * shared counter under each arena's lock, they made every span listed or
 * unlisted a locked add to a line all threads wrote: two threads taking
 * aligned buffers of varied sizes (bench/buffers' alvar) spent a quarter
 * of their time there, 1.3-1.5 us a pair against 1.1-1.25 now (0.29 us
 * against 0.26 at one thread). */
UMPA_HIDDEN size_t largecache_bytes(void);
/* The same in pages, the other threads' arenas' counts as the calling
 * thread read them within the coarse clock's tick (see others_seen). */
UMPA_HIDDEN size_t largecache_pages_near(void);
/* Pages in blocks in use, less what the caches above the page layer hold
 * idle (the large-block cache's spans, the store of empty superblocks). */
static inline size_t pages_live(void) {
  size_t in_use = atomic_load_explicit(&umpa_pc.xin_use, memory_order_relaxed);
  size_t idle = atomic_load_explicit(&umpa_pc.xidle, memory_order_relaxed) +
                largecache_pages_near();
  return in_use > idle ? in_use - idle : 0;
}

/* A cache limit that is not fixed (src/cache.c): `halves` halves of the
 * most memory the program had in use lately, at least 4 MiB, at most
 * max_pages. */
UMPA_HIDDEN size_t cache_adaptive(size_t max_pages, unsigned halves);

UMPA_HIDDEN void page_init(void);
/* Internal flag: with UMPA_LAZY, still prefer warm runs and fill the block
 * from the cache by moving pages (a big malloc block: reuse what is cached,
 * fault in the rest only if the program touches it). */
#define PAGE_WARM 0x100u
/* Internal flag: only what the regions there are hold; no new region (the
 * large cache's growth, which takes a stretch it has no use for yet). */
#define PAGE_NO_GROW 0x200u
/* Internal flag, with UMPA_LAZY|PAGE_WARM, for a large malloc block: if
 * its pages turn out to lack memory, populate them, as long as
 * largecache_ahead allows (see largecache_may_populate).  The page layer
 * ignores it (the block stays lazy). */
#define PAGE_AHEAD 0x400u

/* Take a run of npages pages out of the buddy (head PM_BUSY, count = its
 * backed pages), growing the address space if needed; NULL when the kernel
 * refuses.  Cold runs are preferred for UMPA_LAZY/UMPA_RESERVE (unless
 * PAGE_WARM). */
UMPA_HIDDEN struct pmeta *page_take(size_t npages, unsigned flags);
/* Mark a taken run as an allocated block of `kind`; `backed` is the
 * number of its backed pages, or SIZE_MAX to count them. */
UMPA_HIDDEN void page_publish(struct pmeta *pm, size_t npages, unsigned kind,
                              unsigned flags, size_t backed);
/* Allocate npages pages for owner `kind` (page.c). */
UMPA_HIDDEN void *page_alloc(size_t npages, unsigned flags, unsigned kind);
/* The same; *fresh says every page came zeroed from the kernel. */
UMPA_HIDDEN void *page_alloc_ex(size_t npages, unsigned flags, unsigned kind,
                                bool *fresh);
/* Allocate the npages pages from p (in a region) for owner `kind`, as
 * page_alloc would, if they are all free now; else NULL (errno as it was):
 * for a caller that made a free run there (store_spill_for). */
UMPA_HIDDEN void *page_alloc_at(void *p, size_t npages, unsigned flags,
                                unsigned kind);
/* Resize an allocated block (userpage_realloc without the checks): shrink
 * in place, grow in place or move by remapping; UMPA_NOMOVE fails with
 * ENOMEM instead of moving.  NULL (errno ENOMEM) leaves it unchanged. */
UMPA_HIDDEN void *page_resize(void *p, struct pmeta *pm, size_t old,
                              size_t new, unsigned flags);
/* Free a block; aborts with `who` in the message on misuse.  With
 * `enforce` false the page cache may stay over its limit until the next
 * free that enforces it (see page_give_back). */
UMPA_HIDDEN void page_free_ex(void *p, size_t npages, unsigned kind,
                              const char *who, bool enforce);
static inline void page_free(void *p, size_t npages, unsigned kind,
                             const char *who) {
  page_free_ex(p, npages, kind, who, true);
}
/* Validate that p is the head of an allocated block of `kind` with npages
 * pages; abort with a message naming `who` otherwise. */
UMPA_HIDDEN struct pmeta *page_check_block(void *p, size_t npages,
                                           unsigned kind, const char *who);
/* The allocated block containing [p, p+npages pages), or NULL. */
UMPA_HIDDEN struct pmeta *page_block_containing(void *p, size_t npages);
/* Make the pages [idx, idx+n) of r ready per flags: fill unbacked 2 MiB
 * pieces with cached pages moved from free runs, populate what is still
 * unbacked (unless UMPA_LAZY) and zero backed pages (if UMPA_ZERO).
 * Returns 0 or ENOMEM; *moved (if not NULL) gets the pages moved in. */
UMPA_HIDDEN int page_prepare(struct region *r, size_t idx, size_t n,
                             unsigned flags, size_t *moved);
/* Cut an allocated block after `keep` pages: the rest becomes a block of
 * its own (same kind and flags), whose head is returned.  Join glues the
 * block that starts right after `a` onto it.  Neither touches the memory
 * or the in-use count: the pages stay allocated. */
UMPA_HIDDEN struct pmeta *page_split(struct pmeta *pm, size_t keep);
UMPA_HIDDEN void page_join(struct pmeta *a, struct pmeta *b);
/* Return an allocated block whose head is PM_BUSY to the free runs; with
 * `enforce`, then bring the page cache back under its limit (the large
 * cache passes false under its lock and enforces once after it). */
UMPA_HIDDEN void page_give_back(struct pmeta *pm, size_t npages, bool enforce);
/* Give the memory of every backed page of an allocated block back to the
 * kernel; the block stays allocated and its pages read as zero.  With
 * `leaving` (the caller frees the block next) they may be closed instead
 * (see page_release_free). */
UMPA_HIDDEN void page_release_block(struct pmeta *pm, bool leaving);
/* Drop the memory of pages [idx, idx+n) of r, which no block holds (free
 * runs of the cache): MADV_DONTNEED, or in a region whose pages were
 * moved, a fresh mapping that also heals the VMAs the moves split; once
 * the process is seen locking its memory, an inaccessible one. */
UMPA_HIDDEN void page_release_free(struct region *r, size_t idx, size_t n);
/* The same for [p, p+npages pages), which lies inside an allocated block
 * (a superblock's free pages at a full trim). */
UMPA_HIDDEN void page_release_pages(void *p, size_t npages);
/* Record that the backed pages of a free-bound range may have been touched
 * without our knowledge (lazy/reserved blocks): refresh the bitmap. */
UMPA_HIDDEN void page_refresh_backed(struct region *r, size_t idx, size_t n);
/* The same without asking the kernel: count every page as backed (safe:
 * a set bit means "may hold data"; the pages not touched fault in when
 * they are, and calloc clears them). */
UMPA_HIDDEN void page_assume_backed(struct region *r, size_t idx, size_t n);
/* Make the bits of [idx, idx+n), which only its caller may touch, exact
 * again after page_assume_backed: cleared, then set where the kernel says
 * a page is resident (page_refresh_backed). */
UMPA_HIDDEN void page_exact_backed(struct region *r, size_t idx, size_t n);

/* remap.c: moving pages between places by mremap. */
/* Move the contents of n pages at (rs, is) to (rd, id), keeping any pages
 * that were at the destination by parking them at the source: an exchange.
 * `dst_unknown`: the destination may hold pages its bits do not show.
 * Bitmaps follow the pages.  Returns 0, or an errno value if the kernel
 * refused (contents then unchanged). */
UMPA_HIDDEN int remap_exchange(struct region *rs, size_t is, struct region *rd,
                               size_t id, size_t n, bool dst_unknown);
/* Move n pages from rs:is onto rd:id and give up the memory that was
 * there (the kernel frees it as the pages land): one remap where an
 * exchange takes three.  0 or an errno value (nothing moved). */
UMPA_HIDDEN int remap_move_over(struct region *rs, size_t is, struct region *rd,
                                size_t id, size_t n);
UMPA_HIDDEN void *remap_grow(void *p, struct pmeta *pm, size_t old_pages,
                             size_t new_pages, unsigned flags);
/* Fill the unbacked 2 MiB-aligned pieces of [idx, idx+n) of r with warm
 * cached runs moved there by mremap; returns the pages moved in. */
UMPA_HIDDEN size_t remap_fill(struct region *r, size_t idx, size_t n);

/* cache.c: the lookaside cache of backed free pages. */
UMPA_HIDDEN void cache_init(void);
/* The trimmer's lock, for fork(). */
UMPA_HIDDEN void cache_lock(void);
UMPA_HIDDEN void cache_unlock(void);
UMPA_HIDDEN size_t cache_limit_pages(void);
/* Whether the limit was set (UMPA_PAGE_CACHE, umpa_page_cache_limit,
 * mallopt) rather than adapting: then it costs nothing to read. */
UMPA_HIDDEN bool cache_limit_fixed(void);
/* The most the cache may hold (UMPA_PAGE_CACHE or the limit set), in
 * pages: 0 turns caching off. */
UMPA_HIDDEN size_t cache_limit_max(void);
/* Backed free pages the cache holds now. */
UMPA_HIDDEN size_t cache_held_pages(void);
/* Called after pages were freed: release what exceeds the limit. */
/* Note the cache's level after pages were taken from it (for decay). */
UMPA_HIDDEN void cache_note_level(void);
UMPA_HIDDEN void cache_enforce(void);
/* Release cached pages until at most `target` pages remain cached; with
 * target 0 (a full trim), then also the metadata of the free runs without
 * memory (cache_trim_metadata). */
UMPA_HIDDEN size_t cache_shrink_to(size_t target_pages);
/* The second half of a full trim alone: free runs merged, and the
 * metadata that describes only pages of free runs without memory given
 * back.  Frees from other threads may come between the two halves, so a
 * test runs this after one. */
UMPA_HIDDEN void cache_trim_metadata(void);

/* Test support: verify every invariant of the buddy structure and the
 * accounting; returns 0 or aborts with a message.  Stops the world by
 * taking every lock, so it is slow. */
UMPA_HIDDEN int umpa_page_check(void);

/* ---------------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------------- */

static inline unsigned log2_ceil(size_t n) {
  return n <= 1 ? 0 : 64u - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
}
static inline unsigned log2_floor(size_t n) {
  return 63u - (unsigned)__builtin_clzll((unsigned long long)n);
}
static inline size_t pages_of(size_t bytes) {
  return (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
}

#endif /* UMPA_INTERNAL_H */

/* ---------------------------------------------------------------------------
 * Size classes (src/sizeclass.c).  16-byte steps up to 128 bytes, then
 * four or eight classes per power of two up to SMALL_MAX (eight in
 * (256 B, 2 KiB] and (4 KiB, 8 KiB]): a block wastes at most 15 bytes below
 * 128 bytes, and above under 11 % of its size where there are eight, under
 * 20 % where four.  Larger requests are page-layer blocks of their own.
 * ------------------------------------------------------------------------- */

#define SMALL_MAX ((size_t)32 << 10)
#define NUM_CLASSES 56

struct size_class {
  uint32_t size;     /* block size, a multiple of 16 */
  uint32_t sb_pages; /* superblock size in pages */
  /* Blocks behind the header at the largest colour offset: the fewest a
   * superblock of the class holds (its own count, in its header, follows
   * its offset and adds those in front of the header). */
  uint32_t capacity;
  uint32_t carve;    /* blocks carved onto the free list at a time */
  uint64_t recip;    /* ceil(2^40 / size): offset / size without a divide */
  /* size = m * 2^div_shift with m odd, div_inv m's inverse mod 2^32: see
   * sb_is_boundary. */
  uint32_t div_inv;
  uint8_t div_shift;
  /* A multiple of PAGE_SIZE: its blocks start at a page boundary (see
   * struct superblock's first_off). */
  uint8_t paged;
};

UMPA_HIDDEN extern struct size_class umpa_class[NUM_CLASSES];
UMPA_HIDDEN void sizeclass_init(void);
/* How many blocks of `size` bytes fit in `room` bytes of a superblock,
 * after the header, with UMPA_CHECK=1 the marks at its end too (one bit a
 * block: see sb_check_map). */
UMPA_HIDDEN uint32_t sizeclass_fit(size_t room, size_t size);

/* The class of each request size rounded up to 16 bytes, up to SMALL_MAX
 * (2 KiB of table).  One load, and no branch on the size's range: with
 * sizes on both sides of a split such a branch mispredicts (random sizes
 * of 16..2048 bytes: 16.4 ns a pair instead of 5-ish). */
UMPA_HIDDEN extern uint8_t umpa_class_of16[SMALL_MAX / 16 + 1];

/* The class of a request of n bytes, 0 <= n <= SMALL_MAX (n == 0 maps to
 * the 16-byte class). */
static inline unsigned sizeclass_of(size_t n) {
  return umpa_class_of16[(n + 15) >> 4];
}

/* ---------------------------------------------------------------------------
 * Superblocks (src/superblock.c): a page-layer block holding blocks of one
 * size class, owned by one heap at a time.  The header sits at the start;
 * its first cache line is the owner's, the second is written by threads
 * that free blocks they do not own.
 * ------------------------------------------------------------------------- */

#define SUPERBLOCK_HEADER 128
#define GRANULE_SHIFT 16 /* the region's superblock map: one slot per 64 KiB */
#define SB_SMALL_SHIFT 16 /* log2 of the superblock size of blocks up to 1 KiB */

struct block {
  struct block *next;
};

struct heap;

/* Where a superblock is listed in its heap's bin. */
enum sb_group {
  SB_PARTIAL0 = 0, /* partial superblocks, by quarter of fullness */
  SB_GROUPS = 4,
  SB_FULL = 4,     /* no free block when listed (see FULL_SLACK) */
  SB_CURRENT = 5,  /* the bin's current superblock, on no list */
  SB_GLOBAL = 6,   /* in the global heap */
  SB_SPARE = 7,    /* empty, kept by the bin for reuse */
  SB_STORED = 8    /* empty, in the global heap's store */
};

struct superblock {
  /* Line 0: the owner's. */
  struct block *free;         /* free blocks, for the owner to hand out */
  _Atomic uint32_t xused;     /* blocks out (remote frees not collected) */
  uint32_t capacity;          /* blocks: capacity_at + front_at */
  uint32_t carved;            /* blocks taken from the never-used tail */
  uint32_t size;
  uint8_t cls;
  uint8_t group;              /* enum sb_group */
  uint8_t zeroed;             /* the never-carved tail reads as zero */
  _Atomic uint8_t xaligned;   /* holds blocks handed out at an offset */
  uint32_t lo_mark;           /* listed: fewer blocks out than this means
                                 it changes group (or is empty) */
  struct heap *_Atomic xowner;
  uint64_t recip;             /* umpa_class[cls].recip, on the same line */
  /* The free path's boundary test (see sb_is_boundary): the class's div_*
   * copied, and the number of blocks, or 0 with UMPA_CHECK=1 so that every
   * free takes the checked path without a test of its own. */
  uint32_t div_inv, div_bound;
  uint8_t div_shift;
  /* After a full trim released pages that held only free blocks: 1 + the
   * index of the block that records which (see superblock_trim), else 0. */
  uint16_t holes;
  /* -first_off * div_inv (mod 2^32): sb_holds_block's test from the
   * header's address, with no subtraction of first_off first. */
  uint32_t div_base;
  /* Line 1: written by other threads.  Blocks freed by non-owners, as a
   * list head whose bit 0 (REMOTE_NOTIFY) says the owner parked this
   * superblock full and wants to hear of the next free into it. */
  _Atomic uintptr_t xremote __attribute__((aligned(64)));
  /* The owner's again, off the free path: blocks out when it was listed,
   * as its bin counts them, and the links in a bin or global list. */
  uint32_t counted;
  /* Bytes from the header to the first block: SUPERBLOCK_HEADER, or for a
   * paged class the rest of the header's page, so that every block of a
   * size that is a multiple of PAGE_SIZE is page-aligned (at no cost in
   * capacity: the largest colour offset with the header is a page). */
  uint16_t first_off;
  /* Blocks in front of the header, in the bytes its colour offset skips:
   * the last `front` of the `capacity` blocks (see front_at). */
  uint16_t front;
  struct superblock *next, *prev;
  uint64_t stamp; /* in the global store: when it was put there (ns) */
  /* In the global store: the heap that put it there, and the links of
   * that heap's list of them (bin.stored). */
  struct heap *last_owner;
  struct superblock *owner_next, *owner_prev;
};

/* Whether `off` bytes past the first block is a block boundary inside the
 * superblock: a free's cheap check against interior and foreign pointers.
 * `off` must come from a pointer in the superblock's own aligned bytes (the
 * map sees to that), so that it lies in [-4 KiB, 512 KiB) and its low 32 bits
 * decide (-4 KiB: a paged class's header page).  ror32(x * div_inv, div_shift) is x / size for a multiple x of
 * size and above (2^32 - 1) / size for anything else (the test compilers
 * make for x % c == 0), so one compare with the block count also checks
 * the bounds: a negative offset wraps to near 2^32. */
static inline bool sb_is_boundary(const struct superblock *sb, uintptr_t off) {
  uint32_t q = (uint32_t)off * sb->div_inv;
  q = (q >> sb->div_shift) | (q << ((32 - sb->div_shift) & 31));
  return q < sb->div_bound;
}
#define REMOTE_NOTIFY ((uintptr_t)1)

/* Whether p, a pointer in the superblock's own aligned bytes, is the start
 * of one of its blocks: sb_is_boundary of p's offset from the first block,
 * computed from the header's address (the free path's form). */
static inline bool sb_holds_block(const struct superblock *sb, const void *p) {
  uint32_t q = (uint32_t)((uintptr_t)p - (uintptr_t)sb) * sb->div_inv +
               sb->div_base;
  q = (q >> sb->div_shift) | (q << ((32 - sb->div_shift) & 31));
  return q < sb->div_bound;
}

/* Whether p, a pointer in the superblock's own aligned bytes, is the start
 * of a block in front of the header (see front_at in superblock.c): below
 * the header with room for a block before it, and a multiple of the size
 * from the superblock's first byte, which is page-aligned, so p's offset
 * in its page.  A multiple of the size below a page gives a quotient
 * below 256, anything else one above (2^32 - 1) / SMALL_MAX (see
 * sb_is_boundary).  Never true with UMPA_CHECK=1 (div_bound 0), where
 * nothing is in front. */
static inline bool sb_holds_front(const struct superblock *sb, const void *p) {
  uint32_t q = (uint32_t)((uintptr_t)p & (PAGE_SIZE - 1)) * sb->div_inv;
  q = (q >> sb->div_shift) | (q << ((32 - sb->div_shift) & 31));
  return (const char *)p + sb->size <= (const char *)sb &&
         q < PAGE_SIZE / 16 && sb->div_bound != 0;
}

/* The first block: right after the header, or for a paged class at the
 * next page (see first_off).  Blocks 0 .. capacity - front - 1 follow it
 * one after another to the superblock's end; the `front` others lie in
 * front of the header, from the superblock's first byte. */
static inline char *sb_blocks(struct superblock *sb) {
  return (char *)sb + sb->first_off;
}
/* The blocks after the header: those the free path's boundary test
 * knows (a block in front of the header takes sb_holds_front's). */
static inline uint32_t sb_main(const struct superblock *sb) {
  return sb->capacity - sb->front;
}

/* Superblock headers sit at a "colour" offset from the start of their
 * pages: superblocks are aligned to their size, so headers at offset 0
 * would all fall into the same few cache sets and evict each other (a free
 * reads its superblock's header: larson took 0.66 L1 read misses per free
 * in it, mimalloc, whose page headers are packed together, 0.01).  The
 * offset cycles with the superblock's index in the address space (32
 * colours of 128 bytes: the 64 sets of a 32 KiB 8-way L1), so a free
 * computes its header from the pointer and the superblock's size alone;
 * blocks follow the header, so they keep the alignment the memalign path
 * counts on (SUPERBLOCK_HEADER, 128). */
#define SB_COLORS 32
#define SB_COLOR_STEP 128 /* keeps blocks 128-aligned for memalign */
#define SB_COLOR_MAX ((SB_COLORS - 1) * SB_COLOR_STEP)
/* log2 of the size in bytes of a superblock of `pages` pages. */
static inline unsigned sb_shift_of(size_t pages) {
  return PAGE_SHIFT + (unsigned)__builtin_ctzll(pages);
}
/* The header of the superblock of 2^shift bytes that holds address a. */
static inline struct superblock *sb_header_at(uintptr_t a, unsigned shift) {
  uintptr_t index = a >> shift;
  return (struct superblock *)((index << shift) +
                               (index & (SB_COLORS - 1)) * SB_COLOR_STEP);
}
/* The first byte of the superblock's pages. */
static inline char *sb_start(struct superblock *sb) {
  return (char *)((uintptr_t)sb & ~(uintptr_t)(PAGE_SIZE - 1));
}
static inline _Atomic uint64_t *sb_check_map(struct superblock *sb,
                                             size_t sb_pages) {
  size_t words = (sb->capacity + 63) / 64;
  return (_Atomic uint64_t *)(sb_start(sb) + (sb_pages << PAGE_SHIFT)) - words;
}
/* UMPA_CHECK=1: one bit per block, "handed out", at the superblock's end
 * (capacities leave room for it).  Set by malloc, cleared by free. */
/* Checked malloc/free (src/malloc.c): abort on a block handed out twice
 * or freed twice.  `sb` owns p. */
UMPA_HIDDEN void check_on_malloc(void *p);
UMPA_HIDDEN void check_on_free(struct superblock *sb, struct block *b);
/* Apply the options that concern malloc (called once by umpa_init). */
UMPA_HIDDEN void malloc_configure(void);
_Static_assert(SB_COLOR_MAX + SUPERBLOCK_HEADER <= PAGE_SIZE,
               "a coloured header stays in the first page");
_Static_assert(offsetof(struct superblock, xremote) == 64,
               "the owner's fields of a superblock header fill one line");
_Static_assert(offsetof(struct superblock, div_base) + sizeof(uint32_t) <= 64,
               "the free path's fields are on the owner's line");
_Static_assert(sizeof(struct superblock) <= SUPERBLOCK_HEADER,
               "superblock header too large");

/* ---------------------------------------------------------------------------
 * Heaps (src/heap.c): one per thread, plus the global heap.
 * ------------------------------------------------------------------------- */

struct bin {
  struct superblock *current;
  struct superblock *lists[SB_GROUPS + 1]; /* partial quarters, then full */
  struct superblock *tails[SB_GROUPS + 1]; /* their last superblocks */
  struct superblock *spare;                /* one empty superblock */
  size_t used_other;         /* blocks out in the listed superblocks, as of
                                their listing (see list_in) */
  size_t mark;               /* Hoard's threshold for the superblocks held:
                                fewer blocks out than this is too empty */
  _Atomic size_t xheld;      /* superblocks held (all groups and current) */
  _Atomic size_t xused_snap; /* blocks out, as of the last slow path */
  _Atomic uint32_t xpending; /* full superblocks got remote frees */
  uint32_t as_pages;         /* blocks handed out as pages while the bin
                                held no superblock (heap_as_pages) */
  struct superblock *stored; /* the newest of those this heap put in the
                                global store (its stripe's lock) */
};

#define HEAP_HELD 4         /* freed large blocks a thread holds (held.c) */
#define HEAP_DEFERRED 64    /* frees into global superblocks made at once */
struct deferred {
  struct superblock *sb;
  struct block *b;
};
#define HEAP_HELD_PAGES 256 /* the most it holds, all together: 1 MiB */
/* Besides those, one lazily populated block of up to 16 MiB while the
 * program's lazy blocks are found sparse (held.c). */
#define HEAP_HELD_BIG_PAGES 4096

struct heap {
  /* The current superblock of each class (bins[cls].current), packed
   * together for malloc's fast path: a class's lookup and this array's
   * line are all it reads before the superblock. */
  struct superblock *direct[NUM_CLASSES];
  struct bin bins[NUM_CLASSES];
  /* Freed large blocks (their page-layer heads) kept whole for the
   * thread's next malloc of as many pages: the owner fills an empty slot,
   * anyone may empty one (held.c). */
  struct pmeta *_Atomic xheld[HEAP_HELD];
  _Atomic uint32_t xheld_pages[HEAP_HELD]; /* each one's pages */
  /* The owner takes a block out of a slot with a plain load and store,
   * inside `busy`; another thread (malloc_trim) sets `steal`, fences every
   * thread (os_membarrier) and waits for `busy` to clear before it takes
   * any; without membarrier it sets `flush` for the owner's next tick. */
  _Atomic uint8_t xheld_busy, xheld_steal, xheld_flush;
  uint8_t held_old;       /* slots not filled since the last tick */
  uint8_t held_next;      /* the slot a free evicts when all are full */
  uint16_t held_wanted[HEAP_HELD]; /* pages of its latest large mallocs */
  uint8_t held_next_want;
  /* Frees of blocks in superblocks of the global heap, made
   * HEAP_DEFERRED at a time under one round of the class lock
   * (heap_global_flush): when the thread needs a superblock, on the
   * heap's ticks, at its trim and at its exit.  The owner's alone: a trim
   * by another thread leaves them, as it leaves the heap's spares.  Before
   * `ticks`: a pooled heap has none, and its pages may be given back. */
  uint8_t ndeferred;
  struct deferred deferred[HEAP_DEFERRED];
  /* The large block the thread last resized, and its page-layer head:
   * a buffer grown a few bytes at a time is found again without the
   * region map and the heads bitmap (umpa_realloc checks the head). */
  void *realloc_last;
  struct pmeta *realloc_pm;
  uint32_t realloc_gen;   /* umpa_retire_gen then: a region retired since
                             may have its metadata serve another region */
  uint32_t ticks;         /* slow-path events before the next tick */
  uint64_t slow_events;   /* all of them (heap_slow_events) */
  uint64_t idle_swept;    /* when a tick last looked for empty
                             superblocks (sweep_idle in heap.c) */
  uint64_t idle;          /* classes it found one in, a bit a class */
  uint8_t idle_sweeps[NUM_CLASSES]; /* sweeps in a row that found each so */
  uint8_t stripe;         /* of the store, where it puts empty superblocks */
  uint8_t sweep;          /* the stripe its last tick aged besides its own */
  uint32_t trim_seen;     /* the last malloc_trim it trimmed itself for */
  size_t store_cap;       /* store_cap() at its last tick, 0 before one */
  size_t store_others;    /* then, pages stored in other stripes */
  struct pmeta *chunk;    /* pages its next 64 KiB superblocks are cut from
                             (superblock_new), or NULL */
  struct heap *next_all;  /* registry of every heap ever made */
  struct heap *next_free; /* pool of unused heaps */
  _Atomic int xin_use;
  /* Its thread's kernel id while in use, 0 otherwise: a heap whose thread
   * is gone but never gave it up (heap_acquire's sweep) is given up by
   * whoever swaps this to 0. */
  _Atomic int xtid;
  uint32_t fork_gen;      /* umpa_locks.fork_gen when it was acquired */
  bool bare;              /* pooled, its front pages given back by a trim
                             (heap_trim): set up again when acquired */
  /* Large blocks (and their bytes) its threads allocated less those they
   * freed, which may be other threads' (so either may wrap below zero:
   * only the sum over every heap means anything, heap_large_counts).  The
   * owner adds by a load and a store; after `ticks`, so a trim of a
   * pooled heap keeps them. */
  _Atomic size_t xlarge_blocks, xlarge_bytes;
};

/* The sentinel a thread's heap pointer holds before its first malloc and
 * after its heap was given up (then umpa_tl_gone is set): every class's
 * current superblock is umpa_sb_empty, so malloc's fast path finds no
 * block and falls into the slow path.  Read-only; the loader relocates
 * only its direct array, and then write-protects it (RELRO). */
UMPA_HIDDEN extern const struct heap umpa_heap_empty;
#define HEAP_NONE ((struct heap *)&umpa_heap_empty)
UMPA_HIDDEN extern struct heap umpa_heap_global;
UMPA_HIDDEN extern struct heap umpa_heap_stored; /* owner of stored ones */
/* Which classes the global heap lists superblocks of, and which its store
 * holds, a bit a class: a class's first superblock in a heap asks both
 * before it cuts a new one, and this is one cache line where the global
 * bin's count and the store's per-class flags were four (Figure 7's first
 * mallocs of a class spent 1.0-1.6k cycles of their 5-6k asking, and
 * 0.4-0.7k with the masks).  A bit of xglobal changes under its class's
 * global lock; xstored's as store.c says. */
struct class_masks {
  _Atomic uint64_t xglobal;
  _Atomic uint64_t xstored;
} __attribute__((aligned(64)));
UMPA_HIDDEN extern struct class_masks umpa_class_masks;
/* Whether both masks say what the global heap and the store hold (for
 * tests, with no other thread allocating or freeing). */
UMPA_HIDDEN bool heap_masks_agree(void);
UMPA_HIDDEN extern struct superblock umpa_sb_empty;

/* superblock.c */
/* A new superblock of class cls owned by `owner`, or NULL (ENOMEM). */
UMPA_HIDDEN struct superblock *superblock_new(unsigned cls, struct heap *owner);
UMPA_HIDDEN void superblock_destroy(struct superblock *sb);
/* Give the uncut rest of h's chunk back to the page layer (its owner, or
 * with h abandoned). */
UMPA_HIDDEN void superblock_chunk_drop(struct heap *h);
/* Make the empty superblock sb (owned by the caller, out of every list) one
 * of class cls, whose superblocks are sb's size, with nothing carved, in
 * the same pages; false (sb unchanged) when a trim left sb with holes. */
UMPA_HIDDEN bool superblock_recut(struct superblock *sb, unsigned cls);
/* sb is empty and its owner's: if its free list is out of address order
 * (blocks freed in random order), cut it anew, so that its blocks are
 * handed out in address order.  A free list in the order of random frees
 * made every malloc of a table built again a cache miss: 200,000 blocks of
 * 5-44 B freed in random order and allocated again took 3x mimalloc's
 * time.  No change when a trim left it with holes. */
UMPA_HIDDEN void superblock_reorder(struct superblock *sb);
/* The superblock holding p, or NULL if p is not in one (a large block, or
 * memory umpa does not own): p itself is never read.  The usual case is
 * one load: umpa_sb_fast.map, one byte per 64 KiB of the 47-bit address
 * space (2 GiB reserved inaccessible; readable in a window that spans every
 * region it serves, so that a foreign pointer inside the window reads 0
 * and one outside it is refused by the bounds check), holds log2 of the
 * size of the superblock there, and sb_header_at computes the header from
 * it.  A 0 means "not known here": the slow path asks the region map,
 * and then the region's own superblock map if the fast map could not
 * cover it (no reservation under a tight RLIMIT_AS, an mprotect refused,
 * a region too far from the others). */
struct sb_fast {
  _Atomic uint8_t *map;
  /* The readable window, in granules: [lo, lo + len), len 0 for none, as
   * one word (lo in the low 32 bits, len in the high ones: 47-bit
   * addresses have 2^31 granules, and the window spans at most
   * SB_WINDOW_MAX), so that a reader always sees a pair the writer
   * stored.  It only grows: the writer opens the new pages, then stores
   * the word (release).  As two words, a reader could pair the new, lower
   * lo (a region reserved below the others) with the old len, a window
   * that no longer reached the top: a free of a block there read "no
   * superblock" and aborted as a foreign pointer. */
  _Atomic uint64_t window;
} __attribute__((aligned(64)));
/* On a cache line of its own: every free reads it, and as two variables
 * the linker put them on the line of the page layer's busiest counters
 * (umpa_pc.xin_use), so that each page taken or given back by one thread
 * made the next free of every other thread a cache miss (small pairs
 * beside a thread taking aligned buffers: 4.6-5.5 ns, now 4.2-4.4). */
UMPA_HIDDEN extern struct sb_fast umpa_sb_fast;
static inline uint64_t sb_window_lo(uint64_t w) { return (uint32_t)w; }
static inline uint64_t sb_window_len(uint64_t w) { return w >> 32; }
/* The slow path, through the region map.  When it returns NULL and rp is
 * not NULL, *rp is the region p lies in (NULL: p is not umpa's), so that a
 * large block's own lookup need not ask the region map again. */
UMPA_HIDDEN struct superblock *superblock_of_slow(const void *p,
                                                 struct region **rp);
static inline unsigned sb_map_shift(uintptr_t a) {
  uint64_t w = atomic_load_explicit(&umpa_sb_fast.window, memory_order_acquire);
  size_t g = a >> GRANULE_SHIFT;
  if (UMPA_UNLIKELY(g - sb_window_lo(w) >= sb_window_len(w))) return 0;
  return atomic_load_explicit(&umpa_sb_fast.map[g], memory_order_acquire);
}
/* superblock_of, and *rp as superblock_of_slow sets it when it is asked. */
static inline struct superblock *superblock_lookup(const void *p,
                                                   struct region **rp) {
  unsigned shift = sb_map_shift((uintptr_t)p);
  if (UMPA_LIKELY(shift)) return sb_header_at((uintptr_t)p, shift);
  return superblock_of_slow(p, rp);
}
static inline struct superblock *superblock_of(const void *p) {
  return superblock_lookup(p, NULL);
}
/* Put blocks on the empty free list: first those a trim took off it (one
 * released page's worth), else up to umpa_class[cls].carve never-used
 * ones.  False when there are none. */
UMPA_HIDDEN bool superblock_carve(struct superblock *sb);
/* malloc_trim of a superblock that still has blocks out (its owner, or the
 * global heap's lock): give the kernel the memory of every page past the
 * first that holds only free or never-used blocks.  Their free blocks
 * leave the free list and come back, a page at a time, when it runs dry.
 * Returns the pages released; none with UMPA_CHECK=1 or if an earlier
 * trim's pages have not all come back. */
UMPA_HIDDEN size_t superblock_trim(struct superblock *sb);
/* Move remote frees onto the owner's free list; returns how many.  The
 * test for an empty list is inline: most calls find none, and paid a call
 * for it (the deferred frees of bench/teardown tested it at the call site
 * to save that). */
UMPA_HIDDEN uint32_t superblock_collect_list(struct superblock *sb);
static inline uint32_t superblock_collect(struct superblock *sb) {
  if (!atomic_load_explicit(&sb->xremote, memory_order_relaxed)) return 0;
  return superblock_collect_list(sb);
}
/* A free by a thread that does not own sb. */
UMPA_HIDDEN void superblock_free_remote(struct superblock *sb, struct block *b);
/* Park a full superblock: true if it was parked with REMOTE_NOTIFY set,
 * false if remote frees are waiting (collect them instead). */
UMPA_HIDDEN bool superblock_park(struct superblock *sb);
/* The block that p (possibly an aligned interior pointer) lies in; aborts
 * with a message naming `who` if p is not a block umpa handed out. */
UMPA_HIDDEN struct block *superblock_block_of(struct superblock *sb,
                                              const void *p, const char *who);
/* Hoard's emptiness test: a heap holding `held` superblocks of `cap`
 * blocks with `used` blocks out must give a superblock to the global heap
 * when used < (1 - f) held*cap and used < held*cap - K*cap, i.e. when
 * used < hoard_mark(held, cap). */
UMPA_HIDDEN size_t hoard_mark(size_t held, size_t cap);
UMPA_HIDDEN bool hoard_over_threshold(size_t used, size_t held, size_t cap);

/* heap.c */
/* Bytes the heap holds from the page layer (superblocks and large
 * blocks), and its peak. */
UMPA_HIDDEN void heap_account_arena(ssize_t bytes);
UMPA_HIDDEN size_t heap_arena_bytes(size_t *peak);
/* Allocate n bytes (n <= SMALL_MAX) for the thread whose heap is h, which
 * may be a sentinel (first call of the thread, or after it gave up its
 * heap).  With zero != NULL, *zero becomes true if the block is known to
 * read as zero.  NULL when out of memory. */
UMPA_HIDDEN void *heap_alloc_slow(struct heap *h, size_t n, bool *zero);
/* Whether the caller's request of n bytes (n <= SMALL_MAX) is to be
 * served as a large block of whole pages, not from a superblock: true for
 * one of the first HEAP_AS_PAGES_FIRST requests of a class of PAGE_SIZE to
 * HEAP_AS_PAGES_MAX bytes while h's bin holds no superblock of it, never
 * with UMPA_CHECK=1 (see heap.c).  Counts it when so.  h is the caller's
 * own heap, or a sentinel (then false). */
UMPA_HIDDEN bool heap_as_pages(struct heap *h, size_t n);
#define HEAP_AS_PAGES_FIRST 4              /* blocks per class and heap */
#define HEAP_AS_PAGES_MAX ((size_t)8 << 10) /* the largest class so served */
/* After a free by the owner took a superblock that is not the bin's
 * current one out of its quarter of fullness: relist it, release it if
 * empty, and enforce Hoard's threshold. */
UMPA_HIDDEN void heap_free_slow(struct heap *h, struct superblock *sb);
/* Give up h, the caller's heap at its thread's exit: its superblocks go
 * to the global heap and the page layer, and h to the pool. */
UMPA_HIDDEN void heap_abandon(struct heap *h);
/* A heap for the calling thread (from the pool, or new), or NULL. */
UMPA_HIDDEN struct heap *heap_acquire(void);
/* A free into a superblock of the global heap, by any thread; h is the
 * caller's heap (umpa_tl_heap, HEAP_NONE included).  A thread with a heap
 * defers it: the block stays out until heap_global_flush. */
UMPA_HIDDEN void heap_global_free(struct heap *h, struct superblock *sb,
                                  struct block *b);
/* Make the frees that h, the caller's own heap, deferred. */
UMPA_HIDDEN void heap_global_flush(struct heap *h);
/* How often the global heap's lock of class cls was taken (tests). */
UMPA_HIDDEN uint64_t heap_global_acquires(unsigned cls);
/* Test hook: the slow-path events of the calling thread's heap (a
 * superblock run out, or one changing its quarter of fullness). */
UMPA_HIDDEN uint64_t heap_slow_events(void);
/* Test hook: the heaps in use (threads' heaps, and a fork child's orphans
 * until they are retired). */
UMPA_HIDDEN unsigned heap_count_in_use(void);
/* Test hook: the heaps made so far (in use or pooled). */
UMPA_HIDDEN unsigned heap_count_made(void);
UMPA_HIDDEN size_t heap_trim(struct heap *h);
/* Bytes of the large blocks the thread heaps hold (held.c), and in
 * *blocks how many. */
UMPA_HIDDEN size_t heap_held_bytes(size_t *blocks);
UMPA_HIDDEN void heap_lock_all(void);
UMPA_HIDDEN void heap_unlock_all(void);
UMPA_HIDDEN void heap_after_fork_child(struct heap *survivor);

/* Per size class, bytes in allocated blocks and bytes of the superblocks
 * that hold them or are kept empty (the store's included): thread heaps as
 * of their last slow path (the caller's exactly), the global heap exactly. */
struct class_figures {
  size_t used, held;
};
UMPA_HIDDEN void heap_class_stats(struct class_figures fig[NUM_CLASSES]);

/* ---------------------------------------------------------------------------
 * The locks fork takes, but the store's (src/lock.c).
 *
 * fork's handlers take every lock before fork and release it after, in the
 * parent and in the child, and each page those releases write is copied
 * there on both sides.  Beside what they guard, these locks lay on three
 * pages: with the store's stripe, four copies per side per fork (perf
 * record -e page-faults of a fork loop), where glibc makes one.  So they
 * share one page.  Each order of the buddy has a line of its own, as its
 * orders are locked apart; the others are taken rarely, or by class (the
 * global heap's, packed as before).  The store's locks stay in their
 * lists' lines, which a store and a take read anyway.
 * ------------------------------------------------------------------------- */

struct order_lock {
  ulock_t lock;
} __attribute__((aligned(UMPA_CACHE_LINE)));

struct fork_locks {
  struct order_lock order[MAX_ORDER + 1]; /* umpa_buddy's, per order */
  ulock_t buddy_grow;                     /* region creation */
  ulock_t region_open;                    /* regions' pieces opened */
  ulock_t cache_trim;                     /* one page-cache trimmer */
  ulock_t large;                          /* the large-block cache's first
                                             arena (largecache.c) */
  ulock_t heap_pool;                      /* the heaps: list and pool */
  ulock_t heap_shared;                    /* the heap of gone threads */
  ulock_t heap_global[NUM_CLASSES];       /* the global heap, per class */
  /* What a child notes of its fork, here as the page is written then
   * anyway: forks so far in this process's line, the heap of the thread
   * that forked (the child's own), and whether other heaps may be left
   * whose threads did not come along (heap.c, retire_orphans). */
  uint32_t fork_gen;
  struct heap *fork_survivor;
  _Atomic bool xorphans;
} __attribute__((aligned(PAGE_SIZE)));
_Static_assert(sizeof(struct fork_locks) == PAGE_SIZE, "one page");

UMPA_HIDDEN extern struct fork_locks umpa_locks;
/* Set up the kinds of the locks that need one (page_init, first). */
UMPA_HIDDEN void locks_init(void);

/* store.c: the global heap's store of empty superblocks, one stripe of
 * lists and locks per group of heaps. */
/* The stripe of the heap_index'th heap made (the heap pool's lock held). */
UMPA_HIDDEN unsigned store_stripe_of(unsigned heap_index);
/* The most pages the store may hold now: what the page cache leaves of
 * 1.5 times its limit, at most the limit. */
UMPA_HIDDEN size_t store_cap(void);
/* Store the empty superblock sb, owned by the thread heap that gives it
 * up, in that heap's stripe (or give it to the page layer if the store is
 * full). */
UMPA_HIDDEN void store_put(struct superblock *sb);
/* store_put for a caller that holds the global heap's class lock (sb is
 * then the global heap's, and goes to stripe 0): sb is stored at time
 * `now` if the store holds fewer than `cap` pages with it.  Returns a
 * chain for store_destroy, once the lock is dropped: sb itself when the
 * store is full, and superblocks that expired. */
UMPA_HIDDEN struct superblock *store_add(struct superblock *sb, uint64_t now,
                                         size_t cap);
UMPA_HIDDEN void store_destroy(struct superblock *chain);
/* A stored superblock of class cls, now owned by h, or NULL; when none of
 * cls is stored, one of another class of the same size, cut anew. */
UMPA_HIDDEN struct superblock *store_take(unsigned cls, struct heap *h);
/* Age h's stripe and one other in turn (a heap's tick). */
UMPA_HIDDEN void store_tick(struct heap *h, uint64_t now);
/* Give every stored superblock back to the page layer; returns bytes. */
UMPA_HIDDEN size_t store_flush(void);
/* Whether umpa_class_masks.xstored and the per-class stripe flags say
 * what the stripes hold (for tests, with no thread storing or taking). */
UMPA_HIDDEN bool store_masks_agree(void);
/* Whether superblocks that h stored are still in the store, listed in
 * h's bins (read under the locks that guard those lists). */
UMPA_HIDDEN bool store_holds_from(struct heap *h);
/* The large blocks in use and their bytes, over every heap's counts
 * (takes the heap pool's lock): what large_inuse in malloc.c counted. */
UMPA_HIDDEN void heap_large_counts(size_t *blocks, size_t *bytes);
/* Bytes of empty superblocks in the store: of class cls, or of all
 * classes when cls < 0. */
UMPA_HIDDEN size_t heap_store_bytes(int cls);
/* fork: every lock of the stripes any heap used (after the class locks). */
UMPA_HIDDEN void store_lock_all(void);
UMPA_HIDDEN void store_unlock_all(void);
/* Whether a large block of `pages` pages should try store_spill_for: the
 * page layer has no warm free run of its size, the store holds
 * superblocks, and the tries are not backing off after failures (each
 * false answer while they are counts one skipped try). */
UMPA_HIDDEN bool store_may_spill(size_t pages);
/* Once store_may_spill said so, before a large block of `pages` pages
 * takes memory without data: find
 * a window of 2^log2_ceil(pages) pages that holds only free runs and
 * stored superblocks, and give those superblocks back so that the
 * window's pages merge into free runs with memory.  Returns the window's
 * first byte (for page_alloc_at), or NULL when none was found or none was
 * looked for.  Any thread; takes the store's list locks one at a time. */
UMPA_HIDDEN void *store_spill_for(size_t pages);
/* Windows store_spill_for has given back so far (for tests). */
UMPA_HIDDEN uint64_t store_spills(void);

/* largecache.c: freed large malloc blocks kept whole, reused best fit. */
/* Park a freed large block (head pm); false if it does not qualify (the
 * caller then frees it to the page layer).  `freed`: the program had the
 * block, whose bits may need settling (settle_backed); false for a piece
 * of a run never handed out, whose bits stay as they are (a loose one
 * loose: asking about pages nobody touched tells nothing new, and reading
 * the clock for the gate was a tenth of an aligned malloc's time). */
UMPA_HIDDEN bool largecache_put(struct pmeta *pm, bool freed);
/* Whether a large malloc block of `pages` pages may be populated when it
 * is handed out rather than left to fault in: true while the lazy blocks
 * freed lately were touched all but a few pages (at least LC_SAMPLE of
 * them asked), for blocks above 128 KiB and up to 16 MiB, while fewer than
 * LC_SAMPLE blocks were populated since the last lazy block freed touched
 * whole.  The caller passes PAGE_AHEAD; largecache_ahead decides once the
 * block is known to need memory. */
UMPA_HIDDEN bool largecache_may_populate(size_t pages);
/* The flags for a block with pages without memory, taken with `flags`:
 * with PAGE_AHEAD, populated (UMPA_LAZY and PAGE_WARM cleared), spending
 * one of the LC_SAMPLE blocks, if any is left; else lazy.  So a program
 * whose blocks turn sparse is noticed after at most LC_SAMPLE blocks
 * populated for nothing, and only blocks that needed memory count.
 * MADV_POPULATE_WRITE costs half to three quarters of the faults it
 * replaces on fresh mappings, less of a saving where the page tables
 * exist (docs/ARCHITECTURE.md). */
UMPA_HIDDEN unsigned largecache_ahead(unsigned flags);
/* A cached block of `pages` pages, or of up to 7 more when the span's
 * surplus is too small to stay cached (under 8 pages) and has memory and
 * the block need not be `exact` (the surplus of a bigger span stays
 * cached), or NULL; its pmeta count says which.  `exact`: a size the
 * thread asks for again and again, which it could never hold for that
 * size with a slack (held.c holds exact sizes).  `flags` (UMPA_ZERO,
 * UMPA_LAZY|PAGE_WARM) say
 * how the pages without memory are treated, as for page_alloc.  With
 * `declined`, a best fit that lacks memory for half its pages or more is
 * not taken while store_may_spill says stored superblocks may give a warm
 * run instead: NULL, and *declined set. */
UMPA_HIDDEN void *largecache_take(size_t pages, unsigned flags, bool exact,
                                  bool *declined);
/* Grow the large block pm, in use, to `pages` pages in place over the
 * cached span that starts right after it, whose rest stays cached: a block
 * cut from the front of a span (largecache_take, largecache_grow) can so
 * grow by realloc without moving, into memory the cache holds.  The new
 * pages get memory as `flags` ask, as for largecache_take.  False when no
 * long enough span follows, or out of memory: the block is then as it
 * was.  The pages stay counted in the heap's arena. */
UMPA_HIDDEN bool largecache_extend(struct pmeta *pm, size_t pages,
                                   unsigned flags);
/* For a block that must move to grow: `pages` pages from the middle of the
 * cached span with the most memory (then the largest) among those that
 * hold twice as many, so that the block has room after it to grow in
 * place, and so has the next block moved into the span's front half.
 * Memory as for largecache_take; NULL when no span is that big. */
UMPA_HIDDEN void *largecache_take_room(size_t pages, unsigned flags);
/* A cached block of exactly `pages` pages whose address is aligned to
 * `align` bytes (a power of two above PAGE_SIZE), cut from a span whose
 * front and back stay cached, or NULL: an aligned malloc served under one
 * lock, where taking a bigger run and giving its ends back took three.
 * Memory as for largecache_take. */
UMPA_HIDDEN void *largecache_take_window(size_t pages, size_t align,
                                         unsigned flags);
/* A block of `pages` pages (a power of two), aligned to its size and all
 * of it with memory, cut from a cached span and handed over as a block of
 * `kind` (a superblock); NULL when no span has such a piece.  The pages
 * stay counted in the heap's arena.  So freed large blocks become small
 * blocks' memory without a fault, as the page layer's warm runs do. */
UMPA_HIDDEN void *largecache_take_aligned(size_t pages, unsigned kind);
/* A large block of fewer pages than a span's least (under 8: a 5 KiB
 * malloc served as pages, or any block under a lowered large threshold)
 * when the page layer has no warm run for it: an aligned window of the
 * next power of two pages cut from a span with memory, as for a
 * superblock, the pages beyond `pages` kept as the block's slack unless
 * `exact`; cleared for UMPA_ZERO in `flags`.  NULL otherwise: the page
 * layer serves it. */
UMPA_HIDDEN void *largecache_take_small(size_t pages, unsigned flags,
                                        bool exact);
/* A fresh block carved off the front of a new 64 MiB run whose rest is
 * cached for the next ones; NULL when the request is too big for that or
 * the page layer has a warm run that fits (page_alloc then serves it). */
UMPA_HIDDEN void *largecache_grow(size_t pages, unsigned flags);
/* A freed large block of up to 128 KiB handed out lazily is taken as
 * touched whole (PMF_FULL, its pages counted as having memory): asking the
 * kernel (mincore) cost more than the faults of its pages. */
UMPA_HIDDEN void largecache_assume_touched(struct pmeta *pm);
/* Whether the lazy blocks freed lately had most of their pages untouched
 * (the share that decides largecache_may_populate is below its mark). */
UMPA_HIDDEN bool largecache_lazy_sparse(void);
/* For tests: while lazy blocks are sparse, no free asks the kernel about
 * its block before time t (os_fine_ns); 0 lets the next one ask,
 * UINT64_MAX none (until an ask allowed otherwise sets it again). */
UMPA_HIDDEN void largecache_ask_after(uint64_t t);
/* The pages with memory that the cached span pm was listed with (for
 * umpa_page_check, under its arena's lock). */
UMPA_HIDDEN size_t largecache_listed_backed(struct pmeta *pm);

/* held.c: a thread's freed large blocks, kept whole for its next malloc of
 * the same number of pages.  held_take and held_put work on the caller's
 * heap; held_age on the caller's own h; held_flush and held_bytes on any
 * heap in use (the pool lock keeps it so). */
/* A large malloc of `pages` pages: noted, and served by a held block of
 * as many pages (the big one: up to twice as many, the block keeping its
 * size) at an address aligned to `align` (a power of two, PAGE_SIZE or
 * more; its pointer); with `zero` only by one whose pages all have
 * memory, cleared.  NULL if none.  Sets up the thread's heap if it has
 * none. */
UMPA_HIDDEN void *held_take(size_t pages, bool zero, size_t align);
/* Hold the freed large block pm (still counted in use); false if it is
 * not one to hold: too big, no heap, of a size that could serve none of
 * the thread's last HEAP_HELD large mallocs, or a big one while a bigger
 * big one is held and could serve one. */
UMPA_HIDDEN bool held_put(struct pmeta *pm);
/* Whether the thread asked for `pages` pages in another of its last
 * HEAP_HELD large mallocs besides the one held_take just noted. */
UMPA_HIDDEN bool held_repeated(size_t pages);
/* On the heap's tick: release what was not refilled since the last. */
UMPA_HIDDEN void held_age(struct heap *h);
/* Release all of h's held blocks: h is the caller's own heap, or one whose
 * thread is gone (exited, or not in a fork's child). */
UMPA_HIDDEN void held_flush(struct heap *h);
/* Release the held blocks of every heap in use from `all` on (linked by
 * next_all), the caller's own included, whatever their threads are doing
 * (malloc_trim; pool lock held). */
UMPA_HIDDEN void held_flush_all(struct heap *all);
/* Tests: held_flush_all acts as if the kernel had no membarrier. */
UMPA_HIDDEN extern bool held_no_fence;
/* Bytes of h's held blocks; adds how many to *blocks. */
UMPA_HIDDEN size_t held_bytes(struct heap *h, size_t *blocks);
/* malloc.c: a freed large block leaves malloc (counted out of use): to
 * the large cache, else to the page layer. */
UMPA_HIDDEN void large_release(struct pmeta *pm);
/* Age the cache as a large request does (UMPA_DECAY_MS), and list the
 * blocks threads returned to other threads' arenas, unless another thread
 * holds the lock: the small-object slow paths call this now and then, so
 * that a program whose large requests stopped does not keep the blocks it
 * freed last until it exits. */
UMPA_HIDDEN void largecache_decay_idle(void);
/* Give every cached block back to the page layer; returns bytes. */
UMPA_HIDDEN size_t largecache_flush(void);
/* The arenas the cache has opened: one, until threads of other arenas
 * free or take large blocks. */
UMPA_HIDDEN unsigned largecache_arenas(void);
/* The spans the cache holds; *largest gets the biggest one's bytes. */
UMPA_HIDDEN size_t largecache_spans(size_t *largest);
UMPA_HIDDEN void largecache_lock_all(void);
UMPA_HIDDEN void largecache_unlock_all(void);

/* thread.c: the calling thread's heap (one initial-exec TLS pointer). */
UMPA_HIDDEN extern __thread struct heap *umpa_tl_heap
    __attribute__((tls_model("initial-exec")));
/* Set when the thread's heap was given up (its exit began): the thread's
 * later allocations (other destructors') take the shared heap. */
UMPA_HIDDEN extern __thread bool umpa_tl_gone
    __attribute__((tls_model("initial-exec")));
/* The stripe of the heap it gave up (set with umpa_tl_gone): the large
 * cache's arena that takes the blocks it held and frees later, the one
 * they came from, where they merge with the spans around them. */
UMPA_HIDDEN extern __thread uint8_t umpa_tl_gone_stripe
    __attribute__((tls_model("initial-exec")));
/* Give the calling thread a heap; returns the sentinel HEAP_NONE if it
 * cannot have one (inside initialisation, out of memory, or gone). */
UMPA_HIDDEN struct heap *thread_heap_init(void);
/* Initialise the heap layer once (thread safe, idempotent). */
UMPA_HIDDEN void umpa_init(void);
