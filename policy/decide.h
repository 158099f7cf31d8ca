/* The decision for one request, before quotas: who is calling (bearer token → account), what
 * they ask for (method + path + SOAPAction → operation, the citizen ID it concerns, the purpose),
 * and whether one of their roles grants it now. The proxy fills a pol_request from the parsed
 * head and body; nothing here knows about sockets or buffers. */
#ifndef LG_DECIDE_H
#define LG_DECIDE_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

/* Every outcome, allowed or refused, with its HTTP status and problem type (decision_info). */
enum decision {
    DECISION_ALLOW,              /* passed authentication and grants; quotas come next */
    DECISION_DENY_NO_CREDENTIAL, /* 401 credential-required */
    DECISION_DENY_CREDENTIAL,    /* 401 invalid-credential: unknown, wrong or malformed */
    DECISION_DENY_EXPIRED,       /* 401 credential-expired */
    DECISION_DENY_NOT_YET_VALID, /* 401 credential-not-yet-valid */
    DECISION_DENY_DISABLED,      /* 403 account-disabled */
    DECISION_DENY_SUSPENDED,     /* 403 account-suspended (flag in the quota store) */
    DECISION_DENY_UNKNOWN_ROUTE, /* 404 unknown-operation */
    DECISION_DENY_NOT_GRANTED,   /* 403 operation-not-granted */
    DECISION_DENY_HOURS,         /* 403 outside-permitted-hours */
    DECISION_DENY_PURPOSE,       /* 403 purpose-required */
    DECISION_DENY_BAD_PURPOSE,   /* 400 invalid-purpose */
    DECISION_DENY_BAD_SUBJECT,   /* 400 invalid-subject */
    DECISION_DENY_AMBIGUOUS,     /* 400 ambiguous-request (repeated SOAPAction, purpose, ...) */
    DECISION_DENY_QUOTA,         /* 429 quota-exceeded */
    DECISION_DENY_STORE,         /* 503 quota-store-unavailable */
    DECISION__COUNT
};

struct decision_info {
    const char *name;    /* "DENY_QUOTA", for logs and audit */
    int status;          /* HTTP status */
    const char *problem; /* problem type slug */
};

extern const struct decision_info decision_info[DECISION__COUNT];

/* A header value as the proxy saw it. count is how many fields had that name. */
struct pol_hval {
    const char *v;
    size_t len;
    int count;
};

struct pol_request {
    int method;                /* enum http_method */
    const char *path;          /* canonical path, no query */
    size_t path_len;
    const char *query;         /* after '?', or NULL */
    size_t query_len;
    struct pol_hval authorization;
    int auth_trailing_ws;      /* whitespace after the credential (trimmed by the parser) */
    struct pol_hval soap_action;
    struct pol_hval dossier;   /* X-Dossier-Id */
    struct pol_hval procedure; /* X-Procedure-Code */
    const char *body;          /* complete decoded body, or NULL */
    size_t body_len;
    int64_t now_ms;            /* UTC milliseconds the decision is made at */
};

/* Limits that apply to this request; 0 where none applies. */
struct pol_limits {
    int acct_minute, acct_day;
    int op_minute, op_day;
    int unit_minute, unit_day;
    int global_minute, global_day;
};

struct pol_decision {
    enum decision decision;
    char detail[200];                       /* human-readable reason, no secrets */
    const struct pol_account *account;      /* NULL before authentication */
    const struct pol_credential *credential;
    const struct pol_operation *op;         /* NULL before classification */
    char subject[POL_SUBJECT_LEN + 1];      /* citizen ID, "" when none (never logged) */
    char dossier[65];                       /* purpose codes, "" when absent */
    char procedure[65];
    struct pol_limits limits;
};

/* Decides r against p. Pointers in d point into p, which the caller keeps referenced. */
void policy_decide(const struct policy *p, const struct pol_request *r, struct pol_decision *d);

/* The account-wide, unit and global limits of a (no per-operation ones). */
void policy_account_limits(const struct policy *p, const struct pol_account *a,
                           struct pol_limits *l);

/* Only the authentication step (for refusing before a request body is read). */
enum decision policy_authenticate(const struct policy *p, const struct pol_request *r,
                                  struct pol_decision *d);

/* For tests: the subject of op in r, validated (12 digits). Returns 0, or a decision. */
enum decision decide_subject(const struct pol_operation *op, const struct pol_request *r,
                             const char **seg_at, const size_t *seg_len, char out[13],
                             char *detail, size_t dlen);

#endif
