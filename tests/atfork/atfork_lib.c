/*
 * atfork_lib.c - a library whose constructor registers fork handlers
 * before umpa's constructor runs (under LD_PRELOAD, the program's libraries
 * may be initialised first): enough of them that glibc's table of handlers
 * grows with malloc inside pthread_atfork (the process's first malloc,
 * which once registered umpa's own handlers there and waited for the lock
 * pthread_atfork held), and a prepare handler that allocates and trims
 * (glibc runs it after umpa's, which once held every lock of umpa and made
 * it wait forever).
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int atfork_lib_prepared, atfork_lib_children;

static void nothing(void) {}

static void prepare(void) {
  char *p = malloc(100);
  char *q = malloc(100000);
  if (p && q) {
    memset(p, 1, 100);
    memset(q, 2, 100000);
    atfork_lib_prepared++;
  }
  free(p);
  free(q);
  malloc_trim(0); /* takes every lock of umpa, the fork's own */
  p = malloc(200);
  free(p);
}

static void child(void) {
  void *p = malloc(5000);
  if (p) atfork_lib_children++;
  free(p);
}

__attribute__((constructor)) static void atfork_lib_init(void) {
  for (int i = 0; i < 60; i++) pthread_atfork(nothing, nothing, nothing);
  pthread_atfork(prepare, NULL, child);
}
