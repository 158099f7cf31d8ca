/* Misuse signals (policy "signals"): counts, per account or per client address, of the events
 * that precede abuse — quota refusals, refusals outside permitted hours, distinct citizens
 * looked up, 401s — over each signal's window, and the moment a threshold is reached. Counted
 * per instance (only refusals and admitted lookups this process saw); an alert is raised at
 * most once per window per key. Thread-safe; the table is bounded. */
#ifndef LG_SIGNALS_H
#define LG_SIGNALS_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

struct sigtrack;

struct sigtrack *sigtrack_new(size_t max_keys);
void sigtrack_free(struct sigtrack *t);

/* Records one event of kind (enum pol_signal_kind) for key at now_ms under threshold th. For
 * PSIG_DISTINCT_SUBJECTS, item identifies the citizen (repeats do not count). Returns the
 * count that reached th->count when this event raises the alert, else 0. */
int sigtrack_event(struct sigtrack *t, int kind, const char *key, uint64_t item,
                   const struct pol_signal *th, int64_t now_ms);

/* A plain sliding-window count for key under its own kind (>= PSIG__COUNT): adds an event
 * when add is set, and returns the events within the last window_s seconds (at most limit are
 * kept). *retry_ms gets how long until one of them leaves the window. */
int sigtrack_window(struct sigtrack *t, int kind, const char *key, int limit, int window_s,
                    int64_t now_ms, int add, int64_t *retry_ms);

#endif
