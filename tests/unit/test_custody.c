/* Custody chains (common/custody.c): a valid chain M1 -> M2 -> M3 -> M1 over the reference
 * vectors' n = 1000 chain, then every rule broken one at a time, each with its typed result. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "custody.h"
#include "stmt.h"
#include "util.h"
#include "../check_run.h"

#define N 1000

/* The vectors' case n=1000: its words at these indices (read from the file). */
static const uint32_t vec_idx[] = {0, 1, 2, 500, 999, 1000};
static uint8_t vec_w[6][MP_HASH_LEN];
static uint8_t nonce[MP_NONCE_LEN];

static const uint8_t *word(uint32_t k)
{
	for (size_t i = 0; i < sizeof(vec_idx) / sizeof(vec_idx[0]); i++)
		if (vec_idx[i] == k)
			return vec_w[i];
	ck_abort_msg("no vector word at %u", k);
	return NULL;
}

static void load_vectors(void)
{
	const char *dir = getenv("MP_VECTORS_DIR");
	ck_assert_msg(dir != NULL, "MP_VECTORS_DIR is not set");
	char path[4096], line[512], seed[80], nhex[80], hex[80];
	snprintf(path, sizeof(path), "%s/mpay1-chain.txt", dir);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	bool in_case = false;
	unsigned found = 0, n, k;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "case seed=%79s nonce=%79s n=%u", seed, nhex, &n) == 3) {
			in_case = n == N;
			if (in_case)
				ck_assert(mp_hex_decode(nhex, nonce, sizeof(nonce)));
		} else if (strncmp(line, "segment", 7) == 0) {
			in_case = false;
		} else if (in_case && sscanf(line, "w %u %79s", &k, hex) == 2) {
			for (size_t i = 0; i < sizeof(vec_idx) / sizeof(vec_idx[0]); i++)
				if (vec_idx[i] == k) {
					ck_assert(mp_hex_decode(hex, vec_w[i], MP_HASH_LEN));
					found++;
				}
		}
	}
	fclose(f);
	ck_assert_uint_eq(found, 6);
}

/* Three merchants, a channel with holder0 = M1. */
static struct mp_key mkey[4]; /* 1..3 */
static uint8_t mid[4][MP_ID_LEN];
static uint8_t cert_hash[MP_HASH_LEN], chan_id[MP_ID_LEN];
static struct mp_custody_segment seg0;
static struct mp_custody_channel ch;
static bool key_missing[4];
static struct mp_hasher *hasher;

static bool lookup_key(void *arg, const uint8_t merchant_id[MP_ID_LEN], uint64_t valid_until,
		       uint8_t pk[MP_PK_LEN])
{
	ck_assert_uint_eq(valid_until, *(const uint64_t *)arg);
	for (int m = 1; m <= 3; m++)
		if (memcmp(merchant_id, mid[m], MP_ID_LEN) == 0 && !key_missing[m]) {
			memcpy(pk, mkey[m].pk, MP_PK_LEN);
			return true;
		}
	return false;
}
static uint64_t key_until = 1800000000;

/* One Handoff as the test means to sign it; the valid chain's specs come from spec_init. */
struct hspec {
	uint32_t type, hseq, seg_seq, index;
	int signer, from, to; /* merchant numbers */
	const uint8_t *w, *head;
	uint8_t channel[MP_ID_LEN];
	bool prev_set; /* else prev_handoff_hash links to the statement built before */
	uint8_t prev[MP_HASH_LEN];
	size_t move_hash_len;
	bool unknown_field;
};

static struct hspec spec[3];
static MpSigned *chain[3];

