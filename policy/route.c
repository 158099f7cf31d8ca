/* Route patterns: compile, match, and the overlap test used to refuse ambiguous policies. */
#include "policy/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int lit_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,=:@", c) != NULL;
}

static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

int route_compile(struct route *r, const char *p, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    size_t len = strlen(p);
    if (len == 0 || p[0] != '/') {
        snprintf(err, errlen, "path pattern must start with '/'");
        return -1;
    }
    size_t cap = 1;
    for (size_t i = 0; i < len; i++)
        cap += p[i] == '/';
    if (cap > ROUTE_MAX_SEGS) {
        snprintf(err, errlen, "path pattern has more than %d segments", ROUTE_MAX_SEGS);
        return -1;
    }
    r->segs = xcalloc(cap, sizeof *r->segs);
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < len && p[j] != '/')
            j++;
        const char *s = p + i;
        size_t n = j - i;
        struct route_seg *sg = &r->segs[r->nsegs++];
        if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
            size_t nl = n - 2;
            if (nl > 0 && s[n - 2] == '*') {
                sg->rest = 1;
                nl--;
            }
            if (!name_ok(s + 1, nl)) {
                snprintf(err, errlen, "bad segment name in \"%.*s\"", (int)n, s);
                goto fail;
            }
            sg->name = xstrndup(s + 1, nl);
            if (sg->rest && j < len) {
                snprintf(err, errlen, "a {name*} segment must be the last one");
                goto fail;
            }
        } else {
            if (n == 0 && j < len) {
                snprintf(err, errlen, "empty segment in path pattern");
                goto fail;
            }
            for (size_t k = 0; k < n; k++)
                if (!lit_char_ok((unsigned char)s[k])) {
                    snprintf(err, errlen, "character '%c' not allowed in a path pattern", s[k]);
                    goto fail;
                }
            if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
                snprintf(err, errlen, "dot segment in path pattern");
                goto fail;
            }
            sg->lit = xstrndup(s, n);
        }
        for (size_t k = 0; k + 1 < r->nsegs; k++)
            if (sg->name && r->segs[k].name && strcmp(sg->name, r->segs[k].name) == 0) {
                snprintf(err, errlen, "segment name \"%s\" used twice", sg->name);
                goto fail;
            }
        if (j >= len)
            break;
        i = j + 1;
    }
    return 0;
fail:
    route_free(r);
    return -1;
}

void route_free(struct route *r)
{
    for (size_t i = 0; i < r->nsegs; i++) {
        free(r->segs[i].lit);
        free(r->segs[i].name);
    }
    free(r->segs);
    memset(r, 0, sizeof *r);
}

int route_param_index(const struct route *r, const char *name)
{
    for (size_t i = 0; i < r->nsegs; i++)
        if (r->segs[i].name && strcmp(r->segs[i].name, name) == 0)
            return (int)i;
    return -1;
}

int route_match(const struct route *r, const char *path, size_t len, const char **seg_at,
                size_t *seg_len)
{
    if (len == 0 || path[0] != '/')
        return 0;
    size_t i = 1;
    for (size_t k = 0; k < r->nsegs; k++) {
        const struct route_seg *sg = &r->segs[k];
        if (sg->rest) {
            if (seg_at) {
                seg_at[k] = path + i;
                seg_len[k] = i <= len ? len - i : 0;
            }
            return 1;
        }
        if (i > len)
            return 0; /* the path has fewer segments */
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t n = j - i;
        if (sg->lit ? (strlen(sg->lit) != n || memcmp(sg->lit, path + i, n) != 0) : n == 0)
            return 0;
        if (seg_at) {
            seg_at[k] = path + i;
            seg_len[k] = n;
        }
        i = j + 1;
    }
    return i > len; /* every segment of the path was consumed */
}

int route_overlap(const struct route *a, const struct route *b)
{
    size_t n = a->nsegs < b->nsegs ? a->nsegs : b->nsegs;
    for (size_t k = 0; k < n; k++) {
        const struct route_seg *x = &a->segs[k], *y = &b->segs[k];
        if (x->rest || y->rest)
            return 1; /* the rest segment absorbs whatever the other has left */
        if (x->lit && y->lit && strcmp(x->lit, y->lit) != 0)
            return 0;
        if ((x->lit && x->lit[0] == '\0' && !y->lit) || (y->lit && y->lit[0] == '\0' && !x->lit))
            return 0; /* an empty final segment never matches a named one */
    }
    if (a->nsegs == b->nsegs)
        return 1;
    /* One is longer: they overlap only if the longer one continues with a rest segment that
     * may match nothing. */
    const struct route *l = a->nsegs > b->nsegs ? a : b;
    return l->nsegs == n + 1 && l->segs[n].rest;
}
