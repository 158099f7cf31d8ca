/* Loading and validating the policy file into an immutable snapshot. Every problem in the file
 * is reported with its position and the name it concerns; one error rejects the whole file. */
#include "policy/policy.h"

#include <http_parser.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "common/util.h"
#include "policy/clock.h"
#include "policy/jsoncfg.h"

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > POL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

/* --- quotas ---------------------------------------------------------------------------- */

static const struct cfg_key quota_keys[] = {
    K_INT(struct pol_quota, per_minute, 0, 1000000, 0),
    K_INT(struct pol_quota, per_day, 0, 1000000000, 0),
    K_END,
};

/* Reads a {per_minute, per_day} object at path; extra names members the caller handles. */
static void load_quota(struct cfg_ctx *c, json_t *o, const char *path, struct pol_quota *q,
                       const char *const *extra)
{
    memset(q, 0, sizeof *q);
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        return;
    }
    cfg_apply(c, o, path, quota_keys, q, extra);
}

/* --- operations ------------------------------------------------------------------------ */

static int method_from_name(const char *s)
{
    static const struct {
        const char *name;
        int method;
    } m[] = {
        {"GET", HTTP_GET},   {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},   {"PATCH", HTTP_PATCH},   {"DELETE", HTTP_DELETE},
        {"OPTIONS", HTTP_OPTIONS},
    };
    for (size_t i = 0; i < ARRAY_LEN(m); i++)
        if (strcmp(s, m[i].name) == 0)
            return m[i].method;
    return -1;
}

struct op_fields {
    char *method;
    char *path;
    char *soap_action;
};

static const struct cfg_key op_keys[] = {
    K_STR(struct op_fields, method, 1),
    K_STR(struct op_fields, path, 1),
    K_STR(struct op_fields, soap_action, 0),
    K_END,
};

struct subject_fields {
    char *path, *query, *json, *xml;
};

static const struct cfg_key subject_keys[] = {
    K_STR(struct subject_fields, path, 0),
    K_STR(struct subject_fields, query, 0),
    K_STR(struct subject_fields, json, 0),
    K_STR(struct subject_fields, xml, 0),
    K_END,
};

struct purpose_fields {
    int dossier, procedure;
};

static const struct cfg_key purpose_keys[] = {
    K_BOOL(struct purpose_fields, dossier, 0),
    K_BOOL(struct purpose_fields, procedure, 0),
    K_END,
};

static void load_subject(struct cfg_ctx *c, json_t *o, const char *path, const char *opname,
                         struct pol_operation *op)
{
    struct subject_fields f = {0};
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        return;
    }
    cfg_apply(c, o, path, subject_keys, &f, NULL);
    int n = (f.path != NULL) + (f.query != NULL) + (f.json != NULL) + (f.xml != NULL);
    if (n != 1) {
        if (c->nerrors == 0 || n > 1)
            cfg_error_at(c, path, "operation \"%s\": subject needs exactly one of path, query, "
                                  "json, xml", opname);
    } else if (f.path) {
        op->subject_src = SUBJ_PATH;
        op->subject_name = f.path;
        f.path = NULL;
        op->subject_seg = op->route.segs ? route_param_index(&op->route, op->subject_name) : 0;
        if (op->subject_seg < 0 || (op->route.segs && op->route.segs[op->subject_seg].rest))
            cfg_error_at(c, path, "operation \"%s\": the path pattern has no segment {%s}",
                         opname, op->subject_name);
    } else if (f.query) {
        op->subject_src = SUBJ_QUERY;
        op->subject_name = f.query;
        f.query = NULL;
    } else if (f.json) {
        op->subject_src = SUBJ_JSON;
        op->subject_name = f.json;
        f.json = NULL;
        if (op->subject_name[0] != '/')
            cfg_error_at(c, path, "operation \"%s\": \"%s\" is not a JSON pointer (it starts "
                                  "with '/')", opname, op->subject_name);
    } else {
        op->subject_src = SUBJ_XML;
        op->subject_name = f.xml;
        f.xml = NULL;
        if (!name_ok(op->subject_name) || strchr(op->subject_name, '.'))
            cfg_error_at(c, path, "operation \"%s\": \"%s\" is not an XML element name",
                         opname, op->subject_name);
    }
    free(f.path);
    free(f.query);
    free(f.json);
    free(f.xml);
}

