/* Bytes gathered on the stack and handed to an evbuffer in a few evbuffer_add calls (each
 * costs more than the copy): the response and upstream request heads are built this way. */
#ifndef LG_OBUF_H
#define LG_OBUF_H

#include <event2/buffer.h>
#include <stdint.h>
#include <string.h>

#include "common/util.h"

struct obuf {
    struct evbuffer *dst;
    size_t len;
    char b[4096];
};

static inline void ob_flush(struct obuf *o)
{
    if (o->len)
        evbuffer_add(o->dst, o->b, o->len);
    o->len = 0;
}

static inline void ob_mem(struct obuf *o, const char *s, size_t n)
{
    if (n > sizeof o->b - o->len) {
        ob_flush(o);
        if (n > sizeof o->b) {
            evbuffer_add(o->dst, s, n);
            return;
        }
    }
    memcpy(o->b + o->len, s, n);
    o->len += n;
}

static inline void ob_str(struct obuf *o, const char *s)
{
    ob_mem(o, s, strlen(s));
}

static inline void ob_int(struct obuf *o, int64_t v)
{
    char t[24];
    ob_mem(o, t, fmt_i64(t, v));
}

#endif
