/* The merchant's client of brokerd over mutual TLS: registration (RegisterMerchant ->
 * MerchantCert) and batched redemption. A Redeem is signed and stored in the outbox before it
 * is sent, and resent verbatim until the broker answers; the broker's credited_end is taken
 * as the truth for the next batch (PROTOCOL.md section 6, "Redemption"). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "stmt.h"
#include "store.h"
#include "tls.h"

#define MAX_WAITERS   16
#define RETRY_SECONDS 5

struct waiter {
	redeem_done_fn done;
	void *arg;
};

struct redeemer {
	struct merchant *m;
	struct mp_conn *conn;
	bool connecting;
	bool registering;
	bool round_running;
	struct event *timer;
	struct waiter waiters[MAX_WAITERS];
	size_t n_waiters;
	uint64_t round_credited;
	unsigned round_claims;
};

static void start_round(struct redeemer *r);
static void ensure_registered(struct redeemer *r);

static void finish_round(struct redeemer *r, bool ok, const char *summary)
{
	r->round_running = false;
	log_info("redeem: %s", summary);
	for (size_t i = 0; i < r->n_waiters; i++)
		r->waiters[i].done(r->waiters[i].arg, ok, summary, r->round_credited);
	r->n_waiters = 0;
	r->round_credited = 0;
	r->round_claims = 0;
}

static void finish_current(struct redeemer *r)
{
	char summary[128];
	snprintf(summary, sizeof(summary), "%u claims answered, %llu credited", r->round_claims,
		 (unsigned long long)r->round_credited);
	finish_round(r, true, summary);
}

/* ---- connection to the broker ---- */

static void on_broker_open(struct mp_conn *c, void *arg)
{
	struct redeemer *r = arg;
	r->connecting = false;
	if (!mp_tls_peer_is_broker(mp_conn_ssl(c))) {
		mp_conn_close(c, "peer certificate is not the broker's");
		return;
	}
	log_info("broker %s: connected", mp_conn_peer(c));
	if (merchant_cert_wanted(r->m, mp_now()))
		ensure_registered(r);
	if (r->m->cert_valid_until != 0 && r->round_running)
		start_round(r);
}

static void on_broker_close(struct mp_conn *c, const char *reason, void *arg)
{
	struct redeemer *r = arg;
	bool was_connecting = r->connecting;
	r->connecting = false;
	r->registering = false;
	if (r->conn == c) {
		mp_conn_unref(c);
		r->conn = NULL;
	}
	if (r->round_running)
		finish_round(r, false,
			     was_connecting ? "broker unreachable; will retry"
					    : "connection to the broker lost; will retry");
}

static const struct mp_conn_ops broker_ops = {
    .on_open = on_broker_open,
    .on_close = on_broker_close,
};

/* True if connected now; otherwise starts connecting (work resumes in on_broker_open). */
static bool connected(struct redeemer *r)
{
	if (r->conn && mp_conn_is_open(r->conn))
		return true;
	if (r->connecting)
		return false;
	char host[256];
	uint16_t port;
	if (!mp_split_endpoint(r->m->cfg.broker, host, sizeof(host), &port)) {
		log_err("config: [merchant] broker must be host:port, not '%s'", r->m->cfg.broker);
		return false;
	}
	struct mp_net_opts opts = {.max_frame = 16u << 20, .name = "broker"};
	r->connecting = true;
	r->conn = mp_connect(r->m->base, r->m->client_tls, host, port, &opts, &broker_ops, r);
	if (!r->conn) {
		r->connecting = false;
		return false;
	}
	mp_conn_ref(r->conn);
	return false;
}

/* ---- registration ---- */

/* The answer to RegisterMerchant: a cert (new, renewed or the same), CONFLICT (stop: no retry
 * can succeed, see merchant_cert.c), or a refusal retried on the timer. */
static void on_registered(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct redeemer *r = arg;
	struct merchant *m = r->m;
	r->registering = false;
	if (!env)
		return;
	const Micropay__V1__RegisterMerchantResp *resp =
	    env->body_case == MP_BODY(REGISTER_MERCHANT_RESP) ? env->register_merchant_resp : NULL;
	MpCode code = resp && resp->status ? resp->status->code : MP_ST(MALFORMED);
	const char *detail = resp && resp->status ? resp->status->detail : "";
	if (code == MP_ST(CONFLICT)) {
		merchant_cert_conflict(m, resp->merchant_cert, detail);
		return;
	}
	uint64_t before = m->cert_valid_until;
	if ((code != MP_ST(OK) && code != MP_ST(DUPLICATE_OK)) || !resp->merchant_cert ||
	    !merchant_accept_cert(m, resp->merchant_cert, true)) {
		log_err("registration with the broker refused: %s %s; retrying in %u s",
			mp_code_name(code), detail, RETRY_SECONDS);
		return;
	}
	m->cert_confirmed = true;
	if (before == 0)
		log_info("registered with the broker; MerchantCert valid until %llu",
			 (unsigned long long)m->cert_valid_until);
	else if (before != m->cert_valid_until)
		log_info("MerchantCert renewed: valid until %llu (was %llu)",
			 (unsigned long long)m->cert_valid_until, (unsigned long long)before);
	if (before == 0 && r->round_running)
		start_round(r);
}