static void spec_init(void)
{
	static const uint32_t at[3] = {2, 500, 999};
	static const int from[3] = {1, 2, 3}, to[3] = {2, 3, 1};
	for (int i = 0; i < 3; i++) {
		spec[i] = (struct hspec){.type = MP_STMT_HANDOFF,
					 .hseq = (uint32_t)i + 1,
					 .index = at[i],
					 .signer = from[i],
					 .from = from[i],
					 .to = to[i],
					 .w = word(at[i]),
					 .head = cert_hash,
					 .move_hash_len = MP_HASH_LEN};
		memcpy(spec[i].channel, chan_id, MP_ID_LEN);
	}
}

/* Sign raw bytes as a statement of the given type (so bodies protobuf-c would not produce can
 * be signed too). */
static MpSigned *sign_raw(const struct mp_key *k, uint32_t type, const uint8_t *body, size_t len)
{
	uint8_t *msg = malloc(6 + len);
	ck_assert_ptr_nonnull(msg);
	memcpy(msg, "MPAY1", 5);
	msg[5] = (uint8_t)type;
	memcpy(msg + 6, body, len);
	uint8_t sig[MP_SIG_LEN];
	ck_assert(mp_sign(k, msg, 6 + len, sig));
	free(msg);
	return mp_stmt_from_parts(type, body, len, k->pk, sig);
}

static MpSigned *build(const struct hspec *s, const uint8_t prev[MP_HASH_LEN])
{
	static const uint8_t move_hash[MP_HASH_LEN] = {0x4d};
	Micropay__V1__Handoff m = MICROPAY__V1__HANDOFF__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = s->seg_seq;
	pt.index = s->index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)s->w};
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)s->channel};
	m.hseq = s->hseq;
	m.from_mid = (ProtobufCBinaryData){MP_ID_LEN, mid[s->from]};
	m.to_mid = (ProtobufCBinaryData){MP_ID_LEN, mid[s->to]};
	m.point = &pt;
	m.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)s->head};
	m.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)prev};
	m.move_hash = (ProtobufCBinaryData){s->move_hash_len, (uint8_t *)move_hash};
	size_t len = micropay__v1__handoff__get_packed_size(&m);
	uint8_t *body = malloc(len + 3);
	ck_assert_ptr_nonnull(body);
	micropay__v1__handoff__pack(&m, body);
	if (s->unknown_field) { /* field 15, varint 1 */
		body[len++] = 15 << 3;
		body[len++] = 1;
	}
	MpSigned *out = sign_raw(&mkey[s->signer], s->type, body, len);
	free(body);
	return out;
}

static void build_chain(void)
{
	const uint8_t *prev = cert_hash;
	uint8_t h[MP_HASH_LEN];
	for (int i = 0; i < 3; i++) {
		mp_stmt_free(chain[i]);
		chain[i] = build(&spec[i], spec[i].prev_set ? spec[i].prev : prev);
		mp_stmt_hash(chain[i], h);
		prev = h;
	}
}

static void setup(void)
{
	load_vectors();
	for (int m = 1; m <= 3; m++) {
		uint8_t seed[MP_SK_LEN];
		memset(seed, 0x30 + m, sizeof(seed));
		ck_assert(mp_key_from_seed(&mkey[m], seed));
		memset(mid[m], 0xa0 + m, MP_ID_LEN);
		key_missing[m] = false;
	}
	memset(cert_hash, 0xce, sizeof(cert_hash));
	memset(chan_id, 0xc1, sizeof(chan_id));
	seg0 = (struct mp_custody_segment){.seg_seq = 0, .start = 0, .len = N};
	memcpy(seg0.nonce, nonce, MP_NONCE_LEN);
	memcpy(seg0.root, word(0), MP_HASH_LEN);
	memcpy(seg0.head, cert_hash, MP_HASH_LEN);
	ch = (struct mp_custody_channel){
	    .n = N, .key_valid_until = key_until, .segments = &seg0, .n_segments = 1};
	memcpy(ch.channel_id, chan_id, MP_ID_LEN);
	memcpy(ch.cert_hash, cert_hash, MP_HASH_LEN);
	memcpy(ch.holder0, mid[1], MP_ID_LEN);
	hasher = mp_hasher_new();
	ck_assert_ptr_nonnull(hasher);
	spec_init();
	build_chain();
}

