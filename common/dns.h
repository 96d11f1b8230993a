/* The asynchronous resolver (libevent's evdns) that outgoing connections use, so that a host
 * name is never resolved blocking on the event loop. Numeric addresses and names in the hosts
 * file are answered at once; anything else is a DNS query on the loop. */
#pragma once

struct event_base;
struct evdns_base;

/* A resolver configured from resolv_conf (NULL: /etc/resolv.conf) and the hosts file. A file
 * that cannot be read or lists no nameserver is logged and the defaults are used; NULL only
 * when out of memory. */
struct evdns_base *mp_dns_new(struct event_base *base, const char *resolv_conf);
/* Close every connection that may still be resolving before this. */
void mp_dns_free(struct evdns_base *dns);
