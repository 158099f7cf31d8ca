/* The chunked-body state machine. */
#include "proxy/chunked.h"

#include <event2/buffer.h>

#include "common/util.h"

enum {
    CH_SIZE,        /* reading hex digits */
    CH_EXT,         /* after ';' on the size line */
    CH_SIZE_LF,     /* CR seen on the size line */
    CH_DATA,        /* chunk data */
    CH_DATA_CR,     /* expecting CR after data */
    CH_DATA_LF,     /* expecting LF after data */
    CH_TRAILER_BOL, /* start of a trailer line (or the final CRLF) */
    CH_TRAILER,     /* inside a trailer line */
    CH_TRAILER_LF,  /* CR seen in a trailer line */
    CH_FINAL_LF,    /* CR of the final empty line seen */
    CH_DONE,
};

void chunked_init(struct chunked *c, size_t max_body, size_t max_ext, size_t max_trailer)
{
    *c = (struct chunked){.state = CH_SIZE, .max_body = max_body, .max_ext = max_ext,
                          .max_trailer = max_trailer};
}

static int bad(const char **reason, const char *why, int status)
{
    *reason = why;
    return status;
}

int chunked_decode(struct chunked *c, const char *in, size_t len, size_t *used,
                   struct evbuffer *out, const char **reason)
{
    size_t i = 0;
    while (i < len && c->state != CH_DONE) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CH_SIZE: {
            int d = hex_digit_value(ch);
            if (d >= 0) {
                if (++c->digits > 16)
                    return bad(reason, "chunk size has too many digits", 400);
                c->remaining = (c->remaining << 4) | (uint64_t)d;
                if (c->remaining > c->max_body || c->total + c->remaining > c->max_body)
                    return bad(reason, "request body too large", 413);
            } else if (c->digits == 0) {
                return bad(reason, "malformed chunk size", 400);
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                return bad(reason, "malformed chunk size", 400);
            }
            i++;
            break;
        }
        case CH_EXT:
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (ch == '\n' || (ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return bad(reason, "control byte in chunk extension", 400);
            } else if (++c->ext_len > c->max_ext) {
                return bad(reason, "chunk extension too long", 400);
            }
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                return bad(reason, "bare CR in chunk size line", 400);
            i++;
            c->digits = 0;
            c->ext_len = 0;
            c->state = c->remaining == 0 ? CH_TRAILER_BOL : CH_DATA;
            break;
        case CH_DATA: {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (evbuffer_add(out, in + i, n) != 0)
                return bad(reason, "out of memory", 503);
            c->remaining -= n;
            c->total += n;
            i += n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r')
                return bad(reason, "chunk data not followed by CRLF", 400);
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                return bad(reason, "chunk data not followed by CRLF", 400);
            c->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER_BOL:
            if (ch == '\r') {
                c->state = CH_FINAL_LF;
                i++;
                break;
            }
            if (ch == ' ' || ch == '\t')
                return bad(reason, "folded trailer line", 400);
            c->state = CH_TRAILER;
            /* fall through */
        case CH_TRAILER:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (ch == '\n' || (ch < 0x20 && ch != '\t') || ch == 0x7f)
                return bad(reason, "control byte in trailer", 400);
            if (++c->trailer_len > c->max_trailer)
                return bad(reason, "trailer section too large", 400);
            i++;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                return bad(reason, "bare CR in trailer", 400);
            c->state = CH_TRAILER_BOL;
            i++;
            break;
        case CH_FINAL_LF:
            if (ch != '\n')
                return bad(reason, "bare CR after the last chunk", 400);
            c->state = CH_DONE;
            i++;
            break;
        }
    }
    *used = i;
    return c->state == CH_DONE ? CHUNKED_DONE : CHUNKED_AGAIN;
}
