/* Authentication, classification, subject and purpose extraction, and grants. Quotas are the
 * quota engine's (policy/quota.c); this file decides everything that needs no shared state. */
#include "policy/decide.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "policy/clock.h"

const struct decision_info decision_info[DECISION__COUNT] = {
    [DECISION_ALLOW] = {"ALLOW", 200, "allowed"},
    [DECISION_DENY_NO_CREDENTIAL] = {"DENY_NO_CREDENTIAL", 401, "credential-required"},
    [DECISION_DENY_CREDENTIAL] = {"DENY_CREDENTIAL", 401, "invalid-credential"},
    [DECISION_DENY_EXPIRED] = {"DENY_EXPIRED", 401, "credential-expired"},
    [DECISION_DENY_NOT_YET_VALID] = {"DENY_NOT_YET_VALID", 401, "credential-not-yet-valid"},
    [DECISION_DENY_DISABLED] = {"DENY_DISABLED", 403, "account-disabled"},
    [DECISION_DENY_SUSPENDED] = {"DENY_SUSPENDED", 403, "account-suspended"},
    [DECISION_DENY_UNKNOWN_ROUTE] = {"DENY_UNKNOWN_ROUTE", 404, "unknown-operation"},
    [DECISION_DENY_NOT_GRANTED] = {"DENY_NOT_GRANTED", 403, "operation-not-granted"},
    [DECISION_DENY_HOURS] = {"DENY_HOURS", 403, "outside-permitted-hours"},
    [DECISION_DENY_PURPOSE] = {"DENY_PURPOSE", 403, "purpose-required"},
    [DECISION_DENY_BAD_PURPOSE] = {"DENY_BAD_PURPOSE", 400, "invalid-purpose"},
    [DECISION_DENY_BAD_SUBJECT] = {"DENY_BAD_SUBJECT", 400, "invalid-subject"},
    [DECISION_DENY_AMBIGUOUS] = {"DENY_AMBIGUOUS", 400, "ambiguous-request"},
    [DECISION_DENY_QUOTA] = {"DENY_QUOTA", 429, "quota-exceeded"},
    [DECISION_DENY_STORE] = {"DENY_STORE", 503, "quota-store-unavailable"},
};

#define TOKEN_MAX 512

static enum decision deny(struct pol_decision *d, enum decision k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum decision deny(struct pol_decision *d, enum decision k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->detail, sizeof d->detail, fmt, ap);
    va_end(ap);
    d->decision = k;
    return k;
}

static int b64token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* "Bearer" 1*SP token68, nothing after: the token's offset and length, or -1. */
static int bearer_token(const struct pol_request *r, size_t *off, size_t *len)
{
    const char *v = r->authorization.v;
    size_t n = r->authorization.len;
    if (r->auth_trailing_ws || n < 8 || !ascii_prefix_nocase(v, n, "bearer ") || v[7] == ' ')
        return -1;
    size_t i = 7, end = n;
    while (end > i && v[end - 1] == '=')
        end--;
    if (end == i || n - 7 > TOKEN_MAX)
        return -1;
    for (size_t k = i; k < end; k++)
        if (!b64token_char((unsigned char)v[k]))
            return -1;
    *off = i;
    *len = n - i;
    return 0;
}

enum decision policy_authenticate(const struct policy *p, const struct pol_request *r,
                                  struct pol_decision *d)
{
    size_t off, len;
    if (r->authorization.count == 0)
        return deny(d, DECISION_DENY_NO_CREDENTIAL, "this operation needs a bearer credential");
    unsigned char md[32];
    int ok = bearer_token(r, &off, &len) == 0;
    /* Hash even a malformed value, so that the answer takes the same time either way. */
    policy_token_digest(ok ? r->authorization.v + off : "", ok ? len : 0, md);
    const struct pol_credential *cr = ok ? policy_find_credential(p, md) : NULL;
    if (cr == NULL)
        return deny(d, DECISION_DENY_CREDENTIAL, "the credential is not valid");
    d->credential = cr;
    d->account = cr->account;
    int64_t now = r->now_ms / 1000;
    char when[32];
    if (now < cr->issued) {
        clock_format_utc(cr->issued, when, sizeof when);
        return deny(d, DECISION_DENY_NOT_YET_VALID, "the credential is valid from %s", when);
    }
    if (now >= cr->expires) {
        clock_format_utc(cr->expires, when, sizeof when);
        return deny(d, DECISION_DENY_EXPIRED, "the credential expired at %s", when);
    }
    if (cr->account->disabled)
        return deny(d, DECISION_DENY_DISABLED, "the account is disabled");
    return DECISION_ALLOW;
}

