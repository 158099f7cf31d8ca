/* Upstream pool and response reading. */
#include "proxy/upstream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/http_head.h"
#include "proxy/tls.h"

enum upconn_state {
    UP_ST_CONNECTING, /* connect (and handshake) in progress, request attached */
    UP_ST_BUSY,       /* request sent, reading the response */
    UP_ST_IDLE,       /* in the idle queue */
};

struct upconn {
    struct upstream_pool *pool;
    struct bufferevent *bev;
    struct event *rev;            /* plain HTTP: reads the socket itself (see sock_read_cb) */
    struct event *timer;          /* connect, response or idle deadline */
    enum upconn_state state;
    int nreq;                     /* requests sent on this connection */
    struct up_request *req;       /* attached request (CONNECTING, BUSY) */
    http_parser parser;
    char *hbuf;                   /* header pieces: name\0value\0 ... */
    size_t hlen, hcap;
    size_t head_bytes;            /* response head size so far */
    size_t nfields;               /* header fields so far */
    size_t body_bytes;            /* body bytes so far */
    int in_value;                 /* last piece was a value */
    int any_field;                /* at least one field started */
    int got_bytes;                /* any response byte seen */
    int interim;                  /* current message is a 1xx */
    int complete;                 /* final response complete */
    int needs_eof;                /* body delimited by EOF: never reuse */
    int fail_status;              /* set by callbacks on a bad response */
    const char *fail_reason;
    TAILQ_ENTRY(upconn) link;     /* idle queue */
};

TAILQ_HEAD(upconn_list, upconn);
TAILQ_HEAD(upreq_list, up_request);

struct upstream_pool {
    struct event_base *base;
    const struct cfg_upstream *cfg;
    const struct cfg_limits *lim;
    struct tls_slot *tls;             /* NULL for plain HTTP */
    struct sockaddr_storage addr;     /* resolved upstream address */
    socklen_t addrlen;
    struct upconn_list idle;
    int nidle;
    int total;                        /* open connections, any state */
    struct upreq_list waiters;
    int nwaiting;
    char rbuf[16384];                 /* plain HTTP reads; parsed before the callback returns */
};

static void upconn_read_cb(struct bufferevent *bev, void *arg);
static void sock_read_cb(evutil_socket_t fd, short what, void *arg);
static void upconn_event_cb(struct bufferevent *bev, short what, void *arg);
static void upconn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void pool_dispatch(struct upstream_pool *p);
static void start_new(struct upstream_pool *p, struct up_request *r);

static void arm(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

struct upstream_pool *upstream_pool_new(struct event_base *base, const struct cfg_upstream *cfg,
                                        const struct cfg_limits *lim, struct tls_slot *tls,
                                        char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->port);
    int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve upstream host %s: %s", cfg->host, gai_strerror(rc));
        return NULL;
    }
    struct upstream_pool *p = xcalloc(1, sizeof *p);
    p->base = base;
    p->cfg = cfg;
    p->lim = lim;
    p->tls = tls;
    memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
    p->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    TAILQ_INIT(&p->idle);
    TAILQ_INIT(&p->waiters);
    return p;
}

static void reset_response(struct upconn *uc)
{
    uc->hlen = 0;
    uc->head_bytes = 0;
    uc->nfields = 0;
    uc->body_bytes = 0;
    uc->in_value = 0;
    uc->any_field = 0;
    uc->interim = 0;
}

static void upconn_free(struct upconn *uc)
{
    struct upstream_pool *p = uc->pool;
    if (uc->state == UP_ST_IDLE) {
        TAILQ_REMOVE(&p->idle, uc, link);
        p->nidle--;
    }
    p->total--;
    if (uc->rev)
        event_free(uc->rev); /* before the bufferevent closes the socket */
    if (uc->bev)
        bufferevent_free(uc->bev);
    event_free(uc->timer);
    free(uc->hbuf);
    free(uc);
}

void upstream_pool_close_idle(struct upstream_pool *p)
{
    while (!TAILQ_EMPTY(&p->idle))
        upconn_free(TAILQ_FIRST(&p->idle));
}

void upstream_pool_free(struct upstream_pool *p)
{
    if (p == NULL)
        return;
    upstream_pool_close_idle(p);
    free(p);
}

