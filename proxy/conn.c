/* Client connections: reading one request at a time, strict framing, handing it to the
 * upstream pool, writing the response, keep-alive and closing (with a short lingering close so
 * a refused client still reads its error response). */
#include "proxy/conn.h"
#include "proxy/gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/signals.h"
#include "policy/store.h"
#include "proxy/alert.h"
#include "proxy/metrics.h"
#include "proxy/obuf.h"
#include "proxy/problem.h"
#include "proxy/record.h"
#include "proxy/server.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1u << 20)
#define CREDENTIAL_WARN_S (14 * 86400) /* warn when a credential expires within 14 days */

const char *const conn_state_text[] = {
    "KEEPALIVE", "READING_HEAD", "READING_BODY", "DECIDING", "AUDITING",
    "UPSTREAM",  "RECORDING",    "RESPONDING",   "CLOSING",
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_kick_cb(evutil_socket_t fd, short what, void *arg);
static void up_done(struct up_request *u);
static void end_request(struct conn *c);
static void record_abandoned(struct conn *c);

/* The single place where the state changes; checks the transition and logs it. */
static void conn_set_state(struct conn *c, enum conn_state to)
{
    static const unsigned allowed[] = {
        [CONN_ST_KEEPALIVE] = 1u << CONN_ST_READING_HEAD | 1u << CONN_ST_CLOSING,
        [CONN_ST_READING_HEAD] = 1u << CONN_ST_READING_BODY | 1u << CONN_ST_DECIDING |
                                 1u << CONN_ST_RECORDING,
        [CONN_ST_READING_BODY] = 1u << CONN_ST_DECIDING | 1u << CONN_ST_RECORDING,
        [CONN_ST_DECIDING] = 1u << CONN_ST_AUDITING | 1u << CONN_ST_RECORDING,
        [CONN_ST_AUDITING] = 1u << CONN_ST_UPSTREAM | 1u << CONN_ST_RECORDING,
        [CONN_ST_UPSTREAM] = 1u << CONN_ST_RECORDING,
        [CONN_ST_RECORDING] = 1u << CONN_ST_RESPONDING,
        [CONN_ST_RESPONDING] = 1u << CONN_ST_KEEPALIVE | 1u << CONN_ST_CLOSING,
        [CONN_ST_CLOSING] = 0,
    };
    if (!(allowed[c->state] & (1u << to)))
        log_error("conn %s: invalid transition %s -> %s", c->peer_ip, conn_state_text[c->state],
                  conn_state_text[to]);
    log_debug("conn %s: %s -> %s", c->peer_ip, conn_state_text[c->state], conn_state_text[to]);
    c->state = to;
}

static const struct server *srv_of(const struct conn *c)
{
    return c->w->srv;
}

/* "<instance>-<worker>-<hex sequence>" */
static void new_request_id(struct conn *c)
{
    static const char hex[] = "0123456789abcdef";
    struct sbuf b = sb_make(c->request_id, sizeof c->request_id);
    char t[24];
    unsigned long long seq = ++c->w->seq;
    int n = 0;
    sb_str(&b, srv_of(c)->instance);
    sb_mem(&b, "-", 1);
    sb_int(&b, c->w->idx);
    sb_mem(&b, "-", 1);
    do {
        t[n++] = hex[seq & 15];
        seq >>= 4;
    } while (seq);
    while (n)
        sb_mem(&b, &t[--n], 1);
}

static void arm(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                      SSL_CTX *tls)
{
    const struct cfg_limits *lim = &w->srv->cfg->limits;
    struct conn *c = xcalloc(1, sizeof *c);
    c->w = w;
    memcpy(&c->peer, sa, (size_t)salen < sizeof c->peer ? (size_t)salen : sizeof c->peer);
    sockaddr_text(sa, c->peer_ip, sizeof c->peer_ip);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);
    if (tls) {
        SSL *ssl = SSL_new(tls);
        if (ssl)
            c->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
        c->tls = 1;
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev)
            c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, conn_sock_read_cb, c);
    }
    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    c->kick = event_new(w->base, -1, 0, conn_kick_cb, c);
    arena_init(&c->arena);
    c->body = evbuffer_new();
    c->held = evbuffer_new();
    c->upbytes = evbuffer_new();
    c->up.resp_hdrs = evbuffer_new();
    c->up.resp_body = evbuffer_new();
    c->up.bytes = c->upbytes;
    c->up.done = up_done;
    c->up.arg = c;
    c->state = CONN_ST_KEEPALIVE;
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
    if (c->bev == NULL || (!tls && c->rev == NULL)) {
        if (c->bev == NULL && !tls)
            close(fd);
        conn_free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    c->read_max = (size_t)lim->head_bytes + 1024;
    struct timeval wtv = {lim->send_timeout_ms / 1000, (lim->send_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    if (c->rev) {
        /* A bufferevent freezes its input's end: only its own reads add there. */
        evbuffer_unfreeze(bufferevent_get_input(c->bev), 0);
        bufferevent_enable(c->bev, EV_WRITE);
        event_add(c->rev, NULL);
    } else {
        bufferevent_setwatermark(c->bev, EV_READ, 0, c->read_max);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    }
    arm(c, lim->idle_timeout_ms);
    return c;
}

void conn_free(struct conn *c)
{
    if (c->up.uc || c->up.queued)
        upstream_cancel(c->w->pool, &c->up);
    if (c->arec) {
        audit_cancel(c->arec); /* the record is still written; nobody waits for it */
        c->arec = NULL;
    }
    record_abandoned(c);
    end_request(c);
    worker_conn_closed(c->w, c);
    event_free(c->timer);
    event_free(c->kick);
    if (c->rev)
        event_free(c->rev); /* before the bufferevent closes the socket */
    if (c->bev)
        bufferevent_free(c->bev);
    evbuffer_free(c->body);
    evbuffer_free(c->held);
    evbuffer_free(c->upbytes);
    evbuffer_free(c->up.resp_hdrs);
    evbuffer_free(c->up.resp_body);
    arena_reset(&c->arena);
    free(c);
}

int conn_is_idle(const struct conn *c)
{
    return c->state == CONN_ST_KEEPALIVE &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
}

void conn_close_after_response(struct conn *c)
{
    c->close_after = 1;
}

/* --- audit records ------------------------------------------------------------------- */

/* Builds rr and hands it to the audit writer; with cb, c waits for it (c->arec). */
static enum audit_submit_rc submit_record(struct conn *c, const struct req_record *rr, int kind,
                                          audit_done_fn cb)
{
    struct jsonw *j = &c->w->jw;
    record_request(j, rr);
    struct audit_rec *r = audit_rec_take(c->w->sink, j->buf, j->len);
    enum audit_submit_rc rc = audit_submit(c->w->sink, r, kind, cb, cb ? c : NULL);
    if (rc == AUDIT_QUEUED && cb) {
        c->arec = r;
        c->t_audit_us = now_mono_us();
    }
    else if (rc == AUDIT_REFUSED && kind != AUDIT_LOOKUP)
        log_error("%s %s: audit record lost: the audit queue is full while the log fails",
                  c->peer_ip, c->request_id);
    return rc;
}

/* A lookup whose intent was recorded ends without a response (the client left): its result
 * record says so, so that every intent has a result. */
static void record_abandoned(struct conn *c)
{
    if (!c->intent || c->recorded)
        return;
    struct req_record rr;
    gate_base_record(c, &rr, "lookup.result");
    rr.decision = "allow";
    rr.rule = "granted";
    rr.error = c->state == CONN_ST_AUDITING
                   ? "the client closed the connection; nothing was sent upstream"
                   : "the client closed the connection before the response";
    c->recorded = 1;
    submit_record(c, &rr, AUDIT_OTHER, NULL);
}

/* How long the awaited audit record took to become durable. */
static void audit_waited(struct conn *c)
{
    c->arec = NULL;
    hist_observe(&c->w->met.h_audit, now_mono_us() - c->t_audit_us);
}

/* The response in c->held goes to the client. */
static void release(struct conn *c)
{
    struct met_worker *m = &c->w->met;
    int cls = c->status / 100;
    stat_add(&m->responses[cls >= 1 && cls <= 5 ? cls : 0], 1);
    hist_observe(&m->h_total, now_mono_us() - c->t_start_us);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    conn_set_state(c, CONN_ST_RESPONDING);
    if (!c->tls && evbuffer_get_length(out) == 0) {
        /* Write now (see send_request in upstream.c); what the socket does not take, and any
         * error, is left to the bufferevent. When all of it went, conn_write_cb runs from the
         * loop (kick), never from inside this call. */
        int fd = bufferevent_getfd(c->bev);
        while (evbuffer_get_length(c->held) > 0 && evbuffer_write(c->held, fd) > 0)
            ;
        if (evbuffer_get_length(c->held) == 0) {
            event_active(c->kick, EV_WRITE, 1);
            return;
        }
    }
    evbuffer_add_buffer(out, c->held);
}

static void final_done(void *arg, int durable)
{
    struct conn *c = arg;
    audit_waited(c);
    if (!durable)
        log_warn("%s %s: the refusal's audit record is not durable yet (kept for the log)",
                 c->peer_ip, c->request_id);
    release(c); /* a refusal discloses nothing: it goes out either way */
}

/* Records the request's final outcome (status, the rule that decided), then releases the
 * held response once the record is durable. */
static void finish(struct conn *c, int status, const char *rule, const char *detail)
{
    if (c->state != CONN_ST_RECORDING)
        conn_set_state(c, CONN_ST_RECORDING);
    if (c->recorded) {
        release(c);
        return;
    }
    c->recorded = 1;
    struct req_record rr;
    gate_base_record(c, &rr, c->intent ? "lookup.result" : "request.refused");
    rr.decision = c->intent ? "allow" : "refuse";
    rr.rule = rule;
    rr.status = status;
    rr.detail = detail;
    if (c->intent)
        rr.error = detail;
    if (submit_record(c, &rr, AUDIT_OTHER, final_done) != AUDIT_QUEUED)
        release(c);
}

/* --- responses ---------------------------------------------------------------------- */

static int is_head(const struct conn *c)
{
    return c->have_req && c->req.method == HTTP_HEAD;
}

/* Prepares a problem response and records it (RECORDING, then RESPONDING). close forces
 * Connection: close. extra_hdrs (CRLF-terminated lines) and members (",\"k\":v") may be NULL. */
static void respond_full(struct conn *c, int status, const char *type, const char *reason,
                         int close, const char *extra, const char *members)
{
    if (close)
        c->close_after = 1;
    if (status == 405)
        extra = "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n";
    if (type == NULL)
        type = problem_default_type(status);
    if (c->request_id[0] == '\0')
        new_request_id(c);
    log_info("%s %s refused %d: %s", c->peer_ip, c->request_id, status, reason);
    c->status = status;
    stat_add(&c->w->met.refusals[met_kind_index(type)], 1);
    evtimer_del(c->timer);
    evbuffer_drain(c->held, evbuffer_get_length(c->held));
    problem_write(c->held, status, type, reason, c->request_id, c->close_after, extra, members,
                  is_head(c));
    finish(c, status, type, reason);
}

static void respond_problem(struct conn *c, int status, const char *type, const char *reason,
                            int close)
{
    respond_full(c, status, type, reason, close, NULL, NULL);
}

/* A refusal while reading: always closes, since the rest of the input cannot be trusted. */
static void refuse(struct conn *c, int status, const char *reason)
{
    respond_problem(c, status, NULL, reason, 1);
}

/* The audit log cannot take (or keep) a lookup's record: 503, nothing goes upstream. */
static void refuse_unaudited(struct conn *c, const char *what)
{
    char why[300];
    audit_health(srv_of(c)->audit, why, sizeof why);
    log_warn("%s %s: %s (%s)", c->peer_ip, c->request_id, what, why[0] ? why : "queue full");
    respond_full(c, 503, "audit-unavailable", what, 0, "Retry-After: 1\r\n", NULL);
}

static void write_response(struct conn *c)
{
    struct evbuffer *out = c->held;
    const struct up_result *r = &c->up.result;
    evbuffer_drain(out, evbuffer_get_length(out));
    c->status = r->status;
    struct obuf ob;
    ob.dst = out;
    ob.len = 0;
    ob_mem(&ob, "HTTP/1.1 ", 9);
    ob_int(&ob, r->status);
    ob_mem(&ob, " ", 1);
    ob_str(&ob, http_status_str((enum http_status)r->status));
    ob_mem(&ob, "\r\n", 2);
    ob_flush(&ob);
    evbuffer_add_buffer(out, c->up.resp_hdrs);
    ob_mem(&ob, "X-Request-Id: ", 14);
    ob_str(&ob, c->request_id);
    ob_mem(&ob, "\r\n", 2);
    if (c->gate)
        ob_str(&ob, c->gate->hdrs);
    size_t blen = evbuffer_get_length(c->up.resp_body);
    if (!r->no_body) {
        ob_mem(&ob, "Content-Length: ", 16);
        ob_int(&ob, (int64_t)blen);
        ob_mem(&ob, "\r\n", 2);
    } else if (c->req.method == HTTP_HEAD && r->content_length >= 0) {
        ob_mem(&ob, "Content-Length: ", 16);
        ob_int(&ob, r->content_length);
        ob_mem(&ob, "\r\n", 2);
    }
    ob_str(&ob, c->close_after ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    ob_flush(&ob);
    if (!r->no_body)
        evbuffer_add_buffer(out, c->up.resp_body);
    log_debug("%s %s %s %s -> %d (%zu bytes, %lld us)", c->peer_ip, c->request_id,
              http_method_str((enum http_method)c->req.method), c->req.target, r->status, blen,
              (long long)r->latency_us);
}

/* The result record could not be made durable: the response must not be released. */
static void withhold(struct conn *c)
{
    evbuffer_drain(c->up.resp_body, evbuffer_get_length(c->up.resp_body));
    evbuffer_drain(c->up.resp_hdrs, evbuffer_get_length(c->up.resp_hdrs));
    refuse_unaudited(c, "the audit log could not record the result; the response was withheld");
}

static void result_done(void *arg, int durable)
{
    struct conn *c = arg;
    audit_waited(c);
    if (!durable) {
        withhold(c);
        return;
    }
    write_response(c);
    release(c);
}

/* SHA-256 of the response body, hex. */
static void body_digest(struct evbuffer *b, char out[65])
{
    struct sha256_state h;
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr pos;
    uint8_t md[32];
    sha256_init(&h);
    evbuffer_ptr_set(b, &pos, 0, EVBUFFER_PTR_SET);
    for (;;) {
        int n = evbuffer_peek(b, -1, &pos, v, 16);
        if (n <= 0)
            break;
        size_t got = 0;
        for (int i = 0; i < n && i < 16; i++) {
            sha256_update(&h, v[i].iov_base, v[i].iov_len);
            got += v[i].iov_len;
        }
        if (n <= 16)
            break;
        evbuffer_ptr_set(b, &pos, got, EVBUFFER_PTR_ADD);
    }
    sha256_final(&h, md);
    hex_encode(md, 32, out);
}

/* The upstream exchange ended (success or failure). Called from the pool. */
static void up_done(struct up_request *u)
{
    struct conn *c = u->arg;
    const struct up_result *r = &u->result;
    if (r->status == 0) {
        respond_problem(c, r->error, NULL, r->reason, c->read_eof);
        return;
    }
    char digest[65];
    hist_observe(&c->w->met.h_upstream, r->latency_us);
    body_digest(c->up.resp_body, digest);
    struct req_record rr;
    gate_base_record(c, &rr, "lookup.result");
    rr.decision = "allow";
    rr.rule = "granted";
    rr.status = r->status;
    rr.upstream = 1;
    rr.up_status = r->status;
    rr.up_bytes = evbuffer_get_length(c->up.resp_body);
    rr.up_latency_us = r->latency_us;
    rr.up_sha256 = digest;
    conn_set_state(c, CONN_ST_RECORDING);
    c->recorded = 1;
    if (submit_record(c, &rr, AUDIT_OTHER, result_done) != AUDIT_QUEUED)
        withhold(c);
}

/* --- the request path ---------------------------------------------------------------- */

/* Drops what the previous request held: its policy reference and decision state. */
static void end_request(struct conn *c)
{
    if (c->qop) {
        quota_op_cancel(c->qop);
        c->qop = NULL;
    }
    if (c->gate)
        gate_put(c->w, c->gate);
    c->gate = NULL;
    policy_unref(c->pol);
    c->pol = NULL;
}

static void start_request(struct conn *c)
{
    end_request(c);
    arena_reset(&c->arena);
    memset(&c->scan, 0, sizeof c->scan);
    c->have_req = 0;
    c->request_id[0] = '\0';
    c->intent = 0;
    c->recorded = 0;
    c->status = 0;
    c->body_left = 0;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->t_start_us = now_mono_us();
    c->nrequests++;
    conn_set_state(c, CONN_ST_READING_HEAD);
    arm(c, srv_of(c)->cfg->limits.head_timeout_ms);
}

static void forward(struct conn *c)
{
    const struct server *s = srv_of(c);
    const struct http_req *r = &c->req;
    struct evbuffer *o = c->upbytes;
    evbuffer_drain(o, evbuffer_get_length(o));
    struct obuf ob;
    ob.dst = o;
    ob.len = 0;
    ob_str(&ob, http_method_str((enum http_method)r->method));
    ob_mem(&ob, " ", 1);
    ob_str(&ob, r->target);
    ob_mem(&ob, " HTTP/1.1\r\nHost: ", 17);
    ob_str(&ob, s->cfg->upstream.host_header);
    ob_mem(&ob, "\r\n", 2);
    for (size_t i = 0; i < r->nhdrs; i++) {
        const struct http_hdr *h = &r->hdrs[i];
        if (h->flags & HDR_DROP)
            continue;
        ob_mem(&ob, h->name, h->nlen);
        ob_mem(&ob, ": ", 2);
        ob_mem(&ob, h->value, h->vlen);
        ob_mem(&ob, "\r\n", 2);
    }
    ob_mem(&ob, "X-Forwarded-For: ", 17);
    ob_str(&ob, c->peer_ip);
    ob_str(&ob, c->tls ? "\r\nX-Forwarded-Proto: https\r\nX-Request-Id: "
                       : "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: ");
    ob_str(&ob, c->request_id);
    ob_mem(&ob, "\r\n", 2);
    if (c->gate && c->gate->dec.account) {
        const struct pol_account *a = c->gate->dec.account;
        ob_mem(&ob, "X-Lookup-Account: ", 18);
        ob_str(&ob, a->id);
        ob_mem(&ob, "\r\n", 2);
        if (a->unit) {
            ob_mem(&ob, "X-Lookup-Unit: ", 15);
            ob_str(&ob, a->unit->name);
            ob_mem(&ob, "\r\n", 2);
        }
    }
    size_t blen = evbuffer_get_length(c->body);
    if (blen > 0 || r->content_length >= 0 || r->chunked || r->method == HTTP_POST ||
        r->method == HTTP_PUT || r->method == HTTP_PATCH) {
        ob_mem(&ob, "Content-Length: ", 16);
        ob_int(&ob, (int64_t)blen);
        ob_mem(&ob, "\r\n", 2);
    }
    ob_mem(&ob, "\r\n", 2);
    ob_flush(&ob);
    evbuffer_add_buffer(o, c->body);
    c->up.idempotent = r->method == HTTP_GET || r->method == HTTP_HEAD ||
                       r->method == HTTP_OPTIONS;
    c->up.head = r->method == HTTP_HEAD;
    conn_set_state(c, CONN_ST_UPSTREAM);
    upstream_send(c->w->pool, &c->up);
}

/* --- the decision (policy layer) ------------------------------------------------------ */

/* The first field named name, and how many there are. */
/* Answers the request with the refusal in c->gate->dec. */
static void refuse_decision(struct conn *c, int close)
{
    struct gate *g = c->gate;
    gate_count_decision(c, g->dec.decision);
    gate_signal_decision(c, g->dec.decision);
    const struct decision_info *di = &decision_info[g->dec.decision];
    char hdrs[1200], members[400];
    struct sbuf h = sb_make(hdrs, sizeof hdrs), m = sb_make(members, sizeof members);
    switch (g->dec.decision) {
    case DECISION_DENY_NO_CREDENTIAL:
        sb_str(&h, "WWW-Authenticate: Bearer realm=\"lookupgate\"\r\n");
        break;
    case DECISION_DENY_CREDENTIAL:
    case DECISION_DENY_EXPIRED:
    case DECISION_DENY_NOT_YET_VALID:
        sb_str(&h, "WWW-Authenticate: Bearer realm=\"lookupgate\", error=\"invalid_token\"\r\n");
        break;
    case DECISION_DENY_QUOTA: {
        int first = 1;
        sb_str(&m, ",\"violated\":[");
        for (int i = 0; i < g->qres.n && i < g->plan.n; i++)
            if (g->qres.c[i].over) { /* policy names are [a-z0-9._-]: nothing to escape */
                sb_str(&m, first ? "\"" : ",\"");
                sb_str(&m, g->plan.checks[i].name);
                sb_str(&m, "\"");
                first = 0;
            }
        sb_str(&m, "],\"retry_after\":");
        sb_int(&m, quota_retry_after(&g->qres));
        sb_str(&h, "Retry-After: ");
        sb_int(&h, quota_retry_after(&g->qres));
        sb_str(&h, "\r\n");
        sb_str(&h, g->hdrs);
        break;
    }
    case DECISION_DENY_STORE:
        sb_str(&h, "Retry-After: 1\r\n");
        break;
    default:
        break;
    }
    if (g->dec.account)
        log_info("%s %s account %s: %s", c->peer_ip, c->request_id, g->dec.account->id, di->name);
    respond_full(c, di->status, di->problem, g->dec.detail, close || c->read_eof, hdrs,
                 members[0] ? members : NULL);
}

/* Headers for an admitted request: RateLimit, and a warning when the credential is near its
 * expiry. */
static void admitted_headers(struct conn *c, int64_t now_ms)
{
    struct gate *g = c->gate;
    quota_headers(g->hdrs, sizeof g->hdrs, &g->plan, &g->qres);
    const struct pol_credential *cr = g->dec.credential;
    if (cr && cr->expires - now_ms / 1000 < CREDENTIAL_WARN_S) {
        char when[32];
        size_t o = strlen(g->hdrs);
        clock_format_utc(cr->expires, when, sizeof when);
        snprintf(g->hdrs + o, sizeof g->hdrs - o, "X-Credential-Expires: %s\r\n", when);
    }
}

static void intent_done(void *arg, int durable)
{
    struct conn *c = arg;
    audit_waited(c);
    if (durable)
        forward(c);
    else
        refuse_unaudited(c, "the audit log cannot record lookups right now; nothing was sent "
                            "upstream");
}

/* The intent record of an admitted lookup; the upstream is contacted once it is durable. */
static void record_intent(struct conn *c)
{
    struct req_record rr;
    gate_base_record(c, &rr, "lookup.intent");
    rr.decision = "allow";
    rr.rule = "granted";
    enum audit_submit_rc rc = submit_record(c, &rr, AUDIT_LOOKUP, intent_done);
    if (rc == AUDIT_QUEUED) {
        c->intent = 1;
        return;
    }
    c->intent = rc == AUDIT_HELD; /* kept for the log: its result must follow it */
    refuse_unaudited(c, "the audit log cannot record lookups right now; nothing was sent "
                        "upstream");
}

/* The quota store answered (possibly before quota_store_admit returned). */
static void quota_done(void *arg, const struct quota_result *res)
{
    struct conn *c = arg;
    struct gate *g = c->gate;
    c->qop = NULL;
    g->qres = *res;
    g->have_quota = 1;
    if (res->store_us > 0)
        hist_observe(&c->w->met.h_store, res->store_us);
    switch (res->outcome) {
    case QUOTA_ADMITTED:
        gate_count_decision(c, DECISION_ALLOW);
        gate_count_near_limit(c);
        gate_signal_decision(c, DECISION_ALLOW);
        if (res->degraded)
            log_warn("%s %s account %s admitted by the local fallback: %s", c->peer_ip,
                     c->request_id, g->dec.account->id, res->reason);
        admitted_headers(c, res->now_ms ? res->now_ms : clock_now_ms());
        conn_set_state(c, CONN_ST_AUDITING);
        record_intent(c);
        return;
    case QUOTA_EXCEEDED:
        g->dec.decision = DECISION_DENY_QUOTA;
        quota_headers(g->hdrs, sizeof g->hdrs, &g->plan, &g->qres);
        memcpy(g->dec.detail, "quota exceeded: ", 17);
        quota_violated(g->dec.detail + 16, sizeof g->dec.detail - 16, &g->plan, &g->qres);
        break;
    case QUOTA_SUSPENDED:
        g->dec.decision = DECISION_DENY_SUSPENDED;
        snprintf(g->dec.detail, sizeof g->dec.detail, "the account is suspended");
        break;
    case QUOTA_STORE_ERROR:
        g->dec.decision = DECISION_DENY_STORE;
        log_warn("%s %s: quota store unavailable: %s", c->peer_ip, c->request_id, res->reason);
        snprintf(g->dec.detail, sizeof g->dec.detail, "quotas cannot be checked right now");
        break;
    }
    refuse_decision(c, 0);
}

/* D12: an address with too many credential failures in the last minute is refused (429)
 * before its credentials are looked at, unless it is exempt (the TTHC servers). */
static int auth_throttled(struct conn *c, int close)
{
    const struct server *s = srv_of(c);
    const struct cfg_limits *lim = &s->cfg->limits;
    int64_t retry = 0;
    if (lim->auth_failures_per_minute <= 0)
        return 0;
    for (size_t i = 0; i < lim->nauth_throttle_exempt; i++)
        if (strcmp(lim->auth_throttle_exempt[i], c->peer_ip) == 0)
            return 0;
    if (sigtrack_window(s->sig, PSIG__COUNT, c->peer_ip, lim->auth_failures_per_minute, 60,
                        clock_now_ms(), 0, &retry) < lim->auth_failures_per_minute)
        return 0;
    char hdr[48];
    snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n",
             retry > 1000 ? (long long)((retry + 999) / 1000) : 1LL);
    evtimer_del(c->timer);
    respond_full(c, 429, "authentication-throttled",
                 "too many failed authentications from this address; retry later",
                 close || c->read_eof, hdr, NULL);
    return 1;
}

/* The request is complete: decide it (DECIDING), then admit it against quotas. The audit
 * layer (AUDITING) plugs in between admission and forwarding. */
static void dispatch(struct conn *c)
{
    const struct cfg_store *st = &srv_of(c)->cfg->store;
    struct pol_request rq;
    evtimer_del(c->timer);
    conn_set_state(c, CONN_ST_DECIDING);
    if (c->gate == NULL)
        c->gate = gate_get(c->w);
    if (c->pol == NULL)
        c->pol = policy_ref(c->w->policy);
    if (auth_throttled(c, 0))
        return;
    gate_fill_request(c, &rq);
    policy_decide(c->pol, &rq, &c->gate->dec);
    if (c->gate->dec.decision != DECISION_ALLOW) {
        refuse_decision(c, 0);
        return;
    }
    quota_plan_build(&c->gate->plan, st->key_prefix, &c->gate->dec,
                     st->clock_kind == CLOCK_REDIS ? 0 : rq.now_ms, rq.now_ms, c->request_id);
    c->qop = quota_store_admit(c->w->store, &c->gate->plan, quota_done, c);
}

/* Expect: 100-continue: a request that will be refused for its credential is refused before
 * its body is read (and the connection closed, since the body is still on the wire). */
static int refuse_before_body(struct conn *c)
{
    struct pol_request rq;
    c->pol = policy_ref(c->w->policy);
    c->gate = gate_get(c->w);
    if (auth_throttled(c, 1)) /* closes: the body is still on the wire */
        return 1;
    gate_fill_request(c, &rq);
    if (policy_authenticate(c->pol, &rq, &c->gate->dec) == DECISION_ALLOW)
        return 0;
    evtimer_del(c->timer);
    refuse_decision(c, 1);
    return 1;
}

/* Returns HEAD_AGAIN, HEAD_DONE (req parsed, head drained), or an error status. */
static int read_head(struct conn *c, const char **reason)
{
    const struct server *s = srv_of(c);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < s->hlim.head_bytes + 1 ? avail : s->hlim.head_bytes + 1;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int st = http_head_scan(&c->scan, buf, n, &s->hlim, reason);
    if (st != HEAD_DONE)
        return st;
    st = http_req_parse(&c->req, &c->arena, buf + c->scan.start,
                        c->scan.head_len - c->scan.start, &s->hlim, reason);
    evbuffer_drain(in, c->scan.head_len);
    c->have_req = st == 0 || c->req.method == HTTP_HEAD;
    new_request_id(c);
    return st ? st : HEAD_DONE;
}

/* Moves body bytes from the input into c->body. Returns 0 (more needed), 1 (done) or a
 * status. */
static int read_body(struct conn *c, const char **reason)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!c->req.chunked) {
        size_t avail = evbuffer_get_length(in);
        size_t n = (uint64_t)c->body_left < avail ? (size_t)c->body_left : avail;
        evbuffer_remove_buffer(in, c->body, n);
        c->body_left -= (int64_t)n;
        return c->body_left == 0;
    }
    while (evbuffer_get_length(in) > 0) {
        size_t contig = evbuffer_get_contiguous_space(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)contig);
        size_t used = 0;
        int st = chunked_decode(&c->chunk, data, contig, &used, c->body, reason);
        evbuffer_drain(in, used);
        if (st == CHUNKED_DONE)
            return 1;
        if (st != CHUNKED_AGAIN)
            return st;
    }
    return 0;
}

