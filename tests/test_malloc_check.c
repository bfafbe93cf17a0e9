/*
 * test_malloc_check.c - UMPA_CHECK=1 catches every double free of a small
 * block (not only the immediate one the default mode sees), also when the
 * second free comes from another thread, and otherwise behaves normally.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#include <malloc.h>

static void double_free_later(void) {
  void *a = umpa_malloc(48), *b = umpa_malloc(48);
  umpa_free(a);
  umpa_free(b); /* a is no longer the head of the free list */
  umpa_free(a);
}

static void *free_it(void *p) {
  umpa_free(p);
  return NULL;
}

static void double_free_cross_thread(void) {
  void *a = umpa_malloc(200);
  pthread_t t;
  pthread_create(&t, NULL, free_it, a);
  pthread_join(t, NULL);
  umpa_free(umpa_malloc(200)); /* unrelated traffic */
  umpa_free(a);
}

static void double_free_aligned(void) {
  void *a = umpa_aligned_alloc(256, 100);
  umpa_free(a);
  umpa_free(a);
}

int main(void) {
  /* CTest runs this with UMPA_CHECK=1 (the library's constructor reads
   * the options before main). */
  REQUIRE(umpa_opt.check || (umpa_free(umpa_malloc(1)), umpa_opt.check));
  /* Normal use works with every check on. */
  void *keep[1000];
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 1000; i++) {
      size_t n = (size_t)(i * 37 + round) % 3000 + 1;
      keep[i] = i % 7 == 0   ? umpa_calloc(1, n)
                : i % 11 == 0 ? umpa_aligned_alloc(64, n)
                             : umpa_malloc(n);
      REQUIRE(keep[i]);
      memset(keep[i], 1, n);
    }
    for (int i = 0; i < 1000; i += 2) keep[i] = umpa_realloc(keep[i], 5000);
    for (int i = 0; i < 1000; i++) umpa_free(keep[i]);
  }
  /* malloc(0) is marked like any block (glibc's regcomp frees one). */
  for (int i = 0; i < 100; i++) umpa_free(umpa_malloc(0));
  /* mallopt does not turn the marking off. */
  CHECK(umpa_mallopt(M_MMAP_THRESHOLD, 512) == 1);
  for (int i = 0; i < 100; i++) umpa_free(umpa_malloc((size_t)i % 600));
  CHECK(umpa_mallopt(M_MMAP_THRESHOLD, 32 * 1024) == 1);
  CHECK(dies_with(double_free_later, "double free"));
  CHECK(dies_with(double_free_cross_thread, "double free"));
  CHECK(dies_with(double_free_aligned, "double free"));
  umpa_malloc_trim(0);
  umpa_page_check();
  return check_done("test_malloc_check");
}
