/* Misuse signal counting: one mutex-guarded table of (signal, key) entries. Count signals keep
 * the times of the last `count` events (a sliding window); the distinct-citizens signal keeps
 * up to `count` item hashes per fixed window. */
#include "policy/signals.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define KEY_MAX 80
#define SWEEP_AGE_MS (86400LL * 1000) /* the longest window */

struct sig_entry {
    struct sig_entry *next;
    int kind;
    char key[KEY_MAX];
    int64_t *ts;           /* count signals: event times, oldest first */
    uint64_t *items;       /* distinct: the items of the current window */
    int n, cap;
    int64_t win;           /* distinct: start of the current window */
    int64_t alerted_until; /* no second alert before this */
    int64_t last_ms;
};

struct sigtrack {
    pthread_mutex_t mu;
    struct sig_entry **b;
    size_t nb, n, max;
    int warned;
};

struct sigtrack *sigtrack_new(size_t max_keys)
{
    struct sigtrack *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->nb = 1024;
    t->b = xcalloc(t->nb, sizeof *t->b);
    t->max = max_keys;
    return t;
}

static void entry_free(struct sig_entry *e)
{
    free(e->ts);
    free(e->items);
    free(e);
}

void sigtrack_free(struct sigtrack *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (struct sig_entry *e = t->b[i], *nx; e; e = nx) {
            nx = e->next;
            entry_free(e);
        }
    free(t->b);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t hash(int kind, const char *s)
{
    size_t h = 1469598103934665603ull ^ (size_t)kind;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Drops entries idle for longer than any window. */
static void sweep(struct sigtrack *t, int64_t now)
{
    for (size_t i = 0; i < t->nb; i++)
        for (struct sig_entry **pp = &t->b[i]; *pp;) {
            struct sig_entry *e = *pp;
            if (e->last_ms < now - SWEEP_AGE_MS) {
                *pp = e->next;
                entry_free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
}

static struct sig_entry *get(struct sigtrack *t, int kind, const char *key, int64_t now)
{
    size_t h = hash(kind, key) & (t->nb - 1);
    for (struct sig_entry *e = t->b[h]; e; e = e->next)
        if (e->kind == kind && strcmp(e->key, key) == 0)
            return e;
    if (t->n >= t->max) {
        sweep(t, now);
        if (t->n >= t->max) {
            if (!t->warned++)
                log_warn("misuse signals: %zu keys tracked; new ones are not counted", t->n);
            return NULL;
        }
    }
    struct sig_entry *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    snprintf(e->key, sizeof e->key, "%s", key);
    e->next = t->b[h];
    t->b[h] = e;
    t->n++;
    return e;
}

static int count_event(struct sig_entry *e, const struct pol_signal *th, int64_t now)
{
    int64_t window = (int64_t)th->window_s * 1000;
    if (e->cap != th->count) { /* first use, or the policy changed the threshold */
        e->ts = xrealloc(e->ts, (size_t)th->count * sizeof *e->ts);
        if (e->n > th->count) {
            memmove(e->ts, e->ts + (e->n - th->count), (size_t)th->count * sizeof *e->ts);
            e->n = th->count;
        }
        e->cap = th->count;
    }
    int k = 0;
    while (k < e->n && e->ts[k] <= now - window)
        k++;
    if (k == 0 && e->n == e->cap)
        k = 1; /* keep the last `count` only */
    if (k > 0) {
        memmove(e->ts, e->ts + k, (size_t)(e->n - k) * sizeof *e->ts);
        e->n -= k;
    }
    e->ts[e->n++] = now;
    if (e->n >= th->count && now >= e->alerted_until) {
        e->alerted_until = now + window;
        return e->n;
    }
    return 0;
}

static int distinct_event(struct sig_entry *e, const struct pol_signal *th, uint64_t item,
                          int64_t now)
{
    int64_t window = (int64_t)th->window_s * 1000;
    int64_t start = now - now % window;
    if (e->win != start || e->cap != th->count) {
        e->win = start;
        e->n = 0;
        if (e->cap != th->count) {
            e->items = xrealloc(e->items, (size_t)th->count * sizeof *e->items);
            e->cap = th->count;
        }
    }
    for (int i = 0; i < e->n; i++)
        if (e->items[i] == item)
            return 0;
    if (e->n >= e->cap)
        return 0; /* already alerted in this window */
    e->items[e->n++] = item;
    if (e->n == th->count && now >= e->alerted_until) {
        e->alerted_until = start + window;
        return e->n;
    }
    return 0;
}

int sigtrack_event(struct sigtrack *t, int kind, const char *key, uint64_t item,
                   const struct pol_signal *th, int64_t now_ms)
{
    if (th->count <= 0 || th->window_s <= 0)
        return 0;
    pthread_mutex_lock(&t->mu);
    int n = 0;
    struct sig_entry *e = get(t, kind, key, now_ms);
    if (e) {
        e->last_ms = now_ms;
        n = kind == PSIG_DISTINCT_SUBJECTS ? distinct_event(e, th, item, now_ms)
                                           : count_event(e, th, now_ms);
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

int sigtrack_window(struct sigtrack *t, int kind, const char *key, int limit, int window_s,
                    int64_t now_ms, int add, int64_t *retry_ms)
{
    int64_t window = (int64_t)window_s * 1000;
    *retry_ms = 0;
    if (limit <= 0)
        return 0;
    pthread_mutex_lock(&t->mu);
    struct sig_entry *e = add ? get(t, kind, key, now_ms) : NULL;
    if (!add) { /* a query never creates an entry */
        size_t h = hash(kind, key) & (t->nb - 1);
        for (e = t->b[h]; e && !(e->kind == kind && strcmp(e->key, key) == 0); e = e->next)
            ;
    }
    int n = 0;
    if (e) {
        if (e->cap != limit) {
            e->ts = xrealloc(e->ts, (size_t)limit * sizeof *e->ts);
            if (e->n > limit) {
                memmove(e->ts, e->ts + (e->n - limit), (size_t)limit * sizeof *e->ts);
                e->n = limit;
            }
            e->cap = limit;
        }
        int k = 0;
        while (k < e->n && e->ts[k] <= now_ms - window)
            k++;
        if (add && k == 0 && e->n == e->cap)
            k = 1;
        if (k > 0) {
            memmove(e->ts, e->ts + k, (size_t)(e->n - k) * sizeof *e->ts);
            e->n -= k;
        }
        if (add) {
            e->ts[e->n++] = now_ms;
            e->last_ms = now_ms;
        }
        n = e->n;
        if (n > 0)
            *retry_ms = e->ts[0] + window - now_ms;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}
