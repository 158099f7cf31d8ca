/* Logging: timestamped lines to stderr or a file, reopened on request. */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_LVL_INFO;
static atomic_int log_fd = 2;
static char log_path[4096];
static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "?";
}

int log_init(int level, const char *path)
{
    atomic_store(&log_level, level);
    if (path == NULL || path[0] == '\0') {
        log_path[0] = '\0';
        return 0;
    }
    snprintf(log_path, sizeof log_path, "%s", path);
    return log_reopen();
}

int log_reopen(void)
{
    if (log_path[0] == '\0')
        return 0;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    int old = atomic_exchange(&log_fd, fd);
    if (old != 2)
        close(old);
    return 0;
}

void log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof thread_name, "%s", name);
    /* and for top -H, perf and /proc/PID/task/TID/comm: "lg-w0", "lg-audit" */
    char comm[16];
    snprintf(comm, sizeof comm, "lg-%s", name);
    pthread_setname_np(pthread_self(), comm);
}

int log_enabled(int level)
{
    return level <= atomic_load(&log_level);
}

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], thread_name);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    int fd = atomic_load(&log_fd);
    ssize_t w = write(fd, line, len);
    (void)w;
}
