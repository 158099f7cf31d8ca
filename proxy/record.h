/* The audit records of requests and of administrative acts, in their canonical field order.
 * Nothing secret goes in: no token or Authorization value, no citizen ID (only its HMAC token),
 * no query string, and digit runs in a path are masked. */
#ifndef LG_RECORD_H
#define LG_RECORD_H

#include <stddef.h>
#include <stdint.h>

struct jsonw;
struct pol_decision;
struct quota_plan;
struct quota_result;

/* The two runs of a lookup's intent record that its result record repeats byte for byte:
 * from "request_id" to "procedure", and from "counters" to "policy". Kept by the intent's
 * record_request and copied by the result's, so the result does not format and escape them
 * again (the record bytes are the same either way). A run too long for its room is not kept,
 * and the result builds it as any record does. */
struct rec_reuse {
    int have;                     /* the runs below are the intent's; clear it for a new request */
    unsigned short who_len, counters_len;
    char who[768];                /* ,"request_id":...,"procedure":... */
    char counters[512];           /* ,"counters":...,"policy":... */
};

struct req_record {
    const char *type;            /* "lookup.intent", "lookup.result", "request.refused" */
    int64_t time_ms;
    const char *instance;
    const char *request_id;
    const char *client;          /* socket address */
    const char *tls_client;      /* client certificate fingerprint, or NULL */
    const struct pol_decision *dec; /* NULL when the request never reached a decision */
    const char *method;          /* NULL when the request line was not understood */
    const char *path;            /* recorded (masked) only when no operation matched */
    size_t path_len;
    const char *decision;        /* "allow" or "refuse" */
    const char *rule;            /* what decided: a problem type, or "granted" */
    int status;                  /* what the client gets; 0: not yet known (intent) */
    const char *detail;          /* the refusal's explanation, or NULL */
    const struct quota_plan *plan;   /* counters, when quotas were checked */
    const struct quota_result *qres;
    const char *clock;
    int degraded;
    const char *policy;          /* policy version */
    const char *subject_token;   /* the citizen ID's HMAC token (hex), or NULL */
    /* lookup.result: the upstream exchange */
    int upstream;                /* 1: the upstream answered */
    int up_status;
    uint64_t up_bytes;
    int64_t up_latency_us;
    const char *up_sha256;       /* hex digest of the response body */
    const char *error;           /* why there is no upstream answer, or NULL */
    struct rec_reuse *reuse;     /* lookups: kept by the intent, used by the result; or NULL */
};

/* Writes the record text the audit writer expects ("\"time\":...}"). */
void record_request(struct jsonw *j, const struct req_record *r);

/* Starts an administrative record ("\"time\":..,\"type\":..,\"instance\":.."); the caller adds
 * members with jw_k* and ends it with jw_close(j, '}'). */
void record_admin_begin(struct jsonw *j, const char *type, const char *instance);

#endif
