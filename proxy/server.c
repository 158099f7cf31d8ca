/* Process setup: TLS contexts, workers, and the main thread's signal loop. */
#include "proxy/server.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/conncap.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

struct signal_ctx {
    struct server *srv;
    struct event_base *base;
    int stopping; /* SIGTERM seen */
};

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct signal_ctx *sc = arg;
    (void)what;
    if (sc->stopping)
        return;
    sc->stopping = 1;
    log_info("signal %d: draining connections and stopping", (int)sig);
    for (int i = 0; i < sc->srv->nworkers; i++)
        worker_stop(sc->srv->workers[i]);
    event_base_loopexit(sc->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    if (log_reopen() != 0)
        log_error("SIGHUP: cannot reopen the log file");
    else
        log_info("SIGHUP: log reopened");
}

static int setup_tls(struct server *s)
{
    char err[512];
    s->listener_tls = xcalloc(s->cfg->nlisteners, sizeof *s->listener_tls);
    for (size_t i = 0; i < s->cfg->nlisteners; i++) {
        if (!s->cfg->listeners[i].tls_enabled)
            continue;
        s->listener_tls[i] = tls_server_ctx_new(&s->cfg->listeners[i].tls, err, sizeof err);
        if (s->listener_tls[i] == NULL) {
            log_error("listener %s: %s", s->cfg->listeners[i].address, err);
            return -1;
        }
    }
    if (s->cfg->upstream.tls) {
        s->upstream_tls = tls_client_ctx_new(&s->cfg->upstream, err, sizeof err);
        if (s->upstream_tls == NULL) {
            log_error("upstream: %s", err);
            return -1;
        }
    }
    return 0;
}

static void free_server(struct server *s)
{
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            worker_join_and_free(s->workers[i]);
    free(s->workers);
    for (size_t i = 0; s->listener_tls && i < s->cfg->nlisteners; i++)
        SSL_CTX_free(s->listener_tls[i]);
    free(s->listener_tls);
    SSL_CTX_free(s->upstream_tls);
    conncap_free(s->cap);
}

int server_run(struct lg_config *cfg)
{
    struct server s = {.cfg = cfg};
    const struct cfg_limits *lim = &cfg->limits;
    unsigned char rnd[8];
    int rc = 1;
    random_bytes(rnd, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(s.instance + 2 * i, 3, "%02x", rnd[i]);
    s.hlim = (struct http_limits){(size_t)lim->head_bytes, (size_t)lim->request_line_bytes,
                                  (size_t)lim->header_count, (size_t)lim->body_bytes};
    s.cap = conncap_new(lim->max_connections_per_client);
    signal(SIGPIPE, SIG_IGN);
    if (setup_tls(&s) != 0)
        goto out;

    /* Workers inherit a blocked signal mask, so signals reach the main thread's loop only. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    s.workers = xcalloc((size_t)cfg->workers, sizeof *s.workers);
    for (int i = 0; i < cfg->workers; i++) {
        char err[512];
        s.workers[i] = worker_new(&s, i, err, sizeof err);
        if (s.workers[i] == NULL) {
            log_error("%s", err);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            goto out;
        }
        s.nworkers++;
    }
    for (int i = 0; i < s.nworkers; i++)
        worker_start(s.workers[i]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct event_base *base = event_base_new();
    struct signal_ctx sc = {.srv = &s, .base = base};
    struct event *ev_term = evsignal_new(base, SIGTERM, on_term, &sc);
    struct event *ev_int = evsignal_new(base, SIGINT, on_term, &sc);
    struct event *ev_hup = evsignal_new(base, SIGHUP, on_hup, &sc);
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    event_add(ev_hup, NULL);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        log_info("listening on %s%s", cfg->listeners[i].address,
                 cfg->listeners[i].tls_enabled ? " (TLS)" : "");
    log_info("lookupgate %s started: %d worker(s), upstream %s", LOOKUPGATE_VERSION,
             s.nworkers, cfg->upstream.url);
    event_base_dispatch(base);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    event_base_free(base);
    rc = 0;
out:
    free_server(&s);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
