/* Bump allocator with an inline first block and a list of overflow blocks. */
#include "common/arena.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct arena_block {
    struct arena_block *next; /* older block */
    size_t size;              /* usable bytes after the header */
};

#define BLOCK_SIZE 8192

void arena_init(struct arena *a)
{
    a->blocks = NULL;
    a->cur = a->inline_buf;
    a->end = a->inline_buf + sizeof a->inline_buf;
    a->total = 0;
}

void arena_reset(struct arena *a)
{
    struct arena_block *b = a->blocks;
    while (b != NULL) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    arena_init(a);
}

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if ((size_t)(a->end - a->cur) < n) {
        size_t size = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        struct arena_block *b = xmalloc(sizeof *b + 16 + size);
        b->next = a->blocks;
        b->size = size;
        a->blocks = b;
        char *start = (char *)b + ((sizeof *b + 15) & ~(size_t)15);
        a->cur = start;
        a->end = start + size;
    }
    void *p = a->cur;
    a->cur += n;
    a->total += n;
    return p;
}

char *arena_memdup(struct arena *a, const void *p, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}
