/* The upstream side of a request: a per-worker pool of keep-alive connections (idle queue, idle
 * timeout, max requests per connection, bounded wait queue), connect/response timers, and a
 * strict reading of the upstream response with http-parser. Broken, EOF-delimited or
 * over-long-lived connections are never reused; a non-idempotent request is never retried. */
#ifndef LG_UPSTREAM_H
#define LG_UPSTREAM_H

#include <stdint.h>
#include <sys/queue.h>

#include "policy/config.h"

struct tls_slot;

struct event_base;
struct evbuffer;
struct event;
struct upstream_pool;
struct upconn;

struct up_result {
    int status;             /* upstream status code, 0 on failure */
    int error;              /* 502, 503 or 504 when status == 0 */
    const char *reason;     /* static text for logs */
    int64_t content_length; /* Content-Length the upstream declared, -1 if none (for HEAD) */
    int no_body;            /* the response carries no body (HEAD, 204, 304) */
    int64_t latency_us;     /* send → complete response */
};

/* One exchange, owned by the client connection. The pool fills resp_hdrs/resp_body and result,
 * then calls done exactly once, unless upstream_cancel was called first. */
struct up_request {
    struct evbuffer *bytes;      /* the rebuilt request (not consumed: kept for one retry) */
    struct evbuffer *resp_hdrs;  /* forwarded header lines, "Name: value\r\n" each */
    struct evbuffer *resp_body;  /* response body, decoded */
    int idempotent;              /* may be retried once on a fresh connection */
    int head;                    /* HEAD request: the response has no body */
    void (*done)(struct up_request *r);
    void *arg;                   /* for done */
    struct up_result result;
    /* pool-private */
    struct upstream_pool *pool;  /* pool serving it */
    struct upconn *uc;           /* connection serving it */
    struct event *qtimer;        /* wait-queue deadline */
    int queued;                  /* in the wait queue */
    int retried;                 /* already retried once */
    int64_t t_sent_us;
    TAILQ_ENTRY(up_request) qlink;
};

struct upstream_pool *upstream_pool_new(struct event_base *base, const struct cfg_upstream *cfg,
                                        const struct cfg_limits *lim, struct tls_slot *tls,
                                        char *err, size_t errlen);
void upstream_pool_free(struct upstream_pool *p);
/* Closes idle connections (graceful shutdown). */
void upstream_pool_close_idle(struct upstream_pool *p);

void upstream_send(struct upstream_pool *p, struct up_request *r);
/* The client went away: forget r; its connection (if any) is closed, done is never called. */
void upstream_cancel(struct upstream_pool *p, struct up_request *r);

/* Counters for tests and metrics. */
int upstream_pool_idle(const struct upstream_pool *p);
int upstream_pool_total(const struct upstream_pool *p);
/* Requests waiting for a connection. */
int upstream_pool_waiting(const struct upstream_pool *p);

#endif
