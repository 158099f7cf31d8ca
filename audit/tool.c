/* lookupgate-audit: the inspectors' tool. It works offline on copied segments and links only
 * audit/ (and common/) code.
 *
 *   lookupgate-audit keygen --out DIR
 *   lookupgate-audit verify DIR... --pubkey FILE [--live] [--checkpoint FILE]
 *                           [--save-checkpoint FILE]
 *   lookupgate-audit search DIR... --pubkey FILE [filters] [--format jsonl|csv]
 *   lookupgate-audit stats  DIR... --pubkey FILE [--zone Z] [--hours HH:MM-HH:MM]
 *                           [--days mon-fri] [--format table|csv]
 */
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "audit/segment.h"
#include "audit/verify.h"
#include "common/util.h"

#define MAX_KEYS 16
#define MAX_DIRS 64

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  lookupgate-audit keygen --out DIR\n"
          "      writes signing.key, signing.pub and cid.key (never overwrites)\n"
          "  lookupgate-audit verify DIR... --pubkey FILE [--live] [--checkpoint FILE]\n"
          "                          [--save-checkpoint FILE]\n"
          "      checks every record, checkpoint, signature and the segment chain of each\n"
          "      instance found in DIR...; --checkpoint proves the log only grew since a\n"
          "      checkpoint kept from an earlier visit; exit 0: pass, 1: fail, 2: usage\n"
          "  lookupgate-audit search DIR... --pubkey FILE [--account ID] [--unit U]\n"
          "                          [--operation OP] [--decision D] [--dossier CODE]\n"
          "                          [--type T] [--from TIME] [--to TIME]\n"
          "                          [--citizen ID --cid-key FILE] [--format jsonl|csv]\n"
          "      records of every instance, verified, merged by time\n"
          "  lookupgate-audit stats DIR... --pubkey FILE [--zone ZONE]\n"
          "                          [--hours 07:00-17:00] [--days mon-fri] [--format table|csv]\n"
          "      per account and local day: lookups, refusals by kind, distinct citizens,\n"
          "      lookups outside working hours\n"
          "TIME is YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] in --zone (default Asia/Ho_Chi_Minh),\n"
          "or UTC when it ends in Z.\n",
          f);
}

struct common {
    const char *dirs[MAX_DIRS];
    int ndirs;
    EVP_PKEY *keys[MAX_KEYS];
    int nkeys;
    int live;
    const char *zone;
};

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Every segment in the directories, grouped by instance. */
static long collect(struct common *c, struct seg_file **out)
{
    struct seg_file *all = NULL;
    long n = 0;
    for (int i = 0; i < c->ndirs; i++) {
        struct seg_file *s;
        char err[300];
        long k = seg_list(c->dirs[i], NULL, &s, err, sizeof err);
        if (k < 0) {
            fprintf(stderr, "lookupgate-audit: %s\n", err);
            seg_list_free(all, n);
            return -1;
        }
        all = xrealloc(all, (size_t)(n + k + 1) * sizeof *all);
        memcpy(all + n, s, (size_t)k * sizeof *s);
        free(s);
        n += k;
    }
    /* Sort by instance, then first seq (stable across directories). */
    for (long i = 1; i < n; i++)
        for (long j = i; j > 0; j--) {
            int cmp = strcmp(all[j - 1].instance, all[j].instance);
            if (cmp < 0 || (cmp == 0 && all[j - 1].first_seq <= all[j].first_seq))
                break;
            struct seg_file t = all[j];
            all[j] = all[j - 1];
            all[j - 1] = t;
        }
    *out = all;
    return n;
}