static void teardown(void)
{
	for (int i = 0; i < 3; i++) {
		mp_stmt_free(chain[i]);
		chain[i] = NULL;
	}
	for (int m = 1; m <= 3; m++)
		mp_key_free(&mkey[m]);
	mp_hasher_free(hasher);
}

static struct mp_custody_event events[MP_MAX_HANDOFFS + 2];
static struct mp_custody_result res;

static enum mp_custody_rule run(size_t n)
{
	return mp_custody_verify(&ch, chain, n, lookup_key, &key_until, hasher, NULL, events, &res);
}

/* Rebuild the chain after a spec change; the chain must fail with rule at hseq. */
static void expect(enum mp_custody_rule rule, uint32_t hseq, const char *detail_part)
{
	build_chain();
	ck_assert_msg(run(3) == rule, "got %s (%s), want %s", mp_custody_rule_name(res.rule),
		      res.detail, mp_custody_rule_name(rule));
	ck_assert_int_eq(res.rule, rule);
	ck_assert_uint_eq(res.hseq, hseq);
	ck_assert_msg(strstr(res.detail, detail_part), "detail '%s' lacks '%s'", res.detail,
		      detail_part);
}

START_TEST(valid_chain_m1_m2_m3_m1)
{
	ck_assert_int_eq(run(3), MP_CUSTODY_OK);
	ck_assert_str_eq(res.detail, "3 handoffs and 0 transfers verified");
	static const int holder[4] = {1, 2, 3, 1};
	static const uint32_t at[4] = {0, 2, 500, 999};
	for (uint32_t h = 0; h <= 3; h++) {
		ck_assert_uint_eq(events[h].hseq, h);
		ck_assert_mem_eq(events[h].merchant_id, mid[holder[h]], MP_ID_LEN);
		ck_assert_uint_eq(events[h].point.seg_seq, 0);
		ck_assert_uint_eq(events[h].point.index, at[h]);
		ck_assert_mem_eq(events[h].point.w, word(at[h]), MP_HASH_LEN);
		uint8_t want[MP_HASH_LEN];
		if (h == 0)
			memcpy(want, cert_hash, MP_HASH_LEN);
		else
			mp_stmt_hash(chain[h - 1], want);
		ck_assert_mem_eq(events[h].stmt_hash, want, MP_HASH_LEN);
	}
	/* A prefix is a valid chain too; no Handoff at all is event 0 alone. */
	ck_assert_int_eq(run(1), MP_CUSTODY_OK);
	ck_assert_int_eq(run(0), MP_CUSTODY_OK);
	ck_assert_mem_eq(events[0].merchant_id, mid[1], MP_ID_LEN);
	ck_assert_mem_eq(events[0].point.w, word(0), MP_HASH_LEN);
}
END_TEST

/* A channel issued without holder0 and bound to M1 by the broker's Bind: Handoff 1 links to
 * stmt_hash(Bind), not to the cert; a chain linking to the cert is refused. */
START_TEST(bound_channel_links_to_the_bind)
{
	uint8_t bind_hash[MP_HASH_LEN];
	memset(bind_hash, 0xb1, sizeof(bind_hash));
	spec[0].prev_set = true;
	memcpy(spec[0].prev, bind_hash, MP_HASH_LEN);
	build_chain();
	ck_assert_int_eq(run(3), MP_CUSTODY_PREV_HASH);
	ch.bound = true;
	memcpy(ch.bind_hash, bind_hash, MP_HASH_LEN);
	ck_assert_int_eq(run(3), MP_CUSTODY_OK);
	ck_assert_mem_eq(events[0].stmt_hash, bind_hash, MP_HASH_LEN);
	ck_assert_mem_eq(events[0].merchant_id, mid[1], MP_ID_LEN);
	/* segments_head still names the cert: segment 0 comes from it either way */
	ck_assert_mem_eq(seg0.head, cert_hash, MP_HASH_LEN);
	spec[0].prev_set = false;
	build_chain();
	ck_assert_int_eq(run(3), MP_CUSTODY_PREV_HASH);
	ch.bound = false;
}
END_TEST

