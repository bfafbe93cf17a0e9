/*
 * sizeclass.c - the size classes of the heap and their superblock sizes.
 *
 * 16-byte steps up to 128 bytes (glibc's alignment, so every block is
 * 16-byte aligned), then four classes per power of two up to 32 KiB: the
 * worst internal waste is 15 bytes below 128 bytes and under 20 % of the
 * block above (a request just over 2^k + j*2^(k-2) gets the next class,
 * 2^(k-2) more).
 *
 * Superblocks are 64 KiB up to 1 KiB blocks, 256 KiB up to 8 KiB and
 * 512 KiB up to 32 KiB, so that each holds at least 15 blocks: Hoard's
 * bound on a thread heap's idle memory is a few superblocks per class, so
 * superblocks should be small, but not so small that big blocks waste most
 * of one on the header.
 */
#include "internal.h"

struct size_class umpa_class[NUM_CLASSES];
uint8_t umpa_class_of16[SMALL_TABLE_MAX / 16 + 1];

unsigned sizeclass_of_large(size_t n) {
  /* n in (2^k, 2^(k+1)]: four classes per power of two above 128. */
  size_t m = n - 1;
  unsigned k = log2_floor(m);            /* 2^k <= m < 2^(k+1) */
  unsigned quarter = (unsigned)((m >> (k - 2)) & 3); /* which quarter */
  return 8 + (k - 7) * 4 + quarter;
}

void sizeclass_init(void) {
  for (unsigned c = 0; c < NUM_CLASSES; c++) {
    size_t size = c < 8 ? 16 * (c + 1)
                        : ((size_t)128 << ((c - 8) / 4)) / 4 *
                              (4 + (c - 8) % 4 + 1);
    size_t sb = size <= 1024 ? (64 << 10) : size <= 8192 ? (256 << 10)
                                                          : (512 << 10);
    struct size_class *sc = &umpa_class[c];
    sc->size = (uint32_t)size;
    sc->sb_pages = (uint32_t)(sb >> PAGE_SHIFT);
    /* Every superblock has room for the largest colour offset. */
    sc->capacity = (uint32_t)((sb - SB_COLOR_MAX - SUPERBLOCK_HEADER) / size);
    if (umpa_opt.check) {
      /* Room at the end for one bit per block (see sb_check_map). */
      while (SB_COLOR_MAX + SUPERBLOCK_HEADER + (size_t)sc->capacity * size +
                 (sc->capacity + 63) / 64 * 8 >
             sb)
        sc->capacity--;
    }
    sc->recip = (((uint64_t)1 << 40) + size - 1) / size;
    unsigned shift = (unsigned)__builtin_ctzll(size);
    uint32_t m = (uint32_t)(size >> shift), inv = m; /* right to 3 bits */
    for (int i = 0; i < 4; i++) inv *= 2 - m * inv; /* Newton: 6, 12, 24, 48 */
    sc->div_inv = inv;
    sc->div_shift = (uint8_t)shift;
    size_t carve = 4096 / size;
    sc->carve = (uint32_t)(carve < 1 ? 1 : carve > 64 ? 64 : carve);
  }
  unsigned c = 0; /* sizes only grow: the search goes on where it was */
  for (size_t i = 0; i <= SMALL_TABLE_MAX / 16; i++) {
    size_t n = i * 16;
    while (umpa_class[c].size < n) c++;
    umpa_class_of16[i] = (uint8_t)c;
    if (umpa_class[c].direct_hi == 0) umpa_class[c].direct_lo = (uint8_t)i;
    umpa_class[c].direct_hi = (uint8_t)(i + 1);
  }
}
