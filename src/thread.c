/*
 * thread.c - per-thread heaps: the TLS pointer, one-time initialisation,
 * thread exit and fork().
 *
 * The thread's heap is one initial-exec TLS pointer (no __tls_get_addr
 * call, which could itself allocate).  It starts at the sentinel
 * umpa_heap_empty, whose every class's current superblock has no free
 * block, so a thread's first malloc falls into the slow path and sets the
 * heap up there: the fast path never tests "initialised?".  A pthread
 * key's destructor gives the heap up when the thread exits; from then on
 * the pointer is the sentinel again and umpa_tl_gone is set, so its
 * allocations (by later destructors) are served from a shared locked heap,
 * never from a new per-thread heap that nobody would give back.  A first
 * malloc in glibc's last round of destructors sets the key too late for
 * the destructor to run: heap_acquire's sweep gives up such heaps.
 *
 * fork(): the prepare handler takes every lock of the heap and the page
 * layer, in the order the code nests them (heap locks, then the cache
 * trimmer, then the buddy), so the child starts with consistent structures;
 * in the child the other threads' heaps are retired unread: no lock covers
 * them, and their threads may have stopped halfway through an update.
 * Handlers are registered once, by the constructor: not inside the first
 * malloc, which may come from inside pthread_atfork.  A prepare handler
 * that runs after umpa's may allocate: the thread holds every lock then,
 * and its own acquisitions of them only count (umpa_tl_forking).
 */
#include "internal.h"

#include <pthread.h>

__thread struct heap *umpa_tl_heap __attribute__((tls_model("initial-exec"))) =
    HEAP_NONE;
__thread bool umpa_tl_gone __attribute__((tls_model("initial-exec")));
__thread uint8_t umpa_tl_gone_stripe __attribute__((tls_model("initial-exec")));

/* 0 new, 1 the core is being set up, 2 core ready (hooks being
 * registered), 3 everything ready. */
UMPA_EARLY_DATA static _Atomic int init_state;
static pthread_key_t heap_key;

static void thread_exit(void *arg) {
  struct heap *h = arg;
  umpa_tl_gone = true;
  umpa_tl_gone_stripe = h->stripe;
  umpa_tl_heap = HEAP_NONE;
  heap_abandon(h);
}

UMPA_FORK
static void fork_prepare(void) {
  heap_lock_all();
  largecache_lock_all();
  cache_lock();
  buddy_lock_all();
  region_lock_all();
  umpa_tl_forking = true; /* later prepare handlers may allocate */
}

UMPA_FORK
static void fork_parent(void) {
  umpa_tl_forking = false;
  region_unlock_all();
  buddy_unlock_all();
  cache_unlock();
  largecache_unlock_all();
  heap_unlock_all();
}

UMPA_FORK
static void fork_child(void) {
  umpa_tl_forking = false;
  region_unlock_all();
  buddy_unlock_all();
  cache_unlock();
  largecache_unlock_all();
  heap_after_fork_child(umpa_tl_heap);
}

UMPA_HOT
void umpa_init(void) {
  if (UMPA_LIKELY(atomic_load_explicit(&init_state, memory_order_acquire) ==
                  3))
    return;
  int expected = 0;
  if (atomic_compare_exchange_strong(&init_state, &expected, 1)) {
    page_init();
    sizeclass_init();
    malloc_configure();
    atomic_store_explicit(&init_state, 2, memory_order_release);
    /* The pthread call may allocate (through us): the core is ready and
     * the allocations take the shared heap until state 3.  The fork
     * handlers are registered by the constructor, not here: the first
     * malloc may come from inside pthread_atfork (glibc's table of
     * handlers grows), whose lock a registration here waited for. */
    pthread_key_create(&heap_key, thread_exit);
    atomic_store_explicit(&init_state, 3, memory_order_release);
    return;
  }
  /* Another thread is initialising the core: wait for it. */
  while (atomic_load_explicit(&init_state, memory_order_acquire) < 2)
    os_yield();
}

struct heap *thread_heap_init(void) {
  if (umpa_tl_gone) return HEAP_NONE;
  umpa_init();
  if (atomic_load_explicit(&init_state, memory_order_acquire) != 3)
    return HEAP_NONE;
  struct heap *h = heap_acquire();
  if (!h) return HEAP_NONE;
  umpa_tl_heap = h;
  /* May allocate (glibc's second-level key array): the heap is set. */
  pthread_setspecific(heap_key, h);
  return h;
}

/* Initialise before main if nothing allocated yet (priority 101 runs
 * before ordinary constructors); the first malloc does it otherwise. */
__attribute__((constructor(101))) static void umpa_constructor(void) {
  umpa_init();
  options_init(); /* the environment is surely set up now */
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}