static void after_head(struct conn *c)
{
    const struct server *s = srv_of(c);
    const struct cfg_limits *lim = &s->cfg->limits;
    if (c->nrequests >= (unsigned)lim->requests_per_connection || !c->req.keep_alive ||
        c->w->draining)
        c->close_after = 1;
    if (c->req.chunked)
        chunked_init(&c->chunk, s->hlim.body_bytes, (size_t)lim->chunk_ext_bytes,
                     (size_t)lim->trailer_bytes);
    else
        c->body_left = c->req.content_length > 0 ? c->req.content_length : 0;
    if (!c->req.chunked && c->body_left == 0) {
        dispatch(c);
        return;
    }
    if (c->req.expect_continue) {
        if (refuse_before_body(c))
            return;
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    conn_set_state(c, CONN_ST_READING_BODY);
    arm(c, lim->body_timeout_ms);
}

/* Drives the state machine with what is buffered. Returns -1 if c must be freed. */
static int conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const char *reason = NULL;
    int st;
    for (;;) {
        switch (c->state) {
        case CONN_ST_KEEPALIVE:
            if (evbuffer_get_length(in) == 0)
                return c->read_eof ? -1 : 0;
            start_request(c);
            break;
        case CONN_ST_READING_HEAD:
            st = read_head(c, &reason);
            if (st == HEAD_AGAIN)
                return c->read_eof ? -1 : 0;
            if (st != HEAD_DONE) {
                refuse(c, st, reason);
                return 0;
            }
            after_head(c);
            break;
        case CONN_ST_READING_BODY:
            st = read_body(c, &reason);
            if (st == 0)
                return c->read_eof ? -1 : 0;
            if (st != 1) {
                refuse(c, st, reason);
                return 0;
            }
            dispatch(c);
            break;
        case CONN_ST_CLOSING:
            if (evbuffer_get_length(in) > LINGER_MAX_BYTES)
                return -1;
            evbuffer_drain(in, evbuffer_get_length(in));
            return c->read_eof ? -1 : 0;
        default:
            return 0; /* deciding, upstream or responding: input waits */
        }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (conn_process(c) < 0)
        conn_free(c);
}

/* Reading again after a pause, once input has been parsed (or the limit lifted). */
static void read_resume(struct conn *c)
{
    if (c->read_paused &&
        (c->read_max == 0 || evbuffer_get_length(bufferevent_get_input(c->bev)) < c->read_max)) {
        c->read_paused = 0;
        event_add(c->rev, NULL);
    }
}

/* Plain connections read the socket here, not through the bufferevent, which asks the kernel
 * how much is waiting (an ioctl) before every read. The bytes go through the worker's buffer
 * and are copied into the input at once, so what a connection holds is sized to what it sent
 * (a slow client's partial head keeps a small chain, not a whole read's). As with the
 * bufferevent's high watermark, at most read_max bytes wait unparsed: reading pauses there
 * until read_resume. End of input and errors stop reading and reach conn_event_cb as the
 * bufferevent's would. */
static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t have = evbuffer_get_length(in), want = sizeof c->w->read_buf;
    (void)what;
    if (c->read_max) {
        if (have >= c->read_max) {
            event_del(c->rev);
            c->read_paused = 1;
            return;
        }
        if (c->read_max - have < want)
            want = c->read_max - have;
    }
    ssize_t n = recv(fd, c->w->read_buf, want, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        event_del(c->rev);
        short ev = n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
        conn_event_cb(c->bev, (short)(BEV_EVENT_READING | ev), c);
        return;
    }
    if (evbuffer_add(in, c->w->read_buf, (size_t)n) != 0) {
        conn_free(c);
        return;
    }
    if (conn_process(c) < 0)
        conn_free(c);
}

