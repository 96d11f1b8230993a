/* The gateway's price list (docs/gateway.md): "METHOD PATH PRICE" entries separated by ';'.
 * METHOD is an HTTP method or '*' (any); PATH is exact, or a prefix when it ends in '*';
 * PRICE is in the merchant's currency's minor units (0: forwarded without payment). The first
 * entry that matches a request's method and path (its query left out) prices it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_ROUTES_MAX	  256
#define GW_ROUTE_PATH_MAX 1024

struct gw_route {
	char method[16]; /* "*": any */
	char *path;	 /* without the trailing '*' of a prefix */
	bool prefix;
	uint64_t price;
};

struct gw_routes {
	struct gw_route *r;
	size_t n;
};

/* Parse spec into out (emptied first); false with the offending entry in err. */
bool gw_routes_parse(const char *spec, struct gw_routes *out, char *err, size_t errlen);
/* The route pricing method + path (path without its query), or NULL. */
const struct gw_route *gw_routes_match(const struct gw_routes *rs, const char *method,
				       const char *path);
void gw_routes_free(struct gw_routes *rs);
