/* Warnings ahead of a daemon's own TLS certificate expiring. A certificate past its notAfter is
 * refused by every peer (OpenSSL checks validity against the wall clock, so this does too, not
 * the protocol clock of --test-clock). Checked at start, after every reload and once a day:
 *
 *   notAfter passed            -> log_err  "... expired at T; peers refuse it: renew it and reload"
 *   within warn_days of it     -> log_warn "... expires in N days (at T): renew it and reload"
 *   otherwise                  -> log_debug
 *
 * warn_days 0 turns the warnings off. The expiry time is also a metric
 * (micropay_<daemon>_tls_cert_expiry_time, docs/metrics.md). */
#pragma once
#include <openssl/ssl.h>

struct event_base;
struct mp_cert_expiry;

/* Watch the certificate of *ctx (followed through the pointer, so a context replaced at reload
 * is seen); what names it in logs ("brokerd TLS certificate"). Checks once now. NULL (logged)
 * if the daily timer cannot be made. */
struct mp_cert_expiry *mp_cert_expiry_new(struct event_base *base, const char *what,
					  SSL_CTX *const *ctx, unsigned warn_days);
/* Check now (after a reload). */
void mp_cert_expiry_check(struct mp_cert_expiry *w);
void mp_cert_expiry_free(struct mp_cert_expiry *w);
