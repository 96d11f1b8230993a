#include "sig_token.h"

#include <openssl/crypto.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define PIN_MAX 256

struct mp_token_key {
	CK_FUNCTION_LIST *module;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE private_key;
	bool session_open;
	bool logged_in;
	pthread_mutex_t lock; /* one session: one operation at a time */
};

bool mp_token_uri(const char *name)
{
	return name && strncmp(name, MP_TOKEN_URI_PREFIX, strlen(MP_TOKEN_URI_PREFIX)) == 0;
}

static bool token_failed(char *err, size_t errlen, const char *what, CK_RV rv)
{
	snprintf(err, errlen, "PKCS#11 token: %s: %s (CKR 0x%lx)", what, p11_kit_strerror(rv),
		 (unsigned long)rv);
	return false;
}

/* The PIN from the URI's pin-source (a private file); pin-value is refused. */
static bool read_pin(P11KitUri *uri, char pin[PIN_MAX], char *err, size_t errlen)
{
	if (p11_kit_uri_get_pin_value(uri)) {
		snprintf(err, errlen,
			 "PKCS#11 URI: pin-value is refused (a URI is logged and "
			 "visible to other processes); put the PIN in a file named by "
			 "pin-source");
		return false;
	}
	const char *source = p11_kit_uri_get_pin_source(uri);
	if (!source) {
		snprintf(err, errlen,
			 "PKCS#11 URI: pin-source (a file holding the user PIN) is "
			 "required");
		return false;
	}
	if (strncmp(source, "file:", 5) == 0)
		source += 5;
	ssize_t got = mp_read_secret_line(source, pin, PIN_MAX, err, errlen);
	if (got < 0)
		return false;
	if (got == 0)
		snprintf(err, errlen, "PKCS#11 PIN file %s: empty", source);
	return got > 0;
}

/* The one slot whose token matches the URI's token attributes. */
static bool find_slot(CK_FUNCTION_LIST *m, P11KitUri *uri, CK_SLOT_ID *slot, char *err,
		      size_t errlen)
{
	CK_SLOT_ID slots[64];
	CK_ULONG count = 64;
	CK_RV rv = m->C_GetSlotList(CK_TRUE, slots, &count);
	if (rv != CKR_OK)
		return token_failed(err, errlen, "listing slots", rv);
	int found = 0;
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (m->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    p11_kit_uri_match_token_info(uri, &info) == 1) {
			*slot = slots[i];
			found++;
		}
	}
	if (found != 1)
		snprintf(err, errlen,
			 "PKCS#11 token: %s token matches the URI (of %lu slots with a token)",
			 found == 0 ? "no" : "more than one", (unsigned long)count);
	return found == 1;
}

/* The one object of class `cls` with the URI's label and id; false with a message otherwise. */
static bool find_object(struct mp_token_key *k, P11KitUri *uri, CK_OBJECT_CLASS cls,
			CK_OBJECT_HANDLE *out, char *err, size_t errlen)
{
	CK_KEY_TYPE type = CKK_EC_EDWARDS;
	CK_ATTRIBUTE tmpl[4] = {{CKA_CLASS, &cls, sizeof(cls)},
				{CKA_KEY_TYPE, &type, sizeof(type)}};
	CK_ULONG n = 2;
	CK_ATTRIBUTE_TYPE named[] = {CKA_LABEL, CKA_ID};
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		CK_ATTRIBUTE_PTR a = p11_kit_uri_get_attribute(uri, named[i]);
		if (a)
			tmpl[n++] = *a;
	}
	if (n == 2) {
		snprintf(err, errlen, "PKCS#11 URI: name the key with object= or id=");
		return false;
	}
	CK_OBJECT_HANDLE found[2];
	CK_ULONG count = 0;
	CK_RV rv = k->module->C_FindObjectsInit(k->session, tmpl, n);
	if (rv != CKR_OK)
		return token_failed(err, errlen, "searching keys", rv);
	rv = k->module->C_FindObjects(k->session, found, 2, &count);
	k->module->C_FindObjectsFinal(k->session);
	if (rv != CKR_OK)
		return token_failed(err, errlen, "searching keys", rv);
	if (count != 1) {
		snprintf(err, errlen, "PKCS#11 token: %s Ed25519 %s key matches the URI",
			 count == 0 ? "no" : "more than one",
			 cls == CKO_PRIVATE_KEY ? "private" : "public");
		return false;
	}
	*out = found[0];
	return true;
}

/* CKA_EC_POINT of the public key: 32 raw bytes, or the DER OCTET STRING 04 20 || 32 bytes. */
static bool read_public_key(struct mp_token_key *k, CK_OBJECT_HANDLE pub, uint8_t pk[MP_PK_LEN],
			    char *err, size_t errlen)
{
	uint8_t point[MP_PK_LEN + 2];
	CK_ATTRIBUTE a = {CKA_EC_POINT, point, sizeof(point)};
	CK_RV rv = k->module->C_GetAttributeValue(k->session, pub, &a, 1);
	if (rv != CKR_OK)
		return token_failed(err, errlen, "reading the public key", rv);
	if (a.ulValueLen == MP_PK_LEN + 2 && point[0] == 0x04 && point[1] == MP_PK_LEN) {
		memcpy(pk, point + 2, MP_PK_LEN);
	} else if (a.ulValueLen == MP_PK_LEN) {
		memcpy(pk, point, MP_PK_LEN);
	} else {
		snprintf(err, errlen,
			 "PKCS#11 token: the public key is not an Ed25519 point (%lu "
			 "bytes)",
			 (unsigned long)a.ulValueLen);
		return false;
	}
	return true;
}

