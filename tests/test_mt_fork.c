/*
 * test_mt_fork.c - fork() while other threads allocate and free: the child
 * must find a consistent heap (no lock left held, no half-done list) and
 * be able to allocate, free blocks the other threads made, and exit.
 *
 * The heaps of the threads that did not come along (orphans) are retired
 * lazily, not in the fork handler: the child finds them still in use,
 * and its first tick, a thread it makes (not under ThreadSanitizer, which
 * ends such a child) or a trim retires them; a heap made in the child is
 * not an orphan.  Retired, they are never read: their threads may have
 * stopped halfway through an update, which test_half_done checks.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4

static _Atomic int stop, started;
static _Atomic(void *) shared[64];

static void *churn(void *arg) {
  uint64_t r = (uintptr_t)arg * 7919 + 1;
  umpa_free(umpa_malloc(16)); /* its heap, before the first fork */
  atomic_fetch_add(&started, 1);
  while (!atomic_load(&stop)) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = (r >> 33) % 4 == 0 ? (r >> 20) % (256 << 10) : (r >> 40) % 2048;
    void *p = umpa_malloc(n + 1);
    if (p) memset(p, 0x5A, n + 1);
    /* Trade blocks through a shared array: frees cross threads. */
    void *old = atomic_exchange(&shared[(r >> 50) % 64], p);
    umpa_free(old);
    if ((r & 0xFFF) == 0) umpa_free(umpa_realloc(umpa_malloc(100), 300000));
  }
  return NULL;
}

/* A thread made in the child: its heap is new, and acquiring it retires
 * the orphans, so that it and the forking thread's are left. */
static void *in_child(void *arg) {
  void *p = umpa_malloc(64);
  *(unsigned *)arg = heap_count_in_use();
  umpa_free(p);
  return NULL;
}

static int child(int round, int trim) {
  /* Nothing was done yet to the other threads' heaps. */
  if (heap_count_in_use() != THREADS + 1) return 5;
  if (trim) {
    umpa_malloc_trim(0);
    if (heap_count_in_use() != 1) return 6;
  } else if (!UNDER_TSAN && round % 2) {
    pthread_t t;
    unsigned seen = 0;
    if (pthread_create(&t, NULL, in_child, &seen) != 0 ||
        pthread_join(t, NULL) != 0)
      return 7;
    if (seen != 2) return 8;
  }
  /* Blocks allocated by threads that no longer exist here can be freed. */
  for (int i = 0; i < 64; i++) umpa_free(atomic_exchange(&shared[i], NULL));
  void *keep[100];
  for (int i = 0; i < 10000; i++) {
    size_t n = (size_t)(i * 37) % 5000 + 1;
    void *p = umpa_malloc(n);
    if (!p) return 2;
    memset(p, 1, n);
    if (i % 100 == 0) keep[i / 100] = p;
    else umpa_free(p);
  }
  for (int i = 0; i < 100; i++) umpa_free(keep[i]);
  /* The allocations above ticked: no orphan is left. */
  if (heap_count_in_use() != 1) return 9;
  umpa_malloc_trim(0);
  if (!heap_masks_agree()) return 10;
  /* Large blocks and the page layer work too.  (No umpa_page_check here:
   * runs that other threads had taken out of the buddy at the moment of
   * fork() are theirs, and lost with them; the structure is consistent but
   * the check would count those pages as missing.) */
  for (int i = 0; i < 4; i++) {
    char *big = umpa_malloc((size_t)(i + 1) << 20);
    if (!big) return 3;
    memset(big, 2, (size_t)(i + 1) << 20);
    big = umpa_realloc(big, (size_t)(i + 2) << 20);
    if (!big || big[0] != 2) return 4;
    umpa_free(big);
  }
  return 0;
}

/* The child of a fork whose other thread had stopped halfway through an
 * update of its own heap, which no lock covers.  Such a snapshot is made
 * here by hand: a thread allocates from a superblock and parks; the parent
 * undoes half of an update in that superblock, forks, and puts it back.
 * The child must never take the superblock.  When the child gave the
 * orphans' superblocks to the global heap, a pop whose count was not yet
 * raised kept it looping on a superblock whose count promised a block
 * that its list had lost (the alarm ends such a child), and a carve whose
 * blocks were listed but not yet counted handed each of them out twice. */
#define HALF_SIZE 48
static _Atomic(struct heap *) parked_heap;
static _Atomic int park;

static void *parker(void *arg) {
  (void)arg;
  void *p[40];
  for (int i = 0; i < 40; i++) p[i] = umpa_malloc(HALF_SIZE);
  atomic_store(&parked_heap, umpa_tl_heap);
  atomic_store(&park, 1);
  while (atomic_load(&park) != 2) sched_yield();
  for (int i = 0; i < 40; i++) umpa_free(p[i]);
  return NULL;
}

