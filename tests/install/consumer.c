/* Uses the installed header and library: allocate, grow, free. */
#include <stdio.h>
#include <umpa.h>

int main(void) {
  char *p = userpage_malloc(UMPA_PAGE_SIZE, UMPA_ZERO);
  if (!p || p[0] != 0) return 1;
  p = userpage_realloc(p, UMPA_PAGE_SIZE, 4 * UMPA_PAGE_SIZE, 0);
  if (!p) return 1;
  userpage_free(p, 4 * UMPA_PAGE_SIZE);
  puts("consumer ok");
  return 0;
}
