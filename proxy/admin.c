/* The admin listener: connections, authentication, routing, responses and the audit record of
 * each request. The handlers are in admin_api.c. */
#include "proxy/admin.h"
#include "proxy/admin_impl.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "common/arena.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/store.h"
#include "proxy/http_head.h"
#include "proxy/http_req.h"
#include "proxy/metrics.h"
#include "proxy/problem.h"
#include "proxy/record.h"
#include "proxy/server.h"
#include "proxy/status.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

static void ac_free(struct aconn *c);
static void ac_process(struct aconn *c);

/* The current policy, referenced. */
struct policy *admin_policy(struct admin *ad)
{
    pthread_mutex_lock(&ad->s->policy_mu);
    struct policy *p = policy_ref(ad->s->policy);
    pthread_mutex_unlock(&ad->s->policy_mu);
    return p;
}

/* --- responses and their audit record --------------------------------------------------- */

static void arm(struct aconn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static int is_head(const struct aconn *c)
{
    return c->have_req && c->req.method == HTTP_HEAD;
}

void ac_release(struct aconn *c)
{
    c->state = AC_WRITING;
    evbuffer_add_buffer(bufferevent_get_output(c->bev), c->held);
}

static void record_done(void *arg, int durable)
{
    struct aconn *c = arg;
    c->arec = NULL;
    if (!durable)
        log_warn("admin %s %s: the audit record is not durable yet (kept for the log)",
                 c->peer_ip, c->request_id);
    ac_release(c);
}

/* The fields every admin record starts with. */
void ac_record_begin(struct aconn *c, struct jsonw *j, const char *type)
{
    struct admin *ad = c->ad;
    record_admin_begin(j, type, ad->s->cfg->instance);
    jw_kstrz(j, "request_id", c->request_id);
    jw_kstrz(j, "client", c->peer_ip);
    if (c->tls && !c->tls_id[0]) /* the handshake is done once a request was read */
        tls_peer_fingerprint(bufferevent_openssl_get_ssl(c->bev), c->tls_id, sizeof c->tls_id);
    if (c->tls_id[0])
        jw_kstrz(j, "tls_client", c->tls_id);
    jw_kstrz(j, "admin", c->who ? c->who->name : NULL);
}

/* Submits j (closed) and holds the response until it is durable. */
void ac_submit_and_release(struct aconn *c, struct jsonw *j)
{
    struct audit_rec *r = audit_rec_new(j->buf, j->len);
    enum audit_submit_rc rc = audit_submit(c->ad->sink, r, AUDIT_OTHER, record_done, c);
    if (rc == AUDIT_QUEUED) {
        c->arec = r;
        return;
    }
    if (rc == AUDIT_REFUSED)
        log_error("admin %s %s: audit record lost: the audit queue is full while the log fails",
                  c->peer_ip, c->request_id);
    ac_release(c);
}

/* Whether this request gets the generic "admin" record: everything but successful probes and
 * scrapes (which carry nothing personal and would flood the log). */
static int audited(const struct aconn *c, const char *path)
{
    if (c->status == 401 || c->status == 403)
        return 1;
    return strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0 &&
           strcmp(path, "/metrics") != 0;
}

void ac_finish(struct aconn *c)
{
    char path[256];
    struct areq *rq = c->rq;
    size_t pl = c->have_req ? c->req.path_len : 0;
    snprintf(path, sizeof path, "%.*s", (int)(pl < 255 ? pl : 255),
             c->have_req ? c->req.target : "");
    evtimer_del(c->timer);
    log_info("admin %s %s %s %s -> %d%s%s", c->peer_ip, c->request_id,
             c->have_req ? http_method_str((enum http_method)c->req.method) : "-", path,
             c->status, c->who ? " by " : "", c->who ? c->who->name : "");
    if (rq && rq->own_record)
        return; /* the handler records the act and releases the answer */
    if (!audited(c, path)) {
        ac_release(c);
        return;
    }
    struct jsonw j;
    jw_init(&j);
    ac_record_begin(c, &j, "admin");
    jw_kstrz(&j, "method", c->have_req ? http_method_str((enum http_method)c->req.method)
                                       : NULL);
    jw_kstrz(&j, "path", path);
    jw_kstrz(&j, "action", rq ? rq->action : NULL);
    if (rq && rq->acct)
        jw_kstrz(&j, "account", rq->acct->id);
    if (rq && rq->days >= 0 && rq->action && strncmp(rq->action, "reports.", 8) == 0)
        jw_kint(&j, "days", rq->days);
    jw_kint(&j, "status", c->status);
    if (rq && rq->error[0])
        jw_kstrz(&j, "error", rq->error);
    jw_close(&j, '}');
    ac_submit_and_release(c, &j);
    jw_free(&j);
}

static void head_common(struct aconn *c, struct evbuffer *o, int status, const char *ctype,
                        size_t len, const char *extra)
{
    evbuffer_add_printf(o,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                        "X-Request-Id: %s\r\n%sConnection: %s\r\n\r\n",
                        status, http_reason_phrase(status), ctype, len, c->request_id,
                        extra ? extra : "", c->close_after ? "close" : "keep-alive");
}

/* Prepares a complete response in c->held (not yet recorded or sent). */
void ac_hold_raw(struct aconn *c, int status, const char *ctype, const char *body,
                     size_t len, const char *extra)
{
    c->status = status;
    evbuffer_drain(c->held, evbuffer_get_length(c->held));
    head_common(c, c->held, status, ctype, len, extra);
    if (!is_head(c))
        evbuffer_add(c->held, body, len);
}

void ac_hold_json(struct aconn *c, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(v);
    size_t len = strlen(text);
    char *t = xmalloc(len + 2);
    memcpy(t, text, len);
    t[len++] = '\n';
    t[len] = '\0';
    free(text);
    ac_hold_raw(c, status, "application/json", t, len, NULL);
    free(t);
}

void ac_hold_problem(struct aconn *c, int status, const char *type, const char *detail,
                         const char *extra)
{
    c->status = status;
    if (c->rq && detail)
        snprintf(c->rq->error, sizeof c->rq->error, "%s", detail);
    evbuffer_drain(c->held, evbuffer_get_length(c->held));
    problem_write(c->held, status, type ? type : problem_default_type(status), detail,
                  c->request_id, c->close_after, extra, NULL, is_head(c));
}

/* Holds a complete response, then records it. */
void ac_respond_raw(struct aconn *c, int status, const char *ctype, const char *body,
                        size_t len, const char *extra)
{
    ac_hold_raw(c, status, ctype, body, len, extra);
    ac_finish(c);
}

/* Answers with v (taken) as JSON. */
void ac_respond_json(struct aconn *c, int status, json_t *v)
{
    ac_hold_json(c, status, v);
    ac_finish(c);
}

void ac_respond_problem(struct aconn *c, int status, const char *type, const char *detail,
                            const char *extra)
{
    ac_hold_problem(c, status, type, detail, extra);
    ac_finish(c);
}

/* --- authentication and routing --------------------------------------------------------- */

/* The admin whose token the request carries (Bearer, or Basic with the token as password). */
static const struct cfg_admin_token *authenticate(struct aconn *c, const char **why)
{
    const struct cfg_admin *cfg = &c->ad->s->cfg->admin;
    const struct http_hdr *h = c->req.authorization;
    char tok[600];
    size_t tl = 0;
    *why = "an admin token is required";
    if (h == NULL)
        return NULL;
    if (h->vlen > 7 && ascii_prefix_nocase(h->value, h->vlen, "bearer ")) {
        tl = h->vlen - 7;
        if (tl >= sizeof tok)
            return NULL;
        memcpy(tok, h->value + 7, tl);
    } else if (h->vlen > 6 && ascii_prefix_nocase(h->value, h->vlen, "basic ")) {
        unsigned char dec[600];
        long n = h->vlen - 6 < 780 ? b64_decode(h->value + 6, h->vlen - 6, dec) : -1;
        const unsigned char *colon = n > 0 ? memchr(dec, ':', (size_t)n) : NULL;
        if (colon == NULL)
            return NULL;
        tl = (size_t)(dec + n - colon - 1);
        memcpy(tok, colon + 1, tl);
        OPENSSL_cleanse(dec, sizeof dec);
    } else {
        return NULL;
    }
    unsigned char md[32];
    policy_token_digest(tok, tl, md);
    OPENSSL_cleanse(tok, sizeof tok);
    const struct cfg_admin_token *found = NULL;
    for (size_t i = 0; i < cfg->ntokens; i++) /* every one compared: no timing signal */
        if (CRYPTO_memcmp(md, cfg->tokens[i].digest, 32) == 0)
            found = &cfg->tokens[i];
    *why = cfg->ntokens ? "the admin token is not valid" : "no admin tokens are configured";
    return found;
}

static int method_is(const struct aconn *c, int m)
{
    return c->req.method == m || (m == HTTP_GET && c->req.method == HTTP_HEAD);
}

static void wrong_method(struct aconn *c, const char *allow)
{
    char hdr[80];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    ac_respond_problem(c, 405, NULL, "method not allowed here", hdr);
}

static void route(struct aconn *c)
{
    struct areq *rq = c->rq;
    char path[300];
    if (c->req.path_len >= sizeof path) {
        ac_respond_problem(c, 404, NULL, "no such admin resource", NULL);
        return;
    }
    memcpy(path, c->req.target, c->req.path_len);
    path[c->req.path_len] = '\0';
    atomic_fetch_add(&c->ad->s->metrics.admin_requests, 1);
    if (strcmp(path, "/healthz") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string("ok"));
        json_object_set_new(o, "instance", json_string(c->ad->s->cfg->instance));
        ac_respond_json(c, 200, o);
        return;
    }
    const char *why;
    c->who = authenticate(c, &why);
    if (c->who == NULL) {
        ac_respond_problem(c, 401, "admin-token-required", why,
                        "WWW-Authenticate: Bearer realm=\"lookupgate admin\"\r\n"
                        "WWW-Authenticate: Basic realm=\"lookupgate admin\", charset=\"UTF-8\"\r\n");
        return;
    }
    rq->pol = admin_policy(c->ad);
    if (strcmp(path, "/readyz") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        h_ready(c);
    } else if (strcmp(path, "/metrics") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        rq->action = "metrics";
        struct evbuffer *b = evbuffer_new();
        metrics_render(c->ad->s, b);
        size_t len = evbuffer_get_length(b);
        ac_respond_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                    (const char *)evbuffer_pullup(b, -1), len, NULL);
        evbuffer_free(b);
    } else if (strcmp(path, "/status") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        h_status(c);
    } else if (strcmp(path, "/admin/v1/reload") == 0) {
        if (c->req.method != HTTP_POST) {
            wrong_method(c, "POST");
            return;
        }
        h_reload(c);
    } else if (strcmp(path, "/admin/v1/reports/idle") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        h_idle(c);
    } else if (strcmp(path, "/admin/v1/reports/credentials") == 0) {
        if (!method_is(c, HTTP_GET)) {
            wrong_method(c, "GET, HEAD");
            return;
        }
        h_credentials(c);
    } else if (strncmp(path, "/admin/v1/accounts/", 19) == 0 && path[19]) {
        char *id = path + 19, *slash = strchr(id, '/');
        if (slash == NULL) {
            if (!method_is(c, HTTP_GET)) {
                wrong_method(c, "GET, HEAD");
                return;
            }
            h_account(c, id);
            return;
        }
        *slash = '\0';
        int suspend = strcmp(slash + 1, "suspend") == 0;
        if (!suspend && strcmp(slash + 1, "resume") != 0) {
            ac_respond_problem(c, 404, NULL, "no such admin resource", NULL);
            return;
        }
        if (c->req.method != HTTP_POST) {
            wrong_method(c, "POST");
            return;
        }
        h_suspension(c, id, suspend);
    } else {
        ac_respond_problem(c, 404, NULL, "no such admin resource", NULL);
    }
}

