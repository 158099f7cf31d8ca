/* Key tables and positioned error messages for lookupgate's JSON files. */
#include "policy/jsoncfg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "policy/jsonpos.h"

/* Finds the position of path, or of its nearest ancestor that exists (a missing key has no
 * position of its own: point at the object that should hold it). */
static void position(struct cfg_ctx *c, const char *path, int *line, int *col)
{
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", path);
    while (jsonpos_find(c->text, c->textlen, parent, line, col) != 0) {
        char *dot = strrchr(parent, '.');
        char *br = strrchr(parent, '[');
        char *cut = dot > br ? dot : br;
        if (cut == NULL) {
            *line = 1;
            *col = 1;
            return;
        }
        *cut = '\0';
    }
}

static void emit(struct cfg_ctx *c, const char *path, const char *key, const char *msg)
{
    int line = 0, col = 0;
    c->nerrors++;
    position(c, path, &line, &col);
    if (c->errused + 1 >= c->errlen)
        return;
    int n;
    if (key)
        n = snprintf(c->err + c->errused, c->errlen - c->errused, "%s:%d:%d: key \"%s\": %s\n",
                     c->file, line, col, key, msg);
    else
        n = snprintf(c->err + c->errused, c->errlen - c->errused, "%s:%d:%d: %s\n", c->file,
                     line, col, msg);
    if (n > 0)
        c->errused += (size_t)n < c->errlen - c->errused ? (size_t)n : c->errlen - c->errused - 1;
}

/* Formats the message and records it; key is NULL for messages that name their subject. */
#define CFG_EMIT(c, path, key, fmt)                                                        \
    do {                                                                                   \
        char msg_[512];                                                                    \
        va_list ap_;                                                                       \
        va_start(ap_, fmt);                                                                \
        vsnprintf(msg_, sizeof msg_, fmt, ap_);                                            \
        va_end(ap_);                                                                       \
        emit(c, path, key, msg_);                                                          \
    } while (0)

void cfg_error(struct cfg_ctx *c, const char *path, const char *fmt, ...)
{
    CFG_EMIT(c, path, path, fmt);
}

void cfg_error_at(struct cfg_ctx *c, const char *path, const char *fmt, ...)
{
    CFG_EMIT(c, path, NULL, fmt);
}

const char *cfg_type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

void cfg_join(char *out, size_t outlen, const char *prefix, const char *name)
{
    snprintf(out, outlen, "%s%s%s", prefix, prefix[0] ? "." : "", name);
}

/* Applies a key table to obj, storing values in base. Keys named in `extra` are left to the
 * caller (nested objects and arrays). Reports unknown keys, wrong types and bounds. */
void cfg_apply(struct cfg_ctx *c, json_t *obj, const char *prefix,
                      const struct cfg_key *keys, void *base, const char *const *extra)
{
    char path[1024];
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v) {
        int known = 0;
        for (const struct cfg_key *k = keys; k->name && !known; k++)
            known = strcmp(k->name, name) == 0;
        for (const char *const *e = extra; e && *e && !known; e++)
            known = strcmp(*e, name) == 0;
        if (!known) {
            cfg_join(path, sizeof path, prefix, name);
            cfg_error(c, path, "unknown key");
        }
    }
    for (const struct cfg_key *k = keys; k->name; k++) {
        char *field = (char *)base + k->off;
        cfg_join(path, sizeof path, prefix, k->name);
        v = json_object_get(obj, k->name);
        if (v == NULL || (json_is_null(v) && k->type == CT_STR && !k->required)) {
            if (k->required)
                cfg_error(c, path, "is required");
            else if (k->type == CT_INT || k->type == CT_BOOL)
                *(int *)field = (int)k->def;
            continue;
        }
        switch (k->type) {
        case CT_INT:
            if (!json_is_integer(v)) {
                cfg_error(c, path, "expected an integer, got %s", cfg_type_name(v));
            } else if (json_integer_value(v) < k->min || json_integer_value(v) > k->max) {
                cfg_error(c, path, "%lld is out of range [%lld, %lld]",
                          (long long)json_integer_value(v), k->min, k->max);
            } else {
                *(int *)field = (int)json_integer_value(v);
            }
            break;
        case CT_BOOL:
            if (!json_is_boolean(v))
                cfg_error(c, path, "expected a boolean, got %s", cfg_type_name(v));
            else
                *(int *)field = json_is_true(v);
            break;
        case CT_STR:
            if (!json_is_string(v) || json_string_length(v) == 0)
                cfg_error(c, path, "expected a non-empty string, got %s",
                          json_is_string(v) ? "an empty string" : cfg_type_name(v));
            else
                *(char **)field = xstrdup(json_string_value(v));
            break;
        }
    }
}

char *cfg_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

json_t *cfg_load_json(struct cfg_ctx *c, const char *path)
{
    c->file = path;
    c->text = cfg_read_file(path, &c->textlen);
    if (c->text == NULL) {
        snprintf(c->err, c->errlen, "%s: cannot read the file\n", path);
        c->errused = strlen(c->err);
        c->nerrors++;
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(c->text, c->textlen, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(c->err, c->errlen, "%s:%d:%d: %s\n", path, jerr.line, jerr.column, jerr.text);
        c->errused = strlen(c->err);
        c->nerrors++;
    }
    return root;
}