START_TEST(equal_indices_chain)
{
	/* at_index may equal the previous event's index (no payment in between). */
	spec[1].index = 2, spec[1].w = word(2);
	spec[2].index = 2, spec[2].w = word(2);
	build_chain();
	ck_assert_int_eq(run(3), MP_CUSTODY_OK);
}
END_TEST

START_TEST(too_many_handoffs)
{
	MpSigned *many[MP_MAX_HANDOFFS + 1] = {0};
	ck_assert_int_eq(mp_custody_verify(&ch, many, MP_MAX_HANDOFFS + 1, lookup_key, &key_until,
					   hasher, NULL, events, &res),
			 MP_CUSTODY_TOO_MANY);
	ck_assert_uint_eq(res.hseq, MP_MAX_HANDOFFS + 1);
	ck_assert_str_eq(res.detail, "257 handoffs, at most 256");
}
END_TEST

START_TEST(signer_without_cert)
{
	key_missing[2] = true;
	expect(MP_CUSTODY_SIGNER_UNKNOWN, 2, "no MerchantCert of expected signer");
}
END_TEST

START_TEST(wrong_type)
{
	spec[1].type = MP_STMT_MOVE;
	expect(MP_CUSTODY_TYPE, 2, "type 5, not 6");
}
END_TEST

START_TEST(signed_by_another_merchant)
{
	/* M1 signs Handoff 2 in M2's name: the expected signer is M2, from event 1. */
	spec[1].signer = 1;
	expect(MP_CUSTODY_SIGNER, 2, "signer_pk is not the key of merchant a2a2");
}
END_TEST

START_TEST(bad_signature)
{
	chain[1]->signature.data[7] ^= 0x10;
	ck_assert_int_eq(run(3), MP_CUSTODY_SIGNATURE);
	ck_assert_uint_eq(res.hseq, 2);
}
END_TEST

START_TEST(unknown_field_is_malformed)
{
	spec[2].unknown_field = true;
	expect(MP_CUSTODY_MALFORMED, 3, "not a strict Handoff");
}
END_TEST

START_TEST(short_field_is_malformed)
{
	spec[0].move_hash_len = MP_HASH_LEN - 1;
	expect(MP_CUSTODY_MALFORMED, 1, "wrong length");
}
END_TEST

START_TEST(other_channel)
{
	spec[1].channel[0] ^= 1;
	expect(MP_CUSTODY_CHANNEL, 2, "another channel");
}
END_TEST

START_TEST(wrong_hseq)
{
	spec[1].hseq = 3;
	expect(MP_CUSTODY_HSEQ, 2, "carries hseq 3");
}
END_TEST

START_TEST(broken_link)
{
	/* Handoff 2 links to the cert instead of Handoff 1. */
	spec[1].prev_set = true;
	memcpy(spec[1].prev, cert_hash, MP_HASH_LEN);
	expect(MP_CUSTODY_PREV_HASH, 2, "does not link to event 1");
}
END_TEST

START_TEST(first_link_must_be_cert)
{
	spec[0].prev_set = true;
	memset(spec[0].prev, 0x77, MP_HASH_LEN);
	expect(MP_CUSTODY_PREV_HASH, 1, "does not link to event 0");
}
END_TEST

START_TEST(from_mid_not_previous_holder)
{
	/* M2 signs (as expected) but names M1 as the giver. */
	spec[1].from = 1;
	expect(MP_CUSTODY_FROM_MID, 2, "not the holder of epoch 1");
}
END_TEST

