/*
 * test_mt_thread_exit.c - threads exit while blocks they allocated are
 * still live; other threads free those blocks later.  Frees must work,
 * the exited threads' superblocks must be reused or released, and after
 * everything is freed and trimmed the memory held is back near where it
 * started.  Also: a thread whose destructor allocates after umpa gave its
 * heap up is served without leaking a new heap, and a trim gives back the
 * front pages of the heaps that exited threads left pooled, which serve
 * new threads again.  And a thread whose first malloc comes in the last
 * round of key destructors, too late for umpa's destructor, does not keep
 * its heap after it is gone.
 */
#include "check.h"
#include "internal.h"

#include <limits.h> /* PTHREAD_DESTRUCTOR_ITERATIONS */
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PER_THREAD 20000
#define ROUNDS 8

struct batch {
  void *blocks[PER_THREAD];
};

static void *producer(void *arg) {
  struct batch *b = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    size_t n = i % 10 == 0 ? 40000 + (size_t)i : 16 + (size_t)(i % 700);
    b->blocks[i] = umpa_malloc(n);
    if (b->blocks[i]) memset(b->blocks[i], i & 0xFF, n < 64 ? n : 64);
  }
  return NULL; /* exits with every block live */
}

static pthread_key_t late_key;
static _Atomic int late_gone, late_new_heap;
static void late_destructor(void *p) {
  /* Runs after umpa's own destructor may have given the heap up. */
  bool gone = umpa_tl_gone;
  umpa_free(p);
  void *q = umpa_malloc(200);
  memset(q, 3, 200);
  umpa_free(q);
  if (gone) {
    /* Served by the shared heap: the thread did not get a heap again. */
    atomic_fetch_add(&late_gone, 1);
    if (umpa_tl_heap != HEAP_NONE) atomic_fetch_add(&late_new_heap, 1);
  }
}

static void *late_allocator(void *arg) {
  (void)arg;
  pthread_setspecific(late_key, umpa_malloc(100));
  for (int i = 0; i < 1000; i++) umpa_free(umpa_malloc(64));
  return NULL;
}

/* Threads alive at once, so each has a heap of its own. */
#define POOLED 32
static pthread_barrier_t pool_bar;
static struct heap *pooled[POOLED];

/* Allocate blocks of 28 sizes from 16 B to 32 KiB, each a quarter above
 * the last (bins and direct slots all over the heap's front page are
 * written), check and free them. */
static void *every_class(void *arg) {
  static const size_t top = 32768;
  void *blocks[64];
  int n = 0;
  for (size_t size = 16; size <= top && n < 64; size += size / 4 + 16) {
    blocks[n] = umpa_malloc(size);
    REQUIRE(blocks[n]);
    memset(blocks[n], n + 1, size);
    n++;
  }
  pooled[(uintptr_t)arg] = umpa_tl_heap;
  pthread_barrier_wait(&pool_bar);
  for (int i = 0; i < n; i++) {
    if (((unsigned char *)blocks[i])[0] != i + 1) {
      fprintf(stderr, "failure: block %d changed\n", i);
      exit(1);
    }
    umpa_free(blocks[i]);
  }
  return NULL;
}

static void run_pooled_threads(void) {
  pthread_t t[POOLED];
  REQUIRE(pthread_barrier_init(&pool_bar, NULL, POOLED) == 0);
  for (uintptr_t i = 0; i < POOLED; i++)
    REQUIRE(pthread_create(&t[i], NULL, every_class, (void *)i) == 0);
  for (int i = 0; i < POOLED; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&pool_bar);
}

/* Of the front pages of the heaps in pooled[], how many are resident. */
static size_t heap_front_resident(size_t front) {
  size_t resident = 0;
  for (int i = 0; i < POOLED; i++)
    resident += resident_pages(pooled[i], front << PAGE_SHIFT);
  return resident;
}

/* Heaps of exited threads are pooled for new threads; a trim gives back
 * their front pages (bins and direct slots, empty in a pooled heap), and
 * a thread that takes one again finds it set up as a new one. */
static void test_pooled_heaps_trimmed(void) {
  const size_t front = offsetof(struct heap, ticks) >> PAGE_SHIFT;
  CHECK_MSG(front >= 1, "no whole page in front of a heap's pool fields");
  run_pooled_threads();
  for (int i = 0; i < POOLED; i++)
    for (int k = 0; k < i; k++) REQUIRE(pooled[i] != pooled[k]);
  CHECK(heap_front_resident(front) == POOLED * front);
  umpa_malloc_trim(0);
  size_t left = heap_front_resident(front);
  CHECK_MSG(left == 0, "%zu front pages of %d pooled heaps still resident",
            left, POOLED);
  /* Taken again, they serve all those sizes (every_class checks). */
  struct heap *before[POOLED];
  memcpy(before, pooled, sizeof before);
  run_pooled_threads();
  size_t reused = 0;
  for (int i = 0; i < POOLED; i++)
    for (int k = 0; k < POOLED; k++) reused += pooled[i] == before[k];
  CHECK_MSG(reused == POOLED, "%zu of %d heaps reused", reused, POOLED);
  umpa_malloc_trim(0);
}

