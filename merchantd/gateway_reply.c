/* What the gateway's clients are sent (gateway_internal.h). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_internal.h"
#include "http_deferred.h"

void gw_reply_text(struct gateway *g, struct evhttp_request *req, int status, const char *reason,
		   const char *text)
{
	struct evbuffer *body = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (status == 503)
		evhttp_add_header(h, "Retry-After", "1");
	if (body)
		evbuffer_add_printf(body, "%s\n", text);
	mp_http_reply(req, status, reason, body);
	if (body)
		evbuffer_free(body);
}

static void add_header_value(struct evhttp_request *req, const char *name, char *value)
{
	if (value)
		evhttp_add_header(evhttp_request_get_output_headers(req), name, value);
	free(value);
}

static const char *currency(const struct gateway *g)
{
	return g->m->cfg.currency ? g->m->cfg.currency : "EUR";
}

/* Payment-Required: what this request costs and where a channel is opened. */
static char *requirements(const struct gateway *g, const struct gw_route *r, const char *method,
			  const char *path)
{
	const struct merchant *m = g->m;
	char mid[MP_HEX_ID_LEN + 1], key_id[2 * MP_KEY_ID_LEN + 1];
	mp_hex_encode(m->mid, MP_ID_LEN, mid);
	mp_hex_encode(m->broker_key_id, MP_KEY_ID_LEN, key_id);
	const char *endpoint = m->cfg.endpoint ? m->cfg.endpoint : m->cfg.listen;
	return gw_header_value(json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "scheme",
					 GW_SCHEME, "merchant", mid, "broker_key", key_id, "price",
					 (json_int_t)r->price, "currency", currency(g), "endpoint",
					 endpoint, "method", method, "path", path));
}

static const char *reason_of(int status)
{
	switch (status) {
	case 402:
		return "Payment Required";
	case 409:
		return "Conflict";
	case 502:
		return "Bad Gateway";
	case 504:
		return "Gateway Timeout";
	default:
		return "Service Unavailable";
	}
}

void gw_refuse(struct gateway *g, struct evhttp_request *req, const struct gw_route *r,
	       const char *method, const char *path, int status, const char *code,
	       const char *detail)
{
	char line[300];
	snprintf(line, sizeof(line), "%s %s", code, detail);
	bool required = strcmp(code, "REQUIRED") == 0;
	gw_count(g, required ? GW_REQUIRED : GW_REFUSED);
	add_header_value(req, GW_HEADER_REQUIRED, requirements(g, r, method, path));
	if (!required)
		evhttp_add_header(evhttp_request_get_output_headers(req), GW_HEADER_ERROR, line);
	char text[400];
	snprintf(text, sizeof(text), "payment required: %llu %s for %s %s (%s)",
		 (unsigned long long)r->price, currency(g), method, path, line);
	gw_reply_text(g, req, status, reason_of(status), text);
}

/* X-Payment-Response: charged, the index and the credit after this payment (and the Receipt,
 * or why none, when the payment asked for one); else the channel's point as the payment left
 * it. */
static char *payment_response(const struct gw_call *c, bool charged)
{
	char channel[MP_HEX_ID_LEN + 1];
	mp_hex_encode(c->pay.channel_id, MP_ID_LEN, channel);
	const struct channel *ch = c->ch;
	uint64_t j = charged ? c->pay.j : ch ? ch->last : 0;
	uint64_t credit = charged ? c->credit : ch ? ch->credit : 0;
	json_t *obj = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "scheme", GW_SCHEME,
				"channel", channel, "seg", (json_int_t)c->pay.seg_seq, "j",
				(json_int_t)j, "credit", (json_int_t)credit, "price",
				(json_int_t)(charged ? c->route->price : 0), "charged", charged);
	if (obj && charged && c->receipt_b64 && c->cert_b64) {
		json_object_set_new(obj, "receipt", json_string(c->receipt_b64));
		json_object_set_new(obj, "merchant_cert", json_string(c->cert_b64));
	} else if (obj && charged && c->pay.receipt) {
		json_object_set_new(obj, "receipt_error", json_string(c->receipt_error));
	}
	return gw_header_value(obj);
}

void gw_relay(struct gw_call *c, struct gw_answer *a, int status, const char *why, bool charged)
{
	struct gateway *g = c->g;
	gw_count(g, charged ? GW_PAID : c->route->price ? GW_NOT_CHARGED : GW_FREE);
	if (c->route->price)
		add_header_value(c->req, GW_HEADER_RESPONSE, payment_response(c, charged));
	if (!a) {
		char text[300];
		snprintf(text, sizeof(text), "%s%s", why,
			 c->route->price ? "; you were not charged" : "");
		gw_reply_text(g, c->req, status, reason_of(status), text);
		return;
	}
	gw_headers_copy(&a->headers, evhttp_request_get_output_headers(c->req));
	mp_http_reply(c->req, a->code, a->reason[0] ? a->reason : "OK", a->body);
}

void gw_unserved(struct gw_call *c, const char *why)
{
	if (c->route->price) { /* X-Payment-Response says: not charged */
		gw_relay(c, NULL, 503, why, false);
		return;
	}
	gw_count(c->g, GW_BUSY);
	gw_reply_text(c->g, c->req, 503, "Service Unavailable", why);
}
