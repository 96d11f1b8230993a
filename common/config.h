/* INI configuration via inih, table-driven: every key a daemon accepts is declared; an unknown
 * section or key, a bad value, a number outside its declared range or a missing required key is
 * an error naming file:line. Every numeric key declares its range (min .. max, inclusive); a
 * numeric key declared without one (max 0) is refused at load, so none can slip through. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mp_cfg_type { MP_CFG_STRING, MP_CFG_U64, MP_CFG_U32, MP_CFG_BOOL };

struct mp_cfg_key {
	const char *section;
	const char *name;
	enum mp_cfg_type type;
	size_t offset; /* into the target struct: char *, uint64_t, uint32_t or bool */
	bool required;
	const char *help;  /* what is expected, shown in errors */
	uint64_t min, max; /* numeric keys: the accepted range, inclusive */
};

/* Seconds in d days, for ranges of time keys. */
#define MP_DAYS(d) ((uint64_t)(d)*86400)

#define MP_CFG_END                                                                                 \
	{                                                                                          \
		NULL, NULL, MP_CFG_STRING, 0, false, NULL, 0, 0                                    \
	}

/* Load path into target. Returns true, or false with a message "file:line: ..." in err. */
bool mp_config_load(const char *path, const struct mp_cfg_key *keys, void *target, char *err,
		    size_t errlen);
/* Free the strings mp_config_load stored in target. */
void mp_config_free(const struct mp_cfg_key *keys, void *target);
