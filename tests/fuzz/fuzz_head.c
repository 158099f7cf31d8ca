/* Whole client connections of bytes through the request path's reading layer, exactly as
 * proxy/conn.c drives it: the strict head scanner on the bytes as they arrive (split at
 * points taken from the input), http_req_parse on a complete head, then the body by
 * Content-Length or through the chunked decoder, one message at a time, pipelined messages
 * after it. Checked besides "no crash": a head scanned in pieces gets the same answer as the
 * same bytes whole (A51), what the parser accepts is what the rest of the proxy trusts
 * (origin-form target, one framing, clean names and values, body within its limit), and every
 * head it accepts http-parser accepts too, with the same method, version, target and fields
 * (http_req_parse splits heads itself; http-parser is the oracle that it splits them right). */
#include <event2/buffer.h>
#include <http_parser.h>
#include <string.h>

#include "common/arena.h"
#include "proxy/chunked.h"
#include "proxy/http_head.h"
#include "proxy/http_req.h"
#include "tests/fuzz/fuzz.h"

static const struct http_limits lim = {4096, 2048, 32, 65536};

static void check_request(const struct http_req *r)
{
    FUZZ_CHECK(r->target != NULL && r->target[0] == '/');
    FUZZ_CHECK(r->path_len <= r->target_len && strlen(r->target) == r->target_len);
    FUZZ_CHECK(!(r->chunked && r->content_length >= 0));
    FUZZ_CHECK(r->content_length <= (int64_t)lim.body_bytes);
    FUZZ_CHECK(r->nhdrs <= lim.header_count);
    for (size_t i = 0; i < r->nhdrs; i++) {
        const struct http_hdr *h = &r->hdrs[i];
        FUZZ_CHECK(h->nlen > 0);
        for (size_t k = 0; k < h->nlen; k++)
            FUZZ_CHECK(http_is_tchar((unsigned char)h->name[k]));
        for (size_t k = 0; k < h->vlen; k++)
            FUZZ_CHECK(h->value[k] != '\r' && h->value[k] != '\n' && h->value[k] != '\0');
    }
}

/* What http-parser makes of a head. */
struct oracle {
    const char *target;
    size_t tlen;
    struct {
        const char *n, *v;
        size_t nl, vl;
    } f[64];
    size_t nf;
    int in_value, done, bad;
};

static int o_url(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    o->bad |= o->target != NULL; /* one call for a contiguous head */
    o->target = at;
    o->tlen = len;
    return 0;
}

static int o_field(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    if (o->nf == 64) {
        o->bad = 1;
        return 0;
    }
    o->f[o->nf].n = at;
    o->f[o->nf].nl = len;
    o->f[o->nf].v = NULL;
    o->f[o->nf].vl = 0;
    o->nf++;
    o->in_value = 0;
    return 0;
}

static int o_value(http_parser *p, const char *at, size_t len)
{
    struct oracle *o = p->data;
    o->bad |= o->nf == 0 || o->in_value;
    if (o->nf > 0) {
        o->f[o->nf - 1].v = at;
        o->f[o->nf - 1].vl = len;
    }
    o->in_value = 1;
    return 0;
}

static int o_done(http_parser *p)
{
    struct oracle *o = p->data;
    o->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static int same_trimmed(const char *a, size_t al, const char *b, size_t bl)
{
    while (al > 0 && (a[0] == ' ' || a[0] == '\t'))
        a++, al--;
    while (al > 0 && (a[al - 1] == ' ' || a[al - 1] == '\t'))
        al--;
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* http-parser accepts head[0..len), which http_req_parse accepted as r, and reads it alike. */
static void check_oracle(const struct http_req *r, const char *head, size_t len)
{
    static const http_parser_settings set = {
        .on_url = o_url, .on_header_field = o_field, .on_header_value = o_value,
        .on_headers_complete = o_done};
    struct oracle o;
    memset(&o, 0, sizeof o);
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &o;
    http_parser_execute(&p, &set, head, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    FUZZ_CHECK((e == HPE_OK || e == HPE_PAUSED) && o.done && !o.bad);
    FUZZ_CHECK((int)p.method == r->method && p.http_major == r->major &&
               p.http_minor == r->minor);
    FUZZ_CHECK(o.tlen == r->target_len && memcmp(o.target, r->target, o.tlen) == 0);
    FUZZ_CHECK(o.nf == r->nhdrs);
    for (size_t i = 0; i < o.nf; i++) {
        FUZZ_CHECK(o.f[i].nl == r->hdrs[i].nlen &&
                   memcmp(o.f[i].n, r->hdrs[i].name, o.f[i].nl) == 0);
        FUZZ_CHECK(same_trimmed(o.f[i].v ? o.f[i].v : "", o.f[i].vl, r->hdrs[i].value,
                                r->hdrs[i].vlen));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_splits sp;
    fuzz_splits_init(&sp, data[0]);
    const char *in = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    for (int msg = 0; msg < 8 && off < len; msg++) {
        const char *reason = NULL, *reason2 = NULL;
        struct head_scan s, whole;
        memset(&s, 0, sizeof s);
        memset(&whole, 0, sizeof whole);
        size_t avail = len - off, have = 0, n = 0;
        int st = HEAD_AGAIN;
        while (st == HEAD_AGAIN && have < avail) {
            have += fuzz_next_piece(&sp, 64);
            if (have > avail)
                have = avail;
            n = have < lim.head_bytes + 1 ? have : lim.head_bytes + 1;
            st = http_head_scan(&s, in + off, n, &lim, &reason);
        }
        int st2 = http_head_scan(&whole, in + off, n, &lim, &reason2);
        FUZZ_CHECK(st2 == st);
        if (st != HEAD_DONE)
            return 0; /* refused (the connection closes) or incomplete */
        FUZZ_CHECK(whole.head_len == s.head_len);
        FUZZ_CHECK(s.start <= s.head_len && s.head_len <= n);
        struct arena a;
        struct http_req req;
        arena_init(&a);
        int pst = http_req_parse(&req, &a, in + off + s.start, s.head_len - s.start, &lim,
                                 &reason);
        if (pst != 0) {
            FUZZ_CHECK(reason != NULL && pst >= 400 && pst <= 505);
            arena_reset(&a);
            return 0;
        }
        check_request(&req);
        check_oracle(&req, in + off + s.start, s.head_len - s.start);
        size_t pos = off + s.head_len;
        int keep = req.keep_alive;
        if (req.chunked) {
            struct chunked ch;
            struct evbuffer *body = evbuffer_new();
            int cst = CHUNKED_AGAIN;
            chunked_init(&ch, lim.body_bytes, 256, 4096);
            while (cst == CHUNKED_AGAIN && pos < len) {
                size_t piece = fuzz_next_piece(&sp, 32), used = 0;
                if (piece > len - pos)
                    piece = len - pos;
                cst = chunked_decode(&ch, in + pos, piece, &used, body, &reason);
                FUZZ_CHECK(used <= piece);
                if (cst == CHUNKED_AGAIN)
                    FUZZ_CHECK(used == piece);
                pos += used;
            }
            FUZZ_CHECK(evbuffer_get_length(body) <= lim.body_bytes);
            evbuffer_free(body);
            if (cst != CHUNKED_DONE)
                keep = 0;
        } else {
            size_t cl = req.content_length > 0 ? (size_t)req.content_length : 0;
            if (cl > len - pos)
                keep = 0;
            else
                pos += cl;
        }
        arena_reset(&a);
        if (!keep)
            return 0;
        off = pos;
    }
    return 0;
}
