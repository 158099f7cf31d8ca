/* The admin listener: connections, authentication, routing and the audit record of each
 * request. The handlers that need the quota store (account usage, suspension, reports) ask it
 * through the admin's own store connection on the main thread and answer from its callback; a
 * connection that goes away first cancels the question. */
#include "proxy/admin.h"

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

#define ADMIN_MAX_CONNS 64
#define ADMIN_BODY_MAX 65536
#define ADMIN_HEAD_MS 10000
#define ADMIN_IDLE_MS 30000
#define ADMIN_REASON_MAX 200
#define DAY_MS 86400000LL

enum ac_state { AC_IDLE, AC_HEAD, AC_BODY, AC_BUSY, AC_WRITING };

struct aconn;
LIST_HEAD(aconn_list, aconn);

struct admin {
    struct server *s;
    struct event_base *base;
    struct evconnlistener *listener;
    SSL_CTX *tls;
    struct quota_store *store;      /* the admin's own connection to the quota store */
    struct audit_sink *sink;        /* durability reports on the main thread */
    struct event *sample;           /* metrics sampler (status page minutes) */
    struct aconn_list conns;
    int nconns;
    uint64_t seq;                   /* request ids */
    struct sockaddr_storage up_addr; /* the upstream, for the readiness probe */
    socklen_t up_addrlen;
    struct http_limits hlim;
};

/* What one admin request did, for its audit record and its answer. */
struct areq {
    const char *action;             /* "accounts.get", "suspend", ... */
    struct policy *pol;             /* a reference, for the handlers that use it */
    const struct pol_account *acct;
    char reason[ADMIN_REASON_MAX + 1];
    int days;
    struct quota_read *rd;          /* reads in flight (malloc) */
    int nrd;
    struct quota_plan plan;         /* accounts.get: the counters shown */
    int own_record;                 /* the handler wrote the audit record itself */
    const char *result;             /* for the record: "ok", "failed", "refused" */
    char error[200];
    /* readiness and the status page */
    int ready_store;                /* the store answered */
    char store_err[200];
    int64_t read_now_ms;            /* the time the store read at */
    int status_page;                /* rendering /status (else answering /readyz) */
};

struct aconn {
    struct admin *ad;
    struct bufferevent *bev;
    char peer_ip[64];
    int tls;
    char tls_id[72];
    enum ac_state state;
    struct event *timer;
    struct arena arena;
    struct head_scan scan;
    struct http_req req;
    int have_req;
    int64_t body_left;
    struct evbuffer *body;
    struct evbuffer *held;          /* the response, until its record is durable */
    int status;
    int close_after;
    int read_eof;
    char request_id[48];
    const struct cfg_admin_token *who;
    struct areq *rq;
    struct quota_op *op;            /* store question in flight */
    struct bufferevent *probe;      /* readiness: connecting to the upstream */
    struct audit_rec *arec;
    LIST_ENTRY(aconn) link;
};

static void ac_free(struct aconn *c);
static void ac_process(struct aconn *c);

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

static void release(struct aconn *c)
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
    release(c);
}

/* The fields every admin record starts with. */
static void admin_record_begin(struct aconn *c, struct jsonw *j, const char *type)
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
static void submit_and_release(struct aconn *c, struct jsonw *j)
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
    release(c);
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

static void finish(struct aconn *c)
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
        release(c);
        return;
    }
    struct jsonw j;
    jw_init(&j);
    admin_record_begin(c, &j, "admin");
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
    submit_and_release(c, &j);
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
static void hold_raw(struct aconn *c, int status, const char *ctype, const char *body,
                     size_t len, const char *extra)
{
    c->status = status;
    evbuffer_drain(c->held, evbuffer_get_length(c->held));
    head_common(c, c->held, status, ctype, len, extra);
    if (!is_head(c))
        evbuffer_add(c->held, body, len);
}

static void hold_json(struct aconn *c, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(v);
    size_t len = strlen(text);
    char *t = xmalloc(len + 2);
    memcpy(t, text, len);
    t[len++] = '\n';
    t[len] = '\0';
    free(text);
    hold_raw(c, status, "application/json", t, len, NULL);
    free(t);
}

