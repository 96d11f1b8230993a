#include "harness_handoff.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "harness_custody.h"

void handoff_net_up(struct handoff_net *h)
{
	net_up(&h->net);
	ck_assert_int_eq(net_cmd(&h->net, "merchant", "m2"), 0);
	ck_assert_int_eq(net_cmd(&h->net, "merchant", "m3"), 0);
	net_path(&h->net, "tls/ca.crt", h->ca, sizeof(h->ca));
	net_read(&h->net, "broker", "endpoint", h->broker_ep, sizeof(h->broker_ep));
	for (int i = 1; i <= 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "m%d", i);
		tmerchant_load(&h->tm[i], &h->net, name);
		net_read(&h->net, name, "endpoint", h->ep[i], sizeof(h->ep[i]));
	}
}

void handoff_net_down(struct handoff_net *h)
{
	for (int i = 1; i <= 3; i++)
		tmerchant_free(&h->tm[i]);
	net_down(&h->net);
}

void handoff_wallet_register(const struct handoff_net *h, char *account, size_t len)
{
	json_t *r = admin_ok(&h->net, "w1", "register", NULL);
	snprintf(account, len, "%s", json_str(r, "account_id"));
	json_decref(r);
}

bool merchant_channel_state(const struct net *n, const char *merchant, const char *channel,
			    char *state, size_t len, int64_t *epoch, int64_t *last)
{
	json_t *r = admin_ok(n, merchant, "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	bool found = false;
	for (size_t i = 0; i < json_array_size(list) && !found; i++) {
		json_t *c = json_array_get(list, i);
		if (strcmp(json_str(c, "channel_id"), channel) != 0)
			continue;
		found = true;
		snprintf(state, len, "%s", json_str(c, "state"));
		*epoch = json_int(c, "epoch");
		*last = json_int(c, "last");
	}
	json_decref(r);
	return found;
}

void expect_merchant_channel(const struct net *n, const char *merchant, const char *channel,
			     const char *state, int64_t epoch, int64_t last)
{
	char st[32];
	int64_t e, l;
	ck_assert_msg(merchant_channel_state(n, merchant, channel, st, sizeof(st), &e, &l),
		      "%s does not list the channel", merchant);
	ck_assert_msg(strcmp(st, state) == 0 && e == epoch && l == last,
		      "%s: channel %s epoch %lld last %lld, expected %s %lld %lld", merchant, st,
		      (long long)e, (long long)l, state, (long long)epoch, (long long)last);
}

void wallet_channel_holder(const struct net *n, const char *wallet, const char *channel,
			   char *holder, size_t len, int64_t *epoch)
{
	json_t *r = admin_ok(n, wallet, "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	bool found = false;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *c = json_array_get(list, i);
		if (strcmp(json_str(c, "channel_id"), channel) == 0) {
			snprintf(holder, len, "%s", json_str(c, "holder"));
			*epoch = json_int(c, "epoch");
			found = true;
		}
	}
	ck_assert(found);
	json_decref(r);
}

void handoff_channel(const struct handoff_net *h, struct twallet *tw, struct tchannel *ch,
		     uint8_t id[MP_ID_LEN], uint32_t n)
{
	channel_issue_funded(&h->net, tw, ch, n, h->tm[1].mid);
	tchannel_id(ch, id);
}

MpSigned *sign_move(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t from_epoch,
		    const uint8_t to[MP_ID_LEN])
{
	Micropay__V1__Move mv = MICROPAY__V1__MOVE__INIT;
	mv.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	mv.from_epoch = from_epoch;
	mv.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to};
	MpSigned *s = mp_stmt_sign(key, MP_STMT_MOVE, &mv.base);
	ck_assert(s != NULL);
	return s;
}

MpCode pay_status(const struct tchannel *ch, struct wire *w, uint32_t j)
{
	static const uint8_t ref[4] = {1, 2, 3, 4};
	MpEnvelope *e = tchannel_pay(ch, w, j, ref, sizeof(ref));
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck for j=%u", j);
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

bool pay_accepted(MpCode c)
{
	return c == MP_ST(OK) || c == MP_ST(UNDERPAID);
}

void handoff_open_send(struct wire *w, const struct tchannel *ch, const MpSigned *move,
		       const uint8_t hint[MP_ID_LEN], const MpSigned *hint_cert)
{
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = ch->cert;
	req.move = (MpSigned *)move;
	if (hint)
		req.holder_hint = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)hint};
	req.holder_cert = (MpSigned *)hint_cert;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	ck_assert(wire_send(w, &env));
}

MpEnvelope *handoff_open_ack(struct wire *w)
{
	MpEnvelope *e = wire_recv(w);
	ck_assert_msg(e && e->body_case == MP_BODY(OPEN_ACK) && e->open_ack->status, "no OpenAck");
	return e;
}

MpSigned *handoff_forge(const struct mp_key *key, const uint8_t id[MP_ID_LEN], uint32_t hseq,
			const uint8_t from[MP_ID_LEN], const uint8_t to[MP_ID_LEN], uint32_t at,
			const uint8_t w[MP_HASH_LEN], const uint8_t head[MP_HASH_LEN],
			const uint8_t prev[MP_HASH_LEN], const uint8_t move_hash[MP_HASH_LEN])
{
	Micropay__V1__Handoff h = MICROPAY__V1__HANDOFF__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	h.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	h.hseq = hseq;
	h.from_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)from};
	h.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to};
	pt.index = at;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)w};
	h.point = &pt;
	h.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)head};
	h.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)prev};
	h.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)move_hash};
	MpSigned *s = mp_stmt_sign(key, MP_STMT_HANDOFF, &h.base);
	ck_assert(s != NULL);
	return s;
}
