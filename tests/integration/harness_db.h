/* Direct SQL on the test network's PostgreSQL cluster (DIR/pg, as the cluster's superuser
 * `micropay`, through its Unix socket), with psql: for tests that read the broker's state or
 * corrupt it on purpose to see the audit name what broke. */
#pragma once
#include "harness.h"

/* Run the statements (one transaction; printf format) and fail the test on any error. */
void sql_exec(const struct net *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The first column of the first row as text (malloc'd; "" if no row); fails the test on error. */
char *sql_value(const struct net *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A bytea literal for SQL: '\x<hex>'::bytea of len bytes (into out, at least 2*len+16). */
const char *sql_bytea(const uint8_t *data, size_t len, char *out, size_t outlen);
