/* Quota plans, and how their results are shown to clients (RateLimit headers, Retry-After). */
#include "policy/quota.h"

#include <stdio.h>
#include <string.h>

const char *const quota_outcome_text[] = {"admitted", "exceeded", "suspended", "store-error"};
const char *const quota_level_text[] = {"account", "operation", "unit", "global"};

static void add(struct quota_plan *pl, enum quota_kind kind, enum quota_level level, int limit,
                const char *key, const char *field, const char *name)
{
    if (limit <= 0 || pl->n >= QUOTA_MAX_CHECKS)
        return;
    struct quota_check *c = &pl->checks[pl->n++];
    c->kind = kind;
    c->level = level;
    c->limit = limit;
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->field, sizeof c->field, "%s", field);
    snprintf(c->name, sizeof c->name, "%s", name);
}

void quota_susp_key(char *out, size_t len, const char *prefix, const char *account)
{
    snprintf(out, len, "%s:{a:%s}:suspended", prefix, account);
}

void quota_plan_build(struct quota_plan *pl, const char *prefix, const struct pol_decision *d,
                      int64_t now_ms, int64_t proxy_now_ms, const char *member)
{
    const struct pol_limits *l = &d->limits;
    const char *acct = d->account->id, *op = d->op ? d->op->name : NULL;
    char k[160], f[96], name[96];
    memset(pl, 0, sizeof *pl);
    snprintf(pl->account, sizeof pl->account, "%s", acct);
    quota_susp_key(pl->susp_key, sizeof pl->susp_key, prefix, acct);
    snprintf(pl->last_key, sizeof pl->last_key, "%s:{a:%s}:last", prefix, acct);
    snprintf(k, sizeof k, "%s:{a:%s}:m", prefix, acct);
    add(pl, QUOTA_MINUTE, QLEVEL_ACCOUNT, l->acct_minute, k, "", "account-per-minute");
    snprintf(k, sizeof k, "%s:{a:%s}:d", prefix, acct);
    add(pl, QUOTA_DAY, QLEVEL_ACCOUNT, l->acct_day, k, "n", "account-per-day");
    if (op) {
        snprintf(k, sizeof k, "%s:{a:%s}:m:%s", prefix, acct, op);
        snprintf(name, sizeof name, "%s-per-minute", op);
        add(pl, QUOTA_MINUTE, QLEVEL_OPERATION, l->op_minute, k, "", name);
        snprintf(k, sizeof k, "%s:{a:%s}:d", prefix, acct);
        snprintf(f, sizeof f, "o:%s", op);
        snprintf(name, sizeof name, "%s-per-day", op);
        add(pl, QUOTA_DAY, QLEVEL_OPERATION, l->op_day, k, f, name);
    }
    if (d->account->unit) {
        const char *u = d->account->unit->name;
        snprintf(k, sizeof k, "%s:{u:%s}:m", prefix, u);
        add(pl, QUOTA_MINUTE, QLEVEL_UNIT, l->unit_minute, k, "", "unit-per-minute");
        snprintf(k, sizeof k, "%s:{u:%s}:d", prefix, u);
        add(pl, QUOTA_DAY, QLEVEL_UNIT, l->unit_day, k, "n", "unit-per-day");
    }
    snprintf(k, sizeof k, "%s:{g}:m", prefix);
    add(pl, QUOTA_MINUTE, QLEVEL_GLOBAL, l->global_minute, k, "", "global-per-minute");
    snprintf(k, sizeof k, "%s:{g}:d", prefix);
    add(pl, QUOTA_DAY, QLEVEL_GLOBAL, l->global_day, k, "n", "global-per-day");
    pl->now_ms = now_ms;
    clock_local_days(proxy_now_ms, &pl->days);
    snprintf(pl->member, sizeof pl->member, "%s", member);
}

static int ceil_s(int64_t ms)
{
    return ms <= 0 ? 0 : (int)((ms + 999) / 1000);
}

int quota_retry_after(const struct quota_result *r)
{
    int64_t worst = 0;
    for (int i = 0; i < r->n; i++)
        if (r->c[i].over && r->c[i].reset_ms > worst)
            worst = r->c[i].reset_ms;
    int s = ceil_s(worst);
    return s < 1 ? 1 : s;
}

void quota_headers(char *buf, size_t len, const struct quota_plan *pl,
                   const struct quota_result *r)
{
    size_t o = 0;
    buf[0] = '\0';
    if (pl->n == 0 || r->n != pl->n)
        return;
    o += (size_t)snprintf(buf + o, len - o, "RateLimit-Policy: ");
    for (int i = 0; i < pl->n && o < len; i++) {
        const struct quota_check *c = &pl->checks[i];
        int w = c->kind == QUOTA_MINUTE ? 60 : 86400;
        o += (size_t)snprintf(buf + o, len - o, "%s\"%s\";q=%d;w=%d", i ? ", " : "", c->name,
                              c->limit, w);
    }
    if (o < len)
        o += (size_t)snprintf(buf + o, len - o, "\r\nRateLimit: ");
    for (int i = 0; i < pl->n && o < len; i++) {
        int rem = r->c[i].limit - r->c[i].used;
        o += (size_t)snprintf(buf + o, len - o, "%s\"%s\";r=%d;t=%d", i ? ", " : "",
                              pl->checks[i].name, rem < 0 ? 0 : rem, ceil_s(r->c[i].reset_ms));
    }
    if (o < len)
        snprintf(buf + o, len - o, "\r\n");
    if (o >= len)
        buf[0] = '\0'; /* never a truncated header */
}

void quota_violated(char *buf, size_t len, const struct quota_plan *pl,
                    const struct quota_result *r)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < r->n && i < pl->n && o < len; i++)
        if (r->c[i].over)
            o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", pl->checks[i].name);
}