static void load_operation(struct cfg_ctx *c, const char *name, json_t *o,
                           struct pol_operation *op)
{
    static const char *const extra[] = {"subject", "purpose", NULL};
    char path[512], sub[600], err[200];
    struct op_fields f = {0};
    snprintf(path, sizeof path, "operations.%s", name);
    op->name = xstrdup(name);
    if (!name_ok(name))
        cfg_error_at(c, path, "operation \"%s\": names use letters, digits, '.', '_', '-' "
                              "(at most %d)", name, POL_NAME_MAX);
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        return;
    }
    cfg_apply(c, o, path, op_keys, &f, extra);
    op->method = -1;
    if (f.method && (op->method = method_from_name(f.method)) < 0) {
        snprintf(sub, sizeof sub, "%s.method", path);
        cfg_error_at(c, sub, "operation \"%s\": unknown method \"%s\" (GET, HEAD, POST, PUT, "
                             "PATCH, DELETE, OPTIONS)", name, f.method);
    }
    op->path = f.path;
    op->soap_action = f.soap_action;
    if (f.path && route_compile(&op->route, f.path, err, sizeof err) != 0) {
        snprintf(sub, sizeof sub, "%s.path", path);
        cfg_error_at(c, sub, "operation \"%s\": %s", name, err);
    }
    json_t *v = json_object_get(o, "subject");
    if (v && !json_is_null(v)) {
        snprintf(sub, sizeof sub, "%s.subject", path);
        load_subject(c, v, sub, name, op);
    }
    v = json_object_get(o, "purpose");
    if (v) {
        struct purpose_fields pf = {0};
        snprintf(sub, sizeof sub, "%s.purpose", path);
        if (!json_is_object(v))
            cfg_error(c, sub, "expected an object, got %s", cfg_type_name(v));
        else
            cfg_apply(c, v, sub, purpose_keys, &pf, NULL);
        op->need_dossier = pf.dossier;
        op->need_procedure = pf.procedure;
    }
    free(f.method);
}

static int soap_compatible(const struct pol_operation *a, const struct pol_operation *b)
{
    return a->soap_action == NULL || b->soap_action == NULL ||
           strcmp(a->soap_action, b->soap_action) == 0;
}

static void load_operations(struct cfg_ctx *c, json_t *o, struct policy *p)
{
    if (!json_is_object(o) || json_object_size(o) == 0) {
        cfg_error(c, "operations", "expected an object with at least one operation");
        return;
    }
    p->nops = json_object_size(o);
    p->ops = xcalloc(p->nops, sizeof *p->ops);
    const char *name;
    json_t *v;
    size_t i = 0;
    json_object_foreach(o, name, v) {
        p->ops[i].idx = (int)i;
        load_operation(c, name, v, &p->ops[i]);
        i++;
    }
    for (i = 0; i < p->nops; i++)
        for (size_t j = 0; j < i; j++) {
            struct pol_operation *a = &p->ops[j], *b = &p->ops[i];
            if (a->method != b->method || a->method < 0 || !a->route.segs || !b->route.segs ||
                !soap_compatible(a, b) || !route_overlap(&a->route, &b->route))
                continue;
            char path[512];
            snprintf(path, sizeof path, "operations.%s.path", b->name);
            cfg_error_at(c, path, "operation \"%s\": route %s %s overlaps operation \"%s\" (%s)",
                         b->name, http_method_str((enum http_method)b->method), b->path, a->name,
                         a->path);
        }
}

static const struct pol_operation *find_op(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->nops; i++)
        if (strcmp(p->ops[i].name, name) == 0)
            return &p->ops[i];
    return NULL;
}

