/* The admin listener's internals, shared by admin.c (connections, authentication, routing,
 * responses and their audit records) and admin_api.c (the handlers). */
#ifndef LG_ADMIN_IMPL_H
#define LG_ADMIN_IMPL_H

#include <jansson.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "audit/jsonw.h"
#include "common/arena.h"
#include "policy/quota.h"
#include "proxy/http_head.h"
#include "proxy/http_req.h"
#include "proxy/worker.h"

struct server;
struct event_base;
struct evconnlistener;
struct bufferevent;
struct event;
struct evbuffer;
struct quota_store;
struct quota_op;
struct audit_sink;
struct audit_rec;
struct policy;
struct pol_account;
struct cfg_admin_token;
typedef struct ssl_ctx_st SSL_CTX;

#define ADMIN_MAX_CONNS 64
#define ADMIN_BODY_MAX 65536
#define ADMIN_HEAD_MS 10000
#define ADMIN_IDLE_MS 30000
#define ADMIN_REASON_MAX 200
#define DAY_MS 86400000LL

enum ac_state { AC_IDLE, AC_HEAD, AC_BODY, AC_BUSY, AC_WRITING };

struct aconn;
LIST_HEAD(aconn_list, aconn);

struct admin {
    struct server *s;
    struct event_base *base;
    struct evconnlistener *listener;
    int nlisteners;                 /* 1 while listener is open */
    struct accept_pause pause;      /* accept back-off on EMFILE */
    SSL_CTX *tls;
    struct quota_store *store;      /* the admin's own connection to the quota store */
    struct audit_sink *sink;        /* durability reports on the main thread */
    struct event *sample;           /* metrics sampler (status page minutes) */
    struct aconn_list conns;
    int nconns;
    uint64_t seq;                   /* request ids */
    struct sockaddr_storage up_addr; /* the upstream, for the readiness probe */
    socklen_t up_addrlen;
    struct http_limits hlim;
};

/* What one admin request did, for its audit record and its answer. */
struct areq {
    const char *action;             /* "accounts.get", "suspend", ... */
    struct policy *pol;             /* a reference, for the handlers that use it */
    const struct pol_account *acct;
    char reason[ADMIN_REASON_MAX + 1];
    int days;
    struct quota_read *rd;          /* reads in flight (malloc) */
    int nrd;
    struct quota_plan plan;         /* accounts.get: the counters shown */
    int own_record;                 /* the handler wrote the audit record itself */
    const char *result;             /* for the record: "ok", "failed", "refused" */
    char error[200];
    /* readiness and the status page */
    int ready_store;                /* the store answered */
    char store_err[200];
    int64_t read_now_ms;            /* the time the store read at */
    int status_page;                /* rendering /status (else answering /readyz) */
};

struct aconn {
    struct admin *ad;
    struct bufferevent *bev;
    char peer_ip[64];
    int tls;
    char tls_id[72];
    enum ac_state state;
    struct event *timer;
    struct arena arena;
    struct head_scan scan;
    struct http_req req;
    int have_req;
    int64_t body_left;
    struct evbuffer *body;
    struct evbuffer *held;          /* the response, until its record is durable */
    int status;
    int close_after;
    int read_eof;
    char request_id[48];
    const struct cfg_admin_token *who;
    struct areq *rq;
    struct quota_op *op;            /* store question in flight */
    struct bufferevent *probe;      /* readiness: connecting to the upstream */
    struct audit_rec *arec;
    LIST_ENTRY(aconn) link;
};

/* --- admin.c --------------------------------------------------------------------------- */

/* The current policy, referenced. */
struct policy *admin_policy(struct admin *ad);
/* Sends the held response (c->held). */
void ac_release(struct aconn *c);
/* Logs the request and writes its generic "admin" record (unless the handler records the act
 * itself, rq->own_record), then releases the response once the record is durable. */
void ac_finish(struct aconn *c);
/* The fields every admin record starts with. */
void ac_record_begin(struct aconn *c, struct jsonw *j, const char *type);
/* Submits the closed record j and releases the held response once it is durable. */
void ac_submit_and_release(struct aconn *c, struct jsonw *j);
/* Prepare a response in c->held (not recorded or sent). v is taken. */
void ac_hold_raw(struct aconn *c, int status, const char *ctype, const char *body, size_t len,
                 const char *extra);
void ac_hold_json(struct aconn *c, int status, json_t *v);
void ac_hold_problem(struct aconn *c, int status, const char *type, const char *detail,
                     const char *extra);
/* Hold, then finish. */
void ac_respond_raw(struct aconn *c, int status, const char *ctype, const char *body,
                    size_t len, const char *extra);
void ac_respond_json(struct aconn *c, int status, json_t *v);
void ac_respond_problem(struct aconn *c, int status, const char *type, const char *detail,
                        const char *extra);

/* --- admin_api.c: the handlers (c->rq->pol is referenced) --------------------------------- */

void h_account(struct aconn *c, const char *id);
void h_suspension(struct aconn *c, const char *id, int suspend);
void h_idle(struct aconn *c);
void h_credentials(struct aconn *c);
void h_reload(struct aconn *c);
void h_ready(struct aconn *c);
void h_status(struct aconn *c);

#endif