static int soap_equal(const struct pol_operation *op, const struct pol_hval *h)
{
    if (op->soap_action == NULL)
        return 1;
    if (h->count != 1)
        return 0;
    const char *v = h->v;
    size_t n = h->len;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    return strlen(op->soap_action) == n && memcmp(op->soap_action, v, n) == 0;
}

/* Finds the operation; fills seg_at/seg_len with its path segments. */
static enum decision classify(const struct policy *p, const struct pol_request *r,
                              struct pol_decision *d, const char **seg_at, size_t *seg_len)
{
    const char *meth = http_method_str((enum http_method)r->method);
    int path_known = 0;
    if (r->soap_action.count > 1)
        return deny(d, DECISION_DENY_AMBIGUOUS, "more than one SOAPAction");
    for (size_t i = 0; i < p->nops; i++) {
        const struct pol_operation *op = &p->ops[i];
        if (!route_match(&op->route, r->path, r->path_len, NULL, NULL))
            continue;
        path_known = 1;
        if (op->method != r->method || !soap_equal(op, &r->soap_action))
            continue;
        route_match(&op->route, r->path, r->path_len, seg_at, seg_len);
        d->op = op;
        return DECISION_ALLOW;
    }
    if (path_known)
        return deny(d, DECISION_DENY_NOT_GRANTED, "no operation is %s on this path%s", meth,
                    r->soap_action.count ? " with this SOAPAction" : "");
    return deny(d, DECISION_DENY_UNKNOWN_ROUTE, "no operation matches this path");
}

static int in_window(const struct pol_role *role, int wday, int minute)
{
    if (role->nwindows == 0)
        return 1;
    for (size_t i = 0; i < role->nwindows; i++) {
        const struct pol_window *w = &role->windows[i];
        if ((w->days & (1u << wday)) && minute >= w->from_min && minute < w->to_min)
            return 1;
    }
    return 0;
}

static enum decision grant(const struct pol_request *r, struct pol_decision *d)
{
    const struct pol_account *a = d->account;
    const struct pol_operation *op = d->op;
    int granted = 0, now_ok = 0, wday, minute;
    clock_local_minute(r->now_ms, &wday, &minute);
    for (size_t i = 0; i < a->nroles; i++) {
        if (!a->roles[i]->grants[op->idx])
            continue;
        granted = 1;
        now_ok |= in_window(a->roles[i], wday, minute);
    }
    if (!granted)
        return deny(d, DECISION_DENY_NOT_GRANTED, "no role of this account grants %s",
                    op->name);
    if (!now_ok)
        return deny(d, DECISION_DENY_HOURS, "%s is not permitted at this time (%02d:%02d local)",
                    op->name, minute / 60, minute % 60);
    return DECISION_ALLOW;
}

static int code_ok(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '/'))
            return 0;
    }
    return 1;
}

static enum decision purpose(const struct pol_request *r, struct pol_decision *d)
{
    const struct {
        const struct pol_hval *h;
        const char *name;
        int need;
        char *out;
    } f[] = {
        {&r->dossier, "X-Dossier-Id", d->op->need_dossier, d->dossier},
        {&r->procedure, "X-Procedure-Code", d->op->need_procedure, d->procedure},
    };
    for (size_t i = 0; i < ARRAY_LEN(f); i++) {
        if (f[i].h->count > 1)
            return deny(d, DECISION_DENY_AMBIGUOUS, "more than one %s", f[i].name);
        if (f[i].h->count == 1 && !code_ok(f[i].h->v, f[i].h->len))
            return deny(d, DECISION_DENY_BAD_PURPOSE, "%s must be 1 to 64 letters, digits or "
                        "'.', '-', '_', '/'", f[i].name);
        if (f[i].h->count == 1)
            memcpy(f[i].out, f[i].h->v, f[i].h->len), f[i].out[f[i].h->len] = '\0';
        else if (f[i].need)
            return deny(d, DECISION_DENY_PURPOSE, "%s requires %s", d->op->name, f[i].name);
    }
    return DECISION_ALLOW;
}

/* --- subjects -------------------------------------------------------------------------- */

