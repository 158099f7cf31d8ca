/* A client connection and its request state machine:
 *   KEEPALIVE → READING_HEAD → READING_BODY → DECIDING → AUDITING → UPSTREAM → RECORDING
 *   → RESPONDING → KEEPALIVE | CLOSING
 * One message at a time: bytes of a pipelined next request stay in the input buffer until the
 * response to this one has been written. DECIDING is the policy layer (credential, grant,
 * quota); AUDITING waits for the durable intent record of a lookup; RECORDING holds every
 * response (refusals included) until its audit record is durable. */
#ifndef LG_CONN_H
#define LG_CONN_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/arena.h"
#include "proxy/chunked.h"
#include "proxy/http_head.h"
#include "proxy/http_req.h"
#include "proxy/upstream.h"

struct worker;
struct policy;
struct gate;
struct quota_op;
struct audit_rec;
struct bufferevent;
struct event;
struct evbuffer;

enum conn_state {
    CONN_ST_KEEPALIVE,    /* waiting for the first byte of a request */
    CONN_ST_READING_HEAD, /* head deadline running */
    CONN_ST_READING_BODY, /* body deadline running */
    CONN_ST_DECIDING,     /* authentication, grants, quota (policy layer) */
    CONN_ST_AUDITING,     /* intent record (audit layer) */
    CONN_ST_UPSTREAM,     /* exchange with the upstream in flight */
    CONN_ST_RECORDING,    /* response held until its audit record is durable */
    CONN_ST_RESPONDING,   /* response being written to the client */
    CONN_ST_CLOSING,      /* closing once the output is flushed */
};

extern const char *const conn_state_text[];

struct conn {
    struct worker *w;
    struct bufferevent *bev;
    struct event *rev;               /* plain connections: reads the socket (conn_sock_read_cb) */
    size_t read_max;                 /* stop reading with this much input unparsed (0: no limit) */
    struct sockaddr_storage peer;    /* client socket address */
    char peer_ip[64];                /* printable address */
    int tls;                         /* connection arrived on a TLS listener */
    enum conn_state state;
    struct event *timer;             /* idle/head/body deadlines and scheduled close */
    struct event *kick;              /* runs conn_write_cb after a direct write (release) */
    struct arena arena;              /* per-request allocations */
    struct head_scan scan;           /* head scanner state */
    struct http_req req;             /* parsed head, valid from READING_BODY on */
    int have_req;                    /* req is valid */
    struct chunked chunk;            /* chunked decoder */
    int64_t body_left;               /* Content-Length bytes still to read */
    struct evbuffer *body;           /* decoded request body */
    struct evbuffer *upbytes;        /* rebuilt request for the upstream */
    struct up_request up;            /* the upstream exchange */
    char request_id[48];             /* X-Request-Id of the current request */
    struct policy *pol;              /* policy snapshot of the current request (a reference) */
    struct gate *gate;               /* decision state of the current request (in the arena) */
    struct quota_op *qop;            /* quota decision in flight, or NULL */
    struct audit_rec *arec;          /* audit record being waited for, or NULL */
    struct evbuffer *held;           /* the response, until its record is durable */
    char tls_id[72];                 /* "sha256:<hex>" of the client certificate, or "" */
    unsigned nrequests;              /* requests started on this connection */
    unsigned close_after : 1;        /* close once the response is written */
    unsigned read_eof : 1;           /* the client half-closed */
    unsigned read_paused : 1;        /* rev is off: read_max bytes wait unparsed */
    unsigned intent : 1;             /* a lookup intent record was submitted */
    unsigned recorded : 1;           /* the request's final record was submitted */
    unsigned tls_id_done : 1;        /* tls_id is computed */
    int64_t t_start_us;              /* first byte of the current request */
    int64_t t_audit_us;              /* when the awaited audit record was submitted */
    int status;                      /* status of the response being held or sent */
    TAILQ_ENTRY(conn) link;          /* worker's connection list */
};

/* Takes ownership of fd (already counted against the caps by the worker). */
struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                      SSL_CTX *tls);
/* Frees c now; only for the worker (shutdown) and c's own callbacks. */
void conn_free(struct conn *c);
/* 1 if c holds no request and no buffered bytes (safe to close at shutdown). */
int conn_is_idle(const struct conn *c);
/* Frees the worker's cache of per-request state (when the worker ends). */
void conn_worker_cache_free(struct worker *w);
/* Makes c close after its current response (graceful shutdown). */
void conn_close_after_response(struct conn *c);

#endif
