/* libevent's memory functions over a per-thread free list (twemproxy's mbuf free queue, nginx's
 * reusable buffers). libevent allocates an evbuffer chain, a power of two from 1 KiB, for
 * nearly every read and write and frees it once drained: six malloc/free pairs per proxied
 * lookup. A freed block of at least such a size is kept on the freeing thread's list for the
 * largest pool size it holds (up to a byte cap per size) and handed out again; every other
 * block goes back to malloc. Blocks are malloc's own (no header), so realloc is malloc's.
 * Under AddressSanitizer a block on a list is poisoned, so a use after free still reports. */
#ifndef LG_CHAINPOOL_H
#define LG_CHAINPOOL_H

#include <stddef.h>
#include <stdint.h>

#define CHAINPOOL_MIN_SHIFT 10 /* 1 KiB: libevent's smallest chain on 64-bit */
#define CHAINPOOL_MAX_SHIFT 16 /* 64 KiB */
#define CHAINPOOL_CLASSES (CHAINPOOL_MAX_SHIFT - CHAINPOOL_MIN_SHIFT + 1)
/* Kept per size and thread. A quarter of this was too little: with 256 busy connections the
 * number of 1 KiB chains alive swings by more than 256 between loop passes, and a third of
 * the allocations missed the list. */
#define CHAINPOOL_CAP_BYTES (1024 * 1024)

/* Makes libevent allocate through the pool. Call before any other libevent call. */
void chainpool_install(void);

void *chainpool_malloc(size_t n);
void *chainpool_realloc(void *p, size_t n);
void chainpool_free(void *p);

/* Frees the calling thread's kept blocks (a thread's exit does this too). */
void chainpool_drain(void);

struct chainpool_stats {
    uint64_t reused; /* handed out from a list */
    uint64_t fresh;  /* pool sizes that had to come from malloc */
    size_t kept;     /* blocks on this thread's lists now */
};
/* The calling thread's counts. */
void chainpool_stats(struct chainpool_stats *st);

#endif
