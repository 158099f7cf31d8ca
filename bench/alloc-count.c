/* Counts a process's heap allocations for bench.py --allocs (LD_PRELOAD only, never linked in).
 *
 *     LG_ALLOC_COUNT=/tmp/f LD_PRELOAD=build/liballoc-count.so lookupgate -c ...
 *
 * Every malloc, calloc, realloc, aligned_alloc, posix_memalign and memalign of every thread adds
 * one to a 64-bit counter at offset 0 of the file /tmp/f (created, mapped shared), so the
 * benchmark reads the exact count at any moment, before and after a load run. glibc's
 * __libc_* entry points do the allocating; free is not counted. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static _Atomic uint64_t *counter;

__attribute__((constructor)) static void open_counter(void)
{
    const char *path = getenv("LG_ALLOC_COUNT");
    if (path == NULL)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    void *m = MAP_FAILED;
    if (ftruncate(fd, 4096) == 0)
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED)
        counter = m;
}

static inline void count(void)
{
    if (counter)
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    count();
    void *p = __libc_memalign(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}
