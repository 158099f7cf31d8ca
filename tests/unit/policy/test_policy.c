/* Unit tests for policy/policy.c, policy/route.c and policy/clock.c: the example policy loads;
 * every validation error names file, line, column and the offending name; routes match and
 * overlap as documented; credentials are found only by their exact digest; local days have
 * their real length on DST days. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "policy/clock.h"
#include "policy/policy.h"
#include "policy/quota.h"
#include "policy/replypool.h"
#include "policy/route.h"
#include <hiredis/hiredis.h>
#include "tests/same_reply.h"

static void test_example(void)
{
    char path[4096], err[8192];
    const char *src = getenv("LG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/deploy/policy.example.json", src ? src : ".");
    struct policy *p = policy_load(path, err, sizeof err);
    if (p == NULL)
        fprintf(stderr, "%s", err);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    CHECK_INT(p->nops, 2);
    CHECK_INT(p->naccounts, 2);
    CHECK(strcmp(p->version, "example-1") == 0);
    unsigned char md[32];
    const char *tok = "lg_demo-xuly-not-a-secret";
    policy_token_digest(tok, strlen(tok), md);
    const struct pol_credential *cr = policy_find_credential(p, md);
    CHECK(cr != NULL && strcmp(cr->account->id, "demo.xuly") == 0);
    md[31] ^= 1; /* one bit off: not found */
    CHECK(policy_find_credential(p, md) == NULL);
    md[31] ^= 1;
    md[0] ^= 0x80;
    CHECK(policy_find_credential(p, md) == NULL);
    policy_unref(p);
}

/* Loads text and checks that err holds every expected line fragment. */
static void expect_errors(const char *text, const char *const *expected)
{
    char err[16384], want[512];
    char *path = check_write_tmp(text);
    struct policy *p = policy_load(path, err, sizeof err);
    CHECK(p == NULL);
    policy_unref(p);
    int missing = 0;
    for (const char *const *e = expected; *e; e++) {
        snprintf(want, sizeof want, "%s:%s", path, *e);
        if (strstr(err, want) == NULL) {
            fprintf(stderr, "missing error: %s\n", want);
            missing++;
        }
    }
    CHECK_INT(missing, 0);
    if (missing)
        fprintf(stderr, "errors reported:\n%s", err);
    unlink(path);
}

#define SHA_A "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""
#define SHA_B "\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\""

