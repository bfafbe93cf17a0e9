/*
 * bitmap.c - word-at-a-time operations on the page bitmaps of a region.
 *
 * Bits of neighbouring blocks share words, and blocks belong to different
 * threads, so every update is an atomic or/and on the word.
 */
#include "internal.h"

/* Without -mpopcnt the builtin is a libgcc call; this is a few cycles. */
static inline size_t popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
  return (size_t)((x * 0x0101010101010101ull) >> 56);
}

static inline uint64_t mask_of(size_t lo, size_t hi) { /* bits [lo, hi) */
  uint64_t m = hi >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
  return m & ~(((uint64_t)1 << lo) - 1);
}

/* Visit the words covering [from, from+n); `m` masks the bits inside. */
#define FOR_EACH_WORD(from, n, w, m)                                   \
  for (size_t i_ = (from), end_ = (from) + (n), w, hi_; i_ < end_;      \
       i_ = (w + 1) << 6)                                                \
    for (uint64_t m = (w = i_ >> 6, hi_ = end_ - (w << 6),              \
                       mask_of(i_ & 63, hi_ > 64 ? 64 : hi_)),           \
                  once_ = 1;                                             \
         once_; once_ = 0)

size_t bitmap_count_portable(_Atomic uint64_t *map, size_t from, size_t n) {
  size_t total = 0;
  FOR_EACH_WORD(from, n, w, m) {
    total += popcount64(atomic_load_explicit(&map[w], memory_order_relaxed) & m);
  }
  return total;
}

#if defined(__x86_64__)
#include <cpuid.h>
#if defined(__has_include)
#if __has_include(<sys/platform/x86.h>)
#include <sys/platform/x86.h> /* glibc 2.33 and later */
#define UMPA_HAVE_X86_PLATFORM 1
#endif
#endif
#ifndef UMPA_HAVE_X86_PLATFORM
#define UMPA_HAVE_X86_PLATFORM 0
#endif
/* The same with the POPCNT instruction, for processors that have it (all
 * x86-64 since 2008, but not the baseline the library is built for): the
 * large cache counts a span's backed pages on most of its operations, a
 * word at a time, and the instruction takes 1 cycle where the arithmetic
 * takes 12. */
UMPA_HOT
__attribute__((target("popcnt"))) static size_t
count_hard(_Atomic uint64_t *map, size_t from, size_t n) {
  /* The whole words apart, four at a time: the spans counted run to
   * thousands of pages, and FOR_EACH_WORD's mask per word cost half the
   * instructions of Figure 7's large frees and mallocs. */
  if (n == 0) return 0;
  size_t w = from >> 6, end = from + n, last = (end - 1) >> 6;
  uint64_t head = mask_of(from & 63, 64);
  uint64_t tail = mask_of(0, ((end - 1) & 63) + 1);
  if (w == last)
    return (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w], memory_order_relaxed) & head & tail);
  size_t total = (size_t)__builtin_popcountll(
      atomic_load_explicit(&map[w], memory_order_relaxed) & head);
  size_t t1 = 0, t2 = 0, t3 = 0;
  for (w++; w + 4 <= last; w += 4) {
    total += (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w], memory_order_relaxed));
    t1 += (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w + 1], memory_order_relaxed));
    t2 += (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w + 2], memory_order_relaxed));
    t3 += (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w + 3], memory_order_relaxed));
  }
  for (; w < last; w++)
    total += (size_t)__builtin_popcountll(
        atomic_load_explicit(&map[w], memory_order_relaxed));
  return total + t1 + t2 + t3 +
         (size_t)__builtin_popcountll(
             atomic_load_explicit(&map[last], memory_order_relaxed) & tail);
}

/* Ask glibc, which ran CPUID when the process started: in a virtual
 * machine the instruction traps to the hypervisor, and here it took 20 us,
 * a fifth of what umpa added to the start of a short process. */
static bool cpu_has_popcnt(void) {
#if UMPA_HAVE_X86_PLATFORM
  return CPU_FEATURE_ACTIVE(POPCNT);
#else
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_POPCNT);
#endif
}

static bool have_popcnt(void) {
  static _Atomic int known; /* 0: not asked yet, 1: no, 2: yes */
  int k = atomic_load_explicit(&known, memory_order_relaxed);
  if (!k) {
    k = cpu_has_popcnt() ? 2 : 1;
    atomic_store_explicit(&known, k, memory_order_relaxed);
  }
  return k == 2;
}
#else
UMPA_HOT
static size_t count_hard(_Atomic uint64_t *map, size_t from, size_t n) {
  return bitmap_count_portable(map, from, n);
}
static bool have_popcnt(void) { return false; }
#endif

