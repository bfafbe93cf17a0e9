/*
 * umpa.h - public interface of umpa, a user-mode page allocator for Linux.
 *
 * The page layer keeps a process-side cache of physically backed pages.
 * Blocks are handed out, grown, shrunk, moved and swapped by remapping page
 * tables; pages that come back stay populated so reusing them costs neither
 * a page fault nor zeroing.  See docs/ARCHITECTURE.md for the design.
 *
 * Conventions for every function below unless its comment says otherwise:
 *  - Thread safe: any thread may call any function at any time.
 *  - Sizes are rounded up to whole pages (UMPA_PAGE_SIZE); a block is
 *    identified by its start address and its size in pages.
 *  - Impossible requests return NULL (or -1) and set errno; memory is never
 *    corrupted silently.  Misuse that the layer can detect (freeing a pointer
 *    it did not hand out, a size that does not match) prints one line on
 *    stderr and aborts the process.
 */
#ifndef UMPA_H
#define UMPA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define UMPA_API __attribute__((visibility("default")))
#else
#define UMPA_API
#endif

#define UMPA_VERSION_MAJOR 0
#define UMPA_VERSION_MINOR 1
#define UMPA_VERSION_PATCH 0

/* The page size of the page layer: always the kernel's base page size. */
#define UMPA_PAGE_SIZE 4096u

/* ---------------------------------------------------------------------------
 * Flags for userpage_malloc / userpage_realloc.
 * ------------------------------------------------------------------------- */

/* Contents are guaranteed zero.  Pages fresh from the kernel already are;
 * pages reused from the cache are cleared only when this flag is given. */
#define UMPA_ZERO 0x01u
/* Do not populate: pages that are not already backed are faulted in on
 * first touch by the kernel, as with plain mmap.  Out-of-memory can then
 * surface at access time instead of at allocation. */
#define UMPA_LAZY 0x02u
/* Prefer transparent huge pages: blocks of 2 MiB and more are 2 MiB aligned
 * (every block of 2 MiB or more is) and advised MADV_HUGEPAGE. */
#define UMPA_HUGE 0x04u
/* userpage_realloc only: fail instead of moving the block. */
#define UMPA_NOMOVE 0x08u
/* Address space only: the block has no memory until userpage_commit().
 * Touching an uncommitted page is not trapped; the kernel then faults it in
 * lazily like ordinary anonymous memory. */
#define UMPA_RESERVE 0x10u

/* ---------------------------------------------------------------------------
 * The five calls of the user-mode page allocator.
 * ------------------------------------------------------------------------- */

/* Allocate a block of `size` bytes rounded up to whole pages.
 * Returns a page-aligned pointer; blocks of 2 MiB and more are 2 MiB aligned.
 * Unless UMPA_LAZY or UMPA_RESERVE is given, every page is populated before
 * the call returns, so running out of memory is reported here (NULL, errno
 * ENOMEM) wherever the kernel reports it rather than as a fault later.
 * Contents are unspecified unless UMPA_ZERO is given.
 * Errors: size 0 -> NULL, errno EINVAL; unknown flag bits or UMPA_NOMOVE ->
 * NULL, errno EINVAL; size too large for the address space, memory not
 * available, or (from 128 MiB, unless UMPA_RESERVE) a size the kernel's
 * overcommit policy refuses for a plain mapping -> NULL, errno ENOMEM. */
UMPA_API void *userpage_malloc(size_t size, unsigned flags);

/* Free a block returned by userpage_malloc/userpage_realloc.  `size` must be
 * the size it was allocated (or last reallocated) with; any size that rounds
 * to the same number of pages is accepted.  NULL is a no-op.  The pages stay
 * populated in the cache (up to UMPA_PAGE_CACHE bytes) for reuse.
 * A pointer the page layer did not hand out, a block freed twice or a size
 * that does not match aborts the process with a one-line message. */
UMPA_API void userpage_free(void *p, size_t size);