/* --- connections ------------------------------------------------------------------------ */

static void end_request(struct aconn *c)
{
    if (c->op) {
        quota_op_cancel(c->op);
        c->op = NULL;
    }
    if (c->probe) {
        bufferevent_free(c->probe);
        c->probe = NULL;
    }
    if (c->rq) {
        policy_unref(c->rq->pol);
        free(c->rq->rd);
        free(c->rq);
        c->rq = NULL;
    }
}

static void ac_free(struct aconn *c)
{
    if (c->arec)
        audit_cancel(c->arec); /* still written; nobody waits */
    end_request(c);
    LIST_REMOVE(c, link);
    c->ad->nconns--;
    event_free(c->timer);
    bufferevent_free(c->bev);
    evbuffer_free(c->body);
    evbuffer_free(c->held);
    arena_reset(&c->arena);
    free(c);
}

static void refuse_input(struct aconn *c, int status, const char *reason)
{
    c->close_after = 1;
    if (c->request_id[0] == '\0')
        snprintf(c->request_id, sizeof c->request_id, "%s-a-%llx", c->ad->s->instance,
                 (unsigned long long)++c->ad->seq);
    c->state = AC_BUSY;
    ac_respond_problem(c, status, NULL, reason, NULL);
}

static void start_request(struct aconn *c)
{
    end_request(c);
    arena_reset(&c->arena);
    memset(&c->scan, 0, sizeof c->scan);
    c->have_req = 0;
    c->who = NULL;
    c->status = 0;
    c->request_id[0] = '\0';
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->rq = xcalloc(1, sizeof *c->rq);
    c->rq->days = -1;
    c->state = AC_HEAD;
    arm(c, ADMIN_HEAD_MS);
}

