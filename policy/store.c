/* The per-worker quota store over hiredis async + libevent. hiredis 0.14 has no timeouts, so
 * every connect and every command has its own timer; a stuck context is torn down from a timer
 * or a deferred event, never from inside one of its own callbacks. Every command's privdata is
 * a quota_op that outlives its requester: a cancelled or timed-out op stays allocated until
 * hiredis hands its reply (or NULL, on teardown) back, so a late reply never reaches another
 * request. */
#include "policy/store.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "common/log.h"
#include "common/util.h"
#include "policy/replypool.h"

/* KEYS[1] suspension flag, KEYS[2] last use (kept to the minute: rewritten only when a minute
 * older than now, or ahead of it, which saves a write on almost every admission), KEYS[2+i]
 * counter i.
 * ARGV[1] now (ms) or 0 for Redis TIME, ARGV[2] member, ARGV[3..6] local day starts,
 * ARGV[7..9] day ids, ARGV[10] n, then per counter: kind ("m"/"d"), limit, field.
 * Returns {1, now, reason} suspended, {3, now} clock outside the days given, or
 * {0|2, now, day, used_1, reset_1, over_1, ...} admitted (0) or refused (2).
 * Cost: Redis 7.0 turns a Lua number argument into text with "%.17g", and a score in a reply
 * the same way, which was a fifth of the script's time. So every number handed to redis.call
 * is a string made with '%d', and a window member starts with its admission time
 * ("<ms>:<ARGV[2]>"): the oldest entry's time comes from its name, not from WITHSCORES
 * (ZSCORE for a member without that prefix, or whose prefix is not a time in the window). */
static const char quota_script[] =
    "#!lua\n"
    "local now\n"
    "if ARGV[1] == '0' then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "else now = tonumber(ARGV[1]) end\n"
    "local g = redis.call('MGET', KEYS[1], KEYS[2])\n"
    "if g[1] then return {1, now, g[1]} end\n"
    "local day, dayend\n"
    "for i = 0, 2 do\n"
    "  local a, b = tonumber(ARGV[3 + i]), tonumber(ARGV[4 + i])\n"
    "  if now >= a and now < b then day = ARGV[7 + i]; dayend = b end\n"
    "end\n"
    "if not day then return {3, now} end\n"
    "local fmt = string.format\n"
    "local nows = fmt('%d', now)\n"
    "local n = tonumber(ARGV[10])\n"
    "local out = {0, now, tonumber(day)}\n"
    "local over = false\n"
    "local fresh = {}\n"
    "for i = 1, n do\n"
    "  local b = 10 + (i - 1) * 3\n"
    "  local kind, limit, field, key = ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3], KEYS[2 + i]\n"
    "  local used, reset\n"
    "  if kind == 'm' then\n"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt('%d', now - 60000))\n"
    "    used = redis.call('ZCARD', key)\n"
    "    reset = 60000\n"
    "    if used > 0 and limit > 0 then\n"
    "      local idx = '0'\n"
    "      if used >= limit then idx = fmt('%d', used - limit) end\n"
    "      local m = redis.call('ZRANGE', key, idx, idx)[1]\n"
    "      local t = tonumber(string.match(m, '^(%d+):'))\n"
    "      if not t or t < now - 60000 or t > now + 60000 then\n"
    "        t = tonumber(redis.call('ZSCORE', key, m))\n"
    "      end\n"
    "      reset = t + 60000 - now\n"
    "    end\n"
    "  else\n"
    "    local r = redis.call('HMGET', key, 'id', field)\n"
    "    used = 0\n"
    "    if r[1] == day then used = tonumber(r[2]) or 0 else fresh[key] = true end\n"
    "    reset = dayend - now\n"
    "  end\n"
    "  local o = 0\n"
    "  if used >= limit then o = 1; over = true end\n"
    "  out[#out + 1] = used; out[#out + 1] = reset; out[#out + 1] = o\n"
    "end\n"
    "if over then out[1] = 2; return out end\n"
    "local member = nows .. ':' .. ARGV[2]\n"
    "for i = 1, n do\n"
    "  local b = 10 + (i - 1) * 3\n"
    "  local kind, field, key = ARGV[b + 1], ARGV[b + 3], KEYS[2 + i]\n"
    "  if kind == 'm' then\n"
    "    redis.call('ZADD', key, nows, member)\n"
    "    redis.call('PEXPIRE', key, '61000')\n"
    "  else\n"
    "    if fresh[key] then\n"
    "      redis.call('DEL', key)\n"
    "      redis.call('HSET', key, 'id', day)\n"
    "      redis.call('PEXPIRE', key, fmt('%d', dayend - now + 3600000))\n"
    "      fresh[key] = nil\n"
    "    end\n"
    "    redis.call('HINCRBY', key, field, '1')\n"
    "  end\n"
    "  out[1 + i * 3] = out[1 + i * 3] + 1\n"
    "end\n"
    "local last = tonumber(g[2])\n"
    "if not last or now - last >= 60000 or last > now then\n"
    "  redis.call('SET', KEYS[2], nows, 'PX', '34560000000')\n"
    "end\n"
    "return out\n";

