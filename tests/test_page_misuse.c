/*
 * test_page_misuse.c - misuse the page layer can detect ends the process
 * with one line on stderr and SIGABRT, never with silent corruption.  Each
 * case runs in a forked child whose stderr is captured.
 */
#define _GNU_SOURCE

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <umpa.h>
#include <unistd.h>

#include "check.h"

#define PG ((size_t)UMPA_PAGE_SIZE)


static void free_stack_pointer(void) {
  char buf[PG * 2];
  userpage_free((void *)(((uintptr_t)buf + PG) & ~(PG - 1)), PG);
}
static void free_mmap_pointer(void) {
  void *p = mmap(NULL, PG, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  userpage_free(p, PG);
}
static void free_twice(void) {
  void *p = userpage_malloc(3 * PG, 0);
  userpage_free(p, 3 * PG);
  userpage_free(p, 3 * PG);
}
static void free_wrong_size(void) {
  void *p = userpage_malloc(3 * PG, 0);
  userpage_free(p, 4 * PG);
}
static void free_interior(void) {
  char *p = userpage_malloc(3 * PG, 0);
  userpage_free(p + PG, PG);
}
static void free_misaligned(void) {
  char *p = userpage_malloc(3 * PG, 0);
  userpage_free(p + 8, 3 * PG);
}
static void realloc_wrong_size(void) {
  void *p = userpage_malloc(3 * PG, 0);
  userpage_realloc(p, PG, 8 * PG, 0);
}
static void realloc_freed(void) {
  void *p = userpage_malloc(3 * PG, 0);
  userpage_free(p, 3 * PG);
  userpage_realloc(p, 3 * PG, 8 * PG, 0);
}

int main(void) {
  CHECK(dies_with(free_stack_pointer, "not allocated by umpa"));
  CHECK(dies_with(free_mmap_pointer, "not allocated by umpa"));
  CHECK(dies_with(free_twice, "double free"));
  CHECK(dies_with(free_wrong_size, "size does not match"));
  CHECK(dies_with(free_interior, "interior pointer"));
  CHECK(dies_with(free_misaligned, "not allocated by umpa"));
  CHECK(dies_with(realloc_wrong_size, "size does not match"));
  CHECK(dies_with(realloc_freed, "double free"));
  return check_done("test_page_misuse");
}
