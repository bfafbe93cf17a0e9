/*
 * early_lib.c - a library preloaded after libumpa.so
 * (LD_PRELOAD="libumpa.so libearly.so"), so that ld.so runs its
 * constructor before umpa's: its allocations are the process's first
 * through umpa's names, made before umpa's own initialiser, and one of
 * them from a thread the constructor starts.  early_main checks that each
 * block is umpa's and intact, and frees them; the destructor frees what
 * main leaves, after main has returned.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "early.h"

struct early_blocks early_blocks;

static void *thread_alloc(void *arg) {
  (void)arg;
  char *p = malloc(777);
  if (p) memset(p, 0x77, 777);
  return p;
}

__attribute__((constructor(101))) static void early_ctor(void) {
  struct early_blocks *e = &early_blocks;
  e->small = malloc(24);
  if (e->small) strcpy(e->small, "allocated in a ctor");
  e->zeroed = calloc(1000, 8);
  e->grown = realloc(NULL, 100);
  if (e->grown) {
    memset(e->grown, 0x5a, 100);
    e->grown = realloc(e->grown, 300000); /* small to large */
  }
  if (posix_memalign(&e->aligned, 4096, 5000) != 0) e->aligned = NULL;
  e->empty = malloc(0);
  free(malloc(3000));
  pthread_t t;
  if (pthread_create(&t, NULL, thread_alloc, NULL) == 0)
    pthread_join(t, &e->from_thread);
  e->ran = 1;
}

__attribute__((destructor)) static void early_dtor(void) {
  free(early_blocks.left_for_dtor);
}