/* Operators' reads (quota_store_read): KEYS are the keys read; ARGV[1] now (ms) or 0 for Redis
 * TIME, ARGV[2..5] local day starts, ARGV[6..8] day ids, then per key: kind ("g" GET, "z"
 * entries in the rolling window, "d" the day count of a field) and field. Returns {now, day,
 * value_1, ...}; day is -1 when the clock is outside the days given. Changes nothing. */
static const char read_script[] =
    "local now\n"
    "if ARGV[1] == '0' then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "else now = tonumber(ARGV[1]) end\n"
    "local day = false\n"
    "for i = 0, 2 do\n"
    "  if now >= tonumber(ARGV[2 + i]) and now < tonumber(ARGV[3 + i]) then day = ARGV[6 + i] end\n"
    "end\n"
    "local out = {now, -1}\n"
    "if day then out[2] = tonumber(day) end\n"
    "for i = 1, #KEYS do\n"
    "  local kind, field, key = ARGV[7 + 2 * i], ARGV[8 + 2 * i], KEYS[i]\n"
    "  if kind == 'g' then\n"
    "    out[#out + 1] = redis.call('GET', key)\n"
    "  elseif kind == 'z' then\n"
    "    out[#out + 1] = redis.call('ZCOUNT', key, '(' .. string.format('%d', now - 60000), '+inf')\n"
    "  else\n"
    "    local r = redis.call('HMGET', key, 'id', field)\n"
    "    if day and r[1] == day then out[#out + 1] = tonumber(r[2]) or 0 else out[#out + 1] = 0 end\n"
    "  end\n"
    "end\n"
    "return out\n";

enum store_state {
    STORE_DOWN,       /* waiting for the retry timer */
    STORE_DISCOVERY,  /* asking a Sentinel for the primary */
    STORE_CONNECTING, /* TCP connect, AUTH, SELECT, ROLE in progress */
    STORE_READY,      /* connected to a primary */
};

static const char *const store_state_text[] = {"down", "discovery", "connecting", "ready"};

struct quota_op;
TAILQ_HEAD(op_list, quota_op);

struct quota_store {
    struct event_base *base;
    const struct cfg_store *cfg;
    struct quota_mem *mem;         /* memory backend and local fallback (process-wide) */
    enum store_state state;
    redisAsyncContext *ac;         /* data connection, or NULL */
    redisAsyncContext *sac;        /* Sentinel query connection, or NULL */
    size_t sentinel_idx;           /* next Sentinel to ask */
    char host[256];                /* primary being used, or the Unix socket's path */
    int port;                      /* 0 for a Unix socket */
    char name[300];                /* for logs: "host:port" or "unix:PATH" */
    struct event *conn_timer;      /* connect / discovery deadline */
    struct event *retry_timer;     /* next connection attempt */
    struct event *reset_ev;        /* deferred teardown (never inside a hiredis callback) */
    int attempts;                  /* failed attempts since the last success */
    int inflight;                  /* ops with a reply outstanding */
    struct op_list waiting;        /* ops waiting for a connection in progress */
    int nwaiting;
    char sha[41];                  /* SHA-1 of the script */
    int module;                    /* this connection's server has LOOKUPGATE.ADMIT (and the
                                    * config allows it): admissions use it, not the script */
    struct reply_pool *replies;    /* every context's reply objects */
    struct quota_op *idle_ops;     /* finished ops kept for reuse, with their timers */
    int nidle_ops;
    struct quota_store_stats stats;
    char last_error[160];
};

enum op_kind { OP_ADMIT, OP_READ, OP_SET };

struct quota_op {
    struct quota_store *s;
    enum op_kind kind;
    quota_done_fn *cb;           /* OP_ADMIT; NULL once answered or cancelled */
    quota_read_fn *rcb;          /* OP_READ */
    quota_set_fn *scb;           /* OP_SET */
    void *arg;
    struct quota_read *rd;       /* OP_READ: the caller's reads */
    int nrd;
    int64_t read_now_ms;         /* OP_READ: 0 or the time to read at */
    struct local_days days;      /* OP_READ */
    char *set_key, *set_value;   /* OP_SET (value NULL: delete) */
    struct event *timer;         /* made once per op and kept while it idles for reuse */
    struct quota_op *next_idle;
    int64_t t0_us;
    int tried_eval;
    int via_module;              /* sent as LOOKUPGATE.ADMIT */
    int waiting;                 /* in s->waiting (not yet sent) */
    TAILQ_ENTRY(quota_op) wlink;
    struct quota_plan plan;      /* copy: needed for EVAL after NOSCRIPT and the fallback; last,
                                  * so that an admission zeroes and copies only what it uses */
};

static void store_connect(struct quota_store *s);
static void schedule_reset(struct quota_store *s, const char *why);
static void op_timer_cb(evutil_socket_t fd, short what, void *arg);

/* --- completion ------------------------------------------------------------------------ */

/* Delivers res (or, for a store error, the fallback's decision) to the requester. */
static void deliver(struct quota_store *s, quota_done_fn *cb, void *arg,
                    const struct quota_plan *pl, struct quota_result *res)
{
    if (res->outcome == QUOTA_STORE_ERROR) {
        if (s->cfg->fail_local) {
            char why[160];
            snprintf(why, sizeof why, "%s", res->reason);
            int64_t us = res->store_us;
            quota_mem_admit(s->mem, pl, s->cfg->instances, res);
            res->degraded = 1;
            res->store_us = us;
            snprintf(res->reason, sizeof res->reason, "%s", why);
            stat_add(&s->stats.degraded, 1);
        } else {
            stat_add(&s->stats.denied, 1);
        }
    }
    cb(arg, res);
}