/* A key whose destructor sets it again until glibc's last round, and
 * allocates there for the first time in its thread: umpa's key is set
 * after glibc's last look at the keys, so umpa's destructor never runs. */
#define LAST_THREADS 100
#define LAST_BLOCKS 20
static pthread_key_t last_key;
static void *last_blocks[LAST_THREADS][LAST_BLOCKS];
static _Atomic int last_heaped; /* threads that got a heap there */

/* The key's value: the thread's number << 8 | the round. */
static void last_destructor(void *v) {
  uintptr_t round = (uintptr_t)v & 0xFF, t = (uintptr_t)v >> 8;
  if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(last_key, (void *)((uintptr_t)v + 1));
    return;
  }
  REQUIRE(t < LAST_THREADS);
  for (int i = 0; i < LAST_BLOCKS; i++) {
    size_t n = 16 + (size_t)i * 200;
    last_blocks[t][i] = umpa_malloc(n);
    REQUIRE(last_blocks[t][i]);
    memset(last_blocks[t][i], (int)t, n);
  }
  if (umpa_tl_heap != HEAP_NONE && !umpa_tl_gone)
    atomic_fetch_add(&last_heaped, 1);
}

static void *last_round_thread(void *arg) {
  /* No malloc before the destructors: keys below 32 need none. */
  pthread_setspecific(last_key, (void *)((uintptr_t)arg << 8 | 1));
  return NULL;
}

/* Each such thread leaves a heap in use; a thread that would make a new
 * heap finds the dead threads' ones first and gives them up (heap_acquire's
 * sweep), so they are no more than the most heaps ever in use at once,
 * however many threads come and go, and a trim gives them all up. */
static void test_first_malloc_in_last_round(void) {
  REQUIRE(pthread_key_create(&last_key, last_destructor) == 0);
  unsigned before = heap_count_in_use(), made = heap_count_made();
  for (uintptr_t t = 0; t < LAST_THREADS; t++) {
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, last_round_thread, (void *)t) == 0);
    pthread_join(th, NULL);
  }
  CHECK_MSG(last_heaped == LAST_THREADS,
            "%d of %d threads got a heap in the last round", (int)last_heaped,
            LAST_THREADS);
  /* The threads took the pooled heaps first (test_pooled_heaps_trimmed
   * left 32), then swept.  Two more at most: pthread_join returns before
   * the kernel reaps the thread, so the thread before may still count as
   * alive at the next one's sweep. */
  unsigned now = heap_count_in_use(), more = heap_count_made() - made;
  CHECK_MSG(more <= 2, "%u heaps made for %d threads, %u in use", more,
            LAST_THREADS, now);
  for (int tries = 0; tries < 100 && now > before; tries++) {
    umpa_malloc_trim(0);
    now = heap_count_in_use();
    if (now > before) usleep(10000);
  }
  CHECK_MSG(now == before, "%u heaps in use after a trim (%u before)", now,
            before);
  /* Their blocks, in the global heap now, are intact and freed here. */
  for (int t = 0; t < LAST_THREADS; t++)
    for (int i = 0; i < LAST_BLOCKS; i++) {
      unsigned char *p = last_blocks[t][i];
      CHECK(p[0] == (unsigned char)t && p[16 + i * 200 - 1] == (unsigned char)t);
      umpa_free(p);
    }
  umpa_malloc_trim(0);
}

/* Short-lived threads, each taking a 200 KB block (and a few small ones)
 * that others free later, with two threads churning and trimming beside
 * them: the large cache grows often, by several threads at once.  Each saw the same
 * free run of the stretch's size, took it or grew a region for it: 14 to
 * 20 regions of up to 1 GiB in 2 s (17 GiB reserved for 3 MB of RSS). */
#define HAND_SLOTS 4096
static char *_Atomic hand[HAND_SLOTS];
static _Atomic unsigned hand_next;
static _Atomic bool hand_stop;

static void hand_over(char *p, size_t n) {
  memset(p, (int)(n & 0xFF), n < 64 ? n : 64);
  *(size_t *)p = n;
  unsigned i = atomic_fetch_add(&hand_next, 1) % HAND_SLOTS;
  char *old = atomic_exchange(&hand[i], p);
  if (old) umpa_free(old);
}

static void *short_thread(void *arg) {
  uintptr_t seed = (uintptr_t)arg;
  for (int i = 0; i < 8; i++) {
    size_t n = i == 7 ? 200000 : 16 + (seed * 7919 + (uintptr_t)i * 104729) % 3000;
    char *p = umpa_malloc(n);
    REQUIRE(p);
    hand_over(p, n);
  }
  return NULL;
}