/* Many blocks of the class, each marked, all checked, within the alarm. */
static int half_done_child(void) {
  alarm(20);
  umpa_malloc_trim(0); /* retires the orphans */
  enum { N = 20000 };
  static uint64_t *v[N];
  for (size_t i = 0; i < N; i++) {
    v[i] = umpa_malloc(HALF_SIZE);
    if (!v[i]) return 2;
    v[i][0] = i;
    v[i][HALF_SIZE / 8 - 1] = ~i;
  }
  for (size_t i = 0; i < N; i++)
    if (v[i][0] != i || v[i][HALF_SIZE / 8 - 1] != ~i) return 3;
  for (size_t i = 0; i < N; i++) umpa_free(v[i]);
  return 0;
}

static void fork_half_done(const char *what) {
  int status = child_status(half_done_child);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "%s: child status %#x", what, status);
}

static void test_half_done(void) {
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, parker, NULL) == 0);
  while (atomic_load(&park) != 1) sched_yield();
  struct heap *h = atomic_load(&parked_heap);
  struct superblock *sb = h->bins[sizeclass_of(HALF_SIZE)].current;
  REQUIRE(sb != &umpa_sb_empty && sb->carved + 8 <= sb_main(sb));
  /* A pop: the block off the list, the count not yet raised. */
  if (!sb->free) REQUIRE(superblock_carve(sb));
  struct block *b = sb->free;
  sb->free = b->next;
  fork_half_done("pop");
  b->next = sb->free;
  sb->free = b;
  /* A carve: blocks listed, not yet counted as carved. */
  struct block *old = sb->free;
  char *first = sb_blocks(sb) + (size_t)sb->carved * sb->size;
  for (int i = 0; i < 8; i++)
    ((struct block *)(first + (size_t)i * sb->size))->next =
        i < 7 ? (struct block *)(first + (size_t)(i + 1) * sb->size) : old;
  sb->free = (struct block *)first;
  fork_half_done("carve");
  sb->free = old;
  /* Never-carved blocks of a fresh superblock read as zero (calloc counts
   * on it): the links written above go again. */
  for (int i = 0; i < 8; i++)
    ((struct block *)(first + (size_t)i * sb->size))->next = NULL;
  atomic_store(&park, 2);
  REQUIRE(pthread_join(t, NULL) == 0);
}

/* While a thread forks (umpa_tl_forking), its acquisitions of the locks
 * the prepare handler took only count, and its releases uncount: the locks
 * stay held until the parent or child handler.  Any other lock (a store
 * stripe that no heap had used when the handler took the stripes') is
 * taken and released for real: released as a no-op, it stayed held. */
static void test_fork_locks(void) {
  ulock_t held, other;
  ulock_init(&held, LOCK_SPIN);
  ulock_init(&other, LOCK_SPIN);
  ulock_acquire_fork(&held);
  umpa_tl_forking = true;
  ulock_acquire(&held); /* a prepare handler that runs after umpa's */
  ulock_acquire(&held);
  ulock_release(&held);
  ulock_release(&held);
  CHECK(atomic_load(&held.xword) != 0);
  ulock_acquire(&other);
  CHECK(atomic_load(&other.xword) != 0);
  ulock_release(&other);
  CHECK(atomic_load(&other.xword) == 0);
  CHECK(ulock_try(&other) && !ulock_try(&held));
  ulock_release(&other);
  /* A full trim in a prepare handler takes and releases every lock the
   * fork way: they stay the fork's. */
  ulock_acquire_fork(&held);
  ulock_release_fork(&held);
  CHECK(held.fork_held == 1 && atomic_load(&held.xword) != 0);
  umpa_tl_forking = false;
  ulock_release_fork(&held);
  CHECK(atomic_load(&held.xword) == 0 && held.fork_held == 0 &&
        held.fork_depth == 0);
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : (int)test_scaled(100);
  umpa_free(umpa_malloc(1)); /* initialise before the threads race */
  test_fork_locks();
  test_half_done();
  pthread_t th[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    REQUIRE(pthread_create(&th[i], NULL, churn, (void *)i) == 0);
  while (atomic_load(&started) < THREADS) sched_yield();
  int failed = 0;
  for (int i = 0; i < rounds; i++) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(child(i, i % 3 == 2));
    int status;
    /* A child stuck on a lock would hang here: CTest's timeout catches it. */
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed++;
      fprintf(stderr, "child %d: status %d\n", i, status);
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  CHECK(failed == 0);
  for (int i = 0; i < 64; i++) umpa_free(atomic_exchange(&shared[i], NULL));
  return check_done("test_mt_fork");
}
