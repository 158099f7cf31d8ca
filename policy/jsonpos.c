/* A minimal JSON walker that tracks the path of every value and stops at the one asked for. */
#include "policy/jsonpos.h"

#include <stdio.h>
#include <string.h>

struct scan {
    const char *s;      /* text */
    size_t len;         /* text length */
    size_t i;           /* cursor */
    const char *target; /* path looked for */
    size_t at;          /* offset of the match, if found */
    int found;          /* 1 once the target was seen */
};

static void skip_ws(struct scan *sc)
{
    while (sc->i < sc->len && strchr(" \t\r\n", sc->s[sc->i]) != NULL && sc->s[sc->i] != '\0')
        sc->i++;
}

/* Skips a string starting at the quote; copies its raw contents into out (truncated). */
static int skip_string(struct scan *sc, char *out, size_t outsz)
{
    size_t o = 0;
    sc->i++; /* opening quote */
    while (sc->i < sc->len && sc->s[sc->i] != '"') {
        if (sc->s[sc->i] == '\\' && sc->i + 1 < sc->len) {
            if (out && o + 1 < outsz)
                out[o++] = sc->s[sc->i];
            sc->i++;
        }
        if (out && o + 1 < outsz)
            out[o++] = sc->s[sc->i];
        sc->i++;
    }
    if (out)
        out[o] = '\0';
    if (sc->i >= sc->len)
        return -1;
    sc->i++;
    return 0;
}

static int walk(struct scan *sc, char *path, size_t plen, int depth);

static int walk_object(struct scan *sc, char *path, size_t plen, int depth)
{
    char key[256];
    sc->i++;
    for (;;) {
        skip_ws(sc);
        if (sc->i >= sc->len)
            return -1;
        if (sc->s[sc->i] == '}') {
            sc->i++;
            return 0;
        }
        if (sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        if (sc->s[sc->i] != '"')
            return -1;
        size_t key_at = sc->i;
        if (skip_string(sc, key, sizeof key) < 0)
            return -1;
        int n = snprintf(path + plen, 1024 - plen, "%s%s", plen ? "." : "", key);
        if (n < 0 || plen + (size_t)n >= 1024)
            return -1;
        if (!sc->found && strcmp(path, sc->target) == 0) {
            sc->found = 1;
            sc->at = key_at;
            return 0;
        }
        skip_ws(sc);
        if (sc->i >= sc->len || sc->s[sc->i] != ':')
            return -1;
        sc->i++;
        if (walk(sc, path, plen + (size_t)n, depth + 1) < 0 || sc->found)
            return sc->found ? 0 : -1;
        path[plen] = '\0';
    }
}

static int walk_array(struct scan *sc, char *path, size_t plen, int depth)
{
    int idx = 0;
    sc->i++;
    for (;;) {
        skip_ws(sc);
        if (sc->i >= sc->len)
            return -1;
        if (sc->s[sc->i] == ']') {
            sc->i++;
            return 0;
        }
        if (sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        int n = snprintf(path + plen, 1024 - plen, "[%d]", idx++);
        if (n < 0 || plen + (size_t)n >= 1024)
            return -1;
        if (!sc->found && strcmp(path, sc->target) == 0) {
            sc->found = 1;
            sc->at = sc->i;
            return 0;
        }
        if (walk(sc, path, plen + (size_t)n, depth + 1) < 0 || sc->found)
            return sc->found ? 0 : -1;
        path[plen] = '\0';
    }
}

static int walk(struct scan *sc, char *path, size_t plen, int depth)
{
    if (depth > 64)
        return -1;
    skip_ws(sc);
    if (sc->i >= sc->len)
        return -1;
    char c = sc->s[sc->i];
    if (c == '{')
        return walk_object(sc, path, plen, depth);
    if (c == '[')
        return walk_array(sc, path, plen, depth);
    if (c == '"')
        return skip_string(sc, NULL, 0);
    /* A scalar runs to the next delimiter (a NUL byte is part of it, not an end). A value
     * that consumes nothing is a syntax error: without this, a stray byte (a '}' in an array,
     * a NUL) kept the callers' loops on the same spot for ever (found by fuzz_config). */
    size_t start = sc->i;
    while (sc->i < sc->len && (sc->s[sc->i] == '\0' || strchr(",]} \t\r\n", sc->s[sc->i]) == NULL))
        sc->i++;
    return sc->i > start ? 0 : -1;
}

int jsonpos_find(const char *text, size_t len, const char *path, int *line, int *col)
{
    char buf[1024] = "";
    struct scan sc = {.s = text, .len = len, .target = path};
    if (path[0] == '\0') {
        *line = 1;
        *col = 1;
        return 0;
    }
    walk(&sc, buf, 0, 0);
    if (!sc.found)
        return -1;
    int l = 1, c = 1;
    for (size_t i = 0; i < sc.at; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
    return 0;
}