static void hold_problem(struct aconn *c, int status, const char *type, const char *detail,
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
static void respond_raw(struct aconn *c, int status, const char *ctype, const char *body,
                        size_t len, const char *extra)
{
    hold_raw(c, status, ctype, body, len, extra);
    finish(c);
}

/* Answers with v (taken) as JSON. */
static void respond_json(struct aconn *c, int status, json_t *v)
{
    hold_json(c, status, v);
    finish(c);
}

static void respond_problem(struct aconn *c, int status, const char *type, const char *detail,
                            const char *extra)
{
    hold_problem(c, status, type, detail, extra);
    finish(c);
}

/* --- small helpers ---------------------------------------------------------------------- */

static json_t *iso_or_null(int64_t ms)
{
    char t[32];
    if (ms <= 0)
        return json_null();
    clock_format_utc(ms / 1000, t, sizeof t);
    return json_string(t);
}

static json_t *iso_s(int64_t s)
{
    char t[32];
    clock_format_utc(s, t, sizeof t);
    return json_string(t);
}

/* The current policy, referenced. */
static struct policy *current_policy(struct admin *ad)
{
    pthread_mutex_lock(&ad->s->policy_mu);
    struct policy *p = policy_ref(ad->s->policy);
    pthread_mutex_unlock(&ad->s->policy_mu);
    return p;
}

/* Time to read the store at: 0 asks Redis for its clock (the one quotas use). */
static int64_t read_time(const struct admin *ad, int64_t now)
{
    return ad->s->cfg->store.clock_kind == CLOCK_REDIS && !ad->s->cfg->store.memory ? 0 : now;
}

/* Query parameter name's value as an integer in [lo, hi]; returns 0, or -1 (absent or bad). */
static int query_int(const struct aconn *c, const char *name, int lo, int hi, int *out)
{
    const struct http_req *r = &c->req;
    if (r->path_len >= r->target_len)
        return -1;
    const char *q = r->target + r->path_len + 1, *end = r->target + r->target_len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            long long x = 0;
            if (v == e || e - v > 6)
                return -1;
            for (; v < e; v++) {
                if (*v < '0' || *v > '9')
                    return -1;
                x = x * 10 + (*v - '0');
            }
            if (x < lo || x > hi)
                return -1;
            *out = (int)x;
            return 0;
        }
        q = e + 1;
    }
    return -1;
}

static const char *cred_id(const struct pol_credential *cr, char out[24])
{
    memcpy(out, "sha256:", 7);
    hex_encode(cr->sha256, 6, out + 7);
    return out;
}

static json_t *roles_json(const struct pol_account *a)
{
    json_t *r = json_array();
    for (size_t i = 0; i < a->nroles; i++)
        json_array_append_new(r, json_string(a->roles[i]->name));
    return r;
}

/* --- GET /admin/v1/accounts/{id} -------------------------------------------------------- */

static void account_read_done(void *arg, struct quota_read *rd, int n, int64_t now_ms,
                              const char *err)
{
    struct aconn *c = arg;
    struct areq *rq = c->rq;
    const struct pol_account *a = rq->acct;
    c->op = NULL;
    if (err) {
        log_warn("admin %s: reading account %s: %s", c->request_id, a->id, err);
        respond_problem(c, 503, "quota-store-unavailable", "the quota store cannot be read now",
                        "Retry-After: 1\r\n");
        return;
    }
    int64_t now = now_ms ? now_ms : clock_now_ms();
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(a->id));
    json_object_set_new(o, "unit", a->unit ? json_string(a->unit->name) : json_null());
    json_object_set_new(o, "roles", roles_json(a));
    json_object_set_new(o, "disabled", json_boolean(a->disabled));
    json_object_set_new(o, "suspended", json_boolean(rd[0].found));
    json_object_set_new(o, "suspension_reason", rd[0].found ? json_string(rd[0].str)
                                                            : json_null());
    json_object_set_new(o, "last_use", rd[1].found ? iso_or_null(rd[1].num) : json_null());
    json_t *creds = json_array();
    for (size_t i = 0; i < a->ncreds; i++) {
        const struct pol_credential *cr = &a->creds[i];
        char id[24];
        json_t *e = json_object();
        json_object_set_new(e, "id", json_string(cred_id(cr, id)));
        json_object_set_new(e, "issued", iso_s(cr->issued));
        json_object_set_new(e, "expires", iso_s(cr->expires));
        json_object_set_new(e, "expired", json_boolean(cr->expires <= now / 1000));
        json_array_append_new(creds, e);
    }
    json_object_set_new(o, "credentials", creds);
    json_t *usage = json_array();
    for (int i = 0; i < rq->plan.n && 2 + i < n; i++) {
        const struct quota_check *q = &rq->plan.checks[i];
        json_t *e = json_object();
        json_object_set_new(e, "counter", json_string(q->name));
        json_object_set_new(e, "window", json_string(q->kind == QUOTA_MINUTE ? "minute" : "day"));
        json_object_set_new(e, "used", json_integer(rd[2 + i].num));
        json_object_set_new(e, "limit", json_integer(q->limit));
        json_array_append_new(usage, e);
    }
    json_object_set_new(o, "usage", usage);
    json_object_set_new(o, "policy", json_string(rq->pol->version));
    json_object_set_new(o, "as_of", iso_or_null(now));
    respond_json(c, 200, o);
}