static void test_errors(void)
{
    const char *text =
        "{\n"                                                                          /* 1 */
        "  \"operations\": {\n"                                                        /* 2 */
        "    \"a.get\": {\"method\": \"GET\", \"path\": \"/a/{x}\", \"subject\": {\"path\": \"y\"}},\n"
        "    \"a.fixed\": {\"method\": \"GET\", \"path\": \"/a/b\"},\n"                /* 4 */
        "    \"a.bad\": {\"method\": \"FETCH\", \"path\": \"a\"}\n"                    /* 5 */
        "  },\n"                                                                       /* 6 */
        "  \"roles\": {\n"                                                             /* 7 */
        "    \"r1\": {\"operations\": [\"a.get\", \"nope\"], \"quota\": {\"per_minute\": 1, \"per_day\": 1},\n"
        "           \"hours\": [{\"days\": \"Mon-Xyz\", \"from\": \"07:00\", \"to\": \"06:00\"}]}\n"
        "  },\n"                                                                       /* 10 */
        "  \"units\": {\"u1\": {}},\n"                                                 /* 11 */
        "  \"accounts\": [\n"                                                          /* 12 */
        "    {\"id\": \"bh.nva\", \"unit\": \"u1\", \"roles\": [\"r1\", \"xu_ly2\"],\n" /* 13 */
        "     \"credentials\": [{\"sha256\": " SHA_A ", \"issued\": \"2026-01-01\", \"expires\": \"2026-06-01\"}]},\n"
        "    {\"id\": \"bh.nva\", \"unit\": \"u9\", \"roles\": [\"r1\"],\n"             /* 15 */
        "     \"credentials\": [{\"sha256\": " SHA_A ", \"issued\": \"2026-01-01\", \"expires\": \"2026-02-01\"}]},\n"
        "    {\"id\": \"x\", \"unit\": \"u1\", \"roles\": [\"r1\"], \"colour\": 1,\n"  /* 17 */
        "     \"credentials\": [{\"sha256\": " SHA_B ", \"issued\": \"2026-13-01\", \"expires\": \"2026-02-01\"}]}\n"
        "  ]\n"
        "}\n";
    static const char *const expected[] = {
        "3:50: operation \"a.get\": the path pattern has no segment {y}",
        "4:34: operation \"a.fixed\": route GET /a/b overlaps operation \"a.get\" (/a/{x})",
        "5:15: operation \"a.bad\": unknown method \"FETCH\"",
        "5:34: operation \"a.bad\": path pattern must start with '/'",
        "8:36: role \"r1\": unknown operation \"nope\"",
        "9:22: role \"r1\": bad days \"Mon-Xyz\"",
        "9:22: role \"r1\": window 07:00-06:00 is empty",
        "13:52: account \"bh.nva\": unknown role \"xu_ly2\"",
        "14:22: account \"bh.nva\": credential expires 151 days after issue; the limit is 90",
        "15:6: account \"bh.nva\": duplicate id (also accounts[0])",
        "15:22: account \"bh.nva\": unknown unit \"u9\"",
        "16:22: account \"bh.nva\": credential digest already used by account \"bh.nva\"",
        "17:48: key \"accounts[2].colour\": unknown key",
        "18:22: account \"x\": issued \"2026-13-01\" is not a date",
        NULL,
    };
    expect_errors(text, expected);
}

static void test_routes(void)
{
    struct route a, b, c, d, e;
    char err[200];
    CHECK_INT(route_compile(&a, "/api/v1/citizens/{id}", err, sizeof err), 0);
    CHECK_INT(route_compile(&b, "/api/v1/citizens/verify", err, sizeof err), 0);
    CHECK_INT(route_compile(&c, "/api/{rest*}", err, sizeof err), 0);
    CHECK_INT(route_compile(&d, "/api/v2/x", err, sizeof err), 0);
    CHECK_INT(route_compile(&e, "/", err, sizeof err), 0);
    const char *at[8];
    size_t len[8];
    const char *p1 = "/api/v1/citizens/079123456789";
    CHECK(route_match(&a, p1, strlen(p1), at, len));
    CHECK(len[3] == 12 && memcmp(at[3], "079123456789", 12) == 0);
    CHECK(!route_match(&a, "/api/v1/citizens", 16, NULL, NULL));
    CHECK(!route_match(&a, "/api/v1/citizens/", 17, NULL, NULL));
    CHECK(!route_match(&a, "/api/v1/citizens/1/x", 20, NULL, NULL));
    CHECK(!route_match(&a, "/API/v1/citizens/1", 18, NULL, NULL));
    CHECK(!route_match(&b, "/api/v1/citizens/verify/", 24, NULL, NULL));
    CHECK(route_match(&c, "/api", 4, NULL, NULL));
    CHECK(route_match(&c, "/api/a/b/c", 10, NULL, NULL));
    CHECK(!route_match(&c, "/apix", 5, NULL, NULL));
    CHECK(route_match(&e, "/", 1, NULL, NULL));
    CHECK(!route_match(&e, "/a", 2, NULL, NULL));
    CHECK(route_overlap(&a, &b));
    CHECK(route_overlap(&a, &c));
    CHECK(route_overlap(&c, &d));
    CHECK(!route_overlap(&a, &d));
    CHECK(!route_overlap(&b, &d));
    CHECK(!route_overlap(&e, &a));
    route_free(&d);
    CHECK(route_compile(&d, "/a/{x*}/b", err, sizeof err) != 0);
    CHECK(route_compile(&d, "/a//b", err, sizeof err) != 0);
    CHECK(route_compile(&d, "/a/../b", err, sizeof err) != 0);
    CHECK(route_compile(&d, "/a/%2e", err, sizeof err) != 0);
    CHECK(route_compile(&d, "/a/{x}/{x}", err, sizeof err) != 0);
    route_free(&a);
    route_free(&b);
    route_free(&c);
    route_free(&e);
}