static void ensure_registered(struct redeemer *r)
{
	struct merchant *m = r->m;
	if (!merchant_cert_wanted(m, mp_now()) || r->registering || !connected(r))
		return;
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, m->key.pk};
	rm.endpoint = m->cfg.endpoint;
	MpSigned *s = mp_stmt_sign(&m->key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	Micropay__V1__RegisterMerchantReq req = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &req;
	r->registering = s && mp_conn_call(r->conn, &env, on_registered, r) == 0;
	mp_stmt_free(s);
}

/* ---- redemption ---- */

static Micropay__V1__Redeem *parse_redeem(const uint8_t *bytes, size_t len)
{
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (!s)
		return NULL;
	Micropay__V1__Redeem *rd = (Micropay__V1__Redeem *)mp_strict_unpack(
	    &micropay__v1__redeem__descriptor, s->body.data, s->body.len);
	mp_stmt_free(s);
	return rd;
}

struct in_flight {
	struct redeemer *r;
	uint8_t redeem_id[MP_ID_LEN];
	Micropay__V1__Redeem *body;
	bool resent; /* from the outbox, built by an earlier round */
};

static void apply_results(struct in_flight *f, const Micropay__V1__RedeemResp *resp)
{
	struct redeemer *r = f->r;
	size_t n = f->body->n_claims < resp->n_results ? f->body->n_claims : resp->n_results;
	struct redeemed_claim *claims = calloc(n + 1, sizeof(*claims));
	if (!claims)
		return;
	for (size_t i = 0; i < n; i++) {
		const Micropay__V1__ClaimResult *res = resp->results[i];
		memcpy(claims[i].channel_id, f->body->claims[i]->channel_id.data, MP_ID_LEN);
		claims[i].credited_end = res->credited_end;
		r->round_credited += res->credited_amount;
		r->m->stats.amount_credited += res->credited_amount;
		r->m->stats.claims_credited += res->status == MP_ST(OK);
		if (res->status != MP_ST(OK) && res->status != MP_ST(DUPLICATE_OK)) {
			char hex[MP_HEX_ID_LEN + 1];
			mp_hex_encode(claims[i].channel_id, MP_ID_LEN, hex);
			log_warn("redeem: claim for channel %s refused: %s %s", hex,
				 mp_code_name(res->status), res->detail);
		}
		struct channel *ch = channel_find(&r->m->channels, claims[i].channel_id);
		if (ch && res->credited_end > ch->redeemed_end)
			ch->redeemed_end = res->credited_end;
	}
	r->round_claims += (unsigned)n;
	if (!store_outbox_answered(r->m->store, f->redeem_id, claims, n))
		log_err("redeem: cannot record the broker's answer; it will be asked again");
	free(claims);
}

static void on_redeemed(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct in_flight *f = arg;
	struct redeemer *r = f->r;
	const Micropay__V1__RedeemResp *resp =
	    env && env->body_case == MP_BODY(REDEEM_RESP) ? env->redeem_resp : NULL;
	MpCode code = resp && resp->status ? resp->status->code : MP_ST(INTERNAL);
	if (!env) {
		/* on_broker_close reports the round */
	} else if (code == MP_ST(OK) || code == MP_ST(DUPLICATE_OK)) {
		r->m->stats.redeems_sent++;
		apply_results(f, resp);
		/* Another Redeem only if this one was an old one or a full one: a claim the broker
		 * refused is not retried in a loop. */
		if (f->resent || f->body->n_claims >= r->m->cfg.max_claims)
			start_round(r);
		else
			finish_current(r);
	} else {
		char summary[256];
		snprintf(summary, sizeof(summary), "broker answered %s: %s", mp_code_name(code),
			 resp && resp->status ? resp->status->detail : "no answer");
		/* A refusal of the whole Redeem: do not resend. If that cannot be recorded, the
		 * stored Redeem is sent again verbatim later and the broker refuses it again. */
		if (code != MP_ST(INTERNAL) &&
		    !store_outbox_answered(r->m->store, f->redeem_id, NULL, 0))
			log_err(
			    "redeem: cannot record the broker's refusal (%s) in the outbox; the "
			    "Redeem will be sent again",
			    mp_code_name(code));
		finish_round(r, false, summary);
	}
	micropay__v1__redeem__free_unpacked(f->body, NULL);
	free(f);
}

static bool send_stored(struct redeemer *r, const uint8_t redeem_id[MP_ID_LEN],
			const uint8_t *bytes, size_t len, bool resent)
{
	struct in_flight *f = calloc(1, sizeof(*f));
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (!f || !s || !(f->body = parse_redeem(bytes, len))) {
		free(f);
		mp_stmt_free(s);
		return false;
	}
	f->r = r;
	f->resent = resent;
	memcpy(f->redeem_id, redeem_id, MP_ID_LEN);
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	bool ok = mp_conn_call(r->conn, &env, on_redeemed, f) == 0;
	mp_stmt_free(s);
	if (!ok) {
		micropay__v1__redeem__free_unpacked(f->body, NULL);
		free(f);
	}
	return ok;
}

