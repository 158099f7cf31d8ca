/* Process setup: TLS contexts, workers, and the main thread's signal loop. */
#include "proxy/server.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/signals.h"
#include "proxy/admin.h"
#include "proxy/conncap.h"
#include "proxy/record.h"
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

/* The audit record of a reload: its result, the versions, and the errors of a refused one. */
static void audit_reload(struct server *s, const char *by, const char *result,
                         const char *version, const char *previous, const char *errors)
{
    struct jsonw j;
    jw_init(&j);
    record_admin_begin(&j, "reload", s->cfg->instance);
    jw_kstrz(&j, "via", by ? "admin" : "signal");
    jw_kstrz(&j, "admin", by);
    jw_kstrz(&j, "result", result);
    jw_kstrz(&j, "policy", version);
    jw_kstrz(&j, "previous", previous);
    jw_key(&j, "errors");
    jw_open(&j, '[');
    for (int n = 0; errors && *errors && n < 20; n++) {
        size_t len = strcspn(errors, "\n");
        jw_str(&j, errors, len);
        errors += len + (errors[len] == '\n');
    }
    jw_close(&j, ']');
    jw_close(&j, '}');
    if (audit_log(s->audit, j.buf, j.len) == AUDIT_REFUSED)
        log_error("audit: the reload record could not be queued");
    jw_free(&j);
}

int server_reload_policy(struct server *s, const char *by, char *errout, size_t errlen)
{
    char *err = xmalloc(65536);
    struct policy *p = policy_load(s->cfg->policy_path, err, 65536);
    if (p == NULL) {
        log_lines("policy reload refused: ", err);
        log_error("policy reload refused; policy %s stays in force", s->policy->version);
        audit_reload(s, by, "refused", NULL, s->policy->version, err);
        atomic_fetch_add(&s->metrics.reloads_refused, 1);
        if (errout)
            snprintf(errout, errlen, "%s", err);
        free(err);
        return -1;
    }
    free(err);
    metrics_register_ops(&s->metrics, p);
    audit_reload(s, by, "ok", p->version, s->policy->version, NULL);
    pthread_mutex_lock(&s->policy_mu);
    struct policy *old = s->policy;
    s->policy = p;
    pthread_mutex_unlock(&s->policy_mu);
    for (int i = 0; i < s->nworkers; i++)
        worker_policy_changed(s->workers[i]);
    atomic_fetch_add(&s->metrics.reloads_ok, 1);
    log_info("policy reload ok: %s (%zu accounts, %zu operations); was %s%s%s", p->version,
             p->naccounts, p->nops, old->version, by ? "; by " : "", by ? by : "");
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
    server_reload_tls(sc->srv);
    server_reload_policy(sc->srv, NULL, NULL, 0);
}

/* New contexts for every TLS listener (out[i], NULL for plain) and the upstream (*up);
 * 0, or -1 with the reason logged and nothing left allocated. */
static int load_tls(struct server *s, SSL_CTX **out, SSL_CTX **up, const char *what)
{
    char err[512];
    size_t n = s->cfg->nlisteners;
    *up = NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!s->cfg->listeners[i].tls_enabled)
            continue;
        out[i] = tls_server_ctx_new(&s->cfg->listeners[i].tls, err, sizeof err);
        if (out[i] == NULL) {
            log_error("%slistener %s: %s", what, s->cfg->listeners[i].address, err);
            goto fail;
        }
    }
    if (s->cfg->upstream.tls) {
        *up = tls_client_ctx_new(&s->cfg->upstream, err, sizeof err);
        if (*up == NULL) {
            log_error("%supstream: %s", what, err);
            goto fail;
        }
    }
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        SSL_CTX_free(out[i]);
    return -1;
}

static int setup_tls(struct server *s)
{
    size_t n = s->cfg->nlisteners;
    SSL_CTX **ctx = xcalloc(n, sizeof *ctx), *up;
    s->listener_tls = xcalloc(n, sizeof *s->listener_tls);
    int rc = load_tls(s, ctx, &up, "");
    for (size_t i = 0; i < n; i++)
        tls_slot_init(&s->listener_tls[i], rc == 0 ? ctx[i] : NULL);
    tls_slot_init(&s->upstream_tls, rc == 0 ? up : NULL);
    s->tls_ready = 1;
    free(ctx);
    return rc;
}

