/* Strict check of a raw request head, byte by byte, before http-parser sees it. http-parser 2.9
 * is lenient (bare LF, obs-fold, spaces before the colon, any header count); this scanner
 * enforces RFC 9112's grammar on the bytes as they arrive, so garbage is refused at once and
 * nothing ambiguous reaches the parser. See ../shared/SECURITY-CASES.md. */
#ifndef LG_HTTP_HEAD_H
#define LG_HTTP_HEAD_H

#include <stddef.h>

struct http_limits {
    size_t head_bytes;         /* whole head; above → 431 */
    size_t request_line_bytes; /* request line; above → 414 */
    size_t header_count;       /* fields; above → 431 */
    size_t body_bytes;         /* declared or decoded body; above → 413 */
};

/* Incremental scan state; zero it for each new request. */
struct head_scan {
    size_t off;       /* start of the first line not yet validated */
    size_t start;     /* offset of the request line (leading empty lines are skipped) */
    size_t nfields;   /* header fields seen */
    size_t head_len;  /* when done: bytes up to and including the final CRLF */
    int have_reqline; /* the request line has been validated */
};

enum { HEAD_AGAIN = 0, HEAD_DONE = 1 };

/* Scans buf[0..len) (the whole head so far, contiguous). Returns HEAD_AGAIN when more bytes are
 * needed, HEAD_DONE when the head is complete (s->head_len set), or an HTTP status (400, 414,
 * 431, 505) with *reason set to a short static description. Safe to call again with a longer
 * buffer: only lines not yet validated are scanned. */
int http_head_scan(struct head_scan *s, const char *buf, size_t len,
                   const struct http_limits *lim, const char **reason);

/* 1 for a tchar (RFC 9110 token character). */
int http_is_tchar(unsigned char c);

/* What a field name is to lookupgate: HNAME_SENSITIVE, its value must be plain ASCII
 * (identity, framing, routing); HNAME_DROPPED, it is never forwarded upstream (hop-by-hop,
 * framing, set by lookupgate, identity-like). Case-insensitive. */
#define HNAME_SENSITIVE 1u
#define HNAME_DROPPED 2u
unsigned http_name_class(const char *name, size_t len);

/* http_name_class(name, len) & HNAME_SENSITIVE */
int http_header_is_sensitive(const char *name, size_t len);

#endif
