/* audit/: the Merkle tree against RFC 6962 test vectors, record escaping, checkpoint signatures,
 * and the writer with verify on a real directory (open, write, close, reopen, tamper). */
#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "audit/merkle.h"
#include "audit/segment.h"
#include "audit/verify.h"
#include "common/util.h"

/* The leaves and tree heads used by the certificate-transparency reference tests. */
static void test_merkle_vectors(void)
{
    static const struct {
        const char *hex;
    } leaves[] = {{""}, {"00"}, {"10"}, {"2021"}, {"3031"}, {"40414243"},
                  {"5051525354555657"}, {"606162636465666768696a6b6c6d6e6f"}};
    static const char *const roots[] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    };
    struct merkle m;
    uint8_t root[32], leaf[32], buf[16];
    char hex[65];
    merkle_init(&m);
    merkle_root(&m, root);
    hex_encode(root, 32, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    for (int i = 0; i < 8; i++) {
        size_t n = strlen(leaves[i].hex) / 2;
        CHECK(hex_decode(leaves[i].hex, 2 * n, buf) == 0);
        merkle_leaf_hash(buf, n, leaf);
        merkle_append(&m, leaf);
        merkle_root(&m, root);
        hex_encode(root, 32, hex);
        if (strcmp(hex, roots[i]) != 0)
            fprintf(stderr, "size %d: root %s, expected %s\n", i + 1, hex, roots[i]);
        CHECK(strcmp(hex, roots[i]) == 0);
        /* The frontier text round-trips. */
        char fr[65 * MERKLE_MAX_LEVELS + 1];
        struct merkle copy;
        uint8_t r2[32];
        merkle_frontier_text(&m, fr, sizeof fr);
        CHECK(merkle_from_frontier(&copy, m.size, fr) == 0);
        merkle_root(&copy, r2);
        CHECK(memcmp(r2, root, 32) == 0);
    }
}

static void test_escaping(void)
{
    struct jsonw j;
    jw_init(&j);
    jw_open(&j, '{');
    /* Newlines, quotes, control bytes, invalid UTF-8 and valid UTF-8 (Vietnamese). */
    static const char nasty[] = "a\nb\"c\\d\x01\x7f\xff\xc3(\xe1\xba\xa1";
    jw_kstr(&j, "v", nasty, sizeof nasty - 1);
    jw_kint(&j, "n", -5);
    jw_close(&j, '}');
    CHECK(memchr(j.buf, '\n', j.len) == NULL);
    json_error_t e;
    json_t *o = json_loadb(j.buf, j.len, 0, &e);
    CHECK(o != NULL);
    const char *v = json_string_value(json_object_get(o, "v"));
    CHECK(v && strncmp(v, "a\nb\"c\\d\x01\x7f", 9) == 0);
    CHECK(v && strstr(v, "\xe1\xba\xa1") != NULL); /* ạ kept as UTF-8 */
    CHECK(json_integer_value(json_object_get(o, "n")) == -5);
    json_decref(o);
    jw_free(&j);
}

/* The exact bytes the writer produces: the hash chain covers them, so a faster writer must
 * not change one of them. Every byte value 0..255 alone, runs, UTF-8 of each length (valid,
 * overlong, surrogate, above U+10FFFF, truncated), nesting, numbers and keys. */
