/* Route patterns of policy operations: "/api/v1/citizens/{id}" with literal segments, named
 * segments ({name}: one non-empty segment) and an optional final rest segment ({name*}: zero or
 * more segments). Matching works on a canonical path (the proxy has already refused
 * percent-encoded unreserved characters, dot segments, empty segments, ';' and '\'). */
#ifndef LG_ROUTE_H
#define LG_ROUTE_H

#include <stddef.h>

#define ROUTE_MAX_SEGS 32

struct route_seg {
    char *lit;   /* literal text, or NULL for a named segment */
    char *name;  /* name of a named or rest segment */
    int rest;    /* 1: {name*}, matches the remaining segments (last only) */
};

struct route {
    struct route_seg *segs;
    size_t nsegs;
};

/* Compiles pattern into r. Returns 0, or -1 with a message in err. */
int route_compile(struct route *r, const char *pattern, char *err, size_t errlen);
void route_free(struct route *r);

/* Index of the named segment called name, or -1. */
int route_param_index(const struct route *r, const char *name);

/* Matches path[0..len) (no query). Returns 1 on a match and, when seg_at is not NULL, fills
 * seg_at[i] / seg_len[i] for the first r->nsegs segments (a rest segment gets the remaining
 * text). Returns 0 otherwise. */
int route_match(const struct route *r, const char *path, size_t len, const char **seg_at,
                size_t *seg_len);

/* 1 if some path matches both a and b. */
int route_overlap(const struct route *a, const struct route *b);

#endif