/* Fills the plan of a's account-wide counters and the reads: suspension, last use, counters. */
static int account_reads(struct admin *ad, struct areq *rq, const struct pol_account *a,
                         int64_t now)
{
    struct pol_decision d;
    memset(&d, 0, sizeof d);
    d.account = a;
    policy_account_limits(rq->pol, a, &d.limits);
    quota_plan_build(&rq->plan, ad->s->cfg->store.key_prefix, &d, 0, now, "");
    rq->nrd = 2 + rq->plan.n;
    rq->rd = xcalloc((size_t)rq->nrd, sizeof *rq->rd);
    rq->rd[0].kind = QREAD_GET;
    snprintf(rq->rd[0].key, sizeof rq->rd[0].key, "%s", rq->plan.susp_key);
    rq->rd[1].kind = QREAD_GET;
    snprintf(rq->rd[1].key, sizeof rq->rd[1].key, "%s", rq->plan.last_key);
    for (int i = 0; i < rq->plan.n; i++) {
        struct quota_read *r = &rq->rd[2 + i];
        r->kind = rq->plan.checks[i].kind == QUOTA_MINUTE ? QREAD_WINDOW : QREAD_DAY;
        snprintf(r->key, sizeof r->key, "%s", rq->plan.checks[i].key);
        snprintf(r->field, sizeof r->field, "%s", rq->plan.checks[i].field);
    }
    return rq->nrd;
}

static void h_account(struct aconn *c, const char *id)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = "accounts.get";
    rq->acct = policy_find_account(rq->pol, id);
    if (rq->acct == NULL) {
        respond_problem(c, 404, "unknown-account", "no such account in the policy", NULL);
        return;
    }
    int64_t now = clock_now_ms();
    account_reads(ad, rq, rq->acct, now);
    c->state = AC_BUSY;
    c->op = quota_store_read(ad->store, rq->rd, rq->nrd, read_time(ad, now), now,
                             account_read_done, c);
}

/* --- POST /admin/v1/accounts/{id}/suspend and /resume ---------------------------------- */

static void suspension_done(void *arg, int existed, const char *err)
{
    struct aconn *c = arg;
    struct areq *rq = c->rq;
    int suspend = strcmp(rq->action, "suspend") == 0;
    c->op = NULL;
    if (err)
        log_error("admin %s: %s %s: the quota store could not be written: %s", c->request_id,
                  rq->action, rq->acct->id, err);
    else
        log_warn("admin %s: account %s %s by %s: %s", c->request_id, rq->acct->id,
                 suspend ? "suspended" : "resumed", c->who->name,
                 rq->reason[0] ? rq->reason : "(no reason given)");
    json_t *o = json_object();
    json_object_set_new(o, "account", json_string(rq->acct->id));
    json_object_set_new(o, "suspended", json_boolean(err ? !suspend : suspend));
    json_object_set_new(o, "reason", rq->reason[0] ? json_string(rq->reason) : json_null());
    json_object_set_new(o, "by", json_string(c->who->name));
    json_object_set_new(o, "was_suspended", json_boolean(existed));
    /* Its own record: the act, who did it and why. */
    struct jsonw j;
    jw_init(&j);
    admin_record_begin(c, &j, suspend ? "account.suspend" : "account.resume");
    jw_kstrz(&j, "account", rq->acct->id);
    jw_kstrz(&j, "unit", rq->acct->unit ? rq->acct->unit->name : NULL);
    jw_kstrz(&j, "reason", rq->reason[0] ? rq->reason : NULL);
    jw_kstrz(&j, "result", err ? "failed" : "ok");
    if (err)
        jw_kstrz(&j, "error", err);
    else
        jw_kbool(&j, "was_suspended", existed);
    jw_kint(&j, "status", err ? 503 : 200);
    jw_close(&j, '}');
    rq->own_record = 1;
    if (err) {
        json_decref(o);
        hold_problem(c, 503, "quota-store-unavailable",
                     suspend ? "the suspension could not be stored: it holds on this instance "
                               "only (its local fallback); retry"
                             : "the resumption could not be stored; retry",
                     "Retry-After: 1\r\n");
    } else {
        hold_json(c, 200, o);
    }
    finish(c); /* logs; the generic record is skipped (own_record) */
    c->state = AC_BUSY;
    submit_and_release(c, &j); /* the answer goes out once the act is durably recorded */
    jw_free(&j);
}

