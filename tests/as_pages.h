/*
 * as_pages.h - for the tests that expect every block up to SMALL_MAX in a
 * superblock: the calling thread's heap serves the first few blocks of
 * each class of 4-8 KiB as pages (heap_as_pages in heap.c), and here it
 * is taken past them.  Include it after internal.h.
 */
#ifndef UMPA_TEST_AS_PAGES_H
#define UMPA_TEST_AS_PAGES_H

/* Malloc and free HEAP_AS_PAGES_FIRST blocks of each class that its heap
 * serves as pages, so that the thread's next blocks of every class come
 * from superblocks (until a class's superblocks go idle for a second). */
static inline void past_as_pages(void) {
  umpa_free(umpa_malloc(1)); /* the classes are set up */
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    size_t n = umpa_class[c].size;
    if (n < PAGE_SIZE || n > HEAP_AS_PAGES_MAX) continue;
    void *p[HEAP_AS_PAGES_FIRST];
    for (int i = 0; i < HEAP_AS_PAGES_FIRST; i++) p[i] = umpa_malloc(n);
    for (int i = 0; i < HEAP_AS_PAGES_FIRST; i++) umpa_free(p[i]);
  }
}

#endif