/* Verifies each instance; calls on_record for its records. Returns the number that failed. */
static int verify_all(struct common *c, struct verify_opts *vo, int print, FILE *out,
                      struct kept_checkpoint *kept, const char *save)
{
    struct seg_file *segs;
    long n = collect(c, &segs);
    if (n < 0)
        return -1;
    if (n == 0) {
        fprintf(stderr, "lookupgate-audit: no audit segments in the given directories\n");
        free(segs);
        return -1;
    }
    int failed = 0, kept_found = 0;
    for (long i = 0; i < n;) {
        long j = i;
        while (j < n && strcmp(segs[j].instance, segs[i].instance) == 0)
            j++;
        struct verify_result r;
        char origin[96];
        audit_origin(segs[i].instance, origin, sizeof origin);
        vo->kept = kept && strcmp(kept->origin, origin) == 0 ? kept : NULL;
        kept_found |= vo->kept != NULL;
        audit_verify(segs + i, j - i, vo, &r);
        char t0[25] = "-", t1[25] = "-";
        if (r.records) {
            audit_format_time(r.first_ms, t0);
            audit_format_time(r.last_ms, t1);
        }
        if (!r.ok) {
            failed++;
            fprintf(print ? out : stderr, "FAIL %s: %s\n", segs[i].instance, r.error);
        } else if (print) {
            fprintf(out, "OK   %s: %llu records in %ld segment(s), %s .. %s, signed up to %llu\n",
                    segs[i].instance, (unsigned long long)r.records, r.segments, t0, t1,
                    (unsigned long long)r.cp_size);
            if (vo->kept)
                fprintf(out, "     the log extends the checkpoint kept at size %llu\n",
                        (unsigned long long)vo->kept->size);
        }
        if (r.notes[0])
            fprintf(print ? out : stderr, "     note: %s\n", r.notes);
        if (r.ok && save) {
            FILE *f = fopen(save, "w");
            if (f == NULL || fprintf(f, "%s\n", r.cp_line) < 0 || fclose(f) != 0) {
                fprintf(stderr, "lookupgate-audit: cannot write %s\n", save);
                failed++;
            }
        }
        i = j;
    }
    if (kept && !kept_found) {
        fprintf(print ? out : stderr, "FAIL %s: the kept checkpoint's log is not in the given "
                "directories\n", kept->origin);
        failed++;
    }
    seg_list_free(segs, n);
    return failed;
}

static int parse_common(struct common *c, int key, const char *arg)
{
    char err[300];
    switch (key) {
    case 'k':
        if (c->nkeys == MAX_KEYS)
            return -1;
        c->keys[c->nkeys] = audit_load_public_key(arg, err, sizeof err);
        if (c->keys[c->nkeys] == NULL) {
            fprintf(stderr, "lookupgate-audit: %s\n", err);
            return -1;
        }
        c->nkeys++;
        return 0;
    case 'l':
        c->live = 1;
        return 0;
    case 'z':
        c->zone = arg;
        return 0;
    }
    return 1;
}

/* The directories after the options; checks them, the keys and the format (one of f1, f2);
 * sets the zone. 0, or 2 (usage error) with a message. */
static int finish_args(struct common *c, int argc, char **argv, const char *cmd,
                       const char *format, const char *f1, const char *f2)
{
    for (; optind < argc && c->ndirs < MAX_DIRS; optind++)
        c->dirs[c->ndirs++] = argv[optind];
    if (c->ndirs == 0 || c->nkeys == 0 || (strcmp(format, f1) && strcmp(format, f2))) {
        fprintf(stderr, "lookupgate-audit %s: give DIR..., --pubkey FILE, and --format %s or "
                        "%s\n", cmd, f1, f2);
        return 2;
    }
    setenv("TZ", c->zone, 1);
    tzset();
    return 0;
}

/* --- time arguments ------------------------------------------------------------------------ */

static int64_t parse_when(const char *s, int end_of_day)
{
    int Y, M, D, h = 0, m = 0, sec = 0, n = 0;
    size_t len = strlen(s);
    int utc = len > 0 && s[len - 1] == 'Z';
    if (sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3)
        return -1;
    int date_only = (size_t)n == len;
    if (!date_only && sscanf(s + n, "T%2d:%2d%n", &h, &m, &n) >= 2) {
        (void)n;
        const char *p = strchr(s, 'T') + 6;
        if (*p == ':')
            sec = atoi(p + 1);
    } else if (!date_only) {
        return -1;
    }
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec, .tm_isdst = -1};
    if (date_only && end_of_day)
        tm.tm_mday++;
    time_t t = utc ? timegm(&tm) : mktime(&tm);
    return (int64_t)t * 1000;
}

/* --- search ------------------------------------------------------------------------------- */

struct match {
    int64_t t;
    char *instance;
    uint64_t seq;
    json_t *rec;
};

