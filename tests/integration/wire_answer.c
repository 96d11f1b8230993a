/* Requests sent and answers read apart, and what each request got. */
#include "wire_answer.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_merchant.h"
#include "harness_pg.h"

bool send_issue(struct wire *w, const MpSigned *request)
{
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = (MpSigned *)request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	return wire_send(w, &env);
}

bool send_redeem(struct wire *w, const MpSigned *redeem)
{
	Micropay__V1__RedeemReq req = MICROPAY__V1__REDEEM_REQ__INIT;
	req.stmt = (MpSigned *)redeem;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REDEEM_REQ);
	env.redeem_req = &req;
	return wire_send(w, &env);
}

void receive_answer(struct wire *w, struct answer *a, uint64_t sent_at)
{
	MpEnvelope *e = wire_recv(w);
	*a = (struct answer){.ms = now_ms() - sent_at};
	const MpStatus *st = NULL;
	if (e && e->body_case == MP_BODY(ISSUE_RESP))
		st = e->issue_resp->status;
	if (e && e->body_case == MP_BODY(REDEEM_RESP)) {
		st = e->redeem_resp->status;
		if (e->redeem_resp->n_results == 1)
			a->claim = e->redeem_resp->results[0]->status;
	}
	if (st) {
		a->got = true;
		a->code = st->code;
		snprintf(a->detail, sizeof(a->detail), "%s", st->detail ? st->detail : "");
	}
	if (e)
		micropay__v1__envelope__free_unpacked(e, NULL);
}

struct answer issue_once(struct wire *w, const MpSigned *request)
{
	struct answer a = {0};
	uint64_t t0 = now_ms();
	if (send_issue(w, request))
		receive_answer(w, &a, t0);
	return a;
}

struct answer redeem_once(struct wire *w, const MpSigned *redeem)
{
	struct answer a = {0};
	uint64_t t0 = now_ms();
	if (send_redeem(w, redeem))
		receive_answer(w, &a, t0);
	return a;
}

/* Retry a request verbatim until it is answered other than INTERNAL (at most `ms`); every
 * attempt must be answered. */
struct answer retry_verbatim(struct wire *w, const MpSigned *s, bool redeem, uint64_t ms)
{
	uint64_t until = now_ms() + ms;
	for (;;) {
		struct answer a = redeem ? redeem_once(w, s) : issue_once(w, s);
		ck_assert_msg(a.got, "a verbatim retry got no answer");
		if (a.code != MP_ST(INTERNAL) || now_ms() > until)
			return a;
		usleep(100000);
	}
}
