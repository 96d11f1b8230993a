/* mpctl --human and help text (mpctl_human.h). */
#include "mpctl_human.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A scalar as text (strings unquoted, null as "-"), anything else as compact JSON; malloc'd. */
static char *cell_text(const json_t *v)
{
	if (!v || json_is_null(v))
		return strdup("-");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	return text ? text : strdup("?");
}

static bool is_table(const json_t *v)
{
	if (!json_is_array(v) || json_array_size(v) == 0)
		return false;
	size_t i;
	const json_t *item;
	json_array_foreach(v, i, item) if (!json_is_object(item)) return false;
	return true;
}

/* The columns of a table: every key, in the order first seen. */
static json_t *columns_of(const json_t *rows)
{
	json_t *cols = json_array();
	size_t i;
	const json_t *row;
	json_array_foreach(rows, i, row)
	{
		const char *key;
		const json_t *v;
		json_object_foreach((json_t *)row, key, v)
		{
			bool seen = false;
			size_t j;
			const json_t *c;
			json_array_foreach(cols, j, c) seen =
			    seen || !strcmp(json_string_value(c), key);
			if (!seen)
				json_array_append_new(cols, json_string(key));
		}
	}
	return cols;
}

static void print_table(FILE *out, const json_t *rows, int indent)
{
	json_t *cols = columns_of(rows);
	size_t ncols = json_array_size(cols), nrows = json_array_size(rows);
	size_t *width = calloc(ncols ? ncols : 1, sizeof(*width));
	char **cells = calloc((nrows + 1) * (ncols ? ncols : 1), sizeof(*cells));
	if (!width || !cells) {
		fprintf(out, "%*s(out of memory)\n", indent, "");
		goto out;
	}
	for (size_t c = 0; c < ncols; c++) {
		const char *name = json_string_value(json_array_get(cols, c));
		cells[c] = strdup(name);
		for (size_t r = 0; r < nrows; r++)
			cells[(r + 1) * ncols + c] =
			    cell_text(json_object_get(json_array_get(rows, r), name));
	}
	for (size_t i = 0; i < (nrows + 1) * ncols; i++) {
		size_t len = cells[i] ? strlen(cells[i]) : 0;
		if (len > width[i % ncols])
			width[i % ncols] = len;
	}
	for (size_t r = 0; r <= nrows; r++) {
		fprintf(out, "%*s", indent, "");
		for (size_t c = 0; c < ncols; c++) {
			const char *text = cells[r * ncols + c] ? cells[r * ncols + c] : "";
			if (c + 1 < ncols)
				fprintf(out, "%-*s  ", (int)width[c], text);
			else
				fputs(text, out);
		}
		fputc('\n', out);
	}
out:
	for (size_t i = 0; cells && i < (nrows + 1) * ncols; i++)
		free(cells[i]);
	free(cells);
	free(width);
	json_decref(cols);
}

static void print_object(FILE *out, const json_t *obj, int indent);

/* key: value, the value starting in column width + 2 (width: the longest key). */
static void print_member(FILE *out, const char *key, const json_t *v, int width, int indent)
{
	int pad = width - (int)strlen(key);
	if (pad < 0)
		pad = 0;
	if (is_table(v)) {
		fprintf(out, "%*s%s:\n", indent, "", key);
		print_table(out, v, indent + 2);
	} else if (json_is_array(v) && json_array_size(v) == 0) {
		fprintf(out, "%*s%s:%*s (none)\n", indent, "", key, pad, "");
	} else if (json_is_object(v) && json_object_size(v) > 0) {
		fprintf(out, "%*s%s:\n", indent, "", key);
		print_object(out, v, indent + 2);
	} else if (json_is_string(v) && strchr(json_string_value(v), '\n')) {
		fprintf(out, "%*s%s:\n%s", indent, "", key, json_string_value(v));
	} else {
		char *text = cell_text(v);
		fprintf(out, "%*s%s:%*s %s\n", indent, "", key, pad, "", text ? text : "?");
		free(text);
	}
}

static void print_object(FILE *out, const json_t *obj, int indent)
{
	int width = 0;
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		int len = (int)strlen(key);
		if (len > width)
			width = len;
	}
	json_object_foreach((json_t *)obj, key, v) print_member(out, key, v, width, indent);
}

void mpctl_print_human(FILE *out, const json_t *value)
{
	if (json_is_object(value))
		print_object(out, value, 0);
	else if (is_table(value))
		print_table(out, value, 0);
	else if (json_is_string(value))
		fprintf(out, "%s\n", json_string_value(value));
	else
		print_member(out, "result", value, 6, 0);
}

static void print_param(FILE *out, const json_t *p)
{
	const char *dflt = json_string_value(json_object_get(p, "default"));
	bool required = json_is_true(json_object_get(p, "required"));
	char spec[160];
	if (required)
		snprintf(spec, sizeof(spec), "%s, required",
			 json_string_value(json_object_get(p, "type")));
	else
		snprintf(spec, sizeof(spec), "%s, default: %s",
			 json_string_value(json_object_get(p, "type")), dflt ? dflt : "none");
	fprintf(out, "    %-12s (%s) %s\n", json_string_value(json_object_get(p, "name")), spec,
		json_string_value(json_object_get(p, "description")) ?: "");
}

void mpctl_print_help(FILE *out, const json_t *help)
{
	size_t i, j;
	const json_t *m, *p;
	json_array_foreach(json_object_get(help, "methods"), i, m)
	{
		const json_t *params = json_object_get(m, "params");
		fprintf(out, "%s%s", i ? "\n" : "", json_string_value(json_object_get(m, "name")));
		json_array_foreach(params, j, p) fprintf(
		    out, json_is_true(json_object_get(p, "required")) ? " %s=..." : " [%s=...]",
		    json_string_value(json_object_get(p, "name")));
		fprintf(out, "\n    %s\n",
			json_string_value(json_object_get(m, "description")) ?: "");
		json_array_foreach(params, j, p) print_param(out, p);
	}
}
