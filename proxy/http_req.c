/* Request heads split into their parts (after the strict scanner), then the semantic checks. */
#include "proxy/http_req.h"

#include <http_parser.h>
#include <string.h>

#include "common/util.h"

/* The http_method of a method token, or -1. The scanner lets through only the methods
 * http-parser knows; the ones we serve are matched first. */
static int method_of(const char *t, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(t, "GET", 3) == 0)
            return HTTP_GET;
        if (memcmp(t, "PUT", 3) == 0)
            return HTTP_PUT;
        break;
    case 4:
        if (memcmp(t, "HEAD", 4) == 0)
            return HTTP_HEAD;
        if (memcmp(t, "POST", 4) == 0)
            return HTTP_POST;
        break;
    case 5:
        if (memcmp(t, "PATCH", 5) == 0)
            return HTTP_PATCH;
        break;
    case 6:
        if (memcmp(t, "DELETE", 6) == 0)
            return HTTP_DELETE;
        break;
    case 7:
        if (memcmp(t, "OPTIONS", 7) == 0)
            return HTTP_OPTIONS;
        break;
    default:
        break;
    }
    for (int m = 0; m <= HTTP_SOURCE; m++) {
        const char *name = http_method_str((enum http_method)m);
        if (strlen(name) == n && memcmp(name, t, n) == 0)
            return m;
    }
    return -1;
}

/* Appends a field to r->hdrs (in arena a; *cap is its capacity). */
static void add_field(struct http_req *r, struct arena *a, size_t *cap, const char *name,
                      size_t nlen, const char *value, size_t vlen)
{
    if (r->nhdrs == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct http_hdr *n = arena_alloc(a, ncap * sizeof *n);
        if (r->nhdrs)
            memcpy(n, r->hdrs, r->nhdrs * sizeof *n);
        r->hdrs = n;
        *cap = ncap;
    }
    struct http_hdr *h = &r->hdrs[r->nhdrs++];
    h->name = name;
    h->nlen = nlen;
    h->value = value;
    h->vlen = vlen;
    h->flags = 0;
}

