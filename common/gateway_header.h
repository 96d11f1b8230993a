/* The HTTP 402 gateway's headers (docs/gateway.md), shared by merchantd (which verifies them)
 * and walletd (which pays with them), each base64 of a JSON object:
 *   Payment-Required (402 answers): what a request costs and where to open a channel;
 *   X-Payment (requests): channel, segment, index, payword and the request's reference, and
 *     whether a Receipt is wanted;
 *   X-Payment-Response (paid answers): the index accepted, the credit left, charged or not,
 *     and when asked for, the Receipt and the MerchantCert (base64 of their Signed bytes) or
 *     why there is none.
 * The reference binds a payment to one request: SHA-256 of "mpay1-http", the method, the
 * URI as sent (path and query) and SHA-256 of the body, NUL-separated. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define GW_SCHEME	   "mpay1"
#define GW_HEADER_REQUIRED "Payment-Required"
#define GW_HEADER_PAYMENT  "X-Payment"
#define GW_HEADER_RESPONSE "X-Payment-Response"
#define GW_HEADER_ERROR	   "X-Payment-Error"
#define GW_REF_LEN	   32
#define GW_HEADER_MAX	   2048 /* longest X-Payment and Payment-Required accepted */
#define GW_RESPONSE_MAX	   8192 /* longest X-Payment-Response accepted (it may carry a receipt) */

struct gw_payment {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, j;
	uint8_t w[32];
	uint8_t ref[GW_REF_LEN];
	bool receipt; /* a Receipt wanted in the answer */
	bool has_price;
	uint64_t price; /* has_price: the most this payment agreed to (the 402's price) */
};

/* A Payment-Required value, as a paying client reads it. */
struct gw_requirements {
	uint8_t merchant[MP_ID_LEN];
	uint8_t broker_key[8]; /* the broker's key id (MP_KEY_ID_LEN) */
	uint64_t price;
	char currency[4];
	char endpoint[256]; /* host:port of the merchant's wallet-facing (TLS) port */
};

/* An X-Payment-Response value. */
struct gw_response {
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, j;
	uint64_t credit, price;
	bool charged;
	uint8_t *receipt, *merchant_cert; /* Signed bytes (malloc'd), when sent */
	size_t receipt_len, merchant_cert_len;
	char receipt_error[200]; /* why a receipt asked for is not there, or "" */
};

bool gw_requirements_parse(const char *value, struct gw_requirements *r, const char **why);
/* *r filled (gw_response_clear frees its statements), or false with *why and nothing held. */
bool gw_response_parse(const char *value, struct gw_response *r, const char **why);
void gw_response_clear(struct gw_response *r);
/* Decode an X-Payment value; false with *why set. */
bool gw_payment_parse(const char *value, struct gw_payment *p, const char **why);
/* The reference of method + uri + body. False only if the digest failed. */
bool gw_request_ref(const char *method, const char *uri, const void *body, size_t len,
		    uint8_t out[GW_REF_LEN]);
/* base64 of obj's compact JSON (malloc'd), NULL when out of memory; obj is released. */
char *gw_header_value(json_t *obj);
/* An X-Payment value for p (tests and clients; malloc'd). */
char *gw_payment_encode(const struct gw_payment *p);
