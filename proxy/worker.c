/* Worker threads: accept with caps and EMFILE back-off, serve, drain on request. */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/conn.h"
#include "proxy/conncap.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "proxy/server.h"
#include "proxy/upstream.h"

#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000

static void maybe_finish_drain(struct worker *w)
{
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void worker_conn_closed(struct worker *w, struct conn *c)
{
    TAILQ_REMOVE(&w->conns, c, link);
    w->nconns--;
    atomic_fetch_sub(&w->srv->nconns, 1);
    conncap_release(w->srv->cap, (struct sockaddr *)&c->peer);
    maybe_finish_drain(w);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct worker *w = arg;
    struct server *s = w->srv;
    int li = 0;
    while (li < w->nlisteners && w->listeners[li] != l)
        li++;
    w->pause.backoff_ms = 0;
    if (w->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (atomic_fetch_add(&s->nconns, 1) >= s->cfg->limits.max_connections) {
        atomic_fetch_sub(&s->nconns, 1);
        log_warn("connection limit (%d) reached; refusing a connection",
                 s->cfg->limits.max_connections);
        evutil_closesocket(fd);
        return;
    }
    if (conncap_acquire(s->cap, sa) != 0) {
        atomic_fetch_sub(&s->nconns, 1);
        log_warn("per-client connection limit (%d) reached; refusing a connection",
                 s->cfg->limits.max_connections_per_client);
        evutil_closesocket(fd);
        return;
    }
    /* A reference to the listener's current context: a reload may replace it meanwhile. */
    SSL_CTX *tls = li < w->nlisteners ? tls_slot_get(&s->listener_tls[li]) : NULL;
    conn_new(w, fd, sa, salen, tls);
    SSL_CTX_free(tls);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct accept_pause *p = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < *p->nlisteners; i++)
        evconnlistener_enable(p->listeners[i]);
}

void accept_pause_init(struct accept_pause *p, struct event_base *base,
                       struct evconnlistener **listeners, int *nlisteners, const char *who)
{
    p->listeners = listeners;
    p->nlisteners = nlisteners;
    p->retry = evtimer_new(base, accept_retry_cb, p);
    p->backoff_ms = 0;
    p->who = who;
}

void accept_pause_error(struct accept_pause *p)
{
    int err = EVUTIL_SOCKET_ERROR();
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        log_warn("%s: accept: %s", p->who, evutil_socket_error_to_string(err));
        return;
    }
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : ACCEPT_BACKOFF_MIN_MS;
    if (p->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
        p->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
    log_warn("%s: accept: %s; pausing accepts for %d ms", p->who,
             evutil_socket_error_to_string(err), p->backoff_ms);
    for (int i = 0; i < *p->nlisteners; i++)
        evconnlistener_disable(p->listeners[i]);
    struct timeval tv = {p->backoff_ms / 1000, (p->backoff_ms % 1000) * 1000};
    evtimer_add(p->retry, &tv);
}

void accept_pause_free(struct accept_pause *p)
{
    if (p->retry)
        event_free(p->retry);
    p->retry = NULL;
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    log_warn("shutdown deadline reached with %d connection(s) open; closing them", w->nconns);
    event_base_loopbreak(w->base);
}

static void begin_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    for (int i = 0; i < w->nlisteners; i++) {
        evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    w->nlisteners = 0;
    upstream_pool_close_idle(w->pool);
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (conn_is_idle(c))
            conn_free(c);
        else
            conn_close_after_response(c);
    }
    int ms = w->srv->cfg->limits.shutdown_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
    maybe_finish_drain(w);
}

/* Requests in flight keep the snapshot they started with; new ones get the new one. */
static void take_policy(struct worker *w)
{
    pthread_mutex_lock(&w->srv->policy_mu);
    struct policy *p = policy_ref(w->srv->policy);
    pthread_mutex_unlock(&w->srv->policy_mu);
    policy_unref(w->policy);
    w->policy = p;
}

/* Gauges that only this thread may read directly, published for the metrics. */
static void sample_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    atomic_store(&w->met.pool_total, upstream_pool_total(w->pool));
    atomic_store(&w->met.pool_idle, upstream_pool_idle(w->pool));
    atomic_store(&w->met.pool_waiting, upstream_pool_waiting(w->pool));
    atomic_store(&w->met.conns, w->nconns);
}

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    char cmd[16];
    (void)what;
    ssize_t n = read(fd, cmd, sizeof cmd);
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == 'T')
            begin_drain(w);
        if (cmd[i] == 'P')
            take_policy(w);
    }
}

void sockaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    if (sa->sa_family == AF_INET)
        evutil_inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, outlen);
    else if (sa->sa_family == AF_INET6)
        evutil_inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, outlen);
    else
        snprintf(out, outlen, "unknown");
}

