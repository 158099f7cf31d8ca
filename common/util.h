/* Small helpers used everywhere: allocation that aborts on out-of-memory (the project's single
 * OOM policy: a gateway that cannot allocate a few bytes cannot serve safely), clocks, and
 * ASCII case-insensitive comparisons. */
#ifndef LG_UTIL_H
#define LG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Milliseconds on the monotonic clock. */
int64_t now_mono_ms(void);
/* Microseconds on the monotonic clock. */
int64_t now_mono_us(void);

/* 1 if a[0..n) equals b[0..n) ignoring ASCII case. */
int ascii_eqn_nocase(const char *a, const char *b, size_t n);
/* 1 if a[0..alen) equals the NUL-terminated b ignoring ASCII case. Inline, so that a literal
 * b's length is a constant and most header-name comparisons end at the length. */
static inline int ascii_eq_nocase(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && ascii_eqn_nocase(a, b, blen);
}
/* 1 if a[0..alen) starts with the NUL-terminated prefix ignoring ASCII case (inline, as
 * ascii_eq_nocase). */
static inline int ascii_prefix_nocase(const char *a, size_t alen, const char *prefix)
{
    size_t plen = strlen(prefix);
    return alen >= plen && ascii_eqn_nocase(a, prefix, plen);
}

/* A name with its length, for the tables of header names scanned on every request: a table
 * of plain strings costs a strlen per entry per header. */
struct name_len {
    const char *s;
    size_t n;
};
#define NAME_LEN(lit) {"" lit, sizeof(lit) - 1}
/* 1 if a[0..alen) equals one of t[0..n) ignoring ASCII case, or with prefix set, starts with
 * one of them. */
int ascii_in_nocase(const char *a, size_t alen, const struct name_len *t, size_t n, int prefix);

/* The value of an ASCII hex digit, or -1. */
int hex_digit_value(unsigned char c);

/* Fills buf with n random bytes from the kernel; aborts if it cannot. */
void random_bytes(void *buf, size_t n);

/* Writes v in decimal to out (at least 21 bytes), NUL-terminated; returns the length. The
 * request path formats numbers with this, not snprintf (a tenth of the instructions). */
size_t fmt_i64(char *out, int64_t v);

/* A string built into a fixed buffer, always NUL-terminated; trunc is set when something did
 * not fit (what fitted stays). */
struct sbuf {
    char *p;
    size_t len, cap;
    int trunc;
};
static inline struct sbuf sb_make(char *p, size_t cap)
{
    struct sbuf b = {p, 0, cap, cap == 0};
    if (cap)
        p[0] = '\0';
    return b;
}
/* Inline: the request path builds its Redis keys and headers from many short pieces. */
static inline void sb_mem(struct sbuf *b, const char *s, size_t n)
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
/* Inline, so that a literal's length is a constant. */
static inline void sb_str(struct sbuf *b, const char *s)
{
    sb_mem(b, s, strlen(s));
}
void sb_int(struct sbuf *b, int64_t v);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
