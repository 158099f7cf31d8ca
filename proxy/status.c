/* The status page. Everything a person reads is escaped; the page has no script. */
#include "proxy/status.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/store.h"
#include "proxy/metrics.h"
#include "proxy/server.h"
#include "proxy/worker.h"

#define READS_PER_ACCOUNT 3 /* suspension, minute window, day count */
#define TOP_ACCOUNTS 10
#define MINUTES_SHOWN 10

int status_reads(struct server *s, const struct policy *p, struct quota_read **out)
{
    const char *prefix = s->cfg->store.key_prefix;
    int n = (int)p->naccounts * READS_PER_ACCOUNT;
    struct quota_read *rd = xcalloc((size_t)n + 1, sizeof *rd);
    for (size_t i = 0; i < p->naccounts; i++) {
        const char *id = p->accounts[i].id;
        struct quota_read *r = &rd[i * READS_PER_ACCOUNT];
        r[0].kind = QREAD_GET;
        quota_susp_key(r[0].key, sizeof r[0].key, prefix, id);
        r[1].kind = QREAD_WINDOW;
        snprintf(r[1].key, sizeof r[1].key, "%s:{a:%s}:m", prefix, id);
        r[2].kind = QREAD_DAY;
        snprintf(r[2].key, sizeof r[2].key, "%s:{a:%s}:d", prefix, id);
        snprintf(r[2].field, sizeof r[2].field, "n");
    }
    *out = rd;
    return n;
}

static void esc(struct evbuffer *o, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': evbuffer_add(o, "&lt;", 4); break;
        case '>': evbuffer_add(o, "&gt;", 4); break;
        case '&': evbuffer_add(o, "&amp;", 5); break;
        case '"': evbuffer_add(o, "&quot;", 6); break;
        case '\'': evbuffer_add(o, "&#39;", 5); break;
        default: evbuffer_add(o, s, 1);
        }
    }
}

static void put(struct evbuffer *o, const char *s)
{
    evbuffer_add(o, s, strlen(s));
}

static void local_hm(int64_t ms, char *buf, size_t len, const char *fmt)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, fmt, &tm);
}

/* One row of the dependency table. */
static void health_row(struct evbuffer *o, const char *name, int ok, const char *state)
{
    evbuffer_add_printf(o, "<tr><th scope=\"row\">%s</th><td class=\"%s\">%s</td><td>", name,
                        ok ? "ok" : "bad", ok ? "OK" : "FAILING");
    esc(o, state);
    put(o, "</td></tr>\n");
}

struct usage_row {
    const struct pol_account *a;
    long long minute, day;
    int lim_minute, lim_day;
    double ratio; /* the higher of used/limit over the two windows */
};

static int cmp_ratio(const void *x, const void *y)
{
    const struct usage_row *a = x, *b = y;
    if (a->ratio != b->ratio)
        return a->ratio < b->ratio ? 1 : -1;
    return strcmp(a->a->id, b->a->id);
}

static void usage_cell(struct evbuffer *o, long long used, int limit)
{
    if (limit <= 0) {
        evbuffer_add_printf(o, "<td>%lld / no limit</td>", used);
        return;
    }
    const char *cls = used >= limit ? "bad" : used * 5 >= (long long)limit * 4 ? "warn" : "";
    evbuffer_add_printf(o, "<td class=\"%s\">%lld / %d (%lld%%)</td>", cls, used, limit,
                        used * 100 / limit);
}

void status_render(struct server *s, const struct policy *p, const struct status_input *in,
                   struct evbuffer *o)
{
    const struct quota_read *rd = in->rd;
    int n = in->n;
    int64_t now_ms = in->now_ms;
    const char *store_err = in->store_err;
    char when[64], buf[800];
    local_hm(now_ms, when, sizeof when, "%Y-%m-%d %H:%M:%S");
    evbuffer_add_printf(o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"refresh\" content=\"%d\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>lookupgate status: ",
        s->cfg->admin.status_refresh_s);
    esc(o, s->cfg->instance);
    put(o, "</title>\n<style>\n"
           "body{font-family:sans-serif;margin:1.5em;color:#222}"
           "table{border-collapse:collapse;margin-bottom:1.5em}"
           "th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}"
           ".ok{background:#d8f5d8}.bad{background:#f8d0d0;font-weight:bold}"
           ".warn{background:#fbeec0}caption{text-align:left;font-weight:bold;padding:.3em 0}"
           "\n</style>\n</head>\n<body>\n<h1>lookupgate: ");
    esc(o, s->cfg->instance);
    put(o, "</h1>\n<p id=\"summary\">Version " LOOKUPGATE_VERSION ", policy <b>");
    esc(o, p->version);
    evbuffer_add_printf(o, "</b> (%zu accounts), time zone ", p->naccounts);
    esc(o, clock_zone());
    evbuffer_add_printf(o, ", as of %s. This page reloads every %d s.</p>\n", when,
                        s->cfg->admin.status_refresh_s);

