/* Logging: one line per event on stderr; syslog priority prefix under journald. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>

enum mp_log_level { MP_LOG_ERR = 3, MP_LOG_WARN = 4, MP_LOG_INFO = 6, MP_LOG_DEBUG = 7 };

/* Called once at start-up, before any thread or event loop exists. The logger's settings are
 * the one piece of process-wide state outside a daemon context: the identity is written once,
 * the level is an atomic that the admin method log.level (or a reload) may change at run time. */
void mp_log_init(const char *ident, enum mp_log_level max_level);

/* The most verbose level logged now, and changing it (any thread). */
enum mp_log_level mp_log_level(void);
void mp_log_set_level(enum mp_log_level level);
/* "error", "warn", "info", "debug". */
const char *mp_log_level_name(enum mp_log_level level);
bool mp_log_level_parse(const char *name, enum mp_log_level *out);

void mp_log(enum mp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mp_vlog(enum mp_log_level level, const char *fmt, va_list ap);

#define log_err(...)   mp_log(MP_LOG_ERR, __VA_ARGS__)
#define log_warn(...)  mp_log(MP_LOG_WARN, __VA_ARGS__)
#define log_info(...)  mp_log(MP_LOG_INFO, __VA_ARGS__)
#define log_debug(...) mp_log(MP_LOG_DEBUG, __VA_ARGS__)
