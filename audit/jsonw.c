/* The audit record writer: appends, escapes, grows its buffer. */
#include "audit/jsonw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void reserve(struct jsonw *j, size_t n)
{
    if (j->len + n <= j->cap)
        return;
    while (j->len + n > j->cap)
        j->cap *= 2;
    j->buf = xrealloc(j->buf, j->cap);
}

void jw_raw(struct jsonw *j, const char *s, size_t n)
{
    reserve(j, n);
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

static void put(struct jsonw *j, char ch)
{
    reserve(j, 1);
    j->buf[j->len++] = ch;
}

/* Before a value in an array (or the key of a member): the separator. */
static void sep(struct jsonw *j)
{
    if (j->need_comma)
        put(j, ',');
    j->need_comma = 1;
}

void jw_open(struct jsonw *j, char bracket)
{
    sep(j);
    put(j, bracket);
    j->need_comma = 0;
}

void jw_close(struct jsonw *j, char bracket)
{
    put(j, bracket);
    j->need_comma = 1;
}

void jw_keyn(struct jsonw *j, const char *key, size_t n)
{
    sep(j);
    put(j, '"');
    jw_raw(j, key, n);
    jw_raw(j, "\":", 2);
    j->need_comma = 0; /* the value follows without a separator */
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid (overlongs,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
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

void jw_escape(struct jsonw *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    reserve(j, n + 2);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            size_t k = i + 1; /* the whole run that needs no escaping, in one copy */
            while (k < n && p[k] >= 0x20 && p[k] < 0x7f && p[k] != '"' && p[k] != '\\')
                k++;
            jw_raw(j, (const char *)p + i, k - i);
            i = k;
            continue;
        }
        if (c == '"' || c == '\\') {
            put(j, '\\');
            put(j, (char)c);
            i++;
            continue;
        }
        size_t u = c >= 0x80 ? utf8_len(p + i, n - i) : 0;
        if (u > 0) {
            jw_raw(j, (const char *)p + i, u);
            i += u;
            continue;
        }
        switch (c) {
        case '\n': jw_raw(j, "\\n", 2); break;
        case '\r': jw_raw(j, "\\r", 2); break;
        case '\t': jw_raw(j, "\\t", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jw_raw(j, e, 6);
        }
        }
        i++;
    }
}

void jw_str(struct jsonw *j, const char *s, size_t n)
{
    sep(j);
    put(j, '"');
    jw_escape(j, s, n);
    put(j, '"');
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
    char b[24];
    size_t n = fmt_i64(b, (int64_t)v);
    sep(j);
    jw_raw(j, b, n);
}

void jw_bool(struct jsonw *j, int v)
{
    sep(j);
    jw_raw(j, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(struct jsonw *j)
{
    sep(j);
    jw_raw(j, "null", 4);
}

void jw_hex(struct jsonw *j, const uint8_t *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sep(j);
    reserve(j, 2 * n + 2);
    put(j, '"');
    for (size_t i = 0; i < n; i++) {
        j->buf[j->len++] = hex[b[i] >> 4];
        j->buf[j->len++] = hex[b[i] & 15];
    }
    put(j, '"');
}

void audit_format_time(int64_t ms, char out[25])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    int year = tm.tm_year + 1900;
    if (ms < 0 || year > 9999) { /* not a time a record can have; keep the format */
        memcpy(out, "0000-00-00T00:00:00.000Z", 25);
        return;
    }
    const int v[7] = {year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      (int)(ms % 1000)};
    static const char tmpl[] = "0000-00-00T00:00:00.000Z";
    static const unsigned char at[7] = {0, 5, 8, 11, 14, 17, 20}, width[7] = {4, 2, 2, 2, 2, 2, 3};
    memcpy(out, tmpl, sizeof tmpl);
    for (int f = 0; f < 7; f++)
        for (int d = width[f] - 1, x = v[f]; d >= 0; d--, x /= 10)
            out[at[f] + d] = (char)('0' + x % 10);
}
