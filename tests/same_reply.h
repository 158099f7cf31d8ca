/* Two hiredis replies compared field by field (for the reply pool's tests and fuzzer). */
#ifndef LG_TESTS_SAME_REPLY_H
#define LG_TESTS_SAME_REPLY_H

#include <hiredis/hiredis.h>
#include <string.h>

static inline int same_reply(const redisReply *a, const redisReply *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case REDIS_REPLY_INTEGER:
        return a->integer == b->integer;
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements)
            return 0;
        for (size_t i = 0; i < a->elements; i++)
            if (!same_reply(a->element[i], b->element[i]))
                return 0;
        return 1;
    case REDIS_REPLY_NIL:
        return 1;
    default:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 && b->str[b->len] == '\0';
    }
}

#endif
