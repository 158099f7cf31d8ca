/* Shared by the fuzzers: the libFuzzer entry point each defines, and a check that aborts (so
 * that libFuzzer, and the replay driver in the normal suite, report a broken invariant the way
 * they report a crash). */
#ifndef LG_FUZZ_H
#define LG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* Split points from the input itself: the first byte seeds a small generator, so a given
 * input always splits the same way (reproducible crashes). */
struct fuzz_splits {
    uint32_t state;
};

static inline void fuzz_splits_init(struct fuzz_splits *s, uint8_t seed)
{
    s->state = 0x9e3779b9u ^ seed;
}

/* The next piece length, 1 .. max. */
static inline size_t fuzz_next_piece(struct fuzz_splits *s, size_t max)
{
    s->state = s->state * 1664525u + 1013904223u;
    size_t n = 1 + (s->state >> 8) % (max ? max : 1);
    return n;
}

#endif
