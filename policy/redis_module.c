/* lookupgate-redis.so: the quota admission as a native Redis command, LOOKUPGATE.ADMIT.
 *
 * It takes the arguments of the Lua script in store.c (quota_script) after the script's SHA:
 *   LOOKUPGATE.ADMIT numkeys KEYS... ARGV...
 * and makes the same decision over the same keys, with the same reply, in one command. The
 * script's Redis CPU is mostly its interpreter and the marshalling of its eight redis.call()s
 * (bench/RESULTS.md, sixth and ninth passes); this does the work with the module API's key
 * functions instead. Both may serve one fleet at once: each runs atomically on the same keys.
 *
 * Replicas and the AOF get the effects as plain commands (ZREMRANGEBYSCORE, ZADD, DEL, HSET,
 * HINCRBY, SET, PEXPIREAT), so a replica needs no module and replays nothing that reads a clock.
 * Differences from the script, on keys someone else has corrupted only: a key of the wrong type,
 * or a day count that is not an integer, is an error before anything is added (the script
 * fails half-way). Two rare cases call Redis's own commands (RM_Call), so that no call costs
 * more than the script's: the entry at a rank far from both ends of a window (ZRANGE), and
 * more than a few entries to drop at once (ZREMRANGEBYSCORE).
 *
 * Debian ships no redismodule.h, so the few functions used are declared here as the module ABI
 * gives them: Redis hands a module its API by name through the first word of the load context
 * (API version 1, stable since Redis 4). Load with `loadmodule /usr/lib/lookupgate/
 * lookupgate-redis.so` in redis.conf, or MODULE LOAD. */
#include <math.h>
#include <stddef.h>
#include <string.h>

typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleString RedisModuleString;
typedef struct RedisModuleCallReply RedisModuleCallReply;
typedef int (*RedisModuleCmdFunc)(RedisModuleCtx *ctx, RedisModuleString **argv, int argc);

#define RM_OK 0
#define RM_ERR 1
#define RM_APIVER_1 1
#define RM_READ (1 << 0)
#define RM_WRITE (1 << 1)
#define RM_KEYTYPE_EMPTY 0
#define RM_KEYTYPE_STRING 1
#define RM_KEYTYPE_HASH 3
#define RM_KEYTYPE_ZSET 5
#define RM_HASH_NONE 0
#define RM_REPLY_ARRAY 3
#define RM_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"

static int (*RM_GetApi)(const char *name, void *fn);
static int (*RM_CreateCommand)(RedisModuleCtx *ctx, const char *name, RedisModuleCmdFunc fn,
                               const char *flags, int firstkey, int lastkey, int keystep);
static void (*RM_SetModuleAttribs)(RedisModuleCtx *ctx, const char *name, int ver, int apiver);
static int (*RM_IsModuleNameBusy)(const char *name);
static int (*RM_WrongArity)(RedisModuleCtx *ctx);
static int (*RM_ReplyWithLongLong)(RedisModuleCtx *ctx, long long v);
static int (*RM_ReplyWithArray)(RedisModuleCtx *ctx, long len);
static int (*RM_ReplyWithError)(RedisModuleCtx *ctx, const char *err);
static int (*RM_ReplyWithStringBuffer)(RedisModuleCtx *ctx, const char *buf, size_t len);
static void *(*RM_OpenKey)(RedisModuleCtx *ctx, RedisModuleString *name, int mode);
static void (*RM_CloseKey)(RedisModuleKey *key);
static int (*RM_KeyType)(RedisModuleKey *key);
static size_t (*RM_ValueLength)(RedisModuleKey *key);
static RedisModuleString *(*RM_CreateString)(RedisModuleCtx *ctx, const char *p, size_t len);
static RedisModuleString *(*RM_CreateStringPrintf)(RedisModuleCtx *ctx, const char *fmt, ...);
static void (*RM_FreeString)(RedisModuleCtx *ctx, RedisModuleString *s);
static const char *(*RM_StringPtrLen)(const RedisModuleString *s, size_t *len);
static int (*RM_Replicate)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
static int (*RM_DeleteKey)(RedisModuleKey *key);
static int (*RM_StringSet)(RedisModuleKey *key, RedisModuleString *s);
static char *(*RM_StringDMA)(RedisModuleKey *key, size_t *len, int mode);
static int (*RM_SetAbsExpire)(RedisModuleKey *key, long long when_ms);
static int (*RM_ZsetAdd)(RedisModuleKey *key, double score, RedisModuleString *e, int *flags);
static int (*RM_ZsetRem)(RedisModuleKey *key, RedisModuleString *e, int *deleted);
static void (*RM_ZsetRangeStop)(RedisModuleKey *key);
static int (*RM_ZsetFirstInScoreRange)(RedisModuleKey *key, double min, double max, int minex,
                                       int maxex);