/* --- roles ----------------------------------------------------------------------------- */

static int parse_hhmm(const char *s, int *minute)
{
    if (strlen(s) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    *minute = h * 60 + m;
    return 0;
}

static int day_index(const char *s, size_t n)
{
    static const char *const names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    for (int i = 0; i < 7; i++)
        if (n == 3 && strncmp(s, names[i], 3) == 0)
            return i;
    return -1;
}

/* "Mon-Sat", "Mon,Wed,Fri", "Mon-Fri,Sun", "*": a weekday bit mask, or 0 if malformed. */
static unsigned parse_days(const char *s)
{
    if (strcmp(s, "*") == 0)
        return 0x7f;
    unsigned mask = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        const char *dash = memchr(s, '-', n);
        int a, b;
        if (dash) {
            a = day_index(s, (size_t)(dash - s));
            b = day_index(dash + 1, n - (size_t)(dash - s) - 1);
        } else {
            a = b = day_index(s, n);
        }
        if (a < 0 || b < 0)
            return 0;
        for (int d = a;; d = (d + 1) % 7) {
            mask |= 1u << d;
            if (d == b)
                break;
        }
        s += n;
        if (*s == ',' && *++s == '\0')
            return 0;
    }
    return mask;
}

struct window_fields {
    char *days, *from, *to;
};

static const struct cfg_key window_keys[] = {
    K_STR(struct window_fields, days, 1),
    K_STR(struct window_fields, from, 1),
    K_STR(struct window_fields, to, 1),
    K_END,
};

static void load_windows(struct cfg_ctx *c, json_t *a, const char *rpath, struct pol_role *r)
{
    char path[600];
    snprintf(path, sizeof path, "%s.hours", rpath);
    if (!json_is_array(a) || json_array_size(a) == 0) {
        cfg_error(c, path, "expected a non-empty array of {days, from, to}");
        return;
    }
    r->nwindows = json_array_size(a);
    r->windows = xcalloc(r->nwindows, sizeof *r->windows);
    for (size_t i = 0; i < r->nwindows; i++) {
        struct window_fields f = {0};
        struct pol_window *w = &r->windows[i];
        snprintf(path, sizeof path, "%s.hours[%zu]", rpath, i);
        json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) {
            cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
            continue;
        }
        cfg_apply(c, o, path, window_keys, &f, NULL);
        if (f.days && (w->days = parse_days(f.days)) == 0)
            cfg_error_at(c, path, "role \"%s\": bad days \"%s\" (e.g. \"Mon-Sat\", "
                                  "\"Mon,Wed,Fri\", \"*\")", r->name, f.days);
        if (f.from && parse_hhmm(f.from, &w->from_min) != 0)
            cfg_error_at(c, path, "role \"%s\": bad time \"%s\" (HH:MM)", r->name, f.from);
        else if (f.to && parse_hhmm(f.to, &w->to_min) != 0)
            cfg_error_at(c, path, "role \"%s\": bad time \"%s\" (HH:MM)", r->name, f.to);
        else if (f.from && f.to && w->from_min >= w->to_min)
            cfg_error_at(c, path, "role \"%s\": window %s-%s is empty (from must be before to)",
                         r->name, f.from, f.to);
        free(f.days);
        free(f.from);
        free(f.to);
    }
}

