/* Wall-clock time for policy decisions: the configured IANA time zone, local calendar days (with
 * their real length on DST days), local weekday and minute for role time windows, and the date
 * formats used in the policy file. The zone is process-wide (TZ), set once before threads start. */
#ifndef LG_CLOCK_H
#define LG_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Local days around an instant: start[0] is the start of the previous local day, start[1] of
 * the current one, start[2] of the next, start[3] of the one after (all UTC milliseconds).
 * id[i] is day i as YYYYMMDD. */
struct local_days {
    int64_t start_ms[4];
    int32_t id[3];
};

/* Checks that zone names a zone in the system database and makes it the process zone.
 * Returns 0, or -1 with a message. Call before starting threads. */
int clock_set_zone(const char *zone, char *err, size_t errlen);
const char *clock_zone(void);

/* UTC milliseconds now (CLOCK_REALTIME). */
int64_t clock_now_ms(void);

void clock_local_days(int64_t t_ms, struct local_days *d);
/* Local weekday (0 = Sunday) and minute of the day (0..1439) at t. */
void clock_local_minute(int64_t t_ms, int *wday, int *minute);

/* Parses "YYYY-MM-DD" (local midnight in the process zone) or RFC 3339
 * "YYYY-MM-DDTHH:MM:SS(Z|+HH:MM|-HH:MM)" into UTC seconds. Returns 0 or -1. */
int clock_parse_time(const char *s, int64_t *out_s);
/* Formats UTC seconds as "YYYY-MM-DDTHH:MM:SSZ". */
void clock_format_utc(int64_t t_s, char *buf, size_t len);

#endif
