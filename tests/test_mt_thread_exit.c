/*
 * test_mt_thread_exit.c - threads exit while blocks they allocated are
 * still live; other threads free those blocks later.  Frees must work,
 * the exited threads' superblocks must be reused or released, and after
 * everything is freed and trimmed the memory held is back near where it
 * started.  Also: a thread whose destructor allocates after umpa gave its
 * heap up is served without leaking a new heap.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>
#include <string.h>

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
static void late_destructor(void *p) {
  /* Runs after umpa's own destructor may have given the heap up. */
  umpa_free(p);
  void *q = umpa_malloc(200);
  memset(q, 3, 200);
  umpa_free(q);
}

static void *late_allocator(void *arg) {
  (void)arg;
  pthread_setspecific(late_key, umpa_malloc(100));
  for (int i = 0; i < 1000; i++) umpa_free(umpa_malloc(64));
  return NULL;
}

int main(void) {
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
  umpa_malloc_trim(0);
  struct umpa_mallinfo after = umpa_mallinfo();
  CHECK_MSG(after.arena <= start.arena + (start.arena / 10) + (1 << 20),
            "arena %zu after late destructors", after.arena);
  umpa_page_check();
  return check_done("test_mt_thread_exit");
}
