/* Forced release (protocol.md section 6 "Release"; docs/release.md "The wallet"): the owner of
 * a channel whose holder is unreachable or refuses asks the broker to release it. The
 * ReleaseRequest {channel_id, seg_seq, epoch (the holder's, as the wallet knows it), to_mid or
 * close} is signed with the owner key of the channel's current segment; the signature is
 * deterministic (Ed25519, the same fields), so asking again sends the same statement and learns
 * the release's state.
 *
 *   admin release --sign, ReleaseReq--> PENDING (release_at shown)
 *      --asked again--> PENDING | DONE (the holder handed off or closed) |
 *      FORCED (the broker's ForcedClose, checked under the broker key and stored in table
 *      forced_closes: epoch, final_index shown; the channel RELEASED from then on, also after
 *      a restart: pay, transfer, close and buy refuse it)
 *   any --refused, unreachable--> the answer says why; nothing changes here */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "stmt.h"
#include "store_release.h"
#include "wallet.h"

struct release_op {
	struct wallet *w;
	struct mp_admin_req *req;
	uint8_t channel_id[MP_ID_LEN];
};

static const char *state_name(Micropay__V1__ReleaseState s)
{
	switch (s) {
	case MICROPAY__V1__RELEASE_STATE__RELEASE_PENDING:
		return "PENDING";
	case MICROPAY__V1__RELEASE_STATE__RELEASE_DONE:
		return "DONE";
	case MICROPAY__V1__RELEASE_STATE__RELEASE_FORCED:
		return "FORCED";
	default:
		return "NONE";
	}
}

/* The ForcedClose checked under the broker key and stored: its epoch and final_index. */
static json_t *forced_json(const struct release_op *op, const MpSigned *fc)
{
	const struct wallet *w = op->w;
	ProtobufCMessage *body = NULL;
	if (!fc || mp_stmt_open(fc, MP_STMT_FORCED_CLOSE, w->cfg.broker_pk,
				&micropay__v1__forced_close__descriptor, &body) != MP_ST(OK))
		return NULL;
	const Micropay__V1__ForcedClose *f = (const Micropay__V1__ForcedClose *)body;
	json_t *out = NULL;
	if (f->point && mp_bytes_len_is(f->channel_id, MP_ID_LEN) &&
	    !memcmp(f->channel_id.data, op->channel_id, MP_ID_LEN) &&
	    wstore_forced_close_put(w->store, op->channel_id, fc, f->epoch, f->point->index))
		out = json_pack("{s:I,s:I,s:I}", "epoch", (json_int_t)f->epoch, "seg_seq",
				(json_int_t)f->point->seg_seq, "final_index",
				(json_int_t)f->point->index);
	protobuf_c_message_free_unpacked(body, NULL);
	return out;
}

static void on_release_reply(void *arg, const MpEnvelope *reply, const char *error)
{
	struct release_op *op = arg;
	char text[400];
	if (!reply || reply->body_case != MP_BODY(RELEASE_RESP)) {
		wallet_status_text(reply && reply->body_case == MP_BODY(ERROR) ? reply->error
									       : NULL,
				   text, sizeof(text));
		mp_admin_fail(op->req, MP_ADMIN_FAILED, "release: %s", error ? error : text);
		free(op);
		return;
	}
	const Micropay__V1__ReleaseResp *r = reply->release_resp;
	wallet_status_text(r->status, text, sizeof(text));
	MpCode code = r->status ? r->status->code : MP_ST(INTERNAL);
	if (code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) {
		mp_admin_fail(op->req, MP_ADMIN_FAILED, "release: %s", text);
		free(op);
		return;
	}
	json_t *forced = NULL;
	if (r->state == MICROPAY__V1__RELEASE_STATE__RELEASE_FORCED &&
	    !(forced = forced_json(op, r->forced_close))) {
		mp_admin_fail(op->req, MP_ADMIN_FAILED,
			      "release: FORCED, but the ForcedClose does not verify under the "
			      "broker key for this channel, or cannot be stored");
		free(op);
		return;
	}
	struct wchannel *ch = forced ? wallet_channel_find(op->w, op->channel_id) : NULL;
	if (ch && ch->state != WCH_RELEASED) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(op->channel_id, MP_ID_LEN, hex);
		log_warn("channel %s: the broker's ForcedClose stored: RELEASED (was %s)", hex,
			 wch_state_name(ch->state));
		ch->state = WCH_RELEASED;
	}
	mp_admin_reply(op->req,
		       json_pack("{s:s,s:s,s:I,s:o}", "status", text, "state", state_name(r->state),
				 "release_at", (json_int_t)r->release_at, "forced_close",
				 forced ? forced : json_null()));
	free(op);
}

static MpSigned *sign_release(struct wallet *w, const struct wchannel *ch, const uint8_t *to_mid,
			      bool close)
{
	struct mp_key owner;
	if (!wallet_owner_key(w, ch, &owner))
		return NULL;
	Micropay__V1__ReleaseRequest rq = MICROPAY__V1__RELEASE_REQUEST__INIT;
	rq.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->channel_id};
	rq.seg_seq = ch->seg_seq;
	rq.epoch = ch->epoch;
	if (to_mid)
		rq.to_mid = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)to_mid};
	rq.close = close;
	MpSigned *s = mp_stmt_sign(&owner, MP_STMT_RELEASE_REQUEST, &rq.base);
	mp_key_free(&owner);
	return s;
}

void wallet_admin_release(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	uint8_t id[MP_ID_LEN], to_mid[MP_ID_LEN];
	bool has_to = json_object_get(params, "to_mid") != NULL;
	bool close = json_is_true(json_object_get(params, "close"));
	if (!wallet_param_hex(req, params, "channel_id", id, MP_ID_LEN, true, NULL) ||
	    (has_to && !wallet_param_hex(req, params, "to_mid", to_mid, MP_ID_LEN, true, NULL)))
		return;
	if (has_to == close) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "release: exactly one of to_mid and close");
		return;
	}
	struct wchannel *ch = wallet_channel_find(w, id);
	if (!ch) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "release: no such channel in the wallet");
		return;
	}
	MpSigned *stmt = sign_release(w, ch, has_to ? to_mid : NULL, close);
	struct release_op *op = stmt ? calloc(1, sizeof(*op)) : NULL;
	char err[300] = "cannot sign the ReleaseRequest";
	if (op) {
		*op = (struct release_op){w, req, {0}};
		memcpy(op->channel_id, id, MP_ID_LEN);
		if (wallet_broker_send(w, MP_BODY(RELEASE_REQ), stmt, on_release_reply, op, err,
				       sizeof(err))) {
			mp_stmt_free(stmt);
			return;
		}
	}
	mp_stmt_free(stmt);
	free(op);
	mp_admin_fail(req, MP_ADMIN_FAILED, "release: %s", err);
}

bool wallet_release_load(struct wallet *w)
{
	for (struct wchannel *ch = w->channels; ch; ch = ch->next) {
		int found = wstore_forced_close_has(w->store, ch->channel_id);
		if (found < 0)
			return false;
		if (found == 1)
			ch->state = WCH_RELEASED;
	}
	return true;
}
