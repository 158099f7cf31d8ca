/* The policy: operations (routes), roles (grants, quotas, time windows), units, global quotas
 * and accounts with their credentials. A policy is an immutable snapshot loaded and validated
 * whole from one JSON file; requests hold a reference while they use it, and a reload swaps
 * in a new snapshot without touching the old one (DESIGN §5). */
#ifndef LG_POLICY_H
#define LG_POLICY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/route.h"

#define POL_SUBJECT_LEN 12 /* a citizen ID: 12 digits */
#define POL_NAME_MAX 64    /* account, unit, role and operation names */

struct pol_quota {
    int per_minute; /* 0: no limit at this level */
    int per_day;
};

enum pol_subject_src {
    SUBJ_NONE,  /* the operation has no subject */
    SUBJ_PATH,  /* a named path segment */
    SUBJ_QUERY, /* a query parameter */
    SUBJ_JSON,  /* a JSON body member, by JSON pointer */
    SUBJ_XML,   /* the text of an XML element (local name) */
};

struct pol_operation {
    char *name;               /* "citizen.lookup" */
    int idx;                  /* position in policy->ops */
    int method;               /* enum http_method */
    char *path;               /* the pattern as written */
    struct route route;
    char *soap_action;        /* required SOAPAction value, or NULL */
    enum pol_subject_src subject_src;
    char *subject_name;       /* segment, parameter, JSON pointer or element name */
    int subject_seg;          /* SUBJ_PATH: segment index */
    int need_dossier;         /* X-Dossier-Id required */
    int need_procedure;       /* X-Procedure-Code required */
    int stat_slot;            /* metrics slot; set by the proxy before the snapshot is used */
};

struct pol_window {
    unsigned days;  /* bit i: weekday i (0 = Sunday) */
    int from_min;   /* minute of the day, inclusive */
    int to_min;     /* exclusive; 1440 for 24:00 */
};

struct pol_role {
    char *name;
    unsigned char *grants;      /* [nops]: 1 if the role grants the operation */
    struct pol_quota quota;     /* account-wide quota this role gives */
    struct pol_quota *op_quota; /* [nops]: per-operation quota, zeros when none */
    struct pol_window *windows; /* permitted hours; none: any time */
    size_t nwindows;
};

struct pol_unit {
    char *name;
    struct pol_quota quota; /* aggregate over the unit's accounts; zeros: none */
};

struct pol_account;

struct pol_credential {
    unsigned char sha256[32];   /* SHA-256 of the token */
    int64_t issued;             /* UTC seconds */
    int64_t expires;            /* UTC seconds */
    struct pol_account *account;
};

struct pol_account {
    char *id;
    struct pol_unit *unit;
    struct pol_role **roles;
    size_t nroles;
    int has_quota;              /* quota overrides what the roles give */
    struct pol_quota quota;
    int disabled;
    struct pol_credential *creds;
    size_t ncreds;
};

/* A misuse signal's threshold: count events within window_s seconds raise an alert (once per
 * window per account or address); suspend: the account is suspended too. count 0: off. */
struct pol_signal {
    int count;
    int window_s;
    int suspend;
};

enum pol_signal_kind {
    PSIG_QUOTA_REFUSALS,   /* quota refusals of one account */
    PSIG_OUTSIDE_HOURS,    /* lookups of one account refused outside its permitted hours */
    PSIG_DISTINCT_SUBJECTS,/* distinct citizens one account looked up */
    PSIG_AUTH_FAILURES,    /* 401s answered to one client address (never suspends) */
    PSIG__COUNT
};

extern const char *const pol_signal_names[];

struct policy {
    atomic_int refs;
    char *path;                  /* file it was loaded from */
    char version[80];            /* "version" from the file, else digest prefix */
    char digest[65];             /* SHA-256 of the file, hex */
    int max_credential_age_days;
    struct pol_operation *ops;
    size_t nops;
    struct pol_role *roles;
    size_t nroles;
    struct pol_unit *units;
    size_t nunits;
    struct pol_account *accounts;
    size_t naccounts;
    struct pol_quota global;     /* whole-province quota; zeros: none */
    struct pol_signal signals[PSIG__COUNT]; /* misuse thresholds ("signals") */
    struct pol_credential **cred_table; /* open addressing by digest, power-of-two size */
    size_t cred_mask;
};

/* Loads and validates path. Returns a snapshot with one reference, or NULL with one line per
 * error in errbuf ("file:line:col: account \"x\": unknown role \"y\""). */
struct policy *policy_load(const char *path, char *errbuf, size_t errlen);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* The credential whose digest equals sha256 (compared in constant time), or NULL. */
const struct pol_credential *policy_find_credential(const struct policy *p,
                                                    const unsigned char sha256[32]);
const struct pol_account *policy_find_account(const struct policy *p, const char *id);

/* Writes a fresh token (base64url of 32 random bytes, with a "lg_" prefix) into tok (>= 48
 * bytes) and the hex SHA-256 of it into hex (>= 65 bytes). */
void policy_new_token(char *tok, size_t toklen, char *hex, size_t hexlen);
/* Hex SHA-256 of a token. */
void policy_token_digest(const char *tok, size_t len, unsigned char out[32]);

#endif
