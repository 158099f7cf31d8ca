/* Offline verification of one instance's log: every leaf, checkpoint root and signature, the
 * segment chain, seq continuity, the prev hashes and the heartbeat spacing. The first problem
 * is reported with file, line and seq. Records can be handed to a callback as they are read,
 * for search and stats. */
#ifndef LG_AUDIT_VERIFY_H
#define LG_AUDIT_VERIFY_H

#include <jansson.h>
#include <stdint.h>

#include "audit/segment.h"

struct evp_pkey_st;

struct kept_checkpoint {
    char origin[96];
    uint64_t size;
    char root[48];
};

struct verify_opts {
    struct evp_pkey_st **pubs;         /* public keys; a checkpoint must verify with one */
    int npubs;
    int live;                          /* a copy of a running log: an unsigned tail is allowed */
    const struct kept_checkpoint *kept; /* from an earlier visit, or NULL */
    /* Called for each record (not checkpoints) in order; rec is borrowed. */
    void (*on_record)(void *arg, json_t *rec, int64_t time_ms);
    void *arg;
};

struct verify_result {
    int ok;
    char error[768];           /* the first problem, when !ok */
    char notes[1024];          /* what a reader should know (ignored bytes, unsigned tail) */
    uint64_t records;          /* leaves read */
    long segments;
    int64_t first_ms, last_ms; /* times of the first and last record */
    uint64_t cp_size;          /* the last checkpoint */
    char cp_line[512];         /* and its line, to keep for the next visit */
    int kept_checked;          /* the kept checkpoint was found and matches */
};

/* Verifies segs[0..n) (one instance, sorted by first seq). */
void audit_verify(const struct seg_file *segs, long n, const struct verify_opts *o,
                  struct verify_result *r);

/* "2026-11-21T08:00:00.123Z" → ms, or -1. */
int64_t audit_parse_time(const char *s);

/* Parses a checkpoint line (as in the log); checks its signature with pub when given. */
int audit_parse_checkpoint(const char *line, struct evp_pkey_st *pub, struct kept_checkpoint *k,
                           char *err, size_t errlen);

#endif
