/*
 * test_bitmap.c - the page bitmaps against a byte-per-bit reference, over
 * random ranges that start and end inside and across words.
 */
#include "check.h"
#include "internal.h"

#include <string.h>

#define BITS 640

static uint64_t rng = 88172645463325252ull;
static size_t rnd(size_t n) {
  return (size_t)(xorshift64(&rng) % n);
}

int main(void) {
  static _Atomic uint64_t map[BITS / 64], dst[BITS / 64];
  static char ref[BITS], rdst[BITS];
  for (int it = 0; it < 100000; it++) {
    size_t a = rnd(BITS), n = rnd(BITS - a + 1);
    int op = (int)rnd(3);
    if (op == 0) {
      bitmap_set(map, a, n);
      memset(ref + a, 1, n);
    } else if (op == 1) {
      bitmap_clear(map, a, n);
      memset(ref + a, 0, n);
    }
    size_t count = 0;
    for (size_t i = a; i < a + n; i++) count += (size_t)ref[i];
    CHECK(bitmap_count(map, a, n) == count);
    CHECK(bitmap_count_portable(map, a, n) == count);
    for (int v = 0; v < 2; v++) {
      size_t f = a + n;
      for (size_t i = a; i < a + n; i++)
        if (ref[i] == v) {
          f = i;
          break;
        }
      CHECK(bitmap_find(map, a, n, v) == f);
    }
    size_t last = SIZE_MAX;
    for (size_t i = 0; i <= a && a < BITS; i++)
      if (ref[i]) last = i;
    if (a < BITS) CHECK(bitmap_find_last_set(map, a) == last);
    if (it % 10 == 0) {
      size_t m = rnd(BITS / 2), s = rnd(BITS - m), d = rnd(BITS - m);
      bitmap_copy(dst, d, map, s, m);
      memcpy(rdst + d, ref + s, m);
      for (size_t i = 0; i < BITS; i++)
        if (bitmap_test(dst, i) != (bool)rdst[i]) {
          CHECK(!"copy");
          break;
        }
    }
    if (it % 10 == 5) {
      size_t m = rnd(BITS / 2), s = rnd(BITS - m), d = rnd(BITS - m);
      char tmp[BITS];
      bitmap_swap(dst, d, map, s, m);
      memcpy(tmp, rdst + d, m);
      memcpy(rdst + d, ref + s, m);
      memcpy(ref + s, tmp, m);
      for (size_t i = 0; i < BITS; i++)
        if (bitmap_test(dst, i) != (bool)rdst[i] ||
            bitmap_test(map, i) != (bool)ref[i]) {
          CHECK(!"swap");
          break;
        }
    }
    if (check_failures > 10) break;
  }
  return check_done("test_bitmap");
}
