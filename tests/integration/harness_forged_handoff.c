#include "harness_forged_handoff.h"

#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "harness_handoff.h"
#include "harness_net.h"

/* The Handoff of f answering move (NULL if the Move does not parse). */
static MpSigned *forge(const struct forged_holder *f, const MpSigned *move)
{
	Micropay__V1__Move *mv = micropay__v1__move__unpack(NULL, move->body.len, move->body.data);
	if (!mv)
		return NULL;
	uint8_t move_hash[MP_HASH_LEN], head[MP_HASH_LEN], w[MP_HASH_LEN];
	mp_stmt_hash(move, move_hash);
	mp_stmt_hash(f->ch->cert, head);
	tchannel_word(f->ch, f->at, w);
	MpSigned *h = handoff_forge(f->key, f->channel_id, mv->from_epoch + 1, f->from, f->to,
				    f->at, w, head, head, move_hash);
	micropay__v1__move__free_unpacked(mv, NULL);
	return h;
}

size_t forged_handoff_answer(const MpEnvelope *req, uint8_t *frame, size_t cap, void *arg)
{
	const struct forged_holder *f = arg;
	if (req->body_case != MP_BODY(HANDOFF_REQ) || !req->handoff_req->move)
		return 0;
	MpSigned *made = f->replay ? NULL : forge(f, req->handoff_req->move);
	MpSigned *h = f->replay ? (MpSigned *)f->replay : made;
	if (!h)
		return 0;
	MpSigned *cert = (MpSigned *)f->holder_cert;
	MpStatus st = MICROPAY__V1__STATUS__INIT;
	st.code = MP_ST(OK);
	Micropay__V1__HandoffResp resp = MICROPAY__V1__HANDOFF_RESP__INIT;
	resp.status = &st;
	resp.handoff = h;
	resp.n_custody = 1;
	resp.custody = &h;
	resp.n_merchant_certs = 1;
	resp.merchant_certs = &cert;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(HANDOFF_RESP);
	env.handoff_resp = &resp;
	size_t len = env_frame(&env, req->request_id, frame, cap);
	mp_stmt_free(made);
	return len;
}

MpSigned *merchant_stored_handoff(const struct net *n, const char *name, const char *channel_hex,
				  uint32_t hseq)
{
	char rel[64], path[700];
	uint8_t id[MP_ID_LEN];
	hex_to_bytes(channel_hex, id, MP_ID_LEN);
	snprintf(rel, sizeof(rel), "%s/merchant.db", name);
	net_path(n, rel, path, sizeof(path));
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT stmt FROM custody WHERE channel_id = ?1 AND "
					    "hseq = ?2",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, hseq);
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s holds no Handoff %u of %s", name, hseq,
		      channel_hex);
	MpSigned *h =
	    mp_stmt_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	ck_assert(h != NULL);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return h;
}
