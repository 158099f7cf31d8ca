/* The raw request-head scanner: line framing, request-line grammar and field grammar. */
#include "proxy/http_head.h"

#include <http_parser.h>
#include <string.h>

#include "common/util.h"

int http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A switch on the first letter, then whole comparisons: every field of every request is
 * classified here, for the scanner and for what is forwarded (http_req.c). test_http_head
 * checks it against the plain tables of names it replaced. */
unsigned http_name_class(const char *n, size_t len)
{
    enum { S = HNAME_SENSITIVE, D = HNAME_DROPPED, SD = S | D };
#define IS(lit, c)                    \
    if (ascii_eq_nocase(n, len, lit))     \
        return c;
#define STARTS(lit, c)                    \
    if (ascii_prefix_nocase(n, len, lit)) \
        return c;
    if (len == 0) /* n[0] | 0x20 is a given letter only for that letter in either case */
        return 0;
    switch (n[0] | 0x20) {
    case 'a':
        IS("authorization", SD);
        break;
    case 'c':
        IS("connection", SD);
        IS("content-length", SD);
        IS("content-type", S);
        break;
    case 'e':
        IS("expect", SD);
        break;
    case 'f':
        IS("forwarded", SD);
        break;
    case 'h':
        IS("host", SD);
        break;
    case 'k':
        IS("keep-alive", SD);
        break;
    case 'p':
        IS("proxy-connection", SD);
        IS("proxy-authorization", D);
        IS("proxy-authenticate", D);
        break;
    case 's':
        IS("soapaction", S);
        break;
    case 't':
        IS("te", SD);
        IS("trailer", SD);
        IS("transfer-encoding", SD);
        break;
    case 'u':
        IS("upgrade", SD);
        break;
    case 'x':
        IS("x-real-ip", SD);
        IS("x-client-ip", D);
        IS("x-dossier-id", S);
        IS("x-procedure-code", S);
        IS("x-request-id", SD);
        STARTS("x-request-id", S);
        STARTS("x-lookup-", SD);
        STARTS("x-forwarded-", SD);
        STARTS("x-account", SD);
        STARTS("x-user-", D);
        break;
    default:
        break;
    }
    return 0;
#undef IS
#undef STARTS
}

int http_header_is_sensitive(const char *n, size_t len)
{
    return (http_name_class(n, len) & HNAME_SENSITIVE) != 0;
}

/* 1 if tok[0..len) is a prefix of (or equal to, when whole) a method http-parser knows. */
static int method_known(const char *tok, size_t len, int whole)
{
    for (int m = 0; m <= HTTP_SOURCE; m++) {
        const char *name = http_method_str((enum http_method)m);
        size_t nl = strlen(name);
        if (len <= nl && memcmp(name, tok, len) == 0 && (!whole || len == nl))
            return 1;
    }
    return 0;
}

static int fail(const char **reason, const char *why, int status)
{
    *reason = why;
    return status;
}

/* Validates "METHOD SP origin-or-other-form SP HTTP/d.d" (without CRLF). */
static int check_request_line(const char *l, size_t len, const char **reason)
{
    size_t i = 0;
    while (i < len && http_is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i == len || l[i] != ' ')
        return fail(reason, "malformed request line", 400);
    if (!method_known(l, i, 1))
        return fail(reason, "unknown method", 400);
    size_t t0 = ++i;
    while (i < len && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f)
        i++;
    if (i == t0)
        return fail(reason, "empty request target", 400);
    if (i == len)
        return fail(reason, "request line without an HTTP version", 400);
    if (l[i] != ' ')
        return fail(reason, "invalid byte in request target", 400);
    if (memchr(l + t0, '#', i - t0) != NULL)
        return fail(reason, "fragment in request target", 400);
    const char *v = l + i + 1;
    size_t vl = len - i - 1;
    if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(reason, "malformed HTTP version", 400);
    if (v[5] != '1')
        return fail(reason, "HTTP version not supported", 505);
    return 0;
}

