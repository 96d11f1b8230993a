#include <stdbool.h>
#include <stdlib.h>

#include "pg_array.h"

bool pg_array_begin(struct pg_array *a)
{
	*a = (struct pg_array){0};
	a->f = open_memstream(&a->text, &a->len);
	if (a->f)
		fputc('{', a->f);
	return a->f != NULL;
}

static void separator(struct pg_array *a)
{
	if (a->count++)
		fputc(',', a->f);
}

void pg_array_bytea(struct pg_array *a, const uint8_t *data, size_t len)
{
	separator(a);
	fputs("\"\\\\x", a->f); /* "\\x..." inside an array literal is the bytea \x... */
	for (size_t i = 0; i < len; i++)
		fprintf(a->f, "%02x", data[i]);
	fputc('"', a->f);
}

void pg_array_int(struct pg_array *a, int64_t v)
{
	separator(a);
	fprintf(a->f, "%lld", (long long)v);
}

void pg_array_text(struct pg_array *a, const char *s)
{
	separator(a);
	fputc('"', a->f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', a->f);
		fputc(*s, a->f);
	}
	fputc('"', a->f);
}

const char *pg_array_end(struct pg_array *a)
{
	fputc('}', a->f);
	bool ok = fclose(a->f) == 0;
	a->f = NULL;
	return ok ? a->text : NULL;
}

void pg_array_free(struct pg_array *a)
{
	if (a->f)
		fclose(a->f);
	free(a->text);
	a->text = NULL;
}