static int64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    char buf[32];
    int64_t s;
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:00Z", y, mo, d, h, mi);
    clock_parse_time(buf, &s);
    return s * 1000;
}

static void test_days(void)
{
    char err[200];
    struct local_days ld;
    CHECK_INT(clock_set_zone("Asia/Ho_Chi_Minh", err, sizeof err), 0);
    /* 2026-11-21 10:00 UTC is 17:00 local; the local day starts at 2026-11-20 17:00 UTC */
    clock_local_days(utc_ms(2026, 11, 21, 10, 0), &ld);
    CHECK_INT(ld.id[1], 20261121);
    CHECK_INT(ld.start_ms[1], utc_ms(2026, 11, 20, 17, 0));
    CHECK_INT(ld.start_ms[2] - ld.start_ms[1], 86400000);
    clock_local_days(utc_ms(2026, 11, 21, 17, 0), &ld); /* local midnight exactly */
    CHECK_INT(ld.id[1], 20261122);
    CHECK_INT(clock_set_zone("America/New_York", err, sizeof err), 0);
    clock_local_days(utc_ms(2026, 3, 8, 12, 0), &ld); /* spring forward: a 23-hour day */
    CHECK_INT(ld.id[1], 20260308);
    CHECK_INT(ld.start_ms[2] - ld.start_ms[1], 23 * 3600000LL);
    clock_local_days(utc_ms(2026, 11, 1, 12, 0), &ld); /* fall back: a 25-hour day */
    CHECK_INT(ld.start_ms[2] - ld.start_ms[1], 25 * 3600000LL);
    CHECK(clock_set_zone("Mars/Olympus", err, sizeof err) != 0);
    CHECK(clock_set_zone("../etc/passwd", err, sizeof err) != 0);
    int64_t s;
    CHECK_INT(clock_parse_time("2026-02-29", &s), -1);
    CHECK_INT(clock_parse_time("2026-01-01T00:00:00+07:00", &s), 0);
    CHECK_INT(s, utc_ms(2025, 12, 31, 17, 0) / 1000);
}

static void test_tokens(void)
{
    char tok[64], hex[65], again[65];
    policy_new_token(tok, sizeof tok, hex, sizeof hex);
    CHECK_INT(strlen(tok), 46); /* "lg_" + 43 base64url characters = 256 bits */
    CHECK(strncmp(tok, "lg_", 3) == 0);
    unsigned char md[32];
    policy_token_digest(tok, strlen(tok), md);
    for (int i = 0; i < 32; i++)
        snprintf(again + 2 * i, 3, "%02x", md[i]);
    CHECK(strcmp(hex, again) == 0);
    char tok2[64], hex2[65];
    policy_new_token(tok2, sizeof tok2, hex2, sizeof hex2);
    CHECK(strcmp(tok, tok2) != 0);
}

/* policy/quota: a plan's keys, fields and names in full, with their lengths, for the longest
 * names and prefix allowed (nothing cut), and for short ones; RateLimit headers from them. */
