/* A worker's quota store: decides quota plans through Redis (one hiredis async connection per
 * worker, our own connect and command timers since hiredis 0.14 has none, a cap on commands in
 * flight, reconnection with capped back-off and jitter, Sentinel discovery of the primary) or
 * through the process's in-memory backend. When Redis cannot decide, on_store_failure says
 * what happens: "deny" (the result is QUOTA_STORE_ERROR) or "local" (the in-memory backend
 * decides with limit / instances, and the result is marked degraded). */
#ifndef LG_STORE_H
#define LG_STORE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/hist.h"

#include "policy/config.h"
#include "policy/quota.h"

struct event_base;
struct quota_store;
struct quota_op;

/* Called exactly once per admitted plan unless the op was cancelled first; res is valid only
 * during the call. May be called before quota_store_admit returns (then it returns NULL). */
typedef void quota_done_fn(void *arg, const struct quota_result *res);

/* Written by the store's thread only; any thread may read them (stat_get). */
struct quota_store_stats {
    atomic_ullong commands;     /* quota decisions sent to Redis */
    atomic_ullong errors;       /* error, garbage or missing replies */
    atomic_ullong timeouts;     /* command timers that fired */
    atomic_ullong degraded;     /* decisions made by the local fallback */
    atomic_ullong denied;       /* decisions refused because the store failed */
    atomic_ullong reconnects;   /* connection attempts */
    atomic_int ready;           /* 1 while connected to a primary (or memory) */
    atomic_int module;          /* 1 while admissions use the module's LOOKUPGATE.ADMIT */
};

struct quota_store *quota_store_new(struct event_base *base, const struct cfg_store *cfg,
                                    struct quota_mem *mem);
/* Frees the store; ops still pending complete with QUOTA_STORE_ERROR first. */
void quota_store_free(struct quota_store *s);

struct quota_op *quota_store_admit(struct quota_store *s, const struct quota_plan *pl,
                                   quota_done_fn *cb, void *arg);
/* Reads (operators' views) and writes (suspension) outside the quota script. The callbacks are
 * called exactly once unless the op is cancelled first, possibly before the call returns (then
 * it returns NULL). err is NULL on success. rd belongs to the caller and must stay valid until
 * the callback or the cancel. */
typedef void quota_read_fn(void *arg, struct quota_read *rd, int n, int64_t now_ms,
                           const char *err);
typedef void quota_set_fn(void *arg, int existed, const char *err);

/* Reads rd[0..n) in one round trip (n may be 0: a round trip that checks the store answers).
 * now_ms is the time to read at, or 0 for the store's clock; proxy_now_ms places local days.
 * Several accounts' keys in one script: fine on one Redis; not on Redis Cluster. */
struct quota_op *quota_store_read(struct quota_store *s, struct quota_read *rd, int n,
                                  int64_t now_ms, int64_t proxy_now_ms, quota_read_fn *cb,
                                  void *arg);
/* Sets key to value, or deletes it when value is NULL; existed says whether it was set. */
struct quota_op *quota_store_set(struct quota_store *s, const char *key, const char *value,
                                 quota_set_fn *cb, void *arg);

/* The caller no longer wants the answer (its request is gone): cb will not be called. */
void quota_op_cancel(struct quota_op *op);

/* Parses the quota script's reply to pl into res; -1 if it is not the shape the script
 * returns (then res says nothing). Exposed for the fuzzer of Redis replies. */
struct redisReply;
int quota_parse_reply(const struct redisReply *r, const struct quota_plan *pl,
                      struct quota_result *res);

/* 1 when Redis is connected and confirmed primary (or the backend is memory). */
int quota_store_ready(const struct quota_store *s);
const struct quota_store_stats *quota_store_stats(const struct quota_store *s);

#endif
