/* The `http` call's state (http_pay.c), shared with http_issue.c, which issues a channel when
 * none can pay. Loop thread only. */
#pragma once
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway_header.h"
#include "store.h"
#include "util.h"

struct wallet;
struct wchannel;
struct mp_admin_req;

#define HTTP_URL_MAX 2048

struct http_op {
	struct wallet *w;
	struct mp_admin_req *req;
	enum evhttp_cmd_type cmd;
	char method[8];
	char host[256];
	uint16_t port;
	char uri[HTTP_URL_MAX];
	char *body;
	size_t body_len;
	uint64_t max_price;
	struct gw_requirements want;
	struct wchannel *ch;
	uint32_t units;
	bool busy_mine;	 /* this op marked ch busy (not while a session has it) */
	bool by_channel; /* channel_id given: pay with that one only */
	bool receipt;	 /* receipt=true: a Receipt asked for in the header */
	bool issued;	 /* ch was issued for this call (http_issue.c) */
	bool resumed;	 /* ... an earlier call's ISSUING channel being finished */
	uint8_t channel_id[MP_ID_LEN];
	struct wstore_pay pay;
};

/* Answer the call with "http: <why>" and free it. */
void http_op_fail(struct http_op *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void http_op_free(void *arg);
/* Why ch cannot pay o's price at its merchant now (busy counted with mind_busy), or NULL. */
const char *http_unpayable(const struct http_op *o, const struct wchannel *ch, bool mind_busy);
/* Pay with ch (chosen, or just issued): at once by header, or after a session at the merchant. */
void http_use_channel(struct http_op *o, struct wchannel *ch);
/* http_issue.c: no channel can pay o->want: issue one within [wallet] auto_issue_budget, then
 * http_use_channel; or answer why not. */
void http_issue(struct http_op *o);
