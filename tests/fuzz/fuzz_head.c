/* Whole client connections of bytes through the request path's reading layer, exactly as
 * proxy/conn.c drives it: the strict head scanner on the bytes as they arrive (split at
 * points taken from the input), http_req_parse on a complete head, then the body by
 * Content-Length or through the chunked decoder, one message at a time, pipelined messages
 * after it. Checked besides "no crash": a head scanned in pieces gets the same answer as the
 * same bytes whole (A51), and what the parser accepts is what the rest of the proxy trusts
 * (origin-form target, one framing, clean names and values, body within its limit). */
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
