/* A worker thread: its own event_base, its own SO_REUSEPORT listeners and upstream pool, and the
 * client connections it accepted. Nothing on the request path is shared between workers. */
#ifndef LG_WORKER_H
#define LG_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "audit/jsonw.h"
#include "proxy/metrics.h"

struct server;
struct conn;
struct gate;
struct event_base;
struct evconnlistener;
struct event;
struct sockaddr;
struct upstream_pool;
struct policy;
struct quota_store;
struct audit_sink;

TAILQ_HEAD(conn_list, conn);

/* Accepting under descriptor or memory exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending
 * connection stays queued, so a listener left enabled stays readable and its loop spins. The
 * listeners are disabled and re-enabled after a doubling back-off (10 ms .. 1 s). Every
 * evconnlistener's error callback calls accept_pause_error (libevent's default only logs). */
struct accept_pause {
    struct evconnlistener **listeners;      /* the listeners paused together */
    int *nlisteners;                        /* their count (0 once closed for a drain) */
    struct event *retry;                    /* re-enables them */
    int backoff_ms;                         /* current back-off; 0 after a good accept */
    const char *who;                        /* for the log: "worker 1", "admin" */
};
void accept_pause_init(struct accept_pause *p, struct event_base *base,
                       struct evconnlistener **listeners, int *nlisteners, const char *who);
/* Called from a listener's error callback (accept() failed; errno says why). */
void accept_pause_error(struct accept_pause *p);
void accept_pause_free(struct accept_pause *p);

struct worker {
    struct server *srv;
    int idx;                                /* 0-based, in request ids and logs */
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener *listeners[16];   /* one per configured listener */
    int nlisteners;
    struct accept_pause pause;              /* accept back-off on EMFILE */
    char name[16];                          /* "worker N", for logs */
    struct upstream_pool *pool;
    struct conn_list conns;                 /* open client connections */
    int nconns;
    int ctl[2];                             /* pipe: commands from the main thread */
    struct event *ctl_ev;
    struct event *drain_timer;              /* shutdown deadline */
    int draining;                           /* SIGTERM received: no new connections */
    uint64_t seq;                           /* request counter, for request ids */
    struct policy *policy;                  /* this worker's reference to the current policy */
    struct quota_store *store;              /* quota decisions (Redis connection or memory) */
    struct audit_sink *sink;                /* audit writer reports (owned by the server) */
    struct jsonw jw;                        /* audit record being built */
    struct event *sample_timer;             /* publishes gauges for metrics every second */
    struct met_worker met;                  /* this worker's counters */
    struct gate *gate_free;                 /* per-request decision state, for reuse */
    int ngate_free;
    char read_buf[16384];                   /* plain client reads, copied out at once (conn.c) */
};

/* Creates the worker and binds its listeners; returns NULL with a message in err. */
struct worker *worker_new(struct server *srv, int idx, char *err, size_t errlen);
int worker_start(struct worker *w);
/* Asks the worker (from another thread) to drain and stop. */
void worker_stop(struct worker *w);
/* Asks the worker (from another thread) to take the server's current policy. */
void worker_policy_changed(struct worker *w);
void worker_join_and_free(struct worker *w);

/* Binds a listener on address ("host:port") on base (close-on-exec, address reuse, and
 * SO_REUSEPORT when reuseport is set); NULL with a message in err. */
struct evconnlistener *listener_bind(struct event_base *base, const char *address,
                                     void (*cb)(struct evconnlistener *, int, struct sockaddr *,
                                                int, void *),
                                     void *arg, int reuseport, char *err, size_t errlen);
/* The printable address of sa ("unknown" for other families). */
void sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen);

/* Called by conn_free. */
void worker_conn_closed(struct worker *w, struct conn *c);

#endif