static void ac_process(struct aconn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct http_limits *lim = &c->ad->hlim;
    const char *reason = NULL;
    for (;;) {
        if (c->state == AC_IDLE) {
            if (evbuffer_get_length(in) == 0)
                return;
            start_request(c);
        }
        if (c->state == AC_HEAD) {
            size_t avail = evbuffer_get_length(in);
            size_t n = avail < lim->head_bytes + 1 ? avail : lim->head_bytes + 1;
            const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            int st = http_head_scan(&c->scan, buf, n, lim, &reason);
            if (st == HEAD_AGAIN)
                return;
            if (st != HEAD_DONE) {
                refuse_input(c, st, reason);
                return;
            }
            st = http_req_parse(&c->req, &c->arena, buf + c->scan.start,
                                c->scan.head_len - c->scan.start, lim, &reason);
            evbuffer_drain(in, c->scan.head_len);
            c->have_req = st == 0 || c->req.method == HTTP_HEAD;
            snprintf(c->request_id, sizeof c->request_id, "%s-a-%llx", c->ad->s->instance,
                     (unsigned long long)++c->ad->seq);
            if (st != 0) {
                refuse_input(c, st, reason);
                return;
            }
            if (c->req.chunked) {
                refuse_input(c, 411, "send admin request bodies with Content-Length");
                return;
            }
            if (c->req.content_length > ADMIN_BODY_MAX) {
                refuse_input(c, 413, "admin request bodies are at most 64 KiB");
                return;
            }
            if (!c->req.keep_alive)
                c->close_after = 1;
            if (c->req.expect_continue && c->req.content_length > 0)
                evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
            c->body_left = c->req.content_length > 0 ? c->req.content_length : 0;
            c->state = AC_BODY;
        }
        if (c->state == AC_BODY) {
            size_t avail = evbuffer_get_length(in);
            size_t n = (uint64_t)c->body_left < avail ? (size_t)c->body_left : avail;
            evbuffer_remove_buffer(in, c->body, n);
            c->body_left -= (int64_t)n;
            if (c->body_left > 0)
                return;
            evtimer_del(c->timer);
            c->state = AC_BUSY;
            route(c);
        }
        return; /* busy or writing: input waits */
    }
}