static void op_finish(struct quota_op *op, struct quota_result *res)
{
    quota_done_fn *cb = op->cb;
    op->cb = NULL;
    if (cb == NULL)
        return;
    res->store_us = op->t0_us ? now_mono_us() - op->t0_us : 0; /* 0: never sent */
    deliver(op->s, cb, op->arg, &op->plan, res);
}

/* 1 while someone waits for op's answer. */
static int op_alive(const struct quota_op *op)
{
    return op->cb || op->rcb || op->scb;
}

static void op_fail(struct quota_op *op, const char *why)
{
    if (op->kind == OP_READ) {
        quota_read_fn *cb = op->rcb;
        op->rcb = NULL;
        if (cb)
            cb(op->arg, op->rd, op->nrd, 0, why);
        return;
    }
    if (op->kind == OP_SET) {
        quota_set_fn *cb = op->scb;
        op->scb = NULL;
        if (cb)
            cb(op->arg, 0, why);
        return;
    }
    struct quota_result res;
    memset(&res, 0, sizeof res);
    res.outcome = QUOTA_STORE_ERROR;
    res.n = op->plan.n;
    snprintf(res.reason, sizeof res.reason, "%s", why);
    op_finish(op, &res);
}

#define MAX_IDLE_OPS 256

/* A zeroed op up to its plan, with its timer: from the idle list, or new. */
static struct quota_op *op_get(struct quota_store *s)
{
    struct quota_op *op = s->idle_ops;
    struct event *timer;
    if (op) {
        s->idle_ops = op->next_idle;
        s->nidle_ops--;
        timer = op->timer;
    } else {
        op = xmalloc(sizeof *op);
        timer = evtimer_new(s->base, op_timer_cb, op);
    }
    memset(op, 0, offsetof(struct quota_op, plan));
    op->s = s;
    op->timer = timer;
    return op;
}

/* Done with op: kept for the next one (up to MAX_IDLE_OPS), or freed. */
static void op_free(struct quota_op *op)
{
    struct quota_store *s = op->s;
    evtimer_del(op->timer);
    free(op->set_key);
    free(op->set_value);
    op->set_key = op->set_value = NULL;
    if (s->nidle_ops < MAX_IDLE_OPS) {
        op->next_idle = s->idle_ops;
        s->idle_ops = op;
        s->nidle_ops++;
        return;
    }
    event_free(op->timer);
    free(op);
}

/* --- the script reply ------------------------------------------------------------------ */

static int int_at(const redisReply *r, size_t i, long long *v)
{
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_INTEGER)
        return -1;
    *v = r->element[i]->integer;
    return 0;
}

int quota_parse_reply(const struct redisReply *r, const struct quota_plan *pl,
                      struct quota_result *res)
{
    long long st, now, v;
    memset(res, 0, sizeof *res);
    res->n = pl->n;
    if (r->type != REDIS_REPLY_ARRAY || int_at(r, 0, &st) || int_at(r, 1, &now))
        return -1;
    res->now_ms = now;
    if (st == 1) {
        if (r->elements != 3 || r->element[2]->type != REDIS_REPLY_STRING)
            return -1;
        res->outcome = QUOTA_SUSPENDED;
        snprintf(res->reason, sizeof res->reason, "%.*s", (int)r->element[2]->len,
                 r->element[2]->str);
        return 0;
    }
    if (st == 3) {
        res->outcome = QUOTA_STORE_ERROR;
        snprintf(res->reason, sizeof res->reason, "store clock outside the expected local days");
        return 0;
    }
    if ((st != 0 && st != 2) || r->elements != 3 + 3 * (size_t)pl->n || int_at(r, 2, &v))
        return -1;
    res->day = (int32_t)v;
    for (int i = 0; i < pl->n; i++) {
        long long used, reset, over;
        if (int_at(r, 3 + 3 * (size_t)i, &used) || int_at(r, 4 + 3 * (size_t)i, &reset) ||
            int_at(r, 5 + 3 * (size_t)i, &over) || used < 0 || used > 2000000000)
            return -1;
        res->c[i].used = (int)used;
        res->c[i].reset_ms = reset;
        res->c[i].over = over != 0;
        res->c[i].limit = pl->checks[i].limit;
    }
    res->outcome = st == 0 ? QUOTA_ADMITTED : QUOTA_EXCEEDED;
    return 0;
}

static int send_script(struct quota_op *op, int eval);

/* The reply to a read: {now, day, value...}. */
static void read_reply(struct quota_op *op, const redisReply *r)
{
    long long now, day;
    quota_read_fn *cb = op->rcb;
    op->rcb = NULL;
    if (cb == NULL)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 + (size_t)op->nrd ||
        int_at(r, 0, &now) || int_at(r, 1, &day)) {
        cb(op->arg, op->rd, op->nrd, 0, "unexpected reply from the quota store");
        return;
    }
    if (day < 0) {
        cb(op->arg, op->rd, op->nrd, now, "store clock outside the expected local days");
        return;
    }
    for (int i = 0; i < op->nrd; i++) {
        struct quota_read *q = &op->rd[i];
        const redisReply *e = r->element[2 + i];
        q->found = 0;
        q->str[0] = '\0';
        q->num = 0;
        if (e->type == REDIS_REPLY_STRING) {
            q->found = 1;
            snprintf(q->str, sizeof q->str, "%.*s", (int)e->len, e->str);
            q->num = strtoll(q->str, NULL, 10);
        } else if (e->type == REDIS_REPLY_INTEGER) {
            q->num = e->integer;
        }
    }
    cb(op->arg, op->rd, op->nrd, now, NULL);
}

