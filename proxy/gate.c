/* The decision state of one client request: see gate.h. */
#include "proxy/gate.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <http_parser.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "audit/crypto.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/policy.h"
#include "policy/signals.h"
#include "proxy/alert.h"
#include "proxy/metrics.h"
#include "proxy/server.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

#define GATE_CACHE 1024

struct gate *gate_get(struct worker *w)
{
    struct gate *g = w->gate_free;
    if (g) {
        w->gate_free = g->next_free;
        w->ngate_free--;
    } else {
        g = xmalloc(sizeof *g);
    }
    memset(g, 0, offsetof(struct gate, hdrs));
    g->hdrs[0] = '\0';
    g->reuse.have = 0;
    return g;
}

void gate_put(struct worker *w, struct gate *g)
{
    if (w->ngate_free >= GATE_CACHE) {
        free(g);
        return;
    }
    g->next_free = w->gate_free;
    w->gate_free = g;
    w->ngate_free++;
}

void conn_worker_cache_free(struct worker *w)
{
    while (w->gate_free) {
        struct gate *g = w->gate_free;
        w->gate_free = g->next_free;
        free(g);
    }
    w->ngate_free = 0;
}

/* The client certificate's SHA-256 fingerprint, when the client presented one. */
static const char *tls_identity(struct conn *c)
{
    if (!c->tls)
        return NULL;
    if (!c->tls_id_done) {
        c->tls_id_done = 1;
        tls_peer_fingerprint(bufferevent_openssl_get_ssl(c->bev), c->tls_id, sizeof c->tls_id);
    }
    return c->tls_id[0] ? c->tls_id : NULL;
}

/* The fields every request record has, from what is known about c's request. */
void gate_base_record(struct conn *c, struct req_record *rr, const char *type)
{
    const struct server *s = c->w->srv;
    struct gate *g = c->gate;
    memset(rr, 0, sizeof *rr);
    rr->type = type;
    rr->instance = s->cfg->instance;
    rr->request_id = c->request_id;
    rr->client = c->peer_ip;
    rr->tls_client = tls_identity(c);
    rr->dec = g ? &g->dec : NULL;
    if (c->have_req) {
        rr->method = http_method_str((enum http_method)c->req.method);
        rr->path = c->req.target;
        rr->path_len = c->req.path_len;
    }
    rr->reuse = g ? &g->reuse : NULL;
    if (g && g->have_quota) {
        rr->plan = &g->plan;
        rr->qres = &g->qres;
        rr->degraded = g->qres.degraded;
    }
    /* The clock the quota decision used: the memory backend and the local fallback use this
     * process's clock. */
    rr->clock = s->cfg->store.clock_kind == CLOCK_TEST
                    ? "test"
                    : (s->cfg->store.memory || rr->degraded) ? "proxy" : s->cfg->store.clock;
    rr->policy = c->pol ? c->pol->version : c->w->policy->version;
    if (g && g->dec.subject[0]) {
        if (g->subject_token[0] == '\0') /* once per request, for both of its records */
            audit_cid_token_k(&s->cid_hmac, g->dec.subject, strlen(g->dec.subject),
                              g->subject_token);
        rr->subject_token = g->subject_token;
    }
}

static struct pol_hval header_value(const struct http_req *r, const char *name)
{
    struct pol_hval h = {NULL, 0, 0};
    for (size_t i = 0; i < r->nhdrs; i++)
        if (ascii_eq_nocase(r->hdrs[i].name, r->hdrs[i].nlen, name) && h.count++ == 0) {
            h.v = r->hdrs[i].value;
            h.len = r->hdrs[i].vlen;
        }
    return h;
}

/* The decision time: the test clock header when configured (tests only), else now. */
static int64_t decision_time(const struct conn *c)
{
    if (c->w->srv->cfg->store.clock_kind == CLOCK_TEST) {
        struct pol_hval t = header_value(&c->req, "x-lookup-test-time");
        if (t.count == 1 && t.len > 0 && t.len < 16) {
            int64_t v = 0;
            size_t i = 0;
            for (; i < t.len && t.v[i] >= '0' && t.v[i] <= '9'; i++)
                v = v * 10 + (t.v[i] - '0');
            if (i == t.len)
                return v;
        }
    }
    return clock_now_ms();
}