static bool open_session(struct mp_token_key *k, P11KitUri *uri, char *err, size_t errlen)
{
	CK_SLOT_ID slot;
	if (!find_slot(k->module, uri, &slot, err, errlen))
		return false;
	CK_RV rv = k->module->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &k->session);
	if (rv != CKR_OK)
		return token_failed(err, errlen, "opening a session", rv);
	k->session_open = true;
	char pin[PIN_MAX];
	if (!read_pin(uri, pin, err, errlen))
		return false;
	rv = k->module->C_Login(k->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	OPENSSL_cleanse(pin, sizeof(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
		return token_failed(err, errlen, "logging in with the PIN", rv);
	k->logged_in = rv == CKR_OK;
	return true;
}

static bool open_key(struct mp_token_key *k, P11KitUri *uri, uint8_t pk[MP_PK_LEN], char *err,
		     size_t errlen)
{
	const char *path = p11_kit_uri_get_module_path(uri);
	if (!path) {
		snprintf(err, errlen,
			 "PKCS#11 URI: module-path (the token's PKCS#11 library) is "
			 "required");
		return false;
	}
	k->module = p11_kit_module_load(path, 0);
	if (!k->module) {
		snprintf(err, errlen, "PKCS#11 module %s: %s", path, p11_kit_message());
		return false;
	}
	CK_RV rv = p11_kit_module_initialize(k->module);
	if (rv != CKR_OK) {
		p11_kit_module_release(k->module);
		k->module = NULL;
		return token_failed(err, errlen, "initialising the module", rv);
	}
	CK_OBJECT_HANDLE pub;
	return open_session(k, uri, err, errlen) &&
	       find_object(k, uri, CKO_PRIVATE_KEY, &k->private_key, err, errlen) &&
	       find_object(k, uri, CKO_PUBLIC_KEY, &pub, err, errlen) &&
	       read_public_key(k, pub, pk, err, errlen);
}

/* A key whose token signature does not verify under its public key is refused at start. */
static bool probe_signature(struct mp_token_key *k, const uint8_t pk[MP_PK_LEN], char *err,
			    size_t errlen)
{
	static const uint8_t probe[] = "micropay PKCS#11 key probe";
	uint8_t sig[MP_SIG_LEN];
	if (!mp_token_sign(k, probe, sizeof(probe), sig)) {
		snprintf(err, errlen, "PKCS#11 token: signing with CKM_EDDSA failed");
		return false;
	}
	if (!mp_verify(pk, probe, sizeof(probe), sig)) {
		snprintf(err, errlen,
			 "PKCS#11 token: the private key's signature does not verify "
			 "under the public key of that label/id (a mismatched pair)");
		return false;
	}
	return true;
}

struct mp_token_key *mp_token_key_open(const char *uri_text, uint8_t pk[MP_PK_LEN], char *err,
				       size_t errlen)
{
	P11KitUri *uri = p11_kit_uri_new();
	int parsed =
	    uri ? p11_kit_uri_parse(uri_text, P11_KIT_URI_FOR_ANY, uri) : P11_KIT_URI_NO_MEMORY;
	if (parsed != P11_KIT_URI_OK) {
		snprintf(err, errlen, "PKCS#11 URI: %s", p11_kit_uri_message(parsed));
		p11_kit_uri_free(uri);
		return NULL;
	}
	struct mp_token_key *k = calloc(1, sizeof(*k));
	bool ok = k && pthread_mutex_init(&k->lock, NULL) == 0;
	if (!ok) {
		snprintf(err, errlen, "PKCS#11 token: out of memory");
		free(k);
		p11_kit_uri_free(uri);
		return NULL;
	}
	ok = open_key(k, uri, pk, err, errlen) && probe_signature(k, pk, err, errlen);
	p11_kit_uri_free(uri);
	if (!ok) {
		mp_token_key_close(k);
		return NULL;
	}
	return k;
}

bool mp_token_sign(struct mp_token_key *k, const uint8_t *msg, size_t len, uint8_t sig[MP_SIG_LEN])
{
	CK_MECHANISM eddsa = {CKM_EDDSA, NULL, 0};
	CK_ULONG siglen = MP_SIG_LEN;
	pthread_mutex_lock(&k->lock);
	CK_RV rv = k->module->C_SignInit(k->session, &eddsa, k->private_key);
	if (rv == CKR_OK)
		rv = k->module->C_Sign(k->session, (CK_BYTE_PTR)msg, len, sig, &siglen);
	pthread_mutex_unlock(&k->lock);
	if (rv != CKR_OK || siglen != MP_SIG_LEN) {
		log_err(
		    "PKCS#11 token: signing %zu bytes failed: %s (CKR 0x%lx, %lu-byte signature)",
		    len, p11_kit_strerror(rv), (unsigned long)rv, (unsigned long)siglen);
		return false;
	}
	return true;
}

void mp_token_key_close(struct mp_token_key *k)
{
	if (!k)
		return;
	if (k->module) {
		if (k->logged_in)
			k->module->C_Logout(k->session);
		if (k->session_open)
			k->module->C_CloseSession(k->session);
		p11_kit_module_finalize(k->module);
		p11_kit_module_release(k->module);
	}
	pthread_mutex_destroy(&k->lock);
	free(k);
}