static RedisModuleString *(*RM_ZsetRangeCurrentElement)(RedisModuleKey *key, double *score);
static int (*RM_ZsetRangeNext)(RedisModuleKey *key);
static int (*RM_ZsetRangeEndReached)(RedisModuleKey *key);
static int (*RM_ZsetLastInScoreRange)(RedisModuleKey *key, double min, double max, int minex,
                                      int maxex);
static int (*RM_ZsetRangePrev)(RedisModuleKey *key);
static int (*RM_ZsetScore)(RedisModuleKey *key, RedisModuleString *e, double *score);
static RedisModuleCallReply *(*RM_Call)(RedisModuleCtx *ctx, const char *cmd, const char *fmt,
                                        ...);
static int (*RM_CallReplyType)(RedisModuleCallReply *r);
static size_t (*RM_CallReplyLength)(RedisModuleCallReply *r);
static RedisModuleCallReply *(*RM_CallReplyArrayElement)(RedisModuleCallReply *r, size_t i);
static RedisModuleString *(*RM_CreateStringFromCallReply)(RedisModuleCallReply *r);
static void (*RM_FreeCallReply)(RedisModuleCallReply *r);
static int (*RM_HashSet)(RedisModuleKey *key, int flags, ...);
static int (*RM_HashGet)(RedisModuleKey *key, int flags, ...);
static int (*RM_IsKeysPositionRequest)(RedisModuleCtx *ctx);
static void (*RM_KeyAtPos)(RedisModuleCtx *ctx, int pos);
static long long (*RM_Milliseconds)(void);

#define MAX_COUNTERS 16 /* a plan has far fewer (quota.h); more is a malformed call */

static RedisModuleString *id_field; /* "id", the day hash's day field */

/* --- small helpers ------------------------------------------------------------------------- */

/* A decimal integer (optional '-') filling all of p[0..len); 0, or -1. */
static int buf_to_ll(const char *p, size_t len, long long *v)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 18)
        return -1;
    long long x = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = neg ? -x : x;
    return 0;
}

static int to_ll(const RedisModuleString *s, long long *v)
{
    size_t len;
    const char *p = RM_StringPtrLen(s, &len);
    return buf_to_ll(p, len, v);
}

static int str_eq(const RedisModuleString *a, const RedisModuleString *b)
{
    size_t al, bl;
    const char *ap = RM_StringPtrLen(a, &al), *bp = RM_StringPtrLen(b, &bl);
    return al == bl && memcmp(ap, bp, al) == 0;
}

static int str_is(const RedisModuleString *a, const char *lit)
{
    size_t al;
    const char *ap = RM_StringPtrLen(a, &al);
    return al == strlen(lit) && memcmp(ap, lit, al) == 0;
}

/* The time a window member names ("<ms>:..."), as the script reads it: -1 if none. */
static long long member_time(const RedisModuleString *m)
{
    size_t len, i = 0;
    const char *p = RM_StringPtrLen(m, &len);
    long long t = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') {
        if (i == 18)
            return -1;
        t = t * 10 + (p[i] - '0');
        i++;
    }
    return i > 0 && i < len && p[i] == ':' ? t : -1;
}

/* --- the command --------------------------------------------------------------------------- */

struct counter {
    RedisModuleString *key, *field;
    int minute;
    long long limit, used, reset;
    int over;  /* at or over its limit before this admission */
    int fresh; /* day hash of another day: recreate before counting */
};

/* Replies err and returns RM_ERR: the caller stops and replies nothing more. */
static int reply_error(RedisModuleCtx *ctx, RedisModuleKey *k, const char *err)
{
    RM_CloseKey(k);
    RM_ReplyWithError(ctx, err);
    return RM_ERR;
}