struct search {
    const char *account, *unit, *operation, *decision, *dossier, *type;
    char citizen[65];
    int64_t from, to;
    struct match *m;
    size_t n, cap;
};

static int eq(json_t *o, const char *k, const char *want)
{
    const char *v = jstr(o, k);
    return want == NULL || (v && strcmp(v, want) == 0);
}

static void search_rec(void *arg, json_t *rec, int64_t t)
{
    struct search *s = arg;
    const char *type = jstr(rec, "type");
    if (s->type ? !eq(rec, "type", s->type)
                : !(type && (strncmp(type, "lookup.", 7) == 0 || strcmp(type, "request.refused") == 0)))
        return;
    if (!eq(rec, "account", s->account) || !eq(rec, "unit", s->unit) ||
        !eq(rec, "operation", s->operation) || !eq(rec, "dossier", s->dossier) ||
        (s->citizen[0] && !eq(rec, "subject", s->citizen)))
        return;
    if (s->decision && !eq(rec, "decision", s->decision) && !eq(rec, "rule", s->decision))
        return;
    if ((s->from >= 0 && t < s->from) || (s->to >= 0 && t >= s->to))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->m = xrealloc(s->m, s->cap * sizeof *s->m);
    }
    struct match *m = &s->m[s->n++];
    m->t = t;
    m->instance = xstrdup(jstr(rec, "instance"));
    m->seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    m->rec = json_incref(rec);
}

static int match_cmp(const void *a, const void *b)
{
    const struct match *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    int c = strcmp(x->instance, y->instance);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void csv_field(FILE *f, json_t *v, int first)
{
    if (!first)
        fputc(',', f);
    if (v == NULL || json_is_null(v))
        return;
    char *s = json_is_string(v) ? xstrdup(json_string_value(v))
                                : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL)
        return;
    /* Quote always; double quotes inside; neutralise spreadsheet formulas. */
    fputc('"', f);
    if (strchr("=+-@", s[0]) && json_is_string(v))
        fputc('\'', f);
    for (char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
    free(s);
}

static int cmd_search(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", 1, 0, 'k'},    {"live", 0, 0, 'l'},      {"zone", 1, 0, 'z'},
        {"account", 1, 0, 'a'},   {"unit", 1, 0, 'u'},      {"operation", 1, 0, 'o'},
        {"decision", 1, 0, 'd'},  {"dossier", 1, 0, 'D'},   {"type", 1, 0, 't'},
        {"from", 1, 0, 'F'},      {"to", 1, 0, 'T'},        {"citizen", 1, 0, 'c'},
        {"cid-key", 1, 0, 'K'},   {"format", 1, 0, 'f'},    {0, 0, 0, 0},
    };
    struct common c = {.zone = "Asia/Ho_Chi_Minh"};
    struct search s = {.from = -1, .to = -1};
    const char *from = NULL, *to = NULL, *citizen = NULL, *cidkey = NULL, *format = "jsonl";
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = parse_common(&c, ch, optarg);
        if (r < 0)
            return 2;
        if (r == 0)
            continue;
        switch (ch) {
        case 'a': s.account = optarg; break;
        case 'u': s.unit = optarg; break;
        case 'o': s.operation = optarg; break;
        case 'd': s.decision = optarg; break;
        case 'D': s.dossier = optarg; break;
        case 't': s.type = optarg; break;
        case 'F': from = optarg; break;
        case 'T': to = optarg; break;
        case 'c': citizen = optarg; break;
        case 'K': cidkey = optarg; break;
        case 'f': format = optarg; break;
        default: usage(stderr); return 2;
        }
    }
    if (finish_args(&c, argc, argv, "search", format, "jsonl", "csv") != 0)
        return 2;
    if ((from && (s.from = parse_when(from, 0)) < 0) || (to && (s.to = parse_when(to, 1)) < 0)) {
        fprintf(stderr, "lookupgate-audit search: bad time (use YYYY-MM-DD or "
                        "YYYY-MM-DDTHH:MM[:SS][Z])\n");
        return 2;
    }
    if (citizen) {
        uint8_t key[CID_KEY_BYTES];
        char err[300];
        size_t cl = strlen(citizen);
        if (cidkey == NULL) {
            fprintf(stderr, "lookupgate-audit search: --citizen needs --cid-key FILE\n");
            return 2;
        }
        if (cl != 12 || strspn(citizen, "0123456789") != 12) {
            fprintf(stderr, "lookupgate-audit search: a citizen ID is 12 digits\n");
            return 2;
        }
        if (audit_load_cid_key(cidkey, NULL, key, err, sizeof err) != 0) {
            fprintf(stderr, "lookupgate-audit: %s\n", err);
            return 2;
        }
        audit_cid_token(key, citizen, cl, s.citizen);
    }
    struct verify_opts vo = {.pubs = (struct evp_pkey_st **)c.keys, .npubs = c.nkeys,
                             .live = c.live, .on_record = search_rec, .arg = &s};
    int failed = verify_all(&c, &vo, 0, stderr, NULL, NULL);
    int rc = 0;
    if (failed != 0) {
        fprintf(stderr, "lookupgate-audit search: the log did not verify; no results given\n");
        rc = 1;
    } else {
        if (s.n > 1)
            qsort(s.m, s.n, sizeof *s.m, match_cmp);
        static const char *const cols[] = {
            "seq", "time", "instance", "type", "request_id", "client", "account", "unit",
            "operation", "subject", "dossier", "procedure", "decision", "rule", "status", NULL};
        if (strcmp(format, "csv") == 0) {
            for (int k = 0; cols[k]; k++)
                printf("%s%s", k ? "," : "", cols[k]);
            printf("\n");
        }
        for (size_t i = 0; i < s.n; i++) {
            if (strcmp(format, "csv") == 0) {
                for (int k = 0; cols[k]; k++)
                    csv_field(stdout, json_object_get(s.m[i].rec, cols[k]), k == 0);
                printf("\n");
            } else {
                char *line = json_dumps(s.m[i].rec, JSON_COMPACT);
                printf("%s\n", line);
                free(line);
            }
        }
    }
    for (size_t i = 0; i < s.n; i++) {
        json_decref(s.m[i].rec);
        free(s.m[i].instance);
    }
    free(s.m);
    for (int i = 0; i < c.nkeys; i++)
        EVP_PKEY_free(c.keys[i]);
    return rc;
}