int upstream_pool_idle(const struct upstream_pool *p)
{
    return p->nidle;
}

int upstream_pool_waiting(const struct upstream_pool *p)
{
    return p->nwaiting;
}

int upstream_pool_total(const struct upstream_pool *p)
{
    return p->total;
}

/* Completes r with a failure or success and calls its done callback. */
static void complete(struct up_request *r, int status, int error, const char *reason)
{
    r->uc = NULL;
    r->result.status = status;
    r->result.error = error;
    r->result.reason = reason;
    if (r->t_sent_us)
        r->result.latency_us = now_mono_us() - r->t_sent_us;
    r->done(r);
}

static void dequeue(struct upstream_pool *p, struct up_request *r)
{
    TAILQ_REMOVE(&p->waiters, r, qlink);
    p->nwaiting--;
    r->queued = 0;
    if (r->qtimer) {
        event_free(r->qtimer);
        r->qtimer = NULL;
    }
}

static void queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct up_request *r = arg;
    (void)fd;
    (void)what;
    dequeue(r->pool, r);
    complete(r, 0, 503, "no upstream connection became free in time");
}

/* --- response parsing ---------------------------------------------------------------- */

/* The collected fields are "name\0value\0" pairs in uc->hbuf: every name gets a value (empty
 * when the field had none) and no piece may hold a NUL of its own, or the pairs would shift. */
static int hbuf_add(struct upconn *uc, const char *at, size_t len, int terminate)
{
    if (len && memchr(at, '\0', len) != NULL) {
        uc->fail_status = 502;
        uc->fail_reason = "malformed upstream header field";
        return -1;
    }
    size_t need = uc->hlen + len + 1;
    if (need > uc->hcap) {
        size_t ncap = uc->hcap ? uc->hcap : 1024;
        while (ncap < need)
            ncap *= 2;
        uc->hbuf = xrealloc(uc->hbuf, ncap);
        uc->hcap = ncap;
    }
    if (terminate)
        uc->hbuf[uc->hlen++] = '\0';
    memcpy(uc->hbuf + uc->hlen, at, len);
    uc->hlen += len;
    uc->head_bytes += len;
    if (uc->head_bytes > (size_t)uc->pool->lim->response_head_bytes) {
        uc->fail_status = 502;
        uc->fail_reason = "upstream response head too large";
        return -1;
    }
    return 0;
}

static int on_resp_begin(http_parser *hp)
{
    struct upconn *uc = hp->data;
    uc->got_bytes = 1;
    return 0;
}

static int on_resp_field(http_parser *hp, const char *at, size_t len)
{
    struct upconn *uc = hp->data;
    int start = !uc->any_field || uc->in_value;
    if (start) {
        if (++uc->nfields > (size_t)uc->pool->lim->response_header_count) {
            uc->fail_status = 502;
            uc->fail_reason = "upstream response has too many header fields";
            return -1;
        }
        /* a previous field without any value gets an empty one */
        if (uc->any_field && !uc->in_value && hbuf_add(uc, "", 0, 1) != 0)
            return -1;
        /* terminate the previous value before the new name */
        if (hbuf_add(uc, at, len, uc->any_field) != 0)
            return -1;
        uc->any_field = 1;
        uc->in_value = 0;
        return 0;
    }
    return hbuf_add(uc, at, len, 0);
}

static int on_resp_value(http_parser *hp, const char *at, size_t len)
{
    struct upconn *uc = hp->data;
    int first = !uc->in_value;
    uc->in_value = 1;
    return hbuf_add(uc, at, len, first);
}

static int resp_header_dropped(const char *n, size_t l)
{
    static const struct name_len names[] = {
        NAME_LEN("connection"), NAME_LEN("keep-alive"), NAME_LEN("proxy-connection"),
        NAME_LEN("te"), NAME_LEN("trailer"), NAME_LEN("transfer-encoding"), NAME_LEN("upgrade"),
        NAME_LEN("content-length"), NAME_LEN("x-request-id"), NAME_LEN("proxy-authenticate"),
    };
    return ascii_in_nocase(n, l, names, ARRAY_LEN(names), 0);
}

