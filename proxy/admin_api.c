/* The admin API's handlers: account usage, suspension, reports, reload, readiness and the
 * status page. The ones that need the quota store ask the admin's own store connection and
 * answer from its callback; a connection that goes away first cancels the question. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/store.h"
#include "proxy/admin_impl.h"
#include "proxy/server.h"
#include "proxy/status.h"

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
        ac_respond_problem(c, 503, "quota-store-unavailable", "the quota store cannot be read now",
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
    ac_respond_json(c, 200, o);
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

void h_account(struct aconn *c, const char *id)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = "accounts.get";
    rq->acct = policy_find_account(rq->pol, id);
    if (rq->acct == NULL) {
        ac_respond_problem(c, 404, "unknown-account", "no such account in the policy", NULL);
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
    ac_record_begin(c, &j, suspend ? "account.suspend" : "account.resume");
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
        ac_hold_problem(c, 503, "quota-store-unavailable",
                     suspend ? "the suspension could not be stored: it holds on this instance "
                               "only (its local fallback); retry"
                             : "the resumption could not be stored; retry",
                     "Retry-After: 1\r\n");
    } else {
        ac_hold_json(c, 200, o);
    }
    ac_finish(c); /* logs; the generic record is skipped (own_record) */
    c->state = AC_BUSY;
    ac_submit_and_release(c, &j); /* the answer goes out once the act is durably recorded */
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
        ac_respond_problem(c, 400, "reason-required",
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
        ac_respond_problem(c, 400, "bad-request",
                        "expected a JSON object {\"reason\": \"...\"} (at most 200 characters)",
                        NULL);
        return -1;
    }
    if (required && rq->reason[0] == '\0') {
        ac_respond_problem(c, 400, "reason-required", "a suspension needs a reason", NULL);
        return -1;
    }
    return 0;
}

void h_suspension(struct aconn *c, const char *id, int suspend)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = suspend ? "suspend" : "resume";
    rq->acct = policy_find_account(rq->pol, id);
    if (rq->acct == NULL) {
        ac_respond_problem(c, 404, "unknown-account", "no such account in the policy", NULL);
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
        ac_respond_problem(c, 503, "quota-store-unavailable", "the quota store cannot be read now",
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
    ac_respond_json(c, 200, o);
}

void h_idle(struct aconn *c)
{
    struct admin *ad = c->ad;
    struct areq *rq = c->rq;
    rq->action = "reports.idle";
    if (query_int(c, "days", 0, 3650, &rq->days) != 0) {
        ac_respond_problem(c, 400, "bad-request", "expected ?days=N (0 to 3650)", NULL);
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

void h_credentials(struct aconn *c)
{
    struct areq *rq = c->rq;
    rq->action = "reports.credentials";
    if (query_int(c, "days", 0, 3650, &rq->days) != 0) {
        ac_respond_problem(c, 400, "bad-request", "expected ?days=N (0 to 3650)", NULL);
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
    ac_respond_json(c, 200, o);
}

/* --- POST /admin/v1/reload -------------------------------------------------------------- */

void h_reload(struct aconn *c)
{
    struct areq *rq = c->rq;
    rq->action = "reload";
    rq->own_record = 1; /* server_reload_policy writes the reload record, naming the admin */
    char *err = xmalloc(65536);
    char who[160];
    snprintf(who, sizeof who, "%s", c->who->name);
    struct policy *before = admin_policy(c->ad);
    int tls_rc = server_reload_tls(c->ad->s); /* as SIGHUP: certificates, then the policy */
    int rc = server_reload_policy(c->ad->s, who, err, 65536);
    struct policy *after = admin_policy(c->ad);
    json_t *o = json_object();
    json_object_set_new(o, "result", json_string(rc == 0 ? "ok" : "refused"));
    json_object_set_new(o, "policy", json_string(after->version));
    json_object_set_new(o, "previous", json_string(before->version));
    json_object_set_new(o, "tls", json_string(tls_rc == 0 ? "ok" : "refused (see the log); the "
                                              "current certificates stay"));
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
    ac_respond_json(c, rc == 0 ? 200 : 422, o);
    ac_release(c); /* the reload record is queued already (server_reload_policy) */
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
    ac_respond_json(c, ready ? 200 : 503, o);
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

void h_ready(struct aconn *c)
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
    ac_respond_raw(c, 200, "text/html; charset=utf-8", (const char *)evbuffer_pullup(page, -1), len,
                "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
                "frame-ancestors 'none'\r\nReferrer-Policy: no-referrer\r\n");
    evbuffer_free(page);
}

void h_status(struct aconn *c)
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
