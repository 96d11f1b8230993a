/* The gateway's price list (gateway_routes.h). */
#include "gateway_routes.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool method_valid(const char *m)
{
	static const char *const known[] = {"*",   "GET",    "HEAD",  "POST",
					    "PUT", "DELETE", "PATCH", "OPTIONS"};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return true;
	return false;
}

static bool price_parse(const char *s, uint64_t *out)
{
	if (!isdigit((unsigned char)s[0]))
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* One "METHOD PATH PRICE" entry (NUL-terminated, may be modified). */
static bool entry_parse(char *entry, struct gw_route *r, char *err, size_t errlen)
{
	char shown[80]; /* the entry as written, for the message (strtok_r cuts it) */
	snprintf(shown, sizeof(shown), "%s", entry);
	char *save = NULL;
	char *method = strtok_r(entry, " \t", &save);
	char *path = strtok_r(NULL, " \t", &save);
	char *price = strtok_r(NULL, " \t", &save);
	char *extra = strtok_r(NULL, " \t", &save);
	if (!method || !path || !price || extra) {
		snprintf(err, errlen, "route '%s': want METHOD PATH PRICE", shown);
		return false;
	}
	size_t len = strlen(path);
	if (!method_valid(method) || path[0] != '/' || len > GW_ROUTE_PATH_MAX ||
	    !price_parse(price, &r->price)) {
		snprintf(err, errlen,
			 "route '%s %s %s': METHOD is GET, HEAD, POST, PUT, DELETE, PATCH, "
			 "OPTIONS or *; PATH starts with /; PRICE is a whole number of minor units",
			 method, path, price);
		return false;
	}
	snprintf(r->method, sizeof(r->method), "%s", method);
	r->prefix = path[len - 1] == '*';
	r->path = strndup(path, r->prefix ? len - 1 : len);
	if (!r->path) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	return true;
}

bool gw_routes_parse(const char *spec, struct gw_routes *out, char *err, size_t errlen)
{
	gw_routes_free(out);
	char *copy = strdup(spec ? spec : "");
	out->r = calloc(GW_ROUTES_MAX, sizeof(*out->r));
	bool ok = copy && out->r;
	if (!ok)
		snprintf(err, errlen, "out of memory");
	char *save = NULL;
	for (char *e = ok ? strtok_r(copy, ";", &save) : NULL; ok && e;
	     e = strtok_r(NULL, ";", &save)) {
		while (isspace((unsigned char)*e))
			e++;
		if (!*e)
			continue;
		if (out->n == GW_ROUTES_MAX) {
			snprintf(err, errlen, "more than %d routes", GW_ROUTES_MAX);
			ok = false;
		} else if ((ok = entry_parse(e, &out->r[out->n], err, errlen)))
			out->n++;
	}
	free(copy);
	if (!ok)
		gw_routes_free(out);
	return ok;
}

const struct gw_route *gw_routes_match(const struct gw_routes *rs, const char *method,
				       const char *path)
{
	for (size_t i = 0; i < rs->n; i++) {
		const struct gw_route *r = &rs->r[i];
		if (strcmp(r->method, "*") != 0 && strcmp(r->method, method) != 0)
			continue;
		size_t len = strlen(r->path);
		if (r->prefix ? strncmp(path, r->path, len) == 0 : strcmp(path, r->path) == 0)
			return r;
	}
	return NULL;
}

void gw_routes_free(struct gw_routes *rs)
{
	for (size_t i = 0; rs->r && i < rs->n; i++)
		free(rs->r[i].path);
	free(rs->r);
	*rs = (struct gw_routes){0};
}
