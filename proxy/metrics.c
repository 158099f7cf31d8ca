/* Metrics registry and the Prometheus text exposition (format 0.0.4). */
#include "proxy/metrics.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "common/util.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "proxy/server.h"
#include "proxy/worker.h"

const char *const met_kinds[] = {
    /* the decision's refusals */
    "credential-required", "invalid-credential", "credential-expired",
    "credential-not-yet-valid", "account-disabled", "account-suspended", "unknown-operation",
    "operation-not-granted", "outside-permitted-hours", "purpose-required", "invalid-purpose",
    "invalid-subject", "ambiguous-request", "quota-exceeded", "quota-store-unavailable",
    /* the audit log's, and the throttle of failing addresses (D12) */
    "audit-unavailable", "authentication-throttled",
    /* the protocol's and the upstream's */
    "bad-request", "unauthorized", "forbidden", "not-found", "method-not-allowed",
    "request-timeout", "body-too-large", "uri-too-long", "expectation-failed",
    "headers-too-large", "bad-gateway", "service-unavailable", "gateway-timeout",
    "http-version-not-supported", "error", NULL,
};

const char *const met_signal_text[] = {"quota-refusals", "outside-hours", "distinct-citizens",
                                       "auth-failures"};

int met_kind_index(const char *type)
{
    int i = 0;
    for (; met_kinds[i]; i++) /* every refusal comes here: the first byte before the rest */
        if (met_kinds[i][0] == type[0] && strcmp(met_kinds[i], type) == 0)
            return i;
    return i - 1; /* "error" */
}

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->ops[0] = xstrdup("none");
    m->nops = 1;
}

void metrics_free(struct metrics *m)
{
    for (int i = 0; i < m->nops; i++)
        free(m->ops[i]);
    pthread_mutex_destroy(&m->mu);
}

void metrics_register_ops(struct metrics *m, struct policy *p)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < p->nops; i++) {
        int slot = 1;
        while (slot < m->nops && strcmp(m->ops[slot], p->ops[i].name) != 0)
            slot++;
        if (slot == m->nops) {
            if (m->nops < MET_OPS)
                m->ops[m->nops++] = xstrdup(p->ops[i].name);
            else
                slot = MET_OPS - 1; /* shares the last slot's name */
        }
        p->ops[i].stat_slot = slot;
    }
    pthread_mutex_unlock(&m->mu);
}

/* --- the minute ring (status page) ------------------------------------------------------- */

static void totals(struct server *s, unsigned long long t[6])
{
    memset(t, 0, 6 * sizeof *t);
    for (int i = 0; i < s->nworkers; i++) {
        struct met_worker *w = &s->workers[i]->met;
        for (int c = 1; c < 6; c++)
            t[0] += stat_get(&w->responses[c]);
        for (int op = 0; op < MET_OPS; op++) {
            atomic_ullong *d = w->decisions[op];
            t[1] += stat_get(&d[DECISION_ALLOW]);
            t[2] += stat_get(&d[DECISION_DENY_QUOTA]);
            t[3] += stat_get(&d[DECISION_DENY_NOT_GRANTED]) + stat_get(&d[DECISION_DENY_HOURS]) +
                    stat_get(&d[DECISION_DENY_PURPOSE]);
            t[4] += stat_get(&d[DECISION_DENY_NO_CREDENTIAL]) +
                    stat_get(&d[DECISION_DENY_CREDENTIAL]) + stat_get(&d[DECISION_DENY_EXPIRED]) +
                    stat_get(&d[DECISION_DENY_NOT_YET_VALID]) +
                    stat_get(&d[DECISION_DENY_DISABLED]) + stat_get(&d[DECISION_DENY_SUSPENDED]);
        }
    }
    unsigned long long known = t[1] + t[2] + t[3] + t[4];
    t[5] = t[0] > known ? t[0] - known : 0;
}

static void set_minute(struct met_minute *mm, const unsigned long long t[6],
                       const unsigned long long b[6])
{
    mm->requests = t[0] - b[0];
    mm->allowed = t[1] - b[1];
    mm->quota = t[2] - b[2];
    mm->grant = t[3] - b[3];
    mm->auth = t[4] - b[4];
    mm->other = t[5] >= b[5] ? t[5] - b[5] : 0;
}