static void test_exact_output(void)
{
    struct jsonw j;
    jw_init(&j);
    jw_open(&j, '{');
    static const char plain[] = "plain text, no escapes: 0123456789";
    static const char mix[] = "q\"b\\n\nr\rt\tz\x1f\x7f~ ";
    jw_kstr(&j, "s", plain, sizeof plain - 1);
    jw_kstr(&j, "e", "", 0);
    jw_kstr(&j, "mix", mix, sizeof mix - 1);
    static const char u8[] = "\xc3\xa1\xe1\xba\xa1\xf0\x9f\x98\x80|\xc0\xaf|\xed\xa0\x80|"
                             "\xf4\x90\x80\x80|\xe1\xba|\xc3";
    jw_kstr(&j, "u8", u8, sizeof u8 - 1);
    jw_key(&j, "bytes");
    jw_open(&j, '[');
    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        jw_str(&j, &b, 1);
    }
    jw_close(&j, ']');
    jw_kint(&j, "min", INT64_MIN);
    jw_kint(&j, "max", INT64_MAX);
    jw_kint(&j, "zero", 0);
    jw_kbool(&j, "t", 1);
    jw_kbool(&j, "f", 0);
    jw_kstrz(&j, "null", NULL);
    jw_kstrz(&j, "z", "\xe1\xbb\x87n");
    jw_key(&j, "hex");
    jw_hex(&j, (const uint8_t *)"\x00\x9f\xff", 3);
    jw_key(&j, "o");
    jw_open(&j, '{');
    jw_close(&j, '}');
    jw_key(&j, "a");
    jw_open(&j, '[');
    jw_null(&j);
    jw_open(&j, '[');
    jw_close(&j, ']');
    jw_close(&j, ']');
    jw_close(&j, '}');
    /* 256 bytes alone: the printable ones as they are, '"' and '\\' with a backslash, \n \r \t,
     * every other byte below 0x20, 0x7f, and every byte from 0x80 (not UTF-8 alone) as \u00XX. */
    char want[8192];
    size_t w = 0;
    w += (size_t)snprintf(want + w, sizeof want - w, "%s",
                          "{\"s\":\"plain text, no escapes: 0123456789\",\"e\":\"\","
                          "\"mix\":\"q\\\"b\\\\n\\nr\\rt\\tz\\u001f\\u007f~ \","
                          "\"u8\":\"\xc3\xa1\xe1\xba\xa1\xf0\x9f\x98\x80|\\u00c0\\u00af|"
                          "\\u00ed\\u00a0\\u0080|\\u00f4\\u0090\\u0080\\u0080|\\u00e1\\u00ba|"
                          "\\u00c3\",\"bytes\":[");
    for (int c = 0; c < 256; c++) {
        const char *sep = c ? "," : "";
        if (c == '"' || c == '\\')
            w += (size_t)snprintf(want + w, sizeof want - w, "%s\"\\%c\"", sep, c);
        else if (c == '\n' || c == '\r' || c == '\t')
            w += (size_t)snprintf(want + w, sizeof want - w, "%s\"\\%c\"", sep,
                                  c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else if (c >= 0x20 && c < 0x7f)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s\"%c\"", sep, c);
        else
            w += (size_t)snprintf(want + w, sizeof want - w, "%s\"\\u00%02x\"", sep, c);
    }
    w += (size_t)snprintf(want + w, sizeof want - w, "%s",
                          "],\"min\":-9223372036854775808,\"max\":9223372036854775807,"
                          "\"zero\":0,\"t\":true,\"f\":false,\"null\":null,"
                          "\"z\":\"\xe1\xbb\x87n\",\"hex\":\"009fff\",\"o\":{},"
                          "\"a\":[null,[]]}");
    CHECK(j.len == w);
    CHECK(j.len == w && memcmp(j.buf, want, w) == 0);
    if (j.len != w || memcmp(j.buf, want, w) != 0)
        fprintf(stderr, "got  %.*s\nwant %.*s\n", (int)j.len, j.buf, (int)w, want);
    /* A long value grows the buffer from its first 1 KiB and comes out whole. */
    jw_reset(&j);
    char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    big[4000] = '"';
    jw_str(&j, big, sizeof big);
    CHECK(j.len == sizeof big + 3 && j.buf[0] == '"' && j.buf[j.len - 1] == '"');
    CHECK(j.len == sizeof big + 3 && memcmp(j.buf + 1, big, 4000) == 0 &&
          memcmp(j.buf + 4001, "\\\"", 2) == 0 && memcmp(j.buf + 4003, big + 4001, 999) == 0);
    jw_free(&j);
}

