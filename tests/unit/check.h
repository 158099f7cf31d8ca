/* Minimal assertions for the C unit tests: count failures, print where, exit non-zero. */
#ifndef LG_TEST_CHECK_H
#define LG_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(cond)) {                                                                     \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
        }                                                                                  \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        check_count++;                                                                     \
        if (a_ != b_) {                                                                    \
            check_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a,  \
                    a_, b_);                                                               \
        }                                                                                  \
    } while (0)

/* Writes text to a new temporary file; returns its path (static buffer) or NULL. */
static inline char *check_write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/lg-unit-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    close(fd);
    return path;
}

static inline int check_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
