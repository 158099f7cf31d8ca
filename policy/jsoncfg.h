/* Shared machinery for the JSON files lookupgate reads (the main configuration and the policy):
 * a table of keys per object (type, bounds, default), and errors that name file, line, column
 * and the offending key or name. Every error in a file is collected, not just the first. */
#ifndef LG_JSONCFG_H
#define LG_JSONCFG_H

#include <jansson.h>
#include <stddef.h>

enum cfg_type {
    CT_INT,  /* integer within [min, max] */
    CT_BOOL, /* true / false */
    CT_STR,  /* string, or null for "unset" when not required */
};

struct cfg_key {
    const char *name;  /* JSON member name */
    enum cfg_type type;
    size_t off;        /* offset of the field in the target struct */
    long long min;     /* CT_INT bounds */
    long long max;
    long long def;     /* CT_INT / CT_BOOL default */
    int required;      /* 1: must be present */
};

#define K_INT(st, f, mn, mx, d) {#f, CT_INT, offsetof(st, f), mn, mx, d, 0}
#define K_BOOL(st, f, d) {#f, CT_BOOL, offsetof(st, f), 0, 1, d, 0}
#define K_STR(st, f, req) {#f, CT_STR, offsetof(st, f), 0, 0, 0, req}
#define K_END {NULL, 0, 0, 0, 0, 0, 0}

struct cfg_ctx {
    const char *file; /* for messages */
    char *text;       /* raw file text, for positions */
    size_t textlen;
    char *err;        /* error buffer */
    size_t errlen;
    size_t errused;
    int nerrors;
};

/* Records "file:line:col: key \"path\": message"; path locates the value ("a.b[2].c"). */
void cfg_error(struct cfg_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records "file:line:col: message" (the message names what is wrong itself). */
void cfg_error_at(struct cfg_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Applies a key table to obj, storing values in base. Keys named in extra (NULL-terminated)
 * are left to the caller. Reports unknown keys, missing required keys, wrong types, bounds. */
void cfg_apply(struct cfg_ctx *c, json_t *obj, const char *prefix, const struct cfg_key *keys,
               void *base, const char *const *extra);

/* "an object", "a string", ... for messages. */
const char *cfg_type_name(json_t *v);
/* out = prefix + "." + name (or name when prefix is empty). */
void cfg_join(char *out, size_t outlen, const char *prefix, const char *name);

/* Reads a whole file (at most 16 MiB) into a NUL-terminated buffer; NULL on error. */
char *cfg_read_file(const char *path, size_t *len);

/* Opens path and parses it (duplicate keys rejected). On failure writes the message into c's
 * error buffer and returns NULL. c->text keeps the raw text for positions; free it after. */
json_t *cfg_load_json(struct cfg_ctx *c, const char *path);

#endif
