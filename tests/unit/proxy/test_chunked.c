/* Unit tests for proxy/chunked.c: valid bodies whole and split, and every malformed framing of
 * SECURITY-CASES A28-A38. */
#include <event2/buffer.h>
#include <stdlib.h>

#include "../check.h"
#include "proxy/chunked.h"

/* Decodes v (feeding `step` bytes at a time; 0 = all at once). Returns the final status:
 * CHUNKED_DONE, CHUNKED_AGAIN, or an error status. *out_len gets the decoded length and *rest
 * the bytes left after the body. */
static int decode(const char *v, size_t len, size_t step, size_t *out_len, size_t *rest)
{
    struct chunked c;
    chunked_init(&c, 1000, 64, 256);
    struct evbuffer *out = evbuffer_new();
    const char *why;
    size_t off = 0;
    int st = CHUNKED_AGAIN;
    while (off < len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t used = 0;
        st = chunked_decode(&c, v + off, n, &used, out, &why);
        off += used;
        if (st != CHUNKED_AGAIN)
            break;
    }
    *out_len = evbuffer_get_length(out);
    *rest = len - off;
    evbuffer_free(out);
    return st;
}

struct vec {
    const char *body;
    int expect;
    size_t decoded;
};

static const struct vec vecs[] = {
    {"0\r\n\r\n", CHUNKED_DONE, 0},
    {"5\r\nhello\r\n0\r\n\r\n", CHUNKED_DONE, 5},
    {"5;name=value\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", CHUNKED_DONE, 8},
    {"A\r\n0123456789\r\n0\r\nX-Trailer: dropped\r\nAuthorization: x\r\n\r\n", CHUNKED_DONE, 10},
    {"000000000000000A\r\n0123456789\r\n0\r\n\r\n", CHUNKED_DONE, 10},
    {"1\r\nAXX0\r\n\r\n", 400, 1},
    {"1\rX", 400, 0},
    {"2;a\nXX\r\n0\r\n\r\n", 400, 0},
    {"2;a\rXX\r\n0\r\n\r\n", 400, 0},
    {"1 zz\r\nA\r\n0\r\n\r\n", 400, 0},
    {"FFFFFFFFFFFFFFFFF1\r\n", 413, 0},
    {"00000000000000000001\r\nA\r\n0\r\n\r\n", 400, 0},
    {"0x1\r\nA\r\n0\r\n\r\n", 400, 0},
    {" 1\r\nA\r\n0\r\n\r\n", 400, 0},
    {"1\nA\r\n0\r\n\r\n", 400, 0},
    {"\r\n", 400, 0},
    {"3E9\r\n", 413, 0},
    {"0\r\nX: a\nY: b\r\n\r\n", 400, 0},
    {"0\r\n folded: x\r\n\r\n", 400, 0},
    {"0\r\n\rX", 400, 0},
    {"5\r\nhel", CHUNKED_AGAIN, 3},
};

int main(void)
{
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        size_t len = strlen(vecs[i].body), dl, rest;
        int whole = decode(vecs[i].body, len, 0, &dl, &rest);
        CHECK_INT(whole, vecs[i].expect);
        if (vecs[i].expect == CHUNKED_DONE || vecs[i].expect == CHUNKED_AGAIN)
            CHECK_INT(dl, vecs[i].decoded);
        int split = decode(vecs[i].body, len, 1, &dl, &rest);
        CHECK_INT(split, vecs[i].expect);
        if (whole != vecs[i].expect || split != vecs[i].expect)
            fprintf(stderr, "vector %zu\n", i);
    }
    /* Bytes after the final CRLF belong to the next request and are not consumed. */
    size_t dl, rest;
    CHECK_INT(decode("0\r\n\r\nGET", 8, 0, &dl, &rest), CHUNKED_DONE);
    CHECK_INT(rest, 3);
    /* A long run of extensions is refused at the cap, not after megabytes. */
    char big[4096];
    memcpy(big, "1", 1);
    memset(big + 1, ';', sizeof big - 1);
    CHECK_INT(decode(big, sizeof big, 0, &dl, &rest), 400);
    CHECK(rest > sizeof big - 100);
    /* Decoded total over the limit across chunks → 413. */
    char many[3000];
    size_t n = 0;
    for (int i = 0; i < 5; i++)
        n += (size_t)sprintf(many + n, "FA\r\n%0250d\r\n", 0);
    n += (size_t)sprintf(many + n, "0\r\n\r\n");
    CHECK_INT(decode(many, n, 0, &dl, &rest), 413);
    return check_done("test_chunked");
}
