/* Request and administrative audit records. */
#include "proxy/record.h"

#include <string.h>
#include <time.h>

#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "policy/decide.h"
#include "policy/quota.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts the record: the writer adds '{' and "seq"/"prev" before it. */
static void begin(struct jsonw *j, int64_t t, const char *type, const char *instance)
{
    char ts[25];
    audit_format_time(t ? t : now_ms(), ts);
    jw_reset(j);
    jw_kstr(j, "time", ts, strlen(ts));
    jw_kstrz(j, "type", type);
    jw_kstrz(j, "instance", instance);
}

void record_admin_begin(struct jsonw *j, const char *type, const char *instance)
{
    begin(j, 0, type, instance);
}

static int digitish(const char *p, size_t left, size_t *adv)
{
    if (*p >= '0' && *p <= '9') {
        *adv = 1;
        return 1;
    }
    /* %30..%39 are digits too. */
    if (*p == '%' && left >= 3 && p[1] == '3' && p[2] >= '0' && p[2] <= '9') {
        *adv = 3;
        return 1;
    }
    return 0;
}

/* The path with runs of 4 or more digits masked ("*"): no citizen ID in clear. */
static void masked_path(struct jsonw *j, const char *p, size_t n)
{
    char out[512];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof out - 2;) {
        size_t k = i, digits = 0, adv;
        while (k < n && digitish(p + k, n - k, &adv)) {
            k += adv;
            digits++;
        }
        if (digits >= 4) {
            out[o++] = '*';
            i = k;
        } else if (digits > 0) {
            while (i < k && o < sizeof out - 2)
                out[o++] = p[i++];
        } else {
            out[o++] = p[i++];
        }
    }
    jw_kstr(j, "path", out, o);
}

/* Appends a run kept from the intent record: it ends with a value. */
static void reuse_run(struct jsonw *j, const char *run, size_t len)
{
    jw_raw(j, run, len);
    j->need_comma = 1;
}

/* Keeps j->buf[from..j->len) in room (of cap bytes); returns its length, or 0 if it does not
 * fit. */
static unsigned short keep_run(const struct jsonw *j, size_t from, char *room, size_t cap)
{
    size_t n = j->len - from;
    if (n == 0 || n > cap)
        return 0;
    memcpy(room, j->buf + from, n);
    return (unsigned short)n;
}

/* From "request_id" to "procedure": who asked, about what, why. */
static void record_who(struct jsonw *j, const struct req_record *r)
{
    const struct pol_decision *d = r->dec;
    const struct pol_account *a = d ? d->account : NULL;
    jw_kstrz(j, "request_id", r->request_id);
    jw_kstrz(j, "client", r->client);
    jw_kstrz(j, "tls_client", r->tls_client);
    jw_kstrz(j, "account", a ? a->id : NULL);
    jw_kstrz(j, "unit", a && a->unit ? a->unit->name : NULL);
    jw_key(j, "roles");
    if (a) {
        jw_open(j, '[');
        for (size_t i = 0; i < a->nroles; i++)
            jw_strz(j, a->roles[i]->name);
        jw_close(j, ']');
    } else {
        jw_null(j);
    }
    jw_kstrz(j, "method", r->method);
    jw_kstrz(j, "operation", d && d->op ? d->op->name : NULL);
    if (!(d && d->op) && r->path)
        masked_path(j, r->path, r->path_len);
    jw_kstrz(j, "subject", r->subject_token);
    jw_kstrz(j, "dossier", d && d->dossier[0] ? d->dossier : NULL);
    jw_kstrz(j, "procedure", d && d->procedure[0] ? d->procedure : NULL);
}

/* From "counters" to "policy": the quota counters and how they were decided. */
static void record_counters(struct jsonw *j, const struct req_record *r)
{
    jw_key(j, "counters");
    if (r->plan && r->qres && r->qres->n > 0) {
        jw_open(j, '[');
        for (int i = 0; i < r->qres->n && i < r->plan->n; i++) {
            jw_open(j, '{');
            jw_kstrz(j, "name", r->plan->checks[i].name);
            jw_kint(j, "used", r->qres->c[i].used);
            jw_kint(j, "limit", r->qres->c[i].limit);
            jw_close(j, '}');
        }
        jw_close(j, ']');
    } else {
        jw_null(j);
    }
    jw_kstrz(j, "clock", r->clock);
    jw_kbool(j, "degraded", r->degraded);
    jw_kstrz(j, "policy", r->policy);
}

void record_request(struct jsonw *j, const struct req_record *r)
{
    int result = strcmp(r->type, "lookup.result") == 0;
    struct rec_reuse *ru = r->reuse;
    int use = ru && ru->have && result;
    int keep = ru && !ru->have && strcmp(r->type, "lookup.intent") == 0;
    begin(j, r->time_ms, r->type, r->instance);
    size_t from = j->len;
    if (use && ru->who_len)
        reuse_run(j, ru->who, ru->who_len);
    else
        record_who(j, r);
    if (keep)
        ru->who_len = keep_run(j, from, ru->who, sizeof ru->who);
    jw_kstrz(j, "decision", r->decision);
    jw_kstrz(j, "rule", r->rule);
    jw_key(j, "status");
    if (r->status)
        jw_int(j, r->status);
    else
        jw_null(j);
    jw_kstrz(j, "detail", r->detail && r->detail[0] ? r->detail : NULL);
    from = j->len;
    if (use && ru->counters_len)
        reuse_run(j, ru->counters, ru->counters_len);
    else
        record_counters(j, r);
    if (keep) {
        ru->counters_len = keep_run(j, from, ru->counters, sizeof ru->counters);
        ru->have = 1;
    }
    if (result) {
        jw_key(j, "upstream");
        if (r->upstream) {
            jw_open(j, '{');
            jw_kint(j, "status", r->up_status);
            jw_kint(j, "bytes", (long long)r->up_bytes);
            jw_kint(j, "latency_us", r->up_latency_us);
            jw_kstrz(j, "sha256", r->up_sha256);
            jw_close(j, '}');
        } else {
            jw_null(j);
        }
        jw_kstrz(j, "error", r->error);
    }
    jw_close(j, '}');
}