/* Steps an iterator may take to reach a rank; further, ZRANGE finds it in O(log n). Windows
 * hold at most about their limit, but a limit lowered under a full window (the global one,
 * say) leaves the rank far from both ends. */
#define MAX_RANK_STEPS 64

/* Entries removed one at a time from a window before the rest go in one ZREMRANGEBYSCORE:
 * at a steady rate one leaves per admission; after a quiet minute, a whole minute's may. */
#define MAX_REMOVE_STEPS 8

/* The member at rank idx of the window k (used entries) and its score: NULL if none. */
static RedisModuleString *member_at(RedisModuleCtx *ctx, RedisModuleKey *k,
                                    RedisModuleString *name, long long idx, long long used,
                                    double *score)
{
    RedisModuleString *e = NULL;
    if (idx <= MAX_RANK_STEPS || used - 1 - idx <= MAX_RANK_STEPS) {
        int from_end = idx > MAX_RANK_STEPS;
        long long steps = from_end ? used - 1 - idx : idx;
        if (from_end)
            RM_ZsetLastInScoreRange(k, -HUGE_VAL, HUGE_VAL, 0, 0);
        else
            RM_ZsetFirstInScoreRange(k, -HUGE_VAL, HUGE_VAL, 0, 0);
        for (long long i = 0; i < steps && !RM_ZsetRangeEndReached(k); i++) {
            if (from_end)
                RM_ZsetRangePrev(k);
            else
                RM_ZsetRangeNext(k);
        }
        if (!RM_ZsetRangeEndReached(k))
            e = RM_ZsetRangeCurrentElement(k, score);
        RM_ZsetRangeStop(k);
        return e;
    }
    RedisModuleCallReply *r = RM_Call(ctx, "ZRANGE", "sll", name, idx, idx);
    if (r && RM_CallReplyType(r) == RM_REPLY_ARRAY && RM_CallReplyLength(r) == 1) {
        e = RM_CreateStringFromCallReply(RM_CallReplyArrayElement(r, 0));
        if (e && RM_ZsetScore(k, e, score) != RM_OK)
            *score = 0;
    }
    if (r)
        RM_FreeCallReply(r);
    return e;
}

/* The minute window of c: drops entries older than the minute, then counts. */
static int read_minute(RedisModuleCtx *ctx, struct counter *c, long long now)
{
    RedisModuleKey *k = RM_OpenKey(ctx, c->key, RM_READ | RM_WRITE);
    int type = RM_KeyType(k);
    if (type != RM_KEYTYPE_EMPTY && type != RM_KEYTYPE_ZSET)
        return reply_error(ctx, k, RM_WRONGTYPE);
    c->used = 0;
    c->reset = 60000;
    if (type == RM_KEYTYPE_EMPTY) {
        RM_CloseKey(k);
        return RM_OK;
    }
    long long cutoff = now - 60000;
    long long removed = 0;
    for (;;) { /* one at a time: the iterator may not outlive a removal */
        RM_ZsetFirstInScoreRange(k, -HUGE_VAL, (double)cutoff, 0, 0);
        if (RM_ZsetRangeEndReached(k)) {
            RM_ZsetRangeStop(k);
            break;
        }
        if (removed == MAX_REMOVE_STEPS) {
            /* Many left (a busy window after a quiet minute): Redis's own range removal,
             * on the key reopened after it (the command may delete it). */
            RM_ZsetRangeStop(k);
            RM_CloseKey(k);
            RedisModuleCallReply *r = RM_Call(ctx, "ZREMRANGEBYSCORE", "scl", c->key, "-inf",
                                              cutoff);
            if (r)
                RM_FreeCallReply(r);
            k = RM_OpenKey(ctx, c->key, RM_READ | RM_WRITE);
            break;
        }
        double score;
        RedisModuleString *e = RM_ZsetRangeCurrentElement(k, &score);
        RM_ZsetRangeStop(k);
        RM_ZsetRem(k, e, NULL);
        RM_FreeString(ctx, e);
        removed++;
        if (RM_KeyType(k) == RM_KEYTYPE_EMPTY)
            break;
    }
    if (removed)
        RM_Replicate(ctx, "ZREMRANGEBYSCORE", "scl", c->key, "-inf", cutoff);
    if (RM_KeyType(k) == RM_KEYTYPE_EMPTY) {
        RM_CloseKey(k);
        return RM_OK;
    }
    c->used = (long long)RM_ValueLength(k);
    if (c->used > 0 && c->limit > 0) {
        long long idx = c->used >= c->limit ? c->used - c->limit : 0;
        double score = 0;
        RedisModuleString *e = member_at(ctx, k, c->key, idx, c->used, &score);
        double t = (double)(e ? member_time(e) : -1);
        if (t < 0 || t < (double)(now - 60000) || t > (double)(now + 60000))
            t = score;
        if (e)
            RM_FreeString(ctx, e);
        c->reset = (long long)(t + 60000.0 - (double)now);
    }
    RM_CloseKey(k);
    return RM_OK;
}