/* The reason from a JSON body {"reason": "..."}; required for a suspension. */
static int body_reason(struct aconn *c, int required)
{
    struct areq *rq = c->rq;
    size_t len = evbuffer_get_length(c->body);
    if (len == 0) {
        if (!required)
            return 0;
        respond_problem(c, 400, "reason-required",
                        "send {\"reason\": \"...\"}: a suspension needs a reason", NULL);
        return -1;
    }
    json_error_t je;
    json_t *v = json_loadb((const char *)evbuffer_pullup(c->body, -1), len, JSON_REJECT_DUPLICATES,
                           &je);
    json_t *r = v && json_is_object(v) ? json_object_get(v, "reason") : NULL;
    int bad = v == NULL || !json_is_object(v) || json_object_size(v) != (r ? 1u : 0u) ||
              (r && !json_is_string(r));
    size_t rl = r && json_is_string(r) ? json_string_length(r) : 0;
    if (!bad && r && (rl > ADMIN_REASON_MAX || memchr(json_string_value(r), '\0', rl)))
        bad = 1;
    if (!bad && r)
        snprintf(rq->reason, sizeof rq->reason, "%s", json_string_value(r));
    json_decref(v);
    if (bad) {
        respond_problem(c, 400, "bad-request",
                        "expected a JSON object {\"reason\": \"...\"} (at most 200 characters)",
                        NULL);
        return -1;
    }
    if (required && rq->reason[0] == '\0') {
        respond_problem(c, 400, "reason-required", "a suspension needs a reason", NULL);
        return -1;
    }
    return 0;
}

static void h_suspension(struct aconn *c, const char *id, int suspend)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = suspend ? "suspend" : "resume";
    rq->acct = policy_find_account(rq->pol, id);
    if (rq->acct == NULL) {
        respond_problem(c, 404, "unknown-account", "no such account in the policy", NULL);
        return;
    }
    if (body_reason(c, suspend) != 0)
        return;
    char key[160];
    quota_susp_key(key, sizeof key, ad->s->cfg->store.key_prefix, rq->acct->id);
    /* The local fallback (used while Redis fails) must honour it too. */
    if (!ad->s->cfg->store.memory)
        quota_mem_set(ad->s->mem, key, suspend ? rq->reason : NULL);
    c->state = AC_BUSY;
    c->op = quota_store_set(ad->store, key, suspend ? rq->reason : NULL, suspension_done, c);
}