/* The pair at hbuf[*i..]: name and value with their lengths; advances *i. 0, or -1 when the
 * pairs do not fit in hlen (never read past the collected bytes). */
static int next_pair(const char *hbuf, size_t hlen, size_t *i, const char **n, size_t *nlen,
                     const char **v, size_t *vlen)
{
    size_t left = hlen - *i;
    *n = hbuf + *i;
    *nlen = strnlen(*n, left);
    if (*nlen >= left)
        return -1;
    left -= *nlen + 1;
    *v = *n + *nlen + 1;
    *vlen = strnlen(*v, left);
    if (*vlen >= left)
        return -1;
    *i += *nlen + 1 + *vlen + 1;
    return 0;
}

/* 1 if name[0..nl) appears as a token of any Connection header in the collected fields. */
static int listed_in_connection(const char *hbuf, size_t hlen, const char *name, size_t nl)
{
    for (size_t i = 0; i < hlen;) {
        const char *n, *v;
        size_t nlen, vlen;
        if (next_pair(hbuf, hlen, &i, &n, &nlen, &v, &vlen) != 0)
            return 0;
        if (ascii_eq_nocase(n, nlen, "connection")) {
            for (size_t a = 0; a < vlen;) {
                while (a < vlen && (v[a] == ' ' || v[a] == '\t' || v[a] == ','))
                    a++;
                size_t b = a;
                while (b < vlen && v[b] != ',' && v[b] != ' ' && v[b] != '\t')
                    b++;
                if (b - a == nl && ascii_eqn_nocase(v + a, name, nl))
                    return 1;
                a = b;
            }
        }
    }
    return 0;
}