static void load_role_quota(struct cfg_ctx *c, struct policy *p, json_t *q, const char *rpath,
                            struct pol_role *r)
{
    static const char *const extra[] = {"operations", NULL};
    char path[600], opath[800];
    snprintf(path, sizeof path, "%s.quota", rpath);
    if (q == NULL) {
        cfg_error(c, path, "is required (per_minute and per_day)");
        return;
    }
    load_quota(c, q, path, &r->quota, extra);
    if (json_is_object(q) && (r->quota.per_minute < 1 || r->quota.per_day < 1))
        cfg_error_at(c, path, "role \"%s\": per_minute and per_day must both be set and at "
                              "least 1", r->name);
    json_t *ops = json_is_object(q) ? json_object_get(q, "operations") : NULL;
    if (ops == NULL)
        return;
    snprintf(path, sizeof path, "%s.quota.operations", rpath);
    if (!json_is_object(ops)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(ops));
        return;
    }
    const char *name;
    json_t *v;
    json_object_foreach(ops, name, v) {
        snprintf(opath, sizeof opath, "%s.%s", path, name);
        const struct pol_operation *op = find_op(p, name);
        if (op == NULL) {
            cfg_error_at(c, opath, "role \"%s\": unknown operation \"%s\"", r->name, name);
            continue;
        }
        load_quota(c, v, opath, &r->op_quota[op->idx], NULL);
        if (!r->grants[op->idx])
            cfg_error_at(c, opath, "role \"%s\": quota for operation \"%s\", which the role "
                                   "does not grant", r->name, name);
    }
}

static void load_role(struct cfg_ctx *c, struct policy *p, const char *name, json_t *o,
                      struct pol_role *r)
{
    char path[512], sub[600];
    snprintf(path, sizeof path, "roles.%s", name);
    r->name = xstrdup(name);
    r->grants = xcalloc(p->nops ? p->nops : 1, 1);
    r->op_quota = xcalloc(p->nops ? p->nops : 1, sizeof *r->op_quota);
    if (!name_ok(name))
        cfg_error_at(c, path, "role \"%s\": names use letters, digits, '.', '_', '-'", name);
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "operations") && strcmp(key, "quota") && strcmp(key, "hours")) {
            cfg_join(sub, sizeof sub, path, key);
            cfg_error(c, sub, "unknown key");
        }
    }
    json_t *ops = json_object_get(o, "operations");
    snprintf(sub, sizeof sub, "%s.operations", path);
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        cfg_error(c, sub, "expected a non-empty array of operation names");
    } else {
        for (size_t i = 0; i < json_array_size(ops); i++) {
            json_t *e = json_array_get(ops, i);
            snprintf(sub, sizeof sub, "%s.operations[%zu]", path, i);
            const struct pol_operation *op = json_is_string(e) ? find_op(p, json_string_value(e))
                                                               : NULL;
            if (!json_is_string(e))
                cfg_error(c, sub, "expected an operation name, got %s", cfg_type_name(e));
            else if (op == NULL)
                cfg_error_at(c, sub, "role \"%s\": unknown operation \"%s\"", name,
                             json_string_value(e));
            else if (r->grants[op->idx])
                cfg_error_at(c, sub, "role \"%s\": operation \"%s\" listed twice", name,
                             op->name);
            else
                r->grants[op->idx] = 1;
        }
    }
    load_role_quota(c, p, json_object_get(o, "quota"), path, r);
    v = json_object_get(o, "hours");
    if (v)
        load_windows(c, v, path, r);
}

/* --- units, accounts ------------------------------------------------------------------- */

static void load_units(struct cfg_ctx *c, json_t *o, struct policy *p)
{
    static const char *const unit_keys[] = {"quota", NULL};
    char path[512];
    if (o == NULL)
        return;
    if (!json_is_object(o)) {
        cfg_error(c, "units", "expected an object, got %s", cfg_type_name(o));
        return;
    }
    p->nunits = json_object_size(o);
    p->units = xcalloc(p->nunits ? p->nunits : 1, sizeof *p->units);
    const char *name;
    json_t *v;
    size_t i = 0;
    json_object_foreach(o, name, v) {
        struct pol_unit *u = &p->units[i++];
        snprintf(path, sizeof path, "units.%s", name);
        u->name = xstrdup(name);
        if (!name_ok(name))
            cfg_error_at(c, path, "unit \"%s\": names use letters, digits, '.', '_', '-'", name);
        if (!json_is_object(v)) {
            cfg_error(c, path, "expected an object, got %s", cfg_type_name(v));
            continue;
        }
        static const struct cfg_key none[] = {K_END};
        cfg_apply(c, v, path, none, u, unit_keys);
        json_t *q = json_object_get(v, "quota");
        if (q) {
            char qp[600];
            snprintf(qp, sizeof qp, "%s.quota", path);
            load_quota(c, q, qp, &u->quota, NULL);
        }
    }
}

