/* A per-request arena: many small allocations freed in one call (nginx pools, h2o mem pools).
 * The first block lives inside struct arena, so a small request allocates nothing extra. */
#ifndef LG_ARENA_H
#define LG_ARENA_H

#include <stddef.h>

#define ARENA_INLINE 2048

struct arena_block;

struct arena {
    struct arena_block *blocks; /* extra heap blocks, newest first */
    char *cur;                  /* next free byte in the current block */
    char *end;                  /* end of the current block */
    size_t total;               /* bytes handed out, for limits and metrics */
    _Alignas(16) char inline_buf[ARENA_INLINE]; /* first block */
};

void arena_init(struct arena *a);
/* Frees every block and makes the arena empty again (ready for the next request). */
void arena_reset(struct arena *a);
void *arena_alloc(struct arena *a, size_t n);
char *arena_memdup(struct arena *a, const void *p, size_t n); /* NUL-terminated copy */

#endif
