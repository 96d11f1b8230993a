/* Bind-on-first-use, merchant side (protocol.md sections 4 and 6, "Bind"): a wallet opens
 * here with a Move (from_epoch 0, to_mid = us) for a channel whose cert has no holder0. We ask
 * the broker over the broker link (mutual TLS: our certificate names us) with a BindReq
 * carrying the channel_id and the Move (the customer's consent). The broker's Bind, verified
 * under the broker key from our configuration, is stored with the channel's record and the
 * Open acknowledged once that is durable, with the Bind as the custody event (open.c).
 *
 *   START --Open carries segments--> VERIFYING (worker: bind_verify.c, the broker-signed
 *         Transfer/Cap pairs and the Move of the last segment's owner)
 *   VERIFYING --valid--> START (asking as below)   VERIFYING --refused--> DONE: the typed error
 *   START --link up--> ASKING (BindReq)      START --link down--> WAITING (poll the link)
 *   WAITING --link up--> ASKING              ASKING --no answer (link lost)--> WAITING
 *   ASKING --OK / DUPLICATE_OK, a Bind naming us--> HOLD (open_hold: record + Bind + the
 *         verified pairs, in the last segment, in the group commit; the OpenAck after the
 *         commit) --> DONE
 *   ASKING --NOT_HOLDER with a Bind naming another merchant--> DONE: the Open answered
 *         NOT_HOLDER carrying that Bind (the wallet pays there)
 *   ASKING --any other answer--> DONE: the Open answered with the broker's refusal
 *   any state --deadline (broker connect_timeout + answer_timeout)--> DONE: INTERNAL
 * The struct lives until DONE and neither a broker call nor a worker job refers to it. At most
 * MAX_BINDINGS at once (another Open gets LIMIT).
 *
 * Segments (a channel transferred through the broker before any Bind; docs/transfer.md): the
 * pairs are verified before the broker is asked, so a forged or inconsistent list binds
 * nothing. The broker verifies the same Move under its own record of the current segment's
 * owner (brokerd/bind.c, and again under the channel row lock in mp_bind); owner keys are never
 * reused, so a Bind means our last verified segment is the broker's current one, and a list
 * older than the broker's is refused (BAD_SIG) without a Bind. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind_verify.h"
#include "broker_link.h"
#include "log.h"
#include "merchant.h"
#include "segments.h"
#include "stmt.h"
#include "workers.h"

#define MAX_BINDINGS  256
#define POLL_INTERVAL 100000 /* microseconds between looks at a broker link that is down */

struct binding {
	struct merchant *m;
	struct mp_conn *wallet; /* referenced until answered */
	uint64_t request_id;
	MpSigned *cert, *move;
	uint8_t channel_id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	struct event *deadline, *poll;
	struct segment_row *rows; /* the verified pairs 1..n_rows: the channel's segments */
	size_t n_rows;
	bool done, calling, verifying;
	struct binding *next; /* m->binds */
};

static void maybe_free(struct binding *bd)
{
	if (!bd->done || bd->calling || bd->verifying)
		return;
	for (struct binding **pp = &bd->m->binds; *pp; pp = &(*pp)->next) {
		if (*pp == bd) {
			*pp = bd->next;
			bd->m->n_binds--;
			break;
		}
	}
	if (bd->deadline)
		event_free(bd->deadline);
	if (bd->poll)
		event_free(bd->poll);
	mp_stmt_free(bd->cert);
	mp_stmt_free(bd->move);
	segment_rows_free(bd->rows, bd->n_rows);
	free(bd);
}

/* End: the Open is answered here unless evidence says it is answered elsewhere (HOLD). */
static void finish(struct binding *bd, MpCode code, const char *detail, const MpSigned *evidence)
{
	if (bd->done)
		return;
	bd->done = true;
	if (code != MP_ST(OK)) {
		log_warn("channel %s: bind refused: %s %s", bd->hex, mp_code_name(code), detail);
		if (mp_conn_is_open(bd->wallet))
			reply_open_evidence(bd->wallet, bd->request_id, code, detail, bd->m,
					    evidence);
	}
	mp_conn_unref(bd->wallet);
	bd->wallet = NULL;
	if (bd->deadline)
		evtimer_del(bd->deadline);
	if (bd->poll)
		evtimer_del(bd->poll);
	maybe_free(bd);
}

