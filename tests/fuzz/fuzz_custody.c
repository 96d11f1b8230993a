/* The custody-chain and segment-chain verifiers (common/custody.h, mp_custody_verify_all) on
 * chains built from the input: records of Handoff, Transfer and Cap bodies that the target
 * signs with the keys of a fixed world (custody_world.h), so that the fuzzer reaches every rule
 * behind the signature. The first byte's low bit makes the channel one issued without holder0
 * (a broker-signed Cap in epoch 0 allowed). A chain the verifier accepts must hold up on its
 * own: epochs in hseq order with indices that never go back, every Handoff's point and every
 * Cap's point a word of its segment's chain (checked here with mp_chain_verify, not with the
 * verifier's code), each segment starting where its Cap ends the one before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody_world.h"
#include "fuzz.h"

static struct world world;
static bool verbose; /* MP_FUZZ_VERBOSE: print each verdict */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	verbose = getenv("MP_FUZZ_VERBOSE") != NULL;
	return world_init(&world) ? 0 : -1;
}

static const struct mp_key *signer_of(uint8_t kind)
{
	unsigned who = (kind >> 2) & 3;
	switch ((enum record_kind)(kind & 3)) {
	case RECORD_TRANSFER:
		return &world.owner[who];
	case RECORD_HANDOFF:
	case RECORD_CAP:
	case RECORD_RAW:
		return who ? &world.merchant[who] : &world.broker;
	}
	return &world.broker;
}

struct parsed {
	MpSigned *handoffs[WORLD_MAX_RECORDS], *segment_stmts[WORLD_MAX_RECORDS];
	size_t n_handoffs, n_segment_stmts;
};

#ifdef MP_FUZZ_SKIP_SIGNATURE_CHECK
/* fuzz_custody_fast: this build's mp_stmt_open does not check signatures (common/stmt.c), so a
 * statement carries its signer's key and a zero signature, and nothing is signed. */
static MpSigned *sign(const struct mp_key *key, uint32_t type, const uint8_t *body, size_t len)
{
	static const uint8_t unsigned_sig[MP_SIG_LEN];
	return mp_stmt_from_parts(type, body, len, key->pk, unsigned_sig);
}
#else
/* fuzz_custody: every statement signed, as a peer would send it. */
static MpSigned *sign(const struct mp_key *key, uint32_t type, const uint8_t *body, size_t len)
{
	return world_sign(key, type, body, len);
}
#endif

static MpSigned *statement(uint8_t kind, const uint8_t *body, size_t len)
{
	switch ((enum record_kind)(kind & 3)) {
	case RECORD_HANDOFF:
		return sign(signer_of(kind), MP_STMT_HANDOFF, body, len);
	case RECORD_TRANSFER:
		return sign(signer_of(kind), MP_STMT_TRANSFER, body, len);
	case RECORD_CAP:
		return sign(signer_of(kind), MP_STMT_CAP, body, len);
	case RECORD_RAW:
		return mp_stmt_decode(body, len);
	}
	return NULL;
}

static void parse(struct fuzz_reader *r, struct parsed *p)
{
	const uint8_t *body;
	size_t len;
	while (r->left) {
		uint8_t kind = fuzz_byte(r);
		if (!fuzz_record(r, &body, &len))
			break;
		MpSigned *s = statement(kind, body, len);
		if (!s)
			continue;
		bool segment = (kind & 3) == RECORD_TRANSFER || (kind & 3) == RECORD_CAP;
		if (segment && p->n_segment_stmts < WORLD_MAX_RECORDS)
			p->segment_stmts[p->n_segment_stmts++] = s;
		else if (!segment && p->n_handoffs < WORLD_MAX_RECORDS)
			p->handoffs[p->n_handoffs++] = s;
		else
			mp_stmt_free(s);
	}
}

/* pt is a word of seg's chain (chain-relative index pt->index - seg->start). */
static bool on_chain(const struct mp_custody_segment *seg, const struct mp_custody_point *pt)
{
	if (pt->seg_seq != seg->seg_seq || pt->index < seg->start)
		return false;
	return mp_chain_verify(world.hasher, seg->nonce, 0, seg->root, pt->index - seg->start,
			       pt->w);
}

static void check_accepted(const struct parsed *p, const struct mp_custody_event *events,
			   const struct mp_custody_segment *segs, const struct mp_custody_cap *caps)
{
	size_t n_segs = p->n_segment_stmts / 2 + 1;
	for (size_t h = 1; h <= p->n_handoffs; h++) {
		const struct mp_custody_point *pt = &events[h].point;
		if (events[h].hseq != h || pt->index < events[h - 1].point.index ||
		    pt->index >= WORLD_N || pt->seg_seq >= n_segs ||
		    !on_chain(&segs[pt->seg_seq], pt))
			abort(); /* an accepted Handoff that does not hold up */
	}
	for (size_t s = 1; s < n_segs; s++) {
		const struct mp_custody_cap *c = &caps[s - 1];
		if (c->seg_seq != s || segs[s].start != c->point.index ||
		    !on_chain(&segs[s - 1], &c->point))
			abort(); /* an accepted Cap that does not hold up */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_reader r = {data, size};
	struct mp_custody_channel ch = world.ch;
	ch.issued_unbound = fuzz_byte(&r) & 1;
	struct parsed p = {0};
	parse(&r, &p);
	struct mp_custody_event events[WORLD_MAX_RECORDS + 1];
	struct mp_custody_segment segs[WORLD_MAX_RECORDS / 2 + 1];
	struct mp_custody_cap caps[WORLD_MAX_RECORDS / 2 + 1];
	struct mp_custody_result res;
	struct mp_custody_evidence ev = {p.handoffs, p.n_handoffs, p.segment_stmts,
					 p.n_segment_stmts};
	enum mp_custody_rule rule = mp_custody_verify_all(&ch, &ev, world_key, &world, world.hasher,
							  NULL, events, segs, caps, &res);
	if (verbose)
		fprintf(stderr,
			"custody: %zu handoffs, %zu segment statements: %s (hseq %u, seg %u) %s\n",
			p.n_handoffs, p.n_segment_stmts, mp_custody_rule_name(rule), res.hseq,
			res.seg_seq, res.detail);
	if (rule == MP_CUSTODY_OK)
		check_accepted(&p, events, segs, caps);
	else if (!mp_custody_rule_name(rule) || res.rule != rule)
		abort(); /* a refusal must name its rule */
	for (size_t i = 0; i < p.n_handoffs; i++)
		mp_stmt_free(p.handoffs[i]);
	for (size_t i = 0; i < p.n_segment_stmts; i++)
		mp_stmt_free(p.segment_stmts[i]);
	return 0;
}