void metrics_sample(struct server *s, int64_t now_ms)
{
    struct metrics *m = &s->metrics;
    unsigned long long t[6];
    int64_t start = now_ms - now_ms % 60000;
    totals(s, t);
    pthread_mutex_lock(&m->mu);
    if (m->nminutes == 0 || m->minutes[m->head].start_ms != start) {
        if (m->nminutes > 0)
            set_minute(&m->minutes[m->head], t, m->base);
        m->head = (m->head + 1) % MET_MINUTES;
        if (m->nminutes < MET_MINUTES)
            m->nminutes++;
        memset(&m->minutes[m->head], 0, sizeof m->minutes[m->head]);
        m->minutes[m->head].start_ms = start;
        memcpy(m->base, t, sizeof m->base);
    }
    set_minute(&m->minutes[m->head], t, m->base);
    pthread_mutex_unlock(&m->mu);
}

int metrics_minutes(struct server *s, struct met_minute *out, int n)
{
    struct metrics *m = &s->metrics;
    pthread_mutex_lock(&m->mu);
    if (n > m->nminutes)
        n = m->nminutes;
    for (int i = 0; i < n; i++)
        out[i] = m->minutes[(m->head - (n - 1 - i) + MET_MINUTES) % MET_MINUTES];
    pthread_mutex_unlock(&m->mu);
    return n;
}

void metrics_alert(struct metrics *m, enum met_signal sig, const char *subject,
                   const char *detail, int64_t now_ms)
{
    atomic_fetch_add(&m->alerts[sig], 1);
    pthread_mutex_lock(&m->mu);
    m->recent_head = (m->recent_head + 1) % MET_ALERTS;
    struct met_alert *a = &m->recent[m->recent_head];
    a->time_ms = now_ms;
    a->signal = sig;
    snprintf(a->subject, sizeof a->subject, "%s", subject);
    snprintf(a->detail, sizeof a->detail, "%s", detail);
    if (m->nrecent < MET_ALERTS)
        m->nrecent++;
    pthread_mutex_unlock(&m->mu);
}

int metrics_recent_alerts(struct metrics *m, struct met_alert *out, int n)
{
    pthread_mutex_lock(&m->mu);
    if (n > m->nrecent)
        n = m->nrecent;
    for (int i = 0; i < n; i++)
        out[i] = m->recent[(m->recent_head - i + MET_ALERTS) % MET_ALERTS];
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* --- exposition ------------------------------------------------------------------------- */

static void put(struct evbuffer *o, const char *s)
{
    evbuffer_add(o, s, strlen(s));
}

/* A label value with \, " and newline escaped. */
static void label(struct evbuffer *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(o, "\\%c", *v);
        else if (*v == '\n')
            put(o, "\\n");
        else
            evbuffer_add(o, v, 1);
    }
}

static void head(struct evbuffer *o, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_render(struct evbuffer *o, const char *name, const char *help,
                        const struct hist_snap *h)
{
    unsigned long long cum = 0;
    head(o, name, "histogram", help);
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        evbuffer_add_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, hist_bounds_us[i] / 1e6,
                            cum);
    }
    cum += h->bucket[HIST_BUCKETS];
    evbuffer_add_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, cum,
                        name, h->sum_us / 1e6, name, cum);
}

static void counter1(struct evbuffer *o, const char *name, const char *help,
                     unsigned long long v)
{
    head(o, name, "counter", help);
    evbuffer_add_printf(o, "%s %llu\n", name, v);
}

static void gauge1(struct evbuffer *o, const char *name, const char *help, long long v)
{
    head(o, name, "gauge", help);
    evbuffer_add_printf(o, "%s %lld\n", name, v);
}

