/* The audit writer thread: group commit, segments, checkpoints, heartbeats, failure handling,
 * and the recovery of the directory at start. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/crypto.h"
#include "audit/jsonw.h"
#include "audit/merkle.h"
#include "audit/segment.h"
#include "common/hist.h"
#include "common/log.h"
#include "common/util.h"

#define RETRY_MS 200        /* a failed log is retried on a new segment this often */
#define SPACE_CHECK_MS 500  /* free space is checked this often */

struct audit_sink {
    struct audit *a;
    pthread_mutex_t mu;
    struct audit_rec *head, **tail; /* reported records, for the sink's thread */
    int efd;
    struct event *ev;
    struct audit_rec *idle;         /* reported records kept for audit_rec_take (sink's thread) */
    int nidle;
};

#define REC_ROOM 2048    /* text room of a record made by audit_rec_take (most fit) */
#define MAX_IDLE_RECS 256

/* The last checkpoint written. */
struct checkpoint {
    uint64_t size;
    char root[48]; /* base64 */
    char sig[92];  /* base64 */
};

/* What the next segment's header says about the one before it. */
struct prev_seg {
    int have;
    char name[SEG_NAME_MAX];
    uint64_t bytes;
    uint8_t lines_sha[32]; /* its lines digest (segment.h) */
    int have_cp;
    struct checkpoint cp;
    char sealed[200]; /* why it was sealed early, or "" */
};

struct audit {
    struct audit_opts o;
    char *dir;
    char *instance;
    char origin[96];
    pthread_t thread;
    int started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct audit_rec *head, **tail; /* queued for the writer */
    int64_t first_us;               /* when the oldest queued record arrived */
    int stop;
    char why[256];                  /* reason when not AUDIT_OK (mu) */
    atomic_int state;
    atomic_ullong held;             /* records queued or awaiting retry */
    atomic_ullong lost;
    atomic_ullong st_records, st_batches, st_fsync_us, st_failures, st_seq;
    struct hist st_fsync;           /* write + fdatasync time per batch */