int server_reload_tls(struct server *s)
{
    size_t n = s->cfg->nlisteners, count = 0;
    SSL_CTX **ctx = xcalloc(n, sizeof *ctx), *up;
    char err[512];
    if (load_tls(s, ctx, &up, "TLS reload refused (the current certificates stay): ") != 0) {
        free(ctx);
        return -1;
    }
    if (s->admin && admin_reload_tls(s->admin, err, sizeof err) != 0) {
        log_error("TLS reload refused (the current certificates stay): admin: %s", err);
        for (size_t i = 0; i < n; i++)
            SSL_CTX_free(ctx[i]);
        SSL_CTX_free(up);
        free(ctx);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (ctx[i]) {
            tls_slot_set(&s->listener_tls[i], ctx[i]);
            count++;
        }
    }
    if (up) {
        tls_slot_set(&s->upstream_tls, up);
        count++;
    }
    free(ctx);
    if (count || (s->admin && s->cfg->admin.tls_enabled))
        log_info("TLS reload ok: certificates, keys, CAs and CRLs read again; new connections "
                 "use them");
    return 0;
}

/* Opens the audit log with the configured keys; writes the start record. */
static int open_audit(struct server *s)
{
    const struct cfg_audit *c = &s->cfg->audit;
    char err[600];
    struct audit_opts o = {.dir = c->dir, .instance = s->cfg->instance,
                           .group_commit_us = c->group_commit_us,
                           .segment_bytes = (long long)c->segment_mb << 20,
                           .zero_ahead_bytes = (long long)c->zero_ahead_kb << 10,
                           .checkpoint_records = c->checkpoint_records,
                           .checkpoint_ms = c->checkpoint_ms, .heartbeat_ms = c->heartbeat_ms,
                           .queue_records = c->queue_records,
                           .min_free_bytes = (long long)c->min_free_mb << 20};
    uint8_t cid_key[CID_KEY_BYTES];
    if (audit_load_cid_key(c->cid_key, c->dir, cid_key, err, sizeof err) != 0) {
        log_error("audit.cid_key: %s", err);
        return -1;
    }
    hmac_sha256_key_init(&s->cid_hmac, cid_key, sizeof cid_key);
    OPENSSL_cleanse(cid_key, sizeof cid_key);
    o.key = audit_load_signing_key(c->signing_key, c->dir, err, sizeof err);
    if (o.key == NULL) {
        log_error("audit.signing_key: %s", err);
        return -1;
    }
    s->audit = audit_open(&o, err, sizeof err);
    if (s->audit == NULL) {
        audit_key_free(o.key);
        log_error("audit log %s: %s", c->dir, err);
        return -1;
    }
    struct jsonw j;
    jw_init(&j);
    record_admin_begin(&j, "start", s->cfg->instance);
    jw_kstrz(&j, "version", LOOKUPGATE_VERSION);
    jw_kint(&j, "pid", (long long)getpid());
    jw_kstrz(&j, "boot_id", s->instance);
    jw_kstrz(&j, "policy", s->policy->version);
    jw_kint(&j, "workers", s->cfg->workers);
    jw_kstrz(&j, "clock", s->cfg->store.clock);
    jw_kint(&j, "heartbeat_ms", c->heartbeat_ms);
    jw_close(&j, '}');
    audit_log(s->audit, j.buf, j.len);
    jw_free(&j);
    return 0;
}

static void free_server(struct server *s, const char *stop_reason)
{
    admin_free(s->admin);
    s->admin = NULL;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i])
            worker_join_and_free(s->workers[i]);
    free(s->workers);
    if (s->audit) {
        /* After the workers: their last records (clients that left) are queued already. */
        struct jsonw j;
        jw_init(&j);
        record_admin_begin(&j, "stop", s->cfg->instance);
        jw_kstrz(&j, "reason", stop_reason);
        jw_close(&j, '}');
        audit_close(s->audit, j.buf, j.len);
        jw_free(&j);
    }
    for (int i = 0; s->sinks && i < s->cfg->workers; i++)
        audit_sink_free(s->sinks[i]);
    if (s->admin_sink)
        audit_sink_free(s->admin_sink);
    free(s->sinks);
    OPENSSL_cleanse(&s->cid_hmac, sizeof s->cid_hmac);
    for (size_t i = 0; s->listener_tls && i < s->cfg->nlisteners; i++)
        tls_slot_destroy(&s->listener_tls[i]);
    free(s->listener_tls);
    if (s->tls_ready)
        tls_slot_destroy(&s->upstream_tls);
    conncap_free(s->cap);
    policy_unref(s->policy);
    quota_mem_free(s->mem);
    pthread_mutex_destroy(&s->policy_mu);
    metrics_free(&s->metrics);
    sigtrack_free(s->sig);
}