/* The day count of c's field, if the hash is for day. */
static int read_day(RedisModuleCtx *ctx, struct counter *c, const RedisModuleString *day,
                    long long dayend, long long now)
{
    RedisModuleKey *k = RM_OpenKey(ctx, c->key, RM_READ);
    int type = RM_KeyType(k);
    if (type != RM_KEYTYPE_EMPTY && type != RM_KEYTYPE_HASH)
        return reply_error(ctx, k, RM_WRONGTYPE);
    c->used = 0;
    c->reset = dayend - now;
    c->fresh = 1;
    if (type == RM_KEYTYPE_HASH) {
        RedisModuleString *id = NULL, *v = NULL;
        RM_HashGet(k, RM_HASH_NONE, id_field, &id, c->field, &v, NULL);
        if (id && str_eq(id, day)) {
            c->fresh = 0;
            if (v && to_ll(v, &c->used) != 0) {
                RM_FreeString(ctx, id);
                RM_FreeString(ctx, v);
                return reply_error(ctx, k, "ERR lookupgate: day count is not an integer");
            }
        }
        if (id)
            RM_FreeString(ctx, id);
        if (v)
            RM_FreeString(ctx, v);
    }
    RM_CloseKey(k);
    return RM_OK;
}

static void add_minute(RedisModuleCtx *ctx, const struct counter *c, RedisModuleString *member,
                       long long now)
{
    RedisModuleKey *k = RM_OpenKey(ctx, c->key, RM_READ | RM_WRITE);
    RM_ZsetAdd(k, (double)now, member, NULL);
    long long at = RM_Milliseconds() + 61000;
    RM_SetAbsExpire(k, at);
    RM_CloseKey(k);
    RM_Replicate(ctx, "ZADD", "sls", c->key, now, member);
    RM_Replicate(ctx, "PEXPIREAT", "sl", c->key, at);
}

static void add_day(RedisModuleCtx *ctx, struct counter *cs, int i, int n,
                    RedisModuleString *day, long long dayend, long long now)
{
    struct counter *c = &cs[i];
    RedisModuleKey *k = RM_OpenKey(ctx, c->key, RM_READ | RM_WRITE);
    if (c->fresh) {
        if (RM_KeyType(k) != RM_KEYTYPE_EMPTY) {
            RM_DeleteKey(k);
            RM_Replicate(ctx, "DEL", "s", c->key);
        }
        RM_HashSet(k, RM_HASH_NONE, id_field, day, NULL);
        long long at = RM_Milliseconds() + (dayend - now + 3600000);
        RM_SetAbsExpire(k, at);
        RM_Replicate(ctx, "HSET", "sss", c->key, id_field, day);
        RM_Replicate(ctx, "PEXPIREAT", "sl", c->key, at);
        for (int j = i + 1; j < n; j++) /* the script recreates each key once */
            if (!cs[j].minute && str_eq(cs[j].key, c->key))
                cs[j].fresh = 0;
    }
    RedisModuleString *v = NULL;
    long long count = 0;
    RM_HashGet(k, RM_HASH_NONE, c->field, &v, NULL);
    if (v) {
        to_ll(v, &count); /* checked when read */
        RM_FreeString(ctx, v);
    }
    RedisModuleString *nv = RM_CreateStringPrintf(ctx, "%lld", count + 1);
    RM_HashSet(k, RM_HASH_NONE, c->field, nv, NULL);
    RM_FreeString(ctx, nv);
    RM_CloseKey(k);
    RM_Replicate(ctx, "HINCRBY", "ssl", c->key, c->field, 1LL);
}