/* Resize a block without copying bytes.  Shrinking gives the tail pages back.
 * Growing extends the block in place when the pages after it are free;
 * otherwise the block is moved by remapping its pages (never by copying,
 * unless the kernel refuses the remap, e.g. at vm.max_map_count; such copies
 * are counted in umpa_page_stats).  With UMPA_NOMOVE the call fails instead
 * of moving: NULL, errno ENOMEM, the block unchanged.  The grown part is
 * populated unless UMPA_LAZY is given and zeroed if UMPA_ZERO is given.
 * p == NULL behaves as userpage_malloc(new_size, flags).  new_size == 0 frees
 * the block and returns NULL.  On failure the original block is unchanged.
 * `old_size` is checked as in userpage_free. */
UMPA_API void *userpage_realloc(void *p, size_t old_size, size_t new_size,
                                unsigned flags);

/* Back the pages of [p, p+size) with memory (populate them).  The range must
 * lie inside one block of the page layer; p must be page aligned and size is
 * rounded up to pages.  Pages already backed keep their contents.
 * Returns 0, or -1 with errno EINVAL (bad range) or ENOMEM (no memory; pages
 * populated before the failure stay populated). */
UMPA_API int userpage_commit(void *p, size_t size);

/* Give the memory of [p, p+size) back to the kernel and keep the address
 * range reserved: the pages read as zero afterwards and cost a fault (or a
 * userpage_commit) to use again.  Same range rules as userpage_commit.
 * Returns 0, or -1 with errno EINVAL. */
UMPA_API int userpage_release(void *p, size_t size);

/* ---------------------------------------------------------------------------
 * Page-level control beyond the paper's five calls.
 * ------------------------------------------------------------------------- */

/* Exchange the contents of [a, a+size) and [b, b+size) by remapping, without
 * copying.  a and b must be page aligned, lie inside blocks of the page layer
 * and not overlap; size is rounded up to pages.  Returns 0, or -1 with errno
 * EINVAL (bad arguments) or ENOMEM (the kernel refused the remap; contents
 * are then exchanged by copying, so the call still succeeds unless even the
 * scratch space for that cannot be found). */
UMPA_API int umpa_page_swap(void *a, void *b, size_t size);

/* Give cached memory back to the kernel.  severity 0: down to the cache
 * limit; 1: down to half the limit; 2: down to an eighth of the limit;
 * 3: everything.  Returns the number of bytes released. */
UMPA_API size_t umpa_page_trim(int severity);

/* Populate `bytes` (rounded up to pages, capped at the cache limit) ahead of
 * time and put them in the cache, so that later allocations of that much
 * memory take no page faults.  Best effort: stops quietly when memory runs
 * out. */
UMPA_API void umpa_page_prefill(size_t bytes);

/* Passed to umpa_page_cache_limit: let the limit adapt again.  Returned by
 * it: the limit it replaced was adaptive. */
#define UMPA_PAGE_CACHE_ADAPTIVE ((size_t)-1)

/* Set the cache limit in bytes, exact from then on, and return the previous
 * limit: its bytes if it was exact, UMPA_PAGE_CACHE_ADAPTIVE if it adapted
 * (the figure it had then is umpa_page_stats' cache_limit), so that passing
 * back what a call returned restores the limit as it was.  Lowering it
 * releases what exceeds the new limit.  Until this is called (or
 * UMPA_PAGE_CACHE is set), and after it is called with
 * UMPA_PAGE_CACHE_ADAPTIVE, the limit adapts: the most memory in use over
 * the last one or two UMPA_DECAY_MS intervals, at least 4 MiB, at most
 * UMPA_PAGE_CACHE (256 MiB when unset).  Thread safe. */
UMPA_API size_t umpa_page_cache_limit(size_t bytes);

/* Number of buddy orders reported in umpa_page_stats.order[]: order k holds
 * runs of 2^k pages, up to 2^31 pages (8 TiB), the largest block. */
#define UMPA_PAGE_ORDERS 32

/* Figures for one buddy order (runs of 2^k pages). */
struct umpa_order_stats {
  uint64_t free_runs;     /* free runs of this order now */
  uint64_t lock_acquires; /* times the order's lock was taken */
  uint64_t lock_waits;    /* acquisitions that found the lock busy */
  uint64_t waiters_max;   /* high-water mark of threads waiting at once
                             (the parallel-buddy "pending requests") */
  uint64_t splits;        /* runs of this order split in two */
  uint64_t merges;        /* pairs of this order merged into one */
};

