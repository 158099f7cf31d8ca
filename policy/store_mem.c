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

enum { ENT_MINUTE, ENT_DAY, ENT_STR };

struct mem_entry {
    struct mem_entry *next;
    char *key;
    int kind;
    int64_t *ts;     /* minute: admitted times, ascending */
    int n, cap;
    int32_t day;     /* day: the day count belongs to */
    int count;
    char *str;       /* string keys: suspension reason, last use */
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
            free(e->str);
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
    struct mem_entry *s = get(m, pl->susp_key, ENT_STR, 0);
    if (s) {
        res->outcome = QUOTA_SUSPENDED;
        snprintf(res->reason, sizeof res->reason, "%s", s->str ? s->str : "");
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
        struct mem_entry *last = get(m, pl->last_key, ENT_STR, 1);
        char t[24];
        snprintf(t, sizeof t, "%lld", (long long)now);
        free(last->str);
        last->str = xstrdup(t);
        res->outcome = QUOTA_ADMITTED;
    }
    pthread_mutex_unlock(&m->mu);
}

static void unlink_entry(struct quota_mem *m, struct mem_entry *e)
{
    size_t h = hash(e->key) & (m->nbuckets - 1);
    for (struct mem_entry **pp = &m->buckets[h]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    free(e->key);
    free(e->ts);
    free(e->str);
    free(e);
    m->nentries--;
}

int quota_mem_set(struct quota_mem *m, const char *key, const char *value)
{
    pthread_mutex_lock(&m->mu);
    struct mem_entry *e = get(m, key, ENT_STR, value != NULL);
    int was = e != NULL && e->str != NULL;
    if (value) {
        free(e->str);
        e->str = xstrdup(value);
    } else if (e) {
        unlink_entry(m, e);
    }
    pthread_mutex_unlock(&m->mu);
    return was;
}

int64_t quota_mem_read(struct quota_mem *m, struct quota_read *rd, int n, int64_t now_ms,
                       const struct local_days *days)
{
    char key[300];
    int64_t now = now_ms ? now_ms : clock_now_ms();
    int slot = -1;
    for (int i = 0; i < 3; i++)
        if (now >= days->start_ms[i] && now < days->start_ms[i + 1])
            slot = i;
    if (slot < 0)
        return -1;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < n; i++) {
        struct quota_read *r = &rd[i];
        struct mem_entry *e;
        r->found = 0;
        r->str[0] = '\0';
        r->num = 0;
        switch (r->kind) {
        case QREAD_GET:
            if ((e = get(m, r->key, ENT_STR, 0)) != NULL && e->str) {
                r->found = 1;
                snprintf(r->str, sizeof r->str, "%s", e->str);
                r->num = strtoll(e->str, NULL, 10);
            }
            break;
        case QREAD_WINDOW:
            if ((e = get(m, r->key, ENT_MINUTE, 0)) != NULL)
                for (int k = 0; k < e->n; k++)
                    r->num += e->ts[k] > now - QUOTA_WINDOW_MS;
            break;
        case QREAD_DAY:
            snprintf(key, sizeof key, "%s\x1f%s", r->key, r->field);
            if ((e = get(m, key, ENT_DAY, 0)) != NULL && e->day == days->id[slot])
                r->num = e->count;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return now;
}
