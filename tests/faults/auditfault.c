/* An LD_PRELOAD shim for the audit fault tests (G3, G4): it acts only on write(), pwrite() and
 * fdatasync() of the audit segments (files whose path ends in ".jsonl"), so the gateway's
 * sockets, pipes and eventfds are untouched (libfiu's write point would fail those too).
 * pwrite() (how the writer writes) gets the same faults as write().
 * The test steers it through the file named by LG_AUDITFAULT, re-read at every call:
 *   short=N     write at most N bytes per call (short writes)
 *   eintr=K     every K-th write fails with EINTR
 *   eio=1       every write fails with EIO
 *   fsync_ms=M  fdatasync sleeps M ms first (a slow disk)
 * Test code only: it stats and reads a file on every call. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct faults {
    long shortw, eintr, eio, fsync_ms;
};

static int is_segment(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 6)
        return 0;
    path[n] = '\0';
    return strcmp(path + n - 6, ".jsonl") == 0;
}

static void load(struct faults *f)
{
    memset(f, 0, sizeof *f);
    const char *ctl = getenv("LG_AUDITFAULT");
    if (ctl == NULL)
        return;
    static ssize_t (*real_read)(int, void *, size_t);
    if (real_read == NULL)
        real_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    int fd = open(ctl, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[256];
    ssize_t n = real_read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        long v = 0;
        if (sscanf(tok, "short=%ld", &v) == 1)
            f->shortw = v;
        else if (sscanf(tok, "eintr=%ld", &v) == 1)
            f->eintr = v;
        else if (sscanf(tok, "eio=%ld", &v) == 1)
            f->eio = v;
        else if (sscanf(tok, "fsync_ms=%ld", &v) == 1)
            f->fsync_ms = v;
    }
}

/* The faults for one write of count bytes to fd: -1 with errno, or 0 with count cut. */
static int fault(int fd, size_t *count)
{
    static unsigned long calls;
    if (!is_segment(fd))
        return 0;
    struct faults f;
    load(&f);
    calls++;
    if (f.eio) {
        errno = EIO;
        return -1;
    }
    if (f.eintr > 0 && calls % (unsigned long)f.eintr == 0) {
        errno = EINTR;
        return -1;
    }
    if (f.shortw > 0 && *count > (size_t)f.shortw)
        *count = (size_t)f.shortw;
    return 0;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (real == NULL)
        real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (fault(fd, &count) != 0)
        return -1;
    return real(fd, buf, count);
}

/* The writer writes its segments with pwrite (glibc's pwrite64 is the same function). */
ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL)
        real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (fault(fd, &count) != 0)
        return -1;
    return real(fd, buf, count, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
{
    return pwrite(fd, buf, count, off);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (is_segment(fd)) {
        struct faults f;
        load(&f);
        if (f.fsync_ms > 0) {
            struct timespec d = {f.fsync_ms / 1000, (f.fsync_ms % 1000) * 1000000L};
            nanosleep(&d, NULL);
        }
    }
    return real(fd);
}
