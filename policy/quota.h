/* The quota engine (DESIGN §6): per-minute limits over an exact rolling 60-second window and
 * per-day limits over the local calendar day, for the account, the operation, the unit and the
 * whole province, checked and counted atomically: a request is admitted only if every counter
 * passes, and only then are all of them incremented. Refusals consume nothing.
 *
 * A quota_plan lists the counters for one request; a backend (Redis, policy/store_redis.c, or
 * memory, policy/store_mem.c) decides it and reports a quota_result. Keys never contain
 * limits, so a reload never resets counts; an account's keys share the hash tag {a:<id>}. */
#ifndef LG_QUOTA_H
#define LG_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "policy/clock.h"
#include "policy/decide.h"

#define QUOTA_MAX_CHECKS 8
#define QUOTA_WINDOW_MS 60000
/* Longest store.key_prefix: with names of POL_NAME_MAX, the longest key
 * ("<prefix>:{a:<account>}:m:<operation>") then fits quota_check.key. */
#define QUOTA_PREFIX_MAX 20

enum quota_kind {
    QUOTA_MINUTE, /* rolling 60 s window */
    QUOTA_DAY,    /* local calendar day */
};

/* Whose counter it is (metrics count near-limit events per level, never per account). */
enum quota_level {
    QLEVEL_ACCOUNT,
    QLEVEL_OPERATION, /* the account's count of one operation */
    QLEVEL_UNIT,
    QLEVEL_GLOBAL,
    QLEVEL__COUNT
};

extern const char *const quota_level_text[];

struct quota_check {
    enum quota_kind kind;
    enum quota_level level;
    int limit;
    /* Lengths of the three strings below, so the command and headers need no strlen. */
    uint16_t key_len, field_len, name_len;
    char key[160];  /* store key: a sorted set (minute) or a hash (day) */
    char field[96]; /* day: the hash field counted ("n", or "o:<operation>") */
    char name[96];  /* policy name in RateLimit headers and problems: "account-per-minute" */
};

struct quota_plan {
    char account[POL_NAME_MAX + 1];
    char susp_key[128];      /* suspension flag of the account */
    char last_key[128];      /* last use of the account */
    uint16_t susp_len, last_len, member_len; /* their lengths, and member's */
    struct quota_check checks[QUOTA_MAX_CHECKS];
    int n;
    int64_t now_ms;          /* the decision time, or 0: use the store's clock (Redis TIME) */
    struct local_days days;  /* local days around the proxy's clock, for the day counters */
    char member[64];         /* unique id of this request (window entries) */
};

/* *dst = *src without the unused checks (most of the 3 KB). Keep it in step with the struct. */
void quota_plan_copy(struct quota_plan *dst, const struct quota_plan *src);

enum quota_outcome {
    QUOTA_ADMITTED,
    QUOTA_EXCEEDED,
    QUOTA_SUSPENDED,
    QUOTA_STORE_ERROR, /* the store could not decide (and no local fallback applied) */
};

extern const char *const quota_outcome_text[];

struct quota_counter {
    int used;         /* count after the decision */
    int limit;
    int64_t reset_ms; /* time until this counter frees capacity (minute) or resets (day) */
    int over;         /* 1: this counter refused the request */
};

struct quota_result {
    enum quota_outcome outcome;
    int degraded;        /* decided by the per-instance fallback because the store failed */
    int64_t now_ms;      /* the clock the decision used */
    int32_t day;         /* local day (YYYYMMDD) the day counters used */
    int n;
    struct quota_counter c[QUOTA_MAX_CHECKS];
    char reason[160];    /* store error, or the suspension reason */
    int64_t store_us;    /* time the store took (round trip) */
};

/* Builds the plan for an allowed decision d. prefix is the key prefix ("lg", at most
 * QUOTA_PREFIX_MAX characters: longer ones are cut, and config refuses them); now_ms is the
 * time to decide at, or 0 to use the store's clock; proxy_now_ms places the day boundaries.
 * With d->op NULL the plan has the account's, unit's and global counters only (what an
 * operator is shown of an account). */
void quota_plan_build(struct quota_plan *pl, const char *prefix, const struct pol_decision *d,
                      int64_t now_ms, int64_t proxy_now_ms, const char *member);

/* Key of the suspension flag of an account. */
void quota_susp_key(char *out, size_t len, const char *prefix, const char *account);

/* Seconds a refused client should wait (the largest reset among the counters that refused),
 * at least 1. */
int quota_retry_after(const struct quota_result *r);

/* Appends "RateLimit-Policy: ...\r\nRateLimit: ...\r\n" for the plan's counters to buf. */
void quota_headers(char *buf, size_t len, const struct quota_plan *pl,
                   const struct quota_result *r);

/* Comma-separated names of the counters that refused ("account-per-minute, unit-per-day"). */
void quota_violated(char *buf, size_t len, const struct quota_plan *pl,
                    const struct quota_result *r);

/* The in-memory backend (store_mem.c): same semantics, one instance. Thread-safe. */
struct quota_mem;
struct quota_mem *quota_mem_new(void);
void quota_mem_free(struct quota_mem *m);
/* Decides pl; divisor > 1 divides every limit (the degraded per-instance budget). */
void quota_mem_admit(struct quota_mem *m, const struct quota_plan *pl, int divisor,
                     struct quota_result *res);

/* Reading the store without changing it (operators' views: usage, suspension, last use). */
enum quota_read_kind {
    QREAD_GET,    /* a string key: suspension reason, last use (ms) */
    QREAD_WINDOW, /* a minute counter: entries in the rolling window now */
    QREAD_DAY,    /* a day counter: the field's count for the current local day */
};

struct quota_read {
    enum quota_read_kind kind;
    char key[160];
    char field[96];   /* QREAD_DAY */
    /* results */
    int found;        /* QREAD_GET: the key exists */
    char str[200];    /* QREAD_GET: its value (truncated) */
    long long num;    /* counts; QREAD_GET: the value as a number when it is one, else 0 */
};

/* Reads rd[0..n) at now_ms (0: the store's clock) on the local days given; fills the results.
 * Returns the time used, or -1 if it is outside days. */
int64_t quota_mem_read(struct quota_mem *m, struct quota_read *rd, int n, int64_t now_ms,
                       const struct local_days *days);
/* Sets key to value, or deletes it when value is NULL. Returns 1 if the key existed. */
int quota_mem_set(struct quota_mem *m, const char *key, const char *value);

#endif
