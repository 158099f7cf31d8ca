/* Logging for every layer: one line per call, written with a single write(2) so lines from
 * several threads never interleave. The file can be reopened on SIGHUP (log rotation). */
#ifndef LG_LOG_H
#define LG_LOG_H

enum log_level {
    LOG_LVL_ERROR,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
};

/* Parses "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

/* path NULL logs to stderr. Returns 0, or -1 with errno set if the file cannot be opened. */
int log_init(int level, const char *path);
int log_reopen(void);
void log_set_thread_name(const char *name);
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