/* The reply to SET ... GET (the old value or nil) or DEL (the number deleted). */
static void set_reply(struct quota_op *op, const redisReply *r)
{
    quota_set_fn *cb = op->scb;
    op->scb = NULL;
    if (cb == NULL)
        return;
    if (r->type == REDIS_REPLY_INTEGER) {
        cb(op->arg, r->integer > 0, NULL);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL) {
        cb(op->arg, r->type == REDIS_REPLY_STRING, NULL);
    } else {
        cb(op->arg, 0, "unexpected reply from the quota store");
    }
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct quota_op *op = privdata;
    struct quota_store *s = op->s;
    redisReply *reply = r;
    (void)ac;
    if (reply == NULL) { /* connection gone: teardown or error */
        s->inflight--;
        if (op_alive(op))
            stat_add(&s->stats.errors, 1);
        op_fail(op, "connection to the quota store lost");
        op_free(op);
        return;
    }
    if (op->kind != OP_ADMIT) {
        s->inflight--;
        evtimer_del(op->timer);
        if (reply->type == REDIS_REPLY_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "quota store error: %.100s", reply->str);
            op_fail(op, why);
        } else if (op->kind == OP_READ) {
            read_reply(op, reply);
        } else {
            set_reply(op, reply);
        }
        op_free(op);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && op->via_module && op->cb &&
        (strncmp(reply->str, "ERR unknown command", 19) == 0 ||
         strncmp(reply->str, "NOPERM", 6) == 0)) {
        /* The module went away (MODULE UNLOAD, or a new primary without it), or an ACL does
         * not let this user run it: the script decides from now on, this op first. */
        if (s->module)
            log_warn("quota store %s: LOOKUPGATE.ADMIT is %s; using the script", s->name,
                     reply->str[0] == 'N' ? "not permitted" : "gone");
        s->module = 0;
        atomic_store(&s->stats.module, 0);
        if (send_script(op, 0) == 0)
            return;
    }
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        !op->tried_eval && op->cb) {
        op->tried_eval = 1;
        if (send_script(op, 1) == 0)
            return; /* the same op waits for the EVAL reply */
    }
    s->inflight--;
    struct quota_result res;
    if (reply->type == REDIS_REPLY_ERROR) {
        stat_add(&s->stats.errors, 1);
        char why[160];
        snprintf(why, sizeof why, "quota store error: %.100s", reply->str);
        if (op->cb)
            log_warn("quota store %s: %s", s->name, reply->str);
        op_fail(op, why);
        if (strncmp(reply->str, "READONLY", 8) == 0 || strncmp(reply->str, "NOAUTH", 6) == 0 ||
            strncmp(reply->str, "WRONGPASS", 9) == 0)
            schedule_reset(s, reply->str);
    } else if (quota_parse_reply(reply, &op->plan, &res) != 0) {
        stat_add(&s->stats.errors, 1);
        op_fail(op, "unexpected reply from the quota store");
    } else {
        op_finish(op, &res);
    }
    op_free(op);
}

static void op_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct quota_op *op = arg;
    struct quota_store *s = op->s;
    (void)fd;
    (void)what;
    stat_add(&s->stats.timeouts, 1);
    if (op->waiting) { /* never sent: hiredis does not know it */
        TAILQ_REMOVE(&s->waiting, op, wlink);
        s->nwaiting--;
        op_fail(op, "quota store not connected in time");
        op_free(op);
        return;
    }
    op_fail(op, "quota store did not answer in time");
    /* A command that does not come back means a stuck connection: tear it down; hiredis
     * then hands this op (and every other pending one) back with a NULL reply. */
    schedule_reset(s, "command timeout");
}

/* EVAL of the read script over op's reads. */
static int send_read(struct quota_op *op)
{
    struct quota_store *s = op->s;
    int argc = 0, n = op->nrd;
    const char **argv = xcalloc((size_t)(12 + 3 * n), sizeof *argv);
    size_t *argl = xcalloc((size_t)(12 + 3 * n), sizeof *argl);
    char nums[9][24];
    argv[argc++] = "EVAL";
    argv[argc++] = read_script;
    snprintf(nums[0], sizeof nums[0], "%d", n);
    argv[argc++] = nums[0];
    for (int i = 0; i < n; i++)
        argv[argc++] = op->rd[i].key;
    snprintf(nums[1], sizeof nums[1], "%lld", (long long)op->read_now_ms);
    argv[argc++] = nums[1];
    for (int i = 0; i < 4; i++) {
        snprintf(nums[2 + i], sizeof nums[2 + i], "%lld", (long long)op->days.start_ms[i]);
        argv[argc++] = nums[2 + i];
    }
    for (int i = 0; i < 3; i++) {
        snprintf(nums[6 + i], sizeof nums[6 + i], "%d", (int)op->days.id[i]);
        argv[argc++] = nums[6 + i];
    }
    for (int i = 0; i < n; i++) {
        const struct quota_read *q = &op->rd[i];
        argv[argc++] = q->kind == QREAD_GET ? "g" : q->kind == QREAD_WINDOW ? "z" : "d";
        argv[argc++] = q->field;
    }
    for (int i = 0; i < argc; i++)
        argl[i] = strlen(argv[i]);
    int rc = redisAsyncCommandArgv(s->ac, reply_cb, op, argc, argv, argl);
    free(argv);
    free(argl);
    return rc == REDIS_OK ? 0 : -1;
}

