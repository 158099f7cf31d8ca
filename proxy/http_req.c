/* http-parser glue for request heads, then the semantic checks. */
#include "proxy/http_req.h"

#include <http_parser.h>
#include <string.h>

#include "common/util.h"

struct parse_ctx {
    struct http_req *r;  /* being filled */
    struct arena *a;
    size_t cap;          /* hdrs capacity */
    int in_value;        /* last callback was a value */
    int done;            /* on_headers_complete seen */
    int bad;             /* callback sequence we never expect from a validated head */
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct parse_ctx *c = p->data;
    if (c->r->target != NULL)
        c->bad = 1;
    c->r->target = at;
    c->r->target_len = len;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct parse_ctx *c = p->data;
    struct http_req *r = c->r;
    if (r->nhdrs == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct http_hdr *n = arena_alloc(c->a, ncap * sizeof *n);
        if (r->nhdrs)
            memcpy(n, r->hdrs, r->nhdrs * sizeof *n);
        r->hdrs = n;
        c->cap = ncap;
    }
    struct http_hdr *h = &r->hdrs[r->nhdrs++];
    memset(h, 0, sizeof *h);
    h->name = at;
    h->nlen = len;
    h->value = at + len; /* empty until on_value */
    c->in_value = 0;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct parse_ctx *c = p->data;
    struct http_req *r = c->r;
    if (r->nhdrs == 0 || c->in_value) {
        c->bad = 1; /* a split value means folding, which the scanner already refused */
        return 0;
    }
    r->hdrs[r->nhdrs - 1].value = at;
    r->hdrs[r->nhdrs - 1].vlen = len;
    c->in_value = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct parse_ctx *c = p->data;
    c->done = 1;
    http_parser_pause(p, 1); /* the body is ours to frame */
    return 0;
}

static const http_parser_settings req_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

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

/* Fields never forwarded: hop-by-hop, framing, ours to set, and identity-like. */
static int header_dropped(const char *n, size_t l)
{
    static const struct name_len exact[] = {
        NAME_LEN("connection"), NAME_LEN("keep-alive"), NAME_LEN("proxy-connection"),
        NAME_LEN("te"), NAME_LEN("trailer"), NAME_LEN("transfer-encoding"), NAME_LEN("upgrade"),
        NAME_LEN("proxy-authorization"), NAME_LEN("proxy-authenticate"),
        NAME_LEN("content-length"), NAME_LEN("host"), NAME_LEN("expect"),
        NAME_LEN("authorization"), NAME_LEN("forwarded"), NAME_LEN("x-real-ip"),
        NAME_LEN("x-client-ip"), NAME_LEN("x-request-id"),
    };
    static const struct name_len prefix[] = {
        NAME_LEN("x-lookup-"), NAME_LEN("x-forwarded-"), NAME_LEN("x-account"),
        NAME_LEN("x-user-"),
    };
    return ascii_in_nocase(n, l, exact, ARRAY_LEN(exact), 0) ||
           ascii_in_nocase(n, l, prefix, ARRAY_LEN(prefix), 1);
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

/* Counts and checks the fields that decide framing and identity. */
static int check_fields(struct http_req *r, const struct http_limits *lim, const char **reason)
{
    int nhost = 0, ncl = 0, nte = 0, nauth = 0, nexpect = 0, close_tok = 0, keep_tok = 0;
    const struct http_hdr *conn = NULL;
    for (size_t i = 0; i < r->nhdrs; i++) {
        struct http_hdr *h = &r->hdrs[i];
        trim_ows(&h->value, &h->vlen);
        if (header_dropped(h->name, h->nlen))
            h->flags |= HDR_DROP;
        if (ascii_eq_nocase(h->name, h->nlen, "host")) {
            nhost++;
            r->host = h;
        } else if (ascii_eq_nocase(h->name, h->nlen, "content-length")) {
            if (++ncl > 1)
                return fail(reason, "more than one Content-Length", 400);
            int st = check_content_length(r, h, lim, reason);
            if (st)
                return st;
        } else if (ascii_eq_nocase(h->name, h->nlen, "transfer-encoding")) {
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
    char *copy = arena_memdup(a, buf, len);
    struct parse_ctx c = {.r = r, .a = a};
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &c;
    http_parser_execute(&p, &req_settings, copy, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if ((e != HPE_OK && e != HPE_PAUSED) || !c.done || c.bad || r->target == NULL)
        return fail(reason, e == HPE_INVALID_METHOD ? "unknown method" : "malformed request", 400);
    r->method = p.method;
    r->major = p.http_major;
    r->minor = p.http_minor;
    if (r->major != 1)
        return fail(reason, "HTTP version not supported", 505);
    if (!method_allowed(r->method))
        return fail(reason, "method not allowed", 405);
    /* http-parser reports targets as given; copy so it is NUL-terminated for later layers. */
    r->target = arena_memdup(a, r->target, r->target_len);
    int st = http_target_check(r->target, r->target_len, &r->path_len, reason);
    if (st)
        return st;
    return check_fields(r, lim, reason);
}

const struct http_hdr *http_req_header(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++)
        if (ascii_eq_nocase(r->hdrs[i].name, r->hdrs[i].nlen, name))
            return &r->hdrs[i];
    return NULL;
}
