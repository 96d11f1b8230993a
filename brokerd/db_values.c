/* Parameters in, values out, and the blocking connection of start-up. */
#include "db.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

PGconn *db_connect_blocking(const char *conninfo, char *err, size_t errlen)
{
	PGconn *pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static void add_param(struct db_params *p, const char *value, int len, int format)
{
	if (p->n >= DB_MAX_PARAMS) {
		p->overflow = true;
		return;
	}
	p->values[p->n] = value;
	p->lengths[p->n] = len;
	p->formats[p->n] = format;
	p->n++;
}

void db_param_bytes(struct db_params *p, const uint8_t *data, size_t len)
{
	add_param(p, data ? (const char *)data : "", (int)len, 1);
}

void db_param_text(struct db_params *p, const char *s)
{
	add_param(p, s, s ? (int)strlen(s) : 0, 0);
}

void db_param_u64(struct db_params *p, uint64_t v)
{
	if (p->n < DB_MAX_PARAMS)
		snprintf(p->text[p->n], sizeof(p->text[0]), "%" PRIu64, v);
	add_param(p, p->n < DB_MAX_PARAMS ? p->text[p->n] : NULL, 0, 0);
}

void db_param_i64(struct db_params *p, int64_t v)
{
	if (p->n < DB_MAX_PARAMS)
		snprintf(p->text[p->n], sizeof(p->text[0]), "%" PRId64, v);
	add_param(p, p->n < DB_MAX_PARAMS ? p->text[p->n] : NULL, 0, 0);
}

static int column(const PGresult *res, const char *col)
{
	int c = PQfnumber(res, col);
	if (c < 0)
		log_err("db: result has no column '%s'", col);
	return c;
}

bool db_is_null(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	return c < 0 || PQgetisnull(res, row, c);
}

uint8_t *db_get_blob(const PGresult *res, int row, const char *col, size_t *len)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return NULL;
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, c), &n);
	if (!raw)
		return NULL;
	uint8_t *out = malloc(n ? n : 1);
	if (out && n)
		memcpy(out, raw, n);
	PQfreemem(raw);
	*len = n;
	return out;
}

bool db_get_bytes(const PGresult *res, int row, const char *col, uint8_t *out, size_t len)
{
	size_t n = 0;
	uint8_t *blob = db_get_blob(res, row, col, &n);
	bool ok = blob && n == len;
	if (ok)
		memcpy(out, blob, len);
	free(blob);
	return ok;
}

int64_t db_get_i64(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return 0;
	return strtoll(PQgetvalue(res, row, c), NULL, 10);
}

bool db_get_bool(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	return c >= 0 && !PQgetisnull(res, row, c) && PQgetvalue(res, row, c)[0] == 't';
}

const char *db_get_text(const PGresult *res, int row, const char *col)
{
	int c = column(res, col);
	if (c < 0 || PQgetisnull(res, row, c))
		return NULL;
	return PQgetvalue(res, row, c);
}
