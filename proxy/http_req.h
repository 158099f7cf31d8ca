/* A parsed, validated client request head. http_req_parse splits a head the strict scanner
 * (http_head.h) has validated into its parts and then applies the semantic rules (one Host, one
 * framing header, known transfer codings, method allowlist, target form) so the rest of the
 * proxy can trust it. */
#ifndef LG_HTTP_REQ_H
#define LG_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "proxy/http_head.h"

enum {
    HDR_DROP = 1u << 0, /* not forwarded upstream (hop-by-hop, framing, identity-like) */
};

struct http_hdr {
    const char *name;  /* points into the arena copy of the head */
    size_t nlen;
    const char *value; /* OWS-trimmed */
    size_t vlen;
    unsigned flags;    /* HDR_* */
};

struct http_req {
    int method;                /* enum http_method */
    unsigned major, minor;     /* as received (1.2 is served as 1.1) */
    const char *target;        /* request target, NUL-terminated */
    size_t target_len;
    size_t path_len;           /* target[0..path_len) is the path; the query follows '?' */
    struct http_hdr *hdrs;     /* fields in order */
    size_t nhdrs;
    const struct http_hdr *host;          /* the Host field, or NULL */
    const struct http_hdr *authorization; /* the Authorization field, or NULL */
    int64_t content_length;    /* declared length, -1 if none */
    unsigned chunked : 1;      /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1;   /* the client allows another request on this connection */
    unsigned expect_continue : 1; /* Expect: 100-continue */
};

/* Parses the complete head buf[0..len) (validated by http_head_scan, leading empty lines already
 * skipped) into r; strings live in arena a. Returns 0, or an HTTP status (400, 405, 413, 417,
 * 505) with *reason set. */
int http_req_parse(struct http_req *r, struct arena *a, const char *buf, size_t len,
                   const struct http_limits *lim, const char **reason);

/* http_name_class(name, len) & HNAME_DROPPED: a request field never forwarded upstream. */
int http_header_dropped(const char *name, size_t len);

/* Checks an origin-form target: returns 0 or 400 with *reason. Exposed for tests. */
int http_target_check(const char *t, size_t len, size_t *path_len, const char **reason);

/* The value of the first header named name (case-insensitive), or NULL. */
const struct http_hdr *http_req_header(const struct http_req *r, const char *name);

#endif