    /* The writer thread's own state. */
    int fd;                          /* current segment, -1 when none */
    char seg[SEG_NAME_MAX];
    uint64_t seg_bytes;              /* durable bytes in it */
    uint64_t seg_space;              /* its file size: seg_bytes, then zero-filled space */
    int zero_failed;                 /* making that space failed: plain appends in this one */
    struct sha256_state seg_lines;   /* its lines digest so far (the batch's lines included) */
    int seg_day;                     /* local day it belongs to (YYYYMMDD) */
    struct merkle tree;              /* every leaf so far; size == next seq */
    uint8_t prev_leaf[32];
    struct checkpoint cp;            /* last checkpoint (cp.size == 0 and no sig: none) */
    int have_cp;
    int64_t unsigned_since_ms;       /* first leaf after the last checkpoint, 0 if none */
    struct prev_seg prev;
    struct audit_rec *retry, **retry_tail;
    int64_t next_retry_ms, next_heartbeat_ms, next_space_ms;
    int64_t failed_since_ms;
    uint64_t lost_reported;
    struct jsonw out;                /* the batch being written */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int local_day(int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&s, &tm);
    return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

void audit_origin(const char *instance, char *out, size_t outlen)
{
    snprintf(out, outlen, "lookupgate/%s", instance);
}

static struct audit_rec *rec_fill(struct audit_rec *r, size_t cap, const char *text, size_t len)
{
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->len = len;
    memcpy(r->text, text, len);
    r->text[len] = '\0';
    return r;
}

struct audit_rec *audit_rec_new(const char *text, size_t len)
{
    return rec_fill(xmalloc(sizeof(struct audit_rec) + len + 1), len + 1, text, len);
}

int audit_sink_idle(const struct audit_sink *s)
{
    return s->nidle;
}

struct audit_rec *audit_rec_take(struct audit_sink *s, const char *text, size_t len)
{
    if (len + 1 > REC_ROOM)
        return audit_rec_new(text, len);
    struct audit_rec *r = s->idle;
    if (r) {
        s->idle = r->next;
        s->nidle--;
        return rec_fill(r, REC_ROOM, text, len);
    }
    return rec_fill(xmalloc(sizeof *r + REC_ROOM), REC_ROOM, text, len);
}

static void set_state(struct audit *a, enum audit_state st, const char *why)
{
    pthread_mutex_lock(&a->mu);
    int old = atomic_load(&a->state);
    snprintf(a->why, sizeof a->why, "%s", why ? why : "");
    atomic_store(&a->state, (int)st);
    pthread_mutex_unlock(&a->mu);
    if (old != (int)st) {
        if (st == AUDIT_OK)
            log_info("audit log writable again; lookups resume");
        else
            log_error("audit log: %s; lookups are refused until it can be written", why);
    }
}

enum audit_state audit_health(struct audit *a, char *why, size_t whylen)
{
    pthread_mutex_lock(&a->mu);
    int st = atomic_load(&a->state);
    if (why && whylen)
        snprintf(why, whylen, "%s", st == AUDIT_OK ? "" : a->why);
    pthread_mutex_unlock(&a->mu);
    return (enum audit_state)st;
}

void audit_get_stats(struct audit *a, struct audit_stats *st)
{
    st->records = atomic_load(&a->st_records);
    st->batches = atomic_load(&a->st_batches);
    st->fsync_us = atomic_load(&a->st_fsync_us);
    st->queued = atomic_load(&a->held);
    st->lost = atomic_load(&a->lost);
    st->failures = atomic_load(&a->st_failures);
    st->seq = atomic_load(&a->st_seq);
    memset(&st->fsync, 0, sizeof st->fsync);
    hist_add_to(&st->fsync, &a->st_fsync);
}

/* --- sinks ------------------------------------------------------------------------------ */

static void sink_cb(evutil_socket_t fd, short what, void *arg)
{
    struct audit_sink *s = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_warn("audit sink: eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&s->mu);
    struct audit_rec *r = s->head;
    s->head = NULL;
    s->tail = &s->head;
    pthread_mutex_unlock(&s->mu);
    while (r) {
        struct audit_rec *next = r->next;
        if (r->cb)
            r->cb(r->arg, r->durable);
        if (r->cap == REC_ROOM && s->nidle < MAX_IDLE_RECS) {
            r->next = s->idle;
            s->idle = r;
            s->nidle++;
        } else {
            free(r);
        }
        r = next;
    }
}

struct audit_sink *audit_sink_new(struct audit *a, struct event_base *base)
{
    struct audit_sink *s = xcalloc(1, sizeof *s);
    s->a = a;
    pthread_mutex_init(&s->mu, NULL);
    s->tail = &s->head;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        free(s);
        return NULL;
    }
    s->ev = event_new(base, s->efd, EV_READ | EV_PERSIST, sink_cb, s);
    event_add(s->ev, NULL);
    return s;
}

void audit_sink_detach(struct audit_sink *s)
{
    if (s && s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
}

/* Only once the writer has stopped (audit_close), or when nothing is in flight for s. */
void audit_sink_free(struct audit_sink *s)
{
    if (s == NULL)
        return;
    audit_sink_detach(s);
    close(s->efd);
    struct audit_rec *lists[2] = {s->head, s->idle};
    for (int i = 0; i < 2; i++) {
        for (struct audit_rec *r = lists[i], *next; r; r = next) {
            next = r->next;
            free(r);
        }
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Writer thread: hands r back to its sink. */
static void report(struct audit_rec *r, int durable)
{
    struct audit_sink *s = r->sink;
    r->durable = durable;
    r->next = NULL;
    pthread_mutex_lock(&s->mu);
    int was_empty = s->head == NULL;
    *s->tail = r;
    s->tail = &r->next;
    pthread_mutex_unlock(&s->mu);
    if (was_empty) {
        uint64_t one = 1;
        if (write(s->efd, &one, sizeof one) < 0 && errno != EAGAIN)
            log_warn("audit sink: eventfd write: %s", strerror(errno));
    }
}

void audit_cancel(struct audit_rec *r)
{
    r->cb = NULL;
}

/* --- submitting ------------------------------------------------------------------------- */

static enum audit_submit_rc enqueue(struct audit *a, struct audit_rec *r, int kind)
{
    unsigned long long held = atomic_load(&a->held);
    int st = atomic_load(&a->state);
    unsigned long long soft = (unsigned long long)a->o.queue_records;
    if (kind == AUDIT_LOOKUP && (st != AUDIT_OK || held >= soft)) {
        free(r);
        return AUDIT_REFUSED;
    }
    if (held >= 2 * soft) {
        atomic_fetch_add(&a->lost, 1);
        free(r);
        return AUDIT_REFUSED;
    }
    r->kind = kind;
    r->next = NULL;
    atomic_fetch_add(&a->held, 1);
    pthread_mutex_lock(&a->mu);
    int was_empty = a->head == NULL;
    if (was_empty)
        a->first_us = now_mono_us();
    *a->tail = r;
    a->tail = &r->next;
    if (was_empty)
        pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return st == AUDIT_FAILED ? AUDIT_HELD : AUDIT_QUEUED;
}

enum audit_submit_rc audit_submit(struct audit_sink *s, struct audit_rec *r, int kind,
                                  audit_done_fn cb, void *arg)
{
    r->sink = cb ? s : NULL;
    r->cb = cb;
    r->arg = arg;
    enum audit_submit_rc rc = enqueue(s->a, r, kind);
    /* A record held while the log fails reports failure later; nobody should wait for it. */
    if (rc == AUDIT_HELD)
        r->cb = NULL;
    return rc;
}

enum audit_submit_rc audit_log(struct audit *a, const char *text, size_t len)
{
    struct audit_rec *r = audit_rec_new(text, len);
    return enqueue(a, r, AUDIT_OTHER);
}

/* --- writing ---------------------------------------------------------------------------- */

/* Appends the line for text to the batch and to the tree. */
static void add_leaf(struct audit *a, const char *text, size_t len)
{
    char head[64];
    size_t n = 0;
    memcpy(head, "{\"seq\":", 7);
    n = 7 + fmt_i64(head + 7, (int64_t)a->tree.size);
    memcpy(head + n, ",\"prev\":\"", 9);
    n += 9;
    hex_encode(a->prev_leaf, 8, head + n);
    n += 16;
    memcpy(head + n, "\",", 2);
    n += 2;
    size_t start = a->out.len;
    jw_raw(&a->out, head, n);
    jw_raw(&a->out, text, len);
    merkle_leaf_hash(a->out.buf + start, a->out.len - start, a->prev_leaf);
    merkle_append(&a->tree, a->prev_leaf);
    sha256_update(&a->seg_lines, a->prev_leaf, 32);
    jw_raw(&a->out, "\n", 1);
    if (a->unsigned_since_ms == 0)
        a->unsigned_since_ms = wall_ms();
}

/* Appends a record the writer makes itself; jw holds its members after "time". */
static void add_own(struct audit *a, const char *type, struct jsonw *body)
{
    struct jsonw j;
    char t[25];
    jw_init(&j);
    audit_format_time(wall_ms(), t);
    jw_open(&j, '{');
    jw_kstr(&j, "time", t, strlen(t));
    jw_kstrz(&j, "type", type);
    jw_kstrz(&j, "instance", a->instance);
    if (body && body->len) {
        jw_raw(&j, ",", 1);
        jw_raw(&j, body->buf, body->len);
    }
    jw_close(&j, '}');
    add_leaf(a, j.buf + 1, j.len - 1); /* the writer adds the opening brace */
    jw_free(&j);
}

/* Appends a checkpoint line covering every leaf so far. */
static void add_checkpoint(struct audit *a)
{
    uint8_t root[32];
    char msg[256], t[25];
    merkle_root(&a->tree, root);
    size_t ml = audit_checkpoint_text(a->origin, a->tree.size, root, msg, sizeof msg);
    struct checkpoint cp = {.size = a->tree.size};
    b64_encode(root, 32, cp.root);
    if (audit_sign(a->o.key, msg, ml, cp.sig) != 0) {
        log_error("audit: signing a checkpoint failed");
        return;
    }
    audit_format_time(wall_ms(), t);
    char line[512];
    int n = snprintf(line, sizeof line,
                     "{\"type\":\"checkpoint\",\"time\":\"%s\",\"origin\":\"%s\",\"size\":%llu,"
                     "\"root\":\"%s\",\"sig\":\"%s\"}\n",
                     t, a->origin, (unsigned long long)cp.size, cp.root, cp.sig);
    jw_raw(&a->out, line, (size_t)n);
    uint8_t lh[32];
    merkle_leaf_hash(line, (size_t)n - 1, lh); /* into the lines digest, not the tree */
    sha256_update(&a->seg_lines, lh, sizeof lh);
    a->cp = cp;
    a->have_cp = 1;
    a->unsigned_since_ms = 0;
}

/* Zero-filled space ahead of the records (audit.zero_ahead_kb). fdatasync after an append
 * must also write the file's new size and, where blocks are allocated on write, the
 * allocation: two or three device writes where the records alone are one. Records written
 * over space that is already allocated and zero-filled change neither, so the flush writes the
 * data (ext4 without a journal still writes the inode for its times); on this project's ext4
 * machines such a flush cost about 40 % of the CPU and half the time of one after an append
 * (bench/RESULTS.md). PostgreSQL zero-fills its WAL for the same reason. The zeros are written for real (fallocate would leave unwritten extents, whose
 * conversion is again a metadata write), become durable with the batch's own fdatasync, and
 * are cut off when the segment closes. Readers know a NUL tail for what it is (seg_read).
 * Called with end, the end of the records just written; extends the space when they reached
 * past it. If the space cannot be made (a full file system), the segment goes on with plain
 * appends: records are never refused for the sake of the space. */
static void zero_ahead(struct audit *a, uint64_t end)
{
    static const char zeros[65536];
    if (end <= a->seg_space || a->o.zero_ahead_bytes <= 0 || a->zero_failed) {
        if (end > a->seg_space)
            a->seg_space = end;
        return;
    }
    uint64_t target = end + (uint64_t)a->o.zero_ahead_bytes;
    uint64_t cap = (uint64_t)a->o.segment_bytes + 4096; /* no space past the rotation size */
    if (target > cap)
        target = cap > end ? cap : end;
    target = (target + 4095) & ~(uint64_t)4095;
    uint64_t off = end;
    while (off < target) {
        size_t n = target - off < sizeof zeros ? (size_t)(target - off) : sizeof zeros;
        ssize_t w = pwrite(a->fd, zeros, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            log_warn("audit: cannot make zero-filled space ahead in %s (%s); this segment is "
                     "written with plain appends", a->seg, w < 0 ? strerror(errno) : "no progress");
            a->zero_failed = 1;
            a->seg_space = ftruncate(a->fd, (off_t)end) == 0 ? end : off;
            return;
        }
        off += (uint64_t)w;
    }
    a->seg_space = target;
}

/* Writes the batch in a->out after the durable bytes and makes it durable. 0, or -1 with
 * errno-based reason. */
static int flush_out(struct audit *a, char *why, size_t whylen)
{
    int64_t t0 = now_mono_us();
    size_t off = 0;
    while (off < a->out.len) {
        ssize_t w = pwrite(a->fd, a->out.buf + off, a->out.len - off, (off_t)(a->seg_bytes + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(why, whylen, "write to %s failed: %s", a->seg,
                     w < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        off += (size_t)w;
    }
    zero_ahead(a, a->seg_bytes + a->out.len);
    if (fdatasync(a->fd) != 0) {
        snprintf(why, whylen, "fdatasync of %s failed: %s", a->seg, strerror(errno));
        return -1;
    }
    int64_t took = now_mono_us() - t0;
    atomic_fetch_add(&a->st_fsync_us, (unsigned long long)took);
    hist_observe(&a->st_fsync, took);
    atomic_fetch_add(&a->st_batches, 1);
    a->seg_bytes += a->out.len;
    return 0;
}

static void fsync_dir(struct audit *a)
{
    int fd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Closes the current segment: read-only from now on; remembered for the next header. */
static void close_segment(struct audit *a, const char *sealed)
{
    if (a->fd < 0)
        return;
    if (sealed) {
        /* Bytes after the durable end were never acknowledged; cut them if the file system
         * still lets us (the next header names the durable length either way). */
        if (ftruncate(a->fd, (off_t)a->seg_bytes) != 0)
            log_warn("audit: cannot cut %s back to %llu bytes: %s", a->seg,
                     (unsigned long long)a->seg_bytes, strerror(errno));
    } else if (a->seg_space > a->seg_bytes) {
        /* The zero-filled space goes; the cut is durable before the next header names the
         * length (a reader would skip the zeros anyway). */
        if (ftruncate(a->fd, (off_t)a->seg_bytes) != 0 || fdatasync(a->fd) != 0)
            log_warn("audit: cannot cut the zero-filled space off %s: %s", a->seg,
                     strerror(errno));
    }
    fchmod(a->fd, 0440);
    close(a->fd);
    a->fd = -1;
    uint8_t sha[32];
    sha256_final(&a->seg_lines, sha);
    if (a->seg_bytes == 0) {
        /* Not even its header became durable (it failed at once): it is no part of the chain.
         * The next segment moves it aside and names the one before it as its predecessor. */
        return;
    }
    a->prev.have = 1;
    snprintf(a->prev.name, sizeof a->prev.name, "%s", a->seg);
    a->prev.bytes = a->seg_bytes;
    memcpy(a->prev.lines_sha, sha, sizeof sha);
    a->prev.have_cp = a->have_cp;
    a->prev.cp = a->cp;
    snprintf(a->prev.sealed, sizeof a->prev.sealed, "%s", sealed ? sealed : "");
}

/* The members of a segment header after "instance". */
static void header_body(struct audit *a, struct jsonw *j)
{
    char frontier[65 * MERKLE_MAX_LEVELS + 1], sha[65];
    merkle_frontier_text(&a->tree, frontier, sizeof frontier);
    jw_kstrz(j, "origin", a->origin);
    jw_kstrz(j, "file", a->seg);
    jw_kint(j, "tree_size", (long long)a->tree.size);
    jw_kstrz(j, "frontier", frontier);
    jw_key(j, "prev_segment");
    if (!a->prev.have) {
        jw_null(j);
        return;
    }
    hex_encode(a->prev.lines_sha, 32, sha);
    jw_open(j, '{');
    jw_kstrz(j, "file", a->prev.name);
    jw_kint(j, "bytes", (long long)a->prev.bytes);
    jw_kstrz(j, "lines_sha256", sha);
    jw_key(j, "checkpoint");
    if (a->prev.have_cp) {
        jw_open(j, '{');
        jw_kint(j, "size", (long long)a->prev.cp.size);
        jw_kstrz(j, "root", a->prev.cp.root);
        jw_kstrz(j, "sig", a->prev.cp.sig);
        jw_close(j, '}');
    } else {
        jw_null(j);
    }
    jw_kstrz(j, "sealed", a->prev.sealed[0] ? a->prev.sealed : NULL);
    jw_close(j, '}');
}

/* Opens a new segment named for the next seq and today, and puts its header line into the
 * batch. 0, or -1 with a reason. */
static int open_segment(struct audit *a, char *why, size_t whylen)
{
    int64_t now = wall_ms();
    int day = local_day(now);
    char path[PATH_MAX];
    if (seg_name(a->seg, sizeof a->seg, a->instance, day, a->tree.size) != 0) {
        snprintf(why, whylen, "segment name too long");
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", a->dir, a->seg);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0 && errno == EEXIST) {
        /* A segment with this first seq exists (a failed one that got no record): never
         * write into it again; add a suffix-free unique name by moving it aside. */
        char aside[PATH_MAX + 32];
        snprintf(aside, sizeof aside, "%s.failed-%lld", path, (long long)now);
        if (rename(path, aside) == 0)
            log_warn("audit: %s existed without records; moved to %s", path, aside);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    }
    if (fd < 0) {
        snprintf(why, whylen, "cannot create %s in the audit directory: %s", a->seg,
                 strerror(errno));
        return -1;
    }
    a->fd = fd;
    a->seg_bytes = 0;
    a->seg_space = 0;
    a->zero_failed = 0;
    a->seg_day = day;
    sha256_init(&a->seg_lines);
    struct jsonw j;
    jw_init(&j);
    header_body(a, &j);
    add_own(a, "segment", &j);
    jw_free(&j);
    return 0;
}

/* Snapshot of the tree state and lines digest, restored when a batch fails: the digest is then
 * of the durable lines only. */
struct tree_snap {
    struct merkle tree;
    struct sha256_state seg_lines;
    uint8_t prev_leaf[32];
    struct checkpoint cp;
    int have_cp;
    int64_t unsigned_since_ms;
};

static void snap_take(struct audit *a, struct tree_snap *s)
{
    s->tree = a->tree;
    s->seg_lines = a->seg_lines;
    memcpy(s->prev_leaf, a->prev_leaf, 32);
    s->cp = a->cp;
    s->have_cp = a->have_cp;
    s->unsigned_since_ms = a->unsigned_since_ms;
}

static void snap_restore(struct audit *a, const struct tree_snap *s)
{
    a->tree = s->tree;
    a->seg_lines = s->seg_lines;
    memcpy(a->prev_leaf, s->prev_leaf, 32);
    a->cp = s->cp;
    a->have_cp = s->have_cp;
    a->unsigned_since_ms = s->unsigned_since_ms;
}

/* Keeps the records of batch for a retry on a new segment; submitters waiting for them are
 * told now that they are not durable (their copy is what will be written). */
static void keep_for_retry(struct audit *a, struct audit_rec *batch)
{
    for (struct audit_rec *r = batch, *next; r; r = next) {
        next = r->next;
        struct audit_rec *keep = r;
        if (r->sink) {
            keep = audit_rec_new(r->text, r->len);
            keep->kind = r->kind;
            report(r, 0);
        }
        keep->next = NULL;
        *a->retry_tail = keep;
        a->retry_tail = &keep->next;
    }
}

/* A write or fsync failed: seal the segment, never write it again, keep the records. */
static void batch_failed(struct audit *a, struct audit_rec *batch, const char *why)
{
    atomic_fetch_add(&a->st_failures, 1);
    close_segment(a, why);
    if (a->failed_since_ms == 0)
        a->failed_since_ms = wall_ms();
    set_state(a, AUDIT_FAILED, why);
    a->next_retry_ms = wall_ms() + RETRY_MS;
    keep_for_retry(a, batch);
}

/* Writes batch (retry records first), with heartbeats and checkpoints as due. */
static void write_batch(struct audit *a, struct audit_rec *batch, int closing)
{
    int64_t now = wall_ms();
    char why[300];
    if (a->retry) {
        *a->retry_tail = batch;
        batch = a->retry;
        a->retry = NULL;
        a->retry_tail = &a->retry;
    }
    struct tree_snap snap;
    snap_take(a, &snap);
    jw_reset(&a->out);
    if (a->fd >= 0 && (a->seg_bytes >= (uint64_t)a->o.segment_bytes ||
                       local_day(now) != a->seg_day)) {
        /* Close the full (or yesterday's) segment with a checkpoint of its own. */
        add_checkpoint(a);
        if (flush_out(a, why, sizeof why) != 0) {
            snap_restore(a, &snap);
            batch_failed(a, batch, why);
            return;
        }
        close_segment(a, NULL);
        snap_take(a, &snap);
        jw_reset(&a->out);
    }
    if (a->fd < 0 && open_segment(a, why, sizeof why) != 0) {
        snap_restore(a, &snap);
        batch_failed(a, batch, why);
        return;
    }
    uint64_t n = 0;
    if (atomic_load(&a->state) == AUDIT_FAILED || a->lost_reported != atomic_load(&a->lost)) {
        /* The first batch after an outage says what happened during it. */
        struct jsonw j;
        char t[25];
        jw_init(&j);
        audit_format_time(a->failed_since_ms ? a->failed_since_ms : now, t);
        jw_kstrz(&j, "since", t);
        jw_kstrz(&j, "reason", a->why[0] ? a->why : NULL);
        jw_kint(&j, "lost_records", (long long)(atomic_load(&a->lost) - a->lost_reported));
        add_own(a, "audit.outage", &j);
        jw_free(&j);
    }
    for (struct audit_rec *r = batch; r; r = r->next, n++)
        add_leaf(a, r->text, r->len);
    if (now >= a->next_heartbeat_ms) {
        struct jsonw j;
        jw_init(&j);
        jw_kint(&j, "queued", (long long)(atomic_load(&a->held) - n));
        jw_kint(&j, "records", (long long)atomic_load(&a->st_records));
        add_own(a, "heartbeat", &j);
        jw_free(&j);
        a->next_heartbeat_ms = now + a->o.heartbeat_ms;
    }
    if (closing || a->seg_bytes + a->out.len >= (uint64_t)a->o.segment_bytes ||
        (a->have_cp ? a->tree.size - a->cp.size : a->tree.size) >=
            (uint64_t)a->o.checkpoint_records ||
        (a->unsigned_since_ms && now - a->unsigned_since_ms >= a->o.checkpoint_ms))
        add_checkpoint(a);
    if (flush_out(a, why, sizeof why) != 0) {
        snap_restore(a, &snap);
        batch_failed(a, batch, why);
        return;
    }
    if (atomic_load(&a->state) == AUDIT_FAILED) {
        a->failed_since_ms = 0;
        a->lost_reported = atomic_load(&a->lost);
        set_state(a, AUDIT_OK, NULL);
        a->next_space_ms = 0;
    }
    a->lost_reported = atomic_load(&a->lost);
    atomic_fetch_add(&a->st_records, n);
    atomic_store(&a->st_seq, a->tree.size);
    atomic_fetch_sub(&a->held, n);
    for (struct audit_rec *r = batch, *next; r; r = next) {
        next = r->next;
        if (r->sink)
            report(r, 1);
        else
            free(r);
    }
}

/* A checkpoint on its own when the last records have waited checkpoint_ms, or now when
 * closing (the stop record may have been written in a batch taken before the stop flag was
 * set: the log must still end on a checkpoint). */
static void timed_checkpoint(struct audit *a, int closing)
{
    char why[300];
    if (a->fd < 0 || a->unsigned_since_ms == 0 ||
        (!closing && wall_ms() - a->unsigned_since_ms < a->o.checkpoint_ms))
        return;
    struct tree_snap snap;
    snap_take(a, &snap);
    jw_reset(&a->out);
    add_checkpoint(a);
    if (flush_out(a, why, sizeof why) != 0) {
        snap_restore(a, &snap);
        batch_failed(a, NULL, why);
    }
}

static void check_space(struct audit *a)
{
    int64_t now = wall_ms();
    if (now < a->next_space_ms || atomic_load(&a->state) == AUDIT_FAILED)
        return;
    a->next_space_ms = now + SPACE_CHECK_MS;
    struct statvfs sv;
    if (statvfs(a->dir, &sv) != 0)
        return;
    unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    if (avail < (unsigned long long)a->o.min_free_bytes) {
        char why[200];
        snprintf(why, sizeof why, "free space on the audit file system is %llu bytes, under "
                                  "the floor of %lld", avail, a->o.min_free_bytes);
        set_state(a, AUDIT_LOW_SPACE, why);
    } else if (atomic_load(&a->state) == AUDIT_LOW_SPACE) {
        set_state(a, AUDIT_OK, NULL);
    }
}

static void abs_deadline(struct timespec *ts, int64_t wall_deadline_ms)
{
    int64_t now = wall_ms();
    int64_t wait = wall_deadline_ms - now;
    if (wait < 0)
        wait = 0;
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += wait / 1000;
    ts->tv_nsec += (wait % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void *writer_main(void *arg)
{
    struct audit *a = arg;
    log_set_thread_name("audit");
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->head == NULL && !a->stop) {
            int st = atomic_load(&a->state);
            int64_t due = a->next_heartbeat_ms;
            if (a->unsigned_since_ms && a->unsigned_since_ms + a->o.checkpoint_ms < due)
                due = a->unsigned_since_ms + a->o.checkpoint_ms;
            if (st == AUDIT_LOW_SPACE && a->next_space_ms < due)
                due = a->next_space_ms;
            if (st == AUDIT_FAILED)
                due = a->next_retry_ms; /* everything waits for the next attempt */
            if (wall_ms() >= due)
                break;
            struct timespec ts;
            abs_deadline(&ts, due);
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
        if (a->head && !a->stop && a->o.group_commit_us > 0) {
            /* Group commit: give other submitters the rest of the window. */
            int64_t left = a->first_us + a->o.group_commit_us - now_mono_us();
            if (left > 0) {
                pthread_mutex_unlock(&a->mu);
                struct timespec d = {0, (long)left * 1000};
                nanosleep(&d, NULL);
                pthread_mutex_lock(&a->mu);
            }
        }
        struct audit_rec *batch = a->head;
        a->head = NULL;
        a->tail = &a->head;
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);

        check_space(a);
        int64_t now = wall_ms();
        if (atomic_load(&a->state) == AUDIT_FAILED) {
            if (now >= a->next_retry_ms || stop)
                write_batch(a, batch, stop);
            else
                keep_for_retry(a, batch);
        } else if (batch || now >= a->next_heartbeat_ms) {
            write_batch(a, batch, stop);
        } else {
            timed_checkpoint(a, stop);
        }
        if (stop) {
            pthread_mutex_lock(&a->mu);
            int more = a->head != NULL;
            pthread_mutex_unlock(&a->mu);
            if (!more)
                break;
        }
        pthread_mutex_lock(&a->mu);
    }
    if (a->retry) {
        unsigned long long n = 0;
        for (struct audit_rec *r = a->retry, *next; r; r = next, n++) {
            next = r->next;
            free(r);
        }
        log_error("audit: %llu record(s) could not be written before stopping: %s", n, a->why);
    }
    close_segment(a, NULL);
    fsync_dir(a);
    return NULL;
}

/* --- opening: recovery of what the last run left ----------------------------------------- */

/* Copies bytes into a new read-only file beside the segment; returns 0 and its name. */
static int move_aside(struct audit *a, const char *name, const char *data, size_t len,
                      char *out, size_t outlen, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(out, outlen, "%s.torn-%lld", name, (long long)wall_ms());
    snprintf(path, sizeof path, "%s/%s", a->dir, out);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0440);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot move the torn end of %s aside to %s: %s", name, path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* The first line of d, parsed, if it is a segment header: fills tree and returns the object. */
static json_t *parse_header(const struct seg_data *d, struct merkle *tree, size_t *hlen)
{
    const char *nl = memchr(d->buf, '\n', d->len);
    if (nl == NULL)
        return NULL;
    *hlen = (size_t)(nl - d->buf) + 1;
    json_t *h = json_loadb(d->buf, *hlen - 1, JSON_REJECT_DUPLICATES, NULL);
    json_t *type = json_object_get(h, "type"), *seq = json_object_get(h, "seq");
    json_t *fr = json_object_get(h, "frontier");
    if (h == NULL || !json_is_string(type) || strcmp(json_string_value(type), "segment") != 0 ||
        !json_is_integer(seq) || !json_is_string(fr) ||
        merkle_from_frontier(tree, (uint64_t)json_integer_value(seq), json_string_value(fr)) !=
            0) {
        json_decref(h);
        return NULL;
    }
    return h;
}

/* Reads the last segment of this instance and restores the tree, seq and chain from it. A torn
 * end is moved aside; body gets the members of a recovery record when the last run did not
 * end cleanly. */
static int recover(struct audit *a, struct jsonw *body, char *err, size_t errlen)
{
    struct seg_file *segs;
    long n = seg_list(a->dir, a->instance, &segs, err, errlen);
    if (n < 0)
        return -1;
    long listed = n; /* n counts down as torn segments are removed; all are freed */
    char torn_name[SEG_NAME_MAX + 32] = "";
    size_t torn_bytes = 0;
    int rc = -1;
    while (n > 0) {
        struct seg_file *f = &segs[n - 1];
        struct seg_data d;
        size_t hlen;
        if (seg_read(f->path, &d, err, errlen) != 0)
            goto out;
        json_t *h = parse_header(&d, &a->tree, &hlen);
        if (h == NULL) {
            /* Torn while it was being created: nothing of it was ever acknowledged. */
            if (move_aside(a, f->name, d.buf, d.len, torn_name, sizeof torn_name, err,
                           errlen) != 0) {
                seg_data_free(&d);
                goto out;
            }
            torn_bytes = d.len;
            unlink(f->path);
            seg_data_free(&d);
            n--;
            merkle_init(&a->tree);
            continue;
        }
        json_decref(h);
        /* Replay every complete line. */
        struct sha256_state lines;
        sha256_init(&lines);
        merkle_leaf_hash(d.buf, hlen - 1, a->prev_leaf);
        merkle_append(&a->tree, a->prev_leaf);
        sha256_update(&lines, a->prev_leaf, 32);
        size_t off = hlen, good = hlen;
        int clean = 0, bad = 0;
        while (off < d.len) {
            const char *nl = memchr(d.buf + off, '\n', d.len - off);
            if (nl == NULL)
                break;
            size_t ll = (size_t)(nl - (d.buf + off));
            json_t *o = json_loadb(d.buf + off, ll, JSON_REJECT_DUPLICATES, NULL);
            json_t *seq = json_object_get(o, "seq"), *type = json_object_get(o, "type");
            if (o == NULL || !json_is_string(type)) {
                json_decref(o);
                bad = 1;
                break;
            }
            if (seq) {
                if (!json_is_integer(seq) || (uint64_t)json_integer_value(seq) != a->tree.size) {
                    snprintf(err, errlen, "%s: byte %zu: seq %lld where %llu was expected; the "
                             "log is damaged (run lookupgate-audit verify); not starting",
                             f->name, off, (long long)json_integer_value(seq),
                             (unsigned long long)a->tree.size);
                    json_decref(o);
                    seg_data_free(&d);
                    goto out;
                }
                merkle_leaf_hash(d.buf + off, ll, a->prev_leaf);
                merkle_append(&a->tree, a->prev_leaf);
                sha256_update(&lines, a->prev_leaf, 32);
                clean = strcmp(json_string_value(type), "stop") == 0;
            } else if (strcmp(json_string_value(type), "checkpoint") == 0) {
                json_t *sz = json_object_get(o, "size"), *root = json_object_get(o, "root");
                json_t *sig = json_object_get(o, "sig");
                uint8_t r[32];
                char rb[48];
                merkle_root(&a->tree, r);
                b64_encode(r, 32, rb);
                if (!json_is_integer(sz) || (uint64_t)json_integer_value(sz) != a->tree.size ||
                    !json_is_string(root) || strcmp(json_string_value(root), rb) != 0 ||
                    !json_is_string(sig) || strlen(json_string_value(sig)) >= sizeof a->cp.sig) {
                    snprintf(err, errlen, "%s: byte %zu: a checkpoint does not match the records "
                             "before it; the log is damaged (run lookupgate-audit verify); not "
                             "starting", f->name, off);
                    json_decref(o);
                    seg_data_free(&d);
                    goto out;
                }
                a->cp.size = a->tree.size;
                snprintf(a->cp.root, sizeof a->cp.root, "%s", rb);
                snprintf(a->cp.sig, sizeof a->cp.sig, "%s", json_string_value(sig));
                a->have_cp = 1;
            }
            if (!seq) {
                /* A line outside the tree (a checkpoint) still goes into the lines digest. */
                uint8_t lh[32];
                merkle_leaf_hash(d.buf + off, ll, lh);
                sha256_update(&lines, lh, sizeof lh);
            }
            json_decref(o);
            off += ll + 1;
            good = off;
        }
        if (bad) {
            /* A bad line is torn only if nothing good follows it. */
            for (size_t p = good; p < d.len;) {
                const char *nl = memchr(d.buf + p, '\n', d.len - p);
                size_t ll = nl ? (size_t)(nl - (d.buf + p)) : d.len - p;
                json_t *o = json_loadb(d.buf + p, ll, 0, NULL);
                int rec = json_object_get(o, "type") != NULL;
                json_decref(o);
                if (rec) {
                    snprintf(err, errlen, "%s: byte %zu: an unreadable line followed by records; "
                             "the log is damaged (run lookupgate-audit verify); not starting",
                             f->name, good);
                    seg_data_free(&d);
                    goto out;
                }
                p += ll + 1;
            }
        }
        if (good < d.len) {
            torn_bytes = d.len - good;
            if (move_aside(a, f->name, d.buf + good, torn_bytes, torn_name, sizeof torn_name,
                           err, errlen) != 0) {
                seg_data_free(&d);
                goto out;
            }
            int fd = open(f->path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0) {
                snprintf(err, errlen, "%s: cannot cut the torn end: %s", f->path,
                         strerror(errno));
                if (fd >= 0)
                    close(fd);
                seg_data_free(&d);
                goto out;
            }
            close(fd);
            log_warn("audit: %s ended with %zu torn byte(s); moved to %s", f->name, torn_bytes,
                     torn_name);
        } else if (d.zeros > 0) {
            /* The zero-filled space the last run had made ahead of its records. */
            int fd = open(f->path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0) {
                snprintf(err, errlen, "%s: cannot cut the zero-filled space off its end: %s",
                         f->path, strerror(errno));
                if (fd >= 0)
                    close(fd);
                seg_data_free(&d);
                goto out;
            }
            close(fd);
        }
        clean = clean && a->have_cp && a->cp.size == a->tree.size && torn_bytes == 0;
        a->prev.have = 1;
        snprintf(a->prev.name, sizeof a->prev.name, "%s", f->name);
        a->prev.bytes = good;
        sha256_final(&lines, a->prev.lines_sha);
        a->prev.have_cp = a->have_cp;
        a->prev.cp = a->cp;
        chmod(f->path, 0440);
        if (!clean) {
            jw_kstrz(body, "segment", f->name);
            jw_kint(body, "last_seq", (long long)a->tree.size - 1);
            jw_kint(body, "unsigned_records",
                    (long long)(a->tree.size - (a->have_cp ? a->cp.size : 0)));
            jw_kint(body, "torn_bytes", (long long)torn_bytes);
            jw_kstrz(body, "torn_file", torn_name[0] ? torn_name : NULL);
            jw_kbool(body, "clean_stop", 0);
        }
        seg_data_free(&d);
        rc = 0;
        goto out;
    }
    /* A new log (or only a torn first segment). */
    merkle_init(&a->tree);
    memset(a->prev_leaf, 0, sizeof a->prev_leaf);
    if (torn_name[0]) {
        jw_kstrz(body, "segment", NULL);
        jw_kint(body, "torn_bytes", (long long)torn_bytes);
        jw_kstrz(body, "torn_file", torn_name);
        jw_kbool(body, "clean_stop", 0);
    }
    rc = 0;
out:
    seg_list_free(segs, listed);
    return rc;
}

struct audit *audit_open(const struct audit_opts *o, char *err, size_t errlen)
{
    if (!seg_instance_ok(o->instance)) {
        snprintf(err, errlen, "instance name \"%s\": use letters, digits, '.', '_' and '-'",
                 o->instance);
        return NULL;
    }
    if (mkdir(o->dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", o->dir, strerror(errno));
        return NULL;
    }
    struct audit *a = xcalloc(1, sizeof *a);
    a->o = *o;
    a->dir = xstrdup(o->dir);
    a->instance = xstrdup(o->instance);
    a->o.dir = a->dir;
    a->o.instance = a->instance;
    audit_origin(a->instance, a->origin, sizeof a->origin);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->tail = &a->head;
    a->retry_tail = &a->retry;
    a->fd = -1;
    merkle_init(&a->tree);
    jw_init(&a->out);
    struct jsonw rec;
    jw_init(&rec);
    char why[300];
    if (recover(a, &rec, err, errlen) != 0)
        goto fail;
    jw_reset(&a->out);
    if (open_segment(a, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        goto fail;
    }
    if (rec.len > 0) {
        add_own(a, "recovery", &rec);
        log_warn("audit: the last run did not end cleanly; recovery recorded at seq %llu",
                 (unsigned long long)a->tree.size - 1);
    }
    if (flush_out(a, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        goto fail;
    }
    fsync_dir(a);
    jw_free(&rec);
    atomic_store(&a->st_seq, a->tree.size);
    a->next_heartbeat_ms = wall_ms() + a->o.heartbeat_ms;
    check_space(a);
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        snprintf(err, errlen, "cannot start the audit writer thread");
        goto fail;
    }
    a->started = 1;
    return a;
fail:
    jw_free(&rec);
    if (a->fd >= 0)
        close(a->fd);
    jw_free(&a->out);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->dir);
    free(a->instance);
    free(a);
    return NULL;
}

void audit_close(struct audit *a, const char *text, size_t len)
{
    if (a == NULL)
        return;
    if (text)
        audit_log(a, text, len);
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->started)
        pthread_join(a->thread, NULL);
    jw_free(&a->out);
    EVP_PKEY_free(a->o.key);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->dir);
    free(a->instance);
    free(a);
}