static int send_set(struct quota_op *op)
{
    struct quota_store *s = op->s;
    int rc;
    if (op->set_value)
        rc = redisAsyncCommand(s->ac, reply_cb, op, "SET %s %s GET", op->set_key, op->set_value);
    else
        rc = redisAsyncCommand(s->ac, reply_cb, op, "DEL %s", op->set_key);
    return rc == REDIS_OK ? 0 : -1;
}

/* Sends op on the connection. */
static int send_op(struct quota_op *op)
{
    switch (op->kind) {
    case OP_READ:
        return send_read(op);
    case OP_SET:
        return send_set(op);
    default:
        return send_script(op, 0);
    }
}

/* RESP bulk strings, written straight into a buffer the caller sized (n + 25 bytes each). */
static size_t resp_bulk(char *out, const char *s, size_t n)
{
    size_t o = 0;
    out[o++] = '$';
    o += fmt_i64(out + o, (int64_t)n);
    out[o++] = '\r';
    out[o++] = '\n';
    memcpy(out + o, s, n);
    o += n;
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

static size_t resp_num(char *out, int64_t v)
{
    char num[24];
    size_t n = fmt_i64(num, v);
    return resp_bulk(out, num, n);
}

/* The admission command: LOOKUPGATE.ADMIT, or EVALSHA/EVAL of quota_script, with the same
 * keys and arguments (see quota_script). Built from the plan's lengths: no strlen, no argv. */
static int send_script(struct quota_op *op, int eval)
{
    struct quota_store *s = op->s;
    const struct quota_plan *pl = &op->plan;
    const char *script = NULL;
    size_t script_len = 0;
    op->via_module = s->module && !eval;
    if (!op->via_module) {
        script = eval ? quota_script : s->sha;
        script_len = eval ? sizeof quota_script - 1 : sizeof s->sha - 1;
    }
    int argc = (op->via_module ? 1 : 2) + 1 + 2 + pl->n + 2 + 4 + 3 + 1 + 3 * pl->n;
    /* Every argument is at most 25 bytes of framing and a number at most 20 digits. */
    size_t need = 24 + (size_t)argc * 45 + script_len + pl->susp_len + pl->last_len +
                  pl->member_len;
    for (int i = 0; i < pl->n; i++)
        need += (size_t)pl->checks[i].key_len + pl->checks[i].field_len;
    char stack[4096];
    char *buf = need <= sizeof stack ? stack : xmalloc(need);
    size_t o = 0;
    buf[o++] = '*';
    o += fmt_i64(buf + o, argc);
    buf[o++] = '\r';
    buf[o++] = '\n';
    if (op->via_module) {
        o += resp_bulk(buf + o, "LOOKUPGATE.ADMIT", 16);
    } else {
        o += eval ? resp_bulk(buf + o, "EVAL", 4) : resp_bulk(buf + o, "EVALSHA", 7);
        o += resp_bulk(buf + o, script, script_len);
    }
    o += resp_num(buf + o, 2 + pl->n);
    o += resp_bulk(buf + o, pl->susp_key, pl->susp_len);
    o += resp_bulk(buf + o, pl->last_key, pl->last_len);
    for (int i = 0; i < pl->n; i++)
        o += resp_bulk(buf + o, pl->checks[i].key, pl->checks[i].key_len);
    o += resp_num(buf + o, pl->now_ms);
    o += resp_bulk(buf + o, pl->member, pl->member_len);
    for (int i = 0; i < 4; i++)
        o += resp_num(buf + o, pl->days.start_ms[i]);
    for (int i = 0; i < 3; i++)
        o += resp_num(buf + o, pl->days.id[i]);
    o += resp_num(buf + o, pl->n);
    for (int i = 0; i < pl->n; i++) {
        const struct quota_check *c = &pl->checks[i];
        o += resp_bulk(buf + o, c->kind == QUOTA_MINUTE ? "m" : "d", 1);
        o += resp_num(buf + o, c->limit);
        o += resp_bulk(buf + o, c->field, c->field_len);
    }
    int rc = redisAsyncFormattedCommand(s->ac, reply_cb, op, buf, o);
    if (buf != stack)
        free(buf);
    return rc == REDIS_OK ? 0 : -1;
}

/* --- connection management ------------------------------------------------------------- */

/* The connection became usable: send what waited for it. */
static void send_waiting(struct quota_store *s)
{
    struct quota_op *op;
    while ((op = TAILQ_FIRST(&s->waiting)) != NULL) {
        TAILQ_REMOVE(&s->waiting, op, wlink);
        s->nwaiting--;
        op->waiting = 0;
        if (!op_alive(op) || send_op(op) != 0) {
            op_fail(op, "cannot send to the quota store");
            op_free(op);
            continue;
        }
        s->inflight++;
        stat_add(&s->stats.commands, 1);
    }
}

/* The connection attempt failed: what waited for it fails now. */
static void fail_waiting(struct quota_store *s, const char *why)
{
    struct quota_op *op;
    while ((op = TAILQ_FIRST(&s->waiting)) != NULL) {
        TAILQ_REMOVE(&s->waiting, op, wlink);
        s->nwaiting--;
        op_fail(op, why);
        op_free(op);
    }
}

static void set_state(struct quota_store *s, enum store_state st)
{
    if (s->state != st)
        log_debug("quota store: %s -> %s", store_state_text[s->state], store_state_text[st]);
    s->state = st;
    atomic_store(&s->stats.ready, st == STORE_READY);
}

static void schedule_retry(struct quota_store *s)
{
    int lo = s->cfg->reconnect_min_ms, hi = s->cfg->reconnect_max_ms;
    int64_t d = lo;
    for (int i = 0; i < s->attempts && d < hi; i++)
        d *= 2;
    if (d > hi)
        d = hi;
    unsigned r;
    random_bytes(&r, sizeof r);
    d = d / 2 + (int64_t)(r % (unsigned)(d / 2 + 1)); /* jitter: [d/2, d] */
    s->attempts++;
    set_state(s, STORE_DOWN);
    fail_waiting(s, s->last_error[0] ? s->last_error : "quota store not connected");
    struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};
    evtimer_add(s->retry_timer, &tv);
}

