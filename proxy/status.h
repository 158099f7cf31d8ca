/* The status page (/status): one self-contained HTML page for a person at the IT centre — the
 * health of each dependency, traffic and refusals over the last minutes, the accounts closest
 * to or over their limits, suspended accounts and recent alerts. No scripts and no external
 * assets; it reloads itself (meta refresh). */
#ifndef LG_STATUS_H
#define LG_STATUS_H

#include <stdint.h>

struct server;
struct policy;
struct quota_read;
struct evbuffer;

/* The store reads the page needs (per account: suspension, minute and day usage); *out is
 * allocated. Returns how many. */
int status_reads(struct server *s, const struct policy *p, struct quota_read **out);

/* What the page is rendered from, besides the process's own state. */
struct status_input {
    const struct quota_read *rd; /* status_reads' results */
    int n;
    int64_t now_ms;              /* the time they were read at */
    const char *store_err;       /* why they could not be read, or NULL */
    int upstream_ok;             /* a connection to the upstream could be opened */
    const char *upstream_err;
};

void status_render(struct server *s, const struct policy *p, const struct status_input *in,
                   struct evbuffer *out);

#endif