void metrics_render(struct server *s, struct evbuffer *o)
{
    struct metrics *m = &s->metrics;
    int nw = s->nworkers;

    head(o, "lookupgate_build_info", "gauge", "Version and instance name of this process.");
    put(o, "lookupgate_build_info{version=\"");
    label(o, LOOKUPGATE_VERSION);
    put(o, "\",name=\"");
    label(o, s->cfg->instance);
    put(o, "\"} 1\n");

    /* decisions */
    head(o, "lookupgate_requests_total", "counter",
         "Requests decided by the policy and quotas, by operation and decision.");
    pthread_mutex_lock(&m->mu);
    int nops = m->nops;
    for (int op = 0; op < nops; op++)
        for (int d = 0; d < DECISION__COUNT; d++) {
            unsigned long long v = 0;
            for (int i = 0; i < nw; i++)
                v += stat_get(&s->workers[i]->met.decisions[op][d]);
            if (v == 0 && d != DECISION_ALLOW)
                continue;
            put(o, "lookupgate_requests_total{operation=\"");
            label(o, m->ops[op]);
            evbuffer_add_printf(o, "\",decision=\"%s\"} %llu\n", decision_info[d].problem, v);
        }
    pthread_mutex_unlock(&m->mu);

    head(o, "lookupgate_refusals_total", "counter",
         "Responses lookupgate made itself instead of forwarding, by problem type.");
    for (int k = 0; met_kinds[k]; k++) {
        unsigned long long v = 0;
        for (int i = 0; i < nw; i++)
            v += stat_get(&s->workers[i]->met.refusals[k]);
        evbuffer_add_printf(o, "lookupgate_refusals_total{kind=\"%s\"} %llu\n", met_kinds[k], v);
    }

    head(o, "lookupgate_responses_total", "counter", "Responses sent to clients, by status class.");
    for (int c = 1; c < 6; c++) {
        unsigned long long v = 0;
        for (int i = 0; i < nw; i++)
            v += stat_get(&s->workers[i]->met.responses[c]);
        evbuffer_add_printf(o, "lookupgate_responses_total{code=\"%dxx\"} %llu\n", c, v);
    }

    head(o, "lookupgate_quota_near_limit_total", "counter",
         "Admitted requests that brought a quota counter to 80% of its limit, by level.");
    for (int l = 0; l < QLEVEL__COUNT; l++)
        for (int w = 0; w < 2; w++) {
            unsigned long long v = 0;
            for (int i = 0; i < nw; i++)
                v += stat_get(&s->workers[i]->met.near_limit[l][w]);
            evbuffer_add_printf(o, "lookupgate_quota_near_limit_total{level=\"%s\",window=\"%s\"} "
                                   "%llu\n", quota_level_text[l], w ? "day" : "minute", v);
        }

    /* latencies */
    struct hist_snap h[4];
    memset(h, 0, sizeof h);
    for (int i = 0; i < nw; i++) {
        hist_add_to(&h[0], &s->workers[i]->met.h_total);
        hist_add_to(&h[1], &s->workers[i]->met.h_upstream);
        hist_add_to(&h[2], &s->workers[i]->met.h_store);
        hist_add_to(&h[3], &s->workers[i]->met.h_audit);
    }
    hist_render(o, "lookupgate_request_duration_seconds",
                "First byte of a request to its response released.", &h[0]);
    hist_render(o, "lookupgate_upstream_duration_seconds",
                "Request sent upstream to its complete response.", &h[1]);
    hist_render(o, "lookupgate_store_duration_seconds",
                "Quota decision round trip to Redis.", &h[2]);
    hist_render(o, "lookupgate_audit_durability_seconds",
                "Audit record submitted to durable (write + fdatasync).", &h[3]);

    /* the quota store */
    unsigned long long st[6] = {0};
    int ready = 0, module = 0;
    for (int i = 0; i < nw; i++) {
        const struct quota_store_stats *q = quota_store_stats(s->workers[i]->store);
        module += atomic_load(&q->module);
        st[0] += stat_get(&q->commands);
        st[1] += stat_get(&q->errors);
        st[2] += stat_get(&q->timeouts);
        st[3] += stat_get(&q->degraded);
        st[4] += stat_get(&q->denied);
        st[5] += stat_get(&q->reconnects);
        ready += atomic_load(&q->ready);
    }
    counter1(o, "lookupgate_store_commands_total", "Quota decisions sent to Redis.", st[0]);
    counter1(o, "lookupgate_store_errors_total",
             "Quota decisions Redis answered with an error, garbage or not at all.", st[1]);
    counter1(o, "lookupgate_store_timeouts_total", "Quota decisions that timed out.", st[2]);
    counter1(o, "lookupgate_store_degraded_decisions_total",
             "Decisions made by the per-instance fallback because Redis failed.", st[3]);
    counter1(o, "lookupgate_store_denied_total",
             "Requests refused (503) because Redis could not decide.", st[4]);
    counter1(o, "lookupgate_store_connects_total", "Connection attempts to Redis.", st[5]);
    gauge1(o, "lookupgate_store_connections_ready",
           "Workers whose Redis connection is ready (of lookupgate_workers).", ready);
    gauge1(o, "lookupgate_store_module_connections",
           "Workers whose Redis decides with the lookupgate module's LOOKUPGATE.ADMIT (the "
           "others run the Lua script).", module);
    gauge1(o, "lookupgate_workers", "Worker threads.", nw);

    /* the audit log */
    struct audit_stats as;
    char why[200];
    audit_get_stats(s->audit, &as);
    enum audit_state ast = audit_health(s->audit, why, sizeof why);
    gauge1(o, "lookupgate_audit_queue_depth", "Audit records waiting to be written.",
           (long long)as.queued);
    counter1(o, "lookupgate_audit_records_total", "Audit records made durable.", as.records);
    counter1(o, "lookupgate_audit_failures_total", "Audit write or fsync errors.", as.failures);
    counter1(o, "lookupgate_audit_lost_total",
             "Audit records refused because memory was full while the log failed.", as.lost);
    head(o, "lookupgate_audit_state", "gauge", "1 for the audit log's current state.");
    static const char *const states[] = {"ok", "low_space", "failed"};
    for (int i = 0; i < 3; i++)
        evbuffer_add_printf(o, "lookupgate_audit_state{state=\"%s\"} %d\n", states[i],
                            (int)ast == i);
    hist_render(o, "lookupgate_audit_fsync_seconds", "Write + fdatasync time per audit batch.",
                &as.fsync);

    /* connections and the upstream pool */
    gauge1(o, "lookupgate_connections_open", "Open client connections.",
           atomic_load(&s->nconns));
    long long pt = 0, pi = 0, pw = 0;
    for (int i = 0; i < nw; i++) {
        pt += atomic_load(&s->workers[i]->met.pool_total);
        pi += atomic_load(&s->workers[i]->met.pool_idle);
        pw += atomic_load(&s->workers[i]->met.pool_waiting);
    }
    head(o, "lookupgate_upstream_connections", "gauge",
         "Upstream connections by state (sampled every second).");
    evbuffer_add_printf(o, "lookupgate_upstream_connections{state=\"idle\"} %lld\n"
                           "lookupgate_upstream_connections{state=\"busy\"} %lld\n",
                        pi, pt - pi);
    gauge1(o, "lookupgate_upstream_waiting",
           "Requests waiting for an upstream connection (sampled every second).", pw);

    /* policy */
    pthread_mutex_lock(&s->policy_mu);
    struct policy *p = policy_ref(s->policy);
    pthread_mutex_unlock(&s->policy_mu);
    head(o, "lookupgate_policy_info", "gauge", "The policy in force.");
    put(o, "lookupgate_policy_info{version=\"");
    label(o, p->version);
    evbuffer_add_printf(o, "\",digest=\"%.16s\"} 1\n", p->digest);
    gauge1(o, "lookupgate_policy_accounts", "Accounts in the policy in force.",
           (long long)p->naccounts);
    policy_unref(p);
    head(o, "lookupgate_policy_reloads_total", "counter", "Policy reloads, by result.");
    evbuffer_add_printf(o, "lookupgate_policy_reloads_total{result=\"ok\"} %llu\n"
                           "lookupgate_policy_reloads_total{result=\"refused\"} %llu\n",
                        stat_get(&m->reloads_ok), stat_get(&m->reloads_refused));

    /* operations */
    head(o, "lookupgate_alerts_total", "counter", "Misuse alerts raised, by signal.");
    for (int i = 0; i < SIG__COUNT; i++)
        evbuffer_add_printf(o, "lookupgate_alerts_total{signal=\"%s\"} %llu\n",
                            met_signal_text[i], stat_get(&m->alerts[i]));
    counter1(o, "lookupgate_auto_suspensions_total",
             "Accounts suspended automatically by a misuse signal.",
             stat_get(&m->suspensions_auto));
    counter1(o, "lookupgate_admin_requests_total", "Requests to the admin listener.",
             stat_get(&m->admin_requests));
}