/* --- reports ---------------------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    const struct pol_account *x = *(const struct pol_account *const *)a;
    const struct pol_account *y = *(const struct pol_account *const *)b;
    return strcmp(x->id, y->id);
}

static void idle_done(void *arg, struct quota_read *rd, int n, int64_t now_ms, const char *err)
{
    struct aconn *c = arg;
    struct areq *rq = c->rq;
    c->op = NULL;
    if (err) {
        respond_problem(c, 503, "quota-store-unavailable", "the quota store cannot be read now",
                        "Retry-After: 1\r\n");
        return;
    }
    int64_t now = now_ms ? now_ms : clock_now_ms();
    const struct policy *p = rq->pol;
    const struct pol_account **order = xcalloc(p->naccounts + 1, sizeof *order);
    for (size_t i = 0; i < p->naccounts; i++)
        order[i] = &p->accounts[i];
    qsort(order, p->naccounts, sizeof *order, cmp_id);
    json_t *list = json_array();
    for (size_t k = 0; k < p->naccounts && (int)k < n; k++) {
        const struct pol_account *a = order[k];
        const struct quota_read *r = &rd[a - p->accounts];
        int64_t last = r->found ? r->num : 0;
        if (last > 0 && now - last < (int64_t)rq->days * DAY_MS)
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "id", json_string(a->id));
        json_object_set_new(e, "unit", a->unit ? json_string(a->unit->name) : json_null());
        json_object_set_new(e, "last_use", iso_or_null(last));
        json_object_set_new(e, "idle_days", last > 0 ? json_integer((now - last) / DAY_MS)
                                                     : json_null());
        json_object_set_new(e, "disabled", json_boolean(a->disabled));
        json_array_append_new(list, e);
    }
    free(order);
    json_t *o = json_object();
    json_object_set_new(o, "days", json_integer(rq->days));
    json_object_set_new(o, "as_of", iso_or_null(now));
    json_object_set_new(o, "policy", json_string(p->version));
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(list)));
    json_object_set_new(o, "accounts", list);
    respond_json(c, 200, o);
}

static void h_idle(struct aconn *c)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = "reports.idle";
    if (query_int(c, "days", 0, 3650, &rq->days) != 0) {
        respond_problem(c, 400, "bad-request", "expected ?days=N (0 to 3650)", NULL);
        return;
    }
    const struct policy *p = rq->pol;
    rq->nrd = (int)p->naccounts;
    rq->rd = xcalloc(p->naccounts + 1, sizeof *rq->rd);
    for (size_t i = 0; i < p->naccounts; i++) {
        rq->rd[i].kind = QREAD_GET;
        snprintf(rq->rd[i].key, sizeof rq->rd[i].key, "%s:{a:%s}:last",
                 ad->s->cfg->store.key_prefix, p->accounts[i].id);
    }
    int64_t now = clock_now_ms();
    c->state = AC_BUSY;
    c->op = quota_store_read(ad->store, rq->rd, rq->nrd, read_time(ad, now), now, idle_done, c);
}

struct cred_row {
    const struct pol_account *a;
    const struct pol_credential *cr;
};

static int cmp_cred(const void *x, const void *y)
{
    const struct cred_row *a = x, *b = y;
    if (a->cr->expires != b->cr->expires)
        return a->cr->expires < b->cr->expires ? -1 : 1;
    return strcmp(a->a->id, b->a->id);
}

static void h_credentials(struct aconn *c)
{
    struct areq *rq = c->rq;
    rq->action = "reports.credentials";
    if (query_int(c, "days", 0, 3650, &rq->days) != 0) {
        respond_problem(c, 400, "bad-request", "expected ?days=N (0 to 3650)", NULL);
        return;
    }
    const struct policy *p = rq->pol;
    int64_t now = clock_now_ms() / 1000, horizon = now + (int64_t)rq->days * 86400;
    size_t n = 0, cap = 16;
    struct cred_row *rows = xcalloc(cap, sizeof *rows);
    for (size_t i = 0; i < p->naccounts; i++)
        for (size_t k = 0; k < p->accounts[i].ncreds; k++) {
            const struct pol_credential *cr = &p->accounts[i].creds[k];
            if (cr->expires > horizon)
                continue;
            if (n == cap)
                rows = xrealloc(rows, (cap *= 2) * sizeof *rows);
            rows[n++] = (struct cred_row){&p->accounts[i], cr};
        }
    qsort(rows, n, sizeof *rows, cmp_cred);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        char id[24];
        int64_t left = rows[i].cr->expires - now;
        json_t *e = json_object();
        json_object_set_new(e, "account", json_string(rows[i].a->id));
        json_object_set_new(e, "unit", rows[i].a->unit ? json_string(rows[i].a->unit->name)
                                                       : json_null());
        json_object_set_new(e, "credential", json_string(cred_id(rows[i].cr, id)));
        json_object_set_new(e, "issued", iso_s(rows[i].cr->issued));
        json_object_set_new(e, "expires", iso_s(rows[i].cr->expires));
        json_object_set_new(e, "expired", json_boolean(left <= 0));
        /* whole days left; once expired, minus the whole days since */
        json_object_set_new(e, "days_left", json_integer(left >= 0 ? left / 86400
                                                                   : -(-left / 86400)));
        json_object_set_new(e, "disabled", json_boolean(rows[i].a->disabled));
        json_array_append_new(list, e);
    }
    free(rows);
    json_t *o = json_object();
    json_object_set_new(o, "days", json_integer(rq->days));
    json_object_set_new(o, "as_of", iso_s(now));
    json_object_set_new(o, "policy", json_string(p->version));
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(list)));
    json_object_set_new(o, "credentials", list);
    respond_json(c, 200, o);
}

