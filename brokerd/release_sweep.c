/* Forcing due releases (protocol.md section 6 "Release"; docs/release.md): in every settlement
 * sweep pass (sweep.c), after the disputes, the PENDING releases whose release_at has passed
 * at the pass's time are listed (mp_release_due, the oldest first) and each forced on its own:
 *
 *   listing --(ids)--> PREPARE (db, under the channel's row lock: settled first, DONE if the
 *      | holder answered; still PENDING and due: the holder's highest credited point of the
 *      | epoch) --(not due / DONE)--> the next one
 *      v
 *   SIGN [worker pool]: ForcedClose {channel_id, epoch, point} under the broker key
 *      v
 *   FORCE (db, one transaction under the channel's row lock): the point still the highest
 *      | (else 'moved': nothing stored, the next pass signs again), the early refund of
 *      | mp_refund_early itself with the ForcedClose as its Close, FORCED --> the next one
 *   listing --(database error)--> done (counted; the next pass tries again)
 *   a step fails --> logged, counted, the next one
 *
 * The ForcedClose is stored in the transaction that changes the state and pays the refund,
 * before anything sends it (release_deliver.c reads it from there). A release no longer
 * PENDING is left as it is, so a retried pass, or a broker killed between signing and
 * storing, forces each release exactly once (a signature never stored is never sent). */
#include "release_sweep.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "sign_job.h"
#include "util.h"

struct release_sweep {
	struct broker *b;
	uint64_t now;
	uint8_t (*due)[MP_ID_LEN];
	size_t n, next;
	uint64_t forced, failures;
	/* the point of the release being forced */
	uint32_t epoch, seg_seq, final_index;
	uint8_t w[MP_HASH_LEN];
	char ch[MP_HEX_ID_LEN + 1];
	void (*done)(void *arg, uint64_t forced, uint64_t failures);
	void *arg;
};

static void finish(struct release_sweep *s)
{
	if (s->forced || s->failures)
		log_info("sweep at %llu: %llu releases forced, %llu failed",
			 (unsigned long long)s->now, (unsigned long long)s->forced,
			 (unsigned long long)s->failures);
	void (*done)(void *, uint64_t, uint64_t) = s->done;
	void *arg = s->arg;
	uint64_t forced = s->forced, failures = s->failures;
	free(s->due);
	free(s);
	done(arg, forced, failures);
}

static void step(struct release_sweep *s);

static void next(struct release_sweep *s, const char *failure)
{
	if (failure) {
		log_warn("sweep: release %s: %s; left for the next pass", s->ch, failure);
		s->failures++;
	}
	s->next++;
	step(s);
}

/* ---- FORCE ---- */

static void on_forced(const PGresult *res, const char *error, void *arg)
{
	struct release_sweep *s = arg;
	if (!res || PQntuples(res) != 1) {
		next(s, error ? error : "unexpected result storing the ForcedClose");
		return;
	}
	const char *outcome = db_get_text(res, 0, "outcome");
	const char *detail = db_get_text(res, 0, "detail");
	if (outcome && strcmp(outcome, "FORCED") == 0) {
		log_info("sweep: release %s FORCED: ForcedClose of epoch %u at index %u, early "
			 "refund %lld",
			 s->ch, s->epoch, s->final_index, (long long)db_get_i64(res, 0, "refund"));
		s->forced++;
		next(s, NULL);
	} else if (outcome && strcmp(outcome, "refused") == 0) {
		next(s, detail ? detail : "early refund refused");
	} else {
		log_info("sweep: release %s: %s%s%s", s->ch, outcome ? outcome : "?",
			 detail && *detail ? ": " : "", detail ? detail : "");
		next(s, NULL);
	}
}

