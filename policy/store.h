/* A worker's quota store: decides quota plans through Redis (one hiredis async connection per
 * worker, our own connect and command timers since hiredis 0.14 has none, a cap on commands in
 * flight, reconnection with capped back-off and jitter, Sentinel discovery of the primary) or
 * through the process's in-memory backend. When Redis cannot decide, on_store_failure says
 * what happens: "deny" (the result is QUOTA_STORE_ERROR) or "local" (the in-memory backend
 * decides with limit / instances, and the result is marked degraded). */
#ifndef LG_STORE_H
#define LG_STORE_H

#include <stdint.h>

#include "policy/config.h"
#include "policy/quota.h"

struct event_base;
struct quota_store;
struct quota_op;

/* Called exactly once per admitted plan unless the op was cancelled first; res is valid only
 * during the call. May be called before quota_store_admit returns (then it returns NULL). */
typedef void quota_done_fn(void *arg, const struct quota_result *res);

struct quota_store_stats {
    uint64_t commands;     /* quota decisions sent to Redis */
    uint64_t errors;       /* error, garbage or missing replies */
    uint64_t timeouts;     /* command timers that fired */
    uint64_t degraded;     /* decisions made by the local fallback */
    uint64_t denied;       /* decisions refused because the store failed */
    uint64_t reconnects;   /* connection attempts */
};

struct quota_store *quota_store_new(struct event_base *base, const struct cfg_store *cfg,
                                    struct quota_mem *mem);
/* Frees the store; ops still pending complete with QUOTA_STORE_ERROR first. */
void quota_store_free(struct quota_store *s);

struct quota_op *quota_store_admit(struct quota_store *s, const struct quota_plan *pl,
                                   quota_done_fn *cb, void *arg);
/* The caller no longer wants the answer (its request is gone): cb will not be called. */
void quota_op_cancel(struct quota_op *op);

/* 1 when Redis is connected and confirmed primary (or the backend is memory). */
int quota_store_ready(const struct quota_store *s);
const struct quota_store_stats *quota_store_stats(const struct quota_store *s);

#endif
