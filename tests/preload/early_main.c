/*
 * early_main.c - checks the blocks early_lib.c's constructor allocated
 * before umpa's initialiser ran (see early_lib.c): each is umpa's (its
 * umpa_malloc_usable_size, found with dlsym, is at least what was asked;
 * it is 0 for a pointer umpa does not own), intact, and freed without a
 * complaint.  Exit status 0 when all hold.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "early.h"

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "early_main: %s\n", what);
    failures++;
  }
}

static int all(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v) return 0;
  return 1;
}

int main(void) {
  size_t (*usable)(void *) =
      (size_t (*)(void *))dlsym(RTLD_DEFAULT, "umpa_malloc_usable_size");
  struct early_blocks *e = &early_blocks;
  check(usable != NULL, "libumpa.so is not preloaded");
  check(e->ran, "the early constructor did not run");
  if (failures) return 1;
  check(e->small && usable(e->small) >= 24 &&
            strcmp(e->small, "allocated in a ctor") == 0,
        "malloc(24)");
  check(e->zeroed && usable(e->zeroed) >= 8000 && all(e->zeroed, 8000, 0),
        "calloc(1000, 8)");
  check(e->grown && usable(e->grown) >= 300000 &&
            all((unsigned char *)e->grown, 100, 0x5a),
        "realloc(NULL, 100) then to 300000");
  check(e->aligned && ((uintptr_t)e->aligned & 4095) == 0 &&
            usable(e->aligned) >= 5000,
        "posix_memalign(4096, 5000)");
  check(e->empty && usable(e->empty) > 0, "malloc(0)");
  check(e->from_thread && usable(e->from_thread) >= 777 &&
            all(e->from_thread, 777, 0x77),
        "malloc(777) in a thread the constructor started");
  /* A foreign pointer reads as 0: the checks above do tell. */
  static char not_heap[64];
  check(usable(not_heap) == 0, "a static buffer counted as umpa's");
  free(e->small);
  free(e->zeroed);
  free(e->grown);
  free(e->aligned);
  free(e->empty);
  free(e->from_thread);
  e->left_for_dtor = malloc(40000);
  check(e->left_for_dtor != NULL, "malloc(40000) for the destructor");
  if (failures) return 1;
  puts("early allocations: ok");
  return 0;
}
