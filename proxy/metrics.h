/* Metrics: what each worker counts on the request path (single-writer counters, no locks), the
 * process-wide ones, and their rendering in the Prometheus text format for /metrics. Labels
 * are bounded sets — operation names from the policy, decisions, problem types, quota levels —
 * and never an account or a citizen. */
#ifndef LG_METRICS_H
#define LG_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/hist.h"
#include "policy/decide.h"
#include "policy/quota.h"

#define MET_OPS 64 /* operation slots (slot 0: no operation); names beyond share the last */
#define MET_MINUTES 16

struct server;
struct policy;
struct evbuffer;

/* Problem types lookupgate answers with (refusals and its own errors), for the kind label. */
extern const char *const met_kinds[];
int met_kind_index(const char *type);

/* One worker's counters: written by that worker only. */
struct met_worker {
    atomic_ullong decisions[MET_OPS][DECISION__COUNT];
    atomic_ullong refusals[48];               /* by met_kinds index */
    atomic_ullong responses[6];               /* by status class; [0]: none sent */
    atomic_ullong near_limit[QLEVEL__COUNT][2]; /* [level][minute, day] */
    struct hist h_total;                      /* first byte → response released */
    struct hist h_upstream;                   /* request sent → response complete */
    struct hist h_store;                      /* quota decision round trip */
    struct hist h_audit;                      /* record submitted → durable */
    atomic_int pool_total, pool_idle, pool_waiting; /* sampled every second */
    atomic_int conns;
};

/* Traffic of one minute, for the status page. */
struct met_minute {
    int64_t start_ms;
    unsigned long long requests, allowed, quota, grant, auth, other;
};

/* Alert signals (misuse). */
enum met_signal {
    SIG_QUOTA_REFUSALS,   /* repeated quota refusals of one account */
    SIG_OUTSIDE_HOURS,    /* lookups outside permitted hours */
    SIG_DISTINCT_SUBJECTS,/* many distinct citizens per account per hour */
    SIG_AUTH_FAILURES,    /* a burst of 401s from one address */
    SIG__COUNT
};
extern const char *const met_signal_text[];

/* A raised alert, for the status page. */
struct met_alert {
    int64_t time_ms;
    int signal;              /* enum met_signal */
    char subject[80];        /* account or client address */
    char detail[160];
};
#define MET_ALERTS 32

/* Process-wide. */
struct metrics {
    pthread_mutex_t mu;               /* ops registry and the minute ring */
    char *ops[MET_OPS];               /* slot → operation name */
    int nops;
    atomic_ullong reloads_ok, reloads_refused;
    atomic_ullong admin_requests;
    atomic_ullong alerts[SIG__COUNT];
    atomic_ullong suspensions_auto;
    struct met_minute minutes[MET_MINUTES]; /* ring; [head] is the current minute */
    int head, nminutes;
    unsigned long long base[6];       /* totals when the current minute started */
    struct met_alert recent[MET_ALERTS]; /* ring of the latest alerts (mu) */
    int nrecent, recent_head;
};

void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);
/* Gives every operation of p its slot (before p is used by a worker). */
void metrics_register_ops(struct metrics *m, struct policy *p);
/* Main thread, every few seconds: closes minutes for the status page. */
void metrics_sample(struct server *s, int64_t now_ms);
/* The last n minutes (oldest first) into out; returns how many. */
int metrics_minutes(struct server *s, struct met_minute *out, int n);
/* Counts an alert and keeps it for the status page (any thread). */
void metrics_alert(struct metrics *m, enum met_signal sig, const char *subject,
                   const char *detail, int64_t now_ms);
/* The latest alerts, newest first; returns how many. */
int metrics_recent_alerts(struct metrics *m, struct met_alert *out, int n);
/* The whole exposition, Prometheus text format 0.0.4. */
void metrics_render(struct server *s, struct evbuffer *out);

#endif
