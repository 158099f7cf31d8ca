/* The audit log writer: one thread that owns the log files, fed by a bounded queue.
 *
 * A record is a JSON object whose text (everything after the "seq" and "prev" members the
 * writer adds) is built by the caller and handed over with audit_submit. The writer assigns
 * the gapless seq, appends the line to the current segment, adds it as a leaf of the RFC 6962
 * tree, and makes the batch durable (write + fdatasync) before telling the submitters, through
 * their sink, whether their record is durable. A signed checkpoint of the tree is written every
 * checkpoint_ms or checkpoint_records and when a segment closes; a heartbeat record every
 * heartbeat_ms.
 *
 * Fail closed: after a write or fsync error the segment is sealed at its last durable byte and
 * never written again; the writer retries on a new segment, and until one works (or while free
 * space is under min_free_bytes, or the queue is full) lookups are refused by audit_submit.
 * Records other than lookups are kept in memory and written once the log works again. */
#ifndef LG_AUDIT_AUDIT_H
#define LG_AUDIT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "common/hist.h"

struct evp_pkey_st;
struct event_base;
struct audit;
struct audit_sink;

struct audit_opts {
    const char *dir;             /* the audit directory (created if missing) */
    const char *instance;        /* this instance's name: segment names and the origin */
    struct evp_pkey_st *key;     /* Ed25519 signing key (the writer takes ownership) */
    int group_commit_us;         /* wait this long after a first record for others */
    long long segment_bytes;     /* rotate when a segment reaches this size */
    long long zero_ahead_bytes;  /* zero-filled space kept ahead of the records (0: append) */
    int checkpoint_records;      /* checkpoint after this many records ... */
    int checkpoint_ms;           /* ... or this long after the first unsigned one */
    int heartbeat_ms;            /* a heartbeat record this often */
    int queue_records;           /* records held before lookups are refused */
    long long min_free_bytes;    /* below this free space on the log's file system: refuse */
};

enum audit_state {
    AUDIT_OK,        /* records become durable */
    AUDIT_LOW_SPACE, /* free space under the floor: lookups refused, other records written */
    AUDIT_FAILED,    /* the last write or fsync failed: lookups refused until one works */
};

/* Submission kinds. */
enum audit_kind {
    AUDIT_LOOKUP, /* an intent record: refused unless the log is healthy and has room */
    AUDIT_OTHER,  /* any other record: kept (up to twice the queue) even while the log fails */
};

/* What audit_submit did with a record. */
enum audit_submit_rc {
    AUDIT_QUEUED = 0,  /* the callback will say whether it became durable */
    AUDIT_HELD = 1,    /* kept for later, but the log is failing: do not wait for it */
    AUDIT_REFUSED = -1 /* not taken (lookup while unhealthy, or memory bound reached) */
};

typedef void (*audit_done_fn)(void *arg, int durable);

/* A record in flight. Callers fill text via audit_rec_new. */
struct audit_rec {
    struct audit_rec *next;
    struct audit_sink *sink;   /* where to report; NULL: nobody waits */
    audit_done_fn cb;          /* called on the sink's thread; NULL once cancelled */
    void *arg;
    int durable;               /* set by the writer before reporting */
    int kind;
    size_t len;
    size_t cap;                /* room in text (len + 1 or more) */
    char text[];               /* "\"time\":...}" : the record after seq and prev */
};

/* Recovers the directory (a torn last line is moved aside; an unclean end gets a recovery
 * record), opens a new segment and starts the writer thread. NULL with a message. */
struct audit *audit_open(const struct audit_opts *o, char *err, size_t errlen);
/* Queues text as the last record (e.g. the stop record), writes everything, a final checkpoint,
 * closes the segment read-only and stops the thread. */
void audit_close(struct audit *a, const char *text, size_t len);

/* A record to submit: text (len bytes, starting with "\"time\":" and ending with '}'). */
struct audit_rec *audit_rec_new(const char *text, size_t len);
/* The same, on s's thread, reusing a record s got back (one whose callback has run) when it
 * has the room: a worker's records cost no allocation once it runs steadily. */
struct audit_rec *audit_rec_take(struct audit_sink *s, const char *text, size_t len);
/* Records s keeps for reuse (for tests). */
int audit_sink_idle(const struct audit_sink *s);

/* A worker's sink: the writer reports to it through an eventfd on base. */
struct audit_sink *audit_sink_new(struct audit *a, struct event_base *base);
/* Stops listening on the base (before the base is freed); reports still arrive and are freed
 * with the sink. */
void audit_sink_detach(struct audit_sink *s);
/* After audit_close: the writer no longer reports. */
void audit_sink_free(struct audit_sink *s);

/* Hands r to the writer (the writer owns it from now on). With cb, cb(arg, durable) is called
 * on the sink's thread when rc is AUDIT_QUEUED. */
enum audit_submit_rc audit_submit(struct audit_sink *s, struct audit_rec *r, int kind,
                                  audit_done_fn cb, void *arg);
/* From any thread, no callback: administrative records. */
enum audit_submit_rc audit_log(struct audit *a, const char *text, size_t len);
/* The submitter no longer wants the callback (its thread only). The record is still written. */
void audit_cancel(struct audit_rec *r);

/* The current state; why gets a reason when it is not AUDIT_OK. */
enum audit_state audit_health(struct audit *a, char *why, size_t whylen);

struct audit_stats {
    uint64_t records;        /* written durably */
    uint64_t batches;        /* fdatasync calls */
    uint64_t fsync_us;       /* total time in write + fdatasync */
    uint64_t queued;         /* records held now */
    uint64_t lost;           /* records refused because memory was full while failing */
    uint64_t failures;       /* write or fsync errors */
    uint64_t seq;            /* next seq */
    struct hist_snap fsync;  /* write + fdatasync time per batch */
};
void audit_get_stats(struct audit *a, struct audit_stats *st);

/* The origin of instance's checkpoints ("lookupgate/<instance>"). */
void audit_origin(const char *instance, char *out, size_t outlen);

#endif
