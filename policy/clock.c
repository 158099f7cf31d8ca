/* Local time in the configured zone, through the C library's tz database support. */
#include "policy/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <stdatomic.h>

static char zone_name[128] = "UTC";
static atomic_int zone_gen = 1; /* changes with the zone: the per-thread caches below are stale */

/* localtime_r and mktime take the C library's tz lock and re-check TZ on every call (about
 * 10,000 instructions for the four day starts). A request needs the local day and minute, which
 * change once a day and once a minute: each thread keeps the last answers. */
static _Thread_local struct {
    int gen;
    struct local_days days;  /* valid while days.start_ms[1] <= t < days.start_ms[2] */
    int mgen;
    int64_t minute;          /* UTC minute (t / 60 s) of wday and min */
    int wday, min;
} cache;

int clock_set_zone(const char *zone, char *err, size_t errlen)
{
    char path[300];
    struct stat st;
    if (zone[0] == '\0' || zone[0] == '/' || strstr(zone, "..") != NULL ||
        strlen(zone) >= sizeof zone_name) {
        snprintf(err, errlen, "\"%s\" is not an IANA time zone name", zone);
        return -1;
    }
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zone);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "unknown time zone \"%s\" (is tzdata installed?)", zone);
        return -1;
    }
    snprintf(zone_name, sizeof zone_name, "%s", zone);
    setenv("TZ", zone, 1);
    tzset();
    atomic_fetch_add(&zone_gen, 1);
    return 0;
}

const char *clock_zone(void)
{
    return zone_name;
}

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

void clock_local_days(int64_t t_ms, struct local_days *d)
{
    int gen = atomic_load_explicit(&zone_gen, memory_order_relaxed);
    if (cache.gen == gen && t_ms >= cache.days.start_ms[1] && t_ms < cache.days.start_ms[2]) {
        *d = cache.days;
        return;
    }
    time_t t = (time_t)floor_div(t_ms, 1000);
    struct tm now;
    localtime_r(&t, &now);
    for (int i = 0; i < 4; i++) {
        struct tm tm = {0};
        tm.tm_year = now.tm_year;
        tm.tm_mon = now.tm_mon;
        tm.tm_mday = now.tm_mday + i - 1;
        tm.tm_isdst = -1;
        time_t s = mktime(&tm); /* normalises tm to the real date */
        d->start_ms[i] = (int64_t)s * 1000;
        if (i < 3)
            d->id[i] = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    }
    cache.days = *d;
    cache.gen = gen;
}

void clock_local_minute(int64_t t_ms, int *wday, int *minute)
{
    int gen = atomic_load_explicit(&zone_gen, memory_order_relaxed);
    int64_t m = floor_div(t_ms, 60000); /* zones are whole minutes off UTC */
    if (cache.mgen != gen || cache.minute != m) {
        time_t t = (time_t)floor_div(t_ms, 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        cache.wday = tm.tm_wday;
        cache.min = tm.tm_hour * 60 + tm.tm_min;
        cache.minute = m;
        cache.mgen = gen;
    }
    *wday = cache.wday;
    *minute = cache.min;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

int clock_parse_time(const char *s, int64_t *out_s)
{
    int y, mo, d, h = 0, mi = 0, se = 0;
    size_t n = strlen(s);
    if (n < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
        y < 1970)
        return -1;
    if (n == 10) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_isdst = -1};
        *out_s = (int64_t)mktime(&tm);
        return 0;
    }
    if (n < 20 || s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' ||
        digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se) || h > 23 || mi > 59 ||
        se > 59)
        return -1;
    int64_t off = 0;
    const char *z = s + 19;
    if (strcmp(z, "Z") != 0) {
        int oh, om;
        if (strlen(z) != 6 || (z[0] != '+' && z[0] != '-') || digits(z + 1, 2, &oh) ||
            z[3] != ':' || digits(z + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (z[0] == '-' ? -1 : 1);
    }
    *out_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    return 0;
}

void clock_format_utc(int64_t t_s, char *buf, size_t len)
{
    time_t t = (time_t)t_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
