/*
 * sizeclass.c - the size classes of the heap and their superblock sizes.
 *
 * 16-byte steps up to 128 bytes (glibc's alignment, so every block is
 * 16-byte aligned), then a number of classes per power of two (`steps`):
 * eight in (256 B, 2 KiB] and (4 KiB, 8 KiB], four in the other ranges up
 * to 32 KiB.  A request just over a class gets the next one, 1/n of the
 * range's bottom more, so the worst internal waste is 15 bytes below 128
 * bytes, under 1/9 (11 %) of the block with eight classes and under 1/5
 * (20 %) with four.
 *
 * Where the eighths are is measured (peak RSS of real programs under
 * LD_PRELOAD).  jq keeps its JSON objects in 392-byte blocks, which four
 * classes per power of two put in 448 (14 % padding: 188.8 MB against
 * glibc's 173.5; eighths: 416 and 179.3 MB).  sqlite's page cache keeps
 * 4368-byte entries (a 4 KiB page and its header): the 5120-byte class
 * padded them by 17 %, 2.4 MB of a 14.5 MB peak, and the eighths there
 * took 7 % off sqlite's peak RSS (perl's too).  Finer is not better
 * everywhere: each class in use keeps a superblock's worth of touched
 * free blocks, and eighths in (128, 256] too raised sqlite's peak from
 * 21.1 to 23.9 MB.  Between 256 bytes and 2 KiB they changed sqlite,
 * python, gcc, clang and node by 2 % or less either way (perl's peak
 * varies by 10 % from run to run), and made batches of 100 blocks freed
 * newest first 8 % slower (more classes, more superblocks touched).
 * (2 KiB, 4 KiB] keeps four for want of room: a class takes a lock on
 * the page that fork writes (struct fork_locks), which is full.
 *
 * Superblocks are 64 KiB up to 1 KiB blocks, 256 KiB up to 8 KiB and
 * 512 KiB up to 32 KiB, so that each holds at least 15 blocks: Hoard's
 * bound on a thread heap's idle memory is a few superblocks per class, so
 * superblocks should be small, but not so small that big blocks waste most
 * of one on the header.
 */
#include "internal.h"

#include <string.h>

struct size_class umpa_class[NUM_CLASSES];
uint8_t umpa_class_of16[SMALL_MAX / 16 + 1];

/* Classes per power of two above 128 bytes, by range: (128, 256] first,
 * (16 KiB, 32 KiB] last. */
#define STEPS 4, 8, 8, 8, 4, 8, 4, 4
#define SUM8(a, b, c, d, e, f, g, h) \
  ((a) + (b) + (c) + (d) + (e) + (f) + (g) + (h))
#define APPLY(m, ...) m(__VA_ARGS__)
static const uint8_t steps[] = {STEPS};
_Static_assert(sizeof steps == 8 && 128 << 8 == SMALL_MAX,
               "one entry per power of two from 128 bytes to SMALL_MAX");
_Static_assert(8 + APPLY(SUM8, STEPS) == NUM_CLASSES,
               "NUM_CLASSES counts the classes of steps[]");

static size_t class_size(unsigned c) {
  if (c < 8) return 16 * (c + 1);
  c -= 8;
  unsigned i = 0;
  while (c >= steps[i]) c -= steps[i++];
  size_t lo = (size_t)128 << i;
  return lo + lo / steps[i] * (c + 1);
}

uint32_t sizeclass_fit(size_t room, size_t size) {
  uint32_t n = (uint32_t)(room / size);
  if (umpa_opt.check) /* room at the end for one bit per block */
    while ((size_t)n * size + (n + 63) / 64 * 8 > room) n--;
  return n;
}

void sizeclass_init(void) {
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    size_t size = class_size(c);
    size_t sb = size <= 1024 ? (64 << 10) : size <= 8192 ? (256 << 10)
                                                          : (512 << 10);
    struct size_class *sc = &umpa_class[c];
    sc->size = (uint32_t)size;
    sc->sb_pages = (uint32_t)(sb >> PAGE_SHIFT);
    /* At the largest colour offset (see capacity_at in superblock.c). */
    sc->capacity = sizeclass_fit(sb - SB_COLOR_MAX - SUPERBLOCK_HEADER, size);
    sc->recip = (((uint64_t)1 << 40) + size - 1) / size;
    unsigned shift = (unsigned)__builtin_ctzll(size);
    uint32_t m = (uint32_t)(size >> shift), inv = m; /* right to 3 bits */
    for (int i = 0; i < 4; i++) inv *= 2 - m * inv; /* Newton: 6, 12, 24, 48 */
    sc->div_inv = inv;
    sc->div_shift = (uint8_t)shift;
    sc->paged = size % PAGE_SIZE == 0;
    size_t carve = 4096 / size;
    sc->carve = (uint32_t)(carve < 1 ? 1 : carve > 64 ? 64 : carve);
  }
  /* A run of entries per class: an entry at a time was 2049 stores and
   * compares, 4 us of every process's start. */
  for (size_t c = 0, i = 0; c < NUM_CLASSES; c++) {
    size_t end = umpa_class[c].size / 16 + 1; /* entries up to its size */
    memset(&umpa_class_of16[i], (int)c, end - i);
    i = end;
  }
}
