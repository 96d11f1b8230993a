/* The gateway's headers (gateway_header.h): base64 (OpenSSL's EVP_EncodeBlock) of JSON
 * (jansson), the same two libraries the rest of the daemons use. */
#include "gateway_header.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *gw_header_value(json_t *obj)
{
	char *json = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(obj);
	if (!json)
		return NULL;
	size_t len = strlen(json);
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)json, (int)len);
	free(json);
	return out;
}

/* The JSON object in a base64 value, or NULL. */
static json_t *decode_value(const char *value)
{
	size_t len = strlen(value);
	if (len == 0 || len > GW_HEADER_MAX || len % 4)
		return NULL;
	unsigned char *raw = malloc(len / 4 * 3 + 1);
	if (!raw)
		return NULL;
	int n = EVP_DecodeBlock(raw, (const unsigned char *)value, (int)len);
	json_t *obj = NULL;
	if (n > 0) {
		/* EVP_DecodeBlock counts the padding's zero bytes: drop them */
		while (n > 0 && value[len - 1] == '=' && raw[n - 1] == 0) {
			n--;
			len--;
		}
		obj = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	}
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

bool gw_payment_parse(const char *value, struct gw_payment *p, const char **why)
{
	json_t *obj = decode_value(value);
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
	else
		ok = true;
	json_decref(obj);
	return ok;
}

static bool u64_field(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
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
static json_t *scheme_object(const char *value, const char **why)
{
	json_t *obj = decode_value(value);
	const char *scheme = obj ? json_string_value(json_object_get(obj, "scheme")) : NULL;
	if (scheme && strcmp(scheme, GW_SCHEME) == 0)
		return obj;
	*why = obj ? "the scheme is not " GW_SCHEME : "not base64 of a JSON object";
	json_decref(obj);
	return NULL;
}

bool gw_requirements_parse(const char *value, struct gw_requirements *r, const char **why)
{
	json_t *obj = scheme_object(value, why);
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

bool gw_response_parse(const char *value, struct gw_response *r, const char **why)
{
	json_t *obj = scheme_object(value, why);
	if (!obj)
		return false;
	json_t *charged = json_object_get(obj, "charged");
	bool ok = hex_field(obj, "channel", r->channel_id, MP_ID_LEN) &&
		  u32_field(obj, "seg", &r->seg_seq) && u32_field(obj, "j", &r->j) &&
		  u64_field(obj, "credit", &r->credit) && u64_field(obj, "price", &r->price) &&
		  json_is_boolean(charged);
	if (ok)
		r->charged = json_is_true(charged);
	else
		*why = "channel, seg, j, credit, price or charged missing or malformed";
	json_decref(obj);
	return ok;
}

char *gw_payment_encode(const struct gw_payment *p)
{
	char channel[2 * MP_ID_LEN + 1], w[65], ref[2 * GW_REF_LEN + 1];
	mp_hex_encode(p->channel_id, MP_ID_LEN, channel);
	mp_hex_encode(p->w, sizeof(p->w), w);
	mp_hex_encode(p->ref, GW_REF_LEN, ref);
	return gw_header_value(json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "scheme", GW_SCHEME,
					 "channel", channel, "seg", (json_int_t)p->seg_seq, "j",
					 (json_int_t)p->j, "w", w, "ref", ref));
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