static int hex_to_digest(const char *s, unsigned char out[32])
{
    if (strlen(s) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit_value((unsigned char)s[2 * i]);
        int lo = hex_digit_value((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi * 16 + lo);
    }
    return 0;
}

struct cred_fields {
    char *sha256, *issued, *expires;
};

static const struct cfg_key cred_keys[] = {
    K_STR(struct cred_fields, sha256, 1),
    K_STR(struct cred_fields, issued, 1),
    K_STR(struct cred_fields, expires, 1),
    K_END,
};

static void load_credential(struct cfg_ctx *c, struct policy *p, json_t *o, const char *path,
                            struct pol_account *a, struct pol_credential *cr)
{
    struct cred_fields f = {0};
    cr->account = a;
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        return;
    }
    cfg_apply(c, o, path, cred_keys, &f, NULL);
    if (f.sha256 && hex_to_digest(f.sha256, cr->sha256) != 0)
        cfg_error_at(c, path, "account \"%s\": sha256 must be 64 hex digits", a->id);
    int ok = 1;
    if (f.issued && clock_parse_time(f.issued, &cr->issued) != 0) {
        cfg_error_at(c, path, "account \"%s\": issued \"%s\" is not a date (YYYY-MM-DD or RFC "
                              "3339)", a->id, f.issued);
        ok = 0;
    }
    if (f.expires && clock_parse_time(f.expires, &cr->expires) != 0) {
        cfg_error_at(c, path, "account \"%s\": expires \"%s\" is not a date (YYYY-MM-DD or RFC "
                              "3339)", a->id, f.expires);
        ok = 0;
    }
    if (ok && f.issued && f.expires) {
        int64_t max = (int64_t)p->max_credential_age_days * 86400;
        if (cr->expires <= cr->issued)
            cfg_error_at(c, path, "account \"%s\": credential expires before it is issued",
                         a->id);
        else if (cr->expires - cr->issued > max + 3600) /* an hour's slack for DST days */
            cfg_error_at(c, path, "account \"%s\": credential expires %lld days after issue; "
                                  "the limit is %d (max_credential_age_days)",
                         a->id, (long long)((cr->expires - cr->issued + 86399) / 86400),
                         p->max_credential_age_days);
    }
    free(f.sha256);
    free(f.issued);
    free(f.expires);
}

struct acct_fields {
    char *id, *unit;
    int disabled;
};

static const struct cfg_key acct_keys[] = {
    K_STR(struct acct_fields, id, 1),
    K_STR(struct acct_fields, unit, 1),
    K_BOOL(struct acct_fields, disabled, 0),
    K_END,
};