/* --- POST /admin/v1/reload -------------------------------------------------------------- */

static void h_reload(struct aconn *c)
{
    struct areq *rq = c->rq;
    rq->action = "reload";
    rq->own_record = 1; /* server_reload_policy writes the reload record, naming the admin */
    char *err = xmalloc(65536);
    char who[160];
    snprintf(who, sizeof who, "%s", c->who->name);
    struct policy *before = current_policy(c->ad);
    int rc = server_reload_policy(c->ad->s, who, err, 65536);
    struct policy *after = current_policy(c->ad);
    json_t *o = json_object();
    json_object_set_new(o, "result", json_string(rc == 0 ? "ok" : "refused"));
    json_object_set_new(o, "policy", json_string(after->version));
    json_object_set_new(o, "previous", json_string(before->version));
    if (rc == 0) {
        json_object_set_new(o, "accounts", json_integer((json_int_t)after->naccounts));
    } else {
        json_t *errs = json_array();
        for (const char *e = err; *e;) {
            size_t n = strcspn(e, "\n");
            if (n)
                json_array_append_new(errs, json_stringn(e, n));
            e += n + (e[n] == '\n');
        }
        json_object_set_new(o, "errors", errs);
    }
    policy_unref(before);
    policy_unref(after);
    free(err);
    respond_json(c, rc == 0 ? 200 : 422, o);
    release(c); /* the reload record is queued already (server_reload_policy) */
}

/* --- GET /readyz ------------------------------------------------------------------------ */

static void ready_answer(struct aconn *c, int up_ok, const char *up_err)
{
    struct areq *rq = c->rq;
    char why[300] = "";
    enum audit_state as = audit_health(c->ad->s->audit, why, sizeof why);
    json_t *checks = json_object();
    json_t *e = json_object();
    json_object_set_new(e, "ok", json_boolean(as == AUDIT_OK));
    if (as != AUDIT_OK)
        json_object_set_new(e, "error", json_string(why[0] ? why : "the audit log fails"));
    json_object_set_new(checks, "audit", e);
    e = json_object();
    json_object_set_new(e, "ok", json_boolean(rq->ready_store));
    if (!rq->ready_store)
        json_object_set_new(e, "error", json_string(rq->store_err));
    json_object_set_new(checks, "store", e);
    e = json_object();
    json_object_set_new(e, "ok", json_boolean(up_ok));
    if (!up_ok)
        json_object_set_new(e, "error", json_string(up_err));
    json_object_set_new(checks, "upstream", e);
    int ready = as == AUDIT_OK && rq->ready_store && up_ok;
    json_t *o = json_object();
    json_object_set_new(o, "ready", json_boolean(ready));
    json_object_set_new(o, "instance", json_string(c->ad->s->cfg->instance));
    json_object_set_new(o, "checks", checks);
    respond_json(c, ready ? 200 : 503, o);
}

static void status_finish(struct aconn *c, int up_ok, const char *up_err);

/* The upstream probe ended: answer /readyz or render /status. */
static void probe_done(struct aconn *c, int ok, const char *err)
{
    if (c->rq->status_page)
        status_finish(c, ok, err);
    else
        ready_answer(c, ok, err);
}

static void probe_cb(struct bufferevent *bev, short what, void *arg)
{
    struct aconn *c = arg;
    (void)bev;
    bufferevent_free(c->probe);
    c->probe = NULL;
    if (what & BEV_EVENT_CONNECTED)
        probe_done(c, 1, NULL);
    else
        probe_done(c, 0, (what & BEV_EVENT_TIMEOUT) ? "connect timed out" : "cannot connect");
}

/* Can a connection to the upstream be opened? (No request is sent to the national side.) */
static void start_probe(struct aconn *c)
{
    struct admin *ad = c->ad;
    c->probe = bufferevent_socket_new(ad->base, -1, BEV_OPT_CLOSE_ON_FREE);
    int ms = ad->s->cfg->upstream.connect_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_set_timeouts(c->probe, NULL, &tv);
    bufferevent_setcb(c->probe, NULL, NULL, probe_cb, c);
    if (ad->up_addrlen == 0 ||
        bufferevent_socket_connect(c->probe, (struct sockaddr *)&ad->up_addr,
                                   (int)ad->up_addrlen) != 0) {
        bufferevent_free(c->probe);
        c->probe = NULL;
        probe_done(c, 0, "cannot connect");
    }
}