/* audit_format_time against gmtime/strftime over dates that test the calendar arithmetic. */
static void test_format_time(void)
{
    static const int64_t secs[] = {0,          59,         86399,       86400,      951782400,
                                   951868799,  951868800,  978307199,   1709164800, 1796230799,
                                   4102444800, 4107542399, 253402300799};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        for (int ms = 0; ms < 1000; ms += 999) {
            char got[25], want[32];
            time_t t = (time_t)secs[i];
            struct tm tm;
            gmtime_r(&t, &tm);
            size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(want + n, sizeof want - n, ".%03dZ", ms);
            /* twice: the second call may come from a per-second cache */
            audit_format_time(secs[i] * 1000 + ms, got);
            CHECK(strcmp(got, want) == 0);
            audit_format_time(secs[i] * 1000 + ms, got);
            CHECK(strcmp(got, want) == 0);
            if (strcmp(got, want) != 0)
                fprintf(stderr, "format_time %lld: got %s want %s\n", (long long)secs[i], got, want);
        }
    }
    char got[25];
    audit_format_time(-1, got);
    CHECK(strcmp(got, "0000-00-00T00:00:00.000Z") == 0);
    audit_format_time(253402300800000LL, got); /* year 10000 */
    CHECK(strcmp(got, "0000-00-00T00:00:00.000Z") == 0);
}

/* fmt_i64 (the writer's and the Redis command's numbers) against snprintf, at every power of
 * ten and its neighbours, both signs, the ends of the range, and every number to 1,000 either
 * side of zero (the short ones have their own path). */
static void test_fmt_i64(void)
{
    int64_t vals[200 + 2001];
    size_t n = 0;
    vals[n++] = INT64_MIN;
    vals[n++] = INT64_MAX;
    vals[n++] = INT64_MIN + 1;
    for (int64_t p = 1; n + 6 <= 200; p *= 10) {
        int64_t c[3] = {p - 1, p, p + 1};
        for (int k = 0; k < 3; k++) {
            vals[n++] = c[k];
            vals[n++] = -c[k];
        }
        if (p > INT64_MAX / 10)
            break;
    }
    for (int64_t v = -1000; v <= 1000; v++)
        vals[n++] = v;
    for (size_t i = 0; i < n; i++) {
        char got[24], want[24];
        memset(got, 'x', sizeof got);
        size_t len = fmt_i64(got, vals[i]);
        int wl = snprintf(want, sizeof want, "%lld", (long long)vals[i]);
        CHECK(len == (size_t)wl && strcmp(got, want) == 0);
        if (len != (size_t)wl || strcmp(got, want) != 0)
            fprintf(stderr, "fmt_i64: got %s want %s\n", got, want);
    }
    /* both ASCII case-insensitive comparisons */
    CHECK(ascii_eq_nocase("Content-Length", 14, "content-length"));
    CHECK(!ascii_eq_nocase("Content-Lengt", 13, "content-length"));
    CHECK(!ascii_eq_nocase("Content-Lengthx", 15, "content-length"));
    CHECK(!ascii_eq_nocase("Content-Lengtx", 14, "content-length"));
    CHECK(ascii_eq_nocase("", 0, ""));
    CHECK(!ascii_eq_nocase("a\0", 2, "a"));
}

/* The word-at-a-time scan: every byte value at every position of a 16-byte value, and a
 * 3-byte UTF-8 character across the 8-byte boundary. */
static void test_escape_positions(void)
{
    struct jsonw j;
    jw_init(&j);
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        char one[8];
        if (c == '"' || c == '\\')
            snprintf(one, sizeof one, "\\%c", c);
        else if (c == '\n' || c == '\r' || c == '\t')
            snprintf(one, sizeof one, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else if (c >= 0x20 && c < 0x7f)
            snprintf(one, sizeof one, "%c", c);
        else
            snprintf(one, sizeof one, "\\u00%02x", c);
        for (int at = 0; at < 16; at++) {
            char in[16], want[64];
            memset(in, 'a', sizeof in);
            in[at] = (char)c;
            int w = snprintf(want, sizeof want, "\"%.*s%s%.*s\"", at, "aaaaaaaaaaaaaaaa", one,
                             15 - at, "aaaaaaaaaaaaaaaa");
            jw_reset(&j);
            jw_str(&j, in, sizeof in);
            if (j.len != (size_t)w || memcmp(j.buf, want, (size_t)w) != 0) {
                if (!bad++)
                    fprintf(stderr, "escape byte %02x at %d: got %.*s want %s\n", c, at,
                            (int)j.len, j.buf, want);
            }
        }
    }
    CHECK(bad == 0);
    for (int at = 0; at < 14; at++) {
        char in[16];
        memset(in, 'b', sizeof in);
        memcpy(in + at, "\xe1\xba\xa1", 3);
        jw_reset(&j);
        jw_str(&j, in, sizeof in);
        CHECK(j.len == 18 && memcmp(j.buf + 1, in, 16) == 0);
    }
    jw_free(&j);
}