UMPA_HOT
size_t bitmap_count(_Atomic uint64_t *map, size_t from, size_t n) {
  return have_popcnt() ? count_hard(map, from, n)
                       : bitmap_count_portable(map, from, n);
}

UMPA_HOT
void bitmap_set(_Atomic uint64_t *map, size_t from, size_t n) {
  FOR_EACH_WORD(from, n, w, m) {
    if (m == ~(uint64_t)0)
      atomic_store_explicit(&map[w], m, memory_order_relaxed);
    else
      atomic_fetch_or_explicit(&map[w], m, memory_order_relaxed);
  }
}

UMPA_HOT
void bitmap_clear(_Atomic uint64_t *map, size_t from, size_t n) {
  FOR_EACH_WORD(from, n, w, m) {
    if (m == ~(uint64_t)0)
      atomic_store_explicit(&map[w], 0, memory_order_relaxed);
    else
      atomic_fetch_and_explicit(&map[w], ~m, memory_order_relaxed);
  }
}

void bitmap_copy(_Atomic uint64_t *dst, size_t from_d, _Atomic uint64_t *src,
                 size_t from_s, size_t n) {
  /* Runs of equal bits keep this cheap for the mostly-uniform maps the
   * page layer has; it is only used on moves, which cost a syscall. */
  size_t i = 0;
  while (i < n) {
    bool v = bitmap_test(src, from_s + i);
    size_t run = bitmap_find(src, from_s + i, n - i, !v) - (from_s + i);
    if (v) bitmap_set(dst, from_d + i, run);
    else bitmap_clear(dst, from_d + i, run);
    i += run;
  }
}

/* Bits [from, from+len) as a value, len <= 64. */
static uint64_t get_bits(_Atomic uint64_t *map, size_t from, size_t len) {
  size_t w = from >> 6, off = from & 63;
  uint64_t v = atomic_load_explicit(&map[w], memory_order_relaxed) >> off;
  if (off + len > 64)
    v |= atomic_load_explicit(&map[w + 1], memory_order_relaxed)
         << (64 - off);
  return len == 64 ? v : v & (((uint64_t)1 << len) - 1);
}

static void put_word_bits(_Atomic uint64_t *word, uint64_t mask,
                          uint64_t bits) {
  /* A whole word belongs to the caller: no other thread writes it. */
  if (mask == ~(uint64_t)0) {
    atomic_store_explicit(word, bits, memory_order_relaxed);
    return;
  }
  atomic_fetch_and_explicit(word, ~mask, memory_order_relaxed);
  atomic_fetch_or_explicit(word, bits & mask, memory_order_relaxed);
}

static void put_bits(_Atomic uint64_t *map, size_t from, size_t len,
                     uint64_t v) {
  size_t w = from >> 6, off = from & 63;
  size_t first = len < 64 - off ? len : 64 - off;
  put_word_bits(&map[w], mask_of(off, off + first), v << off);
  if (first < len)
    put_word_bits(&map[w + 1], mask_of(0, len - first), v >> first);
}

void bitmap_swap(_Atomic uint64_t *a, size_t ia, _Atomic uint64_t *b,
                 size_t ib, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    size_t len = n - i < 64 ? n - i : 64;
    uint64_t va = get_bits(a, ia + i, len), vb = get_bits(b, ib + i, len);
    put_bits(a, ia + i, len, vb);
    put_bits(b, ib + i, len, va);
  }
}

UMPA_HOT
size_t bitmap_find(_Atomic uint64_t *map, size_t from, size_t n, bool value) {
  /* The first word masked, the whole ones after it plain (see count_hard):
   * the page layer looks over a block's thousands of pages for a bit. */
  if (n == 0) return from;
  size_t end = from + n, w = from >> 6, last = (end - 1) >> 6;
  uint64_t flip = value ? 0 : ~(uint64_t)0;
  uint64_t word = (atomic_load_explicit(&map[w], memory_order_relaxed) ^ flip) &
                  mask_of(from & 63, 64);
  while (!word && w < last)
    word = atomic_load_explicit(&map[++w], memory_order_relaxed) ^ flip;
  size_t at = word ? (w << 6) + (size_t)__builtin_ctzll(word) : end;
  return at < end ? at : end;
}

UMPA_HOT
size_t bitmap_find_last_set(_Atomic uint64_t *map, size_t from) {
  size_t w = from >> 6;
  uint64_t word = atomic_load_explicit(&map[w], memory_order_relaxed) &
                  mask_of(0, (from & 63) + 1);
  for (;;) {
    if (word) return (w << 6) + 63u - (size_t)__builtin_clzll(word);
    if (w == 0) return SIZE_MAX;
    w--;
    word = atomic_load_explicit(&map[w], memory_order_relaxed);
  }
}
