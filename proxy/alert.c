/* Misuse alerts: raising, recording and the automatic suspension. */
#include "proxy/alert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/signals.h"
#include "policy/store.h"
#include "proxy/metrics.h"
#include "proxy/record.h"
#include "proxy/server.h"
#include "proxy/worker.h"

struct autosusp {
    struct server *s;
    char account[POL_NAME_MAX + 1];
    char reason[200];
    char signal[32];
};

static void record(struct server *s, const char *text, size_t len)
{
    if (audit_log(s->audit, text, len) == AUDIT_REFUSED)
        log_error("audit: an alert record could not be queued");
}

static void autosusp_done(void *arg, int existed, const char *err)
{
    struct autosusp *a = arg;
    struct jsonw j;
    jw_init(&j);
    record_admin_begin(&j, "account.suspend", a->s->cfg->instance);
    jw_kstrz(&j, "admin", NULL);
    jw_kstrz(&j, "by", a->signal);
    jw_kstrz(&j, "account", a->account);
    jw_kstrz(&j, "reason", a->reason);
    jw_kstrz(&j, "result", err ? "failed" : "ok");
    if (err)
        jw_kstrz(&j, "error", err);
    else
        jw_kbool(&j, "was_suspended", existed);
    jw_close(&j, '}');
    record(a->s, j.buf, j.len);
    jw_free(&j);
    if (err) {
        log_error("ALERT: automatic suspension of %s could not be stored: %s (it holds on this "
                  "instance only)", a->account, err);
    } else {
        atomic_fetch_add(&a->s->metrics.suspensions_auto, 1);
        log_error("ALERT: account %s suspended automatically: %s", a->account, a->reason);
    }
    free(a);
}

void alert_event(struct worker *w, const struct policy *p, int kind, const char *key,
                 uint64_t item, const char *request_id)
{
    struct server *s = w->srv;
    const struct pol_signal *th = &p->signals[kind];
    if (th->count <= 0)
        return;
    int64_t now = clock_now_ms();
    int n = sigtrack_event(s->sig, kind, key, item, th, now);
    if (n == 0)
        return;
    int account = kind != PSIG_AUTH_FAILURES;
    char detail[160];
    snprintf(detail, sizeof detail, "%d %s in %d s%s", n,
             kind == PSIG_QUOTA_REFUSALS    ? "quota refusals"
             : kind == PSIG_OUTSIDE_HOURS   ? "lookups outside permitted hours"
             : kind == PSIG_DISTINCT_SUBJECTS ? "distinct citizens"
                                              : "credential refusals (401)",
             th->window_s, th->suspend ? "; account suspended" : "");
    log_error("ALERT %s: %s %s: %s (request %s)", pol_signal_names[kind],
              account ? "account" : "client", key, detail, request_id);
    metrics_alert(&s->metrics, (enum met_signal)kind, key, detail, now);
    struct jsonw j;
    jw_init(&j);
    record_admin_begin(&j, "alert", s->cfg->instance);
    jw_kstrz(&j, "signal", pol_signal_names[kind]);
    jw_kstrz(&j, account ? "account" : "client", key);
    jw_kint(&j, "count", n);
    jw_kint(&j, "window_s", th->window_s);
    jw_kstrz(&j, "request_id", request_id);
    jw_kstrz(&j, "action", th->suspend && account ? "suspend" : "none");
    jw_kstrz(&j, "policy", p->version);
    jw_close(&j, '}');
    record(s, j.buf, j.len);
    jw_free(&j);
    if (!th->suspend || !account)
        return;
    struct autosusp *a = xcalloc(1, sizeof *a);
    a->s = s;
    snprintf(a->account, sizeof a->account, "%s", key);
    snprintf(a->signal, sizeof a->signal, "signal:%s", pol_signal_names[kind]);
    snprintf(a->reason, sizeof a->reason, "automatic: %s (%s)", pol_signal_names[kind], detail);
    char skey[160];
    quota_susp_key(skey, sizeof skey, s->cfg->store.key_prefix, key);
    if (!s->cfg->store.memory)
        quota_mem_set(s->mem, skey, a->reason); /* the local fallback honours it too */
    quota_store_set(w->store, skey, a->reason, autosusp_done, a);
}
