#include "config_doc.h"

#include <inttypes.h>
#include <string.h>

static const char *type_name(enum mp_cfg_type t)
{
	switch (t) {
	case MP_CFG_STRING:
		return "string";
	case MP_CFG_U64:
	case MP_CFG_U32:
		return "integer";
	case MP_CFG_BOOL:
		return "boolean";
	}
	return "?";
}

/* The default of key k in defaults, as the configuration file would spell it; "" for none. */
static void default_of(const struct mp_cfg_key *k, const void *defaults, char *out, size_t outlen)
{
	const char *field = (const char *)defaults + k->offset;
	const char *s;
	switch (k->type) {
	case MP_CFG_STRING:
		s = *(char *const *)field;
		snprintf(out, outlen, "%s", s ? s : "");
		return;
	case MP_CFG_U64:
		snprintf(out, outlen, "%" PRIu64, *(const uint64_t *)field);
		return;
	case MP_CFG_U32:
		snprintf(out, outlen, "%" PRIu32, *(const uint32_t *)field);
		return;
	case MP_CFG_BOOL:
		snprintf(out, outlen, "%s", *(const bool *)field ? "true" : "false");
		return;
	}
	out[0] = '\0';
}

static void range_of(const struct mp_cfg_key *k, char *out, size_t outlen)
{
	if (k->type == MP_CFG_U64 || k->type == MP_CFG_U32)
		snprintf(out, outlen, "%" PRIu64 " .. %" PRIu64, k->min, k->max);
	else
		out[0] = '\0';
}

static const char *example_of(const struct mp_cfg_key *k, const struct mp_cfg_example *examples)
{
	for (size_t i = 0; examples[i].name; i++)
		if (!strcmp(examples[i].section, k->section) && !strcmp(examples[i].name, k->name))
			return examples[i].value;
	return NULL;
}

/* True when k is the first key of its section in the table (sections are contiguous). */
static bool opens_section(const struct mp_cfg_key *keys, size_t i)
{
	return i == 0 || strcmp(keys[i - 1].section, keys[i].section) != 0;
}

static void write_text(FILE *out, const struct mp_cfg_key *k, const char *def, const char *range)
{
	fprintf(out, "  %-28s %s%s%s%s%s%s\n", k->name, type_name(k->type),
		k->required ? ", required" : "", *def ? ", default " : "", def, *range ? ", " : "",
		range);
	if (k->help)
		fprintf(out, "  %-28s %s\n", "", k->help);
}

static void write_ini(FILE *out, const struct mp_cfg_key *k, const char *def, const char *range,
		      const char *example)
{
	fprintf(out, "# %s%s%s%s%s\n", type_name(k->type), *range ? " " : "", range,
		k->help ? ": " : "", k->help ? k->help : "");
	if (k->required)
		fprintf(out, "%s = %s\n\n", k->name, example);
	else
		fprintf(out, "#%s =%s%s\n\n", k->name, *def ? " " : "", def);
}

static void write_markdown(FILE *out, const struct mp_cfg_key *k, const char *def,
			   const char *range)
{
	fprintf(out, "| `%s` | %s | %s | %s | %s | %s |\n", k->name, type_name(k->type),
		k->required ? "yes" : "", *def ? def : "", range, k->help ? k->help : "");
}

static void write_section(FILE *out, enum mp_cfg_doc_format format, const char *section)
{
	switch (format) {
	case MP_CFG_DOC_TEXT:
		fprintf(out, "\n[%s]\n", section);
		return;
	case MP_CFG_DOC_INI:
		fprintf(out, "[%s]\n", section);
		return;
	case MP_CFG_DOC_MARKDOWN:
		fprintf(out,
			"\n#### [%s]\n| key | type | required | default | range | meaning |\n"
			"|---|---|---|---|---|---|\n",
			section);
		return;
	}
}

static void write_header(FILE *out, enum mp_cfg_doc_format format, const char *name)
{
	switch (format) {
	case MP_CFG_DOC_TEXT:
		fprintf(out, "Configuration keys of %s (INI file given with -c):\n", name);
		return;
	case MP_CFG_DOC_INI:
		fprintf(
		    out,
		    "# %s: every configuration key. Required keys carry example values; the\n"
		    "# others are commented out and show their defaults. Written by\n"
		    "# `%s --print-config` (do not edit by hand: ./deploy/gen-config-docs).\n\n",
		    name, name);
		return;
	case MP_CFG_DOC_MARKDOWN:
		fprintf(out, "\n### %s\n", name);
		return;
	}
}

bool mp_config_doc(FILE *out, enum mp_cfg_doc_format format, const char *name,
		   const struct mp_cfg_key *keys, const void *defaults,
		   const struct mp_cfg_example *examples)
{
	write_header(out, format, name);
	for (size_t i = 0; keys[i].name; i++) {
		const struct mp_cfg_key *k = &keys[i];
		char def[256], range[64];
		default_of(k, defaults, def, sizeof(def));
		range_of(k, range, sizeof(range));
		const char *example = example_of(k, examples);
		if (k->required && !example) {
			fprintf(stderr, "%s: required key [%s] %s has no example value (a bug)\n",
				name, k->section, k->name);
			return false;
		}
		if (opens_section(keys, i))
			write_section(out, format, k->section);
		switch (format) {
		case MP_CFG_DOC_TEXT:
			write_text(out, k, def, range);
			break;
		case MP_CFG_DOC_INI:
			write_ini(out, k, def, range, example);
			break;
		case MP_CFG_DOC_MARKDOWN:
			write_markdown(out, k, def, range);
			break;
		}
	}
	return true;
}
