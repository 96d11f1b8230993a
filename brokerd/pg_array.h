/* PostgreSQL array literals for batch calls ({...} text form), built with open_memstream. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct pg_array {
	FILE *f;
	char *text;
	size_t len;
	unsigned count;
};

bool pg_array_begin(struct pg_array *a);
void pg_array_bytea(struct pg_array *a, const uint8_t *data, size_t len);
void pg_array_int(struct pg_array *a, int64_t v);
void pg_array_text(struct pg_array *a, const char *s);
/* Closes the literal; the text stays valid until pg_array_free. NULL on failure. */
const char *pg_array_end(struct pg_array *a);
void pg_array_free(struct pg_array *a);
