/* Small helpers used everywhere: allocation that aborts on out-of-memory (the project's single
 * OOM policy: a gateway that cannot allocate a few bytes cannot serve safely), clocks, and
 * ASCII case-insensitive comparisons. */
#ifndef LG_UTIL_H
#define LG_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Milliseconds on the monotonic clock. */
int64_t now_mono_ms(void);
/* Microseconds on the monotonic clock. */
int64_t now_mono_us(void);

/* 1 if a[0..alen) equals the NUL-terminated b ignoring ASCII case. */
int ascii_eq_nocase(const char *a, size_t alen, const char *b);
/* 1 if a[0..alen) starts with the NUL-terminated prefix ignoring ASCII case. */
int ascii_prefix_nocase(const char *a, size_t alen, const char *prefix);

/* The value of an ASCII hex digit, or -1. */
int hex_digit_value(unsigned char c);

/* Fills buf with n random bytes from the kernel; aborts if it cannot. */
void random_bytes(void *buf, size_t n);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
