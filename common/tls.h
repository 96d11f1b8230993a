/* TLS 1.3-only contexts with CA verification; peer identities by certificate CN
 * (protocol.md section 3: "m-" + merchant_id in 32 lowercase hex digits, or "broker"). */
#pragma once
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum mp_client_cert { MP_CLIENT_CERT_NONE, MP_CLIENT_CERT_OPTIONAL, MP_CLIENT_CERT_REQUIRED };

/* Server context: our certificate chain and key; peers verified against ca when they present a
 * certificate (or must present one). NULL with a message in err on failure. */
SSL_CTX *mp_tls_server_ctx(const char *cert, const char *key, const char *ca,
			   enum mp_client_cert client_cert, char *err, size_t errlen);
/* Client context: the server must present a certificate from ca; cert/key optional (mutual). */
SSL_CTX *mp_tls_client_ctx(const char *ca, const char *cert, const char *key, char *err,
			   size_t errlen);

/* The peer's verified certificate subject CN; false if none or not verified. */
bool mp_tls_peer_cn(SSL *ssl, char *out, size_t outlen);
/* The CN of our own certificate in ctx. */
bool mp_tls_own_cn(SSL_CTX *ctx, char *out, size_t outlen);
/* The verified peer certificate belongs to merchant mid (CN "m-<hex>"). */
bool mp_tls_peer_is_merchant(SSL *ssl, const uint8_t mid[MP_ID_LEN]);
/* The verified peer certificate's merchant id, if it names a merchant. */
bool mp_tls_peer_merchant_id(SSL *ssl, uint8_t mid[MP_ID_LEN]);
bool mp_tls_peer_is_broker(SSL *ssl);

/* Render the OpenSSL error queue into buf (and clear it). */
const char *mp_tls_errors(char *buf, size_t len);

/* For a metrics gauge (metrics.h, mp_metrics_fn): the notAfter time (Unix seconds) of the
 * certificate in the SSL_CTX that arg points to (an SSL_CTX *const *, so that a context
 * replaced at reload is followed); 0 when there is none. */
double mp_tls_cert_not_after(const void *arg);
