/* A statement's signature and strict parse on the worker pool for brokerd's handlers
 * (common/sign_job.h, mp_verify_job_submit), counted: every check that ran is
 * micropay_broker_verifications_total{where="worker"}, every request refused because the
 * queue was full is micropay_broker_worker_queue_refusals_total (docs/keys.md, "Threads and
 * the token").
 *
 *   broker_verify_submit --(queue full / no memory: false, done never called, refusal
 *      | counted)--> the caller answers LIMIT busy (BROKER_BUSY_VERIFYING), storing nothing
 *      v
 *   worker: mp_stmt_open(stmt, type, pk, desc)
 *      v
 *   loop: done(arg, code, body) -- INTERNAL: the pool stopped first (shutdown)
 *
 * stmt is the job's to read until done: the caller keeps it alive and unchanged meanwhile (it
 * is the caller's own copy, never the request Envelope's, which is freed when the handler
 * returns). The job never follows arg: a connection that closes meanwhile only loses its
 * answer (the caller's broker_call holds a reference to it). */
#pragma once
#include <stdbool.h>

#include "broker.h"
#include "sign_job.h"

#define BROKER_BUSY_VERIFYING "broker busy: verification queue full, retry later"

bool broker_verify_submit(struct broker *b, const MpSigned *stmt, enum mp_stmt_type type,
			  const uint8_t pk[MP_PK_LEN], const ProtobufCMessageDescriptor *desc,
			  mp_opened_fn done, void *arg);
