/* Redis replies to the quota script: bytes in RESP read by hiredis's own reader (as on the
 * wire), each reply handed to quota_parse_reply with a plan of 0 to 8 counters. A reply is
 * understood or refused; an understood one never has more counters than the plan, and a
 * refused one never becomes an admission. The same bytes also go through a reader whose
 * objects come from policy/replypool (as the store's do), which must give the same replies
 * and the same errors. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "policy/quota.h"
#include "policy/replypool.h"
#include "policy/store.h"
#include "tests/fuzz/fuzz.h"
#include "tests/same_reply.h"

/* hiredis 0.14's reader allocates whatever an array or bulk length says (it has no
 * maxelements); the Redis server is trusted infrastructure and its reader is not what this
 * fuzzer tests, so inputs declaring more than 4096 elements or bytes are skipped. */
static int lengths_bounded(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '*' && p[i] != '$') /* anywhere: the reader skips a bulk's CRLF unseen */
            continue;
        unsigned long v = 0;
        for (size_t k = i + 1; k < n && p[k] >= '0' && p[k] <= '9'; k++)
            if ((v = v * 10 + (p[k] - '0')) > 4096)
                return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || !lengths_bounded(data + 1, size - 1))
        return 0;
    struct quota_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.n = data[0] % (QUOTA_MAX_CHECKS + 1);
    for (int i = 0; i < pl.n; i++) {
        pl.checks[i].kind = i % 2 ? QUOTA_DAY : QUOTA_MINUTE;
        pl.checks[i].limit = 10 * (i + 1);
    }
    static struct reply_pool *pool;
    if (pool == NULL)
        pool = reply_pool_new();
    redisReader *rd = redisReaderCreate(), *prd = redisReaderCreate();
    if (rd == NULL || prd == NULL)
        return 0;
    reply_pool_use(pool, prd);
    redisReaderFeed(rd, (const char *)data + 1, size - 1);
    redisReaderFeed(prd, (const char *)data + 1, size - 1);
    for (int k = 0; k < 16; k++) {
        void *reply = NULL, *pooled = NULL;
        int rc = redisReaderGetReply(rd, &reply), prc = redisReaderGetReply(prd, &pooled);
        FUZZ_CHECK(rc == prc && (reply == NULL) == (pooled == NULL));
        FUZZ_CHECK(same_reply(reply, pooled));
        if (pooled)
            prd->fn->freeObject(pooled);
        if (rc != REDIS_OK || reply == NULL)
            break;
        struct quota_result res;
        memset(&res, 0xA5, sizeof res); /* garbage that must not leak through */
        if (quota_parse_reply(reply, &pl, &res) == 0) {
            FUZZ_CHECK(res.n == pl.n);
            FUZZ_CHECK(res.outcome == QUOTA_ADMITTED || res.outcome == QUOTA_EXCEEDED ||
                       res.outcome == QUOTA_SUSPENDED || res.outcome == QUOTA_STORE_ERROR);
            if (res.outcome == QUOTA_ADMITTED || res.outcome == QUOTA_EXCEEDED)
                for (int i = 0; i < pl.n; i++)
                    FUZZ_CHECK(res.c[i].used >= 0 && res.c[i].limit == pl.checks[i].limit);
        }
        freeReplyObject(reply);
    }
    redisReaderFree(rd);
    redisReaderFree(prd);
    return 0;
}
