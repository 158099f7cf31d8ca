#include "policy/replypool.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define INLINE_ELEMENTS 24 /* an admission reply has 3 + 3 per counter (6 at most): 21 */
#define INLINE_STR 40
#define MAX_IDLE 128       /* free nodes kept; replies are freed right after their callback */

struct node {
    redisReply r; /* first: a reply pointer is a node pointer */
    struct reply_pool *pool;
    struct node *next_free;
    redisReply *elements[INLINE_ELEMENTS];
    char str[INLINE_STR];
};

struct reply_pool {
    struct node *free;
    size_t idle;
};

static redisReplyObjectFunctions pool_functions;

static struct node *take(const redisReadTask *task, int type)
{
    struct reply_pool *p = task->privdata;
    struct node *n = p->free;
    if (n) {
        p->free = n->next_free;
        p->idle--;
    } else {
        n = malloc(sizeof *n);
        if (n == NULL)
            return NULL;
        n->pool = p;
    }
    memset(&n->r, 0, sizeof n->r);
    n->r.type = type;
    return n;
}

static void give_back(struct node *n)
{
    struct reply_pool *p = n->pool;
    if (p->idle >= MAX_IDLE) {
        free(n);
        return;
    }
    n->next_free = p->free;
    p->free = n;
    p->idle++;
}

static void free_reply(void *obj)
{
    struct node *n = obj;
    if (n == NULL)
        return;
    if (n->r.type == REDIS_REPLY_ARRAY && n->r.element) {
        for (size_t i = 0; i < n->r.elements; i++)
            free_reply(n->r.element[i]);
        if (n->r.element != n->elements)
            free(n->r.element);
    } else if (n->r.str && n->r.str != n->str) {
        free(n->r.str);
    }
    give_back(n);
}

/* As hiredis's own functions do: a child goes into its parent's element array. */
static void *attach(const redisReadTask *task, struct node *n)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = &n->r;
    }
    return n;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    struct node *n = take(task, task->type);
    if (n == NULL)
        return NULL;
    char *buf = len < INLINE_STR ? n->str : malloc(len + 1);
    if (buf == NULL) {
        give_back(n);
        return NULL;
    }
    memcpy(buf, str, len);
    buf[len] = '\0';
    n->r.str = buf;
    n->r.len = len;
    return attach(task, n);
}

static void *create_array(const redisReadTask *task, int elements)
{
    struct node *n = take(task, REDIS_REPLY_ARRAY);
    if (n == NULL)
        return NULL;
    if (elements > 0) {
        if (elements <= INLINE_ELEMENTS) {
            memset(n->elements, 0, (size_t)elements * sizeof n->elements[0]);
            n->r.element = n->elements;
        } else if ((n->r.element = calloc((size_t)elements, sizeof(redisReply *))) == NULL) {
            give_back(n);
            return NULL;
        }
    }
    n->r.elements = (size_t)(elements > 0 ? elements : 0);
    return attach(task, n);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    struct node *n = take(task, REDIS_REPLY_INTEGER);
    if (n == NULL)
        return NULL;
    n->r.integer = value;
    return attach(task, n);
}

static void *create_nil(const redisReadTask *task)
{
    struct node *n = take(task, REDIS_REPLY_NIL);
    return n ? attach(task, n) : NULL;
}

static redisReplyObjectFunctions pool_functions = {
    create_string, create_array, create_integer, create_nil, free_reply,
};

struct reply_pool *reply_pool_new(void)
{
    return xcalloc(1, sizeof(struct reply_pool));
}

void reply_pool_free(struct reply_pool *p)
{
    if (p == NULL)
        return;
    for (struct node *n = p->free, *next; n; n = next) {
        next = n->next_free;
        free(n);
    }
    free(p);
}

void reply_pool_use(struct reply_pool *p, struct redisReader *r)
{
    r->fn = &pool_functions;
    r->privdata = p;
}

size_t reply_pool_idle(const struct reply_pool *p)
{
    return p->idle;
}
