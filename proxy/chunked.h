/* Our own strict decoder for chunked request bodies. http-parser's chunk states accept bytes
 * after chunk data, bare LF in extensions and unbounded digits, and its callbacks cannot refuse
 * them, so request bodies are framed here instead (SECURITY-CASES A28-A38). Trailers are read
 * to their end and discarded. */
#ifndef LG_CHUNKED_H
#define LG_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct chunked {
    int state;            /* decoder state (CH_*) */
    uint64_t remaining;   /* data bytes left in the current chunk */
    unsigned digits;      /* hex digits in the current size line */
    size_t ext_len;       /* extension bytes on the current size line */
    size_t trailer_len;   /* trailer bytes so far */
    uint64_t total;       /* decoded bytes so far */
    size_t max_body;      /* above → 413 */
    size_t max_ext;       /* above → 400 */
    size_t max_trailer;   /* above → 400 */
};

enum { CHUNKED_AGAIN = 0, CHUNKED_DONE = 1 };

void chunked_init(struct chunked *c, size_t max_body, size_t max_ext, size_t max_trailer);

/* Decodes in[0..len), appending data to out. Sets *used to the bytes consumed. Returns
 * CHUNKED_AGAIN (all consumed, more needed), CHUNKED_DONE (the body ended at *used), or an HTTP
 * status (400, 413) with *reason set. */
int chunked_decode(struct chunked *c, const char *in, size_t len, size_t *used,
                   struct evbuffer *out, const char **reason);

#endif
