/* A per-thread free list for libevent's buffer chains, over glibc's malloc: blocks are plain
 * malloc blocks (no header of ours), so free and realloc learn a block's size from
 * malloc_usable_size. A freed block whose usable size is at least a pool size joins that
 * size's list (a larger block serves a smaller request); a list is LIFO, so the block handed
 * out is the one most recently in the cache. */
#include "common/chainpool.h"

#include <event2/event.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define CHAINPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAINPOOL_ASAN 1
#endif
#endif
#ifdef CHAINPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct blk {
    struct blk *next; /* in the block's first bytes, while on a list */
};

struct cache {
    struct blk *head[CHAINPOOL_CLASSES];
    unsigned n[CHAINPOOL_CLASSES];
    uint64_t reused, fresh;
    int registered; /* with the thread-exit key */
};

static _Thread_local struct cache tc;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* The class of a pool size (a power of two in range), or -1. */
static inline int class_of(size_t n)
{
    if (n < ((size_t)1 << CHAINPOOL_MIN_SHIFT) || n > ((size_t)1 << CHAINPOOL_MAX_SHIFT) ||
        (n & (n - 1)) != 0)
        return -1;
    return __builtin_ctzll(n) - CHAINPOOL_MIN_SHIFT;
}

/* The class a freed block of usable size u can serve (the largest pool size <= u), or -1. */
static inline int class_floor(size_t u)
{
    if (u < ((size_t)1 << CHAINPOOL_MIN_SHIFT))
        return -1;
    int k = 63 - __builtin_clzll(u) - CHAINPOOL_MIN_SHIFT;
    return k < CHAINPOOL_CLASSES ? k : -1;
}

static unsigned cap_of(int cls)
{
    return CHAINPOOL_CAP_BYTES >> (cls + CHAINPOOL_MIN_SHIFT);
}

static void drain(struct cache *c)
{
    for (int k = 0; k < CHAINPOOL_CLASSES; k++) {
        struct blk *b = c->head[k];
        while (b != NULL) {
            UNPOISON(b, sizeof *b);
            struct blk *next = b->next;
            free(b);
            b = next;
        }
        c->head[k] = NULL;
        c->n[k] = 0;
    }
}

static void on_thread_exit(void *arg)
{
    (void)arg;
    drain(&tc);
    tc.registered = 0;
}

static void make_key(void)
{
    (void)pthread_key_create(&exit_key, on_thread_exit);
}

void *chainpool_malloc(size_t n)
{
    int k = class_of(n);
    if (k >= 0 && tc.head[k] != NULL) {
        struct blk *b = tc.head[k];
        UNPOISON(b, sizeof *b);
        tc.head[k] = b->next;
        tc.n[k]--;
        tc.reused++;
        UNPOISON(b, n);
        return b;
    }
    if (k >= 0)
        tc.fresh++;
    return malloc(n);
}

void chainpool_free(void *p)
{
    if (p == NULL)
        return;
    int k = class_floor(malloc_usable_size(p));
    if (k < 0 || tc.n[k] >= cap_of(k)) {
        free(p);
        return;
    }
    if (!tc.registered) { /* so that the thread's exit frees its list */
        pthread_once(&exit_once, make_key);
        tc.registered = pthread_setspecific(exit_key, &tc) == 0;
        if (!tc.registered) {
            free(p);
            return;
        }
    }
    struct blk *b = p;
    b->next = tc.head[k];
    tc.head[k] = b;
    tc.n[k]++;
    POISON(p, (size_t)1 << (k + CHAINPOOL_MIN_SHIFT));
}

void *chainpool_realloc(void *p, size_t n)
{
    return realloc(p, n); /* every block is a malloc block */
}

void chainpool_drain(void)
{
    drain(&tc);
}

void chainpool_stats(struct chainpool_stats *st)
{
    st->reused = tc.reused;
    st->fresh = tc.fresh;
    st->kept = 0;
    for (int k = 0; k < CHAINPOOL_CLASSES; k++)
        st->kept += tc.n[k];
}

void chainpool_install(void)
{
    event_set_mem_functions(chainpool_malloc, chainpool_realloc, chainpool_free);
}