static int emit_headers(struct upconn *uc)
{
    struct evbuffer *out = uc->req->resp_hdrs;
    evbuffer_drain(out, evbuffer_get_length(out));
    /* Connection may name more fields to drop; most responses have none to look through. */
    int any_connection = 0;
    for (size_t i = 0; i < uc->hlen && !any_connection;) {
        const char *n, *v;
        size_t nlen, vlen;
        if (next_pair(uc->hbuf, uc->hlen, &i, &n, &nlen, &v, &vlen) != 0)
            break; /* reported by the loop below */
        any_connection = ascii_eq_nocase(n, nlen, "connection");
    }
    /* The kept fields go out in one evbuffer_add, through tmp while they fit. */
    char tmp[2048];
    size_t used = 0;
    for (size_t i = 0; i < uc->hlen;) {
        const char *n, *v;
        size_t nlen, vlen;
        if (next_pair(uc->hbuf, uc->hlen, &i, &n, &nlen, &v, &vlen) != 0 || nlen == 0)
            goto bad;
        for (size_t k = 0; k < nlen; k++)
            if (!http_is_tchar((unsigned char)n[k]))
                goto bad;
        for (size_t k = 0; k < vlen; k++) {
            unsigned char c = (unsigned char)v[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                goto bad;
        }
        while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (resp_header_dropped(n, nlen) ||
            (any_connection && listed_in_connection(uc->hbuf, uc->hlen, n, nlen)))
            continue;
        size_t need = nlen + 2 + vlen + 2;
        if (used + need > sizeof tmp) {
            evbuffer_add(out, tmp, used);
            used = 0;
        }
        if (need > sizeof tmp) {
            evbuffer_add(out, n, nlen);
            evbuffer_add(out, ": ", 2);
            evbuffer_add(out, v, vlen);
            evbuffer_add(out, "\r\n", 2);
            continue;
        }
        memcpy(tmp + used, n, nlen);
        memcpy(tmp + used + nlen, ": ", 2);
        memcpy(tmp + used + nlen + 2, v, vlen);
        memcpy(tmp + used + nlen + 2 + vlen, "\r\n", 2);
        used += need;
    }
    if (used)
        evbuffer_add(out, tmp, used);
    return 0;
bad:
    uc->fail_status = 502;
    uc->fail_reason = "malformed upstream header field";
    return -1;
}

static int on_resp_headers_complete(http_parser *hp)
{
    struct upconn *uc = hp->data;
    struct up_request *r = uc->req;
    if (uc->any_field && !uc->in_value && hbuf_add(uc, "", 0, 1) != 0) /* an empty last value */
        return -1;
    if (uc->any_field && hbuf_add(uc, "", 0, 1) != 0) /* terminate the last value */
        return -1;
    int st = hp->status_code;
    if (st == 101 || hp->upgrade) {
        uc->fail_status = 502;
        uc->fail_reason = "upstream tried to switch protocols";
        return -1;
    }
    if (st < 100 || st > 599) {
        uc->fail_status = 502;
        uc->fail_reason = "invalid upstream status";
        return -1;
    }
    if (st < 200) {
        uc->interim = 1; /* absorbed: the client gets only the final response */
        return 0;
    }
    if (emit_headers(uc) != 0)
        return -1;
    r->result.content_length =
        (hp->flags & F_CONTENTLENGTH) ? (int64_t)hp->content_length : -1;
    r->result.no_body = r->head || st == 204 || st == 304;
    if (r->result.no_body)
        return 1; /* skip the body */
    uc->needs_eof = !(hp->flags & (F_CHUNKED | F_CONTENTLENGTH)); /* body ends at EOF */
    return 0;
}

static int on_resp_body(http_parser *hp, const char *at, size_t len)
{
    struct upconn *uc = hp->data;
    uc->body_bytes += len;
    if (uc->body_bytes > (size_t)uc->pool->lim->response_body_bytes) {
        uc->fail_status = 502;
        uc->fail_reason = "upstream response body too large";
        return -1;
    }
    evbuffer_add(uc->req->resp_body, at, len);
    return 0;
}

static int on_resp_message_complete(http_parser *hp)
{
    struct upconn *uc = hp->data;
    if (uc->interim) {
        reset_response(uc);
        return 0;
    }
    uc->complete = 1;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_message_begin = on_resp_begin,
    .on_header_field = on_resp_field,
    .on_header_value = on_resp_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

/* --- connection lifecycle --------------------------------------------------------------- */

/* Detaches the request after a final outcome; keeps or frees the connection. */
static void finish(struct upconn *uc, int reusable, int status, int error, const char *reason)
{
    struct upstream_pool *p = uc->pool;
    struct up_request *r = uc->req;
    uc->req = NULL;
    evtimer_del(uc->timer);
    if (reusable && uc->nreq < p->cfg->max_requests_per_connection) {
        uc->state = UP_ST_IDLE;
        TAILQ_INSERT_HEAD(&p->idle, uc, link);
        p->nidle++;
        arm(uc->timer, p->cfg->idle_timeout_ms);
    } else {
        upconn_free(uc);
    }
    if (r)
        complete(r, status, error, reason);
    pool_dispatch(p);
}

static void fail(struct upconn *uc, int error, const char *reason)
{
    log_info("upstream: %s", reason);
    finish(uc, 0, 0, error, reason);
}

static void send_request(struct upconn *uc)
{
    struct up_request *r = uc->req;
    struct evbuffer *out = bufferevent_get_output(uc->bev);
    size_t len = evbuffer_get_length(r->bytes);
    const char *bytes = (const char *)evbuffer_pullup(r->bytes, (ev_ssize_t)len);
    size_t sent = 0;
    if (uc->pool->tls == NULL && evbuffer_get_length(out) == 0) {
        /* The connection is established and idle: write now. Through the bufferevent, every
         * request would add and then remove its write event (two epoll_ctl calls); what the
         * socket does not take, and any error, is left to the bufferevent. */
        ssize_t n = send(bufferevent_getfd(uc->bev), bytes, len, MSG_NOSIGNAL);
        if (n > 0)
            sent = (size_t)n;
    }
    if (sent < len)
        evbuffer_add(out, bytes + sent, len - sent);
    uc->state = UP_ST_BUSY;
    uc->nreq++;
    uc->got_bytes = 0;
    uc->complete = 0;
    uc->needs_eof = 0;
    uc->fail_status = 0;
    reset_response(uc);
    http_parser_init(&uc->parser, HTTP_RESPONSE);
    uc->parser.data = uc;
    r->t_sent_us = now_mono_us();
    r->result.content_length = -1;
    evbuffer_drain(r->resp_body, evbuffer_get_length(r->resp_body));
    evbuffer_drain(r->resp_hdrs, evbuffer_get_length(r->resp_hdrs));
    arm(uc->timer, uc->pool->cfg->response_timeout_ms);
    /* Only what is not enabled yet: enabling EV_WRITE again adds the write event even with
     * nothing to write (one epoll_ctl to add it, one when it fires empty). A plain connection
     * reads through its own event, not the bufferevent's. */
    short want = uc->rev ? EV_WRITE : (EV_READ | EV_WRITE);
    short have = bufferevent_get_enabled(uc->bev);
    if ((have & want) != want)
        bufferevent_enable(uc->bev, (short)(want & ~have));
}

static void attach(struct upconn *uc, struct up_request *r)
{
    uc->req = r;
    r->uc = uc;
}

/* Parses response bytes. Returns how many the parser took, or -1 after failing the exchange. */
static ssize_t parse(struct upconn *uc, const char *data, size_t len)
{
    size_t n = http_parser_execute(&uc->parser, &resp_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&uc->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        fail(uc, uc->fail_status ? uc->fail_status : 502,
             uc->fail_reason ? uc->fail_reason : "malformed upstream response");
        return -1;
    }
    if (n < len && !uc->complete) {
        fail(uc, 502, "malformed upstream response");
        return -1;
    }
    return (ssize_t)n;
}

/* The response is complete: the connection is reused only if nothing followed it. */
static void complete_response(struct upconn *uc, int leftover)
{
    int reusable = http_should_keep_alive(&uc->parser) && !uc->needs_eof && !leftover;
    finish(uc, reusable, uc->parser.status_code, 0, NULL);
}

/* TLS: feeds the bufferevent's decrypted bytes to the parser. */
static void upconn_read_cb(struct bufferevent *bev, void *arg)
{
    struct upconn *uc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (uc->state != UP_ST_BUSY) {
        upconn_free(uc); /* unsolicited bytes on an idle connection */
        return;
    }
    while (evbuffer_get_length(in) > 0 && !uc->complete) {
        size_t contig = evbuffer_get_contiguous_space(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)contig);
        ssize_t n = parse(uc, data, contig);
        if (n < 0)
            return;
        evbuffer_drain(in, (size_t)n);
    }
    if (uc->complete)
        complete_response(uc, evbuffer_get_length(in) > 0);
}

/* Plain HTTP: one recv per readiness into the pool's buffer, parsed in place. Through the
 * bufferevent, every read would first ask the kernel how much is waiting (an ioctl) and copy
 * the bytes through an evbuffer; the parser's callbacks copy what they keep anyway. A response
 * larger than the buffer takes more readiness events, as it would through the bufferevent. */
static void sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *uc = arg;
    struct upstream_pool *p = uc->pool;
    (void)what;
    ssize_t got = recv(fd, p->rbuf, sizeof p->rbuf, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        short ev = got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
        upconn_event_cb(uc->bev, (short)(BEV_EVENT_READING | ev), uc);
        return;
    }
    if (uc->state != UP_ST_BUSY) {
        upconn_free(uc); /* unsolicited bytes on an idle connection */
        return;
    }
    ssize_t n = parse(uc, p->rbuf, (size_t)got);
    if (n >= 0 && uc->complete)
        complete_response(uc, n < got);
}

