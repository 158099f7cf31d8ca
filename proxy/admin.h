/* The admin listener (DESIGN §8), on the main thread's event loop: /healthz (no
 * authentication), /readyz, /metrics, /status and /admin/v1/ (accounts, suspend and resume,
 * reports, reload), for the IT centre's operators. Every request but /healthz needs an admin
 * token (Authorization: Bearer, or Basic with the token as the password for a browser); every
 * /admin/v1/ request, every status page view and every refused authentication is an audit
 * record naming the admin. Requests are read with the same strict head scanner as the data
 * path. */
#ifndef LG_ADMIN_H
#define LG_ADMIN_H

#include <stddef.h>

struct server;
struct event_base;
struct admin;

/* Binds the listener (when admin.address is not ""), connects its own quota store and starts
 * the metrics sampler. NULL with a message. */
struct admin *admin_new(struct server *s, struct event_base *base, char *err, size_t errlen);
/* Closes every admin connection; before the audit log closes. */
void admin_free(struct admin *a);
/* Reads the admin listener's TLS files again and uses them for new connections; 0, or -1 with
 * the reason in err and the current context kept. Nothing to do without admin TLS. */
int admin_reload_tls(struct admin *a, char *err, size_t errlen);

#endif
