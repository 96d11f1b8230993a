#include "pg_array.h"

#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

static bool usable(const struct pg_array *a)
{
	return a->f && !a->failed;
}

/* Record a failed write (fputc/fputs/fprintf report EOF or a negative count). */
static void check(struct pg_array *a, bool ok)
{
	if (!ok)
		a->failed = true;
}

bool pg_array_begin(struct pg_array *a)
{
	*a = (struct pg_array){0};
	a->f = open_memstream(&a->text, &a->len);
	if (!a->f) {
		log_err("db: cannot build an array parameter: open_memstream failed");
		a->failed = true;
		return false;
	}
	check(a, fputc('{', a->f) != EOF);
	return !a->failed;
}

static void separator(struct pg_array *a)
{
	if (a->count++)
		check(a, fputc(',', a->f) != EOF);
}

void pg_array_bytea(struct pg_array *a, const uint8_t *data, size_t len)
{
	if (!usable(a))
		return;
	separator(a);
	/* "\\x..." inside an array literal is the bytea \x... */
	check(a, fputs("\"\\\\x", a->f) != EOF);
	char hex[2 * 256 + 1];
	for (size_t at = 0; at < len && usable(a); at += 256) {
		size_t chunk = len - at < 256 ? len - at : 256;
		mp_hex_encode(data + at, chunk, hex);
		check(a, fwrite(hex, 1, 2 * chunk, a->f) == 2 * chunk);
	}
	check(a, fputc('"', a->f) != EOF);
}

void pg_array_null(struct pg_array *a)
{
	if (!usable(a))
		return;
	separator(a);
	check(a, fputs("NULL", a->f) != EOF);
}

void pg_array_int(struct pg_array *a, int64_t v)
{
	if (!usable(a))
		return;
	separator(a);
	check(a, fprintf(a->f, "%lld", (long long)v) > 0);
}

void pg_array_text(struct pg_array *a, const char *s)
{
	if (!usable(a))
		return;
	separator(a);
	check(a, fputc('"', a->f) != EOF);
	for (; *s && usable(a); s++) {
		if (*s == '"' || *s == '\\')
			check(a, fputc('\\', a->f) != EOF);
		check(a, fputc(*s, a->f) != EOF);
	}
	check(a, fputc('"', a->f) != EOF);
}

const char *pg_array_end(struct pg_array *a)
{
	if (!a->f)
		return NULL;
	if (!a->failed)
		check(a, fputc('}', a->f) != EOF);
	check(a, fclose(a->f) == 0);
	a->f = NULL;
	if (a->failed)
		log_err("db: cannot build an array parameter: out of memory");
	return a->failed ? NULL : a->text;
}

void pg_array_free(struct pg_array *a)
{
	if (a->f)
		fclose(a->f);
	a->f = NULL;
	free(a->text);
	a->text = NULL;
}
