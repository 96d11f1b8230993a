#include "sign_job.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "workers.h"

struct sign_job {
	const struct mp_key *key;
	enum mp_stmt_type type;
	uint8_t *body;
	size_t body_len;
	MpSigned *stmt; /* the worker's result */
	mp_signed_fn done;
	void *arg;
};

static void sign_work(void *arg, const atomic_bool *stop)
{
	struct sign_job *j = arg;
	if (!atomic_load(stop))
		j->stmt = mp_stmt_sign_packed(j->key, j->type, j->body, j->body_len);
}

static void sign_done(void *arg, enum mp_job_outcome outcome)
{
	struct sign_job *j = arg;
	MpSigned *s = j->stmt;
	if (outcome == MP_JOB_CANCELLED) {
		mp_stmt_free(s);
		s = NULL;
	}
	mp_signed_fn done = j->done;
	void *done_arg = j->arg;
	free(j->body);
	free(j);
	done(done_arg, s);
}

bool mp_sign_job_submit(struct mp_workers *w, const struct mp_key *key, enum mp_stmt_type type,
			const ProtobufCMessage *body, mp_signed_fn done, void *arg)
{
	size_t len = 0;
	uint8_t *bytes = mp_stmt_pack_body(body, &len);
	return bytes && mp_sign_packed_job_submit(w, key, type, bytes, len, done, arg);
}

bool mp_sign_packed_job_submit(struct mp_workers *w, const struct mp_key *key,
			       enum mp_stmt_type type, uint8_t *body, size_t len, mp_signed_fn done,
			       void *arg)
{
	struct sign_job *j = calloc(1, sizeof(*j));
	if (j) {
		*j = (struct sign_job){.key = key,
				       .type = type,
				       .body = body,
				       .body_len = len,
				       .done = done,
				       .arg = arg};
		if (mp_workers_submit(w, sign_work, sign_done, j))
			return true;
	}
	free(body);
	free(j);
	return false;
}

struct verify_job {
	const MpSigned *stmt;
	enum mp_stmt_type type;
	uint8_t pk[MP_PK_LEN];
	const ProtobufCMessageDescriptor *desc;
	MpCode code;
	ProtobufCMessage *body;
	mp_opened_fn done;
	void *arg;
};

static void verify_work(void *arg, const atomic_bool *stop)
{
	struct verify_job *j = arg;
	if (!atomic_load(stop))
		j->code = mp_stmt_open(j->stmt, j->type, j->pk, j->desc, &j->body);
}

static void verify_done(void *arg, enum mp_job_outcome outcome)
{
	struct verify_job *j = arg;
	MpCode code = j->code;
	ProtobufCMessage *body = j->body;
	if (outcome == MP_JOB_CANCELLED || code != MP_ST(OK)) {
		if (body)
			protobuf_c_message_free_unpacked(body, NULL);
		body = NULL;
		if (outcome == MP_JOB_CANCELLED)
			code = MP_ST(INTERNAL);
	}
	mp_opened_fn done = j->done;
	void *done_arg = j->arg;
	free(j);
	done(done_arg, code, body);
}

bool mp_verify_job_submit(struct mp_workers *w, const MpSigned *stmt, enum mp_stmt_type type,
			  const uint8_t pk[MP_PK_LEN], const ProtobufCMessageDescriptor *desc,
			  mp_opened_fn done, void *arg)
{
	struct verify_job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	*j = (struct verify_job){.stmt = stmt,
				 .type = type,
				 .desc = desc,
				 .code = MP_ST(INTERNAL),
				 .done = done,
				 .arg = arg};
	memcpy(j->pk, pk, MP_PK_LEN);
	if (mp_workers_submit(w, verify_work, verify_done, j))
		return true;
	free(j);
	return false;
}
