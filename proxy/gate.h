/* The decision state of one client request (struct gate) and what is derived from it: the
 * request as the policy sees it, the fields of its audit records, and its decision counters and
 * misuse signals. Internal to proxy/: conn.c drives the request, this file fills in. */
#ifndef LG_GATE_H
#define LG_GATE_H

#include "policy/decide.h"
#include "policy/quota.h"
#include "proxy/conn.h"
#include "proxy/record.h"

/* The decision state of one request: taken from the worker's free list when its head is read,
 * returned when it ends. So an idle connection holds none, and a busy worker does not malloc
 * one per request. */
struct gate {
    struct gate *next_free;    /* in the worker's free list */
    struct pol_decision dec;   /* authentication, operation, grant, limits */
    struct quota_result qres;  /* what the quota store decided */
    int have_quota;            /* qres is valid */
    char subject_token[65];    /* the citizen ID's HMAC token, once computed */
    /* Not cleared by gate_get (most of it): hdrs is an empty string, the plan is written by
     * quota_plan_build before the quota is asked (so before have_quota is set), and reuse is
     * marked empty. */
    char hdrs[1024];           /* headers for the client: RateLimit, credential expiry */
    struct quota_plan plan;    /* counters checked for it */
    struct rec_reuse reuse;    /* what the result record repeats of the intent (.have cleared) */
};

/* A gate cleared up to hdrs (an empty string; reuse empty), from the worker's free list or
 * the heap. */
struct gate *gate_get(struct worker *w);
/* Back to the free list (at most a bounded number are kept). */
void gate_put(struct worker *w, struct gate *g);

/* The fields every request record has, from what is known about c's request. */
void gate_base_record(struct conn *c, struct req_record *rr, const char *type);
/* c's request as the policy reads it, with the decision time. */
void gate_fill_request(struct conn *c, struct pol_request *rq);
/* Counts the request's decision by operation. */
void gate_count_decision(struct conn *c, enum decision d);
/* Counts the counters an admitted request brought to 80% of their limit. */
void gate_count_near_limit(struct conn *c);
/* Feeds the misuse signals with a decision. */
void gate_signal_decision(struct conn *c, enum decision d);

#endif