/* --- stats -------------------------------------------------------------------------------- */

struct row {
    char *account;
    int day; /* YYYYMMDD local */
    long lookups, outside, refused;
    char **subjects;
    size_t nsub, capsub;
    char *rules[32];
    long rule_n[32];
    int nrules;
};

struct stats {
    struct row *rows;
    size_t n, cap;
    int from_min, to_min; /* working hours, minutes of the day */
    int days_mask;        /* bit per tm_wday */
};

static struct row *row_for(struct stats *s, const char *account, int day)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->rows[i].day == day && strcmp(s->rows[i].account, account) == 0)
            return &s->rows[i];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->rows = xrealloc(s->rows, s->cap * sizeof *s->rows);
    }
    struct row *r = &s->rows[s->n++];
    memset(r, 0, sizeof *r);
    r->account = xstrdup(account);
    r->day = day;
    return r;
}

static void stats_rec(void *arg, json_t *rec, int64_t t)
{
    struct stats *s = arg;
    const char *type = jstr(rec, "type"), *account = jstr(rec, "account");
    if (type == NULL || account == NULL)
        return;
    time_t sec = (time_t)(t / 1000);
    struct tm tm;
    localtime_r(&sec, &tm);
    int day = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    if (strcmp(type, "lookup.intent") == 0) {
        struct row *r = row_for(s, account, day);
        r->lookups++;
        int mins = tm.tm_hour * 60 + tm.tm_min;
        if (!(s->days_mask & (1 << tm.tm_wday)) || mins < s->from_min || mins >= s->to_min)
            r->outside++;
        const char *sub = jstr(rec, "subject");
        if (sub) {
            if (r->nsub == r->capsub) {
                r->capsub = r->capsub ? 2 * r->capsub : 16;
                r->subjects = xrealloc(r->subjects, r->capsub * sizeof *r->subjects);
            }
            r->subjects[r->nsub++] = xstrdup(sub);
        }
    } else if (strcmp(type, "request.refused") == 0) {
        struct row *r = row_for(s, account, day);
        const char *rule = jstr(rec, "rule");
        r->refused++;
        if (rule == NULL)
            rule = "unknown";
        int k = 0;
        while (k < r->nrules && strcmp(r->rules[k], rule) != 0)
            k++;
        if (k == r->nrules && r->nrules < 32)
            r->rules[r->nrules++] = xstrdup(rule);
        if (k < 32)
            r->rule_n[k]++;
    }
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcmp(x->account, y->account);
    return c ? c : (x->day > y->day) - (x->day < y->day);
}