/* Validates "name: value" (without CRLF). */
static int check_field_line(const char *l, size_t len, const char **reason)
{
    if (l[0] == ' ' || l[0] == '\t')
        return fail(reason, "folded or indented header line", 400);
    size_t i = 0;
    while (i < len && l[i] != ':') {
        unsigned char c = (unsigned char)l[i];
        if (c == '_')
            return fail(reason, "underscore in header name", 400);
        if (!http_is_tchar(c))
            return fail(reason, "invalid byte in header name", 400);
        i++;
    }
    if (i == len)
        return fail(reason, "header line without a colon", 400);
    if (i == 0)
        return fail(reason, "empty header name", 400);
    int sensitive = -1;
    for (size_t j = i + 1; j < len; j++) {
        unsigned char c = (unsigned char)l[j];
        if (c == '\t' || (c >= 0x20 && c < 0x7f))
            continue;
        if (c >= 0x80) {
            if (sensitive < 0)
                sensitive = http_header_is_sensitive(l, i);
            if (!sensitive)
                continue;
            return fail(reason, "non-ASCII byte in a protected header", 400);
        }
        return fail(reason, "control byte in header value", 400);
    }
    return 0;
}

/* On an incomplete first line: refuse a method no parser knows without waiting for more. */
static int check_partial_reqline(const char *l, size_t len, const char **reason)
{
    size_t i = 0;
    while (i < len && l[i] != ' ')
        i++;
    for (size_t j = 0; j < i; j++)
        if (!http_is_tchar((unsigned char)l[j]))
            return fail(reason, "malformed request line", 400);
    if (!method_known(l, i, i < len))
        return fail(reason, "unknown method", 400);
    return 0;
}

int http_head_scan(struct head_scan *s, const char *buf, size_t len,
                   const struct http_limits *lim, const char **reason)
{
    while (s->off < len) {
        const char *line = buf + s->off;
        size_t avail = len - s->off, eol = 0;
        int found = 0;
        for (size_t i = 0; i < avail; i++) {
            if (line[i] == '\n')
                return fail(reason, "bare LF line ending", 400);
            if (line[i] == '\r') {
                if (i + 1 == avail)
                    break; /* wait for the LF */
                if (line[i + 1] != '\n')
                    return fail(reason, "bare CR", 400);
                eol = i;
                found = 1;
                break;
            }
        }
        if (!found) {
            if (!s->have_reqline) {
                if (avail > lim->request_line_bytes)
                    return fail(reason, "request line too long", 414);
                size_t plen = avail - (line[avail - 1] == '\r'); /* CR awaiting its LF */
                int st = plen ? check_partial_reqline(line, plen, reason) : 0;
                if (st)
                    return st;
            }
            if (len > lim->head_bytes)
                return fail(reason, "request head too large", 431);
            return HEAD_AGAIN;
        }
        size_t next = s->off + eol + 2;
        if (!s->have_reqline) {
            if (eol == 0) { /* empty line before the request line: tolerated (RFC 9112 2.2) */
                s->off = s->start = next;
                if (next > lim->head_bytes)
                    return fail(reason, "request head too large", 431);
                continue;
            }
            if (eol > lim->request_line_bytes)
                return fail(reason, "request line too long", 414);
            int st = check_request_line(line, eol, reason);
            if (st)
                return st;
            s->have_reqline = 1;
        } else if (eol == 0) {
            s->head_len = next;
            if (next > lim->head_bytes)
                return fail(reason, "request head too large", 431);
            return HEAD_DONE;
        } else {
            if (++s->nfields > lim->header_count)
                return fail(reason, "too many header fields", 431);
            int st = check_field_line(line, eol, reason);
            if (st)
                return st;
        }
        s->off = next;
        if (s->off > lim->head_bytes)
            return fail(reason, "request head too large", 431);
    }
    return HEAD_AGAIN;
}