/* A Bind from the broker: broker key, this channel; *mid the merchant it names. */
static bool bind_check(const struct binding *bd, const MpSigned *bind, uint8_t mid[MP_ID_LEN])
{
	ProtobufCMessage *body;
	if (!bind || mp_stmt_open(bind, MP_STMT_BIND, bd->m->broker_pk,
				  &micropay__v1__bind__descriptor, &body) != MP_ST(OK))
		return false;
	const Micropay__V1__Bind *b = (const Micropay__V1__Bind *)body;
	bool ok = mp_bytes_len_is(b->channel_id, MP_ID_LEN) &&
		  mp_bytes_len_is(b->merchant_id, MP_ID_LEN) &&
		  memcmp(b->channel_id.data, bd->channel_id, MP_ID_LEN) == 0;
	if (ok)
		memcpy(mid, b->merchant_id.data, MP_ID_LEN);
	protobuf_c_message_free_unpacked(body, NULL);
	return ok;
}

/* HOLD: the cert was verified at Open; parsed again from our copy. */
static void hold(struct binding *bd, const MpSigned *bind)
{
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, bd->cert->body.data, bd->cert->body.len);
	if (!cc) {
		finish(bd, MP_ST(INTERNAL), "cannot read the channel's cert", NULL);
		return;
	}
	log_info("channel %s: bound here by the broker", bd->hex);
	if (mp_conn_is_open(bd->wallet))
		open_hold(bd->m, bd->wallet, bd->request_id, bd->cert, cc, bind, bd->rows,
			  bd->n_rows);
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
	finish(bd, MP_ST(OK), "", NULL);
}

static void on_answer(const Micropay__V1__BindResp *resp, struct binding *bd)
{
	uint8_t mid[MP_ID_LEN];
	char detail[200], mhex[MP_HEX_ID_LEN + 1];
	MpCode code = resp->status ? resp->status->code : MP_ST(INTERNAL);
	const char *why = resp->status && resp->status->detail ? resp->status->detail : "";
	bool ours = bind_check(bd, resp->bind, mid) && !memcmp(mid, bd->m->mid, MP_ID_LEN);
	if ((code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) && ours) {
		hold(bd, resp->bind);
	} else if (code == MP_ST(NOT_HOLDER) && bind_check(bd, resp->bind, mid) && !ours) {
		mp_hex_encode(mid, MP_ID_LEN, mhex);
		snprintf(detail, sizeof(detail), "channel bound to merchant m-%s: pay there", mhex);
		finish(bd, MP_ST(NOT_HOLDER), detail, resp->bind);
	} else if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK) || code == MP_ST(NOT_HOLDER)) {
		finish(bd, MP_ST(INTERNAL), "the broker's Bind does not verify", NULL);
	} else {
		snprintf(detail, sizeof(detail), "broker: %s %s", mp_code_name(code), why);
		finish(bd, code, detail, NULL);
	}
}

static void ask(struct binding *bd);

static void on_reply(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct binding *bd = arg;
	bd->calling = false;
	if (bd->done) {
		maybe_free(bd);
	} else if (!env) { /* the link was lost: ask again while the deadline allows */
		struct timeval tv = {0, POLL_INTERVAL};
		evtimer_add(bd->poll, &tv);
	} else if (env->body_case != MP_BODY(BIND_RESP)) {
		char detail[300];
		snprintf(detail, sizeof(detail), "the broker did not answer the BindReq (%s)",
			 env->body_case == MP_BODY(ERROR) && env->error && env->error->detail
			     ? env->error->detail
			     : "another message");
		finish(bd, MP_ST(INTERNAL), detail, NULL);
	} else {
		on_answer(env->bind_resp, bd);
	}
}

static void ask(struct binding *bd)
{
	struct broker_link *l = redeemer_link(bd->m->redeemer);
	if (!broker_link_is_up(l)) {
		broker_link_want(l);
		struct timeval tv = {0, POLL_INTERVAL};
		if (evtimer_add(bd->poll, &tv) != 0)
			finish(bd, MP_ST(INTERNAL), "cannot wait for the broker", NULL);
		return;
	}
	Micropay__V1__BindReq req = MICROPAY__V1__BIND_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, bd->channel_id};
	req.move = bd->move;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(BIND_REQ);
	env.bind_req = &req;
	bd->calling = broker_link_call(l, &env, on_reply, bd) == 0;
	if (!bd->calling)
		finish(bd, MP_ST(INTERNAL), "cannot send the BindReq to the broker", NULL);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	ask(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct binding *bd = arg;
	char detail[160];
	snprintf(detail, sizeof(detail), "the broker did not bind the channel within %u s; retry",
		 bd->m->cfg.broker_connect_timeout + bd->m->cfg.broker_answer_timeout);
	finish(bd, MP_ST(INTERNAL), detail, NULL);
}