static void on_signed(void *arg, MpSigned *fc)
{
	struct release_sweep *s = arg;
	if (!fc) {
		next(s, "signing the ForcedClose failed");
		return;
	}
	s->b->stats.signatures_worker++;
	size_t len = 0;
	uint8_t *bytes = mp_stmt_encode(fc, &len);
	mp_stmt_free(fc);
	if (!bytes) {
		next(s, "out of memory");
		return;
	}
	struct db_params p = {0};
	db_param_bytes(&p, s->due[s->next], MP_ID_LEN);
	db_param_u64(&p, s->seg_seq);
	db_param_u64(&p, s->final_index);
	db_param_bytes(&p, s->w, MP_HASH_LEN);
	db_param_bytes(&p, bytes, len);
	db_param_u64(&p, s->now);
	const char *refused = db_call(s->b->db, "release_force", &p, on_forced, s);
	free(bytes);
	if (refused) {
		s->failures++;
		log_warn("sweep: cannot force releases: %s; left for the next pass", refused);
		finish(s);
	}
}

/* ---- SIGN ---- */

static void sign(struct release_sweep *s)
{
	Micropay__V1__Point pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = s->seg_seq;
	pt.index = s->final_index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, s->w};
	Micropay__V1__ForcedClose fc = MICROPAY__V1__FORCED_CLOSE__INIT;
	fc.channel_id = (ProtobufCBinaryData){MP_ID_LEN, s->due[s->next]};
	fc.epoch = s->epoch;
	fc.point = &pt;
	if (!mp_sign_job_submit(s->b->workers, &s->b->key, MP_STMT_FORCED_CLOSE, &fc.base,
				on_signed, s)) {
		s->b->stats.worker_queue_refusals++;
		next(s, "worker queue full");
	}
}

/* ---- PREPARE ---- */

static void on_prepared(const PGresult *res, const char *error, void *arg)
{
	struct release_sweep *s = arg;
	if (!res || PQntuples(res) != 1) {
		next(s, error ? error : "unexpected result deciding the point");
		return;
	}
	if (!db_get_bool(res, 0, "go")) {
		const char *state = db_get_text(res, 0, "state");
		log_info("sweep: release %s %s", s->ch, state ? state : "gone");
		next(s, NULL);
		return;
	}
	s->epoch = (uint32_t)db_get_i64(res, 0, "epoch");
	s->seg_seq = (uint32_t)db_get_i64(res, 0, "seg_seq");
	s->final_index = (uint32_t)db_get_i64(res, 0, "final_index");
	if (!db_get_bytes(res, 0, "w", s->w, MP_HASH_LEN)) {
		next(s, "the point's word unreadable");
		return;
	}
	sign(s);
}

static void step(struct release_sweep *s)
{
	if (s->next == s->n) {
		finish(s);
		return;
	}
	mp_hex_encode(s->due[s->next], MP_ID_LEN, s->ch);
	struct db_params p = {0};
	db_param_bytes(&p, s->due[s->next], MP_ID_LEN);
	db_param_u64(&p, s->now);
	const char *refused = db_call(s->b->db, "release_prepare", &p, on_prepared, s);
	if (refused) {
		log_warn("sweep: cannot force releases: %s; left for the next pass", refused);
		s->failures++;
		finish(s);
	}
}

static void on_listed(const PGresult *res, const char *error, void *arg)
{
	struct release_sweep *s = arg;
	if (!res) {
		log_warn("sweep: cannot list due releases: %s", error ? error : "no result");
		s->failures++;
		finish(s);
		return;
	}
	int rows = PQntuples(res);
	s->due = calloc((size_t)rows + 1, sizeof(*s->due));
	if (!s->due) {
		s->failures++;
		finish(s);
		return;
	}
	for (int i = 0; i < rows; i++)
		if (db_get_bytes(res, i, "channel_id", s->due[s->n], MP_ID_LEN))
			s->n++;
	step(s);
}

bool release_sweep_run(struct broker *b, uint64_t now, uint32_t batch,
		       void (*done)(void *arg, uint64_t forced, uint64_t failures), void *arg)
{
	struct release_sweep *s = calloc(1, sizeof(*s));
	if (!s)
		return false;
	*s = (struct release_sweep){.b = b, .now = now, .done = done, .arg = arg};
	struct db_params p = {0};
	db_param_u64(&p, now);
	db_param_u64(&p, batch);
	const char *refused = db_call(b->db, "release_due", &p, on_listed, s);
	if (refused) {
		log_warn("sweep: cannot list due releases: %s", refused);
		free(s);
		return false;
	}
	return true;
}
