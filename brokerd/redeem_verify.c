#include "redeem_verify.h"

#include <openssl/crypto.h>
#include <string.h>

#include "db.h"
#include "util.h"

/* Hashes walked between two looks at the stop flag: about 10 ms. */
#define WALK_CHUNK 65536

void redeem_sig_work(void *arg, const atomic_bool *stop)
{
	struct redeem_sig_job *job = arg;
	ProtobufCMessage *body = NULL;
	job->code = mp_stmt_open(job->stmt, MP_STMT_REDEEM, job->pk,
				 &micropay__v1__redeem__descriptor, &body);
	job->body = (Micropay__V1__Redeem *)body;
}

bool chain_task_init(struct chain_task *t, size_t claim, const MpPoint *pt, const PGresult *res,
		     int row)
{
	*t = (struct chain_task){.claim = claim};
	int64_t c = db_get_i64(res, row, "seg_start");
	bool has_lo = !db_is_null(res, row, "lo_idx");
	bool has_hi = !db_is_null(res, row, "hi_idx");
	int64_t lo = has_lo ? db_get_i64(res, row, "lo_idx") : 0;
	int64_t hi = has_hi ? db_get_i64(res, row, "hi_idx") : 0;
	int64_t j = pt->index;
	if ((has_lo && (lo < c || lo > j)) || (has_hi && hi < j) || (!has_lo && !has_hi) ||
	    !db_get_bytes(res, row, "nonce", t->nonce, MP_NONCE_LEN))
		return false;
	if (has_hi && (!has_lo || hi - j < j - lo)) {
		/* the claim is below a verified point: hash that point down to the claim */
		t->a = (uint32_t)(j - c), t->b = (uint32_t)(hi - c);
		memcpy(t->w_a, pt->w.data, MP_HASH_LEN);
		t->cost = (uint64_t)(hi - j);
		return db_get_bytes(res, row, "hi_w", t->w_b, MP_HASH_LEN);
	}
	t->a = (uint32_t)(lo - c), t->b = (uint32_t)(j - c);
	memcpy(t->w_b, pt->w.data, MP_HASH_LEN);
	t->cost = (uint64_t)(j - lo);
	return db_get_bytes(res, row, "lo_w", t->w_a, MP_HASH_LEN);
}

/* mp_chain_verify in chunks, looking at *stop between them. */
static bool verify_task(struct mp_hasher *h, const struct chain_task *t, const atomic_bool *stop)
{
	uint8_t x[MP_HASH_LEN];
	memcpy(x, t->w_b, MP_HASH_LEN);
	for (uint32_t k = t->b; k > t->a;) {
		uint32_t step = k - t->a < WALK_CHUNK ? k - t->a : WALK_CHUNK;
		mp_chain_walk(h, t->nonce, k, x, k - step, x);
		k -= step;
		if (atomic_load(stop))
			return false;
	}
	return CRYPTO_memcmp(x, t->w_a, MP_HASH_LEN) == 0;
}

void redeem_chain_work(void *arg, const atomic_bool *stop)
{
	struct redeem_chain_job *job = arg;
	struct mp_hasher *h = mp_hasher_new(); /* one per job: hashers are not shared */
	size_t done = 0;
	for (; h && done < job->n && !atomic_load(stop); done++)
		job->tasks[done].ok = verify_task(h, &job->tasks[done], stop);
	job->complete = h && done == job->n && !atomic_load(stop);
	mp_hasher_free(h);
}
