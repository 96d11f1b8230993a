/* The opening of a self-signed registration (RegisterAccount, RegisterMerchant; protocol.md
 * section 2: checked against the key in its own body), with the signature on the worker pool.
 * Verify before parse here too: the key is read from the body's framing only
 * (common/pb_peek.c), the signature checked under exactly that key and type on a worker
 * (verify_job.h), and only then is the body parsed, whose key must be the one the signature
 * was checked under.
 *
 *   register_open_submit --(no key of 32 bytes in the framing)--> MALFORMED, done never called
 *      |                 --(queue full)--> LIMIT, done never called (the refusal is counted)
 *      v OK
 *   worker: mp_stmt_open under the peeked key
 *      v
 *   loop: done(arg, OK + body | BAD_SIG / MALFORMED (also: the parsed key differs) |
 *              INTERNAL (the pool stopped first))
 *
 * s is the job's to read until done: the caller keeps its own copy alive meanwhile. */
#pragma once
#include <stddef.h>

#include "broker.h"
#include "sign_job.h"

MpCode register_open_submit(struct broker *b, const MpSigned *s, enum mp_stmt_type type,
			    const ProtobufCMessageDescriptor *desc, size_t key_offset,
			    mp_opened_fn done, void *arg);
