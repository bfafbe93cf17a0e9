/*
 * lock.c - slow paths of the spinlock / futex mutex in internal.h.
 *
 * Both kinds share one word so that the kind is a run-time choice
 * (UMPA_PAGE_LOCK) measured side by side, as the parallel-buddy seed does.
 * The spinlock yields after a bounded spin: on a 2-core machine with more
 * threads than cores a pure spin would burn the holder's time slice.
 * It is released by a plain store (internal.h): nothing in umpa depends
 * on a release being a full barrier, and the exchange's locked
 * instruction waited for the program's page writes before it (one
 * thread's ring of 32-256 KiB buffers, two arena locks a step: 4-8 %).
 *
 * It also holds the page of the locks fork takes (see struct fork_locks).
 */
#include "internal.h"

/* In .lbss: as an initialised object, its page alignment split .data from
 * the GOT's page, and each took a fault at every start (relocations). */
UMPA_BIG_BSS struct fork_locks umpa_locks;

void locks_init(void) {
  /* Opening a region's piece may take milliseconds (under mlockall it
   * populates the piece): a mutex.  The buddy's kinds are set by
   * buddy_init (UMPA_PAGE_LOCK); the others spin. */
  ulock_init(&umpa_locks.region_open, LOCK_MUTEX);
}

void ulock_init(ulock_t *l, int kind) {
  atomic_init(&l->xword, 0);
  atomic_init(&l->xwaiting, 0);
  atomic_init(&l->xacquires, 0);
  atomic_init(&l->xwaits, 0);
  atomic_init(&l->xwaiters_max, 0);
  l->kind = (uint8_t)kind;
  l->fork_held = 0;
  l->fork_depth = 0;
}

static void note_waiter(ulock_t *l) {
  uint32_t now = atomic_fetch_add_explicit(&l->xwaiting, 1,
                                           memory_order_relaxed) + 1u;
  atomic_fetch_add_explicit(&l->xwaits, 1, memory_order_relaxed);
  uint32_t max = atomic_load_explicit(&l->xwaiters_max, memory_order_relaxed);
  while (now > max &&
         !atomic_compare_exchange_weak_explicit(&l->xwaiters_max, &max, now,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

__thread bool umpa_tl_forking __attribute__((tls_model("initial-exec")));

void ulock_acquire_slow(ulock_t *l) {
  if (umpa_tl_forking && l->fork_held) { /* held by this thread's fork */
    l->fork_depth++;
    return;
  }
  note_waiter(l);
  if (l->kind == LOCK_SPIN) {
    for (unsigned spins = 0;; spins++) {
      if (atomic_load_explicit(&l->xword, memory_order_relaxed) == 0) {
        uint32_t expected = 0;
        if (atomic_compare_exchange_weak_explicit(
                &l->xword, &expected, 1, memory_order_acquire,
                memory_order_relaxed))
          break;
      }
      if (spins < 100) cpu_relax();
      else os_yield();
    }
  } else {
    /* Drepper's futex mutex: 2 means "held, and someone may sleep". */
    uint32_t c = atomic_exchange_explicit(&l->xword, 2, memory_order_acquire);
    while (c != 0) {
      os_futex_wait(&l->xword, 2);
      c = atomic_exchange_explicit(&l->xword, 2, memory_order_acquire);
    }
  }
  atomic_fetch_sub_explicit(&l->xwaiting, 1, memory_order_relaxed);
}

void ulock_release_slow(ulock_t *l) { os_futex_wake(&l->xword, 1); }
