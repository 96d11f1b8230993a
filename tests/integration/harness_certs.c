#include "harness_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <sys/stat.h>

static bool write_key(EVP_PKEY *key, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok =
	    chmod(path, 0600) == 0 && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
	return fclose(f) == 0 && ok;
}

static bool write_cert(X509 *x, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = PEM_write_X509(f, x) == 1;
	return fclose(f) == 0 && ok;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	bool ok = ext && X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok;
}

/* A certificate for key named cn, valid [now + from_s, now + to_s], issued by issuer (NULL:
 * itself) and signed with issuer_key. */
static X509 *make(EVP_PKEY *key, const char *cn, long from_s, long to_s, X509 *issuer,
		  EVP_PKEY *issuer_key, bool ca)
{
	X509 *x = X509_new();
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	bool ok = x && X509_set_version(x, 2) == 1 && RAND_bytes(serial, sizeof(serial)) == 1;
	serial[0] &= 0x7f;
	ok = ok && (bn = BN_bin2bn(serial, sizeof(serial), NULL)) != NULL &&
	     BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	X509_NAME *name = X509_get_subject_name(x);
	ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)cn, -1, -1,
					      0) == 1;
	ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1 &&
	     X509_gmtime_adj(X509_getm_notBefore(x), from_s) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), to_s) && X509_set_pubkey(x, key) == 1;
	if (ca)
		ok = ok &&
		     add_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE") &&
		     add_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	else
		ok = ok && add_ext(x, issuer, NID_basic_constraints, "CA:FALSE") &&
		     add_ext(x, issuer, NID_key_usage, "digitalSignature") &&
		     add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") &&
		     add_ext(x, issuer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
	ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	return x;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	return k;
}

bool cert_mint_ca(const char *cn, const char *crt_path, const char *key_path)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = key ? make(key, cn, 0, 365L * 86400, NULL, key, true) : NULL;
	bool ok = x && write_key(key, key_path) && write_cert(x, crt_path);
	X509_free(x);
	EVP_PKEY_free(key);
	return ok;
}

bool cert_mint(const char *ca_crt, const char *ca_key, const char *cn, long from_s, long to_s,
	       const char *crt_path, const char *key_path)
{
	X509 *ca = read_cert(ca_crt);
	EVP_PKEY *cakey = read_key(ca_key);
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = ca && cakey && key ? make(key, cn, from_s, to_s, ca, cakey, false) : NULL;
	bool ok = x && write_key(key, key_path) && write_cert(x, crt_path);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return ok;
}
