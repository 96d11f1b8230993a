#include "harness_goods.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "offer_cancel.h"

void goods_write(const char *dir, const char *rel, size_t bytes, unsigned seed)
{
	char p[1200];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *f = fopen(p, "w");
	ck_assert_msg(f != NULL, "cannot write %s", p);
	for (size_t i = 0; i < bytes; i++)
		fputc((int)((i * 131 + seed + i / 1024) % 256), f);
	ck_assert_int_eq(fclose(f), 0);
}

char *goods_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = 0;
	fclose(f);
	return buf;
}

void goods_same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = goods_slurp(a, &la), *y = goods_slurp(b, &lb);
	ck_assert_msg(la == lb && !memcmp(x, y, la), "%s (%zu bytes) differs from %s (%zu)", a, la,
		      b, lb);
	free(x);
	free(y);
}

bool goods_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

json_t *goods_wallet_channel(const struct net *n, const char *wallet, const char *channel)
{
	json_t *all = admin_ok(n, wallet, "channels", NULL);
	size_t i;
	json_t *ch, *found = NULL;
	json_array_foreach(json_object_get(all, "channels"), i, ch)
	{
		if (!strcmp(json_str(ch, "channel_id"), channel))
			found = json_incref(ch);
	}
	json_decref(all);
	ck_assert_msg(found != NULL, "no channel %s in %s", channel, wallet);
	return found;
}

int64_t goods_spent_value(const struct net *n, const char *wallet, const char *channel)
{
	json_t *ch = goods_wallet_channel(n, wallet, channel);
	int64_t v = json_int(ch, "last") * json_int(ch, "unit_value") - json_int(ch, "credit");
	json_decref(ch);
	return v;
}

MpEnvelope *goods_key_call(struct wire *w, const uint8_t id[MP_ID_LEN], const uint8_t ref[16])
{
	Micropay__V1__KeyReq req = MICROPAY__V1__KEY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	req.order_ref = (ProtobufCBinaryData){16, (uint8_t *)ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(KEY_REQ);
	env.key_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(KEY_RESP) && e->key_resp->status, "no KeyResp");
	return e;
}

MpCode goods_key_code(struct wire *w, const uint8_t id[MP_ID_LEN], const uint8_t ref[16])
{
	MpEnvelope *e = goods_key_call(w, id, ref);
	MpCode code = e->key_resp->status->code;
	if (code != MP_ST(OK))
		ck_assert_uint_eq(e->key_resp->key.len, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

int goods_offer_cancel(struct wire *w, const struct mp_key *key, const MpSigned *offer,
		       const struct mp_offer *o)
{
	MpSigned *cancel = mp_offer_cancel_sign(key, offer, o);
	ck_assert_ptr_nonnull(cancel);
	Micropay__V1__OfferCancelReq req = MICROPAY__V1__OFFER_CANCEL_REQ__INIT;
	req.cancel = cancel;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_CANCEL_REQ);
	env.offer_cancel_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	mp_stmt_free(cancel);
	ck_assert(e && e->body_case == MP_BODY(OFFER_CANCEL_RESP) && e->offer_cancel_resp->status);
	int code = e->offer_cancel_resp->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}
