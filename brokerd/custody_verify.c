#include "custody_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "close_verify.h"
#include "custody_cap_conflict.h"
#include "stmt.h"
#include "util.h"

const char *custody_conflict_name(enum custody_conflict_kind kind)
{
	switch (kind) {
	case CONFLICT_DOUBLE_HANDOFF:
		return "double_handoff";
	case CONFLICT_CLAIM_ABOVE_HANDOFF:
		return "claim_above_handoff";
	case CONFLICT_OMITTED_CUSTODY:
		return "omitted_custody";
	case CONFLICT_BAD_W_AT:
		return "bad_w_at";
	case CONFLICT_CAP_AFTER_HANDOFF:
		return "cap_after_handoff";
	}
	return "?";
}

/* The outcome of verifying one claim's evidence (custody list and segments); claims carrying
 * the same evidence share it. */
struct verdict {
	const struct custody_chan *ch;
	uint8_t digest[MP_HASH_LEN]; /* of the custody list and the segments */
	enum mp_custody_rule rule;
	struct mp_custody_result res;
	struct mp_custody_event *events;       /* n_custody + 1 */
	MpSigned *stmts[MP_MAX_SEGMENT_STMTS]; /* the segment evidence verified (borrowed) */
	size_t n_stmts;
	struct mp_custody_segment segments[MP_MAX_SEGMENTS];
	struct mp_custody_cap caps[MP_MAX_SEGMENTS];
	size_t n_handoffs;     /* the custody list without a trailing Close */
	const MpSigned *close; /* that Close (borrowed), if any */
	MpCode close_code; /* its verdict once the chain verified (OK: it ends epoch n_handoffs) */
	uint32_t final_index;
	char close_detail[160];
};

struct run {
	struct custody_job *job;
	struct mp_hasher *h;
	const atomic_bool *stop;
	struct verdict **verdicts;
	size_t n_verdicts, cap_verdicts;
	uint8_t (*digests)[MP_HASH_LEN]; /* per claim */
};