/* ---- VERIFYING ---- */

struct verify_job {
	struct binding *bd;
	struct bind_check *check;
};

static void verify_work(void *arg, const atomic_bool *stop)
{
	struct verify_job *j = arg;
	bind_check_run(j->check, stop);
}

static void verify_done(void *arg, enum mp_job_outcome outcome)
{
	struct verify_job *j = arg;
	struct binding *bd = j->bd; /* bd->verifying keeps it alive until the end */
	if (bd->done) {
		/* the deadline passed meanwhile; the Open was answered */
	} else if (outcome != MP_JOB_DONE) {
		finish(bd, MP_ST(INTERNAL), "merchant shutting down", NULL);
	} else if (j->check->code != MP_ST(OK)) {
		char detail[300];
		snprintf(detail, sizeof(detail), "the Open's segments were refused: %s",
			 j->check->detail);
		finish(bd, j->check->code, detail, NULL);
	} else {
		bd->rows = j->check->rows;
		bd->n_rows = j->check->n_rows;
		j->check->rows = NULL;
		j->check->n_rows = 0;
		log_info("channel %s: %zu broker-capped transfers verified; asking the broker to "
			 "bind it here in segment %zu",
			 bd->hex, bd->n_rows, bd->n_rows);
		ask(bd);
	}
	bind_check_free(j->check);
	free(j);
	bd->verifying = false;
	maybe_free(bd);
}

/* The Open's pairs and Move, checked on a worker before the broker is asked. */
static void verify_segments(struct binding *bd, const Micropay__V1__OpenReq *req)
{
	struct merchant *m = bd->m;
	size_t cert_len = 0;
	uint8_t *cert = mp_stmt_encode(bd->cert, &cert_len);
	struct verify_job *j = cert ? calloc(1, sizeof(*j)) : NULL;
	if (j)
		j->check = bind_check_new(cert, cert_len, req->segments, req->n_segments, req->move,
					  m->broker_pk, m->mid, m->cfg.t_grace);
	free(cert);
	if (!j || !j->check) {
		free(j);
		finish(bd, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	j->bd = bd;
	if (!mp_workers_submit(m->workers, verify_work, verify_done, j)) {
		bind_check_free(j->check);
		free(j);
		finish(bd, MP_ST(LIMIT), "merchant busy verifying custody chains; retry", NULL);
		return;
	}
	bd->verifying = true;
}

void bind_start(struct merchant *m, struct mp_conn *c, const MpEnvelope *env,
		const Micropay__V1__ChannelCert *cc)
{
	struct binding *bd = m->n_binds < MAX_BINDINGS ? calloc(1, sizeof(*bd)) : NULL;
	if (!bd) {
		reply_open(c, env->request_id, MP_ST(LIMIT), "merchant busy; retry", m, NULL);
		return;
	}
	*bd = (struct binding){.m = m,
			       .wallet = c,
			       .request_id = env->request_id,
			       .cert = mp_stmt_copy(env->open_req->cert),
			       .move = mp_stmt_copy(env->open_req->move)};
	memcpy(bd->channel_id, cc->channel_id.data, MP_ID_LEN);
	mp_hex_encode(bd->channel_id, MP_ID_LEN, bd->hex);
	mp_conn_ref(c);
	bd->next = m->binds;
	m->binds = bd;
	m->n_binds++;
	bd->deadline = evtimer_new(m->base, on_deadline, bd);
	bd->poll = evtimer_new(m->base, on_poll, bd);
	struct timeval tv = {(time_t)(m->cfg.broker_connect_timeout + m->cfg.broker_answer_timeout),
			     0};
	if (!bd->cert || !bd->move || !bd->deadline || !bd->poll ||
	    evtimer_add(bd->deadline, &tv) != 0) {
		finish(bd, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	if (env->open_req->n_segments > 0) {
		log_info("channel %s: unbound, %zu segment statements; verifying them", bd->hex,
			 env->open_req->n_segments);
		verify_segments(bd, env->open_req);
		return;
	}
	log_info("channel %s: unbound; asking the broker to bind it here", bd->hex);
	ask(bd);
}

void bind_stop_all(struct merchant *m)
{
	while (m->binds) {
		struct binding *bd = m->binds;
		bd->calling = false; /* the broker link is gone: no answer can come */
		finish(bd, MP_ST(INTERNAL), "merchant shutting down", NULL);
		if (m->binds == bd) /* finish freed it unless it was done already */
			maybe_free(bd);
	}
}
