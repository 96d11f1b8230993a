/* The gateway's headers (gateway_header.h): base64 (common/b64.c) of JSON (jansson). */
#include "gateway_header.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

char *gw_header_value(json_t *obj)
{
	char *json = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(obj);
	char *out = json ? mp_b64_encode((const uint8_t *)json, strlen(json)) : NULL;
	free(json);
	return out;
}

/* The JSON object in a base64 value of at most max characters, or NULL. */
static json_t *decode_value(const char *value, size_t max)
{
	size_t len = 0;
	uint8_t *raw = strlen(value) <= max ? mp_b64_decode(value, max, &len) : NULL;
	json_t *obj = raw ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	free(raw);
	if (obj && !json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}

static bool hex_field(json_t *obj, const char *key, uint8_t *out, size_t len)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s && strlen(s) == 2 * len && mp_hex_decode(s, out, len);
}

static bool u32_field(json_t *obj, const char *key, uint32_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX)
		return false;
	*out = (uint32_t)json_integer_value(v);
	return true;
}

/* An absent key is false. */
static bool optional_bool(json_t *obj, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);
	*out = json_is_true(v);
	return !v || json_is_boolean(v);
}

static bool u64_field(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

bool gw_payment_parse(const char *value, struct gw_payment *p, const char **why)
{
	json_t *obj = decode_value(value, GW_HEADER_MAX);
	if (!obj) {
		*why = "X-Payment is not base64 of a JSON object";
		return false;
	}
	const char *scheme = json_string_value(json_object_get(obj, "scheme"));
	bool ok = false;
	if (!scheme || strcmp(scheme, GW_SCHEME) != 0)
		*why = "X-Payment: scheme is not " GW_SCHEME;
	else if (!hex_field(obj, "channel", p->channel_id, MP_ID_LEN))
		*why = "X-Payment: channel is not 32 hex digits";
	else if (!u32_field(obj, "seg", &p->seg_seq) || !u32_field(obj, "j", &p->j))
		*why = "X-Payment: seg and j must be integers 0 .. 2^32-1";
	else if (!hex_field(obj, "w", p->w, sizeof(p->w)))
		*why = "X-Payment: w is not 64 hex digits";
	else if (!hex_field(obj, "ref", p->ref, GW_REF_LEN))
		*why = "X-Payment: ref is not 64 hex digits";
	else if (!optional_bool(obj, "receipt", &p->receipt))
		*why = "X-Payment: receipt must be true or false";
	else if ((p->has_price = json_object_get(obj, "price") != NULL) &&
		 !u64_field(obj, "price", &p->price))
		*why = "X-Payment: price must be an integer >= 0";
	else
		ok = true;
	json_decref(obj);
	return ok;
}

static bool string_field(json_t *obj, const char *key, char *out, size_t cap)
{
	const char *s = json_string_value(json_object_get(obj, key));
	if (!s || !*s || strlen(s) >= cap)
		return false;
	memcpy(out, s, strlen(s) + 1);
	return true;
}

/* The object of value if its scheme is ours; NULL with *why. */
static json_t *scheme_object(const char *value, size_t max, const char **why)
{
	json_t *obj = decode_value(value, max);
	const char *scheme = obj ? json_string_value(json_object_get(obj, "scheme")) : NULL;
	if (scheme && strcmp(scheme, GW_SCHEME) == 0)
		return obj;
	*why = obj ? "the scheme is not " GW_SCHEME : "not base64 of a JSON object";
	json_decref(obj);
	return NULL;
}

bool gw_requirements_parse(const char *value, struct gw_requirements *r, const char **why)
{
	json_t *obj = scheme_object(value, GW_HEADER_MAX, why);
	if (!obj)
		return false;
	bool ok = hex_field(obj, "merchant", r->merchant, MP_ID_LEN) &&
		  hex_field(obj, "broker_key", r->broker_key, sizeof(r->broker_key)) &&
		  u64_field(obj, "price", &r->price) &&
		  string_field(obj, "currency", r->currency, sizeof(r->currency)) &&
		  string_field(obj, "endpoint", r->endpoint, sizeof(r->endpoint));
	if (!ok)
		*why = "merchant, broker_key, price, currency or endpoint missing or malformed";
	json_decref(obj);
	return ok;
}

/* An optional base64 statement: absent (true, nothing set), or decoded into *out. */
static bool optional_blob(json_t *obj, const char *key, uint8_t **out, size_t *len)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return true;
	const char *s = json_string_value(v);
	*out = s ? mp_b64_decode(s, GW_RESPONSE_MAX, len) : NULL;
	return *out != NULL;
}