/* The store answered (a round trip for /readyz, the usage reads for /status). */
static void store_checked(void *arg, struct quota_read *rd, int n, int64_t now_ms,
                          const char *err)
{
    struct aconn *c = arg;
    (void)rd;
    (void)n;
    c->op = NULL;
    c->rq->ready_store = err == NULL;
    c->rq->read_now_ms = now_ms;
    snprintf(c->rq->store_err, sizeof c->rq->store_err, "%s", err ? err : "");
    start_probe(c);
}

static void h_ready(struct aconn *c)
{
    c->rq->action = "readyz";
    c->state = AC_BUSY;
    c->op = quota_store_read(c->ad->store, NULL, 0, read_time(c->ad, clock_now_ms()),
                             clock_now_ms(), store_checked, c);
}

/* --- GET /status ------------------------------------------------------------------------ */

static void status_finish(struct aconn *c, int up_ok, const char *up_err)
{
    struct areq *rq = c->rq;
    struct evbuffer *page = evbuffer_new();
    struct status_input in = {
        .rd = rq->rd, .n = rq->nrd,
        .now_ms = rq->read_now_ms ? rq->read_now_ms : clock_now_ms(),
        .store_err = rq->ready_store ? NULL : rq->store_err,
        .upstream_ok = up_ok, .upstream_err = up_err};
    status_render(c->ad->s, rq->pol, &in, page);
    size_t len = evbuffer_get_length(page);
    respond_raw(c, 200, "text/html; charset=utf-8", (const char *)evbuffer_pullup(page, -1), len,
                "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
                "frame-ancestors 'none'\r\nReferrer-Policy: no-referrer\r\n");
    evbuffer_free(page);
}

static void h_status(struct aconn *c)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = "status";
    rq->status_page = 1;
    int64_t now = clock_now_ms();
    rq->nrd = status_reads(ad->s, rq->pol, &rq->rd);
    c->state = AC_BUSY;
    c->op = quota_store_read(ad->store, rq->rd, rq->nrd, read_time(ad, now), now, store_checked,
                             c);
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
    respond_problem(c, 405, NULL, "method not allowed here", hdr);
}

static void route(struct aconn *c)
{
    struct areq *rq = c->rq;
    char path[300];
    if (c->req.path_len >= sizeof path) {
        respond_problem(c, 404, NULL, "no such admin resource", NULL);
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
        respond_json(c, 200, o);
        return;
    }
    const char *why;
    c->who = authenticate(c, &why);
    if (c->who == NULL) {
        respond_problem(c, 401, "admin-token-required", why,
                        "WWW-Authenticate: Bearer realm=\"lookupgate admin\"\r\n"
                        "WWW-Authenticate: Basic realm=\"lookupgate admin\", charset=\"UTF-8\"\r\n");
        return;
    }
    rq->pol = current_policy(c->ad);
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
        respond_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8",
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
            respond_problem(c, 404, NULL, "no such admin resource", NULL);
            return;
        }
        if (c->req.method != HTTP_POST) {
            wrong_method(c, "POST");
            return;
        }
        h_suspension(c, id, suspend);
    } else {
        respond_problem(c, 404, NULL, "no such admin resource", NULL);
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
    respond_problem(c, status, NULL, reason, NULL);
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

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct admin *ad = arg;
    (void)l;
    (void)salen;
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
    if (cfg->ntokens == 0)
        log_warn("admin: no admin tokens configured: only /healthz answers");
    log_info("admin listener on %s%s", cfg->address, cfg->tls_enabled ? " (TLS)" : "");
    return ad;
}

void admin_free(struct admin *ad)
{
    if (ad == NULL)
        return;
    if (ad->listener)
        evconnlistener_free(ad->listener);
    while (!LIST_EMPTY(&ad->conns))
        ac_free(LIST_FIRST(&ad->conns));
    quota_store_free(ad->store);
    if (ad->sample)
        event_free(ad->sample);
    audit_sink_detach(ad->sink);
    SSL_CTX_free(ad->tls);
    free(ad);
}
