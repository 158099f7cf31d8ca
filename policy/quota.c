/* Quota plans, and how their results are shown to clients (RateLimit headers, Retry-After). */
#include "policy/quota.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

const char *const quota_outcome_text[] = {"admitted", "exceeded", "suspended", "store-error"};
const char *const quota_level_text[] = {"account", "operation", "unit", "global"};

static void copy(char *dst, size_t cap, const char *src)
{
    struct sbuf b = sb_make(dst, cap);
    sb_str(&b, src);
}

static void add(struct quota_plan *pl, enum quota_kind kind, enum quota_level level, int limit,
                const char *key, const char *field, const char *name)
{
    if (limit <= 0 || pl->n >= QUOTA_MAX_CHECKS)
        return;
    struct quota_check *c = &pl->checks[pl->n++];
    c->kind = kind;
    c->level = level;
    c->limit = limit;
    copy(c->key, sizeof c->key, key);
    copy(c->field, sizeof c->field, field);
    copy(c->name, sizeof c->name, name);
}

/* prefix ":{" scope "}" suffix [":" op] into k. */
static const char *key(char *k, size_t cap, const char *prefix, const char *scope,
                       const char *suffix, const char *op)
{
    struct sbuf b = sb_make(k, cap);
    sb_str(&b, prefix);
    sb_mem(&b, ":{", 2);
    sb_str(&b, scope);
    sb_mem(&b, "}:", 2);
    sb_str(&b, suffix);
    if (op) {
        sb_mem(&b, ":", 1);
        sb_str(&b, op);
    }
    return k;
}

static const char *join2(char *out, size_t cap, const char *a, const char *b2)
{
    struct sbuf b = sb_make(out, cap);
    sb_str(&b, a);
    sb_str(&b, b2);
    return out;
}

void quota_susp_key(char *out, size_t len, const char *prefix, const char *account)
{
    char scope[96];
    key(out, len, prefix, join2(scope, sizeof scope, "a:", account), "suspended", NULL);
}

void quota_plan_build(struct quota_plan *pl, const char *prefix, const struct pol_decision *d,
                      int64_t now_ms, int64_t proxy_now_ms, const char *member)
{
    const struct pol_limits *l = &d->limits;
    const char *acct = d->account->id, *op = d->op ? d->op->name : NULL;
    char k[160], f[96], name[96], as[96];
    pl->n = 0;
    copy(pl->account, sizeof pl->account, acct);
    join2(as, sizeof as, "a:", acct);
    key(pl->susp_key, sizeof pl->susp_key, prefix, as, "suspended", NULL);
    key(pl->last_key, sizeof pl->last_key, prefix, as, "last", NULL);
    add(pl, QUOTA_MINUTE, QLEVEL_ACCOUNT, l->acct_minute, key(k, sizeof k, prefix, as, "m", NULL),
        "", "account-per-minute");
    add(pl, QUOTA_DAY, QLEVEL_ACCOUNT, l->acct_day, key(k, sizeof k, prefix, as, "d", NULL), "n",
        "account-per-day");
    if (op) {
        add(pl, QUOTA_MINUTE, QLEVEL_OPERATION, l->op_minute, key(k, sizeof k, prefix, as, "m", op),
            "", join2(name, sizeof name, op, "-per-minute"));
        add(pl, QUOTA_DAY, QLEVEL_OPERATION, l->op_day, key(k, sizeof k, prefix, as, "d", NULL),
            join2(f, sizeof f, "o:", op), join2(name, sizeof name, op, "-per-day"));
    }
    if (d->account->unit) {
        char us[96];
        join2(us, sizeof us, "u:", d->account->unit->name);
        add(pl, QUOTA_MINUTE, QLEVEL_UNIT, l->unit_minute, key(k, sizeof k, prefix, us, "m", NULL),
            "", "unit-per-minute");
        add(pl, QUOTA_DAY, QLEVEL_UNIT, l->unit_day, key(k, sizeof k, prefix, us, "d", NULL), "n",
            "unit-per-day");
    }
    add(pl, QUOTA_MINUTE, QLEVEL_GLOBAL, l->global_minute, key(k, sizeof k, prefix, "g", "m", NULL),
        "", "global-per-minute");
    add(pl, QUOTA_DAY, QLEVEL_GLOBAL, l->global_day, key(k, sizeof k, prefix, "g", "d", NULL), "n",
        "global-per-day");
    pl->now_ms = now_ms;
    clock_local_days(proxy_now_ms, &pl->days);
    copy(pl->member, sizeof pl->member, member);
}

void quota_plan_copy(struct quota_plan *dst, const struct quota_plan *src)
{
    memcpy(dst, src, offsetof(struct quota_plan, checks));
    memcpy(dst->checks, src->checks, (size_t)src->n * sizeof src->checks[0]);
    dst->n = src->n;
    dst->now_ms = src->now_ms;
    dst->days = src->days;
    memcpy(dst->member, src->member, sizeof dst->member);
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
    struct sbuf b = sb_make(buf, len);
    if (pl->n == 0 || r->n != pl->n)
        return;
    sb_str(&b, "RateLimit-Policy: ");
    for (int i = 0; i < pl->n; i++) {
        const struct quota_check *c = &pl->checks[i];
        sb_str(&b, i ? ", \"" : "\"");
        sb_str(&b, c->name);
        sb_str(&b, "\";q=");
        sb_int(&b, c->limit);
        sb_str(&b, c->kind == QUOTA_MINUTE ? ";w=60" : ";w=86400");
    }
    sb_str(&b, "\r\nRateLimit: ");
    for (int i = 0; i < pl->n; i++) {
        int rem = r->c[i].limit - r->c[i].used;
        sb_str(&b, i ? ", \"" : "\"");
        sb_str(&b, pl->checks[i].name);
        sb_str(&b, "\";r=");
        sb_int(&b, rem < 0 ? 0 : rem);
        sb_str(&b, ";t=");
        sb_int(&b, ceil_s(r->c[i].reset_ms));
    }
    sb_str(&b, "\r\n");
    if (b.trunc)
        buf[0] = '\0'; /* never a truncated header */
}

void quota_violated(char *buf, size_t len, const struct quota_plan *pl,
                    const struct quota_result *r)
{
    struct sbuf b = sb_make(buf, len);
    for (int i = 0; i < r->n && i < pl->n; i++)
        if (r->c[i].over) {
            if (b.len)
                sb_str(&b, ", ");
            sb_str(&b, pl->checks[i].name);
        }
}
