/* The CPU cost of one group commit of the audit writer, alone: write a batch of BYTES at the end
 * of what was written, then make it durable, N times, into a file zero-filled ahead as the
 * writer's segments are; print CPU (user + system) and wall time per flush.
 *
 *   flush_cost MODE N BYTES FILE
 *     MODE 0: pwrite + fdatasync (what audit/writer.c does)
 *     MODE 1: O_DIRECT pwrite of the whole 4 KiB blocks the batch touches + fdatasync
 *     MODE 2: as 1, with O_DSYNC instead of fdatasync
 *
 * Built by CMake as flush-cost. FILE must be on the file system to measure (the audit
 * directory's); it is created with N x BYTES + 1 MiB of zeros, and removed. Used in bench/RESULTS.md (twelfth pass) to
 * bound what fewer bytes per lookup, or O_DIRECT, would save the writer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1L << 20)

static double cpu_s(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(const char *what)
{
    perror(what);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODE(0|1|2) N BYTES FILE\n", argv[0]);
        return 2;
    }
    int mode = atoi(argv[1]), n = atoi(argv[2]);
    long batch = atol(argv[3]);
    const char *path = argv[4];
    if (mode < 0 || mode > 2 || n <= 0 || n > 100000 || batch <= 0 || batch > CHUNK - 4096) {
        fprintf(stderr, "%s: MODE is 0, 1 or 2; N at most 100000; BYTES under 1 MiB\n", argv[0]);
        return 2;
    }
    long file_bytes = ((long)n * batch / CHUNK + 2) * CHUNK;
    static _Alignas(4096) char buf[CHUNK]; /* O_DIRECT wants aligned memory */

    /* The zero-filled space ahead, made durable first, as the writer's segments have it. */
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return fail(path);
    memset(buf, 0, CHUNK);
    for (long o = 0; o < file_bytes; o += CHUNK)
        if (pwrite(fd, buf, CHUNK, o) != CHUNK)
            return fail("pwrite");
    if (fsync(fd) != 0 || close(fd) != 0)
        return fail("fsync");

    int flags = O_RDWR | (mode >= 1 ? O_DIRECT : 0) | (mode == 2 ? O_DSYNC : 0);
    fd = open(path, flags);
    if (fd < 0)
        return fail(path);
    memset(buf, 'x', CHUNK);
    long off = 0;
    double c0 = cpu_s(), w0 = wall_s();
    for (int i = 0; i < n; i++, off += batch) {
        if (mode == 0) {
            if (pwrite(fd, buf, (size_t)batch, off) != batch)
                return fail("pwrite");
        } else { /* O_DIRECT: whole blocks, the last partly written one again */
            long start = off & ~4095L, end = (off + batch + 4095) & ~4095L;
            if (pwrite(fd, buf, (size_t)(end - start), start) != end - start)
                return fail("pwrite (O_DIRECT)");
        }
        if (mode != 2 && fdatasync(fd) != 0)
            return fail("fdatasync");
    }
    double c1 = cpu_s(), w1 = wall_s();
    printf("mode %d, %ld bytes a flush: %.1f us CPU, %.1f us wall per flush\n", mode, batch,
           (c1 - c0) / n * 1e6, (w1 - w0) / n * 1e6);
    close(fd);
    unlink(path);
    return 0;
}
