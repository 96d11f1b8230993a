#include "verify_job.h"

#include <stdlib.h>

#include "log.h"
#include "workers.h"

struct counted_verify {
	struct broker *b;
	mp_opened_fn done;
	void *arg;
};

static void on_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct counted_verify *cv = arg;
	if (code != MP_ST(INTERNAL)) /* INTERNAL: cancelled before or while it ran */
		cv->b->stats.verifications_worker++;
	mp_opened_fn done = cv->done;
	void *done_arg = cv->arg;
	free(cv);
	done(done_arg, code, body);
}

bool broker_verify_submit(struct broker *b, const MpSigned *stmt, enum mp_stmt_type type,
			  const uint8_t pk[MP_PK_LEN], const ProtobufCMessageDescriptor *desc,
			  mp_opened_fn done, void *arg)
{
	struct counted_verify *cv = malloc(sizeof(*cv));
	if (cv) {
		*cv = (struct counted_verify){.b = b, .done = done, .arg = arg};
		if (mp_verify_job_submit(b->workers, stmt, type, pk, desc, on_opened, cv))
			return true;
		free(cv);
	}
	b->stats.worker_queue_refusals++;
	log_warn("verification of a statement of type %d refused: worker queue full (%u waiting)",
		 (int)type, mp_workers_queued(b->workers));
	return false;
}
