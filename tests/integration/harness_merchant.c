#include "harness_merchant.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "harness_ledger.h"

void tmerchant_load(struct tmerchant *tm, const struct net *n, const char *name)
{
	char key_path[700], err[256];
	memset(tm, 0, sizeof(*tm));
	snprintf(tm->name, sizeof(tm->name), "%s", name);
	net_read(n, name, "merchant_id", tm->mid_hex, sizeof(tm->mid_hex));
	hex_to_bytes(tm->mid_hex, tm->mid, MP_ID_LEN);
	snprintf(key_path, sizeof(key_path), "%s/%s/merchant.key", n->dir, name);
	ck_assert_msg(mp_key_load(&tm->key, key_path, err, sizeof(err)), "%s", err);
	snprintf(tm->cert, sizeof(tm->cert), "%s/tls/m-%s.crt", n->dir, tm->mid_hex);
	snprintf(tm->tls_key, sizeof(tm->tls_key), "%s/tls/m-%s.key", n->dir, tm->mid_hex);
}

void tmerchant_free(struct tmerchant *tm)
{
	mp_key_free(&tm->key);
}

void tmerchant_connect(const struct tmerchant *tm, struct wire *w, const char *broker_ep,
		       const char *ca)
{
	ck_assert_msg(wire_connect(w, broker_ep, ca, tm->cert, tm->tls_key),
		      "merchant %s cannot reach brokerd", tm->mid_hex);
}

MpSigned *tmerchant_redeem(const struct tmerchant *tm, const uint8_t redeem_id[MP_ID_LEN],
			   const struct tclaim *claims, size_t n)
{
	MpPoint *points = calloc(n, sizeof(*points));
	Micropay__V1__Claim *items = calloc(n, sizeof(*items));
	Micropay__V1__Claim **ptrs = calloc(n, sizeof(*ptrs));
	ck_assert(points && items && ptrs);
	for (size_t i = 0; i < n; i++) {
		micropay__v1__point__init(&points[i]);
		points[i].index = claims[i].index;
		points[i].w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)claims[i].w};
		micropay__v1__claim__init(&items[i]);
		items[i].channel_id =
		    (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)claims[i].channel_id};
		items[i].point = &points[i];
		ptrs[i] = &items[i];
	}
	Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
	rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)redeem_id};
	rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)tm->mid};
	rd.claims = ptrs;
	rd.n_claims = n;
	MpSigned *s = mp_stmt_sign(&tm->key, MP_STMT_REDEEM, &rd.base);
	ck_assert(s != NULL);
	free(points);
	free(items);
	free(ptrs);
	return s;
}

MpEnvelope *redeem_call(struct wire *w, const MpSigned *stmt)
{
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = (MpSigned *)stmt;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	MpEnvelope *resp = wire_send(w, &env) ? wire_recv(w) : NULL;
	ck_assert_msg(resp && resp->body_case == MP_BODY(REDEEM_RESP), "no RedeemResp (%s)",
		      !resp				  ? "no answer"
		      : resp->body_case == MP_BODY(ERROR) ? resp->error->detail
							  : "another message");
	return resp;
}

/* The client contexts allow partial writes (SSL_MODE_ENABLE_PARTIAL_WRITE): a frame above
 * one TLS record takes several SSL_write calls. */
static bool write_all(struct wire *w, const uint8_t *data, size_t len)
{
	for (size_t done = 0; done < len;) {
		int n = SSL_write(w->ssl, data + done, (int)(len - done));
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

bool wire_send(struct wire *w, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = ++w->next_id;
	size_t len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *buf = malloc(len + 4);
	ck_assert(buf != NULL);
	mp_put_be32(buf, (uint32_t)len);
	micropay__v1__envelope__pack(env, buf + 4);
	bool sent = write_all(w, buf, len + 4);
	free(buf);
	return sent;
}

MpEnvelope *wire_recv(struct wire *w)
{
	uint8_t hdr[4];
	if (!wire_read_exact(w, hdr, sizeof(hdr)))
		return NULL;
	uint32_t n = mp_get_be32(hdr);
	uint8_t *body = malloc(n ? n : 1);
	MpEnvelope *out = NULL;
	if (body && wire_read_exact(w, body, n))
		out = micropay__v1__envelope__unpack(NULL, n, body);
	free(body);
	return out;
}

void wire_set_timeout(struct wire *w, int seconds)
{
	struct timeval tv = {seconds, 0};
	ck_assert_int_eq(setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* count claims at `index` of the channel with random words: each costs `index` hashes from
 * the root and ends BAD_CHAIN. */
static struct tclaim *junk_claims(const struct tchannel *ch, uint32_t index, size_t count)
{
	struct tclaim *claims = calloc(count, sizeof(*claims));
	ck_assert(claims != NULL);
	for (size_t i = 0; i < count; i++) {
		tchannel_id(ch, claims[i].channel_id);
		claims[i].index = index;
		ck_assert(mp_random_bytes(claims[i].w, MP_HASH_LEN));
	}
	return claims;
}

MpSigned *junk_redeem(const struct tmerchant *tm, const struct tchannel *ch, uint32_t index,
		      size_t count)
{
	uint8_t redeem_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(redeem_id, MP_ID_LEN));
	struct tclaim *claims = junk_claims(ch, index, count);
	MpSigned *s = tmerchant_redeem(tm, redeem_id, claims, count);
	free(claims);
	return s;
}

void tchannel_opened(const struct net *net, const char *name, struct twallet *tw,
		     struct tchannel *ch, uint32_t n, struct wire *w)
{
	tchannel_opened_unit(net, name, tw, ch, n, 1, w);
}

void tchannel_opened_unit(const struct net *net, const char *name, struct twallet *tw,
			  struct tchannel *ch, uint32_t n, uint64_t unit, struct wire *w)
{
	char ca[700], broker_ep[128], ep[128], hex[MP_HEX_ID_LEN + 1];
	uint8_t mid[MP_ID_LEN];
	net_path(net, "tls/ca.crt", ca, sizeof(ca));
	net_read(net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(net, name, "endpoint", ep, sizeof(ep));
	net_read(net, name, "merchant_id", hex, sizeof(hex));
	hex_to_bytes(hex, mid, MP_ID_LEN);
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	net_fund_id(net, tw->account_id, (uint64_t)n * unit);
	tchannel_make(ch, tw, n, unit, mid);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
	ck_assert(wire_connect(w, ep, ca, NULL, NULL));
	MpEnvelope *ack = tchannel_open(ch, w);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
}

MpEnvelope *chunk_req_call(struct wire *w, const uint8_t id[MP_ID_LEN], const char *item,
			   const uint8_t *purchase, uint32_t chunk)
{
	Micropay__V1__ChunkReq req = MICROPAY__V1__CHUNK_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	req.item = (char *)(item ? item : "");
	if (purchase)
		req.purchase_id = (ProtobufCBinaryData){16, (uint8_t *)purchase};
	req.chunk = chunk;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CHUNK_REQ);
	env.chunk_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(CHUNK_RESP) && e->chunk_resp->status,
		      "no ChunkResp for chunk %u", chunk);
	return e;
}

json_t *listed_row(const struct net *n, const char *method, const char *field, const uint8_t id[16])
{
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	json_t *all = admin_ok(n, "m1", method, NULL);
	size_t i;
	json_t *row, *found = NULL;
	json_array_foreach(json_object_get(all, method), i, row)
	{
		if (!strcmp(json_str(row, field), hex))
			found = json_incref(row);
	}
	json_decref(all);
	ck_assert_msg(found != NULL, "%s: %s %s not listed by m1", method, field, hex);
	return found;
}
