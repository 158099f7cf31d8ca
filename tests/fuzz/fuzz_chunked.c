/* The chunked decoder alone: a body decoded in pieces (split points from the input) gives
 * the same status, the same bytes consumed and the same decoded body as decoded whole. */
#include <event2/buffer.h>
#include <string.h>

#include "proxy/chunked.h"
#include "tests/fuzz/fuzz.h"

static int decode(const char *in, size_t len, struct fuzz_splits *sp, struct evbuffer *out,
                  size_t *consumed)
{
    struct chunked ch;
    const char *reason = NULL;
    int st = CHUNKED_AGAIN;
    size_t pos = 0;
    chunked_init(&ch, 4096, 64, 256);
    while (st == CHUNKED_AGAIN && pos < len) {
        size_t piece = sp ? fuzz_next_piece(sp, 16) : len - pos, used = 0;
        if (piece > len - pos)
            piece = len - pos;
        st = chunked_decode(&ch, in + pos, piece, &used, out, &reason);
        FUZZ_CHECK(used <= piece);
        if (st != CHUNKED_AGAIN && st != CHUNKED_DONE)
            FUZZ_CHECK(reason != NULL && (st == 400 || st == 413));
        pos += used;
    }
    *consumed = pos;
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_splits sp;
    fuzz_splits_init(&sp, data[0]);
    struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
    size_t ua = 0, ub = 0;
    int sa = decode((const char *)data + 1, size - 1, NULL, a, &ua);
    int sb = decode((const char *)data + 1, size - 1, &sp, b, &ub);
    FUZZ_CHECK(sa == sb);
    if (sa == CHUNKED_DONE) {
        FUZZ_CHECK(ua == ub);
        size_t la = evbuffer_get_length(a);
        FUZZ_CHECK(la == evbuffer_get_length(b) && la <= 4096);
        FUZZ_CHECK(la == 0 || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), la) == 0);
    }
    evbuffer_free(a);
    evbuffer_free(b);
    return 0;
}