/* Frees the contexts now. Must not run inside a hiredis callback of those contexts. */
static void teardown(struct quota_store *s)
{
    evtimer_del(s->conn_timer);
    redisAsyncContext *ac = s->ac, *sac = s->sac;
    s->ac = NULL;
    s->sac = NULL;
    if (sac)
        redisAsyncFree(sac);
    if (ac)
        redisAsyncFree(ac); /* pending ops come back through reply_cb with NULL */
}

static void reset_cb(evutil_socket_t fd, short what, void *arg)
{
    struct quota_store *s = arg;
    (void)fd;
    (void)what;
    teardown(s);
    schedule_retry(s);
}

static void schedule_reset(struct quota_store *s, const char *why)
{
    if (s->state == STORE_DOWN && s->ac == NULL && s->sac == NULL)
        return;
    if (s->state == STORE_READY || s->state == STORE_CONNECTING)
        log_warn("quota store %s: %s; reconnecting", s->name, why);
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    set_state(s, STORE_DOWN);
    event_active(s->reset_ev, EV_TIMEOUT, 0);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct quota_store *s = arg;
    (void)fd;
    (void)what;
    log_warn("quota store: %s timed out", s->state == STORE_DISCOVERY ? "Sentinel query"
                                                                      : "connection");
    snprintf(s->last_error, sizeof s->last_error, "connect timeout");
    teardown(s);
    schedule_retry(s);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store_connect(arg);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct quota_store *s = ac->data;
    if (s == NULL || ac != s->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this callback */
        snprintf(s->last_error, sizeof s->last_error, "connect: %s", ac->errstr);
        log_warn("quota store %s: cannot connect: %s", s->name, ac->errstr);
        s->ac = NULL;
        evtimer_del(s->conn_timer);
        schedule_retry(s);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct quota_store *s = ac->data;
    if (s == NULL || ac != s->ac)
        return; /* a context we tore down ourselves */
    log_warn("quota store %s: connection lost%s%s", s->name,
             status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
    snprintf(s->last_error, sizeof s->last_error, "connection lost");
    s->ac = NULL;
    evtimer_del(s->conn_timer);
    schedule_retry(s);
}

/* The reply to ROLE: only a primary may count. */
static void role_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct quota_store *s = privdata;
    redisReply *reply = r;
    if (reply == NULL || ac != s->ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        schedule_reset(s, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        schedule_reset(s, "unexpected reply to ROLE");
        return;
    }
    if (strcmp(reply->element[0]->str, "master") != 0) {
        schedule_reset(s, "the server is not a primary");
        return;
    }
    evtimer_del(s->conn_timer);
    s->attempts = 0;
    s->last_error[0] = '\0';
    set_state(s, STORE_READY);
    log_info("quota store %s: ready", s->name);
    send_waiting(s);
}

/* The reply to COMMAND INFO lookupgate.admit: {nil} without the module. An error (an ACL
 * that forbids COMMAND, say) leaves the script in use. */
static void module_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct quota_store *s = privdata;
    redisReply *reply = r;
    if (reply == NULL || ac != s->ac)
        return;
    s->module = reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
                reply->element[0]->type == REDIS_REPLY_ARRAY;
    atomic_store(&s->stats.module, s->module);
    if (s->module)
        log_info("quota store %s: deciding with LOOKUPGATE.ADMIT (the lookupgate module)",
                 s->name);
}

/* AUTH / SELECT replies: an error means the connection is not usable. */
static void setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct quota_store *s = privdata;
    redisReply *reply = r;
    if (reply && ac == s->ac && reply->type == REDIS_REPLY_ERROR)
        schedule_reset(s, reply->str);
}

