/* Quota plans, and how their results are shown to clients (RateLimit headers, Retry-After). */
#include "policy/quota.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

const char *const quota_outcome_text[] = {"admitted", "exceeded", "suspended", "store-error"};
const char *const quota_level_text[] = {"account", "operation", "unit", "global"};

/* A string and its length. The plan is built for every request: its pieces are measured once
 * and copied by length, never measured again. */
struct piece {
    const char *p;
    size_t n;
};

#define LIT(s) ((struct piece){"" s, sizeof(s) - 1})
#define NONE ((struct piece){NULL, 0})

static struct piece piece(const char *s)
{
    return (struct piece){s, strlen(s)};
}

static void put(struct sbuf *s, struct piece p)
{
    if (p.n)
        sb_mem(s, p.p, p.n);
}

/* a b [c] into out (cut to fit); returns the length. */
static uint16_t cat(char *out, size_t cap, struct piece a, struct piece b, struct piece c)
{
    struct sbuf s = sb_make(out, cap);
    put(&s, a);
    put(&s, b);
    put(&s, c);
    return (uint16_t)s.len;
}

/* "<prefix>:{<tag><id>}:" into out: the start of every key of one scope. */
static struct piece scope(char *out, size_t cap, struct piece prefix, struct piece tag,
                          struct piece id)
{
    struct sbuf s = sb_make(out, cap);
    put(&s, prefix);
    sb_mem(&s, ":{", 2);
    put(&s, tag);
    put(&s, id);
    sb_mem(&s, "}:", 2);
    return (struct piece){out, s.len};
}

static struct piece prefix_of(const char *prefix)
{
    size_t n = strnlen(prefix, QUOTA_PREFIX_MAX);
    return (struct piece){prefix, n};
}

/* A counter with key sc suffix [":" op], counted in field, named name [suffix2]. */
static void add(struct quota_plan *pl, enum quota_kind kind, enum quota_level level, int limit,
                struct piece sc, struct piece suffix, struct piece op, struct piece field,
                struct piece fop, struct piece name, struct piece name2)
{
    if (limit <= 0 || pl->n >= QUOTA_MAX_CHECKS)
        return;
    struct quota_check *c = &pl->checks[pl->n++];
    c->kind = kind;
    c->level = level;
    c->limit = limit;
    struct sbuf k = sb_make(c->key, sizeof c->key);
    put(&k, sc);
    put(&k, suffix);
    if (op.p) {
        sb_mem(&k, ":", 1);
        put(&k, op);
    }
    c->key_len = (uint16_t)k.len;
    c->field_len = cat(c->field, sizeof c->field, field, fop, NONE);
    c->name_len = cat(c->name, sizeof c->name, name, name2, NONE);
}

void quota_susp_key(char *out, size_t len, const char *prefix, const char *account)
{
    char as[128];
    cat(out, len, scope(as, sizeof as, prefix_of(prefix), LIT("a:"), piece(account)),
        LIT("suspended"), NONE);
}

void quota_plan_build(struct quota_plan *pl, const char *prefix, const struct pol_decision *d,
                      int64_t now_ms, int64_t proxy_now_ms, const char *member)
{
    const struct pol_limits *l = &d->limits;
    struct piece pre = prefix_of(prefix), acct = piece(d->account->id);
    struct piece op = d->op ? piece(d->op->name) : NONE;
    char abuf[128], ubuf[128], gbuf[64];
    struct piece as = scope(abuf, sizeof abuf, pre, LIT("a:"), acct);
    pl->n = 0;
    cat(pl->account, sizeof pl->account, acct, NONE, NONE);
    pl->susp_len = cat(pl->susp_key, sizeof pl->susp_key, as, LIT("suspended"), NONE);
    pl->last_len = cat(pl->last_key, sizeof pl->last_key, as, LIT("last"), NONE);
    add(pl, QUOTA_MINUTE, QLEVEL_ACCOUNT, l->acct_minute, as, LIT("m"), NONE, LIT(""), NONE,
        LIT("account-per-minute"), NONE);
    add(pl, QUOTA_DAY, QLEVEL_ACCOUNT, l->acct_day, as, LIT("d"), NONE, LIT("n"), NONE,
        LIT("account-per-day"), NONE);
    if (op.p) {
        add(pl, QUOTA_MINUTE, QLEVEL_OPERATION, l->op_minute, as, LIT("m"), op, LIT(""), NONE, op,
            LIT("-per-minute"));
        add(pl, QUOTA_DAY, QLEVEL_OPERATION, l->op_day, as, LIT("d"), NONE, LIT("o:"), op, op,
            LIT("-per-day"));
    }
    if (d->account->unit) {
        struct piece us = scope(ubuf, sizeof ubuf, pre, LIT("u:"), piece(d->account->unit->name));
        add(pl, QUOTA_MINUTE, QLEVEL_UNIT, l->unit_minute, us, LIT("m"), NONE, LIT(""), NONE,
            LIT("unit-per-minute"), NONE);
        add(pl, QUOTA_DAY, QLEVEL_UNIT, l->unit_day, us, LIT("d"), NONE, LIT("n"), NONE,
            LIT("unit-per-day"), NONE);
    }
    struct piece gs = scope(gbuf, sizeof gbuf, pre, LIT("g"), NONE);
    add(pl, QUOTA_MINUTE, QLEVEL_GLOBAL, l->global_minute, gs, LIT("m"), NONE, LIT(""), NONE,
        LIT("global-per-minute"), NONE);
    add(pl, QUOTA_DAY, QLEVEL_GLOBAL, l->global_day, gs, LIT("d"), NONE, LIT("n"), NONE,
        LIT("global-per-day"), NONE);
    pl->now_ms = now_ms;
    clock_local_days(proxy_now_ms, &pl->days);
    pl->member_len = cat(pl->member, sizeof pl->member, piece(member), NONE, NONE);
}

void quota_plan_copy(struct quota_plan *dst, const struct quota_plan *src)
{
    memcpy(dst, src, offsetof(struct quota_plan, checks));
    memcpy(dst->checks, src->checks, (size_t)src->n * sizeof src->checks[0]);
    dst->n = src->n;
    dst->now_ms = src->now_ms;
    dst->days = src->days;
    memcpy(dst->member, src->member, (size_t)src->member_len + 1);
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
        sb_mem(&b, c->name, c->name_len);
        sb_str(&b, "\";q=");
        sb_int(&b, c->limit);
        sb_str(&b, c->kind == QUOTA_MINUTE ? ";w=60" : ";w=86400");
    }
    sb_str(&b, "\r\nRateLimit: ");
    for (int i = 0; i < pl->n; i++) {
        int rem = r->c[i].limit - r->c[i].used;
        sb_str(&b, i ? ", \"" : "\"");
        sb_mem(&b, pl->checks[i].name, pl->checks[i].name_len);
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
