#include "harness_db.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write sql to a file, run psql on it, return its output (malloc'd); NULL if psql failed,
 * with the output in err. */
static char *run_psql(const struct net *n, const char *sql, char *err, size_t errlen)
{
	char in[700], out[700], cmd[2400];
	snprintf(in, sizeof(in), "%s/harness-sql-in-%d", n->dir, (int)getpid());
	snprintf(out, sizeof(out), "%s/harness-sql-out-%d", n->dir, (int)getpid());
	FILE *f = fopen(in, "w");
	ck_assert_msg(f != NULL, "cannot write %s", in);
	ck_assert(fputs(sql, f) >= 0 && fclose(f) == 0);
	snprintf(cmd, sizeof(cmd),
		 "psql 'host=%s/pg user=micropay dbname=postgres' -X -q -t -A -1 "
		 "-v ON_ERROR_STOP=1 -f '%s' >'%s' 2>&1",
		 n->dir, in, out);
	int rc = system(cmd);
	f = fopen(out, "r");
	ck_assert_msg(f != NULL, "no psql output in %s", out);
	char *text = calloc(1, 65536);
	ck_assert(text != NULL);
	size_t got = fread(text, 1, 65535, f);
	fclose(f);
	text[got] = '\0';
	unlink(in);
	unlink(out);
	if (rc != 0) {
		snprintf(err, errlen, "%s", text);
		free(text);
		return NULL;
	}
	return text;
}

static char *vrun(const struct net *n, const char *fmt, va_list ap)
{
	char *sql = NULL;
	ck_assert(vasprintf(&sql, fmt, ap) >= 0);
	char err[2048];
	char *out = run_psql(n, sql, err, sizeof(err));
	ck_assert_msg(out != NULL, "psql failed on\n%s\n%s", sql, err);
	free(sql);
	return out;
}

void sql_exec(const struct net *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(vrun(n, fmt, ap));
	va_end(ap);
}

char *sql_value(const struct net *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *out = vrun(n, fmt, ap);
	va_end(ap);
	out[strcspn(out, "|\n")] = '\0';
	return out;
}

const char *sql_bytea(const uint8_t *data, size_t len, char *out, size_t outlen)
{
	ck_assert(outlen >= 2 * len + 16);
	strcpy(out, "'\\x");
	mp_hex_encode(data, len, out + 3);
	strcat(out, "'::bytea");
	return out;
}
