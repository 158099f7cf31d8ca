/* The audit record writer: appends, escapes, grows its buffer. */
#include "audit/jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void jw_init(struct jsonw *j)
{
    j->cap = 1024;
    j->buf = xmalloc(j->cap);
    j->len = 0;
    j->need_comma = 0;
}

void jw_free(struct jsonw *j)
{
    free(j->buf);
    j->buf = NULL;
    j->len = j->cap = 0;
}

void jw_reset(struct jsonw *j)
{
    j->len = 0;
    j->need_comma = 0;
}

/* Room for n more bytes. The check is inline; growing is the rare path. */
void jw_grow(struct jsonw *j, size_t n)
{
    while (j->len + n > j->cap)
        j->cap *= 2;
    j->buf = xrealloc(j->buf, j->cap);
}

static inline char *reserve(struct jsonw *j, size_t n)
{
    if (j->len + n > j->cap)
        jw_grow(j, n);
    return j->buf + j->len;
}

void jw_raw(struct jsonw *j, const char *s, size_t n)
{
    memcpy(reserve(j, n), s, n);
    j->len += n;
}

/* Before a value in an array (or the key of a member): the separator, in room the caller has
 * reserved. Returns where the value goes. */
static inline char *sep_in(struct jsonw *j, char *p)
{
    if (j->need_comma)
        *p++ = ',';
    j->need_comma = 1;
    return p;
}

void jw_open(struct jsonw *j, char bracket)
{
    char *p = sep_in(j, reserve(j, 2));
    *p++ = bracket;
    j->len = (size_t)(p - j->buf);
    j->need_comma = 0;
}

void jw_close(struct jsonw *j, char bracket)
{
    *reserve(j, 1) = bracket;
    j->len++;
    j->need_comma = 1;
}

/* Length of the valid UTF-8 sequence at s (2..4), or 0 if it is not valid (overlongs,
 * surrogates and code points above U+10FFFF are invalid). s[0] >= 0x80. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if ((c & 0xe0) == 0xc0) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* 1 for the bytes that are not copied as they are: below 0x20, '"', '\\', and from 0x7f
 * (0x7f is escaped; from 0x80 a byte is copied only as part of valid UTF-8). */
static const unsigned char special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* The length of the run at p with no special byte: 8 bytes at a time, then byte by byte. */
static size_t plain_run(const unsigned char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x;
        memcpy(&x, p + k, 8);
        /* a byte below 0x20, equal to '"' or '\\', or from 0x7f (0x7f + 1 sets the high bit) */
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        uint64_t t = ((x - ones * 0x20) | (q - ones) | (b - ones) | (x + ones)) & ~x;
        if ((t | x) & highs)
            break;
    }
    while (k < n && !special[p[k]])
        k++;
    return k;
}

/* The escaped form of s, from its first special byte on (the caller copied the run before). */
static void escape_rest(struct jsonw *j, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (!special[c]) {
            size_t k = i + plain_run(p + i, n - i); /* the whole run, in one copy */
            jw_raw(j, (const char *)p + i, k - i);
            i = k;
            continue;
        }
        size_t u = c >= 0x80 ? utf8_len(p + i, n - i) : 0;
        if (u > 0) {
            jw_raw(j, (const char *)p + i, u);
            i += u;
            continue;
        }
        char *o = reserve(j, 6);
        o[0] = '\\';
        switch (c) {
        case '"': o[1] = '"'; j->len += 2; break;
        case '\\': o[1] = '\\'; j->len += 2; break;
        case '\n': o[1] = 'n'; j->len += 2; break;
        case '\r': o[1] = 'r'; j->len += 2; break;
        case '\t': o[1] = 't'; j->len += 2; break;
        default:
            memcpy(o + 1, "u00", 3);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            j->len += 6;
        }
        i++;
    }
}

void jw_escape(struct jsonw *j, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t k = plain_run(p, n);
    jw_raw(j, s, k);
    if (k < n)
        escape_rest(j, p + k, n - k);
}

void jw_str(struct jsonw *j, const char *s, size_t n)
{
    /* The common case, nothing to escape, is one reservation and one copy. */
    const unsigned char *p = (const unsigned char *)s;
    size_t k = plain_run(p, n);
    char *o = sep_in(j, reserve(j, k + 3));
    *o++ = '"';
    memcpy(o, s, k);
    o += k;
    j->len = (size_t)(o - j->buf);
    if (k < n)
        escape_rest(j, p + k, n - k);
    *reserve(j, 1) = '"';
    j->len++;
}

void jw_strz(struct jsonw *j, const char *s)
{
    if (s == NULL)
        jw_null(j);
    else
        jw_str(j, s, strlen(s));
}

void jw_int(struct jsonw *j, long long v)
{
    char *p = sep_in(j, reserve(j, 1 + 21));
    p += fmt_i64(p, (int64_t)v);
    j->len = (size_t)(p - j->buf);
}

void jw_bool(struct jsonw *j, int v)
{
    char *p = sep_in(j, reserve(j, 6));
    memcpy(p, v ? "true" : "false", v ? 4 : 5);
    j->len = (size_t)(p - j->buf) + (v ? 4 : 5);
}

void jw_null(struct jsonw *j)
{
    char *p = sep_in(j, reserve(j, 5));
    memcpy(p, "null", 4);
    j->len = (size_t)(p - j->buf) + 4;
}

void jw_hex(struct jsonw *j, const uint8_t *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *p = sep_in(j, reserve(j, 2 * n + 3));
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p++ = '"';
    j->len = (size_t)(p - j->buf);
}

/* The calendar date of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
 * civil_from_days). No gmtime_r: glibc's takes a lock on every call. */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static void put_digits(char *out, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
}

void audit_format_time(int64_t ms, char out[25])
{
    /* The text up to the seconds changes once a second: kept per thread. */
    static _Thread_local int64_t cached_sec = -1;
    static _Thread_local char cached[20];
    if (ms < 0 || ms >= 253402300800000LL) { /* not a time a record can have (year > 9999) */
        memcpy(out, "0000-00-00T00:00:00.000Z", 25);
        return;
    }
    int64_t sec = ms / 1000;
    if (sec != cached_sec) {
        int y, mo, d;
        civil_from_days(sec / 86400, &y, &mo, &d);
        unsigned sod = (unsigned)(sec % 86400);
        memcpy(cached, "0000-00-00T00:00:00.", 20);
        put_digits(cached, (unsigned)y, 4);
        put_digits(cached + 5, (unsigned)mo, 2);
        put_digits(cached + 8, (unsigned)d, 2);
        put_digits(cached + 11, sod / 3600, 2);
        put_digits(cached + 14, sod / 60 % 60, 2);
        put_digits(cached + 17, sod % 60, 2);
        cached_sec = sec;
    }
    memcpy(out, cached, 20);
    put_digits(out + 20, (unsigned)(ms % 1000), 3);
    out[23] = 'Z';
    out[24] = '\0';
}
