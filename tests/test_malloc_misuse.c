/*
 * test_malloc_misuse.c - free/realloc of pointers umpa did not hand out,
 * double frees it can detect cheaply, and a realloc or malloc_usable_size
 * of a block freed already (as cheaply: cached, or held by the thread for
 * its next malloc of the size) end the process with one line on
 * stderr and SIGABRT.  malloc_usable_size of a foreign pointer answers 0.
 * Each case runs in a forked child whose stderr is captured.
 */
#define _GNU_SOURCE

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <umpa.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"


static void free_stack(void) {
  char buf[64];
  umpa_free(buf + 16);
}
static void free_mmap(void) {
  umpa_free(mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
}
static void free_twice_small(void) {
  void *p = umpa_malloc(40);
  umpa_free(p);
  umpa_free(p);
}
static void free_twice_large(void) {
  void *p = umpa_malloc(1 << 20);
  umpa_free(p);
  umpa_free(p);
}
/* A page-aligned small block (posix_memalign(4096, ...) from a paged
 * class): the block after the header's page. */
static void free_twice_paged(void) {
  void *p = NULL;
  if (umpa_posix_memalign(&p, 4096, 4096)) return;
  umpa_free(p);
  umpa_free(p);
}
static void free_interior_paged(void) {
  char *p = umpa_valloc(8192);
  umpa_free(p + 4096);
}
static void free_interior_small(void) {
  char *p = umpa_malloc(64);
  umpa_free(p + 16);
}
static void free_interior_odd_class(void) {
  /* 192 = 3 * 64: 64 bytes in passes a power-of-two test, not this one. */
  char *p = umpa_malloc(192);
  umpa_free(p + 64);
}
static void free_twice_stored(void) {
  /* Emptied superblocks wait whole in the global heap's store: a free
   * into one is a free of a block that is free already. */
  static void *p[8192];
  for (int i = 0; i < 8192; i++) p[i] = umpa_malloc(64);
  for (int i = 0; i < 8192; i++) umpa_free(p[i]);
  for (int i = 0; i < 8192; i++)
    if (superblock_of(p[i]) && superblock_of(p[i])->group == SB_STORED)
      umpa_free(p[i]);
  _exit(3); /* nothing was stored */
}
static void free_twice_global(void) {
  /* Blocks freed in random order leave superblocks equally full, and
   * Hoard's threshold hands most of them to the global heap: a free into
   * one goes straight onto its list under the class lock. */
  static void *p[20000];
  for (int i = 0; i < 20000; i++) p[i] = umpa_malloc(64);
  uint64_t r = 7;
  for (int i = 19999; i > 0; i--) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    int j = (int)((r >> 33) % (uint64_t)(i + 1));
    void *t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  for (int i = 0; i < 20000; i++) {
    struct superblock *sb = superblock_of(p[i]);
    bool global = atomic_load(&sb->xowner) == &umpa_heap_global;
    umpa_free(p[i]);
    if (global && atomic_load(&sb->xowner) == &umpa_heap_global)
      umpa_free(p[i]);
  }
  _exit(3); /* no superblock went global */
}
static void free_interior_large(void) {
  char *p = umpa_malloc(100000);
  umpa_free(p + 4096);
}
static void free_page_block(void) {
  /* A userpage block is not a malloc block. */
  umpa_free(userpage_malloc(8192, 0));
}
/* Use after free, caught as cheaply as free catches a double free: the
 * small block the owner freed last, and any cached large block. */
static void realloc_freed_small(void) {
  void *p = umpa_malloc(40);
  umpa_free(p);
  umpa_realloc(p, 80);
}
static void realloc_freed_large(void) {
  void *p = umpa_malloc(1 << 20);
  umpa_free(p);
  umpa_realloc(p, 2 << 20);
}
/* Within the block's pages realloc changes nothing, but must still see
 * that the block was freed: cached, or given back to the page layer. */
static void realloc_freed_large_same_pages(void) {
  char *p = umpa_malloc(1 << 20);
  umpa_free(p);
  umpa_realloc(p, (1 << 20) - 100);
}
static void realloc_released_large_same_pages(void) {
  umpa_free(umpa_malloc(64)); /* options parsed: the setting stays */
  umpa_opt.large_cache = 0;
  umpa_opt.large_cache_fixed = true;
  char *p = umpa_malloc(1 << 20);
  umpa_free(p);
  umpa_realloc(p, (1 << 20) - 100);
}
/* The same after a realloc of the block, which the thread then finds
 * again without the region map (umpa_realloc's realloc_last). */
static void realloc_freed_large_resized(void) {
  char *p = umpa_realloc(umpa_malloc(100000), 100016);
  umpa_free(p);
  umpa_realloc(p, 100032);
}
static void realloc_released_large_resized(void) {
  umpa_free(umpa_malloc(64));
  umpa_opt.large_cache = 0;
  umpa_opt.large_cache_fixed = true;
  char *p = umpa_realloc(umpa_malloc(100000), 100016);
  umpa_free(p);
  umpa_realloc(p, 100032);
}
/* A block the thread holds for its next malloc of the size (held.c). */
static void free_twice_held(void) {
  void *p = umpa_malloc(64 * 1024);
  umpa_free(p);
  umpa_free(p);
}
static void realloc_held(void) {
  void *p = umpa_malloc(64 * 1024);
  umpa_free(p);
  umpa_realloc(p, 64 * 1024 - 16);
}
static void usable_held(void) {
  void *p = umpa_malloc(64 * 1024);
  umpa_free(p);
  umpa_malloc_usable_size(p);
}
static void usable_freed_large(void) {
  void *p = umpa_malloc(1 << 20);
  umpa_free(p);
  umpa_malloc_usable_size(p);
}
static void realloc_stack(void) {
  char buf[64];
  umpa_realloc(buf, 100);
}
static void usable_foreign(void) {
  char buf[64];
  /* Must not abort: exit normally with the answer in the status. */
  _exit(umpa_malloc_usable_size(buf) == 0 ? 0 : 1);
}

int main(void) {
  CHECK(dies_with(free_stack, "not allocated by umpa"));
  CHECK(dies_with(free_mmap, "not allocated by umpa"));
  CHECK(dies_with(free_twice_small, "double free"));
  CHECK(dies_with(free_twice_large, "double free"));
  CHECK(dies_with(free_twice_stored, "double free"));
  CHECK(dies_with(free_twice_global, "double free"));
  CHECK(dies_with(free_interior_small, "not allocated by umpa"));
  CHECK(dies_with(free_twice_paged, "double free"));
  CHECK(dies_with(free_interior_paged, "not allocated by umpa"));
  CHECK(dies_with(free_interior_odd_class, "not allocated by umpa"));
  CHECK(dies_with(free_interior_large, "not allocated by umpa"));
  CHECK(dies_with(free_page_block, "not allocated by umpa"));
  CHECK(dies_with(realloc_stack, "not allocated by umpa"));
  CHECK(dies_with(realloc_freed_small, "realloc(0x"));
  CHECK(dies_with(realloc_freed_small, "block was freed already"));
  CHECK(dies_with(realloc_freed_large, "block was freed already"));
  CHECK(dies_with(realloc_freed_large_same_pages, "block was freed already"));
  CHECK(dies_with(realloc_released_large_same_pages, "freed already"));
  CHECK(dies_with(realloc_freed_large_resized, "block was freed already"));
  CHECK(dies_with(realloc_released_large_resized, "freed already"));
  CHECK(dies_with(usable_freed_large, "block was freed already"));
  CHECK(dies_with(free_twice_held, "double free"));
  CHECK(dies_with(realloc_held, "block was freed already"));
  CHECK(dies_with(usable_held, "block was freed already"));
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) usable_foreign();
  int status;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return check_done("test_malloc_misuse");
}