static void load_account(struct cfg_ctx *c, struct policy *p, json_t *o, size_t idx)
{
    static const char *const extra[] = {"roles", "quota", "credentials", NULL};
    char path[64], sub[128];
    struct pol_account *a = &p->accounts[idx];
    struct acct_fields f = {0};
    snprintf(path, sizeof path, "accounts[%zu]", idx);
    if (!json_is_object(o)) {
        cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
        a->id = xstrdup("");
        return;
    }
    cfg_apply(c, o, path, acct_keys, &f, extra);
    a->id = f.id ? f.id : xstrdup("");
    a->disabled = f.disabled;
    snprintf(sub, sizeof sub, "%s.id", path);
    if (f.id && !name_ok(f.id))
        cfg_error_at(c, sub, "account \"%s\": ids use letters, digits, '.', '_', '-' (at most "
                             "%d)", f.id, POL_NAME_MAX);
    for (size_t j = 0; f.id && j < idx; j++)
        if (strcmp(p->accounts[j].id, f.id) == 0)
            cfg_error_at(c, sub, "account \"%s\": duplicate id (also accounts[%zu])", f.id, j);
    if (f.unit) {
        for (size_t u = 0; u < p->nunits && !a->unit; u++)
            if (strcmp(p->units[u].name, f.unit) == 0)
                a->unit = &p->units[u];
        snprintf(sub, sizeof sub, "%s.unit", path);
        if (!a->unit)
            cfg_error_at(c, sub, "account \"%s\": unknown unit \"%s\"", a->id, f.unit);
        free(f.unit);
    }
    json_t *roles = json_object_get(o, "roles");
    snprintf(sub, sizeof sub, "%s.roles", path);
    if (!json_is_array(roles) || json_array_size(roles) == 0) {
        cfg_error(c, sub, "expected a non-empty array of role names");
    } else {
        a->roles = xcalloc(json_array_size(roles), sizeof *a->roles);
        for (size_t i = 0; i < json_array_size(roles); i++) {
            json_t *e = json_array_get(roles, i);
            snprintf(sub, sizeof sub, "%s.roles[%zu]", path, i);
            struct pol_role *r = NULL;
            for (size_t k = 0; json_is_string(e) && k < p->nroles && !r; k++)
                if (strcmp(p->roles[k].name, json_string_value(e)) == 0)
                    r = &p->roles[k];
            if (!json_is_string(e))
                cfg_error(c, sub, "expected a role name, got %s", cfg_type_name(e));
            else if (r == NULL)
                cfg_error_at(c, sub, "account \"%s\": unknown role \"%s\"", a->id,
                             json_string_value(e));
            else
                a->roles[a->nroles++] = r;
        }
    }
    json_t *q = json_object_get(o, "quota");
    if (q) {
        snprintf(sub, sizeof sub, "%s.quota", path);
        a->has_quota = 1;
        load_quota(c, q, sub, &a->quota, NULL);
        if (json_is_object(q) && (a->quota.per_minute < 1 || a->quota.per_day < 1))
            cfg_error_at(c, sub, "account \"%s\": a quota override sets per_minute and per_day "
                                 "(both at least 1)", a->id);
    }
    json_t *creds = json_object_get(o, "credentials");
    snprintf(sub, sizeof sub, "%s.credentials", path);
    if (creds && !json_is_array(creds)) {
        cfg_error(c, sub, "expected an array, got %s", cfg_type_name(creds));
    } else if (creds) {
        a->ncreds = json_array_size(creds);
        a->creds = xcalloc(a->ncreds ? a->ncreds : 1, sizeof *a->creds);
        for (size_t i = 0; i < a->ncreds; i++) {
            snprintf(sub, sizeof sub, "%s.credentials[%zu]", path, i);
            load_credential(c, p, json_array_get(creds, i), sub, a, &a->creds[i]);
        }
    }
}

/* Builds the credential table and reports digests used twice. */
static void index_credentials(struct cfg_ctx *c, struct policy *p)
{
    size_t n = 0, size = 16;
    for (size_t i = 0; i < p->naccounts; i++)
        n += p->accounts[i].ncreds;
    while (size < n * 2)
        size *= 2;
    p->cred_table = xcalloc(size, sizeof *p->cred_table);
    p->cred_mask = size - 1;
    for (size_t i = 0; i < p->naccounts; i++) {
        struct pol_account *a = &p->accounts[i];
        for (size_t k = 0; k < a->ncreds; k++) {
            struct pol_credential *cr = &a->creds[k];
            const struct pol_credential *dup = policy_find_credential(p, cr->sha256);
            if (dup) {
                char path[96];
                snprintf(path, sizeof path, "accounts[%zu].credentials[%zu]", i, k);
                cfg_error_at(c, path, "account \"%s\": credential digest already used by "
                                      "account \"%s\"", a->id, dup->account->id);
                continue;
            }
            size_t h;
            memcpy(&h, cr->sha256, sizeof h);
            while (p->cred_table[h & p->cred_mask])
                h++;
            p->cred_table[h & p->cred_mask] = cr;
        }
    }
}

const char *const pol_signal_names[] = {"quota_refusals", "outside_hours", "distinct_citizens",
                                        "auth_failures"};