START_TEST(self_handoff)
{
	spec[1].to = 2;
	spec[2].signer = spec[2].from = 2;
	expect(MP_CUSTODY_SELF_HANDOFF, 2, "hands off to itself");
}
END_TEST

START_TEST(later_segment_refused)
{
	spec[1].seg_seq = 1;
	expect(MP_CUSTODY_SEGMENT_ORDER, 2, "the latest is 0");
}
END_TEST

START_TEST(wrong_segments_head)
{
	static const uint8_t other[MP_HASH_LEN] = {1};
	spec[2].head = other;
	expect(MP_CUSTODY_SEGMENTS_HEAD, 3, "segments_head");
}
END_TEST

START_TEST(index_above_n)
{
	spec[2].index = N + 1;
	expect(MP_CUSTODY_OUT_OF_RANGE, 3, "at_index 1001 outside [0, 1000]");
}
END_TEST

START_TEST(index_goes_backwards)
{
	spec[2].index = 1, spec[2].w = word(1);
	expect(MP_CUSTODY_INDEX_BACKWARDS, 3, "at_index 1 below event 2's index 500");
}
END_TEST

START_TEST(exhausted_channel)
{
	spec[2].index = N, spec[2].w = word(N);
	expect(MP_CUSTODY_EXHAUSTED, 3, "exhausted");
}
END_TEST

START_TEST(w_at_does_not_verify)
{
	uint8_t bad[MP_HASH_LEN];
	memcpy(bad, word(500), MP_HASH_LEN);
	bad[0] ^= 1;
	spec[1].w = bad;
	expect(MP_CUSTODY_W_AT, 2, "w_at at index 500 does not verify");
	/* Event 2 carries the point that failed, for the caller's evidence. */
	ck_assert_uint_eq(events[2].point.index, 500);
	ck_assert_mem_eq(events[2].point.w, bad, MP_HASH_LEN);
	/* A word from another index is refused as well. */
	spec[1].w = word(999);
	expect(MP_CUSTODY_W_AT, 2, "does not verify");
}
END_TEST

START_TEST(w_at_checked_against_known_point)
{
	/* A known (caller-verified) point at 999 with another word: Handoff 3 at 999 must equal
	 * it, so no hashing and a refusal. */
	struct mp_custody_point known = {.seg_seq = 0, .index = 999};
	memset(known.w, 0x55, MP_HASH_LEN);
	ch.known = &known, ch.n_known = 1;
	ck_assert_int_eq(run(3), MP_CUSTODY_W_AT);
	ck_assert_uint_eq(res.hseq, 3);
	memcpy(known.w, word(999), MP_HASH_LEN);
	ck_assert_int_eq(run(3), MP_CUSTODY_OK);
}
END_TEST

START_TEST(stop_flag)
{
	atomic_bool stop = true;
	ck_assert_int_eq(
	    mp_custody_verify(&ch, chain, 3, lookup_key, &key_until, hasher, &stop, events, &res),
	    MP_CUSTODY_STOPPED);
	ck_assert_uint_eq(res.hseq, 1);
}
END_TEST

START_TEST(bad_channel_description)
{
	seg0.len = N - 1;
	ck_assert_int_eq(run(3), MP_CUSTODY_BAD_CHANNEL);
	seg0.len = N;
	seg0.head[0] ^= 1;
	ck_assert_int_eq(run(3), MP_CUSTODY_BAD_CHANNEL);
	seg0.head[0] ^= 1;
	ch.n_segments = 0;
	ck_assert_int_eq(run(3), MP_CUSTODY_BAD_CHANNEL);
}
END_TEST