static int citizen_id_ok(const char *v, size_t n)
{
    if (n != POL_SUBJECT_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return 1;
}

/* Percent-decoded comparison of a query parameter name with want. */
static int qname_eq(const char *s, size_t n, const char *want)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++, w++) {
        int c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n) {
            int hi = hex_digit_value((unsigned char)s[i + 1]);
            int lo = hex_digit_value((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = hi * 16 + lo;
                i += 2;
            }
        } else if (c == '+') {
            c = ' ';
        }
        if (want[w] == '\0' || want[w] != c)
            return 0;
    }
    return want[w] == '\0';
}

static int subject_from_query(const struct pol_request *r, const char *name, const char **v,
                              size_t *n)
{
    int found = 0;
    size_t i = 0;
    while (r->query && i < r->query_len) {
        size_t j = i;
        while (j < r->query_len && r->query[j] != '&')
            j++;
        const char *eq = memchr(r->query + i, '=', j - i);
        size_t nl = eq ? (size_t)(eq - (r->query + i)) : j - i;
        if (qname_eq(r->query + i, nl, name)) {
            found++;
            *v = eq ? eq + 1 : r->query + j;
            *n = eq ? (size_t)(r->query + j - (eq + 1)) : 0;
        }
        i = j + 1;
    }
    return found;
}

/* Resolves an RFC 6901 JSON pointer. */
static json_t *json_pointer(json_t *root, const char *ptr)
{
    json_t *cur = root;
    char tok[256];
    while (*ptr == '/' && cur) {
        ptr++;
        size_t o = 0;
        while (*ptr && *ptr != '/' && o + 1 < sizeof tok) {
            if (ptr[0] == '~' && (ptr[1] == '0' || ptr[1] == '1')) {
                tok[o++] = ptr[1] == '0' ? '~' : '/';
                ptr += 2;
            } else {
                tok[o++] = *ptr++;
            }
        }
        tok[o] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            long idx = strtol(tok, &end, 10);
            cur = (*end || !o || (tok[0] == '0' && o > 1)) ? NULL
                                                           : json_array_get(cur, (size_t)idx);
        } else {
            cur = NULL;
        }
    }
    return *ptr ? NULL : cur;
}

/* Finds the text of the one element whose local name is name. Returns the number of such
 * elements (0, 1 or 2 meaning "more than one"), or -1 if the document uses constructs we do
 * not interpret the way an XML parser would (DOCTYPE, entities, CDATA, comments inside). */
static int subject_from_xml(const char *b, size_t n, const char *name, const char **v,
                            size_t *vlen)
{
    size_t nl = strlen(name);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '&')
            return -1;
        if (b[i] != '<')
            continue;
        if (i + 1 < n && b[i + 1] == '!')
            return -1; /* DOCTYPE, CDATA, comments */
        size_t j = i + 1;
        if (j < n && (b[j] == '/' || b[j] == '?'))
            continue;
        size_t s = j;
        while (j < n && b[j] != '>' && b[j] != ' ' && b[j] != '\t' && b[j] != '\r' &&
               b[j] != '\n' && b[j] != '/')
            j++;
        const char *qn = b + s;
        size_t ql = j - s;
        const char *colon = memchr(qn, ':', ql);
        const char *local = colon ? colon + 1 : qn;
        size_t ll = ql - (size_t)(local - qn);
        if (ll != nl || memcmp(local, name, nl) != 0)
            continue;
        while (j < n && b[j] != '>')
            j++;
        if (j >= n || b[j - 1] == '/') {
            found++;
            *v = "";
            *vlen = 0;
            continue;
        }
        size_t t = j + 1, e = t;
        while (e < n && b[e] != '<')
            e++;
        found++;
        *v = b + t;
        *vlen = e - t;
        /* the element must close right after its text */
        if (e + 2 + ql >= n || b[e + 1] != '/' || memcmp(b + e + 2, qn, ql) != 0)
            return -1;
    }
    if (found == 1) {
        while (*vlen && strchr(" \t\r\n", (*v)[0])) {
            (*v)++;
            (*vlen)--;
        }
        while (*vlen && strchr(" \t\r\n", (*v)[*vlen - 1]))
            (*vlen)--;
    }
    return found > 2 ? 2 : found;
}

