/*
 * test_mt_fork.c - fork() while other threads allocate and free: the child
 * must find a consistent heap (no lock left held, no half-done list) and
 * be able to allocate, free blocks the other threads made, and exit.
 *
 * The heaps of the threads that did not come along (orphans) are given
 * away lazily, not in the fork handler: the child finds them still in use,
 * and its first tick, a thread it makes (not under ThreadSanitizer, which
 * ends such a child) or a trim abandons them; a heap made in the child is
 * not an orphan.
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

/* A thread made in the child: its heap is new, and acquiring it abandons
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

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : (int)test_scaled(100);
  umpa_free(umpa_malloc(1)); /* initialise before the threads race */
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
