/* SegmentClaimReq (docs/transfer.md "B: transfer.accept" and "The broker"): wallet B, with no
 * client certificate, asks the broker to record segment s and its payout account for the
 * refund. The SegmentClaim is verified before it is parsed: its expected signer is to_owner_pk
 * of the Transfer it carries, which is itself verified first under the owner of segment s-1
 * (segment_verify.c). Idempotent by (channel, seg_seq): the same SegmentClaim again is
 * DUPLICATE_OK, another one CONFLICT with the stored one.
 *
 *   received --(no statement)----------------------------------------> MALFORMED
 *      | peek channel_id, seg_seq, Transfer, Cap from the unparsed body (common/pb_peek.h)
 *      |   --(framing, lengths, statements unreadable)-------------> MALFORMED
 *      | --(more segments than a channel can have)-----------------> LIMIT
 *      v
 *   segment_intake_run: prepare -> verify [workers] -> record (payout account: UNKNOWN_ACCOUNT)
 *      -> answer after COMMIT */
#include <stdio.h>
#include <string.h>

#include "pb_peek.h"
#include "proto_limits.h"
#include "segment_intake.h"
#include "stmt.h"
#include "util.h"

/* A Signed statement carried in field `number` of body, decoded strictly. */
static MpSigned *peek_stmt(const ProtobufCBinaryData *body, uint32_t number)
{
	const uint8_t *v;
	size_t len;
	if (!mp_pb_peek_bytes(body->data, body->len, number, &v, &len))
		return NULL;
	return mp_stmt_decode(v, len);
}

static bool peek_claim(const MpSigned *s, struct segment_intake *in)
{
	const uint8_t *v;
	size_t len;
	uint64_t seg;
	if (!mp_pb_peek_bytes(s->body.data, s->body.len, 1, &v, &len) || len != MP_ID_LEN ||
	    !mp_pb_peek_uint(s->body.data, s->body.len, 2, &seg) || seg > UINT32_MAX)
		return false;
	memcpy(in->channel_id, v, MP_ID_LEN);
	in->job->seg_seq = (uint32_t)seg;
	in->job->transfer = peek_stmt(&s->body, 3);
	in->job->cap = peek_stmt(&s->body, 4);
	return in->job->transfer && in->job->cap;
}

void handle_segment_claim(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	const Micropay__V1__SegmentClaimReq *req = env->segment_claim_req;
	struct segment_intake *in = segment_intake_new(b, c, env, true);
	if (!in)
		return;
	struct segment_job *job = in->job;
	if (!req->stmt || !peek_claim(req->stmt, in)) {
		segment_intake_reply(in, MP_ST(MALFORMED),
				     "a SegmentClaim with channel_id, seg_seq, Transfer and Cap "
				     "required",
				     NULL);
		return;
	}
	char ch[MP_HEX_ID_LEN + 1];
	mp_hex_encode(in->channel_id, MP_ID_LEN, ch);
	snprintf(in->what, sizeof(in->what), "channel %s segment %u from %s", ch, job->seg_seq,
		 mp_conn_peer(in->call->conn));
	if (req->n_segments > MP_MAX_SEGMENT_STMTS) {
		segment_intake_reply(in, MP_ST(LIMIT), "more segments than a channel can have",
				     NULL);
		return;
	}
	if (!(job->claim_stmt = mp_stmt_copy(req->stmt)) ||
	    !segment_intake_copy(req->segments, req->n_segments, &job->given, &job->n_given)) {
		segment_intake_reply(in, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	segment_intake_run(in);
}