static char tmpdir[64];

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "command failed: %s\n", cmd);
}

static int verify_dir(const char *dir, EVP_PKEY *pub, int live, char *err, size_t errlen)
{
    struct seg_file *segs;
    char e[300];
    long n = seg_list(dir, NULL, &segs, e, sizeof e);
    if (n < 0)
        return -1;
    struct verify_opts vo = {.pubs = &pub, .npubs = 1, .live = live};
    struct verify_result r;
    audit_verify(segs, n, &vo, &r);
    seg_list_free(segs, n);
    snprintf(err, errlen, "%s", r.error);
    return r.ok ? (int)r.records : -1;
}

/* A record text at the current time. */
static size_t rec_text(char *out, size_t outlen, const char *rest)
{
    char t[25];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    audit_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, t);
    return (size_t)snprintf(out, outlen, "\"time\":\"%s\",%s", t, rest);
}

static long long zero_ahead; /* audit_opts.zero_ahead_bytes of open_log */

/* Waits (up to 10 s) until every record handed to a is durable: a fixed sleep left the batching
 * to the scheduler, and a loaded machine once wrote all 40 records below in too few batches to
 * rotate twice. */
static void wait_written(struct audit *a)
{
    for (int i = 0; i < 10000; i++) {
        struct audit_stats st;
        audit_get_stats(a, &st);
        if (st.queued == 0)
            return;
        usleep(1000);
    }
    CHECK(!"the audit writer did not write its queue within 10 s");
}

static struct audit *open_log(const char *keys, const char *logdir)
{
    char path[256], err[400];
    snprintf(path, sizeof path, "%s/signing.key", keys);
    struct audit_opts o = {.dir = logdir, .instance = "unit-1", .group_commit_us = 0,
                           .segment_bytes = 4096, .zero_ahead_bytes = zero_ahead,
                           .checkpoint_records = 5,
                           .checkpoint_ms = 1000, .heartbeat_ms = 60000, .queue_records = 100,
                           .min_free_bytes = 0};
    o.key = audit_load_signing_key(path, logdir, err, sizeof err);
    CHECK(o.key != NULL);
    struct audit *a = audit_open(&o, err, sizeof err);
    if (a == NULL)
        fprintf(stderr, "audit_open: %s\n", err);
    return a;
}

