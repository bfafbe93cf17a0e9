/*
 * sizeclass.c - the size classes of the heap and their superblock sizes.
 *
 * 16-byte steps up to 128 bytes (glibc's alignment, so every block is
 * 16-byte aligned), then four classes per power of two up to 32 KiB,
 * except eight between 4 and 8 KiB: the worst internal waste is 15 bytes
 * below 128 bytes, under 20 % of the block above (a request just over
 * 2^k + j*2^(k-2) gets the next class, 2^(k-2) more) and under 12.5 %
 * between 4 and 8 KiB.  That range holds "a page and a header": sqlite's
 * page cache keeps 4368-byte entries (a 4 KiB page and its header), which
 * the 5120-byte class padded by 17 %, 2.4 MB of a 14.5 MB peak in
 * tests/preload's workload; with 4608 its peak RSS fell 7 % (perl's too).
 * Finer classes everywhere cost more than they saved: each class in use
 * keeps a superblock's worth of touched free blocks, and with eight
 * classes per power of two sqlite's peak RSS rose 10 % (8 above 4 KiB:
 * no change).
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

#define FINE_LO 4096 /* (FINE_LO, 2 * FINE_LO]: eight classes, not four */

static size_t class_size(unsigned c) {
  if (c < 8) return 16 * (c + 1);
  if (c < 8 + 4 * 5) /* (128, FINE_LO]: 5 powers of two, quarters */
    return ((size_t)128 << ((c - 8) / 4)) / 4 * (4 + (c - 8) % 4 + 1);
  if (c < 8 + 4 * 5 + 8) /* (FINE_LO, 2 * FINE_LO]: eighths */
    return FINE_LO + FINE_LO / 8 * (c - (8 + 4 * 5) + 1);
  c -= 8 + 4 * 5 + 8; /* (2 * FINE_LO, SMALL_MAX]: quarters */
  return ((size_t)2 * FINE_LO << (c / 4)) / 4 * (4 + c % 4 + 1);
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