struct evconnlistener *listener_bind(struct event_base *base, const char *address,
                                     void (*cb)(struct evconnlistener *, int, struct sockaddr *,
                                                int, void *),
                                     void *arg, int reuseport, char *err, size_t errlen)
{
    char host[256];
    int port;
    config_split_hostport(address, host, sizeof host, &port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "listener %s: %s", address, gai_strerror(rc));
        return NULL;
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    if (reuseport)
        flags |= LEV_OPT_REUSEABLE_PORT;
    struct evconnlistener *l = evconnlistener_new_bind(base, cb, arg, flags, 1024, res->ai_addr,
                                                       (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (l == NULL)
        snprintf(err, errlen, "listener %s: cannot bind: %s", address, strerror(errno));
    return l;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    (void)l;
    accept_pause_error(&w->pause);
}

static struct evconnlistener *bind_listener(struct worker *w, const char *address, char *err,
                                            size_t errlen)
{
    struct evconnlistener *l = listener_bind(w->base, address, on_accept, w, 1, err, errlen);
    if (l)
        evconnlistener_set_error_cb(l, on_accept_error);
    return l;
}

struct worker *worker_new(struct server *srv, int idx, char *err, size_t errlen)
{
    struct worker *w = xcalloc(1, sizeof *w);
    w->srv = srv;
    w->idx = idx;
    TAILQ_INIT(&w->conns);
    w->ctl[0] = w->ctl[1] = -1;
    /* The epoll changelist merges the event changes of one loop pass into at most one
     * epoll_ctl per descriptor (a bufferevent adds and removes its write event around every
     * response). */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (w->base == NULL || pipe2(w->ctl, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot create an event loop");
        goto fail;
    }
    w->ctl_ev = event_new(w->base, w->ctl[0], EV_READ | EV_PERSIST, ctl_cb, w);
    event_add(w->ctl_ev, NULL);
    snprintf(w->name, sizeof w->name, "worker %d", idx);
    accept_pause_init(&w->pause, w->base, w->listeners, &w->nlisteners, w->name);
    w->drain_timer = evtimer_new(w->base, drain_deadline_cb, w);
    w->sample_timer = event_new(w->base, -1, EV_PERSIST, sample_cb, w);
    struct timeval one = {1, 0};
    event_add(w->sample_timer, &one);
    w->policy = policy_ref(srv->policy);
    jw_init(&w->jw);
    w->sink = srv->sinks[idx] = audit_sink_new(srv->audit, w->base);
    if (w->sink == NULL) {
        snprintf(err, errlen, "cannot create the audit sink");
        goto fail;
    }
    w->store = quota_store_new(w->base, &srv->cfg->store, srv->mem);
    w->pool = upstream_pool_new(w->base, &srv->cfg->upstream, &srv->cfg->limits,
                                srv->cfg->upstream.tls ? &srv->upstream_tls : NULL, err,
                                errlen);
    if (w->pool == NULL)
        goto fail;
    for (size_t i = 0; i < srv->cfg->nlisteners; i++) {
        w->listeners[i] = bind_listener(w, srv->cfg->listeners[i].address, err, errlen);
        if (w->listeners[i] == NULL)
            goto fail;
        w->nlisteners++;
    }
    return w;
fail:
    worker_join_and_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "w%d", w->idx);
    log_set_thread_name(name);
    event_base_dispatch(w->base);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_stop(struct worker *w)
{
    ssize_t n = write(w->ctl[1], "T", 1);
    (void)n;
}

void worker_policy_changed(struct worker *w)
{
    ssize_t n = write(w->ctl[1], "P", 1);
    (void)n;
}

void worker_join_and_free(struct worker *w)
{
    if (w->thread)
        pthread_join(w->thread, NULL);
    struct conn *c;
    while ((c = TAILQ_FIRST(&w->conns)) != NULL)
        conn_free(c);
    for (int i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
    upstream_pool_free(w->pool);
    quota_store_free(w->store); /* after the connections: their pending ops are cancelled */
    policy_unref(w->policy);
    conn_worker_cache_free(w);
    if (w->ctl_ev)
        event_free(w->ctl_ev);
    accept_pause_free(&w->pause);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->sample_timer)
        event_free(w->sample_timer);
    if (w->ctl[0] >= 0)
        close(w->ctl[0]);
    if (w->ctl[1] >= 0)
        close(w->ctl[1]);
    audit_sink_detach(w->sink); /* freed by the server once the audit writer stopped */
    jw_free(&w->jw);
    if (w->base)
        event_base_free(w->base);
    free(w);
}