/* A new directory dir (64 bytes) with keys/ (a fresh key pair) and the name of log/ in it. */
static void new_log_dir(char *dir, char keys[160], char logdir[160])
{
    char err[800];
    snprintf(dir, 64, "/tmp/lg-audit-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(keys, 160, "%s/keys", dir);
    snprintf(logdir, 160, "%s/log", dir);
    mkdir(keys, 0700);
    CHECK(audit_keygen(keys, err, sizeof err) == 0);
}

static void test_writer(void)
{
    char keys[160], logdir[160], err[800], path[256];
    new_log_dir(tmpdir, keys, logdir);
    CHECK(audit_keygen(keys, err, sizeof err) != 0); /* never overwrites */
    snprintf(path, sizeof path, "%s/signing.pub", keys);
    EVP_PKEY *pub = audit_load_public_key(path, err, sizeof err);
    CHECK(pub != NULL);

    /* A key inside the log directory, or readable by others, is refused. */
    uint8_t cid[CID_KEY_BYTES];
    snprintf(path, sizeof path, "%s/cid.key", keys);
    CHECK(audit_load_cid_key(path, logdir, cid, err, sizeof err) == 0);
    chmod(path, 0644);
    CHECK(audit_load_cid_key(path, logdir, cid, err, sizeof err) != 0);
    CHECK(strstr(err, "chmod 600") != NULL);
    chmod(path, 0600);
    CHECK(audit_load_cid_key(path, keys, cid, err, sizeof err) != 0);
    CHECK(strstr(err, "outside the audit directory") != NULL);
    char tok1[65], tok2[65];
    audit_cid_token(cid, "001234567890", 12, tok1);
    audit_cid_token(cid, "001234567891", 12, tok2);
    CHECK(strlen(tok1) == 64 && strcmp(tok1, tok2) != 0 && strstr(tok1, "001234567890") == NULL);

    /* First run: a start, 40 records (several segments at 4 KiB), a stop. */
    struct audit *a = open_log(keys, logdir);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    char start[200], stop[200];
    size_t startlen = rec_text(start, sizeof start, "\"type\":\"start\",\"instance\":"
                                                    "\"unit-1\",\"heartbeat_ms\":60000}");
    audit_log(a, start, startlen);
    for (int i = 0; i < 40; i++) {
        char t[300], rest[250];
        snprintf(rest, sizeof rest, "\"type\":\"lookup.intent\",\"instance\":\"unit-1\","
                 "\"account\":\"a%d\",\"pad\":\"%0100d\"}", i, 0);
        audit_log(a, t, rec_text(t, sizeof t, rest));
        if (i % 5 == 4)
            wait_written(a); /* batches of 5, so that size rotation happens between them */
    }
    audit_close(a, stop, rec_text(stop, sizeof stop, "\"type\":\"stop\",\"instance\":\"unit-1\"}"));
    int recs = verify_dir(logdir, pub, 0, err, sizeof err);
    if (recs < 0)
        fprintf(stderr, "verify: %s\n", err);
    CHECK(recs >= 43); /* segment headers, start, 40, stop */
    struct seg_file *segs;
    long nseg = seg_list(logdir, "unit-1", &segs, err, sizeof err);
    CHECK(nseg >= 3);
    struct stat st;
    CHECK(stat(segs[0].path, &st) == 0 && (st.st_mode & 0222) == 0); /* closed: read-only */

    /* Second run continues the seq and the chain. */
    a = open_log(keys, logdir);
    CHECK(a != NULL);
    if (a) {
        audit_log(a, start, rec_text(start, sizeof start, "\"type\":\"start\",\"instance\":"
                                                          "\"unit-1\",\"heartbeat_ms\":60000}"));
        audit_close(a, stop, rec_text(stop, sizeof stop, "\"type\":\"stop\",\"instance\":\"unit-1\"}"));
    }
    int recs2 = verify_dir(logdir, pub, 0, err, sizeof err);
    CHECK(recs2 == recs + 3);

    /* One changed byte in a record of the first segment: verify names that record. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "chmod u+w %s && sed -i 's/\"account\":\"a1\"/\"account\":\"a7\"/' %s",
             segs[0].path, segs[0].path);
    CHECK(system(cmd) == 0);
    CHECK(verify_dir(logdir, pub, 0, err, sizeof err) < 0);
    CHECK(strstr(err, segs[0].name) != NULL && strstr(err, "seq 3") != NULL);
    printf("tampered: %s\n", err);
    seg_list_free(segs, nseg);

    /* A silence of ten minutes while the instance runs (heartbeats every minute) fails. */
    char gapdir[160];
    snprintf(gapdir, sizeof gapdir, "%s/gap", tmpdir);
    a = open_log(keys, gapdir);
    CHECK(a != NULL);
    if (a) {
        char t[25], late[200];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        audit_log(a, start, rec_text(start, sizeof start, "\"type\":\"start\",\"instance\":"
                                                          "\"unit-1\",\"heartbeat_ms\":60000}"));
        audit_format_time((int64_t)ts.tv_sec * 1000 + 600000, t);
        int n = snprintf(late, sizeof late, "\"time\":\"%s\",\"type\":\"lookup.intent\","
                         "\"instance\":\"unit-1\"}", t);
        audit_log(a, late, (size_t)n);
        audit_close(a, late, (size_t)n); /* (a second record at the same late time) */
    }
    CHECK(verify_dir(gapdir, pub, 1, err, sizeof err) < 0);
    CHECK(strstr(err, ":3: seq 2: no record for 59") != NULL);
    printf("gap: %s\n", err);
    if (check_failures == 0)
        rm_rf(tmpdir);
    EVP_PKEY_free(pub);
}

/* seg_read: a NUL tail is the writer's zero-filled space, not records; a NUL elsewhere is
 * left for the reader to reject. */
static void test_seg_read_zeros(void)
{
    static const struct {
        const char *data;
        size_t size, len, zeros;
    } cases[] = {
        {"{}\n\0\0\0", 6, 3, 3},
        {"\0\0", 2, 0, 2},
        {"{\0}\n", 4, 4, 0},
        {"{}\n{\"a\0\0", 8, 6, 2}, /* a torn record in the space: the reader's to judge */
        {"", 0, 0, 0},
    };
    char dir[64], path[128], err[300];
    snprintf(dir, sizeof dir, "/tmp/lg-segread-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s.jsonl", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (f == NULL)
            break;
        fwrite(cases[i].data, 1, cases[i].size, f);
        fclose(f);
        struct seg_data d;
        CHECK(seg_read(path, &d, err, sizeof err) == 0);
        CHECK(d.len == cases[i].len && d.zeros == cases[i].zeros);
        CHECK(memcmp(d.buf, cases[i].data, d.len) == 0 && d.buf[d.len] == '\0');
        seg_data_free(&d);
    }
    rm_rf(dir);
}

static int has_nul(const struct seg_file *f)
{
    FILE *fp = fopen(f->path, "rb");
    int c, nul = 0;
    while (fp && (c = getc(fp)) != EOF)
        nul |= c == 0;
    if (fp)
        fclose(fp);
    return nul;
}

/* audit_opts.zero_ahead_bytes: the segment being written is zero-filled ahead of its records,
 * in whole pages, never far past the rotation size; a live copy verifies; a closed segment
 * (rotated, or at stop) has its zeros cut off. */
static void test_zero_ahead(void)
{
    char dir[64], keys[160], logdir[160], err[800], path[256];
    new_log_dir(dir, keys, logdir);
    snprintf(path, sizeof path, "%s/signing.pub", keys);
    EVP_PKEY *pub = audit_load_public_key(path, err, sizeof err);
    CHECK(pub != NULL);
    zero_ahead = 2048;
    struct audit *a = open_log(keys, logdir); /* 4 KiB segments */
    zero_ahead = 0;
    CHECK(a != NULL);
    if (a == NULL || pub == NULL)
        return;
    char start[200], stop[200], t[300];
    audit_log(a, start, rec_text(start, sizeof start, "\"type\":\"start\",\"instance\":"
                                                      "\"unit-1\",\"heartbeat_ms\":60000}"));
    int checked_live = 0;
    for (int i = 0; i < 30; i++) {
        char rest[250], mark[32];
        snprintf(rest, sizeof rest, "\"type\":\"lookup.intent\",\"instance\":\"unit-1\","
                 "\"account\":\"z%d\",\"pad\":\"%0100d\"}", i, 0);
        audit_log(a, t, rec_text(t, sizeof t, rest));
        snprintf(mark, sizeof mark, "\"account\":\"z%d\"", i);
        /* Wait until the record is in the newest segment; look at that segment. */
        struct seg_file *segs = NULL;
        long n = 0;
        struct seg_data d = {0};
        struct stat st = {0};
        for (int tries = 0; tries < 2000; tries++) {
            seg_data_free(&d);
            seg_list_free(segs, n);
            segs = NULL;
            n = seg_list(logdir, "unit-1", &segs, err, sizeof err);
            if (n > 0 && seg_read(segs[n - 1].path, &d, err, sizeof err) == 0 &&
                strstr(d.buf, mark) != NULL && stat(segs[n - 1].path, &st) == 0)
                break;
            usleep(1000);
        }
        CHECK(d.buf != NULL && strstr(d.buf, mark) != NULL);
        CHECK(d.zeros > 0 && (uint64_t)st.st_size == d.len + d.zeros);
        CHECK(st.st_size % 4096 == 0 && st.st_size <= 4096 + 4096 + 2048);
        CHECK(strlen(d.buf) == d.len && d.buf[d.len - 1] == '\n');
        for (long k = 0; k + 1 < n; k++)
            CHECK(!has_nul(&segs[k])); /* rotated: cut */
        if (n >= 2 && !checked_live) {
            checked_live = 1;
            CHECK(verify_dir(logdir, pub, 1, err, sizeof err) > 0);
        }
        seg_data_free(&d);
        seg_list_free(segs, n);
    }
    CHECK(checked_live);
    audit_close(a, stop, rec_text(stop, sizeof stop, "\"type\":\"stop\",\"instance\":\"unit-1\"}"));
    CHECK(verify_dir(logdir, pub, 0, err, sizeof err) >= 33);
    struct seg_file *segs;
    long n = seg_list(logdir, "unit-1", &segs, err, sizeof err);
    CHECK(n >= 3);
    for (long k = 0; k < n; k++)
        CHECK(!has_nul(&segs[k]));
    seg_list_free(segs, n);
    EVP_PKEY_free(pub);
    if (check_failures == 0)
        rm_rf(dir);
}

static void count_done(void *arg, int durable)
{
    if (durable)
        ++*(int *)arg;
}

/* A worker's records come back to its sink after their callback and are reused by
 * audit_rec_take (no allocation per record); one larger than the room is made to measure.
 * The log holds each record's own text. */
static void test_record_reuse(void)
{
    char dir[64], keys[160], logdir[160], err[800], path[256];
    new_log_dir(dir, keys, logdir);
    struct audit *a = open_log(keys, logdir);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    struct event_base *base = event_base_new();
    struct audit_sink *sink = audit_sink_new(a, base);
    int done = 0;
    char t[3300], big[3100];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct audit_rec *first = NULL;
    for (int i = 0; i < 4; i++) {
        char rest[3200];
        snprintf(rest, sizeof rest, "\"type\":\"lookup.intent\",\"instance\":\"unit-1\","
                 "\"n\":%d,\"pad\":\"%s\"}", i, i == 2 ? big : "short");
        size_t len = rec_text(t, sizeof t, rest);
        CHECK(audit_sink_idle(sink) == (i == 0 ? 0 : 1));
        struct audit_rec *r = audit_rec_take(sink, t, len);
        CHECK(audit_sink_idle(sink) == (i == 2)); /* the long one leaves the idle one there */
        CHECK(r->len == len && memcmp(r->text, t, len) == 0 && r->text[len] == '\0');
        if (i == 0)
            first = r;
        else if (i == 2)
            CHECK(r != first && r->cap == len + 1); /* too long for the room: its own */
        else
            CHECK(r == first); /* the record that came back */
        CHECK(audit_submit(sink, r, AUDIT_OTHER, count_done, &done) == AUDIT_QUEUED);
        for (int k = 0; k < 500 && done <= i; k++)
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(2000);
        CHECK(done == i + 1);
        CHECK(audit_sink_idle(sink) == 1); /* back after its callback (not the long one) */
    }
    audit_close(a, t, rec_text(t, sizeof t, "\"type\":\"stop\",\"instance\":\"unit-1\"}"));
    audit_sink_free(sink);
    event_base_free(base);
    snprintf(path, sizeof path, "%s/keys/signing.pub", dir);
    EVP_PKEY *pub = audit_load_public_key(path, err, sizeof err);
    CHECK(verify_dir(logdir, pub, 0, err, sizeof err) >= 5);
    /* Each record's own text, the long one whole. */
    struct seg_file *segs;
    long nseg = seg_list(logdir, "unit-1", &segs, err, sizeof err);
    int shorts = 0, longs = 0;
    char want[3200];
    snprintf(want, sizeof want, "\"n\":2,\"pad\":\"%s\"}", big);
    for (long i = 0; i < nseg; i++) {
        FILE *f = fopen(segs[i].path, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f)) {
            shorts += strstr(line, ",\"pad\":\"short\"}") != NULL;
            longs += strstr(line, want) != NULL;
        }
        if (f)
            fclose(f);
    }
    CHECK(shorts == 3 && longs == 1);
    seg_list_free(segs, nseg);
    EVP_PKEY_free(pub);
    if (check_failures == 0)
        rm_rf(dir);
}

