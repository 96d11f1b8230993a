#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cfg_load {
	const struct mp_cfg_key *keys;
	void *target;
	const char *path;
	char *err;
	size_t errlen;
	bool failed;
	int line; /* counted by the reader: inih is built without line numbers */
	FILE *file;
	unsigned char *seen; /* one flag per key */
};

static char *read_line(char *str, int num, void *stream)
{
	struct cfg_load *ld = stream;
	char *got = fgets(str, num, ld->file);
	if (got)
		ld->line++;
	return got;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1")) {
		*out = true;
		return true;
	}
	if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0")) {
		*out = false;
		return true;
	}
	return false;
}

static bool is_numeric(enum mp_cfg_type t)
{
	return t == MP_CFG_U64 || t == MP_CFG_U32;
}

/* A value that parses but lies outside the key's declared range. */
static bool out_of_range(const struct mp_cfg_key *k, const char *value)
{
	uint64_t v;
	return is_numeric(k->type) && parse_u64(value, UINT64_MAX, &v) &&
	       (v < k->min || v > k->max);
}

static bool store_value(const struct mp_cfg_key *k, void *target, const char *value)
{
	char *field = (char *)target + k->offset;
	uint64_t v;
	switch (k->type) {
	case MP_CFG_STRING: {
		char **slot = (char **)field;
		free(*slot);
		*slot = strdup(value);
		return *slot != NULL;
	}
	case MP_CFG_U64:
		if (!parse_u64(value, UINT64_MAX, &v) || v < k->min || v > k->max)
			return false;
		*(uint64_t *)field = v;
		return true;
	case MP_CFG_U32:
		if (!parse_u64(value, UINT32_MAX, &v) || v < k->min || v > k->max)
			return false;
		*(uint32_t *)field = (uint32_t)v;
		return true;
	case MP_CFG_BOOL:
		return parse_bool(value, (bool *)field);
	}
	return false;
}

/* "$NAME/rest" for NAME one of the directories systemd passes (credentials, state, runtime)
 * becomes "<value of $NAME>/rest", so that a unit's LoadCredential=, StateDirectory= and
 * RuntimeDirectory= can be named in the configuration. Any other value is taken as it is.
 * False with err set when the variable is unset, empty or not a single directory. */
static bool expand_dir(const char *value, char *out, size_t outlen, char *why, size_t whylen)
{
	static const char *const vars[] = {"CREDENTIALS_DIRECTORY", "STATE_DIRECTORY",
					   "RUNTIME_DIRECTORY"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		size_t n = strlen(vars[i]);
		if (value[0] != '$' || strncmp(value + 1, vars[i], n) != 0 || value[1 + n] != '/')
			continue;
		const char *dir = getenv(vars[i]);
		if (!dir || !*dir || strchr(dir, ':')) {
			snprintf(why, whylen,
				 "$%s is %s (set by systemd for a unit with %s; or give a path)",
				 vars[i], !dir || !*dir ? "not set" : "a list of directories",
				 i == 0	  ? "LoadCredential="
				 : i == 1 ? "StateDirectory="
					  : "RuntimeDirectory=");
			return false;
		}
		if ((size_t)snprintf(out, outlen, "%s%s", dir, value + 1 + n) >= outlen) {
			snprintf(why, whylen, "the path under $%s is too long", vars[i]);
			return false;
		}
		return true;
	}
	snprintf(out, outlen, "%s", value);
	return strlen(value) < outlen || (snprintf(why, whylen, "value too long"), false);
}

static const char *type_hint(enum mp_cfg_type t)
{
	switch (t) {
	case MP_CFG_STRING:
		return "a string";
	case MP_CFG_U64:
		return "an unsigned 64-bit integer";
	case MP_CFG_U32:
		return "an unsigned 32-bit integer";
	case MP_CFG_BOOL:
		return "true or false";
	}
	return "?";
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_load *ld = user;
	int lineno = ld->line;
	if (ld->failed)
		return 0;
	for (size_t i = 0; ld->keys[i].name; i++) {
		const struct mp_cfg_key *k = &ld->keys[i];
		if (strcmp(k->section, section) || strcmp(k->name, name))
			continue;
		if (out_of_range(k, value)) {
			snprintf(ld->err, ld->errlen,
				 "%s:%d: [%s] %s = %s is out of range: expected %llu .. %llu%s%s%s",
				 ld->path, lineno, section, name, value, (unsigned long long)k->min,
				 (unsigned long long)k->max, k->help ? " (" : "",
				 k->help ? k->help : "", k->help ? ")" : "");
			ld->failed = true;
			return 0;
		}
		char expanded[4096], why[256];
		if (k->type == MP_CFG_STRING &&
		    !expand_dir(value, expanded, sizeof(expanded), why, sizeof(why))) {
			snprintf(ld->err, ld->errlen, "%s:%d: [%s] %s = %s: %s", ld->path, lineno,
				 section, name, value, why);
			ld->failed = true;
			return 0;
		}
		if (k->type == MP_CFG_STRING)
			value = expanded;
		if (!store_value(k, ld->target, value)) {
			snprintf(ld->err, ld->errlen,
				 "%s:%d: bad value '%s' for [%s] %s: expected %s%s%s%s", ld->path,
				 lineno, value, section, name, type_hint(k->type),
				 k->help ? " (" : "", k->help ? k->help : "", k->help ? ")" : "");
			ld->failed = true;
			return 0;
		}
		ld->seen[i] = 1;
		return 1;
	}
	snprintf(ld->err, ld->errlen, "%s:%d: unknown key '%s' in section [%s]", ld->path, lineno,
		 name, section);
	ld->failed = true;
	return 0;
}

bool mp_config_load(const char *path, const struct mp_cfg_key *keys, void *target, char *err,
		    size_t errlen)
{
	size_t nkeys = 0;
	for (; keys[nkeys].name; nkeys++) {
		const struct mp_cfg_key *k = &keys[nkeys];
		if (is_numeric(k->type) && (k->max == 0 || k->min > k->max)) {
			snprintf(err, errlen,
				 "%s: [%s] %s has no declared range (a bug in this build)", path,
				 k->section, k->name);
			return false;
		}
	}
	struct cfg_load ld = {
	    keys, target, path, err, errlen, false, 0, NULL, calloc(nkeys + 1, 1)};
	if (!ld.seen) {
		snprintf(err, errlen, "%s: out of memory", path);
		return false;
	}
	FILE *f = fopen(path, "r");
	ld.file = f;
	if (!f) {
		snprintf(err, errlen, "%s: cannot open configuration: %s", path, strerror(errno));
		free(ld.seen);
		return false;
	}
	int rc = ini_parse_stream(read_line, &ld, on_entry, &ld);
	fclose(f);
	bool ok = !ld.failed;
	if (ok && rc != 0) {
		snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
			 path, rc);
		ok = false;
	}
	for (size_t i = 0; ok && i < nkeys; i++) {
		if (keys[i].required && !ld.seen[i]) {
			snprintf(err, errlen, "%s: missing required key [%s] %s (%s)", path,
				 keys[i].section, keys[i].name,
				 keys[i].help ? keys[i].help : type_hint(keys[i].type));
			ok = false;
		}
	}
	free(ld.seen);
	return ok;
}

void mp_config_free(const struct mp_cfg_key *keys, void *target)
{
	for (size_t i = 0; keys[i].name; i++) {
		if (keys[i].type != MP_CFG_STRING)
			continue;
		char **slot = (char **)((char *)target + keys[i].offset);
		free(*slot);
		*slot = NULL;
	}
}