bool gw_response_parse(const char *value, struct gw_response *r, const char **why)
{
	*r = (struct gw_response){0};
	json_t *obj = scheme_object(value, GW_RESPONSE_MAX, why);
	if (!obj)
		return false;
	json_t *charged = json_object_get(obj, "charged");
	const char *receipt_error = json_string_value(json_object_get(obj, "receipt_error"));
	bool ok = hex_field(obj, "channel", r->channel_id, MP_ID_LEN) &&
		  u32_field(obj, "seg", &r->seg_seq) && u32_field(obj, "j", &r->j) &&
		  u64_field(obj, "credit", &r->credit) && u64_field(obj, "price", &r->price) &&
		  json_is_boolean(charged);
	if (ok)
		r->charged = json_is_true(charged);
	else
		*why = "channel, seg, j, credit, price or charged missing or malformed";
	if (ok && receipt_error)
		snprintf(r->receipt_error, sizeof(r->receipt_error), "%s", receipt_error);
	/* the receipt is optional: a bad one is said, the charge stands */
	if (ok &&
	    (!optional_blob(obj, "receipt", &r->receipt, &r->receipt_len) ||
	     !optional_blob(obj, "merchant_cert", &r->merchant_cert, &r->merchant_cert_len))) {
		gw_response_clear(r);
		snprintf(r->receipt_error, sizeof(r->receipt_error),
			 "the answer's receipt or merchant_cert is not base64");
	}
	json_decref(obj);
	if (!ok)
		gw_response_clear(r);
	return ok;
}

void gw_response_clear(struct gw_response *r)
{
	free(r->receipt);
	free(r->merchant_cert);
	r->receipt = r->merchant_cert = NULL;
	r->receipt_len = r->merchant_cert_len = 0;
}

char *gw_payment_encode(const struct gw_payment *p)
{
	char channel[2 * MP_ID_LEN + 1], w[65], ref[2 * GW_REF_LEN + 1];
	mp_hex_encode(p->channel_id, MP_ID_LEN, channel);
	mp_hex_encode(p->w, sizeof(p->w), w);
	mp_hex_encode(p->ref, GW_REF_LEN, ref);
	json_t *obj =
	    json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "scheme", GW_SCHEME, "channel", channel,
		      "seg", (json_int_t)p->seg_seq, "j", (json_int_t)p->j, "w", w, "ref", ref);
	if (obj && p->receipt)
		json_object_set_new(obj, "receipt", json_true());
	if (obj && p->has_price)
		json_object_set_new(obj, "price", json_integer((json_int_t)p->price));
	return gw_header_value(obj);
}

bool gw_request_ref(const char *method, const char *uri, const void *body, size_t len,
		    uint8_t out[GW_REF_LEN])
{
	uint8_t body_hash[32];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_Digest(body, len, body_hash, NULL, EVP_sha256(), NULL) &&
		  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
		  EVP_DigestUpdate(ctx, "mpay1-http", sizeof("mpay1-http")) &&
		  EVP_DigestUpdate(ctx, method, strlen(method) + 1) &&
		  EVP_DigestUpdate(ctx, uri, strlen(uri) + 1) &&
		  EVP_DigestUpdate(ctx, body_hash, sizeof(body_hash)) &&
		  EVP_DigestFinal_ex(ctx, out, &n) && n == GW_REF_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}
