/* Numbered SQL migrations, embedded at build time and applied at start-up, each in its own
 * transaction, recorded in schema_version. A database whose schema is newer than this build
 * is refused. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];

bool migrate(PGconn *pg, char *err, size_t errlen);