START_TEST(point_verify_from_nearest)
{
	uint64_t cost;
	struct mp_custody_point pt = {.seg_seq = 0, .index = 500};
	memcpy(pt.w, word(500), MP_HASH_LEN);
	/* From the root only: 500 hashes. */
	ck_assert_int_eq(mp_custody_point_verify(&seg0, NULL, 0, &pt, hasher, NULL, &cost),
			 MP_POINT_VALID);
	ck_assert_uint_eq(cost, 500);
	/* With 999 known: 499 hashes down from it beat 500 up from the root. */
	struct mp_custody_point known[2] = {{.seg_seq = 0, .index = 999},
					    {.seg_seq = 0, .index = 2}};
	memcpy(known[0].w, word(999), MP_HASH_LEN);
	memcpy(known[1].w, word(2), MP_HASH_LEN);
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 1, &pt, hasher, NULL, &cost),
			 MP_POINT_VALID);
	ck_assert_uint_eq(cost, 499);
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_VALID);
	ck_assert_uint_eq(cost, 498);
	/* The same index as a verified point: equal words, no hashing. */
	pt.index = 999;
	memcpy(pt.w, word(999), MP_HASH_LEN);
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_VALID);
	ck_assert_uint_eq(cost, 0);
	pt.w[3] ^= 1;
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_INVALID);
	/* The top verifies from below (the vectors' w 1000); a point in another segment or
	 * beyond the segment is invalid without hashing. */
	pt.index = N;
	memcpy(pt.w, word(N), MP_HASH_LEN);
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_VALID);
	ck_assert_uint_eq(cost, 1);
	pt.index = N + 1;
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_INVALID);
	ck_assert_uint_eq(cost, 0);
	pt.index = 1, pt.seg_seq = 1;
	ck_assert_int_eq(mp_custody_point_verify(&seg0, known, 2, &pt, hasher, NULL, &cost),
			 MP_POINT_INVALID);
}
END_TEST

START_TEST(rule_names_and_codes)
{
	ck_assert_str_eq(mp_custody_rule_name(MP_CUSTODY_W_AT), "w_at");
	ck_assert_str_eq(mp_custody_rule_name(MP_CUSTODY_SELF_HANDOFF), "self_handoff");
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_OK), MP_ST(OK));
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_W_AT), MP_ST(BAD_CHAIN));
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_SIGNER), MP_ST(BAD_SIG));
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_EXHAUSTED), MP_ST(OUT_OF_RANGE));
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_TOO_MANY), MP_ST(LIMIT));
	ck_assert_int_eq(mp_custody_rule_code(MP_CUSTODY_PREV_HASH), MP_ST(MALFORMED));
}
END_TEST

static Suite *custody_suite(void)
{
	Suite *s = suite_create("custody");
	TCase *tc = tcase_create("chain");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_chain_m1_m2_m3_m1);
	tcase_add_test(tc, equal_indices_chain);
	tcase_add_test(tc, too_many_handoffs);
	tcase_add_test(tc, signer_without_cert);
	tcase_add_test(tc, wrong_type);
	tcase_add_test(tc, signed_by_another_merchant);
	tcase_add_test(tc, bad_signature);
	tcase_add_test(tc, unknown_field_is_malformed);
	tcase_add_test(tc, short_field_is_malformed);
	tcase_add_test(tc, other_channel);
	tcase_add_test(tc, wrong_hseq);
	tcase_add_test(tc, broken_link);
	tcase_add_test(tc, first_link_must_be_cert);
	tcase_add_test(tc, from_mid_not_previous_holder);
	tcase_add_test(tc, self_handoff);
	tcase_add_test(tc, bound_channel_links_to_the_bind);
	tcase_add_test(tc, later_segment_refused);
	tcase_add_test(tc, wrong_segments_head);
	tcase_add_test(tc, index_above_n);
	tcase_add_test(tc, index_goes_backwards);
	tcase_add_test(tc, exhausted_channel);
	tcase_add_test(tc, w_at_does_not_verify);
	tcase_add_test(tc, w_at_checked_against_known_point);
	tcase_add_test(tc, stop_flag);
	tcase_add_test(tc, bad_channel_description);
	tcase_add_test(tc, point_verify_from_nearest);
	tcase_add_test(tc, rule_names_and_codes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(custody_suite());
}