/* LOOKUPGATE.ADMIT numkeys susp last counter... now member day_start*4 day_id*3 n
 *                  (kind limit field)*n */
static int admit_cmd(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
    long long nkeys;
    if (argc < 2 || to_ll(argv[1], &nkeys) != 0 || nkeys < 2 || nkeys > 2 + MAX_COUNTERS ||
        argc < 2 + nkeys + 10)
        return RM_IsKeysPositionRequest(ctx) ? RM_OK : RM_WrongArity(ctx);
    if (RM_IsKeysPositionRequest(ctx)) {
        for (int i = 0; i < (int)nkeys; i++)
            RM_KeyAtPos(ctx, 2 + i);
        return RM_OK;
    }
    RedisModuleString **keys = argv + 2;
    RedisModuleString **a = argv + 2 + nkeys - 1; /* a[1] is ARGV[1], as in the script */
    long long n;
    if (to_ll(a[10], &n) != 0 || n != nkeys - 2 || argc != 2 + nkeys + 10 + 3 * n)
        return RM_WrongArity(ctx);

    long long now;
    if (str_is(a[1], "0"))
        now = RM_Milliseconds();
    else if (to_ll(a[1], &now) != 0)
        return RM_ReplyWithError(ctx, "ERR lookupgate: bad time");

    /* Suspended, and the last use (as MGET: a value of another type reads as none). */
    RedisModuleKey *k = RM_OpenKey(ctx, keys[0], RM_READ);
    if (RM_KeyType(k) == RM_KEYTYPE_STRING) {
        size_t len;
        const char *p = RM_StringDMA(k, &len, RM_READ);
        RM_ReplyWithArray(ctx, 3);
        RM_ReplyWithLongLong(ctx, 1);
        RM_ReplyWithLongLong(ctx, now);
        RM_ReplyWithStringBuffer(ctx, p, len);
        RM_CloseKey(k);
        return RM_OK;
    }
    RM_CloseKey(k);

    int day_i = -1;
    long long dayend = 0;
    for (int i = 0; i < 3; i++) {
        long long lo, hi;
        if (to_ll(a[3 + i], &lo) != 0 || to_ll(a[4 + i], &hi) != 0)
            return RM_ReplyWithError(ctx, "ERR lookupgate: bad day bounds");
        if (now >= lo && now < hi) {
            day_i = i;
            dayend = hi;
        }
    }
    if (day_i < 0) {
        RM_ReplyWithArray(ctx, 2);
        RM_ReplyWithLongLong(ctx, 3);
        RM_ReplyWithLongLong(ctx, now);
        return RM_OK;
    }
    RedisModuleString *day = a[7 + day_i];
    long long day_num;
    if (to_ll(day, &day_num) != 0)
        return RM_ReplyWithError(ctx, "ERR lookupgate: bad day id");

    struct counter cs[MAX_COUNTERS];
    int over = 0;
    for (int i = 0; i < (int)n; i++) {
        struct counter *c = &cs[i];
        RedisModuleString **b = a + 10 + 3 * i; /* b[1] kind, b[2] limit, b[3] field */
        memset(c, 0, sizeof *c);
        c->key = keys[2 + i];
        c->field = b[3];
        c->minute = str_is(b[1], "m");
        if (to_ll(b[2], &c->limit) != 0)
            return RM_ReplyWithError(ctx, "ERR lookupgate: bad limit");
        int rc = c->minute ? read_minute(ctx, c, now) : read_day(ctx, c, day, dayend, now);
        if (rc != RM_OK)
            return RM_OK; /* the error is the reply */
        c->over = c->used >= c->limit;
        over |= c->over;
    }
    if (!over) {
        size_t ml;
        const char *m = RM_StringPtrLen(a[2], &ml);
        RedisModuleString *member = NULL;
        for (int i = 0; i < (int)n; i++) {
            if (cs[i].minute) {
                if (member == NULL)
                    member = RM_CreateStringPrintf(ctx, "%lld:%.*s", now, (int)ml, m);
                add_minute(ctx, &cs[i], member, now);
            } else {
                add_day(ctx, cs, i, (int)n, day, dayend, now);
            }
            cs[i].used++;
        }
        if (member)
            RM_FreeString(ctx, member);

        k = RM_OpenKey(ctx, keys[1], RM_READ | RM_WRITE);
        long long last = 0;
        int have_last = 0;
        if (RM_KeyType(k) == RM_KEYTYPE_STRING) {
            size_t len;
            const char *p = RM_StringDMA(k, &len, RM_READ);
            have_last = p != NULL && buf_to_ll(p, len, &last) == 0;
        }
        if (!have_last || now - last >= 60000 || last > now) {
            RedisModuleString *ns = RM_CreateStringPrintf(ctx, "%lld", now);
            RM_StringSet(k, ns);
            long long at = RM_Milliseconds() + 34560000000LL;
            RM_SetAbsExpire(k, at);
            RM_Replicate(ctx, "SET", "sscl", keys[1], ns, "PXAT", at);
            RM_FreeString(ctx, ns);
        }
        RM_CloseKey(k);
    }
    RM_ReplyWithArray(ctx, 3 + 3 * n);
    RM_ReplyWithLongLong(ctx, over ? 2 : 0);
    RM_ReplyWithLongLong(ctx, now);
    RM_ReplyWithLongLong(ctx, day_num);
    for (int i = 0; i < (int)n; i++) {
        RM_ReplyWithLongLong(ctx, cs[i].used);
        RM_ReplyWithLongLong(ctx, cs[i].reset);
        RM_ReplyWithLongLong(ctx, cs[i].over);
    }
    return RM_OK;
}