/* A snapshot of the page layer; every byte figure is a multiple of the page
 * size.  The fields are read without stopping other threads, so figures that
 * change during the call may be mutually inconsistent by a few pages. */
struct umpa_page_stats {
  size_t reserved;          /* address space reserved for page runs */
  size_t committed;         /* bytes backed by memory: in use + cached */
  size_t in_use;            /* bytes in allocated blocks */
  size_t cached;            /* backed bytes in free runs (the cache) */
  size_t cache_limit;       /* the current cache limit */
  size_t metadata;          /* address space of the layer's own metadata */
  uint64_t allocs, frees;   /* userpage_malloc-like and free-like calls */
  uint64_t cache_hits;      /* allocations needing no new page */
  uint64_t cache_misses;    /* allocations that populated pages */
  uint64_t pages_populated; /* pages populated from the kernel */
  uint64_t page_faults;     /* minor+major faults taken while populating
                               (populates under 1 MiB count one a page) */
  uint64_t pages_released;  /* pages given back to the kernel */
  uint64_t pages_cleared;   /* cached pages zeroed for UMPA_ZERO */
  uint64_t remaps;          /* page runs moved by mremap */
  uint64_t pages_remapped;  /* pages moved by mremap */
  uint64_t realloc_in_place;/* userpage_realloc growths done in place */
  uint64_t realloc_moved;   /* userpage_realloc growths done by moving */
  uint64_t copies;          /* moves that fell back to copying bytes */
  uint64_t regions;         /* address-space regions reserved */
  unsigned lock_kind;       /* 0 spinlock, 1 mutex (UMPA_PAGE_LOCK) */
  unsigned max_order;       /* highest order that has ever held a run */
  struct umpa_order_stats order[UMPA_PAGE_ORDERS];
};

/* Fill *out with a snapshot of the page layer's figures. */
UMPA_API void umpa_page_stats(struct umpa_page_stats *out);

/* ---------------------------------------------------------------------------
 * The malloc family under umpa_ names.
 *
 * libumpa.so / libumpa.a built with UMPA_OVERRIDE=ON (the default) also
 * export these under their standard names (malloc, free, ... and glibc's
 * __libc_* aliases), so linking umpa or preloading it with LD_PRELOAD makes
 * it the process's allocator.  Build with -DUMPA_OVERRIDE=OFF to use umpa
 * beside another malloc through the umpa_ names only.
 *
 * Semantics are glibc's, edge cases included: every block is 16-byte
 * aligned; malloc(0) returns a unique freeable pointer; requests larger than
 * PTRDIFF_MAX and overflowing calloc/reallocarray products return NULL with
 * errno ENOMEM, and so do requests (and realloc growths) of 128 MiB or more
 * that the kernel's overcommit policy refuses for a plain mapping (by
 * default: more than memory and swap together; not asked under RLIMIT_AS);
 * free(NULL) is a no-op and free leaves errno unchanged; realloc(p, 0)
 * frees p and returns NULL; realloc(NULL, n) is malloc(n); a failed
 * realloc leaves the block untouched.  All functions are thread safe.
 * Freeing a pointer umpa did not allocate, or (where it is detectable
 * cheaply) freeing twice or passing a freed block to realloc or
 * malloc_usable_size, prints one line and aborts; UMPA_CHECK=1 checks
 * more.
 * ------------------------------------------------------------------------- */

UMPA_API void *umpa_malloc(size_t size);
UMPA_API void umpa_free(void *p);
/* n * size bytes, zeroed; memory fresh from the kernel is not cleared again. */
UMPA_API void *umpa_calloc(size_t n, size_t size);
UMPA_API void *umpa_realloc(void *p, size_t size);
/* realloc(p, n * size) with overflow checking (NULL, errno ENOMEM). */
UMPA_API void *umpa_reallocarray(void *p, size_t n, size_t size);
/* EINVAL unless align is a power of two multiple of sizeof(void *);
 * ENOMEM when out of memory; *out is untouched on error. */
