/*
 * dlopen_umpa.c - libumpa.so loaded with dlopen() into a running program
 * (not linked, not preloaded): its initial-exec TLS must fit the space
 * glibc keeps for late libraries, and the umpa_ names must work beside the
 * system malloc from several threads, frees crossing threads included.
 * The program's own malloc stays glibc's (RTLD_LOCAL: the library's
 * standard names interpose nothing).
 *
 * Usage: dlopen_umpa PATH_TO_LIBUMPA_SO
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define ROUNDS 20000
#define SLOTS 256

static void *(*u_malloc)(size_t);
static void (*u_free)(void *);
static void *(*u_realloc)(void *, size_t);
static void *(*u_calloc)(size_t, size_t);
static size_t (*u_usable)(void *);

static void *_Atomic handoff[THREADS][SLOTS];
static _Atomic int failures;

static void fail(const char *what) {
  fprintf(stderr, "dlopen_umpa: %s\n", what);
  failures++;
}

static size_t size_of(uint64_t *r) {
  *r ^= *r << 13;
  *r ^= *r >> 7;
  *r ^= *r << 17;
  return *r % 100 < 95 ? 1 + *r / 100 % 2048 : 1 + *r / 100 % (2 << 20);
}

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  uint64_t r = 0x9e3779b97f4a7c15u * (uint64_t)(me + 1);
  for (int i = 0; i < ROUNDS; i++) {
    size_t n = size_of(&r);
    unsigned char *p = i % 7 ? u_malloc(n) : u_calloc(1, n);
    if (!p) {
      fail("allocation failed");
      return NULL;
    }
    if (i % 7 == 0 && (p[0] | p[n - 1])) fail("calloc block not zero");
    if (u_usable(p) < n) fail("usable size below the request");
    memset(p, (unsigned char)me, n);
    if (i % 5 == 0) {
      p = u_realloc(p, n * 2);
      if (!p || p[n - 1] != (unsigned char)me) fail("realloc lost contents");
    }
    /* Hand the block to the next thread; free what the previous left. */
    void *old = atomic_exchange(&handoff[(me + 1) % THREADS][i % SLOTS], p);
    u_free(old);
    void *mine = atomic_exchange(&handoff[me][(i * 7) % SLOTS], NULL);
    u_free(mine);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: dlopen_umpa PATH_TO_LIBUMPA_SO\n");
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen_umpa: dlopen: %s\n", dlerror());
    return 1;
  }
  u_malloc = (void *(*)(size_t))dlsym(lib, "umpa_malloc");
  u_free = (void (*)(void *))dlsym(lib, "umpa_free");
  u_realloc = (void *(*)(void *, size_t))dlsym(lib, "umpa_realloc");
  u_calloc = (void *(*)(size_t, size_t))dlsym(lib, "umpa_calloc");
  u_usable = (size_t(*)(void *))dlsym(lib, "umpa_malloc_usable_size");
  if (!u_malloc || !u_free || !u_realloc || !u_calloc || !u_usable) {
    fprintf(stderr, "dlopen_umpa: dlsym: %s\n", dlerror());
    return 1;
  }
  /* The program's malloc is still the system's: a glibc block frees fine
   * with free(), and umpa's with umpa_free(). */
  char *sys = malloc(100), *um = u_malloc(100);
  if (!sys || !um) fail("first allocations failed");
  free(sys);
  u_free(um);

  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++)
    if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) != 0) {
      fail("pthread_create");
      return 1;
    }
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  for (int t = 0; t < THREADS; t++)
    for (int s = 0; s < SLOTS; s++) u_free(atomic_exchange(&handoff[t][s], NULL));
  printf("dlopen_umpa: %d threads x %d rounds, %d failures\n", THREADS, ROUNDS,
         (int)failures);
  return failures ? 1 : 0;
}
