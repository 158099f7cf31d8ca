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

int ascii_eqn_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int ascii_in_nocase(const char *a, size_t alen, const struct name_len *t, size_t n, int prefix)
{
    for (size_t i = 0; i < n; i++)
        if ((alen == t[i].n || (prefix && alen > t[i].n)) && ascii_eqn_nocase(a, t[i].s, t[i].n))
            return 1;
    return 0;
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
    /* Two digits at a time from a table, written from the end (as Redis's ull2string). */
    static const char pairs[201] = "0001020304050607080910111213141516171819"
                                   "2021222324252627282930313233343536373839"
                                   "4041424344454647484950515253545556575859"
                                   "6061626364656667686970717273747576777879"
                                   "8081828384858687888990919293949596979899";
    static const uint64_t pow10[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
        100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL};
    if ((uint64_t)v < 100) { /* most numbers written: lengths, counts, limits */
        if (v < 10) {
            out[0] = (char)('0' + v);
            out[1] = '\0';
            return 1;
        }
        out[0] = pairs[v * 2];
        out[1] = pairs[v * 2 + 1];
        out[2] = '\0';
        return 2;
    }
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    /* The digit count from the bit length (log10(2) ~ 1233/4096), corrected by one table
     * lookup, instead of a division per digit. */
    size_t digits = 1;
    if (u != 0) {
        size_t t = (size_t)(64 - __builtin_clzll(u)) * 1233 >> 12;
        digits = t + (u >= pow10[t]);
    }
    size_t o = (v < 0) + digits;
    out[0] = '-';
    out[o] = '\0';
    char *p = out + o;
    while (u >= 100) {
        unsigned i = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = pairs[i + 1];
        *--p = pairs[i];
    }
    if (u >= 10) {
        *--p = pairs[u * 2 + 1];
        *--p = pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    return o;
}

void sb_int(struct sbuf *b, int64_t v)
{
    char t[24];
    sb_mem(b, t, fmt_i64(t, v));
}