/* common/sha256: RFC 4231 vectors, and agreement with OpenSSL's one-shot HMAC() and SHA256()
 * for keys and messages of every length around the block size. */
static void test_sha256(void)
{
    struct hmac_sha256_key k;
    uint8_t mac[32], ref[32];
    char hex[65];
    uint8_t key20[20];
    memset(key20, 0x0b, sizeof key20);
    hmac_sha256_key_init(&k, key20, sizeof key20);
    hmac_sha256(&k, "Hi There", 8, mac);
    hex_encode(mac, 32, hex);
    CHECK(strcmp(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7") == 0);
    hmac_sha256_key_init(&k, (const uint8_t *)"Jefe", 4);
    hmac_sha256(&k, "what do ya want for nothing?", 28, mac);
    hex_encode(mac, 32, hex);
    CHECK(strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") == 0);
    uint8_t key[200], msg[200];
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
        msg[i] = (uint8_t)(i * 13 + 5);
    }
    for (size_t kl = 0; kl <= 131; kl += 1 + kl / 8) {
        hmac_sha256_key_init(&k, key, kl);
        for (size_t ml = 0; ml <= 130; ml += 1 + ml / 4) {
            unsigned rl = sizeof ref;
            hmac_sha256(&k, msg, ml, mac);
            HMAC(EVP_sha256(), key, (int)kl, msg, ml, ref, &rl);
            CHECK(memcmp(mac, ref, 32) == 0);
        }
    }
    for (size_t a = 0; a <= 130; a += 7) {
        sha256_two(msg, a, key, 130 - a, mac);
        uint8_t both[260];
        memcpy(both, msg, a);
        memcpy(both + a, key, 130 - a);
        SHA256(both, 130, ref);
        CHECK(memcmp(mac, ref, 32) == 0);
    }
    /* The running state: any split into pieces, and a copied state continuing on its own. */
    for (size_t a = 0; a <= 200; a += 9) {
        for (size_t b = a; b <= 200; b += 23) {
            struct sha256_state st, copy;
            sha256_init(&st);
            sha256_update(&st, msg, a);
            sha256_update(&st, msg + a, b - a);
            copy = st;
            sha256_update(&st, msg + b, 200 - b);
            sha256_final(&st, mac);
            SHA256(msg, 200, ref);
            CHECK(memcmp(mac, ref, 32) == 0);
            sha256_final(&copy, mac);
            SHA256(msg, b, ref);
            CHECK(memcmp(mac, ref, 32) == 0);
        }
    }
    uint8_t cid[CID_KEY_BYTES];
    memset(cid, 0x42, sizeof cid);
    char t1[65], t2[65];
    hmac_sha256_key_init(&k, cid, sizeof cid);
    audit_cid_token(cid, "079123456789", 12, t1);
    audit_cid_token_k(&k, "079123456789", 12, t2);
    unsigned rl = sizeof ref;
    HMAC(EVP_sha256(), cid, sizeof cid, (const uint8_t *)"079123456789", 12, ref, &rl);
    hex_encode(ref, 32, hex);
    CHECK(strcmp(t1, hex) == 0 && strcmp(t2, hex) == 0);
}

int main(void)
{
    test_sha256();
    test_merkle_vectors();
    test_escaping();
    test_exact_output();
    test_format_time();
    test_fmt_i64();
    test_escape_positions();
    test_writer();
    test_seg_read_zeros();
    test_zero_ahead();
    test_record_reuse();
    return check_done("test_audit");
}
