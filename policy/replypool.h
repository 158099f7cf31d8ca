/* hiredis reply objects without an allocation per reply. hiredis 0.14 callocs every element of
 * a reply (ten for an admission) and frees them after the callback. A reply_pool recycles them:
 * the reader's object functions take nodes from the pool's free list and give them back, with a
 * short string and a short element array inside the node. The replies are ordinary redisReply
 * trees, so the code that reads them does not change. One pool per store, used on its thread
 * only. */
#ifndef LG_REPLYPOOL_H
#define LG_REPLYPOOL_H

#include <stddef.h>

struct redisReader;
struct reply_pool;

struct reply_pool *reply_pool_new(void);
/* Frees the pool and its free nodes. Every reply made from it must have been freed first (for
 * a hiredis context: after redisAsyncFree). */
void reply_pool_free(struct reply_pool *p);
/* Makes r build its replies from p. */
void reply_pool_use(struct reply_pool *p, struct redisReader *r);
/* Nodes on the free list (for tests). */
size_t reply_pool_idle(const struct reply_pool *p);

#endif