static void test_plan(void)
{
    char acct[POL_NAME_MAX + 1], unit[POL_NAME_MAX + 1], opname[POL_NAME_MAX + 1];
    char prefix[QUOTA_PREFIX_MAX + 1], want[256];
    for (int round = 0; round < 2; round++) {
        int longest = round == 0;
        memset(acct, 'a', POL_NAME_MAX);
        memset(unit, 'u', POL_NAME_MAX);
        memset(opname, 'o', POL_NAME_MAX);
        memset(prefix, 'p', QUOTA_PREFIX_MAX);
        acct[longest ? POL_NAME_MAX : 3] = '\0';
        unit[longest ? POL_NAME_MAX : 1] = '\0';
        opname[longest ? POL_NAME_MAX : 5] = '\0';
        prefix[longest ? QUOTA_PREFIX_MAX : 2] = '\0';
        struct pol_unit u = {.name = unit};
        struct pol_account a = {.id = acct, .unit = &u};
        struct pol_operation op = {.name = opname};
        struct pol_decision d = {.account = &a, .op = &op,
                                 .limits = {1, 2, 3, 4, 5, 6, 7, 8}};
        struct quota_plan *pl = calloc(1, sizeof *pl);
        quota_plan_build(pl, prefix, &d, 0, 1763700000000, "member-1");
        CHECK_INT(pl->n, 8);
        CHECK(strcmp(pl->account, acct) == 0);
        snprintf(want, sizeof want, "%s:{a:%s}:suspended", prefix, acct);
        CHECK(strcmp(pl->susp_key, want) == 0);
        CHECK_INT(pl->susp_len, strlen(want));
        snprintf(want, sizeof want, "%s:{a:%s}:last", prefix, acct);
        CHECK(strcmp(pl->last_key, want) == 0);
        CHECK_INT(pl->last_len, strlen(want));
        CHECK(strcmp(pl->member, "member-1") == 0);
        CHECK_INT(pl->member_len, 8);
        char susp[128];
        quota_susp_key(susp, sizeof susp, prefix, acct);
        CHECK(strcmp(susp, pl->susp_key) == 0);
        const char *scope[8] = {"a:", "a:", "a:", "a:", "u:", "u:", "g", "g"};
        const char *id[8] = {acct, acct, acct, acct, unit, unit, "", ""};
        const char *suffix[8] = {"m", "d", "m:", "d", "m", "d", "m", "d"};
        const char *field[8] = {"", "n", "", "o:", "", "n", "", "n"};
        const char *name[8] = {"account-per-minute", "account-per-day", "-per-minute",
                               "-per-day", "unit-per-minute", "unit-per-day",
                               "global-per-minute", "global-per-day"};
        for (int i = 0; i < 8; i++) {
            const struct quota_check *c = &pl->checks[i];
            CHECK_INT(c->limit, i + 1);
            CHECK_INT(c->kind, i % 2 ? QUOTA_DAY : QUOTA_MINUTE);
            snprintf(want, sizeof want, "%s:{%s%s}:%s%s", prefix, scope[i], id[i], suffix[i],
                     i == 2 ? opname : "");
            CHECK(strcmp(c->key, want) == 0);
            CHECK_INT(c->key_len, strlen(want));
            snprintf(want, sizeof want, "%s%s", field[i], i == 3 ? opname : "");
            CHECK(strcmp(c->field, want) == 0);
            CHECK_INT(c->field_len, strlen(want));
            snprintf(want, sizeof want, "%s%s", i == 2 || i == 3 ? opname : "", name[i]);
            CHECK(strcmp(c->name, want) == 0);
            CHECK_INT(c->name_len, strlen(want));
        }
        /* The copy an admission keeps is the same plan. */
        struct quota_plan *cp = calloc(1, sizeof *cp);
        quota_plan_copy(cp, pl);
        CHECK(memcmp(cp->checks, pl->checks, sizeof pl->checks) == 0);
        CHECK(strcmp(cp->member, pl->member) == 0 && cp->member_len == pl->member_len);
        CHECK(strcmp(cp->susp_key, pl->susp_key) == 0 && cp->last_len == pl->last_len);
        struct quota_result r = {.n = 8};
        for (int i = 0; i < 8; i++)
            r.c[i] = (struct quota_counter){.used = 1, .limit = i + 1, .reset_ms = 1500};
        char h[2048];
        quota_headers(h, sizeof h, pl, &r);
        snprintf(want, sizeof want,
                 "RateLimit-Policy: \"account-per-minute\";q=1;w=60, "
                 "\"account-per-day\";q=2;w=86400, \"%s-per-minute\";q=3;w=60, ",
                 opname);
        CHECK(strncmp(h, want, strlen(want)) == 0);
        CHECK(strstr(h, "\r\nRateLimit: \"account-per-minute\";r=0;t=2, ") != NULL);
        CHECK(strstr(h, "\"global-per-day\";r=7;t=2\r\n") != NULL);
        free(cp);
        free(pl);
    }
}