static const struct cfg_key signal_keys[] = {
    K_INT(struct pol_signal, count, 1, 1000000, 0),
    K_INT(struct pol_signal, window_s, 1, 86400, 3600),
    K_BOOL(struct pol_signal, suspend, 0),
    K_END,
};

/* "signals": {"quota_refusals": {"count": 5, "window_s": 600, "suspend": true}, ...} */
static void load_signals(struct cfg_ctx *c, json_t *v, struct policy *p)
{
    char path[80];
    if (v == NULL)
        return;
    if (!json_is_object(v)) {
        cfg_error(c, "signals", "expected an object, got %s", cfg_type_name(v));
        return;
    }
    const char *name;
    json_t *o;
    json_object_foreach(v, name, o) {
        int k = 0;
        while (k < PSIG__COUNT && strcmp(pol_signal_names[k], name) != 0)
            k++;
        snprintf(path, sizeof path, "signals.%s", name);
        if (k == PSIG__COUNT) {
            cfg_error(c, path, "unknown signal (expected quota_refusals, outside_hours, "
                               "distinct_citizens or auth_failures)");
            continue;
        }
        if (!json_is_object(o)) {
            cfg_error(c, path, "expected an object, got %s", cfg_type_name(o));
            continue;
        }
        if (json_object_get(o, "count") == NULL)
            cfg_error(c, path, "\"count\" is required");
        cfg_apply(c, o, path, signal_keys, &p->signals[k], NULL);
        if (k == PSIG_AUTH_FAILURES && p->signals[k].suspend)
            cfg_error(c, path, "cannot suspend: 401s belong to no account");
    }
}

static void load_root(struct cfg_ctx *c, json_t *root, struct policy *p)
{
    static const char *const extra[] = {"version", "operations", "roles", "units", "global",
                                        "accounts", "signals", NULL};
    static const struct cfg_key keys[] = {
        K_INT(struct policy, max_credential_age_days, 1, 3650, 90),
        K_END,
    };
    cfg_apply(c, root, "", keys, p, extra);
    json_t *v = json_object_get(root, "version");
    if (v && (!json_is_string(v) || json_string_length(v) == 0 ||
              json_string_length(v) >= sizeof p->version))
        cfg_error(c, "version", "expected a string of 1 to %zu characters",
                  sizeof p->version - 1);
    else if (v)
        snprintf(p->version, sizeof p->version, "%s", json_string_value(v));
    load_operations(c, json_object_get(root, "operations"), p);
    v = json_object_get(root, "roles");
    if (!json_is_object(v) || json_object_size(v) == 0) {
        cfg_error(c, "roles", "expected an object with at least one role");
    } else {
        p->nroles = json_object_size(v);
        p->roles = xcalloc(p->nroles, sizeof *p->roles);
        const char *name;
        json_t *o;
        size_t i = 0;
        json_object_foreach(v, name, o) {
            load_role(c, p, name, o, &p->roles[i++]);
        }
    }
    load_units(c, json_object_get(root, "units"), p);
    v = json_object_get(root, "global");
    if (v) {
        static const char *const gextra[] = {"quota", NULL};
        static const struct cfg_key none[] = {K_END};
        if (!json_is_object(v)) {
            cfg_error(c, "global", "expected an object, got %s", cfg_type_name(v));
        } else {
            cfg_apply(c, v, "global", none, p, gextra);
            json_t *q = json_object_get(v, "quota");
            if (q)
                load_quota(c, q, "global.quota", &p->global, NULL);
        }
    }
    load_signals(c, json_object_get(root, "signals"), p);
    v = json_object_get(root, "accounts");
    if (!json_is_array(v)) {
        cfg_error(c, "accounts", v ? "expected an array" : "is required");
        return;
    }
    p->naccounts = json_array_size(v);
    p->accounts = xcalloc(p->naccounts ? p->naccounts : 1, sizeof *p->accounts);
    for (size_t i = 0; i < p->naccounts; i++)
        load_account(c, p, json_array_get(v, i), i);
    index_credentials(c, p);
}

