/* On a worker thread (segment_verify.h):
 *
 *   SegmentClaim only (verify before parse):
 *     owner of segment s-1: segment 0's key, then each Transfer k < s (the request's, else the
 *       recorded one) opened under the owner before it  --(missing)--> TOO_EARLY
 *       |                                               --(refused)--> BAD_SIG / MALFORMED
 *     Transfer s opened under that owner -> its to_owner_pk
 *     SegmentClaim opened under to_owner_pk (type 11, key, signature, strict parse)
 *     fields: channel, seg_seq, the same Transfer and Cap, payout_account_id --(no)--> MALFORMED
 *   both:
 *     evidence: pairs 1..s-1 (the request's, then the recorded ones), pair s
 *     mp_custody_verify_all (custody: the notice's, or the SegmentClaim's) --(rule)--> its status
 *     the custody chain agrees with the stored Handoffs   --(fork)--> CONFLICT
 *     -> found: pairs 1..s */
#include "segment_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stmt.h"
#include "util.h"

static bool refuse(struct segment_job *job, MpCode code, const char *fmt, unsigned a)
{
	job->code = code;
	snprintf(job->detail, sizeof(job->detail), fmt, a);
	return false;
}

static bool key_lookup(void *arg, const uint8_t mid[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	const struct segment_job *job = arg;
	return custody_key_find(job->keys, job->n_keys, mid, valid_until, pk);
}

/* Transfer k under owner; on OK its to_owner_pk into next. */
static bool open_transfer(struct segment_job *job, const MpSigned *t, uint32_t k,
			  const uint8_t owner[MP_PK_LEN], uint8_t next[MP_PK_LEN])
{
	ProtobufCMessage *body = NULL;
	MpCode code =
	    mp_stmt_open(t, MP_STMT_TRANSFER, owner, &micropay__v1__transfer__descriptor, &body);
	if (code != MP_ST(OK))
		return refuse(job, code,
			      "Transfer %u not signed by the owner of the segment before", k);
	const Micropay__V1__Transfer *m = (const Micropay__V1__Transfer *)body;
	bool ok = mp_bytes_len_is(m->to_owner_pk, MP_PK_LEN);
	if (ok)
		memcpy(next, m->to_owner_pk.data, MP_PK_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return ok || refuse(job, MP_ST(MALFORMED), "Transfer %u: to_owner_pk length", k);
}

/* The expected signer of the SegmentClaim: to_owner_pk of Transfer s, itself verified under
 * the owner of segment s-1. */
static bool claim_signer(struct segment_job *job, uint8_t pk[MP_PK_LEN])
{
	const struct custody_chan *ch = &job->chans[0];
	uint8_t owner[MP_PK_LEN];
	memcpy(owner, ch->seg0.owner_pk, MP_PK_LEN);
	for (uint32_t k = 1; k < job->seg_seq; k++) {
		const MpSigned *t = 2 * k - 2 < job->n_given ? job->given[2 * k - 2]
				    : k <= ch->n_pairs	     ? ch->pairs[k - 1].transfer
							     : NULL;
		if (!t)
			return refuse(job, MP_ST(TOO_EARLY), "segment %u unknown", k);
		if (!open_transfer(job, t, k, owner, owner))
			return false;
	}
	return open_transfer(job, job->transfer, job->seg_seq, owner, pk);
}

static bool same_stmt(const MpSigned *a, const MpSigned *b)
{
	uint8_t ha[MP_HASH_LEN], hb[MP_HASH_LEN];
	if (!a || !b)
		return false;
	mp_stmt_hash(a, ha);
	mp_stmt_hash(b, hb);
	return memcmp(ha, hb, MP_HASH_LEN) == 0;
}

static bool open_claim(struct segment_job *job)
{
	uint8_t pk[MP_PK_LEN];
	if (!claim_signer(job, pk))
		return false;
	ProtobufCMessage *body = NULL;
	MpCode code = mp_stmt_open(job->claim_stmt, MP_STMT_SEGMENT_CLAIM, pk,
				   &micropay__v1__segment_claim__descriptor, &body);
	if (code != MP_ST(OK))
		return refuse(job, code, "SegmentClaim %u not signed by its Transfer's to_owner_pk",
			      job->seg_seq);
	job->claim = (Micropay__V1__SegmentClaim *)body;
	const Micropay__V1__SegmentClaim *c = job->claim;
	if (!mp_bytes_len_is(c->channel_id, MP_ID_LEN) ||
	    memcmp(c->channel_id.data, job->chans[0].channel_id, MP_ID_LEN) != 0 ||
	    c->seg_seq != job->seg_seq || !same_stmt(c->transfer, job->transfer) ||
	    !same_stmt(c->cap, job->cap) || !mp_bytes_len_is(c->payout_account_id, MP_ID_LEN))
		return refuse(job, MP_ST(MALFORMED), "SegmentClaim %u fields", job->seg_seq);
	return true;
}

/* Pairs 1..s-1 (the request's, completed by the recorded ones), then pair s. */
static bool build_evidence(struct segment_job *job)
{
	uint32_t s = job->seg_seq;
	size_t n_given = job->n_given;
	/* Pairs 1..s given whole (pair s the request's own): the same evidence. */
	if (n_given == 2 * (size_t)s && same_stmt(job->given[2 * s - 2], job->transfer) &&
	    same_stmt(job->given[2 * s - 1], job->cap))
		n_given -= 2;
	if (n_given % 2 || n_given > 2 * (size_t)(s - 1))
		return refuse(job, MP_ST(MALFORMED), "segments must be the pairs before segment %u",
			      s);
	job->n_stmts =
	    custody_segment_evidence(&job->chans[0], job->given, n_given, s - 1, job->stmts);
	if (job->n_stmts != 2 * (size_t)(s - 1))
		return refuse(job, MP_ST(TOO_EARLY), "segment %u unknown",
			      (unsigned)(job->n_stmts / 2 + 1));
	job->stmts[job->n_stmts++] = job->transfer;
	job->stmts[job->n_stmts++] = job->cap;
	return true;
}

/* The chain verified must be the one the broker stored, as far as both go. */
static bool agrees_with_stored(struct segment_job *job, const struct mp_custody_event *events,
			       size_t n_handoffs)
{
	const struct custody_chan *ch = &job->chans[0];
	for (size_t h = 1; h <= n_handoffs && h <= ch->n_stored; h++)
		if (memcmp(events[h].stmt_hash, ch->stored[h - 1].hash, MP_HASH_LEN) != 0)
			return refuse(job, MP_ST(CONFLICT),
				      "custody forks from the known chain at hseq %u", (unsigned)h);
	return true;
}

static bool verify(struct segment_job *job, struct mp_hasher *h, const atomic_bool *stop)
{
	const struct custody_chan *ch = &job->chans[0];
	MpSigned *const *custody = job->claim ? job->claim->custody : job->custody;
	size_t n_custody = job->claim ? job->claim->n_custody : job->n_custody;
	struct mp_custody_event *events = calloc(n_custody + 1, sizeof(*events));
	if (!events)
		return refuse(job, MP_ST(INTERNAL), "out of memory", 0);
	struct mp_custody_channel desc;
	custody_channel_desc(ch, &desc);
	struct mp_custody_evidence ev = {custody, n_custody, job->stmts, job->n_stmts};
	struct mp_custody_segment segments[MP_MAX_SEGMENTS];
	struct mp_custody_cap caps[MP_MAX_SEGMENTS];
	struct mp_custody_result res;
	enum mp_custody_rule rule = mp_custody_verify_all(&desc, &ev, key_lookup, job, h, stop,
							  events, segments, caps, &res);
	bool ok = false;
	if (rule == MP_CUSTODY_STOPPED)
		refuse(job, MP_ST(INTERNAL), "verification did not finish; retry", 0);
	else if (rule != MP_CUSTODY_OK) {
		job->code = mp_custody_rule_code(rule);
		snprintf(job->detail, sizeof(job->detail), "%s: %.170s", mp_custody_rule_name(rule),
			 res.detail);
	} else
		ok = agrees_with_stored(job, events, n_custody);
	free(events);
	if (!ok)
		return false;
	for (uint32_t k = 1; k <= job->seg_seq; k++)
		segment_found_set(&job->found[job->n_found++], ch->channel_id, segments, caps,
				  job->stmts, k);
	return true;
}

void segment_work(void *arg, const atomic_bool *stop)
{
	struct segment_job *job = arg;
	job->code = MP_ST(OK);
	job->detail[0] = '\0';
	if (job->n_chans != 1) {
		refuse(job, MP_ST(UNKNOWN_CHANNEL), "unknown channel", 0);
		return;
	}
	if (job->seg_seq < 1 || job->seg_seq >= MP_MAX_SEGMENTS) {
		refuse(job, job->seg_seq < 1 ? MP_ST(MALFORMED) : MP_ST(LIMIT),
		       "seg_seq %u: a transfer starts segment 1 to 15", job->seg_seq);
		return;
	}
	struct mp_hasher *h = mp_hasher_new();
	if (!h) {
		refuse(job, MP_ST(INTERNAL), "out of memory", 0);
		return;
	}
	if ((!job->claim_stmt || open_claim(job)) && build_evidence(job))
		verify(job, h, stop);
	mp_hasher_free(h);
}

static void free_list(MpSigned **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		mp_stmt_free(list[i]);
	free(list);
}

void segment_job_free(struct segment_job *job)
{
	if (!job)
		return;
	custody_chans_free(job->chans, job->n_chans);
	free(job->keys);
	mp_stmt_free(job->transfer);
	mp_stmt_free(job->cap);
	free_list(job->given, job->n_given);
	free_list(job->custody, job->n_custody);
	mp_stmt_free(job->claim_stmt);
	if (job->claim)
		micropay__v1__segment_claim__free_unpacked(job->claim, NULL);
	free(job);
}