int server_run(struct lg_config *cfg)
{
    struct server s = {.cfg = cfg};
    const struct cfg_limits *lim = &cfg->limits;
    unsigned char rnd[8];
    int rc = 1;
    struct event_base *base = NULL;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    struct event *sigev[3] = {NULL, NULL, NULL};
    struct signal_ctx sc = {.srv = &s};
    random_bytes(rnd, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(s.instance + 2 * i, 3, "%02x", rnd[i]);
    s.hlim = (struct http_limits){(size_t)lim->head_bytes, (size_t)lim->request_line_bytes,
                                  (size_t)lim->header_count, (size_t)lim->body_bytes};
    s.cap = conncap_new(lim->max_connections_per_client);
    pthread_mutex_init(&s.policy_mu, NULL);
    s.mem = quota_mem_new();
    metrics_init(&s.metrics);
    s.sig = sigtrack_new(65536);
    random_bytes(&s.subject_salt, sizeof s.subject_salt);
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
    metrics_register_ops(&s.metrics, s.policy);
    if (cfg->store.clock_kind == CLOCK_TEST)
        log_warn("store.clock is \"test\": clients can set the decision time with "
                 "X-Lookup-Test-Time. Never use this in production.");
    if (setup_tls(&s) != 0)
        goto out;
    if (open_audit(&s) != 0)
        goto out;
    s.sinks = xcalloc((size_t)cfg->workers, sizeof *s.sinks);

    /* The signal handlers go in before any listener opens: once a port accepts, a SIGHUP or
     * SIGTERM must reach on_hup/on_term (queued until the loop runs), never the default action
     * that would kill the process. */
    base = event_base_new();
    sc.base = base;
    for (int i = 0; i < 3; i++) {
        sigev[i] = evsignal_new(base, sigs[i], sigs[i] == SIGHUP ? on_hup : on_term, &sc);
        event_add(sigev[i], NULL);
    }

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

    char aerr[600];
    s.admin = admin_new(&s, base, aerr, sizeof aerr);
    if (s.admin == NULL) {
        log_error("%s", aerr);
        for (int i = 0; i < s.nworkers; i++)
            worker_stop(s.workers[i]);
        goto out;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        log_info("listening on %s%s", cfg->listeners[i].address,
                 cfg->listeners[i].tls_enabled ? " (TLS)" : "");
    log_info("lookupgate %s started: %d worker(s), upstream %s, policy %s (%zu accounts), "
             "quota store %s, time zone %s", LOOKUPGATE_VERSION, s.nworkers, cfg->upstream.url,
             s.policy->version, s.policy->naccounts,
             cfg->store.memory ? "memory" : cfg->store.address, cfg->time_zone);
    log_info("audit log %s, instance %s", cfg->audit.dir, cfg->instance);
    event_base_dispatch(base);
    rc = 0;
out:
    /* The stop goes on after the loop (the workers drain, the log closes); a second SIGTERM,
     * SIGINT or SIGHUP meanwhile (a second Ctrl-C, a service manager's TERM after an INT) is
     * ignored, never the default action: that would end the process before the stop record
     * and the log's closing checkpoint. event_free puts back the handler that was there before,
     * so the signals are blocked across it and ignored after it (a pending one is dropped). */
    {
        sigset_t stopsigs, prev;
        sigemptyset(&stopsigs);
        for (int i = 0; i < 3; i++)
            sigaddset(&stopsigs, sigs[i]);
        pthread_sigmask(SIG_BLOCK, &stopsigs, &prev);
        for (int i = 0; i < 3; i++) {
            if (sigev[i])
                event_free(sigev[i]);
            signal(sigs[i], SIG_IGN);
        }
        pthread_sigmask(SIG_SETMASK, &prev, NULL);
    }
    admin_free(s.admin); /* its events live on base */
    s.admin = NULL;
    if (base)
        event_base_free(base);
    free_server(&s, rc == 0 ? "signal" : "startup failed");
    if (rc == 0)
        log_info("stopped");
    return rc;
}
