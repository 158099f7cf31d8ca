/* A small JSON writer for audit records: fields are appended in the order the caller writes
 * them (the record's canonical order), and strings are escaped so that a record stays one line
 * whatever bytes a client sent: control characters, quotes and backslashes are escaped, and
 * bytes that are not valid UTF-8 become \u00XX. */
#ifndef LG_AUDIT_JSONW_H
#define LG_AUDIT_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct jsonw {
    char *buf;
    size_t len;
    size_t cap;
    int need_comma; /* a value was written at the current nesting level */
};

void jw_init(struct jsonw *j);
void jw_free(struct jsonw *j);
void jw_reset(struct jsonw *j);

void jw_raw(struct jsonw *j, const char *s, size_t n);
void jw_open(struct jsonw *j, char bracket);  /* '{' or '[' (as a value) */
void jw_close(struct jsonw *j, char bracket); /* '}' or ']' */
void jw_str(struct jsonw *j, const char *s, size_t n);
void jw_strz(struct jsonw *j, const char *s); /* NULL → null */
void jw_int(struct jsonw *j, long long v);
void jw_bool(struct jsonw *j, int v);
void jw_null(struct jsonw *j);
void jw_hex(struct jsonw *j, const uint8_t *b, size_t n); /* lower-case hex string */

/* Makes room for n more bytes: the rare path of the inline writers. */
void jw_grow(struct jsonw *j, size_t n);

/* ,"key": (the comma when a value came before). Inline, with the key's copy a constant
 * length for a literal: a request's two records have about 60 keys. */
static inline void jw_keyn(struct jsonw *j, const char *key, size_t n)
{
    if (j->len + n + 4 > j->cap)
        jw_grow(j, n + 4);
    char *p = j->buf + j->len;
    if (j->need_comma)
        *p++ = ',';
    *p++ = '"';
    memcpy(p, key, n);
    p += n;
    *p++ = '"';
    *p++ = ':';
    j->len = (size_t)(p - j->buf);
    j->need_comma = 0; /* the value follows without a separator */
}

/* The key, then the value. Inline, so that a literal key's length is a constant. */
static inline void jw_key(struct jsonw *j, const char *key)
{
    jw_keyn(j, key, strlen(key));
}
static inline void jw_kstr(struct jsonw *j, const char *key, const char *s, size_t n)
{
    jw_key(j, key);
    jw_str(j, s, n);
}
static inline void jw_kstrz(struct jsonw *j, const char *key, const char *s)
{
    jw_key(j, key);
    jw_strz(j, s);
}
static inline void jw_kint(struct jsonw *j, const char *key, long long v)
{
    jw_key(j, key);
    jw_int(j, v);
}
static inline void jw_kbool(struct jsonw *j, const char *key, int v)
{
    jw_key(j, key);
    jw_bool(j, v);
}

/* Appends the escaped form of s (without quotes) to j. */
void jw_escape(struct jsonw *j, const char *s, size_t n);

/* "2026-11-21T08:00:00.123Z" for ms since the epoch; out must hold 25 bytes. */
void audit_format_time(int64_t ms, char out[25]);

#endif
