/* The in-memory quota backend: the same rolling-window and local-day semantics as the Redis
 * script, for a single instance (store.backend "memory") and as the per-instance budget used
 * when Redis fails and on_store_failure is "local". One mutex guards the table; a decision
 * holds it for a few hash lookups. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "common/util.h"
#include "policy/quota.h"

enum { ENT_MINUTE, ENT_DAY, ENT_SUSP };

struct mem_entry {
    struct mem_entry *next;
    char *key;
    int kind;
    int64_t *ts;     /* minute: admitted times, ascending */
    int n, cap;
    int32_t day;     /* day: the day count belongs to */
    int count;
    char *reason;    /* suspension reason */
};

struct quota_mem {
    pthread_mutex_t mu;
    struct mem_entry **buckets;
    size_t nbuckets;
    size_t nentries;
};

struct quota_mem *quota_mem_new(void)
{
    struct quota_mem *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->nbuckets = 1024;
    m->buckets = xcalloc(m->nbuckets, sizeof *m->buckets);
    return m;
}

void quota_mem_free(struct quota_mem *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_entry *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e->key);
            free(e->ts);
            free(e->reason);
            free(e);
        }
    }
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void grow(struct quota_mem *m)
{
    size_t nb = m->nbuckets * 2;
    struct mem_entry **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct mem_entry *e = m->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            size_t h = hash(e->key) & (nb - 1);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

/* The entry for key, created when create is set. */
static struct mem_entry *get(struct quota_mem *m, const char *key, int kind, int create)
{
    size_t h = hash(key) & (m->nbuckets - 1);
    for (struct mem_entry *e = m->buckets[h]; e; e = e->next)
        if (e->kind == kind && strcmp(e->key, key) == 0)
            return e;
    if (!create)
        return NULL;
    if (m->nentries >= m->nbuckets) {
        grow(m);
        h = hash(key) & (m->nbuckets - 1);
    }
    struct mem_entry *e = xcalloc(1, sizeof *e);
    e->key = xstrdup(key);
    e->kind = kind;
    e->next = m->buckets[h];
    m->buckets[h] = e;
    m->nentries++;
    return e;
}

static void prune(struct mem_entry *e, int64_t now)
{
    int k = 0;
    while (k < e->n && e->ts[k] <= now - QUOTA_WINDOW_MS)
        k++;
    if (k > 0) {
        memmove(e->ts, e->ts + k, (size_t)(e->n - k) * sizeof *e->ts);
        e->n -= k;
    }
}

static void insert(struct mem_entry *e, int64_t now)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->ts = xrealloc(e->ts, (size_t)e->cap * sizeof *e->ts);
    }
    int i = e->n;
    while (i > 0 && e->ts[i - 1] > now) { /* keep the order if the clock stepped back */
        e->ts[i] = e->ts[i - 1];
        i--;
    }
    e->ts[i] = now;
    e->n++;
}

/* Which of the plan's local days holds now; -1 if none (clocks too far apart). */
static int day_slot(const struct quota_plan *pl, int64_t now)
{
    for (int i = 0; i < 3; i++)
        if (now >= pl->days.start_ms[i] && now < pl->days.start_ms[i + 1])
            return i;
    return -1;
}

void quota_mem_admit(struct quota_mem *m, const struct quota_plan *pl, int divisor,
                     struct quota_result *res)
{
    char key[300];
    struct mem_entry *ents[QUOTA_MAX_CHECKS];
    int64_t now = pl->now_ms ? pl->now_ms : clock_now_ms();
    int slot = day_slot(pl, now);
    memset(res, 0, sizeof *res);
    res->now_ms = now;
    res->n = pl->n;
    if (slot < 0) {
        res->outcome = QUOTA_STORE_ERROR;
        snprintf(res->reason, sizeof res->reason, "clock outside the expected local days");
        return;
    }
    int32_t day = pl->days.id[slot];
    int64_t day_end = pl->days.start_ms[slot + 1];
    res->day = day;
    pthread_mutex_lock(&m->mu);
    struct mem_entry *s = get(m, pl->account, ENT_SUSP, 0);
    if (s) {
        res->outcome = QUOTA_SUSPENDED;
        snprintf(res->reason, sizeof res->reason, "%s", s->reason ? s->reason : "");
        pthread_mutex_unlock(&m->mu);
        return;
    }
    int over = 0;
    for (int i = 0; i < pl->n; i++) {
        const struct quota_check *c = &pl->checks[i];
        struct quota_counter *q = &res->c[i];
        q->limit = divisor > 1 ? c->limit / divisor : c->limit;
        if (c->kind == QUOTA_MINUTE) {
            struct mem_entry *e = ents[i] = get(m, c->key, ENT_MINUTE, 1);
            prune(e, now);
            q->used = e->n;
            if (e->n >= q->limit)
                q->reset_ms = q->limit > 0 ? e->ts[e->n - q->limit] + QUOTA_WINDOW_MS - now
                                           : QUOTA_WINDOW_MS;
            else
                q->reset_ms = e->n ? e->ts[0] + QUOTA_WINDOW_MS - now : QUOTA_WINDOW_MS;
        } else {
            snprintf(key, sizeof key, "%s\x1f%s", c->key, c->field);
            struct mem_entry *e = ents[i] = get(m, key, ENT_DAY, 1);
            q->used = e->day == day ? e->count : 0;
            q->reset_ms = day_end - now;
        }
        q->over = q->used >= q->limit;
        over |= q->over;
    }
    if (over) {
        res->outcome = QUOTA_EXCEEDED;
    } else {
        for (int i = 0; i < pl->n; i++) {
            struct mem_entry *e = ents[i];
            if (pl->checks[i].kind == QUOTA_MINUTE) {
                insert(e, now);
            } else {
                if (e->day != day) {
                    e->day = day;
                    e->count = 0;
                }
                e->count++;
            }
            res->c[i].used++;
        }
        res->outcome = QUOTA_ADMITTED;
    }
    pthread_mutex_unlock(&m->mu);
}

int quota_mem_suspend(struct quota_mem *m, const char *account, const char *reason, int on)
{
    pthread_mutex_lock(&m->mu);
    struct mem_entry *e = get(m, account, ENT_SUSP, on);
    int was = e != NULL && e->reason != NULL;
    if (on) {
        free(e->reason);
        e->reason = xstrdup(reason ? reason : "");
    } else if (e) {
        /* unlink */
        size_t h = hash(account) & (m->nbuckets - 1);
        for (struct mem_entry **pp = &m->buckets[h]; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        free(e->key);
        free(e->reason);
        free(e);
        m->nentries--;
    }
    pthread_mutex_unlock(&m->mu);
    return was;
}