static int parse_hours(const char *s, int *from, int *to)
{
    int h1, m1, h2, m2;
    if (sscanf(s, "%2d:%2d-%2d:%2d", &h1, &m1, &h2, &m2) != 4 || h1 > 24 || h2 > 24 ||
        m1 > 59 || m2 > 59)
        return -1;
    *from = h1 * 60 + m1;
    *to = h2 * 60 + m2;
    return *from < *to ? 0 : -1;
}

static int parse_days(const char *s, int *mask)
{
    static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    char a[4] = "", b[4] = "";
    if (sscanf(s, "%3[a-z]-%3[a-z]", a, b) != 2)
        return -1;
    int x = -1, y = -1;
    for (int i = 0; i < 7; i++) {
        if (strcmp(a, names[i]) == 0)
            x = i;
        if (strcmp(b, names[i]) == 0)
            y = i;
    }
    if (x < 0 || y < 0)
        return -1;
    *mask = 0;
    for (int i = x;; i = (i + 1) % 7) {
        *mask |= 1 << i;
        if (i == y)
            break;
    }
    return 0;
}

static int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", 1, 0, 'k'}, {"live", 0, 0, 'l'}, {"zone", 1, 0, 'z'},
        {"hours", 1, 0, 'h'},  {"days", 1, 0, 'd'}, {"format", 1, 0, 'f'},
        {0, 0, 0, 0},
    };
    struct common c = {.zone = "Asia/Ho_Chi_Minh"};
    struct stats s = {0};
    const char *format = "table";
    parse_hours("07:00-17:00", &s.from_min, &s.to_min);
    parse_days("mon-fri", &s.days_mask);
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = parse_common(&c, ch, optarg);
        if (r < 0)
            return 2;
        if (r == 0)
            continue;
        if (ch == 'h' && parse_hours(optarg, &s.from_min, &s.to_min) == 0)
            continue;
        if (ch == 'd' && parse_days(optarg, &s.days_mask) == 0)
            continue;
        if (ch == 'f') {
            format = optarg;
            continue;
        }
        fprintf(stderr, "lookupgate-audit stats: bad option (--hours HH:MM-HH:MM, --days "
                        "mon-fri)\n");
        return 2;
    }
    if (finish_args(&c, argc, argv, "stats", format, "table", "csv") != 0)
        return 2;
    struct verify_opts vo = {.pubs = (struct evp_pkey_st **)c.keys, .npubs = c.nkeys,
                             .live = c.live, .on_record = stats_rec, .arg = &s};
    int failed = verify_all(&c, &vo, 0, stderr, NULL, NULL);
    int rc = 0;
    if (failed) {
        fprintf(stderr, "lookupgate-audit stats: the log did not verify; no results given\n");
        rc = 1;
    } else {
        if (s.n > 1)
            qsort(s.rows, s.n, sizeof *s.rows, row_cmp);
        int csv = strcmp(format, "csv") == 0;
        if (csv)
            printf("account,day,lookups,distinct_citizens,outside_hours,refused,refusals\n");
        else
            printf("%-24s %-10s %8s %9s %8s %8s  %s\n", "account", "day", "lookups",
                   "citizens", "outside", "refused", "refusals by kind");
        for (size_t i = 0; i < s.n; i++) {
            struct row *r = &s.rows[i];
            if (r->nsub > 1)
                qsort(r->subjects, r->nsub, sizeof *r->subjects, str_cmp);
            size_t distinct = 0;
            for (size_t k = 0; k < r->nsub; k++)
                distinct += k == 0 || strcmp(r->subjects[k], r->subjects[k - 1]) != 0;
            char kinds[512] = "";
            size_t o = 0;
            for (int k = 0; k < r->nrules && o < sizeof kinds; k++)
                o += (size_t)snprintf(kinds + o, sizeof kinds - o, "%s%s=%ld", k ? " " : "",
                                      r->rules[k], r->rule_n[k]);
            char day[16];
            snprintf(day, sizeof day, "%04d-%02d-%02d", r->day / 10000, r->day / 100 % 100,
                     r->day % 100);
            if (csv)
                printf("\"%s\",%s,%ld,%zu,%ld,%ld,\"%s\"\n", r->account, day, r->lookups,
                       distinct, r->outside, r->refused, kinds);
            else
                printf("%-24s %-10s %8ld %9zu %8ld %8ld  %s\n", r->account, day, r->lookups,
                       distinct, r->outside, r->refused, kinds);
        }
    }
    for (size_t i = 0; i < s.n; i++) {
        struct row *r = &s.rows[i];
        for (size_t k = 0; k < r->nsub; k++)
            free(r->subjects[k]);
        free(r->subjects);
        for (int k = 0; k < r->nrules; k++)
            free(r->rules[k]);
        free(r->account);
    }
    free(s.rows);
    for (int i = 0; i < c.nkeys; i++)
        EVP_PKEY_free(c.keys[i]);
    return rc;
}

