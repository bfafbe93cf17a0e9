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

/* Every class's superblocks filled to the last block, every byte of
 * every block written: the marks at a superblock's end (one bit per
 * block, after the blocks, wherever its colour offset put them) and the
 * blocks must not overlap, or the frees below would see marks the writes
 * changed, or the blocks bytes the marks changed. */
static void full_superblocks(void) {
  enum { MAX_BLOCKS = 3 * 4096 };
  static unsigned char *b[MAX_BLOCKS];
  for (unsigned cls = 0; cls < NUM_CLASSES; cls++) {
    size_t size = umpa_class[cls].size, n = 3 * umpa_class[cls].capacity;
    REQUIRE(n <= MAX_BLOCKS);
    for (size_t i = 0; i < n; i++) {
      REQUIRE((b[i] = umpa_malloc(size)));
      memset(b[i], (int)(i * 7 + cls), size);
    }
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
      for (size_t k = 0; k < size; k++)
        wrong += b[i][k] != (unsigned char)(i * 7 + cls);
    CHECK_MSG(wrong == 0, "class %u: %zu bytes changed", cls, wrong);
    for (size_t i = 0; i < n; i++) umpa_free(b[i]);
  }
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
  full_superblocks();
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
