/* PostgreSQL array literals for batch calls ({...} text form), built with open_memstream.
 * Failure is sticky: if pg_array_begin could not open the stream (it returns false) or any
 * append failed (out of memory), every later append does nothing and pg_array_end returns NULL,
 * so a truncated literal is never sent. pg_array_free is safe after any of them. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct pg_array {
	FILE *f;
	char *text;
	size_t len;
	unsigned count;
	bool failed;
};

__attribute__((warn_unused_result)) bool pg_array_begin(struct pg_array *a);
void pg_array_bytea(struct pg_array *a, const uint8_t *data, size_t len);
void pg_array_int(struct pg_array *a, int64_t v);
void pg_array_text(struct pg_array *a, const char *s);
void pg_array_null(struct pg_array *a); /* an SQL NULL element */
/* Closes the literal; the text stays valid until pg_array_free. NULL if anything failed. */
__attribute__((warn_unused_result)) const char *pg_array_end(struct pg_array *a);
void pg_array_free(struct pg_array *a);
