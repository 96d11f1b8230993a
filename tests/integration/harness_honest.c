#include "harness_honest.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "harness_net.h"

void honest_init(struct honest *h, const struct net *n, const char *merchant,
		 const struct tchannel *ch)
{
	*h = (struct honest){.net = n, .merchant = merchant, .ch = ch};
	net_path(n, "tls/ca.crt", h->ca, sizeof(h->ca));
	net_read(n, "broker", "endpoint", h->broker_ep, sizeof(h->broker_ep));
	net_read(n, merchant, "endpoint", h->merchant_ep, sizeof(h->merchant_ep));
	pthread_mutex_init(&h->lock, NULL);
}

/* Record a failure (the first one's reason is kept). */
static void failed(struct honest *h, const char *what, const char *detail)
{
	pthread_mutex_lock(&h->lock);
	if (h->failures++ == 0)
		snprintf(h->failure, sizeof(h->failure), "%s: %s", what, detail);
	pthread_mutex_unlock(&h->lock);
}

/* One order of one unit, paid with the next index: acknowledged OK. */
static void pay_one(struct honest *h)
{
	char err[200], detail[200];
	json_error_t jerr;
	json_t *params = json_loads("{\"price\":1}", 0, &jerr);
	char sock[700];
	snprintf(sock, sizeof(sock), "%s/%s/admin.sock", h->net->dir, h->merchant);
	json_t *o = mp_admin_call(sock, "order.create", params, err, sizeof(err));
	json_decref(params);
	const char *ref_hex = o ? json_string_value(json_object_get(o, "order_ref")) : NULL;
	if (!ref_hex || strlen(ref_hex) != 2 * MP_ID_LEN) {
		failed(h, "order.create", o ? "no order_ref" : err);
		json_decref(o);
		return;
	}
	uint8_t ref[MP_ID_LEN];
	mp_hex_decode(ref_hex, ref, MP_ID_LEN);
	json_decref(o);
	MpEnvelope *a = tchannel_pay(h->ch, &h->m, h->last + 1, ref, MP_ID_LEN);
	if (!a || a->body_case != MP_BODY(PAY_ACK) || a->pay_ack->status->code != MP_ST(OK)) {
		snprintf(detail, sizeof(detail), "Pay %u: %s %s", h->last + 1,
			 a && a->body_case == MP_BODY(PAY_ACK)
			     ? mp_code_name(a->pay_ack->status->code)
			     : "no PayAck",
			 a && a->body_case == MP_BODY(PAY_ACK) ? a->pay_ack->status->detail : "");
		failed(h, h->merchant, detail);
	} else {
		pthread_mutex_lock(&h->lock);
		h->last++;
		h->acked++;
		pthread_mutex_unlock(&h->lock);
	}
	if (a)
		micropay__v1__envelope__free_unpacked(a, NULL);
}

/* The channel's IssueRequest again: the stored answer. */
static void ask_broker(struct honest *h)
{
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = h->ch->request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	MpEnvelope *a = wire_call(&h->b, &env);
	MpCode code = a && a->body_case == MP_BODY(ISSUE_RESP) ? a->issue_resp->status->code
							       : MP_ST(INTERNAL);
	if (code == MP_ST(DUPLICATE_OK) || code == MP_ST(OK)) {
		pthread_mutex_lock(&h->lock);
		h->broker_answered++;
		pthread_mutex_unlock(&h->lock);
	} else {
		failed(h, "broker", a ? mp_code_name(code) : "IssueRequest not answered");
	}
	if (a)
		micropay__v1__envelope__free_unpacked(a, NULL);
}

static void *run(void *arg)
{
	struct honest *h = arg;
	for (unsigned k = 0;; k++) {
		pthread_mutex_lock(&h->lock);
		bool stop = h->stop || h->failures > 0;
		pthread_mutex_unlock(&h->lock);
		if (stop)
			break;
		pay_one(h);
		if (k % 4 == 0)
			ask_broker(h);
		usleep(20000);
	}
	return NULL;
}

/* The channel's durable last index at the merchant (each test of a suite may run in its own
 * process: the merchant is the one place that remembers). */
static uint32_t merchant_last(struct honest *h)
{
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(h->ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *r = admin_ok(h->net, h->merchant, "channels", NULL);
	json_t *list = json_object_get(r, "channels"), *c;
	size_t i;
	int64_t last = -1;
	json_array_foreach(list, i, c)
	{
		if (strcmp(json_str(c, "channel_id"), hex) == 0)
			last = json_int(c, "last");
	}
	json_decref(r);
	ck_assert_msg(last >= 0, "honest customer: channel %s unknown at %s", hex, h->merchant);
	return (uint32_t)last;
}

void honest_start(struct honest *h)
{
	ck_assert(!h->running);
	h->last = merchant_last(h);
	h->stop = false;
	h->acked = h->broker_answered = h->failures = 0;
	h->failure[0] = '\0';
	ck_assert_msg(wire_connect(&h->m, h->merchant_ep, h->ca, NULL, NULL),
		      "honest customer: cannot connect to %s", h->merchant);
	ck_assert_msg(wire_connect(&h->b, h->broker_ep, h->ca, NULL, NULL),
		      "honest customer: cannot connect to the broker");
	ck_assert_int_eq(pthread_create(&h->thread, NULL, run, h), 0);
	h->running = true;
}

bool honest_wait(struct honest *h, uint32_t acked, int ms)
{
	for (int waited = 0;; waited += 10) {
		pthread_mutex_lock(&h->lock);
		bool done = h->acked >= acked && h->broker_answered >= 1;
		bool failing = h->failures > 0;
		pthread_mutex_unlock(&h->lock);
		if (done || failing || waited >= ms)
			return done;
		usleep(10000);
	}
}

uint32_t honest_stop(struct honest *h, const char *during)
{
	ck_assert(h->running);
	honest_wait(h, 1, 5000);
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	h->running = false;
	wire_close(&h->m);
	wire_close(&h->b);
	printf("%s: honest customer: %u payments acknowledged, %u broker requests answered\n",
	       during, h->acked, h->broker_answered);
	ck_assert_msg(h->failures == 0, "%s: the honest customer failed %u times, first: %s",
		      during, h->failures, h->failure);
	ck_assert_msg(h->acked >= 1, "%s: no honest payment acknowledged during the attack",
		      during);
	ck_assert_msg(h->broker_answered >= 1, "%s: no honest broker request answered", during);
	return h->acked;
}

void honest_close(struct honest *h)
{
	pthread_mutex_destroy(&h->lock);
}