static void upconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upconn *uc = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (uc->pool->tls == NULL) {
            uc->rev = event_new(uc->pool->base, fd, EV_READ | EV_PERSIST, sock_read_cb, uc);
            if (uc->rev == NULL || event_add(uc->rev, NULL) != 0) {
                fail(uc, 502, "cannot watch the upstream connection");
                return;
            }
        }
        send_request(uc);
        return;
    }
    if (uc->state == UP_ST_IDLE) {
        upconn_free(uc);
        return;
    }
    if (uc->state == UP_ST_CONNECTING) {
        unsigned long e = uc->pool->tls ? bufferevent_get_openssl_error(bev) : 0;
        fail(uc, 502, e ? "upstream TLS handshake failed" : "upstream connect failed");
        return;
    }
    /* BUSY: EOF or error while reading the response */
    if ((what & BEV_EVENT_EOF) && uc->needs_eof) {
        http_parser_execute(&uc->parser, &resp_settings, NULL, 0);
        if (uc->complete) {
            finish(uc, 0, uc->parser.status_code, 0, NULL);
            return;
        }
    }
    struct up_request *r = uc->req;
    if (!uc->got_bytes && uc->nreq > 1 && r->idempotent && !r->retried) {
        /* A pooled connection the upstream had closed: one retry on a fresh connection. */
        r->retried = 1;
        uc->req = NULL;
        r->uc = NULL;
        struct upstream_pool *p = uc->pool;
        upconn_free(uc);
        start_new(p, r);
        return;
    }
    fail(uc, 502, uc->got_bytes ? "upstream closed mid-response" : "upstream closed the connection");
}