static bool key_lookup(void *arg, const uint8_t mid[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	const struct custody_job *job = arg;
	return custody_key_find(job->keys, job->n_keys, mid, valid_until, pk);
}

static const struct custody_chan *find_chan(const struct custody_job *job, const uint8_t *cid)
{
	for (size_t i = 0; i < job->n_chans; i++)
		if (memcmp(job->chans[i].channel_id, cid, MP_ID_LEN) == 0)
			return &job->chans[i];
	return NULL;
}

/* A digest of a claim's custody list (every statement's hash, key and signature), so that
 * claims carrying the same list share one verification. */
static bool digest_list(EVP_MD_CTX *ctx, MpSigned *const *list, size_t n)
{
	uint8_t count[4];
	mp_put_be32(count, (uint32_t)n);
	bool ok = EVP_DigestUpdate(ctx, count, sizeof(count)) == 1;
	for (size_t i = 0; ok && i < n; i++) {
		const MpSigned *s = list[i];
		uint8_t h[MP_HASH_LEN], lens[8];
		mp_stmt_hash(s, h);
		mp_put_be32(lens, (uint32_t)s->signer_pk.len);
		mp_put_be32(lens + 4, (uint32_t)s->signature.len);
		ok = EVP_DigestUpdate(ctx, h, sizeof(h)) == 1 &&
		     EVP_DigestUpdate(ctx, lens, sizeof(lens)) == 1 &&
		     (!s->signer_pk.len ||
		      EVP_DigestUpdate(ctx, s->signer_pk.data, s->signer_pk.len) == 1) &&
		     (!s->signature.len ||
		      EVP_DigestUpdate(ctx, s->signature.data, s->signature.len) == 1);
	}
	return ok;
}

/* A digest of a claim's evidence (every statement's hash, key and signature, of the custody
 * list then the segments), so that claims carrying the same evidence share one verification.
 * The point's segment is in it too: it decides which recorded pairs complete the evidence. */
static bool custody_digest(const Micropay__V1__Claim *cl, uint8_t out[MP_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t seg[4];
	mp_put_be32(seg, cl->point ? cl->point->seg_seq : 0);
	bool ok = ctx && EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) == 1 &&
		  digest_list(ctx, cl->custody, cl->n_custody) &&
		  digest_list(ctx, cl->segments, cl->n_segments) &&
		  EVP_DigestUpdate(ctx, seg, sizeof(seg)) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, out, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static struct verdict *find_verdict(struct run *run, const struct custody_chan *ch,
				    const uint8_t digest[MP_HASH_LEN])
{
	for (size_t i = 0; i < run->n_verdicts; i++)
		if (run->verdicts[i]->ch == ch &&
		    memcmp(run->verdicts[i]->digest, digest, MP_HASH_LEN) == 0)
			return run->verdicts[i];
	return NULL;
}

/* Verify cl's custody list and segments against ch (once per distinct evidence), with the
 * recorded pairs completing the segments up to the claim's. NULL: out of memory or stopped. */
static struct verdict *verify_custody(struct run *run, const struct custody_chan *ch,
				      const Micropay__V1__Claim *cl,
				      const uint8_t digest[MP_HASH_LEN])
{
	struct verdict *v = find_verdict(run, ch, digest);
	if (v)
		return v;
	if (run->n_verdicts == run->cap_verdicts) {
		size_t cap = run->cap_verdicts ? 2 * run->cap_verdicts : 8;
		struct verdict **grown = realloc(run->verdicts, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		run->verdicts = grown, run->cap_verdicts = cap;
	}
	v = calloc(1, sizeof(*v));
	struct mp_custody_event *events = calloc(cl->n_custody + 1, sizeof(*events));
	if (!v || !events) {
		free(v), free(events);
		return NULL;
	}
	struct mp_custody_channel desc;
	custody_channel_desc(ch, &desc);
	v->ch = ch, v->events = events;
	memcpy(v->digest, digest, MP_HASH_LEN);
	v->n_stmts = custody_segment_evidence(ch, cl->segments, cl->n_segments,
					      cl->point ? cl->point->seg_seq : 0, v->stmts);
	v->n_handoffs = close_split(cl, &v->close);
	struct mp_custody_evidence ev = {.handoffs = cl->custody,
					 .n_handoffs = v->n_handoffs,
					 .segment_stmts = v->stmts,
					 .n_segment_stmts = v->n_stmts};
	v->rule = mp_custody_verify_all(&desc, &ev, key_lookup, run->job, run->h, run->stop, events,
					v->segments, v->caps, &v->res);
	if (v->rule == MP_CUSTODY_OK && v->close)
		v->close_code = close_verify(&(struct close_check){.ch = ch,
								   .events = events,
								   .n_handoffs = v->n_handoffs,
								   .segments = v->segments,
								   .n_segments = v->n_stmts / 2 + 1,
								   .key = key_lookup,
								   .key_arg = run->job,
								   .h = run->h,
								   .stop = run->stop},
					     v->close, &v->final_index, v->close_detail,
					     sizeof(v->close_detail));
	if (v->rule == MP_CUSTODY_STOPPED || (v->close && v->close_code == MP_ST(INTERNAL))) {
		free(events), free(v);
		return NULL;
	}
	run->verdicts[run->n_verdicts++] = v;
	return v;
}

/* The verified pairs of v that the broker has not recorded with the same bytes, once each. */
static bool add_found(struct custody_job *job, const struct verdict *v)
{
	const struct custody_chan *ch = v->ch;
	for (uint32_t k = 1; k <= v->n_stmts / 2; k++) {
		const struct mp_custody_cap *cap = &v->caps[k - 1];
		if (k <= ch->n_pairs &&
		    memcmp(ch->pairs[k - 1].c_hash, cap->cap_hash, MP_HASH_LEN) == 0)
			continue;
		bool seen = false;
		for (size_t i = 0; i < job->n_found && !seen; i++)
			seen = job->found[i].seg_seq == k &&
			       memcmp(job->found[i].channel_id, ch->channel_id, MP_ID_LEN) == 0 &&
			       memcmp(job->found[i].c_hash, cap->cap_hash, MP_HASH_LEN) == 0;
		if (seen)
			continue;
		if (job->n_found == job->cap_found) {
			size_t n = job->cap_found ? 2 * job->cap_found : 4;
			struct segment_found *grown = realloc(job->found, n * sizeof(*grown));
			if (!grown)
				return false;
			job->found = grown, job->cap_found = n;
		}
		segment_found_set(&job->found[job->n_found++], ch->channel_id, v->segments, v->caps,
				  v->stmts, k);
	}
	return true;
}

static struct custody_conflict *add_conflict(struct custody_job *job,
					     enum custody_conflict_kind kind,
					     const struct custody_chan *ch, uint32_t hseq,
					     const uint8_t liable[MP_ID_LEN], const MpSigned *stmt)
{
	if (job->n_conflicts == job->cap_conflicts) {
		size_t cap = job->cap_conflicts ? 2 * job->cap_conflicts : 4;
		struct custody_conflict *grown = realloc(job->conflicts, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		job->conflicts = grown, job->cap_conflicts = cap;
	}
	struct custody_conflict *c = &job->conflicts[job->n_conflicts++];
	*c = (struct custody_conflict){.kind = kind, .hseq = hseq, .stmt = stmt};
	memcpy(c->channel_id, ch->channel_id, MP_ID_LEN);
	memcpy(c->liable, liable, MP_ID_LEN);
	return c;
}

static void fill_new(struct custody_new *nw, const struct custody_chan *ch,
		     const Micropay__V1__Claim *cl, const struct mp_custody_event *ev, uint32_t g)
{
	*nw = (struct custody_new){.hseq = g, .stmt = cl->custody[g - 1], .pt = ev->point};
	memcpy(nw->channel_id, ch->channel_id, MP_ID_LEN);
	memcpy(nw->hash, ev->stmt_hash, MP_HASH_LEN);
	memcpy(nw->from, (ev - 1)->merchant_id, MP_ID_LEN);
	memcpy(nw->to, ev->merchant_id, MP_ID_LEN);
}

/* Handoffs g of the claim's verified chain above what the broker stored, once each. */
static bool add_new(struct custody_job *job, const struct custody_chan *ch,
		    const Micropay__V1__Claim *cl, const struct mp_custody_event *ev, uint32_t g)
{
	for (size_t i = 0; i < job->n_news; i++)
		if (job->news[i].hseq == g &&
		    memcmp(job->news[i].channel_id, ch->channel_id, MP_ID_LEN) == 0 &&
		    memcmp(job->news[i].hash, ev->stmt_hash, MP_HASH_LEN) == 0)
			return true;
	if (job->n_news == job->cap_news) {
		size_t cap = job->cap_news ? 2 * job->cap_news : 8;
		struct custody_new *grown = realloc(job->news, cap * sizeof(*grown));
		if (!grown)
			return false;
		job->news = grown, job->cap_news = cap;
	}
	fill_new(&job->news[job->n_news++], ch, cl, ev, g);
	return true;
}

/* The claim's Handoffs fork..n_handoffs, a second branch from its fork Handoff on, once each
 * (custody_record stores them and opens the branch's epochs). */
static bool add_branch(struct custody_job *job, const struct custody_chan *ch,
		       const Micropay__V1__Claim *cl, const struct verdict *v, uint32_t fork)
{
	for (uint32_t g = fork; g <= v->n_handoffs; g++) {
		const struct mp_custody_event *ev = &v->events[g];
		bool seen = false;
		for (size_t i = 0; i < job->n_branches && !seen; i++)
			seen =
			    job->branches[i].h.hseq == g &&
			    memcmp(job->branches[i].h.channel_id, ch->channel_id, MP_ID_LEN) == 0 &&
			    memcmp(job->branches[i].h.hash, ev->stmt_hash, MP_HASH_LEN) == 0;
		if (seen)
			continue;
		if (job->n_branches == job->cap_branches) {
			size_t cap = job->cap_branches ? 2 * job->cap_branches : 4;
			struct custody_branch *grown = realloc(job->branches, cap * sizeof(*grown));
			if (!grown)
				return false;
			job->branches = grown, job->cap_branches = cap;
		}
		struct custody_branch *b = &job->branches[job->n_branches++];
		memcpy(b->branch, v->events[fork].stmt_hash, MP_HASH_LEN);
		memcpy(b->liable, v->events[fork - 1].merchant_id, MP_ID_LEN);
		memcpy(b->prev, v->events[g - 1].stmt_hash, MP_HASH_LEN);
		fill_new(&b->h, ch, cl, ev, g);
	}
	return true;
}

/* Decide the claim's refusal; true (the claim is judged). */
static bool refuse(struct custody_claim *out, MpCode code, const char *fmt, unsigned a, unsigned b,
		   unsigned c)
{
	out->status = code;
	snprintf(out->detail, sizeof(out->detail), fmt, a, b, c);
	return true;
}

/* The first hseq where the claim's chain and the stored one differ; 0 if they agree. */
static uint32_t fork_point(const struct custody_chan *ch, const struct verdict *v, size_t n)
{
	size_t common = n < ch->n_stored ? n : ch->n_stored;
	for (size_t h = 1; h <= common; h++)
		if (memcmp(v->events[h].stmt_hash, ch->stored[h - 1].hash, MP_HASH_LEN) != 0)
			return (uint32_t)h;
	return 0;
}

/* Where the claim's chain and the stored one differ in a Handoff that names the same merchant
 * (two Handoffs g to one merchant), that merchant holds one epoch g either way: the first
 * stored defines it and the chains are compared on from g+1, each such Handoff recorded as a
 * double handoff against its signer. The first hseq where they name different merchants (a
 * fork: two branches); 0 if there is none. False: out of memory. */
static bool fork_between_merchants(struct custody_job *job, const struct custody_chan *ch,
				   const Micropay__V1__Claim *cl, const struct verdict *v,
				   uint32_t *fork)
{
	size_t n = v->n_handoffs, common = n < ch->n_stored ? n : ch->n_stored;
	*fork = 0;
	for (size_t g = fork_point(ch, v, n); g && g <= common; g++) {
		if (memcmp(v->events[g].stmt_hash, ch->stored[g - 1].hash, MP_HASH_LEN) == 0)
			continue;
		if (memcmp(v->events[g].merchant_id, ch->stored[g - 1].to, MP_ID_LEN) != 0) {
			*fork = (uint32_t)g;
			return true;
		}
		struct custody_conflict *c =
		    add_conflict(job, CONFLICT_DOUBLE_HANDOFF, ch, (uint32_t)g,
				 v->events[g - 1].merchant_id, ch->stored[g - 1].stmt);
		if (!c)
			return false;
		c->other = cl->custody[g - 1];
		snprintf(c->detail, sizeof(c->detail), "two Handoffs with hseq %zu to one merchant",
			 g);
	}
	return true;
}

/* Handoffs the claimant signed that the broker knows and its custody leaves out, where the
 * claim relies on holding past them. A Redeem cannot list a Handoff signed after it: merchantd
 * resends a Redeem verbatim, and one signed before its Handoff g claims a point at or below
 * g's at_index (its epoch ended there). Only a claim above the omitted Handoff's point proves
 * that the Redeem was signed after the Handoff and leaves it out: that is the conflict. */
static bool check_omitted(struct custody_job *job, const struct custody_chan *ch,
			  const Micropay__V1__Claim *cl, size_t n_handoffs, uint32_t fork)
{
	for (size_t g = n_handoffs + 1; g <= ch->n_stored && (!fork || g < fork); g++) {
		const struct custody_stored *s = &ch->stored[g - 1];
		if (memcmp(s->from, job->claimant, MP_ID_LEN) != 0 ||
		    cl->point->index <= s->pt.index)
			continue;
		struct custody_conflict *c = add_conflict(job, CONFLICT_OMITTED_CUSTODY, ch,
							  (uint32_t)g, job->claimant, s->stmt);
		if (!c)
			return false;
		snprintf(c->detail, sizeof(c->detail),
			 "custody of a claim on epoch %u omits Handoff %zu it signed", cl->hseq_in,
			 g);
	}
	return true;
}

/* The claimant's own Handoff hseq_in+1 (its chain's or the stored one), or its Close of epoch
 * hseq_in in the chain: the epoch's end. */
static const MpSigned *epoch_end(const struct custody_chan *ch, const Micropay__V1__Claim *cl,
				 const struct verdict *v, uint32_t fork, uint32_t *end)
{
	uint32_t next = cl->hseq_in + 1;
	const MpSigned *stmt = NULL;
	if (next <= v->n_handoffs)
		stmt = cl->custody[next - 1], *end = v->events[next].point.index;
	else if (v->close && cl->hseq_in == v->n_handoffs)
		stmt = v->close, *end = v->final_index;
	if (next <= ch->n_stored && (!fork || next <= fork)) {
		const struct custody_stored *s = &ch->stored[next - 1];
		if (!stmt || s->pt.index < *end)
			stmt = s->stmt, *end = s->pt.index;
	}
	return stmt;
}

/* Both branches of a fork are honoured (docs/custody.md "Forks"): a claim whose custody forks
 * from the stored chain at hseq f at or below its epoch, where its Handoff f names another
 * merchant than the stored Handoff f, is a claim on a second branch. Its Handoffs f.. are
 * recorded (custody_record opens the branch's epochs, each liable to f's signer) and the claim
 * goes on; two Handoffs f to one merchant stay CONFLICT. */
static bool honoured_fork(const struct custody_chan *ch, const struct verdict *v, uint32_t f)
{
	return f >= 1 && f <= ch->n_stored && f <= v->n_handoffs &&
	       memcmp(v->events[f].merchant_id, ch->stored[f - 1].to, MP_ID_LEN) != 0;
}

/* A verified chain: fork, holder, omissions, end. False: out of memory. */
static bool judge_chain(struct custody_job *job, const struct custody_chan *ch,
			const Micropay__V1__Claim *cl, const struct verdict *v,
			struct custody_claim *out)
{
	uint32_t h = cl->hseq_in, fork = 0;
	if (!fork_between_merchants(job, ch, cl, v, &fork))
		return false;
	if (fork) {
		struct custody_conflict *c =
		    add_conflict(job, CONFLICT_DOUBLE_HANDOFF, ch, fork,
				 v->events[fork - 1].merchant_id, ch->stored[fork - 1].stmt);
		if (!c)
			return false;
		c->other = cl->custody[fork - 1];
		snprintf(c->detail, sizeof(c->detail), "two Handoffs with hseq %u", fork);
	} else {
		for (uint32_t g = (uint32_t)ch->n_stored + 1; g <= v->n_handoffs; g++)
			if (!add_new(job, ch, cl, &v->events[g], g))
				return false;
	}
	if (!check_omitted(job, ch, cl, v->n_handoffs, fork))
		return false;
	bool second_branch = fork && fork <= h && h <= v->n_handoffs && honoured_fork(ch, v, fork);
	if (second_branch && !add_branch(job, ch, cl, v, fork))
		return false;
	if (second_branch) {
		out->on_branch = true;
		memcpy(out->opener, v->events[h].stmt_hash, MP_HASH_LEN);
	}
	if (fork && fork <= h && !second_branch)
		return refuse(out, MP_ST(CONFLICT), "custody forks from the known chain at hseq %u",
			      fork, 0, 0);
	if (v->close && v->close_code != MP_ST(OK)) {
		out->status = v->close_code;
		snprintf(out->detail, sizeof(out->detail), "%s", v->close_detail);
		return true;
	}
	if (h > v->n_handoffs)
		return refuse(out, MP_ST(NOT_HOLDER), "custody does not reach epoch %u", h, 0, 0);
	if (memcmp(v->events[h].merchant_id, job->claimant, MP_ID_LEN) != 0)
		return refuse(out, MP_ST(NOT_HOLDER), "custody event %u names another merchant", h,
			      0, 0);
	uint32_t end = 0, j = cl->point->index;
	const MpSigned *end_stmt = epoch_end(ch, cl, v, fork, &end);
	if (end_stmt && j > end) {
		struct custody_conflict *c =
		    add_conflict(job, CONFLICT_CLAIM_ABOVE_HANDOFF, ch, h, job->claimant, end_stmt);
		if (!c)
			return false;
		c->has_index = true, c->claim_index = j;
		bool closed = end_stmt == v->close;
		snprintf(c->detail, sizeof(c->detail),
			 "claim at %u in epoch %u above the claimant's own %s at %u", j, h,
			 closed ? "Close" : "Handoff", end);
		return refuse(out, MP_ST(OUT_OF_RANGE),
			      closed ? "claim at %u above your own Close of epoch %u at index %u"
				     : "claim at %u above your own Handoff %u at index %u",
			      j, closed ? h : h + 1, end);
	}
	out->status = MP_ST(OK);
	return true;
}

/* A signed Handoff whose w_at does not verify: evidence against its signer. False: out of
 * memory. */
static bool add_bad_w_at(struct custody_job *job, const struct custody_chan *ch,
			 const Micropay__V1__Claim *cl, const struct verdict *v)
{
	uint32_t g = v->res.hseq;
	struct custody_conflict *c = add_conflict(job, CONFLICT_BAD_W_AT, ch, g,
						  v->events[g - 1].merchant_id, cl->custody[g - 1]);
	if (!c)
		return false;
	snprintf(c->detail, sizeof(c->detail), "%.150s", v->res.detail);
	return true;
}

/* The evidence broke a rule at Handoff g because a Cap of epoch g-1 it verified before is
 * inconsistent with that Handoff by the same signer: the Cap and the Handoff are recorded
 * against the signer (custody_cap_conflict.h). False: out of memory. */
static bool add_cap_after_handoff(struct custody_job *job, const struct custody_chan *ch,
				  const Micropay__V1__Claim *cl, const struct verdict *v)
{
	uint32_t g = v->res.hseq;
	if (g == 0 || g > v->n_handoffs)
		return true;
	const uint8_t *signer = v->events[g - 1].merchant_id;
	int k = custody_inconsistent_cap(v->rule, cl->custody[g - 1], g, signer, v->caps, v->stmts,
					 v->n_stmts);
	if (k < 0)
		return true;
	struct custody_conflict *c =
	    add_conflict(job, CONFLICT_CAP_AFTER_HANDOFF, ch, g - 1, signer, v->stmts[2 * k + 1]);
	if (!c)
		return false;
	c->other = cl->custody[g - 1];
	snprintf(c->detail, sizeof(c->detail),
		 "Cap of segment %u at %u in epoch %u inconsistent with the signer's own Handoff "
		 "%u in the same evidence",
		 v->caps[k].seg_seq, v->caps[k].point.index, g - 1, g);
	return true;
}

/* False: out of memory or stopped (the job is incomplete). */
static bool judge_claim(struct run *run, size_t i)
{
	struct custody_job *job = run->job;
	const Micropay__V1__Claim *cl = job->r->claims[i];
	struct custody_claim *out = &job->claims[i];
	if (!mp_bytes_len_is(cl->channel_id, MP_ID_LEN) || !cl->point)
		return true; /* malformed: refused by the usual checks */
	const struct custody_chan *ch = find_chan(job, cl->channel_id.data);
	if (!ch)
		return true; /* no custody here: epoch 0 rules, or refused by the usual checks */
	out->checked = true;
	if (!ch->has_holder0)
		return refuse(out, MP_ST(NOT_HOLDER), "channel not bound to a holder", 0, 0, 0);
	const struct verdict *v = verify_custody(run, ch, cl, run->digests[i]);
	if (!v)
		return false;
	if (v->rule == MP_CUSTODY_OK)
		return add_found(job, v) && judge_chain(job, ch, cl, v, out);
	out->status = mp_custody_rule_code(v->rule);
	snprintf(out->detail, sizeof(out->detail), "custody: %.180s", v->res.detail);
	return v->rule == MP_CUSTODY_W_AT ? add_bad_w_at(job, ch, cl, v)
					  : add_cap_after_handoff(job, ch, cl, v);
}

/* Digest every claim's custody list, then bound the hashing: at most n hashes per distinct
 * list (and channel) with Handoffs the broker has not stored. False: above the budget. */
static bool within_budget(struct run *run, bool *oom)
{
	struct custody_job *job = run->job;
	uint64_t cost = 0;
	for (size_t i = 0; i < job->r->n_claims; i++) {
		const Micropay__V1__Claim *cl = job->r->claims[i];
		if (!custody_digest(cl, run->digests[i])) {
			*oom = true;
			return true;
		}
		const struct custody_chan *ch = mp_bytes_len_is(cl->channel_id, MP_ID_LEN)
						    ? find_chan(job, cl->channel_id.data)
						    : NULL;
		if (!ch || (cl->n_custody <= ch->n_stored && cl->n_segments <= 2 * ch->n_pairs))
			continue;
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = memcmp(run->digests[k], run->digests[i], MP_HASH_LEN) == 0 &&
			       mp_bytes_len_is(job->r->claims[k]->channel_id, MP_ID_LEN) &&
			       memcmp(job->r->claims[k]->channel_id.data, ch->channel_id,
				      MP_ID_LEN) == 0;
		cost += seen ? 0 : ch->n;
		if (cost > job->hash_budget)
			return false;
	}
	return true;
}

static int by_channel_hseq(const void *a, const void *b)
{
	const struct custody_new *x = a, *y = b;
	int c = memcmp(x->channel_id, y->channel_id, MP_ID_LEN);
	return c ? c : (x->hseq > y->hseq) - (x->hseq < y->hseq);
}

static int by_channel_branch_hseq(const void *a, const void *b)
{
	const struct custody_branch *x = a, *y = b;
	int c = memcmp(x->h.channel_id, y->h.channel_id, MP_ID_LEN);
	if (!c)
		c = memcmp(x->branch, y->branch, MP_HASH_LEN);
	return c ? c : (x->h.hseq > y->h.hseq) - (x->h.hseq < y->h.hseq);
}

static int by_channel_seg(const void *a, const void *b)
{
	const struct segment_found *x = a, *y = b;
	int c = memcmp(x->channel_id, y->channel_id, MP_ID_LEN);
	return c ? c : (x->seg_seq > y->seg_seq) - (x->seg_seq < y->seg_seq);
}

void custody_work(void *arg, const atomic_bool *stop)
{
	struct custody_job *job = arg;
	struct run run = {.job = job, .h = mp_hasher_new(), .stop = stop};
	run.digests = calloc(job->r->n_claims + 1, sizeof(*run.digests));
	bool oom = !run.h || !run.digests;
	job->complete = false;
	job->over_budget = !oom && !within_budget(&run, &oom);
	size_t done = 0;
	if (!oom && !job->over_budget)
		for (; done < job->r->n_claims && judge_claim(&run, done); done++)
			;
	job->complete = !oom && !job->over_budget && done == job->r->n_claims;
	if (job->complete && job->n_news)
		qsort(job->news, job->n_news, sizeof(*job->news), by_channel_hseq);
	if (job->complete && job->n_branches)
		qsort(job->branches, job->n_branches, sizeof(*job->branches),
		      by_channel_branch_hseq);
	if (job->complete && job->n_found)
		qsort(job->found, job->n_found, sizeof(*job->found), by_channel_seg);
	for (size_t i = 0; i < run.n_verdicts; i++)
		free(run.verdicts[i]->events), free(run.verdicts[i]);
	free(run.verdicts);
	free(run.digests);
	mp_hasher_free(run.h);
}

void custody_job_free(struct custody_job *job)
{
	if (!job)
		return;
	custody_chans_free(job->chans, job->n_chans);
	free(job->keys);
	free(job->claims);
	free(job->conflicts);
	free(job->news);
	free(job->branches);
	free(job->found);
	free(job);
}

/* ---- the Close of a RefundRequest ---- */

static void close_refused(struct custody_close_job *cj, MpCode code, const char *detail)
{
	cj->code = code;
	snprintf(cj->detail, sizeof(cj->detail), "%s", detail);
}

/* The segment of the (verified) Close's point. */
static bool close_segment(const MpSigned *close, uint32_t *seg_seq)
{
	Micropay__V1__Close *cl = (Micropay__V1__Close *)protobuf_c_message_unpack(
	    &micropay__v1__close__descriptor, NULL, close->body.len, close->body.data);
	bool ok = cl && cl->point;
	if (ok)
		*seg_seq = cl->point->seg_seq;
	if (cl)
		protobuf_c_message_free_unpacked(&cl->base, NULL);
	return ok;
}

/* The verified Handoffs above the stored ones, for mp_refund_early to store (OK), or the
 * refusal when out of memory. */
static void close_news(struct custody_close_job *cj, const struct custody_chan *ch,
		       const Micropay__V1__Claim *cl, const struct verdict *v)
{
	size_t from = ch->n_stored + 1;
	if (v->n_handoffs >= from) {
		cj->news = calloc(v->n_handoffs - from + 1, sizeof(*cj->news));
		if (!cj->news) {
			close_refused(cj, MP_ST(INTERNAL), "out of memory; retry");
			return;
		}
	}
	for (size_t g = from; g <= v->n_handoffs; g++)
		fill_new(&cj->news[cj->n_news++], ch, cl, &v->events[g], (uint32_t)g);
	cj->code = MP_ST(OK);
}

/* The verified evidence's verdict: the chain's rule, a fork from the stored chain, the
 * Close's checks, its segment. */
static void judge_close(struct custody_close_job *cj, const struct custody_chan *ch,
			const Micropay__V1__Claim *cl, const struct verdict *v)
{
	char text[200];
	uint32_t fork, seg = 0;
	if (!v->close) {
		close_refused(cj, MP_ST(MALFORMED), "no Close after the custody chain");
	} else if (v->rule != MP_CUSTODY_OK) {
		snprintf(text, sizeof(text), "custody: %.180s", v->res.detail);
		close_refused(cj, mp_custody_rule_code(v->rule), text);
	} else if ((fork = fork_point(ch, v, v->n_handoffs)) != 0) {
		snprintf(text, sizeof(text), "custody forks from the known chain at hseq %u", fork);
		close_refused(cj, MP_ST(CONFLICT), text);
	} else if (v->close_code != MP_ST(OK)) {
		close_refused(cj, v->close_code, v->close_detail);
	} else if (!close_segment(v->close, &seg)) {
		close_refused(cj, MP_ST(INTERNAL), "Close unreadable after verification");
	} else if (seg != cj->seg_seq) {
		snprintf(text, sizeof(text), "the Close is in segment %u, not the last segment %u",
			 seg, cj->seg_seq);
		close_refused(cj, MP_ST(STALE_SEGMENT), text);
	} else {
		close_news(cj, ch, cl, v);
		cj->hseq = (uint32_t)v->n_handoffs;
		cj->final_index = v->final_index;
		memcpy(cj->closer, v->events[v->n_handoffs].merchant_id, MP_ID_LEN);
	}
}

void custody_close_work(void *arg, const atomic_bool *stop)
{
	struct custody_close_job *cj = arg;
	struct custody_job job = {
	    .chans = cj->chans, .n_chans = cj->n_chans, .keys = cj->keys, .n_keys = cj->n_keys};
	struct run run = {.job = &job, .h = mp_hasher_new(), .stop = stop};
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	Micropay__V1__Claim cl = MICROPAY__V1__CLAIM__INIT;
	const struct custody_chan *ch = &cj->chans[0];
	uint8_t digest[MP_HASH_LEN] = {0};
	pt.seg_seq = cj->seg_seq; /* the recorded pairs up to the last segment */
	cl.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)ch->channel_id};
	cl.point = &pt;
	cl.custody = cj->custody;
	cl.n_custody = cj->n_custody;
	close_refused(cj, MP_ST(INTERNAL), "verification did not finish; retry");
	if (!ch->has_holder0) {
		close_refused(cj, MP_ST(NOT_HOLDER), "channel not bound to a holder");
	} else if (run.h) {
		const struct verdict *v = verify_custody(&run, ch, &cl, digest);
		if (v)
			judge_close(cj, ch, &cl, v);
	}
	for (size_t i = 0; i < run.n_verdicts; i++)
		free(run.verdicts[i]->events), free(run.verdicts[i]);
	free(run.verdicts);
	mp_hasher_free(run.h);
}

void custody_close_job_free(struct custody_close_job *job)
{
	if (!job)
		return;
	custody_chans_free(job->chans, job->n_chans);
	free(job->keys);
	for (size_t i = 0; i < job->n_custody; i++)
		mp_stmt_free(job->custody[i]);
	free(job->custody);
	free(job->news);
	free(job);
}
