#include "log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ident and journal are written once at start; max_level is atomic: any thread reads it, the
 * event loop's thread changes it (mp_log_set_level). */
static struct {
	char ident[32];
	_Atomic int max_level;
	bool journal;
} log_cfg = {"micropay", MP_LOG_INFO, false};

void mp_log_init(const char *ident, enum mp_log_level max_level)
{
	snprintf(log_cfg.ident, sizeof(log_cfg.ident), "%s", ident);
	atomic_store(&log_cfg.max_level, (int)max_level);
	log_cfg.journal = getenv("JOURNAL_STREAM") != NULL;
}

enum mp_log_level mp_log_level(void)
{
	return (enum mp_log_level)atomic_load(&log_cfg.max_level);
}

void mp_log_set_level(enum mp_log_level level)
{
	atomic_store(&log_cfg.max_level, (int)level);
}

bool mp_log_level_parse(const char *name, enum mp_log_level *out)
{
	static const enum mp_log_level all[] = {MP_LOG_ERR, MP_LOG_WARN, MP_LOG_INFO, MP_LOG_DEBUG};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strcmp(name, mp_log_level_name(all[i]))) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

const char *mp_log_level_name(enum mp_log_level level)
{
	switch (level) {
	case MP_LOG_ERR:
		return "error";
	case MP_LOG_WARN:
		return "warn";
	case MP_LOG_INFO:
		return "info";
	case MP_LOG_DEBUG:
		return "debug";
	}
	return "?";
}

void mp_vlog(enum mp_log_level level, const char *fmt, va_list ap)
{
	if ((int)level > atomic_load(&log_cfg.max_level))
		return;
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	if (log_cfg.journal) {
		fprintf(stderr, "<%d>%s\n", (int)level, line);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char stamp[32];
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp, ts.tv_nsec / 1000000, log_cfg.ident,
		mp_log_level_name(level), line);
}

void mp_log(enum mp_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mp_vlog(level, fmt, ap);
	va_end(ap);
}