struct policy *policy_load(const char *path, char *errbuf, size_t errlen)
{
    struct cfg_ctx c = {.err = errbuf, .errlen = errlen};
    errbuf[0] = '\0';
    json_t *root = cfg_load_json(&c, path);
    if (root == NULL) {
        free(c.text);
        return NULL;
    }
    struct policy *p = xcalloc(1, sizeof *p);
    atomic_init(&p->refs, 1);
    p->path = xstrdup(path);
    unsigned char md[32];
    SHA256((const unsigned char *)c.text, c.textlen, md);
    for (int i = 0; i < 32; i++)
        snprintf(p->digest + 2 * i, 3, "%02x", md[i]);
    if (!json_is_object(root))
        cfg_error(&c, "", "the policy must be a JSON object");
    else
        load_root(&c, root, p);
    if (p->version[0] == '\0')
        snprintf(p->version, sizeof p->version, "sha256:%.12s", p->digest);
    json_decref(root);
    free(c.text);
    if (c.nerrors > 0) {
        policy_unref(p);
        return NULL;
    }
    return p;
}

/* --- lifetime and lookups -------------------------------------------------------------- */

struct policy *policy_ref(struct policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

static void policy_free(struct policy *p)
{
    for (size_t i = 0; i < p->nops; i++) {
        struct pol_operation *op = &p->ops[i];
        free(op->name);
        free(op->path);
        route_free(&op->route);
        free(op->soap_action);
        free(op->subject_name);
    }
    free(p->ops);
    for (size_t i = 0; i < p->nroles; i++) {
        free(p->roles[i].name);
        free(p->roles[i].grants);
        free(p->roles[i].op_quota);
        free(p->roles[i].windows);
    }
    free(p->roles);
    for (size_t i = 0; i < p->nunits; i++)
        free(p->units[i].name);
    free(p->units);
    for (size_t i = 0; i < p->naccounts; i++) {
        free(p->accounts[i].id);
        free(p->accounts[i].roles);
        free(p->accounts[i].creds);
    }
    free(p->accounts);
    free(p->cred_table);
    free(p->path);
    free(p);
}

void policy_unref(struct policy *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}

const struct pol_credential *policy_find_credential(const struct policy *p,
                                                    const unsigned char sha256[32])
{
    if (p->cred_table == NULL)
        return NULL;
    size_t h;
    memcpy(&h, sha256, sizeof h);
    const struct pol_credential *found = NULL;
    /* Every occupied slot on the probe path is compared in full and in constant time: the
     * work does not depend on how many leading bytes of a guess are right. */
    for (;; h++) {
        const struct pol_credential *cr = p->cred_table[h & p->cred_mask];
        if (cr == NULL)
            break;
        if (CRYPTO_memcmp(cr->sha256, sha256, 32) == 0)
            found = cr;
    }
    return found;
}

const struct pol_account *policy_find_account(const struct policy *p, const char *id)
{
    for (size_t i = 0; i < p->naccounts; i++)
        if (strcmp(p->accounts[i].id, id) == 0)
            return &p->accounts[i];
    return NULL;
}

void policy_token_digest(const char *tok, size_t len, unsigned char out[32])
{
    sha256_two(tok, len, NULL, 0, out);
}

void policy_new_token(char *tok, size_t toklen, char *hex, size_t hexlen)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[33] = {0}, md[32];
    char t[64];
    size_t o = 0;
    random_bytes(raw, 32);
    o += (size_t)snprintf(t, sizeof t, "lg_");
    for (size_t i = 0; i < 33; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 3; k >= 0; k--) {
            if (i == 30 && k == 0)
                break; /* 32 bytes = 43 characters, no padding */
            t[o++] = b64[(v >> (6 * k)) & 63];
        }
    }
    t[o] = '\0';
    snprintf(tok, toklen, "%s", t);
    policy_token_digest(t, o, md);
    for (int i = 0; i < 32 && hexlen >= 65; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}