static void upconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *uc = arg;
    (void)fd;
    (void)what;
    switch (uc->state) {
    case UP_ST_IDLE:
        upconn_free(uc);
        break;
    case UP_ST_CONNECTING:
        fail(uc, 504, "upstream connect timed out");
        break;
    case UP_ST_BUSY:
        fail(uc, 504, "upstream response timed out");
        break;
    }
}

static void start_new(struct upstream_pool *p, struct up_request *r)
{
    struct upconn *uc = xcalloc(1, sizeof *uc);
    uc->pool = p;
    uc->state = UP_ST_CONNECTING;
    uc->timer = evtimer_new(p->base, upconn_timer_cb, uc);
    p->total++;
    attach(uc, r);
    if (p->tls) {
        SSL_CTX *ctx = tls_slot_get(p->tls); /* the current one: a reload may replace it */
        SSL *ssl = ctx ? tls_client_ssl_new(ctx, p->cfg) : NULL;
        SSL_CTX_free(ctx);
        if (ssl)
            uc->bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                     BEV_OPT_CLOSE_ON_FREE);
    } else {
        uc->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (uc->bev == NULL) {
        fail(uc, 502, "cannot create upstream connection");
        return;
    }
    bufferevent_setcb(uc->bev, upconn_read_cb, NULL, upconn_event_cb, uc);
    arm(uc->timer, p->cfg->connect_timeout_ms);
    if (bufferevent_socket_connect(uc->bev, (struct sockaddr *)&p->addr, (int)p->addrlen) < 0) {
        fail(uc, 502, "upstream connect failed");
        return;
    }
}

/* Serves one request: an idle connection, a new one, the wait queue, or 503. */
static void serve(struct upstream_pool *p, struct up_request *r, int may_queue)
{
    if (!TAILQ_EMPTY(&p->idle)) {
        struct upconn *uc = TAILQ_FIRST(&p->idle);
        TAILQ_REMOVE(&p->idle, uc, link);
        p->nidle--;
        evtimer_del(uc->timer);
        attach(uc, r);
        send_request(uc);
        return;
    }
    if (p->total < p->cfg->pool_size) {
        start_new(p, r);
        return;
    }
    if (may_queue && p->nwaiting < p->cfg->queue_size) {
        r->queued = 1;
        r->qtimer = evtimer_new(p->base, queue_timeout_cb, r);
        TAILQ_INSERT_TAIL(&p->waiters, r, qlink);
        p->nwaiting++;
        arm(r->qtimer, p->cfg->queue_timeout_ms);
        return;
    }
    complete(r, 0, 503, "upstream connection pool exhausted");
}

static void pool_dispatch(struct upstream_pool *p)
{
    while (!TAILQ_EMPTY(&p->waiters) && (p->nidle > 0 || p->total < p->cfg->pool_size)) {
        struct up_request *r = TAILQ_FIRST(&p->waiters);
        dequeue(p, r);
        serve(p, r, 0);
    }
}

void upstream_send(struct upstream_pool *p, struct up_request *r)
{
    r->pool = p;
    r->uc = NULL;
    r->queued = 0;
    r->retried = 0;
    r->t_sent_us = 0;
    r->qtimer = NULL;
    memset(&r->result, 0, sizeof r->result);
    r->result.content_length = -1;
    serve(p, r, 1);
}

void upstream_cancel(struct upstream_pool *p, struct up_request *r)
{
    if (r->queued) {
        dequeue(p, r);
        return;
    }
    if (r->uc) {
        struct upconn *uc = r->uc;
        uc->req = NULL;
        r->uc = NULL;
        upconn_free(uc); /* mid-exchange: the connection cannot be reused */
        pool_dispatch(p);
    }
}