static void ac_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    ac_process(arg);
}

static void ac_write_cb(struct bufferevent *bev, void *arg)
{
    struct aconn *c = arg;
    if (c->state != AC_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (c->close_after || c->read_eof) {
        ac_free(c);
        return;
    }
    end_request(c);
    c->state = AC_IDLE;
    arm(c, ADMIN_IDLE_MS);
    ac_process(c);
}

static void ac_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct aconn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        (c->state == AC_BUSY || c->state == AC_WRITING)) {
        c->read_eof = 1; /* answer, then close */
        return;
    }
    ac_free(c);
}

static void ac_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct aconn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == AC_HEAD || c->state == AC_BODY)
        refuse_input(c, 408, "request not received in time");
    else
        ac_free(c);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct admin *ad = arg;
    (void)l;
    accept_pause_error(&ad->pause);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct admin *ad = arg;
    (void)l;
    (void)salen;
    ad->pause.backoff_ms = 0;
    if (ad->nconns >= ADMIN_MAX_CONNS) {
        log_warn("admin: %d connections open; refusing one", ad->nconns);
        evutil_closesocket(fd);
        return;
    }
    struct aconn *c = xcalloc(1, sizeof *c);
    c->ad = ad;
    sockaddr_text(sa, c->peer_ip, sizeof c->peer_ip);
    evutil_make_socket_nonblocking(fd);
    if (ad->tls) {
        SSL *ssl = SSL_new(ad->tls);
        c->bev = ssl ? bufferevent_openssl_socket_new(ad->base, fd, ssl,
                                                      BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        c->tls = 1;
    } else {
        c->bev = bufferevent_socket_new(ad->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->timer = evtimer_new(ad->base, ac_timer_cb, c);
    c->body = evbuffer_new();
    c->held = evbuffer_new();
    arena_init(&c->arena);
    LIST_INSERT_HEAD(&ad->conns, c, link);
    ad->nconns++;
    bufferevent_setcb(c->bev, ac_read_cb, ac_write_cb, ac_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, ad->hlim.head_bytes + ADMIN_BODY_MAX + 1024);
    struct timeval wtv = {30, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = AC_IDLE;
    arm(c, ADMIN_IDLE_MS);
}

/* Closes the status page's minutes every second. */
static void sample_cb(evutil_socket_t fd, short what, void *arg)
{
    struct admin *ad = arg;
    (void)fd;
    (void)what;
    metrics_sample(ad->s, clock_now_ms());
}

static void resolve_upstream(struct admin *ad)
{
    const struct cfg_upstream *u = &ad->s->cfg->upstream;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", u->port);
    if (getaddrinfo(u->host, port, &hints, &res) == 0 && res &&
        res->ai_addrlen <= sizeof ad->up_addr) {
        memcpy(&ad->up_addr, res->ai_addr, res->ai_addrlen);
        ad->up_addrlen = res->ai_addrlen;
    }
    if (res)
        freeaddrinfo(res);
}

struct admin *admin_new(struct server *s, struct event_base *base, char *err, size_t errlen)
{
    const struct cfg_admin *cfg = &s->cfg->admin;
    struct admin *ad = xcalloc(1, sizeof *ad);
    ad->s = s;
    ad->base = base;
    ad->hlim = s->hlim;
    ad->hlim.body_bytes = ADMIN_BODY_MAX;
    LIST_INIT(&ad->conns);
    resolve_upstream(ad);
    ad->sink = s->admin_sink = audit_sink_new(s->audit, base);
    ad->store = quota_store_new(base, &s->cfg->store, s->mem);
    ad->sample = event_new(base, -1, EV_PERSIST, sample_cb, ad);
    struct timeval one = {1, 0};
    event_add(ad->sample, &one);
    metrics_sample(s, clock_now_ms());
    if (cfg->address[0] == '\0')
        return ad;
    if (cfg->tls_enabled) {
        ad->tls = tls_server_ctx_new(&cfg->tls, err, errlen);
        if (ad->tls == NULL) {
            admin_free(ad);
            return NULL;
        }
    }
    char why[400];
    ad->listener = listener_bind(base, cfg->address, on_accept, ad, 0, why, sizeof why);
    if (ad->listener == NULL) {
        snprintf(err, errlen, "admin %s", why);
        admin_free(ad);
        return NULL;
    }
    ad->nlisteners = 1;
    accept_pause_init(&ad->pause, base, &ad->listener, &ad->nlisteners, "admin");
    evconnlistener_set_error_cb(ad->listener, on_accept_error);
    if (cfg->ntokens == 0)
        log_warn("admin: no admin tokens configured: only /healthz answers");
    log_info("admin listener on %s%s", cfg->address, cfg->tls_enabled ? " (TLS)" : "");
    return ad;
}

int admin_reload_tls(struct admin *ad, char *err, size_t errlen)
{
    if (ad->tls == NULL)
        return 0;
    SSL_CTX *ctx = tls_server_ctx_new(&ad->s->cfg->admin.tls, err, errlen);
    if (ctx == NULL)
        return -1;
    SSL_CTX_free(ad->tls); /* connections keep their own reference (SSL_new) */
    ad->tls = ctx;
    return 0;
}

void admin_free(struct admin *ad)
{
    if (ad == NULL)
        return;
    if (ad->listener)
        evconnlistener_free(ad->listener);
    accept_pause_free(&ad->pause);
    while (!LIST_EMPTY(&ad->conns))
        ac_free(LIST_FIRST(&ad->conns));
    quota_store_free(ad->store);
    if (ad->sample)
        event_free(ad->sample);
    audit_sink_detach(ad->sink);
    SSL_CTX_free(ad->tls);
    free(ad);
}