/* --- verify and keygen ---------------------------------------------------------------------- */

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", 1, 0, 'k'},     {"live", 0, 0, 'l'},
        {"checkpoint", 1, 0, 'c'}, {"save-checkpoint", 1, 0, 's'},
        {0, 0, 0, 0},
    };
    struct common c = {0};
    const char *kept_path = NULL, *save = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = parse_common(&c, ch, optarg);
        if (r < 0)
            return 2;
        if (r == 0)
            continue;
        if (ch == 'c')
            kept_path = optarg;
        else if (ch == 's')
            save = optarg;
        else {
            usage(stderr);
            return 2;
        }
    }
    for (; optind < argc && c.ndirs < MAX_DIRS; optind++)
        c.dirs[c.ndirs++] = argv[optind];
    if (c.ndirs == 0 || c.nkeys == 0) {
        fprintf(stderr, "lookupgate-audit verify: give DIR... and --pubkey FILE\n");
        return 2;
    }
    struct kept_checkpoint kept, *kp = NULL;
    if (kept_path) {
        struct seg_data d;
        char err[300];
        int good = 0;
        if (seg_read(kept_path, &d, err, sizeof err) != 0) {
            fprintf(stderr, "lookupgate-audit: %s\n", err);
            return 2;
        }
        for (int i = 0; i < c.nkeys && !good; i++)
            good = audit_parse_checkpoint(d.buf, c.keys[i], &kept, err, sizeof err) == 0;
        seg_data_free(&d);
        if (!good) {
            fprintf(stderr, "lookupgate-audit: %s: %s\n", kept_path, err);
            return 1;
        }
        kp = &kept;
    }
    struct verify_opts vo = {.pubs = (struct evp_pkey_st **)c.keys, .npubs = c.nkeys,
                             .live = c.live};
    int failed = verify_all(&c, &vo, 1, stdout, kp, save);
    for (int i = 0; i < c.nkeys; i++)
        EVP_PKEY_free(c.keys[i]);
    if (failed < 0)
        return 2;
    printf("%s\n", failed ? "verify: FAIL" : "verify: PASS");
    return failed ? 1 : 0;
}

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"out", 1, 0, 'o'}, {0, 0, 0, 0}};
    const char *out = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'o') {
            usage(stderr);
            return 2;
        }
        out = optarg;
    }
    if (out == NULL) {
        fprintf(stderr, "lookupgate-audit keygen: give --out DIR\n");
        return 2;
    }
    char err[400];
    if (audit_keygen(out, err, sizeof err) != 0) {
        fprintf(stderr, "lookupgate-audit keygen: %s\n", err);
        return 1;
    }
    printf("wrote %s/signing.key (keep secret: the gateway signs with it),\n"
           "      %s/signing.pub (give to inspectors: verify needs only this),\n"
           "      %s/cid.key (keep secret: it turns citizen IDs into subject tokens)\n",
           out, out, out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    argv++;
    argc--;
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc, argv);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc, argv);
    if (strcmp(cmd, "search") == 0)
        return cmd_search(argc, argv);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(argc, argv);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("lookupgate-audit %s\n", LOOKUPGATE_VERSION);
        return 0;
    }
    fprintf(stderr, "lookupgate-audit: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
