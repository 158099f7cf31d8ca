/* Segment names, directory listing and file reading. */
#include "audit/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

int seg_instance_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int seg_name(char *out, size_t outlen, const char *instance, int yyyymmdd, uint64_t first_seq)
{
    int n = snprintf(out, outlen, "%s-%08d-%012llu.jsonl", instance, yyyymmdd,
                     (unsigned long long)first_seq);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

int seg_parse_name(const char *name, struct seg_file *out)
{
    size_t n = strlen(name);
    static const char ext[] = ".jsonl";
    if (n >= SEG_NAME_MAX || n < sizeof ext + 23 || strcmp(name + n - 6, ext) != 0)
        return -1;
    size_t end = n - 6; /* before ".jsonl" */
    const char *dash2 = NULL, *dash1 = NULL;
    for (size_t i = end; i-- > 0;)
        if (name[i] == '-') {
            if (dash2 == NULL)
                dash2 = name + i;
            else {
                dash1 = name + i;
                break;
            }
        }
    if (dash1 == NULL || dash2 - dash1 != 9 || !all_digits(dash1 + 1, 8))
        return -1;
    size_t seqlen = (size_t)(name + end - (dash2 + 1));
    if (seqlen < 12 || seqlen > 20 || !all_digits(dash2 + 1, seqlen))
        return -1;
    size_t il = (size_t)(dash1 - name);
    if (il == 0 || il >= sizeof out->instance)
        return -1;
    memcpy(out->instance, name, il);
    out->instance[il] = '\0';
    if (!seg_instance_ok(out->instance))
        return -1;
    out->first_seq = strtoull(dash2 + 1, NULL, 10);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->path = NULL;
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct seg_file *x = a, *y = b;
    int c = strcmp(x->instance, y->instance);
    if (c)
        return c;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

long seg_list(const char *dir, const char *instance, struct seg_file **out, char *err,
              size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    long n = 0, cap = 16;
    struct seg_file *v = xcalloc((size_t)cap, sizeof *v);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct seg_file f;
        if (seg_parse_name(e->d_name, &f) != 0)
            continue;
        if (instance && strcmp(f.instance, instance) != 0)
            continue;
        if (n == cap) {
            cap *= 2;
            v = xrealloc(v, (size_t)cap * sizeof *v);
        }
        size_t pl = strlen(dir) + strlen(f.name) + 2;
        f.path = xmalloc(pl);
        snprintf(f.path, pl, "%s/%s", dir, f.name);
        v[n++] = f;
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof *v, seg_cmp);
    *out = v;
    return n;
}

void seg_list_free(struct seg_file *s, long n)
{
    for (long i = 0; s && i < n; i++)
        free(s[i].path);
    free(s);
}

int seg_read(const char *path, struct seg_data *d, char *err, size_t errlen)
{
    d->buf = NULL;
    d->len = 0;
    d->zeros = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    size_t data = len;
    while (data > 0 && buf[data - 1] == '\0')
        data--;
    buf[data] = '\0';
    d->buf = buf;
    d->len = data;
    d->zeros = len - data;
    return 0;
}

void seg_data_free(struct seg_data *d)
{
    free(d->buf);
    d->buf = NULL;
}
