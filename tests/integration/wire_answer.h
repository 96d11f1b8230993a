/* A request sent and its answer read apart (a test can act while a request is pending), and
 * what one request got: for the tests that must see every request answered. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "harness.h"

/* What one request got. */
struct answer {
	bool got; /* false: silence or a dropped connection */
	MpCode code;
	MpCode claim; /* Redeem: the one claim's status */
	char detail[200];
	uint64_t ms; /* from send to answer */
};

bool send_issue(struct wire *w, const MpSigned *request);
bool send_redeem(struct wire *w, const MpSigned *redeem);
/* Read the next answer into a; a->ms counts from sent_at (now_ms()). Silence past the wire's
 * receive timeout (10 s) or a closed connection leaves a->got false. */
void receive_answer(struct wire *w, struct answer *a, uint64_t sent_at);
struct answer issue_once(struct wire *w, const MpSigned *request);
struct answer redeem_once(struct wire *w, const MpSigned *redeem);
/* Retry a request verbatim until it is answered other than INTERNAL (at most `ms`); every
 * attempt must be answered. */
struct answer retry_verbatim(struct wire *w, const MpSigned *s, bool redeem, uint64_t ms);