/* Starts a connection to host:port (to the Unix socket at path host when port is 0) attached
 * to the worker's loop, with the given callbacks. Returns it, or NULL after scheduling a
 * retry. */
static redisAsyncContext *open_context(struct quota_store *s, const char *host, int port,
                                       redisConnectCallback *on_connect,
                                       redisDisconnectCallback *on_disconnect)
{
    stat_add(&s->stats.reconnects, 1);
    redisAsyncContext *ac = port == 0 ? redisAsyncConnectUnix(host) : redisAsyncConnect(host, port);
    if (ac == NULL || ac->err) {
        snprintf(s->last_error, sizeof s->last_error, "connect: %s", ac ? ac->errstr : "oom");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(s);
        return NULL;
    }
    ac->data = s;
    reply_pool_use(s->replies, ac->c.reader);
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void arm_connect_timer(struct quota_store *s)
{
    struct timeval tv = {s->cfg->connect_timeout_ms / 1000,
                         (s->cfg->connect_timeout_ms % 1000) * 1000};
    evtimer_add(s->conn_timer, &tv);
}

/* The address in logs: "host:port", "[v6]:port" or "unix:PATH". */
static void set_name(struct quota_store *s)
{
    if (s->port == 0)
        snprintf(s->name, sizeof s->name, "unix:%s", s->host);
    else if (strchr(s->host, ':'))
        snprintf(s->name, sizeof s->name, "[%s]:%d", s->host, s->port);
    else
        snprintf(s->name, sizeof s->name, "%s:%d", s->host, s->port);
}

static void open_data(struct quota_store *s)
{
    set_name(s);
    set_state(s, STORE_CONNECTING);
    redisAsyncContext *ac = open_context(s, s->host, s->port, connect_cb, disconnect_cb);
    if (ac == NULL)
        return;
    s->ac = ac;
    if (s->cfg->password)
        redisAsyncCommand(ac, setup_cb, s, "AUTH %s", s->cfg->password);
    if (s->cfg->db)
        redisAsyncCommand(ac, setup_cb, s, "SELECT %d", s->cfg->db);
    redisAsyncCommand(ac, setup_cb, s, "SCRIPT LOAD %s", quota_script);
    s->module = 0;
    atomic_store(&s->stats.module, 0);
    if (s->cfg->quota_module)
        redisAsyncCommand(ac, module_cb, s, "COMMAND INFO lookupgate.admit");
    redisAsyncCommand(ac, role_cb, s, "ROLE");
    arm_connect_timer(s);
}

static void sentinel_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct quota_store *s = privdata;
    redisReply *reply = r;
    if (reply == NULL || ac != s->sac)
        return;
    s->sac = NULL;
    redisAsyncDisconnect(ac); /* allowed here: hiredis defers it until callbacks are done */
    evtimer_del(s->conn_timer);
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING && reply->element[0]->len < sizeof s->host) {
        int port = atoi(reply->element[1]->str);
        if (port > 0 && port < 65536) {
            snprintf(s->host, sizeof s->host, "%s", reply->element[0]->str);
            s->port = port;
            open_data(s);
            return;
        }
    }
    log_warn("quota store: Sentinel %s does not know the primary \"%s\"",
             s->cfg->sentinels[(s->sentinel_idx + s->cfg->nsentinels - 1) % s->cfg->nsentinels],
             s->cfg->master_name);
    snprintf(s->last_error, sizeof s->last_error, "Sentinel has no primary");
    schedule_retry(s);
}

static void sentinel_connect_cb(const redisAsyncContext *ac, int status)
{
    struct quota_store *s = ac->data;
    if (s == NULL || ac != s->sac || status == REDIS_OK)
        return;
    s->sac = NULL; /* hiredis frees it */
    evtimer_del(s->conn_timer);
    snprintf(s->last_error, sizeof s->last_error, "cannot reach Sentinel");
    schedule_retry(s);
}

static void sentinel_disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct quota_store *s = ac->data;
    (void)status;
    if (s && ac == s->sac) {
        s->sac = NULL;
        evtimer_del(s->conn_timer);
        schedule_retry(s);
    }
}

static void store_connect(struct quota_store *s)
{
    if (s->cfg->nsentinels == 0) {
        snprintf(s->host, sizeof s->host, "%s", s->cfg->host);
        s->port = s->cfg->port;
        open_data(s);
        return;
    }
    char host[256];
    int port;
    const char *addr = s->cfg->sentinels[s->sentinel_idx++ % s->cfg->nsentinels];
    config_split_hostport(addr, host, sizeof host, &port);
    set_state(s, STORE_DISCOVERY);
    redisAsyncContext *sac = open_context(s, host, port, sentinel_connect_cb,
                                          sentinel_disconnect_cb);
    if (sac == NULL)
        return;
    s->sac = sac;
    redisAsyncCommand(sac, sentinel_cb, s, "SENTINEL get-master-addr-by-name %s",
                      s->cfg->master_name);
    arm_connect_timer(s);
}

/* --- public ---------------------------------------------------------------------------- */

static void sha1_hex(const char *s, char out[41]);