enum decision decide_subject(const struct pol_operation *op, const struct pol_request *r,
                             const char **seg_at, const size_t *seg_len, char out[13],
                             char *detail, size_t dlen)
{
    const char *v = NULL;
    size_t n = 0;
    int count = 1;
    json_t *root = NULL;
    out[0] = '\0';
    switch (op->subject_src) {
    case SUBJ_NONE:
        return DECISION_ALLOW;
    case SUBJ_PATH:
        v = seg_at[op->subject_seg];
        n = seg_len[op->subject_seg];
        break;
    case SUBJ_QUERY:
        count = subject_from_query(r, op->subject_name, &v, &n);
        break;
    case SUBJ_JSON: {
        json_error_t e;
        root = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
        if (root == NULL) {
            snprintf(detail, dlen, "the body is not a JSON document");
            return DECISION_DENY_BAD_SUBJECT;
        }
        json_t *s = json_pointer(root, op->subject_name);
        count = s != NULL;
        if (s && json_is_string(s)) {
            v = json_string_value(s);
            n = json_string_length(s);
        } else {
            v = "";
        }
        break;
    }
    case SUBJ_XML:
        count = subject_from_xml(r->body ? r->body : "", r->body_len, op->subject_name, &v, &n);
        if (count < 0) {
            snprintf(detail, dlen, "the XML body uses DOCTYPE, entities, CDATA or comments");
            return DECISION_DENY_BAD_SUBJECT;
        }
        break;
    }
    enum decision res = DECISION_ALLOW;
    if (count == 0) {
        snprintf(detail, dlen, "the citizen ID (%s) is missing", op->subject_name);
        res = DECISION_DENY_BAD_SUBJECT;
    } else if (count > 1) {
        snprintf(detail, dlen, "the citizen ID (%s) is given more than once", op->subject_name);
        res = DECISION_DENY_BAD_SUBJECT;
    } else if (!citizen_id_ok(v, n)) {
        snprintf(detail, dlen, "the citizen ID (%s) must be 12 digits", op->subject_name);
        res = DECISION_DENY_BAD_SUBJECT;
    } else {
        memcpy(out, v, POL_SUBJECT_LEN);
        out[POL_SUBJECT_LEN] = '\0';
    }
    json_decref(root);
    return res;
}

/* --- limits ---------------------------------------------------------------------------- */

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static void limits(const struct policy *p, struct pol_decision *d)
{
    const struct pol_account *a = d->account;
    struct pol_limits *l = &d->limits;
    int op_all = 1;
    policy_account_limits(p, a, l);
    for (size_t i = 0; i < a->nroles; i++) {
        const struct pol_role *r = a->roles[i];
        if (!r->grants[d->op->idx])
            continue;
        const struct pol_quota *q = &r->op_quota[d->op->idx];
        if (q->per_minute == 0 && q->per_day == 0)
            op_all = 0;
        l->op_minute = imax(l->op_minute, q->per_minute);
        l->op_day = imax(l->op_day, q->per_day);
    }
    if (!op_all) /* a granting role without a per-operation quota: none applies */
        l->op_minute = l->op_day = 0;
}

void policy_account_limits(const struct policy *p, const struct pol_account *a,
                           struct pol_limits *l)
{
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < a->nroles; i++) {
        l->acct_minute = imax(l->acct_minute, a->roles[i]->quota.per_minute);
        l->acct_day = imax(l->acct_day, a->roles[i]->quota.per_day);
    }
    if (a->has_quota) {
        l->acct_minute = a->quota.per_minute;
        l->acct_day = a->quota.per_day;
    }
    if (a->unit) {
        l->unit_minute = a->unit->quota.per_minute;
        l->unit_day = a->unit->quota.per_day;
    }
    l->global_minute = p->global.per_minute;
    l->global_day = p->global.per_day;
}

void policy_decide(const struct policy *p, const struct pol_request *r, struct pol_decision *d)
{
    const char *seg_at[ROUTE_MAX_SEGS];
    size_t seg_len[ROUTE_MAX_SEGS];
    memset(d, 0, sizeof *d);
    if (policy_authenticate(p, r, d) != DECISION_ALLOW || classify(p, r, d, seg_at, seg_len))
        return;
    if (grant(r, d) || purpose(r, d)) {
        /* Refused, but an attempt on a citizen is still one: a valid subject goes into the
         * audit record (as its token) without changing the decision. */
        char subj[POL_SUBJECT_LEN + 1], detail[200];
        if (decide_subject(d->op, r, seg_at, seg_len, subj, detail, sizeof detail) ==
            DECISION_ALLOW)
            memcpy(d->subject, subj, sizeof subj);
        return;
    }
    enum decision s = decide_subject(d->op, r, seg_at, seg_len, d->subject, d->detail,
                                     sizeof d->detail);
    if (s != DECISION_ALLOW) {
        d->decision = s;
        return;
    }
    limits(p, d);
    d->decision = DECISION_ALLOW;
    snprintf(d->detail, sizeof d->detail, "granted");
}
