/* CapNoticeReq (docs/transfer.md "The holder's Cap outbox" and "The broker"): a holder tells
 * the broker, over mutual TLS, of a Cap it signed, with the Transfer, its custody chain up to
 * the Cap's epoch and the pairs before. The broker verifies and records segment s
 * (segment_intake.c); a repeat is DUPLICATE_OK, another pair for a recorded segment CONFLICT
 * with the stored Cap and a double_cap conflict.
 *
 *   received --(no merchant certificate)----------------------------> BAD_SIG
 *      | --(no Transfer or Cap, Cap body without channel_id)------> MALFORMED
 *      | --(more custody or segments than a channel can have)-----> LIMIT
 *      v
 *   segment_intake_run: prepare -> verify [workers] -> record -> answer after COMMIT
 *
 * The channel and segment are read from the Cap's body without parsing it (common/pb_peek.h):
 * they only say which channel to load; the verifier checks both in the signed statements. */
#include <stdio.h>
#include <string.h>

#include "pb_peek.h"
#include "proto_limits.h"
#include "segment_intake.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"

/* channel_id (field 1) and new_seg_seq (field 2) of an unverified Cap's body. */
static bool peek_cap(const MpSigned *cap, uint8_t cid[MP_ID_LEN], uint32_t *seg_seq)
{
	const uint8_t *v;
	size_t len;
	uint64_t seg;
	if (!mp_pb_peek_bytes(cap->body.data, cap->body.len, 1, &v, &len) || len != MP_ID_LEN ||
	    !mp_pb_peek_uint(cap->body.data, cap->body.len, 2, &seg) || seg > UINT32_MAX)
		return false;
	memcpy(cid, v, MP_ID_LEN);
	*seg_seq = (uint32_t)seg;
	return true;
}

void handle_cap_notice(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__CapNoticeReq *req = env->cap_notice_req;
	struct segment_intake *in = segment_intake_new(b, c, env, false);
	if (!in)
		return;
	struct segment_job *job = in->job;
	uint8_t mid[MP_ID_LEN];
	if (!mp_tls_peer_merchant_id(mp_conn_ssl(c), mid)) {
		segment_intake_reply(in, MP_ST(BAD_SIG),
				     "CapNoticeReq needs a merchant client certificate", NULL);
		return;
	}
	if (!req->transfer || !req->cap || !peek_cap(req->cap, in->channel_id, &job->seg_seq)) {
		segment_intake_reply(in, MP_ST(MALFORMED), "a Transfer and its Cap required", NULL);
		return;
	}
	char ch[MP_HEX_ID_LEN + 1], m[MP_HEX_ID_LEN + 1];
	mp_hex_encode(in->channel_id, MP_ID_LEN, ch);
	mp_hex_encode(mid, MP_ID_LEN, m);
	snprintf(in->what, sizeof(in->what), "channel %s segment %u from merchant %s", ch,
		 job->seg_seq, m);
	if (req->n_custody > MP_MAX_HANDOFFS || req->n_segments > MP_MAX_SEGMENT_STMTS) {
		segment_intake_reply(in, MP_ST(LIMIT), "more custody or segments than allowed",
				     NULL);
		return;
	}
	if (!(job->transfer = mp_stmt_copy(req->transfer)) ||
	    !(job->cap = mp_stmt_copy(req->cap)) ||
	    !segment_intake_copy(req->custody, req->n_custody, &job->custody, &job->n_custody) ||
	    !segment_intake_copy(req->segments, req->n_segments, &job->given, &job->n_given)) {
		segment_intake_reply(in, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	segment_intake_run(in);
}