/* --- loading ------------------------------------------------------------------------------- */

#define API(name) (RM_GetApi("RedisModule_" #name, (void *)&RM_##name) == RM_OK)

__attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx *ctx,
                                                              RedisModuleString **argv, int argc);

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
    (void)argv;
    (void)argc;
    memcpy(&RM_GetApi, (void **)ctx, sizeof RM_GetApi); /* the ABI: first word of the context */
    if (!(API(CreateCommand) && API(SetModuleAttribs) && API(IsModuleNameBusy) &&
          API(WrongArity) && API(ReplyWithLongLong) && API(ReplyWithArray) &&
          API(ReplyWithError) && API(ReplyWithStringBuffer) && API(OpenKey) && API(CloseKey) &&
          API(KeyType) && API(ValueLength) && API(CreateString) && API(CreateStringPrintf) &&
          API(FreeString) && API(StringPtrLen) && API(Replicate) && API(DeleteKey) && API(StringSet) &&
          API(StringDMA) && API(SetAbsExpire) && API(ZsetAdd) && API(ZsetRem) &&
          API(ZsetRangeStop) && API(ZsetFirstInScoreRange) && API(ZsetRangeCurrentElement) &&
          API(ZsetRangeNext) && API(ZsetRangeEndReached) && API(HashSet) && API(HashGet) &&
          API(IsKeysPositionRequest) && API(KeyAtPos) && API(Milliseconds) &&
          API(ZsetLastInScoreRange) && API(ZsetRangePrev) && API(ZsetScore) && API(Call) &&
          API(CallReplyType) && API(CallReplyLength) && API(CallReplyArrayElement) &&
          API(CreateStringFromCallReply) && API(FreeCallReply)))
        return RM_ERR; /* a Redis older than the functions used (SetAbsExpire: 6.2.2) */
    if (RM_IsModuleNameBusy("lookupgate"))
        return RM_ERR;
    RM_SetModuleAttribs(ctx, "lookupgate", 1, RM_APIVER_1);
    id_field = RM_CreateString(NULL, "id", 2);
    if (RM_CreateCommand(ctx, "lookupgate.admit", admit_cmd, "write deny-oom getkeys-api", 0, 0,
                         0) != RM_OK)
        return RM_ERR;
    return RM_OK;
}

__attribute__((visibility("default"))) int RedisModule_OnUnload(RedisModuleCtx *ctx);

/* MODULE UNLOAD: nothing of ours stays behind in Redis. */
int RedisModule_OnUnload(RedisModuleCtx *ctx)
{
    (void)ctx;
    if (id_field)
        RM_FreeString(NULL, id_field);
    id_field = NULL;
    return RM_OK;
}
