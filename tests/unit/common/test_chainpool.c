/* The per-thread free list behind libevent's buffer chains (common/chainpool.c). */
#include <event2/buffer.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

#include "common/chainpool.h"
#include "tests/unit/check.h"

static struct chainpool_stats stats(void)
{
    struct chainpool_stats st;
    chainpool_stats(&st);
    return st;
}

static void test_reuse(void)
{
    chainpool_drain();
    char *a = chainpool_malloc(1024);
    memset(a, 'x', 1024);
    chainpool_free(a);
    CHECK_INT(stats().kept, 1);
    uint64_t reused = stats().reused;
    char *b = chainpool_malloc(1024);
    CHECK(b == a); /* the block just freed, from the list */
    CHECK_INT(stats().reused, reused + 1);
    CHECK_INT(stats().kept, 0);
    char *c = chainpool_malloc(1024); /* the list is empty: a fresh block */
    CHECK(c != a);
    chainpool_free(b);
    chainpool_free(c);
    CHECK_INT(stats().kept, 2);
    chainpool_drain();
    CHECK_INT(stats().kept, 0);
}

static void test_sizes(void)
{
    chainpool_drain();
    /* Below 1 KiB and above 64 KiB: straight to free. */
    size_t other[] = {1, 100, 1000, 131072 + 4096, 200000};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        char *p = chainpool_malloc(other[i]);
        CHECK(p != NULL);
        CHECK_INT((uintptr_t)p % 16, 0);
        memset(p, 'y', other[i]);
        chainpool_free(p);
    }
    CHECK_INT(stats().kept, 0);
    chainpool_free(NULL);
    /* A block between two pool sizes serves the smaller one. */
    char *p = chainpool_malloc(3000);
    memset(p, 'y', 3000);
    chainpool_free(p);
    CHECK_INT(stats().kept, 1);
    char *big = chainpool_malloc(4096);
    CHECK(big != p); /* too small for 4 KiB */
    chainpool_free(big);
    char *q = chainpool_malloc(2048);
    CHECK(q == p);
    memset(q, 'q', 2048);
    chainpool_free(q);
    chainpool_drain();
}

static void test_cap(void)
{
    chainpool_drain();
    enum { N = CHAINPOOL_CAP_BYTES / 65536 + 4 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = chainpool_malloc(65536);
    for (int i = 0; i < N; i++)
        chainpool_free(p[i]);
    CHECK_INT(stats().kept, CHAINPOOL_CAP_BYTES / 65536);
    for (int i = 0; i < N; i++)
        p[i] = chainpool_malloc(1024);
    for (int i = 0; i < N; i++)
        chainpool_free(p[i]);
    CHECK_INT(stats().kept, CHAINPOOL_CAP_BYTES / 65536 + N);
    chainpool_drain();
}

static int all(const char *p, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

static void test_realloc(void)
{
    chainpool_drain();
    char *p = chainpool_realloc(NULL, 100);
    memset(p, 'a', 100);
    p = chainpool_realloc(p, 2048);
    CHECK(all(p, 'a', 100));
    memset(p, 'c', 2048);
    p = chainpool_realloc(p, 4096);
    CHECK(all(p, 'c', 2048));
    memset(p, 'd', 4096);
    p = chainpool_realloc(p, 50);
    CHECK(all(p, 'd', 50));
    CHECK_INT(stats().kept, 0); /* realloc is malloc's own */
    chainpool_free(p);
    p = chainpool_malloc(1024); /* a block from the list can be realloc'd: it is malloc's */
    chainpool_free(p);
    p = chainpool_malloc(1024);
    CHECK_INT(stats().kept, 0);
    memset(p, 'e', 1024);
    p = chainpool_realloc(p, 10000);
    CHECK(all(p, 'e', 1024));
    chainpool_free(p);
    chainpool_drain();
}

static void *alloc_in_thread(void *arg)
{
    (void)arg;
    void *mine = chainpool_malloc(2048);
    chainpool_free(mine); /* kept on this thread's list, freed when it exits */
    return chainpool_malloc(8192);
}

static void test_threads(void)
{
    chainpool_drain();
    pthread_t t;
    void *p = NULL;
    uint64_t reused = stats().reused;
    CHECK_INT(pthread_create(&t, NULL, alloc_in_thread, NULL), 0);
    CHECK_INT(pthread_join(t, &p), 0);
    CHECK(p != NULL);
    CHECK_INT(stats().kept, 0); /* the other thread's list is not this one's */
    chainpool_free(p);          /* a block from another thread joins this thread's list */
    CHECK_INT(stats().kept, 1);
    CHECK(chainpool_malloc(8192) == p);
    CHECK_INT(stats().reused, reused + 1);
    chainpool_free(p);
    chainpool_drain();
}

/* libevent's own chains come from the pool once installed. */
static void test_libevent(void)
{
    chainpool_drain();
    struct evbuffer *b = evbuffer_new();
    char line[200];
    memset(line, 'z', sizeof line);
    evbuffer_add(b, line, sizeof line);
    evbuffer_drain(b, sizeof line);
    CHECK(stats().kept >= 1);
    uint64_t reused = stats().reused;
    evbuffer_add(b, line, sizeof line);
    CHECK(stats().reused > reused);
    char out[200];
    CHECK_INT(evbuffer_remove(b, out, sizeof out), sizeof out);
    CHECK(all(out, 'z', sizeof out));
    evbuffer_free(b);
    chainpool_drain();
}

/* Under AddressSanitizer a block on a list is poisoned: a write after free is reported. */
static void test_use_after_free_is_caught(void)
{
#if defined(__SANITIZE_ADDRESS__)
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        volatile char *p = chainpool_malloc(1024);
        chainpool_free((void *)p);
        p[10] = 1;
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
#endif
}

int main(void)
{
    chainpool_install();
    test_reuse();
    test_sizes();
    test_cap();
    test_realloc();
    test_threads();
    test_libevent();
    test_use_after_free_is_caught();
    chainpool_drain();
    return check_done("test_chainpool");
}
