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
int status_reads(struct server *s, const struct policy *p, int64_t now_ms,
                 struct quota_read **out);
/* Renders the page from the reads' results (store_err: why they failed, or NULL). */
void status_render(struct server *s, const struct policy *p, const struct quota_read *rd, int n,
                   int64_t now_ms, const char *store_err, struct evbuffer *out);

#endif
