/* lookupgate-audit verify: replays the log and checks everything that makes it tamper-evident. */
#include "audit/verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/merkle.h"
#include "common/sha256.h"

int64_t audit_parse_time(const char *s)
{
    int Y, M, D, h, m, sec, ms;
    char z;
    if (s == NULL || strlen(s) != 24 ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &Y, &M, &D, &h, &m, &sec, &ms, &z) != 8 ||
        z != 'Z')
        return -1;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                    .tm_min = m, .tm_sec = sec};
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int audit_parse_checkpoint(const char *line, struct evp_pkey_st *pub, struct kept_checkpoint *k,
                           char *err, size_t errlen)
{
    json_t *o = json_loads(line, 0, NULL);
    const char *type = jstr(o, "type"), *origin = jstr(o, "origin"), *root = jstr(o, "root");
    const char *sig = jstr(o, "sig");
    json_t *size = json_object_get(o, "size");
    int rc = -1;
    if (!type || strcmp(type, "checkpoint") || !origin || !root || !sig ||
        !json_is_integer(size) || strlen(origin) >= sizeof k->origin ||
        strlen(root) >= sizeof k->root) {
        snprintf(err, errlen, "not a checkpoint line");
        goto out;
    }
    snprintf(k->origin, sizeof k->origin, "%s", origin);
    snprintf(k->root, sizeof k->root, "%s", root);
    k->size = (uint64_t)json_integer_value(size);
    if (pub) {
        uint8_t r[40];
        char msg[256];
        if (b64_decode(root, strlen(root), r) != 32) {
            snprintf(err, errlen, "the checkpoint's root is not a base64 SHA-256");
            goto out;
        }
        size_t ml = audit_checkpoint_text(origin, k->size, r, msg, sizeof msg);
        if (!audit_verify_sig(pub, msg, ml, sig)) {
            snprintf(err, errlen, "the checkpoint's signature is not valid for this key");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

struct vstate {
    const struct verify_opts *o;
    struct verify_result *r;
    struct merkle tree;
    uint8_t prev_leaf[32];
    char origin[96];
    const char *instance;
    int have_cp;
    uint64_t cp_size;
    char cp_root[48], cp_sig[92];
    /* heartbeat spacing */
    int running;
    int64_t hb_ms;
    int64_t last_ms;
    char last_where[48];
    int gap_pending;
    char gap_msg[700];
    const char *last_type;
    char last_type_buf[32];
};

static void fail(struct verify_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct verify_result *r, const char *fmt, ...)
{
    if (!r->ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->ok = 0;
}

static void note(struct verify_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct verify_result *r, const char *fmt, ...)
{
    size_t o = strlen(r->notes);
    if (o + 2 >= sizeof r->notes)
        return;
    if (o)
        r->notes[o++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes + o, sizeof r->notes - o, fmt, ap);
    va_end(ap);
}

/* The header of a segment against what the previous segment really was. */
static void check_header(struct vstate *v, json_t *h, const char *where, long idx,
                         const struct seg_file *prevf, uint64_t prev_bytes,
                         const uint8_t prev_lines[32], const uint8_t prev_file_sha[32],
                         int prev_have_cp, uint64_t prev_cp_size,
                         const char *prev_cp_root, const char *prev_cp_sig, const char *fname)
{
    struct verify_result *r = v->r;
    char fr[65 * MERKLE_MAX_LEVELS + 1];
    merkle_frontier_text(&v->tree, fr, sizeof fr);
    const char *hf = jstr(h, "frontier"), *file = jstr(h, "file"), *origin = jstr(h, "origin");
    json_t *prev = json_object_get(h, "prev_segment");
    if (idx == 0 && (!json_is_null(prev) || v->tree.size != 0 ||
                     json_integer_value(json_object_get(h, "seq")) != 0)) {
        fail(r, "%s: the log does not start here (first seq %lld): earlier segments are "
                "missing", where, (long long)json_integer_value(json_object_get(h, "seq")));
        return;
    }
    if (!file || strcmp(file, fname) != 0)
        fail(r, "%s: the segment header names file \"%s\": a segment was renamed or replaced",
             where, file ? file : "");
    else if (!origin || strcmp(origin, v->origin) != 0)
        fail(r, "%s: the segment header's origin is not %s", where, v->origin);
    else if (!hf || strcmp(hf, fr) != 0)
        fail(r, "%s: the segment header's tree state does not continue the previous segment: "
                "a segment was replaced or records before it were altered", where);
    if (!r->ok)
        return;
    if (idx == 0)
        return;
    /* "lines_sha256", the lines digest (segment.h); headers written before it have
     * "sha256", the SHA-256 of the previous file. */
    const char *pf = jstr(prev, "file"), *plines = jstr(prev, "lines_sha256");
    const char *psha = jstr(prev, "sha256");
    json_t *pb = json_object_get(prev, "bytes"), *pcp = json_object_get(prev, "checkpoint");
    char lines[65], sha[65];
    hex_encode(prev_lines, 32, lines);
    hex_encode(prev_file_sha, 32, sha);
    if (!json_is_object(prev) || !pf || strcmp(pf, prevf->name) != 0) {
        fail(r, "%s: the segment header does not chain to the previous segment %s: a segment "
                "is missing or was replaced", where, prevf->name);
        return;
    }
    if (!json_is_integer(pb) || (uint64_t)json_integer_value(pb) != prev_bytes ||
        (!plines && !psha) || (plines && strcmp(plines, lines) != 0) ||
        (psha && strcmp(psha, sha) != 0)) {
        fail(r, "%s: the previous segment %s is not the one this header chains to (length or "
                "digest differ): it was altered, truncated or replaced", where, prevf->name);
        return;
    }
    if (prev_have_cp) {
        const char *root = jstr(pcp, "root"), *sig = jstr(pcp, "sig");
        json_t *size = json_object_get(pcp, "size");
        if (!json_is_object(pcp) || !json_is_integer(size) ||
            (uint64_t)json_integer_value(size) != prev_cp_size || !root ||
            strcmp(root, prev_cp_root) || !sig || strcmp(sig, prev_cp_sig))
            fail(r, "%s: the header's copy of the previous segment's last checkpoint differs "
                    "from that checkpoint", where);
    } else if (!json_is_null(pcp)) {
        fail(r, "%s: the header names a checkpoint the previous segment does not have", where);
    }
    const char *sealed = jstr(prev, "sealed");
    if (sealed)
        note(r, "%s was sealed early: %s", prevf->name, sealed);
}

/* One leaf record: seq, prev hash, instance, time, heartbeat spacing. */
static void check_record(struct vstate *v, json_t *o, const char *line, size_t len,
                         const char *where)
{
    struct verify_result *r = v->r;
    json_t *seq = json_object_get(o, "seq");
    const char *prev = jstr(o, "prev"), *type = jstr(o, "type"), *inst = jstr(o, "instance");
    char want[17];
    hex_encode(v->prev_leaf, 8, want);
    if (!json_is_integer(seq) || (uint64_t)json_integer_value(seq) != v->tree.size) {
        fail(r, "%s: seq %lld where %llu was expected: a record was deleted, inserted or moved",
             where, json_is_integer(seq) ? (long long)json_integer_value(seq) : -1LL,
             (unsigned long long)v->tree.size);
        return;
    }
    if (!prev || strcmp(prev, want) != 0) {
        fail(r, "%s: seq %llu: its \"prev\" hash does not match the line before it: record seq "
                "%llu (the previous record line) or this one was altered", where,
             (unsigned long long)v->tree.size, (unsigned long long)v->tree.size - 1);
        return;
    }
    if (!type || !inst || strcmp(inst, v->instance) != 0) {
        fail(r, "%s: seq %llu: not a record of instance %s", where,
             (unsigned long long)v->tree.size, v->instance);
        return;
    }
    int64_t t = audit_parse_time(jstr(o, "time"));
    if (t < 0) {
        fail(r, "%s: seq %llu: bad \"time\"", where, (unsigned long long)v->tree.size);
        return;
    }
    /* Heartbeat spacing: while the instance runs, no two records are further apart than two
     * heartbeat intervals. A restart after a crash is explained by its recovery record. */
    if (v->gap_pending) {
        if (strcmp(type, "recovery") == 0 || strcmp(type, "start") == 0 ||
            strcmp(type, "audit.outage") == 0)
            v->gap_pending = 0;
        else if (strcmp(type, "segment") != 0) {
            fail(r, "%s", v->gap_msg);
            return;
        }
    }
    if (v->running && v->last_ms > 0 && t - v->last_ms > 2 * v->hb_ms) {
        snprintf(v->gap_msg, sizeof v->gap_msg,
                 "%s: seq %llu: no record for %lld s after %s, with heartbeats every %lld s: "
                 "records are missing", where, (unsigned long long)v->tree.size,
                 (long long)(t - v->last_ms) / 1000, v->last_where, (long long)v->hb_ms / 1000);
        if (strcmp(type, "segment") == 0)
            v->gap_pending = 1; /* a restart: its recovery record must follow */
        else {
            fail(r, "%s", v->gap_msg);
            return;
        }
    }
    if (strcmp(type, "start") == 0) {
        json_t *hb = json_object_get(o, "heartbeat_ms");
        v->running = 1;
        v->hb_ms = json_is_integer(hb) && json_integer_value(hb) > 0 ? json_integer_value(hb)
                                                                      : 60000;
    } else if (strcmp(type, "stop") == 0 || strcmp(type, "recovery") == 0) {
        v->running = strcmp(type, "recovery") == 0 ? v->running : 0;
    }
    v->last_ms = t;
    snprintf(v->last_where, sizeof v->last_where, "seq %llu", (unsigned long long)v->tree.size);
    snprintf(v->last_type_buf, sizeof v->last_type_buf, "%s", type);
    if (r->records == 0)
        r->first_ms = t;
    r->last_ms = t;
    merkle_leaf_hash(line, len, v->prev_leaf);
    merkle_append(&v->tree, v->prev_leaf);
    r->records++;
    if (v->o->kept && v->o->kept->size == v->tree.size && strcmp(v->o->kept->origin, v->origin) == 0) {
        uint8_t root[32];
        char rb[48];
        merkle_root(&v->tree, root);
        b64_encode(root, 32, rb);
        if (strcmp(rb, v->o->kept->root) != 0)
            fail(r, "%s: the log's first %llu records do not match the checkpoint kept from the "
                    "earlier visit: records it covered were changed", where,
                 (unsigned long long)v->tree.size);
        else
            r->kept_checked = 1;
    }
    if (v->o->on_record)
        v->o->on_record(v->o->arg, o, t);
}

static void check_checkpoint(struct vstate *v, json_t *o, const char *line, const char *where)
{
    struct verify_result *r = v->r;
    struct kept_checkpoint k;
    char err[200];
    int good = 0;
    for (int i = 0; i < v->o->npubs && !good; i++)
        good = audit_parse_checkpoint(line, v->o->pubs[i], &k, err, sizeof err) == 0;
    if (!good) {
        fail(r, "%s: %s: the checkpoint was altered or signed with another key", where, err);
        return;
    }
    if (strcmp(k.origin, v->origin) != 0) {
        fail(r, "%s: a checkpoint of %s in the log of %s", where, k.origin, v->origin);
        return;
    }
    uint8_t root[32];
    char rb[48];
    merkle_root(&v->tree, root);
    b64_encode(root, 32, rb);
    if (k.size != v->tree.size) {
        fail(r, "%s: the checkpoint covers %llu records but %llu precede it: records were "
                "deleted or inserted", where, (unsigned long long)k.size,
             (unsigned long long)v->tree.size);
        return;
    }
    if (strcmp(rb, k.root) != 0) {
        fail(r, "%s: the checkpoint's root does not match the %llu records before it: a record "
                "since seq %llu was altered", where, (unsigned long long)k.size,
             (unsigned long long)(v->have_cp ? v->cp_size : 0));
        return;
    }
    v->have_cp = 1;
    v->cp_size = k.size;
    snprintf(v->cp_root, sizeof v->cp_root, "%s", k.root);
    snprintf(v->cp_sig, sizeof v->cp_sig, "%s", jstr(o, "sig"));
    r->cp_size = k.size;
    snprintf(r->cp_line, sizeof r->cp_line, "%s", line);
}

/* The header of segment idx+1, when it exists and its "prev_segment" has a length. */
static json_t *next_prev(const struct seg_file *segs, long n, long idx, uint64_t *bytes)
{
    if (idx + 1 >= n)
        return NULL;
    struct seg_data d;
    char err[300];
    if (seg_read(segs[idx + 1].path, &d, err, sizeof err) != 0)
        return NULL;
    const char *nl = memchr(d.buf, '\n', d.len);
    json_t *h = nl ? json_loadb(d.buf, (size_t)(nl - d.buf), 0, NULL) : NULL;
    seg_data_free(&d);
    json_t *prev = json_object_get(h, "prev_segment");
    json_t *b = json_object_get(prev, "bytes");
    if (!json_is_integer(b)) {
        json_decref(h);
        return NULL;
    }
    *bytes = (uint64_t)json_integer_value(b);
    return h;
}

void audit_verify(const struct seg_file *segs, long n, const struct verify_opts *o,
                  struct verify_result *r)
{
    struct vstate v = {.o = o, .r = r};
    memset(r, 0, sizeof *r);
    r->ok = 1;
    merkle_init(&v.tree);
    if (n == 0) {
        fail(r, "no segments");
        return;
    }
    v.instance = segs[0].instance;
    audit_origin(v.instance, v.origin, sizeof v.origin);
    /* What the previous segment was, for the next header. */
    uint64_t prev_bytes = 0;
    uint8_t prev_lines[32] = {0}, prev_file_sha[32] = {0};
    int prev_have_cp = 0;
    uint64_t prev_cp_size = 0;
    char prev_cp_root[48] = "", prev_cp_sig[92] = "";
    for (long i = 0; i < n && r->ok; i++) {
        const struct seg_file *f = &segs[i];
        struct seg_data d;
        char err[300], where[300];
        if (seg_read(f->path, &d, err, sizeof err) != 0) {
            fail(r, "%s", err);
            return;
        }
        r->segments++;
        size_t limit = d.len;
        uint64_t nb = 0;
        int have_next = 0, next_file_sha = 0;
        struct sha256_state lines;
        sha256_init(&lines);
        json_t *nh = next_prev(segs, n, i, &nb);
        if (nh) {
            have_next = 1;
            /* The next header written before lines digests: it has this file's SHA-256. */
            next_file_sha = jstr(json_object_get(nh, "prev_segment"), "sha256") != NULL;
            /* A segment sealed after a write error may hold bytes after its durable end. */
            json_t *sealed = json_object_get(json_object_get(nh, "prev_segment"), "sealed");
            if (json_is_string(sealed) && nb < d.len) {
                note(r, "%s: %zu bytes after its durable end were ignored (written while the "
                        "segment failed)", f->name, d.len - (size_t)nb);
                limit = (size_t)nb;
            }
            json_decref(nh);
        }
        if (d.zeros > 0 && have_next)
            /* The zero-filled space a writer makes ahead of its records is cut off when the
             * segment closes; a crash between the close and the cut leaves it (no record). */
            note(r, "%s: %zu zero bytes after its last record were ignored (space made ahead "
                    "of the records)", f->name, d.zeros);
        size_t off = 0;
        long lineno = 0;
        while (off < limit && r->ok) {
            lineno++;
            snprintf(where, sizeof where, "%s:%ld", f->name, lineno);
            const char *nl = memchr(d.buf + off, '\n', limit - off);
            if (nl == NULL) {
                if (o->live && i == n - 1) {
                    note(r, "%s: an incomplete last line (%zu bytes) was ignored: the copy was "
                            "taken while it was being written", where, limit - off);
                    break;
                }
                fail(r, "%s: the last line is incomplete: the segment was truncated", where);
                break;
            }
            size_t ll = (size_t)(nl - (d.buf + off));
            const char *line = d.buf + off;
            json_error_t je;
            json_t *obj = json_loadb(line, ll, JSON_REJECT_DUPLICATES, &je);
            if (obj == NULL || !json_is_object(obj)) {
                fail(r, "%s: not a valid record (%s): the line was altered or damaged", where,
                     obj ? "not an object" : je.text);
                json_decref(obj);
                break;
            }
            char *copy = strndup(line, ll);
            if (json_object_get(obj, "seq")) {
                if (lineno == 1) {
                    const char *type = jstr(obj, "type");
                    if (!type || strcmp(type, "segment") != 0)
                        fail(r, "%s: the segment does not start with its header", where);
                    else
                        check_header(&v, obj, where, i, i > 0 ? &segs[i - 1] : NULL, prev_bytes,
                                     prev_lines, prev_file_sha, prev_have_cp, prev_cp_size,
                                     prev_cp_root, prev_cp_sig, f->name);
                }
                if (r->ok)
                    check_record(&v, obj, copy, ll, where);
                /* check_record leaves the line's leaf hash in prev_leaf. */
                sha256_update(&lines, v.prev_leaf, 32);
            } else if (lineno == 1) {
                fail(r, "%s: the segment does not start with its header", where);
            } else {
                const char *type = jstr(obj, "type");
                uint8_t lh[32];
                if (type && strcmp(type, "checkpoint") == 0)
                    check_checkpoint(&v, obj, copy, where);
                else
                    fail(r, "%s: a line that is neither a record nor a checkpoint", where);
                merkle_leaf_hash(line, ll, lh);
                sha256_update(&lines, lh, sizeof lh);
            }
            free(copy);
            json_decref(obj);
            off += ll + 1;
        }
        if (r->ok && have_next && nb != limit)
            fail(r, "%s: %zu bytes, but the next segment's header says it had %llu: the segment "
                    "was %s", f->name, limit, (unsigned long long)nb,
                 nb > limit ? "truncated or replaced" : "extended or replaced");
        sha256_final(&lines, prev_lines);
        if (next_file_sha)
            sha256_two(d.buf, limit, NULL, 0, prev_file_sha);
        prev_bytes = limit;
        prev_have_cp = v.have_cp;
        prev_cp_size = v.cp_size;
        snprintf(prev_cp_root, sizeof prev_cp_root, "%s", v.cp_root);
        snprintf(prev_cp_sig, sizeof prev_cp_sig, "%s", v.cp_sig);
        seg_data_free(&d);
    }
    if (!r->ok)
        return;
    if (v.gap_pending) {
        fail(r, "%s", v.gap_msg);
        return;
    }
    if (o->kept && strcmp(o->kept->origin, v.origin) == 0 && o->kept->size > v.tree.size) {
        fail(r, "the log has %llu records but the checkpoint kept from the earlier visit covers "
                "%llu: records were removed from its end", (unsigned long long)v.tree.size,
             (unsigned long long)o->kept->size);
        return;
    }
    uint64_t unsigned_n = v.tree.size - (v.have_cp ? v.cp_size : 0);
    int stopped = strcmp(v.last_type_buf, "stop") == 0;
    if (o->live) {
        if (unsigned_n)
            note(r, "the last %llu record(s) are not yet covered by a checkpoint (live copy)",
                 (unsigned long long)unsigned_n);
        return;
    }
    if (unsigned_n || !stopped)
        fail(r, "%s: the log ends at seq %llu without %s: it was truncated, or the instance "
                "is still running or crashed without a restart (use --live for a copy of a "
                "running log)", segs[n - 1].name, (unsigned long long)v.tree.size - 1,
             unsigned_n ? "a checkpoint covering its last records" : "the stop record");
}