static void *churner(void *arg) {
  uint64_t x = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
  char *mine[256] = {0};
  while (!atomic_load(&hand_stop)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    unsigned i = (unsigned)(x % 256);
    if (mine[i]) {
      umpa_free(mine[i]);
      mine[i] = NULL;
    } else {
      size_t n = x % 50 == 0 ? 100000 : 1 + x % 5000;
      mine[i] = umpa_malloc(n);
      REQUIRE(mine[i]);
      memset(mine[i], 1, n < 256 ? n : 256);
    }
    /* The large cache flushed now and then: the next blocks regrow it. */
    if (x % 1000 == 0) umpa_malloc_trim(0);
  }
  for (int i = 0; i < 256; i++) umpa_free(mine[i]);
  return NULL;
}

static void test_short_threads_large_blocks(void) {
  uint64_t regions = region_count();
  pthread_t churn[2];
  for (uintptr_t i = 0; i < 2; i++)
    REQUIRE(pthread_create(&churn[i], NULL, churner, (void *)(i + 1)) == 0);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uintptr_t made = 0;
  do {
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
      REQUIRE(pthread_create(&th[i], NULL, short_thread, (void *)made++) == 0);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) <
           1500000000L);
  atomic_store(&hand_stop, true);
  for (int i = 0; i < 2; i++) pthread_join(churn[i], NULL);
  for (int i = 0; i < HAND_SLOTS; i++) {
    char *p = atomic_exchange(&hand[i], NULL);
    if (p) umpa_free(p);
  }
  uint64_t more = region_count() - regions;
  fprintf(stderr, "%lu short threads: %llu regions more\n", (unsigned long)made,
          (unsigned long long)more);
  CHECK_MSG(more <= 4, "%llu regions made for %lu short threads",
            (unsigned long long)more, (unsigned long)made);
  umpa_malloc_trim(0);
}

/* test_short_threads_large_blocks in a process of its own (regions as a
 * fresh process has them: small ones first, doubling). */
static void run_fresh(const char *what) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execl("/proc/self/exe", "test_mt_thread_exit", what, (char *)NULL);
    _exit(127);
  }
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "%s: status %#x", what, status);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "short-threads") == 0) {
    run_fresh("short-threads");
    return check_done("test_mt_thread_exit (short threads)");
  }
  static struct batch batches[2];
  umpa_malloc_trim(0);
  struct umpa_mallinfo start = umpa_mallinfo();
  for (int round = 0; round < ROUNDS; round++) {
    pthread_t t;
    struct batch *b = &batches[round % 2];
    REQUIRE(pthread_create(&t, NULL, producer, b) == 0);
    pthread_join(t, NULL);
    /* The producer is gone: free its blocks from here. */
    for (int i = 0; i < PER_THREAD; i++) {
      CHECK(b->blocks[i] != NULL);
      if (b->blocks[i]) CHECK(((unsigned char *)b->blocks[i])[0] == (i & 0xFF));
      umpa_free(b->blocks[i]);
    }
  }
  umpa_malloc_trim(0);
  struct umpa_mallinfo end = umpa_mallinfo();
  fprintf(stderr, "arena at start %zu, after %d rounds and trim %zu\n",
          start.arena, ROUNDS, end.arena);
  CHECK(end.uordblks <= start.uordblks);
  /* Superblocks of exited threads were released, not kept. */
  CHECK_MSG(end.arena <= start.arena + (start.arena / 10) + (256 << 10),
            "arena %zu vs %zu", end.arena, start.arena);

  REQUIRE(pthread_key_create(&late_key, late_destructor) == 0);
  for (int i = 0; i < 50; i++) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, late_allocator, NULL) == 0);
    pthread_join(t, NULL);
  }
  /* glibc runs the destructors in the order the keys were made, umpa's
   * first: every late destructor ran after the heap was given up. */
  CHECK_MSG(late_gone == 50, "%d of 50 late destructors after umpa's",
            (int)late_gone);
  CHECK_MSG(late_new_heap == 0, "%d threads got a heap again",
            (int)late_new_heap);
  umpa_malloc_trim(0);
  struct umpa_mallinfo after = umpa_mallinfo();
  CHECK_MSG(after.arena <= start.arena + (start.arena / 10) + (1 << 20),
            "arena %zu after late destructors", after.arena);
  test_pooled_heaps_trimmed();
  /* ThreadSanitizer ends a thread's state in the last round of key
   * destructors itself: code it instruments may not run after that. */
  if (!UNDER_TSAN) test_first_malloc_in_last_round();
  test_short_threads_large_blocks();
  umpa_page_check();
  return check_done("test_mt_thread_exit");
}