/* Output flushed: the response is out. Close, or go back to keep-alive. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state != CONN_ST_RESPONDING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (c->close_after || c->read_eof) {
        conn_set_state(c, CONN_ST_CLOSING);
        if (c->tls || c->read_eof) {
            conn_free(c);
            return;
        }
        /* Lingering close: send FIN, then read and discard for a moment so unread client
         * bytes do not turn our close into a reset that destroys the response. */
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        if (c->rev) {
            c->read_max = 0;
            read_resume(c);
        } else {
            bufferevent_setwatermark(bev, EV_READ, 0, 0);
        }
        arm(c, LINGER_MS);
        return;
    }
    /* An idle keep-alive connection keeps nothing of its last request: with thousands of
     * them, the previous exchange's buffers would be most of the memory. */
    end_request(c);
    c->have_req = 0;
    arena_reset(&c->arena);
    evbuffer_drain(c->upbytes, evbuffer_get_length(c->upbytes));
    evbuffer_drain(c->up.resp_hdrs, evbuffer_get_length(c->up.resp_hdrs));
    evbuffer_drain(c->up.resp_body, evbuffer_get_length(c->up.resp_body));
    conn_set_state(c, CONN_ST_KEEPALIVE);
    arm(c, srv_of(c)->cfg->limits.idle_timeout_ms);
    if (conn_process(c) < 0) {
        conn_free(c);
        return;
    }
    if (c->rev)
        read_resume(c);
}

static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    conn_write_cb(c->bev, c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return; /* TLS handshake done */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        (c->state == CONN_ST_DECIDING || c->state == CONN_ST_AUDITING ||
         c->state == CONN_ST_UPSTREAM || c->state == CONN_ST_RECORDING ||
         c->state == CONN_ST_RESPONDING)) {
        /* Half-close after a complete request: answer it, then close. */
        c->read_eof = 1;
        c->close_after = 1;
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        log_info("%s: client stopped reading; closing", c->peer_ip);
    else if ((what & BEV_EVENT_ERROR) && c->tls && c->state == CONN_ST_KEEPALIVE &&
             c->nrequests == 0)
        log_info("%s: TLS handshake failed", c->peer_ip);
    conn_free(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_ST_READING_HEAD:
        refuse(c, 408, "request head not received in time");
        break;
    case CONN_ST_READING_BODY:
        refuse(c, 408, "request body not received in time");
        break;
    case CONN_ST_KEEPALIVE:
    case CONN_ST_CLOSING:
    default:
        conn_free(c);
        break;
    }
}
