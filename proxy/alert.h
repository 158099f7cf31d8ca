/* Misuse alerts (issue 5): what happens when a signal reaches its threshold — an error log
 * line, the alert metric and the status page's list, an "alert" audit record and, where the
 * policy says so, the account's suspension through the quota store (so every instance refuses
 * it at the next request), itself recorded. */
#ifndef LG_ALERT_H
#define LG_ALERT_H

#include <stdint.h>

struct worker;
struct policy;

/* Counts one event of kind for key (an account id or a client address) and raises the alert
 * if it reaches the policy's threshold. item: the citizen, for the distinct-citizens signal.
 * Worker thread. */
void alert_event(struct worker *w, const struct policy *p, int kind, const char *key,
                 uint64_t item, const char *request_id);

#endif
