/* Unit tests for proxy/record.c: a lookup's result record built from the runs its intent kept
 * (struct rec_reuse) has the same bytes as one built field by field, for ordinary requests and
 * for fields long or odd enough that the runs are not kept. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <string.h>

#include "../check.h"
#include "audit/jsonw.h"
#include "policy/decide.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "proxy/record.h"

struct fixture {
    struct pol_unit unit;
    struct pol_role roles[40];
    struct pol_role *role_ptrs[40];
    char role_names[40][32];
    struct pol_account acct;
    struct pol_operation op;
    struct pol_decision dec;
    struct quota_plan plan;
    struct quota_result qres;
};

static void fixture_init(struct fixture *f, size_t nroles, const char *dossier,
                         const char *procedure, int ncounters)
{
    memset(f, 0, sizeof *f);
    f->unit.name = "unit-01";
    for (size_t i = 0; i < nroles; i++) {
        snprintf(f->role_names[i], sizeof f->role_names[i], "role-%02zu", i);
        f->roles[i].name = f->role_names[i];
        f->role_ptrs[i] = &f->roles[i];
    }
    f->acct.id = "bench-0042";
    f->acct.unit = &f->unit;
    f->acct.roles = f->role_ptrs;
    f->acct.nroles = nroles;
    f->op.name = "citizen.lookup";
    f->dec.account = &f->acct;
    f->dec.op = &f->op;
    snprintf(f->dec.dossier, sizeof f->dec.dossier, "%s", dossier);
    snprintf(f->dec.procedure, sizeof f->dec.procedure, "%s", procedure);
    f->plan.n = ncounters;
    f->qres.n = ncounters;
    for (int i = 0; i < ncounters; i++) {
        snprintf(f->plan.checks[i].name, sizeof f->plan.checks[i].name,
                 "counter-%d-per-minute", i);
        f->qres.c[i].used = 1000 + i;
        f->qres.c[i].limit = 1000000 + i;
    }
}

static void base(struct req_record *r, struct fixture *f, const char *type)
{
    memset(r, 0, sizeof *r);
    r->type = type;
    r->time_ms = 1795000000123;
    r->instance = "gw-1";
    r->request_id = "c74b37cd7a76f49e-0-b060";
    r->client = "127.0.0.1";
    r->dec = &f->dec;
    r->method = "GET";
    r->decision = "allow";
    r->rule = "granted";
    r->plan = &f->plan;
    r->qres = &f->qres;
    r->clock = "redis";
    r->policy = "sha256:d12e000a664d";
    r->subject_token = "dc3ffc223f76075b03ffb5b244bff1e0cf0b132e24e978b5eb64f895c76d7e6f";
}

/* The intent keeps its runs in ru; the result built from them equals the one built without.
 * Returns ru->have's runs kept: 2 both, 1 one, 0 none. */
static int check_pair(struct fixture *f, const char *error)
{
    struct rec_reuse ru;
    memset(&ru, 0xa5, sizeof ru);
    ru.have = 0;
    struct jsonw j, plain;
    jw_init(&j);
    jw_init(&plain);

    struct req_record r;
    base(&r, f, "lookup.intent");
    record_request(&plain, &r);
    r.reuse = &ru;
    record_request(&j, &r);
    CHECK(j.len == plain.len && memcmp(j.buf, plain.buf, j.len) == 0); /* keeping changes nothing */
    CHECK_INT(ru.have, 1);

    base(&r, f, "lookup.result");
    r.status = error ? 502 : 200;
    r.detail = error;
    r.error = error;
    r.upstream = error == NULL;
    r.up_status = 200;
    r.up_bytes = 548;
    r.up_latency_us = 2206;
    r.up_sha256 = "957267209d9a11378467231bb83462d1cbd0a25327721ae0aff2bc06ee32e1b1";
    record_request(&plain, &r);
    r.reuse = &ru;
    record_request(&j, &r);
    if (j.len != plain.len || memcmp(j.buf, plain.buf, j.len) != 0)
        fprintf(stderr, "with the intent's runs:\n%.*s\nbuilt:\n%.*s\n", (int)j.len, j.buf,
                (int)plain.len, plain.buf);
    CHECK(j.len == plain.len && memcmp(j.buf, plain.buf, j.len) == 0);
    static const char type[] = "\"type\":\"lookup.result\"";
    CHECK(memmem(plain.buf, plain.len, type, sizeof type - 1) != NULL); /* not NUL-ended */
    jw_free(&j);
    jw_free(&plain);
    return (ru.who_len > 0) + (ru.counters_len > 0);
}

int main(void)
{
    struct fixture *f = malloc(sizeof *f);
    /* an ordinary lookup, a failed one, and one with no purpose codes: both runs kept */
    fixture_init(f, 1, "HS-2026-568544", "", 2);
    CHECK_INT(check_pair(f, NULL), 2);
    CHECK_INT(check_pair(f, "the upstream did not answer in time"), 2);
    fixture_init(f, 2, "", "", 6);
    CHECK_INT(check_pair(f, NULL), 2);
    /* codes that escaping makes long, many roles, many counters: a run too long is not kept,
     * and the result builds it itself */
    char odd[65];
    memset(odd, '\x01', 64);
    odd[64] = '\0';
    fixture_init(f, 40, odd, odd, 8);
    CHECK_INT(check_pair(f, NULL), 0);
    fixture_init(f, 1, odd, odd, 2);
    CHECK_INT(check_pair(f, NULL), 1);
    free(f);
    return check_done("test_record");
}