    /* health */
    put(o, "<table id=\"health\"><caption>Dependencies</caption>\n"
           "<tr><th>Dependency</th><th>State</th><th>Detail</th></tr>\n");
    int ready = 0, module = 0;
    for (int i = 0; i < s->nworkers; i++) {
        ready += atomic_load(&quota_store_stats(s->workers[i]->store)->ready);
        module += atomic_load(&quota_store_stats(s->workers[i]->store)->module);
    }
    if (store_err)
        snprintf(buf, sizeof buf, "%s", store_err);
    else if (s->cfg->store.memory)
        snprintf(buf, sizeof buf, "in memory (this instance only); %d of %d workers connected",
                 ready, s->nworkers);
    else
        snprintf(buf, sizeof buf, "%s; %d of %d workers connected, %d deciding with the "
                 "lookupgate module (the rest with the script)",
                 s->cfg->store.address, ready, s->nworkers, module);
    health_row(o, "Quota store (Redis)", store_err == NULL && ready == s->nworkers, buf);
    char why[300] = "";
    struct audit_stats as;
    audit_get_stats(s->audit, &as);
    enum audit_state ast = audit_health(s->audit, why, sizeof why);
    snprintf(buf, sizeof buf, "%s%s%llu records queued, %llu written",
             ast == AUDIT_OK ? "" : why, ast == AUDIT_OK ? "" : "; ",
             (unsigned long long)as.queued, (unsigned long long)as.records);
    health_row(o, "Audit log", ast == AUDIT_OK, buf);
    long long pt = 0, pi = 0, pw = 0;
    for (int i = 0; i < s->nworkers; i++) {
        pt += atomic_load(&s->workers[i]->met.pool_total);
        pi += atomic_load(&s->workers[i]->met.pool_idle);
        pw += atomic_load(&s->workers[i]->met.pool_waiting);
    }
    unsigned long long bad_gw = 0;
    int k502 = met_kind_index("bad-gateway"), k504 = met_kind_index("gateway-timeout");
    for (int i = 0; i < s->nworkers; i++)
        bad_gw += stat_get(&s->workers[i]->met.refusals[k502]) +
                  stat_get(&s->workers[i]->met.refusals[k504]);
    snprintf(buf, sizeof buf, "%s%s%s: %lld busy, %lld idle connections, %lld waiting; %llu "
             "502/504 since start", in->upstream_ok ? "" : in->upstream_err,
             in->upstream_ok ? "" : "; ", s->cfg->upstream.url, pt - pi, pi, pw, bad_gw);
    health_row(o, "Upstream (national database)", in->upstream_ok, buf);
    put(o, "</table>\n");

    /* traffic */
    struct met_minute mm[MINUTES_SHOWN];
    int nm = metrics_minutes(s, mm, MINUTES_SHOWN);
    put(o, "<table id=\"traffic\"><caption>Traffic, last minutes</caption>\n"
           "<tr><th>Minute</th><th>Requests</th><th>Allowed</th><th>Quota refusals</th>"
           "<th>Grant refusals</th><th>Credential refusals</th><th>Other refusals</th></tr>\n");
    for (int i = nm - 1; i >= 0; i--) {
        char hm[16];
        local_hm(mm[i].start_ms, hm, sizeof hm, "%H:%M");
        evbuffer_add_printf(o, "<tr><td>%s%s</td><td>%llu</td><td>%llu</td><td%s>%llu</td>"
                               "<td>%llu</td><td>%llu</td><td>%llu</td></tr>\n",
                            hm, i == nm - 1 ? " (now)" : "", mm[i].requests, mm[i].allowed,
                            mm[i].quota ? " class=\"warn\"" : "", mm[i].quota, mm[i].grant,
                            mm[i].auth, mm[i].other);
    }
    put(o, "</table>\n");

