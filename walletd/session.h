/* An open channel at its holder, for another exchange than paying (pay.c): TLS to the holder
 * whose certificate must name it, Open with the cert and the channel's segments, the OpenAck
 * checked against our own chain, stored in-flight Pays resent verbatim; then the continuation
 * runs with the connection open. Errors are answered on the admin request as "<verb>: ..." and
 * close the connection; the session frees the continuation's argument when it ends. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "net.h"
#include "proto.h"
#include "util.h"

struct pay_op;
struct wallet;
struct wchannel;
struct mp_admin_req;

typedef void (*wallet_session_fn)(struct pay_op *s, void *arg);

/* False (err filled, arg not taken) if the connection could not even start. */
bool wallet_session_open(struct wallet *w, struct mp_admin_req *req, const char *verb,
			 struct wchannel *ch, const char *endpoint, wallet_session_fn then,
			 void *arg, void (*free_arg)(void *arg), char *err, size_t errlen);
/* The same at merchant target rather than the holder: the channel is handed off to it (a
 * Move signed by the owner key, the Handoff checked in its OpenAck, as pay does). */
bool wallet_session_open_at(struct wallet *w, struct mp_admin_req *req, const char *verb,
			    struct wchannel *ch, const uint8_t target[MP_ID_LEN],
			    const char *endpoint, wallet_session_fn then, void *arg,
			    void (*free_arg)(void *arg), char *err, size_t errlen);
struct mp_conn *wallet_session_conn(struct pay_op *s);
struct wallet *wallet_session_wallet(struct pay_op *s);
/* session_call.c: send env to the holder; fn(conn, answer or NULL, s) once, the answer due
 * within [wallet] idle_timeout (else the session fails "no answer to <what> ..."). False if
 * it could not be sent (nothing pending). */
bool wallet_session_call(struct pay_op *s, MpEnvelope *env, mp_reply_fn fn, const char *what);
/* Pay `units` units in all on the open session (after the in-flight Pays were resolved): new
 * Pays of at most max_jump each, with this order_ref, each persisted in flight before it is
 * sent, exactly like pay; paid(s, arg) once all are accepted (OK or UNDERPAID). A refusal, a
 * deadline or a lost connection fails the session as pay does (the answer says how many units
 * were accepted). False (the session failed) if nothing could be started. */
bool wallet_session_pay(struct pay_op *s, uint32_t units, const uint8_t *order_ref, size_t len,
			wallet_session_fn paid);
/* What the continuation has done so far (into out[len]), added to every failure's answer. */
typedef void (*wallet_session_progress_fn)(void *arg, char *out, size_t len);
void wallet_session_set_progress(struct pay_op *s, wallet_session_progress_fn fn);
/* Units of new Pays accepted on this session so far. */
uint32_t wallet_session_units_paid(const struct pay_op *s);
/* The holder's max_jump from its OpenAck: the most units one Pay may carry. */
uint32_t wallet_session_max_jump(const struct pay_op *s);
/* The admin request the session answers (e.g. for its progress lines). */
struct mp_admin_req *wallet_session_req(struct pay_op *s);
/* The continuation's argument. */
void *wallet_session_arg(struct pay_op *s);
/* The OpenAck's point lay in our current segment and matched our chain (ch->last took it). */
bool wallet_session_in_segment(const struct pay_op *s);
/* The channel of the session, and the OpenAck's point index (0 before it came). */
const struct wchannel *wallet_session_channel(const struct pay_op *s);
uint32_t wallet_session_point(const struct pay_op *s);
/* offer_cancel.c, after the in-flight Pays were resent, when the OpenAck named an unpaid Offer
 * holding the channel (held_by_offer, the session's copy): cancelled if the wallet never paid
 * it, then wallet_session_held_done; a failure fails the session. */
void wallet_session_cancel_held(struct pay_op *s, const MpSigned *held);
/* offer_cancel.c: an Offer of ours signed by the holder in our segment, made at the last index
 * the holder acknowledged, OFFERED (never paid) or PAYING (its Pay not acknowledged: maybe
 * still in flight), may hold the channel there (its holder hands off nothing while it does);
 * true too when the store cannot tell. */
bool wallet_offer_may_hold(struct wallet *w, const struct wchannel *ch);
/* The session resent an in-flight Pay naming this order_ref (it may have paid that Offer). */
bool wallet_session_resent_ref(const struct pay_op *s, const uint8_t *ref, size_t len);
/* The held Offer dealt with: the session goes on (new Pays, or the continuation). */
void wallet_session_held_done(struct pay_op *s);
/* End the session without answering: the continuation's argument and the admin request are
 * the caller's from now on (the connection closes, the channel is no longer busy). */
void *wallet_session_handover(struct pay_op *s, struct mp_admin_req **req);
/* The OpenAck's custody event (a Handoff or a Bind), or NULL. */
const MpSigned *wallet_session_custody_event(const struct pay_op *s);
/* Answer the admin request with an error and close. */
void wallet_session_fail(struct pay_op *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Answer the admin request (steals result) and close. */
void wallet_session_reply(struct pay_op *s, json_t *result);

/* The holder's endpoint: the `endpoint` parameter, else the one in the holder's MerchantCert
 * we hold. False (the admin request answered "<verb>: ...<hint>") when neither is there. */
bool wallet_session_endpoint(struct mp_admin_req *req, json_t *params, const struct wallet *w,
			     const struct wchannel *ch, const char *verb, const char *hint,
			     char *out, size_t len);
/* The endpoint in the holder's MerchantCert we hold (checked under the broker key); false if
 * we hold none. */
bool wallet_holder_endpoint(const struct wallet *w, const struct wchannel *ch, char *out,
			    size_t len);
/* Every Pay of ch the holder had to answer is answered (the Open resent them): true; else the
 * session fails with "... not <doing>" and false. */
bool wallet_session_pays_resolved(struct pay_op *s, const struct wchannel *ch, const char *doing);
