/* The process: configuration, shared TLS contexts, connection accounting, worker threads and
 * signal handling (SIGTERM drains and exits 0, SIGHUP reloads the policy and reopens the log). */
#ifndef LG_SERVER_H
#define LG_SERVER_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/sha256.h"
#include "policy/config.h"
#include "proxy/http_head.h"
#include "proxy/metrics.h"
#include "proxy/tls.h"

struct worker;
struct conncap;
struct policy;
struct quota_mem;
struct audit;
struct audit_sink;
struct admin;
struct sigtrack;

struct server {
    struct lg_config *cfg;        /* immutable while running */
    struct worker **workers;
    int nworkers;
    atomic_int nconns;            /* client connections of the whole process */
    struct conncap *cap;          /* per-address connection counts */
    struct tls_slot *listener_tls; /* per listener; ctx NULL for plain HTTP */
    struct tls_slot upstream_tls; /* ctx NULL for a plain-HTTP upstream */
    int tls_ready;                /* the slots are initialised */
    struct http_limits hlim;      /* request limits derived from cfg->limits */
    char instance[17];            /* random id of this process, in request ids */
    struct policy *policy;        /* current policy snapshot (policy_mu; workers hold refs) */
    pthread_mutex_t policy_mu;
    struct quota_mem *mem;        /* in-memory quota backend and local fallback */
    struct audit *audit;          /* the audit log writer */
    struct audit_sink **sinks;    /* one per worker; freed after the writer stops */
    struct hmac_sha256_key cid_hmac; /* citizen-ID HMAC key, padded */
    struct metrics metrics;       /* process-wide counters and the ops registry */
    struct admin *admin;          /* the admin listener (main thread) */
    struct audit_sink *admin_sink; /* its sink; freed after the writer stops */
    struct sigtrack *sig;         /* misuse signal counts */
    uint64_t subject_salt;        /* for the distinct-citizens signal's item hashes */
};

/* Loads the policy file again and, if it is valid, hands it to every worker; otherwise logs
 * every error and keeps the current one. by names who asked (an admin, or NULL for SIGHUP);
 * err (may be NULL) gets the errors of a refused policy, one per line. Main thread only.
 * Returns 0 if the new policy is in force. */
int server_reload_policy(struct server *s, const char *by, char *err, size_t errlen);
/* Loads every TLS certificate, key, CA and CRL file again (listeners, upstream, admin) and
 * installs them for new connections; all or nothing: on any error the current ones stay.
 * Returns 0, or -1 with the reason logged. */
int server_reload_tls(struct server *s);

/* Runs the proxy until SIGTERM/SIGINT. Returns the process exit status. */
int server_run(struct lg_config *cfg);

#endif
