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
#include "policy/policy.h"
#include "policy/quota.h"
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

/* Logs a multi-line error text one line at a time. */
static void log_lines(const char *prefix, const char *text)
{
    while (*text) {
        size_t n = strcspn(text, "\n");
        log_error("%s%.*s", prefix, (int)n, text);
        text += n + (text[n] == '\n');
    }
}

int server_reload_policy(struct server *s)
{
    char *err = xmalloc(65536);
    struct policy *p = policy_load(s->cfg->policy_path, err, 65536);
    if (p == NULL) {
        log_lines("policy reload refused: ", err);
        log_error("policy reload refused; policy %s stays in force", s->policy->version);
        free(err);
        return -1;
    }
    free(err);
    pthread_mutex_lock(&s->policy_mu);
    struct policy *old = s->policy;
    s->policy = p;
    pthread_mutex_unlock(&s->policy_mu);
    for (int i = 0; i < s->nworkers; i++)
        worker_policy_changed(s->workers[i]);
    log_info("policy reload ok: %s (%zu accounts, %zu operations); was %s", p->version,
             p->naccounts, p->nops, old->version);
    policy_unref(old);
    return 0;
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct signal_ctx *sc = arg;
    (void)sig;
    (void)what;
    if (log_reopen() != 0)
        log_error("SIGHUP: cannot reopen the log file");
    else
        log_info("SIGHUP: log reopened");
    server_reload_policy(sc->srv);
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
    policy_unref(s->policy);
    quota_mem_free(s->mem);
    pthread_mutex_destroy(&s->policy_mu);
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
    pthread_mutex_init(&s.policy_mu, NULL);
    s.mem = quota_mem_new();
    signal(SIGPIPE, SIG_IGN);
    char *perr = xmalloc(65536);
    s.policy = policy_load(cfg->policy_path, perr, 65536);
    if (s.policy == NULL) {
        log_lines("", perr);
        log_error("policy %s is invalid; not starting", cfg->policy_path);
        free(perr);
        goto out;
    }
    free(perr);
    if (cfg->store.clock_kind == CLOCK_TEST)
        log_warn("store.clock is \"test\": clients can set the decision time with "
                 "X-Lookup-Test-Time. Never use this in production.");
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
    log_info("lookupgate %s started: %d worker(s), upstream %s, policy %s (%zu accounts), "
             "quota store %s, time zone %s", LOOKUPGATE_VERSION, s.nworkers, cfg->upstream.url,
             s.policy->version, s.policy->naccounts,
             cfg->store.memory ? "memory" : cfg->store.address, cfg->time_zone);
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