/* policy/replypool: every kind of reply (strings and arrays longer than the node's own room,
 * nesting, nil, errors, an empty array) reads the same as with hiredis's allocations; nodes
 * come back to the pool and are reused; a protocol error in the middle of an array frees the
 * part already read (ASan would report a leak or a double free). */
static void test_reply_pool(void)
{
    char big[300];
    memset(big, 'x', sizeof big);
    char resp[4096];
    int n = snprintf(resp, sizeof resp,
                     "*9\r\n:0\r\n:1763700000000\r\n:20261121\r\n:5\r\n:60000\r\n:0\r\n"
                     ":7\r\n:3600000\r\n:-9223372036854775807\r\n"
                     "+OK\r\n-NOSCRIPT No matching script\r\n$-1\r\n*-1\r\n*0\r\n"
                     "$%zu\r\n%.*s\r\n*2\r\n*2\r\n$1\r\na\r\n$-1\r\n*1\r\n:4\r\n",
                     sizeof big, (int)sizeof big, big);
    /* 30 integers: more elements than a node holds. */
    n += snprintf(resp + n, sizeof resp - (size_t)n, "*30\r\n");
    for (int i = 0; i < 30; i++)
        n += snprintf(resp + n, sizeof resp - (size_t)n, ":%d\r\n", i * 1000);
    n += snprintf(resp + n, sizeof resp - (size_t)n, "$39\r\n%.39s\r\n$40\r\n%.40s\r\n", big, big);
    struct reply_pool *pool = reply_pool_new();
    for (int round = 0; round < 3; round++) {
        redisReader *ref = redisReaderCreate(), *rd = redisReaderCreate();
        reply_pool_use(pool, rd);
        redisReaderFeed(ref, resp, (size_t)n);
        /* In pieces: a reply may be cut anywhere. */
        for (int off = 0; off < n; off += 7)
            redisReaderFeed(rd, resp + off, (size_t)(n - off < 7 ? n - off : 7));
        int replies = 0;
        for (;;) {
            void *a = NULL, *b = NULL;
            CHECK(redisReaderGetReply(ref, &a) == REDIS_OK);
            CHECK(redisReaderGetReply(rd, &b) == REDIS_OK);
            if (a == NULL || b == NULL) {
                CHECK(a == NULL && b == NULL);
                break;
            }
            CHECK(same_reply(a, b));
            replies++;
            freeReplyObject(a);
            rd->fn->freeObject(b);
        }
        CHECK(replies == 11);
        /* Every node is back: the admission reply alone took ten. */
        CHECK(reply_pool_idle(pool) >= 10);
        size_t idle = reply_pool_idle(pool);
        /* A protocol error after part of an array: the part is freed through the pool. */
        const char bad[] = "*3\r\n:1\r\n$2\r\nab\r\n?oops\r\n";
        redisReaderFeed(rd, bad, sizeof bad - 1);
        void *r = NULL;
        CHECK(redisReaderGetReply(rd, &r) == REDIS_ERR && r == NULL);
        CHECK(reply_pool_idle(pool) == idle);
        redisReaderFree(ref);
        redisReaderFree(rd);
    }
    reply_pool_free(pool);
}

int main(void)
{
    test_example();
    test_errors();
    test_routes();
    test_days();
    test_tokens();
    test_plan();
    test_reply_pool();
    return check_done("test_policy");
}
