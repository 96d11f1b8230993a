#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MP_TLS_KEY_MAX (64 * 1024) /* bytes of a PEM private key file, at most */

const char *mp_tls_errors(char *buf, size_t len)
{
	buf[0] = '\0';
	unsigned long e;
	size_t used = 0;
	while ((e = ERR_get_error()) != 0 && used + 2 < len) {
		if (used)
			buf[used++] = ';';
		ERR_error_string_n(e, buf + used, len - used);
		used = strlen(buf);
	}
	if (!buf[0])
		snprintf(buf, len, "no OpenSSL error recorded");
	return buf;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx) {
		char e[256];
		snprintf(err, errlen, "SSL_CTX_new: %s", mp_tls_errors(e, sizeof(e)));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		char e[256];
		snprintf(err, errlen, "cannot restrict TLS to version 1.3: %s",
			 mp_tls_errors(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

/* The PEM private key at path, read with read(2) into a buffer wiped after parsing: OpenSSL's
 * own file BIO reads through stdio, whose buffer is freed with the key's text still in it. */
static EVP_PKEY *read_private_key(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *pem = OPENSSL_malloc(MP_TLS_KEY_MAX);
	size_t len = 0;
	ssize_t n = 1;
	while (pem && len < MP_TLS_KEY_MAX && (n = read(fd, pem + len, MP_TLS_KEY_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	EVP_PKEY *pkey = NULL;
	BIO *bio = pem && n >= 0 && len < MP_TLS_KEY_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
	if (bio)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	OPENSSL_clear_free(pem, MP_TLS_KEY_MAX);
	if (!pkey) {
		char e[256];
		snprintf(err, errlen, "%s: cannot read a PEM private key (at most %d bytes): %s",
			 path, MP_TLS_KEY_MAX, mp_tls_errors(e, sizeof(e)));
	}
	return pkey;
}

static bool load_identity(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
	char e[256];
	if (!mp_file_is_private(key, err, errlen))
		return false;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: cannot load certificate: %s", cert,
			 mp_tls_errors(e, sizeof(e)));
		return false;
	}
	EVP_PKEY *pkey = read_private_key(key, err, errlen);
	if (!pkey)
		return false;
	bool ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	EVP_PKEY_free(pkey); /* the context holds its own reference */
	if (!ok)
		snprintf(err, errlen, "%s: cannot load private key matching %s: %s", key, cert,
			 mp_tls_errors(e, sizeof(e)));
	return ok;
}

static bool load_ca(SSL_CTX *ctx, const char *ca, char *err, size_t errlen)
{
	char e[256];
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		snprintf(err, errlen, "%s: cannot load CA certificate: %s", ca,
			 mp_tls_errors(e, sizeof(e)));
		return false;
	}
	return true;
}

SSL_CTX *mp_tls_server_ctx(const char *cert, const char *key, const char *ca,
			   enum mp_client_cert client_cert, char *err, size_t errlen)
{
	SSL_CTX *ctx = new_ctx(TLS_server_method(), err, errlen);
	if (!ctx)
		return NULL;
	if (!load_identity(ctx, cert, key, err, errlen) || !load_ca(ctx, ca, err, errlen)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Wallets must not be linkable across channels: no session resumption. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		char e[256];
		snprintf(err, errlen, "cannot turn session tickets off: %s",
			 mp_tls_errors(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	int mode = SSL_VERIFY_NONE;
	if (client_cert == MP_CLIENT_CERT_OPTIONAL)
		mode = SSL_VERIFY_PEER;
	else if (client_cert == MP_CLIENT_CERT_REQUIRED)
		mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	if (client_cert != MP_CLIENT_CERT_NONE) {
		/* The names of acceptable CAs sent to clients; the list is owned by ctx. */
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
		if (!names) {
			char e[256];
			snprintf(err, errlen, "%s: cannot read the CA names: %s", ca,
				 mp_tls_errors(e, sizeof(e)));
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	return ctx;
}

SSL_CTX *mp_tls_client_ctx(const char *ca, const char *cert, const char *key, char *err,
			   size_t errlen)
{
	SSL_CTX *ctx = new_ctx(TLS_client_method(), err, errlen);
	if (!ctx)
		return NULL;
	if (!load_ca(ctx, ca, err, errlen) ||
	    (cert && key && !load_identity(ctx, cert, key, err, errlen))) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

static bool cn_of(X509 *cert, char *out, size_t outlen)
{
	if (!cert)
		return false;
	X509_NAME *subject = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0)
		return false; /* none, or more than one CN: ambiguous */
	ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
	int len = ASN1_STRING_length(data);
	if (len <= 0 || (size_t)len >= outlen)
		return false;
	const unsigned char *bytes = ASN1_STRING_get0_data(data);
	if (memchr(bytes, '\0', (size_t)len))
		return false;
	memcpy(out, bytes, (size_t)len);
	out[len] = '\0';
	return true;
}

bool mp_tls_peer_cn(SSL *ssl, char *out, size_t outlen)
{
	if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK)
		return false;
	return cn_of(SSL_get0_peer_certificate(ssl), out, outlen);
}

bool mp_tls_own_cn(SSL_CTX *ctx, char *out, size_t outlen)
{
	return cn_of(SSL_CTX_get0_certificate(ctx), out, outlen);
}

bool mp_tls_peer_merchant_id(SSL *ssl, uint8_t mid[MP_ID_LEN])
{
	char cn[64];
	if (!mp_tls_peer_cn(ssl, cn, sizeof(cn)) || strncmp(cn, "m-", 2) != 0 ||
	    strlen(cn) != 2 + MP_HEX_ID_LEN)
		return false;
	for (const char *p = cn + 2; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false; /* lowercase hex only */
	return mp_hex_decode(cn + 2, mid, MP_ID_LEN);
}

bool mp_tls_peer_is_merchant(SSL *ssl, const uint8_t mid[MP_ID_LEN])
{
	uint8_t peer[MP_ID_LEN];
	return mp_tls_peer_merchant_id(ssl, peer) && memcmp(peer, mid, MP_ID_LEN) == 0;
}

bool mp_tls_peer_is_broker(SSL *ssl)
{
	char cn[64];
	return mp_tls_peer_cn(ssl, cn, sizeof(cn)) && strcmp(cn, "broker") == 0;
}

double mp_tls_cert_not_after(const void *arg)
{
	SSL_CTX *const *ctx = arg;
	X509 *cert = ctx && *ctx ? SSL_CTX_get0_certificate(*ctx) : NULL;
	const ASN1_TIME *not_after = cert ? X509_get0_notAfter(cert) : NULL;
	struct tm tm;
	if (!not_after || ASN1_TIME_to_tm(not_after, &tm) != 1)
		return 0;
	return (double)timegm(&tm);
}
