/* Allocation, clocks, comparisons and randomness shared by every layer. */
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void oom(size_t n)
{
    fprintf(stderr, "lookupgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int64_t now_mono_ms(void)
{
    return now_mono_us() / 1000;
}

int64_t now_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

int ascii_eq_nocase(const char *a, size_t alen, const char *b)
{
    /* No strlen(b): most header-name comparisons fail at the first byte. */
    size_t i = 0;
    for (; i < alen; i++)
        if (b[i] == '\0' || lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return b[i] == '\0';
}

int ascii_prefix_nocase(const char *a, size_t alen, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (alen < plen)
        return 0;
    for (size_t i = 0; i < plen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)prefix[i]))
            return 0;
    return 1;
}

int hex_digit_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0) {
            fprintf(stderr, "lookupgate: getrandom failed\n");
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

size_t fmt_i64(char *out, int64_t v)
{
    char tmp[21];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t o = 0;
    if (v < 0)
        out[o++] = '-';
    while (n)
        out[o++] = tmp[--n];
    out[o] = '\0';
    return o;
}

void sb_mem(struct sbuf *b, const char *s, size_t n)
{
    if (b->cap == 0)
        return;
    size_t room = b->cap - 1 - b->len;
    if (n > room) {
        n = room;
        b->trunc = 1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_int(struct sbuf *b, int64_t v)
{
    char t[24];
    sb_mem(b, t, fmt_i64(t, v));
}