struct quota_store *quota_store_new(struct event_base *base, const struct cfg_store *cfg,
                                    struct quota_mem *mem)
{
    struct quota_store *s = xcalloc(1, sizeof *s);
    s->base = base;
    s->cfg = cfg;
    s->mem = mem;
    s->conn_timer = evtimer_new(base, conn_timer_cb, s);
    s->retry_timer = evtimer_new(base, retry_cb, s);
    s->reset_ev = event_new(base, -1, 0, reset_cb, s);
    s->replies = reply_pool_new();
    TAILQ_INIT(&s->waiting);
    sha1_hex(quota_script, s->sha);
    atomic_store(&s->stats.ready, cfg->memory);
    if (!cfg->memory)
        store_connect(s);
    return s;
}

void quota_store_free(struct quota_store *s)
{
    if (s == NULL)
        return;
    fail_waiting(s, "shutting down");
    teardown(s); /* every op and reply comes back before this returns */
    for (struct quota_op *op = s->idle_ops, *next; op; op = next) {
        next = op->next_idle;
        event_free(op->timer);
        free(op);
    }
    reply_pool_free(s->replies);
    event_free(s->conn_timer);
    event_free(s->retry_timer);
    event_free(s->reset_ev);
    free(s);
}

/* Sends op now, or queues it behind a connection in progress (within its timeout). Returns
 * NULL, or why it cannot be sent (op is then the caller's to fail and free). */
static const char *op_launch(struct quota_op *op)
{
    struct quota_store *s = op->s;
    int connecting = s->state == STORE_CONNECTING || s->state == STORE_DISCOVERY;
    if (!connecting && (s->state != STORE_READY || s->ac == NULL))
        return s->last_error[0] ? s->last_error : "quota store not connected";
    if (s->inflight + s->nwaiting >= s->cfg->max_in_flight)
        return "too many quota decisions in flight";
    op->t0_us = now_mono_us();
    struct timeval tv = {s->cfg->command_timeout_ms / 1000,
                         (s->cfg->command_timeout_ms % 1000) * 1000};
    evtimer_add(op->timer, &tv);
    if (connecting) {
        op->waiting = 1;
        TAILQ_INSERT_TAIL(&s->waiting, op, wlink);
        s->nwaiting++;
        return NULL;
    }
    if (send_op(op) != 0)
        return "cannot send to the quota store";
    s->inflight++;
    if (op->kind == OP_ADMIT)
        stat_add(&s->stats.commands, 1);
    return NULL;
}

/* Launches op; if it cannot be sent, fails it (per its kind: the admission through the local
 * fallback as configured) and frees it. Returns op, or NULL once it was answered. */
static struct quota_op *op_start(struct quota_op *op)
{
    const char *why = op_launch(op);
    if (why == NULL)
        return op;
    char msg[160];
    snprintf(msg, sizeof msg, "%s", why);
    op_fail(op, msg);
    op_free(op);
    return NULL;
}

struct quota_op *quota_store_admit(struct quota_store *s, const struct quota_plan *pl,
                                   quota_done_fn *cb, void *arg)
{
    if (s->cfg->memory) {
        struct quota_result res;
        quota_mem_admit(s->mem, pl, 1, &res);
        if (res.outcome == QUOTA_STORE_ERROR)
            stat_add(&s->stats.denied, 1);
        cb(arg, &res);
        return NULL;
    }
    struct quota_op *op = op_get(s);
    op->kind = OP_ADMIT;
    op->cb = cb;
    op->arg = arg;
    quota_plan_copy(&op->plan, pl);
    return op_start(op);
}

struct quota_op *quota_store_read(struct quota_store *s, struct quota_read *rd, int n,
                                  int64_t now_ms, int64_t proxy_now_ms, quota_read_fn *cb,
                                  void *arg)
{
    struct local_days days;
    clock_local_days(proxy_now_ms, &days);
    if (s->cfg->memory) {
        int64_t t = quota_mem_read(s->mem, rd, n, now_ms, &days);
        cb(arg, rd, n, t < 0 ? 0 : t, t < 0 ? "clock outside the expected local days" : NULL);
        return NULL;
    }
    struct quota_op *op = op_get(s);
    op->kind = OP_READ;
    op->rcb = cb;
    op->arg = arg;
    op->rd = rd;
    op->nrd = n;
    op->read_now_ms = now_ms;
    op->days = days;
    return op_start(op);
}

struct quota_op *quota_store_set(struct quota_store *s, const char *key, const char *value,
                                 quota_set_fn *cb, void *arg)
{
    if (s->cfg->memory) {
        int was = quota_mem_set(s->mem, key, value);
        cb(arg, was, NULL);
        return NULL;
    }
    struct quota_op *op = op_get(s);
    op->kind = OP_SET;
    op->scb = cb;
    op->arg = arg;
    op->set_key = xstrdup(key);
    op->set_value = value ? xstrdup(value) : NULL;
    return op_start(op);
}

void quota_op_cancel(struct quota_op *op)
{
    if (op) { /* freed when hiredis hands it back */
        op->cb = NULL;
        op->rcb = NULL;
        op->scb = NULL;
    }
}

int quota_store_ready(const struct quota_store *s)
{
    return s->cfg->memory || s->state == STORE_READY;
}

const struct quota_store_stats *quota_store_stats(const struct quota_store *s)
{
    return &s->stats;
}

static void sha1_hex(const char *str, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)str, strlen(str), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
