/* Signing and verifying statements on the worker pool (common/workers.h), so that an Ed25519
 * signature, made in memory or by a PKCS#11 token (about 1.8 ms with SoftHSM2), never runs on
 * an event loop while peers are served (docs/keys.md, "Threads and the token").
 *
 *   mp_sign_job_submit: body serialised on the loop (the job owns the bytes)
 *        --(queue full / no memory: false, done never called)--> caller answers LIMIT busy
 *        v
 *   worker: mp_stmt_sign_packed under the daemon's key
 *        v
 *   loop: done(arg, Signed or NULL) -- NULL: signing failed or the pool stopped first
 *
 *   mp_verify_job_submit: the statement is the job's to read until done (the caller does not
 *   touch or free it meanwhile) --> worker: mp_stmt_open --> loop: done(arg, code, body)
 *
 * The key must outlive the pool (each daemon frees its pool before its key): the worker reads
 * it, never changes it. What done's arg points to is the caller's: the job never touches it,
 * so a connection closing meanwhile changes nothing here (the caller holds its own reference). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stmt.h"

struct mp_workers;

/* stmt: the signed statement (the callee owns it), or NULL (signing failed or cancelled). */
typedef void (*mp_signed_fn)(void *arg, MpSigned *stmt);
/* code: OK, BAD_SIG, MALFORMED, or INTERNAL when cancelled; body (the callee frees it with
 * protobuf_c_message_free_unpacked) only with OK. */
typedef void (*mp_opened_fn)(void *arg, MpCode code, ProtobufCMessage *body);

bool mp_sign_job_submit(struct mp_workers *w, const struct mp_key *key, enum mp_stmt_type type,
			const ProtobufCMessage *body, mp_signed_fn done, void *arg);
/* The same for a body already serialised (malloc'd): the job owns body from here, also when
 * false is returned (then freed). */
bool mp_sign_packed_job_submit(struct mp_workers *w, const struct mp_key *key,
			       enum mp_stmt_type type, uint8_t *body, size_t len, mp_signed_fn done,
			       void *arg);
bool mp_verify_job_submit(struct mp_workers *w, const MpSigned *stmt, enum mp_stmt_type type,
			  const uint8_t pk[MP_PK_LEN], const ProtobufCMessageDescriptor *desc,
			  mp_opened_fn done, void *arg);
