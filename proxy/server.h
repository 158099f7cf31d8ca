/* The process: configuration, shared TLS contexts, connection accounting, worker threads and
 * signal handling (SIGTERM drains and exits 0, SIGHUP reopens the log). */
#ifndef LG_SERVER_H
#define LG_SERVER_H

#include <openssl/ssl.h>
#include <stdatomic.h>

#include "policy/config.h"
#include "proxy/http_head.h"

struct worker;
struct conncap;

struct server {
    struct lg_config *cfg;        /* immutable while running */
    struct worker **workers;
    int nworkers;
    atomic_int nconns;            /* client connections of the whole process */
    struct conncap *cap;          /* per-address connection counts */
    SSL_CTX **listener_tls;       /* per listener, NULL for plain HTTP */
    SSL_CTX *upstream_tls;        /* NULL for a plain-HTTP upstream */
    struct http_limits hlim;      /* request limits derived from cfg->limits */
    char instance[17];            /* random id of this process, in request ids */
};

/* Runs the proxy until SIGTERM/SIGINT. Returns the process exit status. */
int server_run(struct lg_config *cfg);

#endif