void gate_fill_request(struct conn *c, struct pol_request *rq)
{
    const struct http_req *r = &c->req;
    memset(rq, 0, sizeof *rq);
    rq->method = r->method;
    rq->path = r->target;
    rq->path_len = r->path_len;
    if (r->path_len < r->target_len) {
        rq->query = r->target + r->path_len + 1;
        rq->query_len = r->target_len - r->path_len - 1;
    }
    if (r->authorization) {
        const struct http_hdr *h = r->authorization;
        rq->authorization = (struct pol_hval){h->value, h->vlen, 1};
        /* The parser trimmed trailing whitespace; the byte after the value shows it. */
        rq->auth_trailing_ws = h->value[h->vlen] == ' ' || h->value[h->vlen] == '\t';
    }
    rq->soap_action = header_value(r, "soapaction");
    rq->dossier = header_value(r, "x-dossier-id");
    rq->procedure = header_value(r, "x-procedure-code");
    size_t blen = evbuffer_get_length(c->body);
    if (blen > 0) {
        rq->body = (const char *)evbuffer_pullup(c->body, -1);
        rq->body_len = blen;
    }
    rq->now_ms = decision_time(c);
}

/* Counts the request's decision by operation. */
void gate_count_decision(struct conn *c, enum decision d)
{
    const struct pol_operation *op = c->gate->dec.op;
    stat_add(&c->w->met.decisions[op ? op->stat_slot : 0][d], 1);
}

/* Counts the counters an admitted request brought to 80% of their limit. */
void gate_count_near_limit(struct conn *c)
{
    const struct gate *g = c->gate;
    for (int i = 0; i < g->qres.n && i < g->plan.n; i++) {
        long long used = g->qres.c[i].used, limit = g->qres.c[i].limit;
        if (limit > 0 && used * 5 >= limit * 4 && (used - 1) * 5 < limit * 4)
            stat_add(&c->w->met.near_limit[g->plan.checks[i].level]
                                          [g->plan.checks[i].kind == QUOTA_DAY], 1);
    }
}

/* Feeds the misuse signals with a decision. */
void gate_signal_decision(struct conn *c, enum decision d)
{
    const struct pol_decision *dec = &c->gate->dec;
    const struct policy *p = c->pol;
    if (p == NULL)
        return;
    switch (d) {
    case DECISION_DENY_QUOTA:
        alert_event(c->w, p, PSIG_QUOTA_REFUSALS, dec->account->id, 0, c->request_id);
        break;
    case DECISION_DENY_HOURS:
        alert_event(c->w, p, PSIG_OUTSIDE_HOURS, dec->account->id, 0, c->request_id);
        break;
    case DECISION_DENY_NO_CREDENTIAL:
    case DECISION_DENY_CREDENTIAL:
    case DECISION_DENY_EXPIRED:
    case DECISION_DENY_NOT_YET_VALID: {
        int64_t retry;
        sigtrack_window(c->w->srv->sig, PSIG__COUNT, c->peer_ip,
                        c->w->srv->cfg->limits.auth_failures_per_minute, 60, clock_now_ms(), 1,
                        &retry);
        alert_event(c->w, p, PSIG_AUTH_FAILURES, c->peer_ip, 0, c->request_id);
        break;
    }
    case DECISION_ALLOW:
        if (dec->subject[0]) { /* the citizen as a salted hash, never the ID */
            uint64_t h = 1469598103934665603ull ^ c->w->srv->subject_salt;
            for (const char *q = dec->subject; *q; q++)
                h = (h ^ (unsigned char)*q) * 1099511628211ull;
            alert_event(c->w, p, PSIG_DISTINCT_SUBJECTS, dec->account->id, h, c->request_id);
        }
        break;
    default:
        break;
    }
}