    /* accounts near or over their limits */
    put(o, "<table id=\"limits\"><caption>Accounts closest to their limits</caption>\n"
           "<tr><th>Account</th><th>Unit</th><th>This minute</th><th>Today</th></tr>\n");
    if (store_err) {
        put(o, "<tr><td colspan=\"4\">Usage cannot be read: ");
        esc(o, store_err);
        put(o, "</td></tr>\n");
    } else {
        struct usage_row *rows = xcalloc(p->naccounts + 1, sizeof *rows);
        size_t nr = 0;
        for (size_t i = 0; i < p->naccounts && (int)(i * READS_PER_ACCOUNT + 2) < n; i++) {
            const struct quota_read *r = &rd[i * READS_PER_ACCOUNT];
            struct pol_limits l;
            policy_account_limits(p, &p->accounts[i], &l);
            struct usage_row *u = &rows[nr];
            u->a = &p->accounts[i];
            u->minute = r[1].num;
            u->day = r[2].num;
            u->lim_minute = l.acct_minute;
            u->lim_day = l.acct_day;
            double rm = l.acct_minute > 0 ? (double)u->minute / l.acct_minute : 0;
            double rdy = l.acct_day > 0 ? (double)u->day / l.acct_day : 0;
            u->ratio = rm > rdy ? rm : rdy;
            if (u->minute > 0 || u->day > 0)
                nr++;
        }
        qsort(rows, nr, sizeof *rows, cmp_ratio);
        if (nr == 0)
            put(o, "<tr><td colspan=\"4\">No account has made a lookup today.</td></tr>\n");
        for (size_t i = 0; i < nr && i < TOP_ACCOUNTS; i++) {
            put(o, "<tr><td>");
            esc(o, rows[i].a->id);
            put(o, "</td><td>");
            esc(o, rows[i].a->unit ? rows[i].a->unit->name : "");
            put(o, "</td>");
            usage_cell(o, rows[i].minute, rows[i].lim_minute);
            usage_cell(o, rows[i].day, rows[i].lim_day);
            put(o, "</tr>\n");
        }
        free(rows);
    }
    put(o, "</table>\n");

    /* suspended */
    put(o, "<table id=\"suspended\"><caption>Suspended accounts</caption>\n"
           "<tr><th>Account</th><th>Unit</th><th>Reason</th></tr>\n");
    int nsusp = 0;
    for (size_t i = 0; !store_err && i < p->naccounts && (int)(i * READS_PER_ACCOUNT) < n; i++) {
        const struct quota_read *r = &rd[i * READS_PER_ACCOUNT];
        if (!r[0].found)
            continue;
        nsusp++;
        put(o, "<tr><td>");
        esc(o, p->accounts[i].id);
        put(o, "</td><td>");
        esc(o, p->accounts[i].unit ? p->accounts[i].unit->name : "");
        put(o, "</td><td>");
        esc(o, r[0].str);
        put(o, "</td></tr>\n");
    }
    if (nsusp == 0)
        put(o, store_err ? "<tr><td colspan=\"3\">Unknown: the quota store cannot be read.</td></tr>\n"
                         : "<tr><td colspan=\"3\">No account is suspended.</td></tr>\n");
    put(o, "</table>\n");

    /* alerts */
    struct met_alert al[MET_ALERTS];
    int na = metrics_recent_alerts(&s->metrics, al, 15);
    put(o, "<table id=\"alerts\"><caption>Recent alerts</caption>\n"
           "<tr><th>Time</th><th>Signal</th><th>Subject</th><th>Detail</th></tr>\n");
    if (na == 0)
        put(o, "<tr><td colspan=\"4\">No alerts since start.</td></tr>\n");
    for (int i = 0; i < na; i++) {
        char t[32];
        local_hm(al[i].time_ms, t, sizeof t, "%m-%d %H:%M:%S");
        evbuffer_add_printf(o, "<tr><td>%s</td><td>%s</td><td>", t,
                            met_signal_text[al[i].signal]);
        esc(o, al[i].subject);
        put(o, "</td><td>");
        esc(o, al[i].detail);
        put(o, "</td></tr>\n");
    }
    put(o, "</table>\n</body>\n</html>\n");
}