/* Build, sign and store a Redeem of every channel with unredeemed durable payments. */
static bool build_redeem(struct redeemer *r, uint8_t redeem_id[MP_ID_LEN], uint8_t **bytes,
			 size_t *len)
{
	struct merchant *m = r->m;
	size_t cap = m->cfg.max_claims, n = 0;
	Micropay__V1__Claim *claims = calloc(cap, sizeof(*claims));
	Micropay__V1__Claim **ptrs = calloc(cap, sizeof(*ptrs));
	MpPoint *points = calloc(cap, sizeof(*points));
	bool ok = claims && ptrs && points;
	TABLE_FOREACH(&m->channels, struct channel, ch)
	{
		if (!ok || n == cap || ch->durable_last <= ch->redeemed_end)
			continue;
		micropay__v1__claim__init(&claims[n]);
		micropay__v1__point__init(&points[n]);
		claims[n].channel_id = (ProtobufCBinaryData){MP_ID_LEN, ch->id};
		claims[n].hseq_in = ch->hseq;
		points[n].seg_seq = ch->seg_seq;
		points[n].index = ch->durable_last;
		points[n].w = (ProtobufCBinaryData){MP_HASH_LEN, ch->durable_w};
		claims[n].point = &points[n];
		ptrs[n] = &claims[n];
		n++;
	}
	MpSigned *s = NULL;
	if (ok && n > 0 && mp_random_bytes(redeem_id, MP_ID_LEN)) {
		Micropay__V1__Redeem rd = MICROPAY__V1__REDEEM__INIT;
		rd.redeem_id = (ProtobufCBinaryData){MP_ID_LEN, redeem_id};
		rd.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, m->mid};
		rd.claims = ptrs;
		rd.n_claims = n;
		s = mp_stmt_sign(&m->key, MP_STMT_REDEEM, &rd.base);
	}
	*bytes = s ? mp_stmt_encode(s, len) : NULL;
	ok = *bytes && store_outbox_put(m->store, redeem_id, *bytes, *len);
	mp_stmt_free(s);
	free(claims);
	free(ptrs);
	free(points);
	return ok;
}

static void start_round(struct redeemer *r)
{
	if (r->m->cert_valid_until == 0) {
		ensure_registered(r);
		return;
	}
	if (!connected(r))
		return;
	uint8_t redeem_id[MP_ID_LEN];
	uint8_t *bytes = NULL;
	size_t len = 0;
	bool resent = store_outbox_next(r->m->store, redeem_id, &bytes, &len);
	bool have = resent || build_redeem(r, redeem_id, &bytes, &len);
	if (!have)
		finish_current(r);
	else if (!send_stored(r, redeem_id, bytes, len, resent)) {
		finish_round(r, false, "cannot send the Redeem");
	}
	free(bytes);
}

void redeemer_run(struct redeemer *r, redeem_done_fn done, void *arg)
{
	if (done) {
		if (r->n_waiters == MAX_WAITERS) {
			done(arg, false, "too many redemptions waiting", 0);
			return;
		}
		r->waiters[r->n_waiters++] = (struct waiter){done, arg};
	}
	if (r->round_running)
		return;
	batch_flush(r->m); /* redeem what has been acknowledged, right now */
	r->round_running = true;
	start_round(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct redeemer *r = arg;
	struct merchant *m = r->m;
	if (merchant_cert_wanted(m, mp_now()))
		ensure_registered(r);
	if (m->cert_valid_until != 0 && m->cfg.redeem_interval)
		redeemer_run(r, NULL, NULL);
	unsigned next = m->cert_valid_until == 0 ? RETRY_SECONDS
			: m->cfg.redeem_interval ? m->cfg.redeem_interval
						 : 3600;
	if (m->cert_valid_until != 0 && merchant_cert_check_interval(m) < next)
		next = merchant_cert_check_interval(m); /* renewal ahead of time */
	struct timeval tv = {next, 0};
	if (evtimer_add(r->timer, &tv) != 0)
		log_err("redeem: cannot arm the timer; redemption and renewal run only on demand");
}

struct redeemer *redeemer_new(struct merchant *m)
{
	struct redeemer *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->m = m;
	r->timer = evtimer_new(m->base, on_timer, r);
	if (!r->timer) {
		free(r);
		return NULL;
	}
	struct timeval now = {0, 0};
	if (evtimer_add(r->timer, &now) != 0) {
		event_free(r->timer);
		free(r);
		return NULL;
	}
	return r;
}

void redeemer_free(struct redeemer *r)
{
	if (!r)
		return;
	event_free(r->timer);
	if (r->conn) {
		struct mp_conn *c = r->conn;
		r->round_running = false;
		mp_conn_close(c, "shutting down");
		if (r->conn)
			mp_conn_unref(r->conn);
	}
	free(r);
}
