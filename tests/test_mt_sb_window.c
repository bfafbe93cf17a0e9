/*
 * test_mt_sb_window.c - frees read the fast superblock map's window while
 * another thread grows it.
 *
 * New regions are reserved below the first one, so the window's low end
 * falls as the process grows.  With the window's bounds in two words, a
 * free could pair the new low end with the old length, a window that no
 * longer reached the first region, and its small block was taken for a
 * foreign pointer: an abort, in 4 of 40 runs here.  Each run
 * is a fresh child (regions, once made, stay), whose one thread frees and
 * mallocs small blocks in the first region while the other reserves big
 * lazy blocks, each needing a new region.
 */
#include "check.h"
#include "internal.h"

#include <pthread.h>

static _Atomic int stop;

static void *grower(void *arg) {
  (void)arg;
  for (size_t i = 0; i < 24 && !atomic_load(&stop); i++)
    if (!umpa_malloc((64 + i * 64) << 20)) break; /* untouched, kept */
  atomic_store(&stop, 1);
  return NULL;
}

static int run(void) {
  void *keep[64];
  for (int i = 0; i < 64; i++) keep[i] = umpa_malloc(100);
  pthread_t t;
  if (pthread_create(&t, NULL, grower, NULL) != 0) return 2;
  while (!atomic_load(&stop))
    for (int i = 0; i < 64; i++) {
      umpa_free(keep[i]);
      keep[i] = umpa_malloc(100);
    }
  pthread_join(t, NULL);
  for (int i = 0; i < 64; i++) umpa_free(keep[i]);
  return 0;
}

int main(void) {
  int runs = (int)test_scaled(200);
  for (int i = 0; i < runs; i++) {
    int status = child_status(run);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "run %d: child status %#x", i, status);
  }
  return check_done("test_mt_sb_window");
}
