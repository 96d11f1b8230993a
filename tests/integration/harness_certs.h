/* X.509 certificates a deployment's CA would never issue, for TLS tests: one already expired,
 * one not yet valid, one from another CA (as deploy/gen-certs makes them otherwise: P-256 keys,
 * CN only, SHA-256). Written as PEM files (keys 0600). */
#pragma once
#include <stdbool.h>

/* A self-signed CA certificate and key (another deployment's), valid for a year. */
bool cert_mint_ca(const char *cn, const char *crt_path, const char *key_path);
/* A certificate for cn with a fresh key, signed by the CA in ca_crt/ca_key, valid from
 * now + from_s to now + to_s (seconds, negative for the past). */
bool cert_mint(const char *ca_crt, const char *ca_key, const char *cn, long from_s, long to_s,
	       const char *crt_path, const char *key_path);
