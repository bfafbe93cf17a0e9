/* The blocks early_lib.c's constructor allocates, for early_main.c. */
#ifndef UMPA_TEST_EARLY_H
#define UMPA_TEST_EARLY_H

struct early_blocks {
  int ran;
  char *small, *grown;
  void *zeroed, *aligned, *empty, *from_thread;
  void *left_for_dtor; /* main allocates it, the destructor frees it */
};
extern struct early_blocks early_blocks;

#endif