static void trim_ows(const char **v, size_t *len)
{
    while (*len > 0 && ((*v)[0] == ' ' || (*v)[0] == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

static int fail(const char **reason, const char *why, int status)
{
    *reason = why;
    return status;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* pchar minus ';' plus '/': what a path may hold unencoded. */
static int path_char_ok(unsigned char c)
{
    return is_unreserved(c) || strchr("!$&'()*+,=:@/", c) != NULL;
}

int http_target_check(const char *t, size_t len, size_t *path_len, const char **reason)
{
    if (len == 0 || t[0] != '/')
        return fail(reason, "request target must be an absolute path", 400);
    size_t q = 0;
    while (q < len && t[q] != '?')
        q++;
    *path_len = q;
    size_t seg = 1; /* start of the current segment */
    for (size_t i = 1; i <= q; i++) {
        if (i == q || t[i] == '/') {
            size_t sl = i - seg;
            if (sl == 0 && i < q)
                return fail(reason, "empty path segment", 400);
            if ((sl == 1 && t[seg] == '.') || (sl == 2 && t[seg] == '.' && t[seg + 1] == '.'))
                return fail(reason, "dot segment in path", 400);
            seg = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)t[i];
        if (c == '%') {
            if (i + 2 >= q)
                return fail(reason, "bad percent-encoding in path", 400);
            int hi = hex_digit_value((unsigned char)t[i + 1]), lo = hex_digit_value((unsigned char)t[i + 2]);
            if (hi < 0 || lo < 0)
                return fail(reason, "bad percent-encoding in path", 400);
            unsigned char d = (unsigned char)(hi * 16 + lo);
            if (is_unreserved(d) || d == '/' || d == '\\' || d == '%' || d == ';' || d < 0x20 ||
                d >= 0x7f)
                return fail(reason, "path encodes a character it must not", 400);
            i += 2;
            continue;
        }
        if (!path_char_ok(c))
            return fail(reason, "invalid character in path", 400);
    }
    for (size_t i = q + 1; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '%') {
            if (i + 2 >= len || hex_digit_value((unsigned char)t[i + 1]) < 0 || hex_digit_value((unsigned char)t[i + 2]) < 0)
                return fail(reason, "bad percent-encoding in query", 400);
            i += 2;
        } else if (!path_char_ok(c) && c != '?' && c != ';') {
            return fail(reason, "invalid character in query", 400);
        }
    }
    return 0;
}

/* Parses the Connection field's tokens; marks listed fields as hop-by-hop. */
static int apply_connection(struct http_req *r, const struct http_hdr *h, int *close_tok,
                            int *keep_tok, const char **reason)
{
    size_t i = 0;
    while (i <= h->vlen) {
        size_t j = i;
        while (j < h->vlen && h->value[j] != ',')
            j++;
        const char *tok = h->value + i;
        size_t tl = j - i;
        trim_ows(&tok, &tl);
        if (tl > 0) {
            for (size_t k = 0; k < tl; k++)
                if (!http_is_tchar((unsigned char)tok[k]))
                    return fail(reason, "malformed Connection header", 400);
            if (ascii_eq_nocase(tok, tl, "close"))
                *close_tok = 1;
            else if (ascii_eq_nocase(tok, tl, "keep-alive"))
                *keep_tok = 1;
            char name[128];
            if (tl < sizeof name) {
                memcpy(name, tok, tl);
                name[tl] = '\0';
                for (size_t k = 0; k < r->nhdrs; k++)
                    if (ascii_eq_nocase(r->hdrs[k].name, r->hdrs[k].nlen, name))
                        r->hdrs[k].flags |= HDR_DROP;
            }
        }
        i = j + 1;
    }
    return 0;
}

int http_header_dropped(const char *n, size_t len)
{
    return (http_name_class(n, len) & HNAME_DROPPED) != 0;
}

static int check_content_length(struct http_req *r, const struct http_hdr *h,
                                 const struct http_limits *lim, const char **reason)
{
    if (h->vlen == 0)
        return fail(reason, "empty Content-Length", 400);
    size_t i = 0;
    while (i + 1 < h->vlen && h->value[i] == '0')
        i++;
    if (h->vlen - i > 15)
        return fail(reason, "Content-Length too large", 400);
    int64_t v = 0;
    for (; i < h->vlen; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return fail(reason, "malformed Content-Length", 400);
        v = v * 10 + (h->value[i] - '0');
    }
    r->content_length = v;
    if ((uint64_t)v > lim->body_bytes)
        return fail(reason, "request body too large", 413);
    return 0;
}

/* 1 if the whitespace that ends v[0..n) holds a tab. After a framing value only spaces may
 * follow: http-parser 2.9 refuses "Content-Length: 5<HTAB>" and does not read
 * "Transfer-Encoding: chunked<HTAB>" as chunked, so such a head is refused, not guessed at. */
static int tab_after_value(const char *v, size_t n)
{
    for (; n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
        if (v[n - 1] == '\t')
            return 1;
    return 0;
}

/* Counts and checks the fields that decide framing and identity. */
static int check_fields(struct http_req *r, const struct http_limits *lim, const char **reason)
{
    int nhost = 0, ncl = 0, nte = 0, nauth = 0, nexpect = 0, close_tok = 0, keep_tok = 0;
    const struct http_hdr *conn = NULL;
    for (size_t i = 0; i < r->nhdrs; i++) {
        struct http_hdr *h = &r->hdrs[i];
        int tab_after = tab_after_value(h->value, h->vlen);
        trim_ows(&h->value, &h->vlen);
        if (http_header_dropped(h->name, h->nlen))
            h->flags |= HDR_DROP;
        if (ascii_eq_nocase(h->name, h->nlen, "host")) {
            nhost++;
            r->host = h;
        } else if (ascii_eq_nocase(h->name, h->nlen, "content-length")) {
            if (tab_after)
                return fail(reason, "tab after the Content-Length value", 400);
            if (++ncl > 1)
                return fail(reason, "more than one Content-Length", 400);
            int st = check_content_length(r, h, lim, reason);
            if (st)
                return st;
        } else if (ascii_eq_nocase(h->name, h->nlen, "transfer-encoding")) {
            if (tab_after)
                return fail(reason, "tab after the Transfer-Encoding value", 400);
            if (++nte > 1)
                return fail(reason, "more than one Transfer-Encoding", 400);
            if (!ascii_eq_nocase(h->value, h->vlen, "chunked"))
                return fail(reason, "unsupported Transfer-Encoding", 400);
            r->chunked = 1;
        } else if (ascii_eq_nocase(h->name, h->nlen, "authorization")) {
            if (++nauth > 1)
                return fail(reason, "more than one Authorization", 400);
            r->authorization = h;
        } else if (ascii_eq_nocase(h->name, h->nlen, "expect")) {
            if (++nexpect > 1 || !ascii_eq_nocase(h->value, h->vlen, "100-continue"))
                return fail(reason, "unsupported expectation", 417);
            r->expect_continue = r->minor >= 1;
        } else if (ascii_eq_nocase(h->name, h->nlen, "upgrade")) {
            return fail(reason, "protocol upgrade is not supported", 400);
        } else if (ascii_eq_nocase(h->name, h->nlen, "connection")) {
            if (conn != NULL)
                return fail(reason, "more than one Connection", 400);
            conn = h;
        } else if (ascii_prefix_nocase(h->name, h->nlen, "transfer-encoding") ||
                   ascii_prefix_nocase(h->name, h->nlen, "content-length")) {
            /* "Transfer-Encodingx": a parser that matches names by prefix (http-parser 2.9
             * does, for this one) takes it for a framing header. */
            return fail(reason, "header name extends a framing header's name", 400);
        }
    }
    if (nhost > 1)
        return fail(reason, "more than one Host", 400);
    if (nhost == 0 && r->minor >= 1)
        return fail(reason, "missing Host", 400);
    if (r->host && r->host->vlen == 0 && r->minor >= 1)
        return fail(reason, "empty Host", 400);
    if (ncl && nte)
        return fail(reason, "both Content-Length and Transfer-Encoding", 400);
    if (nte && r->minor == 0)
        return fail(reason, "Transfer-Encoding in an HTTP/1.0 request", 400);
    if (conn && apply_connection(r, conn, &close_tok, &keep_tok, reason))
        return 400;
    r->keep_alive = r->minor >= 1 ? !close_tok : (keep_tok && !close_tok);
    return 0;
}

static int method_allowed(int m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_POST || m == HTTP_PUT ||
           m == HTTP_PATCH || m == HTTP_DELETE || m == HTTP_OPTIONS;
}

int http_req_parse(struct http_req *r, struct arena *a, const char *buf, size_t len,
                   const struct http_limits *lim, const char **reason)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    /* The head has passed http_head_scan: CRLF-ended lines, "METHOD SP target SP HTTP/1.d" with
     * a method http-parser knows and a target without spaces or controls, then "name:value"
     * fields (tchar names; no CR, LF or other control byte in values), then an empty line. So
     * splitting it is all that is left; what does not split as expected is refused all the
     * same. tests/fuzz/fuzz_head.c checks, against http-parser, that every head accepted
     * here is accepted there with the same method, version, target and fields. */
    const char *h = arena_memdup(a, buf, len), *end = h + len;
    const char *eol = memchr(h, '\r', len);
    const char *sp = eol ? memchr(h, ' ', (size_t)(eol - h)) : NULL;
    if (sp == NULL || eol - sp < 11 || eol[-9] != ' ' || memcmp(eol - 8, "HTTP/", 5) != 0 ||
        eol[-3] < '0' || eol[-3] > '9' || eol[-2] != '.' || eol[-1] < '0' || eol[-1] > '9')
        return fail(reason, "malformed request", 400);
    int m = method_of(h, (size_t)(sp - h));
    if (m < 0)
        return fail(reason, "unknown method", 400);
    r->method = m;
    r->major = (unsigned)(eol[-3] - '0');
    r->minor = (unsigned)(eol[-1] - '0');
    if (r->major != 1)
        return fail(reason, "HTTP version not supported", 505);
    if (!method_allowed(r->method))
        return fail(reason, "method not allowed", 405);
    r->target_len = (size_t)(eol - 9 - (sp + 1));
    r->target = arena_memdup(a, sp + 1, r->target_len); /* NUL-terminated for later layers */
    int st = http_target_check(r->target, r->target_len, &r->path_len, reason);
    if (st)
        return st;
    size_t cap = 0;
    for (const char *l = eol + 2; l < end && *l != '\r';) {
        const char *e = memchr(l, '\r', (size_t)(end - l));
        const char *colon = e ? memchr(l, ':', (size_t)(e - l)) : NULL;
        if (colon == NULL || colon == l)
            return fail(reason, "malformed request", 400);
        add_field(r, a, &cap, l, (size_t)(colon - l), colon + 1, (size_t)(e - colon - 1));
        l = e + 2;
    }
    return check_fields(r, lim, reason);
}

const struct http_hdr *http_req_header(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++)
        if (ascii_eq_nocase(r->hdrs[i].name, r->hdrs[i].nlen, name))
            return &r->hdrs[i];
    return NULL;
}