UMPA_API int umpa_posix_memalign(void **out, size_t align, size_t size);
/* size need not be a multiple of align (C17 DR 460).  As glibc 2.36 (and
 * memalign), an alignment that is not a power of two is rounded up to one;
 * an alignment above SIZE_MAX/2+1 gives NULL, errno EINVAL. */
UMPA_API void *umpa_aligned_alloc(size_t align, size_t size);
UMPA_API void *umpa_memalign(size_t align, size_t size);
UMPA_API void *umpa_valloc(size_t size);
/* Page aligned, size rounded up to whole pages (pvalloc(0): one page). */
UMPA_API void *umpa_pvalloc(size_t size);
/* Bytes usable at p (>= the size asked for); 0 for NULL. */
UMPA_API size_t umpa_malloc_usable_size(void *p);
/* C23: free with the size (or size and alignment) it was allocated with. */
UMPA_API void umpa_free_sized(void *p, size_t size);
UMPA_API void umpa_free_aligned_sized(void *p, size_t align, size_t size);
/* Give free memory back to the kernel: releases the calling thread's and
 * the global heap's empty superblocks, the pages of their other
 * superblocks that hold no block in use (those blocks stay available), the
 * large-block cache, the front page of each heap that exited threads left
 * for new ones, and the page cache down to `pad` bytes; the heaps of
 * threads that ended without giving theirs up are given up; under an
 * address-space limit (RLIMIT_AS), regions whose pages are all free are
 * unmapped.  Every other
 * thread's heap does the same to itself within its next 16 allocations or
 * frees that leave the fast path; a thread that makes none keeps what its
 * heap holds.  Thread safe.  Returns 1 if the caller
 * released memory, else 0 (what other threads release later is not
 * counted). */
UMPA_API int umpa_malloc_trim(size_t pad);
/* glibc's mallopt.  M_TRIM_THRESHOLD sets the page cache limit and
 * M_MMAP_THRESHOLD the size from which blocks come straight from the page
 * layer (at most 32 KiB); a negative value means "never", as in glibc.  The
 * other parameters have no counterpart in umpa and are accepted and
 * ignored.  Returns 1, except 0 for M_MXFAST above 160 (glibc 2.36). */
UMPA_API int umpa_mallopt(int param, int value);

/* Figures of the malloc heap, with glibc's struct mallinfo2 meanings. */
struct umpa_mallinfo {
  size_t arena;    /* bytes obtained from the page layer (superblocks + large) */
  size_t ordblks;  /* free superblocks held */
  size_t smblks;   /* unused (0) */
  size_t hblks;    /* large blocks */
  size_t hblkhd;   /* bytes in large blocks */
  size_t usmblks;  /* peak arena */
  size_t fsmblks;  /* unused (0) */
  size_t uordblks; /* bytes in allocated blocks */
  size_t fordblks; /* free bytes inside superblocks */
  size_t keepcost; /* bytes cached by the page layer */
};
UMPA_API struct umpa_mallinfo umpa_mallinfo(void);
/* Print a summary of the heap and the page layer on stderr. */
UMPA_API void umpa_malloc_stats(void);
/* glibc's malloc_info: describe the heap on `stream` in glibc's XML (one
 * <heap>, the whole allocator).  Each small size class with free blocks is
 * a <size from= to= total= count=> (blocks not handed out, never carved
 * ones included), the large-block cache one more (its spans, the biggest
 * as `to`); "rest" totals those, "mmap" counts the large blocks in use,
 * "system" the bytes held from the page layer now and at most, "aspace"
 * the address space reserved.  Other threads' figures are as of their
 * last slow path.  Thread safe; no umpa lock is held while writing, so
 * the stream may allocate.  Returns 0; EINVAL (errno untouched) if
 * options is not 0, as glibc does; -1 with fwrite's errno if writing
 * failed. */
UMPA_API int umpa_malloc_info(int options, FILE *stream);

#ifdef __cplusplus
}
#endif

#endif /* UMPA_H */
