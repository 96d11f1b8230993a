#include "dns.h"

#include <event2/dns.h>
#include <event2/event.h>

#include "log.h"

struct evdns_base *mp_dns_new(struct event_base *base, const char *resolv_conf)
{
	const char *path = resolv_conf ? resolv_conf : "/etc/resolv.conf";
	struct evdns_base *dns = evdns_base_new(base, 0);
	if (!dns) {
		log_err("resolver: cannot create the asynchronous resolver");
		return NULL;
	}
	/* 0: read; 1-5: the file could not be read; 6: no nameserver in it. The hosts file is
	 * loaded in every case, and libevent falls back to a nameserver on 127.0.0.1. */
	int rc = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, path);
	if (rc != 0)
		log_warn("resolver: %s: %s; using the defaults (hosts file, nameserver 127.0.0.1)",
			 path, rc == 6 ? "no nameserver listed" : "cannot be read");
	return dns;
}

void mp_dns_free(struct evdns_base *dns)
{
	if (dns)
		evdns_base_free(dns, 0);
}
