/* http: fetch a URL, paying an HTTP 402 gateway (docs/gateway.md) with one payword in a header.
 *
 *   PROBING: the request without payment
 *        --no answer--> FAILED;  --any status but 402--> DONE (nothing paid)
 *        --402: Payment-Required checked (scheme, our broker's key, our currency, price at
 *          most max_price)--> a channel chosen (ACTIVE, held by that merchant, free, enough
 *          units before pay_until; else FAILED: issue one)
 *   --the channel not yet used at this gateway in this run, or Pays of it in flight-->
 *   OPENING: a session at the merchant's TLS endpoint (Open, in-flight Pays resent and
 *        resolved: an earlier HTTP payment is either found paid, DUPLICATE_OK, or becomes
 *        channel credit) --> PAYING
 *   PAYING: index j = spent + units, persisted in flight (wstore_inflight_add) before the
 *        header leaves; the request again with X-Payment
 *        --X-Payment-Response charged for j--> last := j, credit stored, in-flight Pay done
 *          --> DONE (paid)
 *        --not charged (upstream failed), refused, or no answer--> the Pay stays in flight:
 *          the next use of the channel opens a session, which resolves it --> DONE / FAILED
 *
 * units: enough that units * unit_value plus the credit the merchant holds for us covers the
 * price (at least one: an index must move). The channel is busy from the choice to the end. */
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "b64.h"
#include "gateway_header.h"
#include "http_fetch.h"
#include "http_internal.h"
#include "http_receipt.h"
#include "log.h"
#include "session.h"
#include "store.h"
#include "store_http.h"
#include "wallet.h"

void http_op_free(void *arg)
{
	struct http_op *o = arg;
	if (o->ch && o->busy_mine)
		o->ch->busy = false;
	free(o->body);
	free(o);
}

void http_op_fail(struct http_op *o, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mp_admin_fail(o->req, MP_ADMIN_FAILED, "http: %s", msg);
	http_op_free(o);
}

/* {status, body | body_base64, paid} */
static json_t *answer_json(const struct http_result *r, json_t *paid)
{
	json_t *body = json_stringn(r->body, r->body_len);
	json_t *out = json_pack("{s:i, s:o, s:s?}", "status", r->status, "paid",
				paid ? paid : json_null(), "content_type", r->content_type);
	if (body) {
		json_object_set_new(out, "body", body);
	} else {
		char *b64 = mp_b64_encode((const uint8_t *)r->body, r->body_len);
		json_object_set_new(out, "body_base64", b64 ? json_string(b64) : json_null());
		free(b64);
	}
	return out;
}

static bool fetch(struct http_op *o, const char *payment, http_fetch_fn done)
{
	return http_fetch_start(o->w->http, o->host, o->port, o->cmd, o->uri, o->body, o->body_len,
				payment, done, o);
}

static void add_receipt(const struct http_op *o, const struct gw_response *resp, json_t *paid)
{
	struct http_receipt_want want = {.seg_seq = o->ch->seg_seq, .j = o->pay.j};
	memcpy(want.merchant, o->want.merchant, MP_ID_LEN);
	memcpy(want.channel_id, o->ch->channel_id, MP_ID_LEN);
	memcpy(want.ref, o->pay.order_ref, GW_REF_LEN);
	http_receipt_add(o->w, resp, &want, paid);
}

/* Charged for j: stored with the host's spending, answered with what was paid. */
static void paid_reply(struct http_op *o, struct http_result *r, struct gw_response *resp,
		       const char *hex)
{
	struct wchannel *ch = o->ch;
	char host[300];
	snprintf(host, sizeof(host), "%s:%u", o->host, o->port);
	if (!wstore_http_charged(o->w->store, ch->channel_id, o->pay.j, resp->credit, host,
				 resp->price))
		log_err("channel %s: HTTP payment j=%u accepted but not stored as such (nor its "
			"price in %s's spending); resolved at its next session",
			hex, o->pay.j, host);
	else {
		ch->last = o->pay.j;
		ch->credit = resp->credit;
		ch->inflight--;
	}
	o->w->stats.units_paid += o->units;
	if (resp->price > o->want.price) /* the header said the price: a gateway ignoring it */
		log_warn("channel %s: %s charged %llu for a price of %llu agreed in the payment",
			 hex, host, (unsigned long long)resp->price,
			 (unsigned long long)o->want.price);
	json_t *paid = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "channel_id", hex, "j",
				 (json_int_t)o->pay.j, "units", (json_int_t)o->units, "price",
				 (json_int_t)resp->price, "credit", (json_int_t)resp->credit,
				 "currency", o->want.currency);
	if (paid && o->receipt)
		add_receipt(o, resp, paid);
	if (paid && o->issued)
		json_object_set_new(paid, "issued", json_true());
	mp_admin_reply(o->req, answer_json(r, paid));
}

/* Whether the payment was charged is not known (no answer, or none this wallet can read): its
 * price is counted against the host's spending now, so that no budget is exceeded; the next
 * session resolves the payment itself (DUPLICATE_OK, or channel credit: then counted once too
 * many). */
static void count_unknown(struct http_op *o, const char *hex)
{
	char host[300];
	snprintf(host, sizeof(host), "%s:%u", o->host, o->port);
	if (!wstore_http_add(o->w->store, host, o->want.price))
		log_err("channel %s: the price of HTTP payment j=%u, charged or not, is not in "
			"%s's spending",
			hex, o->pay.j, host);
}

/* A refusal whose Payment-Required names another price than the one paid: said so. */
static void say_price_change(const struct http_op *o, const struct http_result *r, json_t *out)
{
	struct gw_requirements now;
	const char *why = NULL;
	if (!r->required || !gw_requirements_parse(r->required, &now, &why) ||
	    now.price == o->want.price)
		return;
	char text[400];
	snprintf(text, sizeof(text),
		 "price changed: %llu %s when asked, %llu now (%s); nothing charged, ask again",
		 (unsigned long long)o->want.price, o->want.currency, (unsigned long long)now.price,
		 r->error);
	json_object_set_new(out, "payment_error", json_string(text));
	json_object_set_new(out, "price_changed", json_true());
}

static void on_paid(void *arg, struct http_result *r, const char *why)
{
	struct http_op *o = arg;
	struct wchannel *ch = o->ch;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	struct gw_response resp = {0};
	const char *bad = NULL;
	bool parsed = r && r->response && gw_response_parse(r->response, &resp, &bad) &&
		      !memcmp(resp.channel_id, ch->channel_id, MP_ID_LEN);
	bool charged = parsed && resp.charged && resp.j == o->pay.j;
	bool refused = !parsed && r && !r->response && r->error; /* a check of the gateway's */
	if (charged) {
		paid_reply(o, r, &resp, hex);
		gw_response_clear(&resp);
		http_result_free(r);
		http_op_free(o);
		return;
	}
	gw_response_clear(&resp);
	bool known = refused || (parsed && !resp.charged);
	if (!known)
		count_unknown(o, hex);
	/* not charged, refused or not known: j stays in flight, resolved by the next session */
	ch->http_ready = false;
	if (!r) {
		http_op_fail(
		    o,
		    "no answer with the payment (%s); payment j=%u of channel %s is in flight "
		    "and is resolved at the channel's next use",
		    why, o->pay.j, hex);
		return;
	}
	json_t *out = answer_json(r, NULL);
	json_object_set_new(out, known ? "not_charged" : "charge_unknown", json_true());
	json_object_set_new(
	    out, "payment_error",
	    r->error ? json_string(r->error)
	    : known  ? json_null()
		     : json_string(bad ? bad : "no X-Payment-Response for this payment"));
	if (refused)
		say_price_change(o, r, out);
	mp_admin_reply(o->req, out);
	http_result_free(r);
	http_op_free(o);
}

/* PAYING: the next index, persisted in flight, then the request with X-Payment. */
static void pay_now(struct http_op *o)
{
	struct wchannel *ch = o->ch;
	struct gw_payment p = {.seg_seq = ch->seg_seq,
			       .j = wallet_channel_spent(ch) + o->units,
			       .receipt = o->receipt,
			       .has_price = true,
			       .price = o->want.price}; /* never charged more than the 402 said */
	memcpy(p.channel_id, ch->channel_id, MP_ID_LEN);
	if (p.j > ch->n || p.j > ch->seg_start + ch->seg_len ||
	    !wallet_channel_word(o->w, ch, p.j, p.w) ||
	    !gw_request_ref(o->method, o->uri, o->body, o->body_len, p.ref)) {
		http_op_fail(o, "cannot make the payword at index %u", p.j);
		return;
	}
	o->pay = (struct wstore_pay){.j = p.j, .order_ref_len = GW_REF_LEN};
	memcpy(o->pay.w, p.w, MP_HASH_LEN);
	memcpy(o->pay.order_ref, p.ref, GW_REF_LEN);
	if (!wstore_inflight_add(o->w->store, ch->channel_id, &o->pay)) {
		http_op_fail(o, "cannot record the payment j=%u as in flight; not sent", p.j);
		return;
	}
	if (ch->sent < p.j)
		ch->sent = p.j;
	ch->inflight++;
	o->w->stats.pays_sent++;
	char *header = gw_payment_encode(&p);
	bool sent = header && fetch(o, header, on_paid);
	free(header);
	if (!sent)
		http_op_fail(
		    o,
		    "out of memory; payment j=%u is in flight and resolved at the channel's "
		    "next use",
		    p.j);
}

/* Units to cover price with the credit the merchant holds for us (at least one). */
static uint32_t units_for(const struct wchannel *ch, uint64_t price)
{
	if (ch->credit >= price || ch->unit_value == 0)
		return 1;
	uint64_t units = (price - ch->credit + ch->unit_value - 1) / ch->unit_value;
	return units > UINT32_MAX ? UINT32_MAX : (uint32_t)(units ? units : 1);
}

/* Why ch cannot pay price at merchant now, or NULL. */
const char *http_unpayable(const struct http_op *o, const struct wchannel *ch, bool mind_busy)
{
	uint32_t spent = wallet_channel_spent(ch);
	uint32_t units = units_for(ch, o->want.price);
	if (ch->state != WCH_ACTIVE || wallet_channel_claim_refusal(ch))
		return "not ACTIVE";
	if (mind_busy && ch->busy)
		return "busy with another payment or transfer";
	if (memcmp(ch->holder, o->want.merchant, MP_ID_LEN))
		return "held by another merchant";
	if (strcmp(ch->currency, o->want.currency))
		return "in another currency";
	if (wallet_now(o->w) + WALLET_PAY_MARGIN >= ch->pay_until)
		return "past its last payment time";
	if (units > ch->n - spent || spent + units > ch->seg_start + ch->seg_len)
		return "short of units";
	return NULL;
}

/* A channel that can pay now; NULL with the call answered (channel_id's refused, or every
 * channel that could pay busy) or handed to http_issue (none can pay). */
static struct wchannel *choose(struct http_op *o)
{
	if (o->by_channel) {
		struct wchannel *ch = wallet_channel_find(o->w, o->channel_id);
		const char *why = ch ? http_unpayable(o, ch, true) : "not in this wallet";
		if (!why)
			return ch;
		http_op_fail(o, "channel_id: the channel is %s", why);
		return NULL;
	}
	bool busy = false;
	for (struct wchannel *ch = o->w->channels; ch; ch = ch->next) {
		if (!http_unpayable(o, ch, true))
			return ch;
		busy |= !http_unpayable(o, ch, false);
	}
	if (busy) /* one will be free soon: no channel is issued for a moment's wait */
		http_op_fail(o,
			     "every channel of this wallet that can pay this merchant is busy with "
			     "another request; retry when it has ended");
	else
		http_issue(o);
	return NULL;
}

static void after_session(struct pay_op *s, void *arg)
{
	struct http_op *o = arg;
	if (!wallet_session_pays_resolved(s, o->ch, "paying over HTTP"))
		return;
	struct mp_admin_req *req;
	wallet_session_handover(s, &req);
	o->req = req;
	o->ch->busy = o->busy_mine = true;
	o->ch->http_ready = true;
	o->units = units_for(o->ch, o->want.price);
	pay_now(o);
}

/* The 402's requirements checked, a channel chosen (or issued): pay at once or open a session
 * first. */
static void pay_required(struct http_op *o, const struct http_result *r)
{
	const char *why = "no " GW_HEADER_REQUIRED " header";
	uint8_t key_id[MP_KEY_ID_LEN];
	mp_key_id(o->w->cfg.broker_pk, key_id);
	if (!r->required || !gw_requirements_parse(r->required, &o->want, &why)) {
		http_op_fail(o, "402 without usable payment requirements: %s", why);
		return;
	}
	if (memcmp(o->want.broker_key, key_id, MP_KEY_ID_LEN)) {
		http_op_fail(o, "the gateway's merchant is registered with another broker (unknown "
				"broker key): not paying");
		return;
	}
	if (o->want.price > o->max_price) {
		http_op_fail(o, "the price %llu %s is above max_price %llu: not paying",
			     (unsigned long long)o->want.price, o->want.currency,
			     (unsigned long long)o->max_price);
		return;
	}
	struct wchannel *ch = choose(o);
	if (ch)
		http_use_channel(o, ch);
}

void http_use_channel(struct http_op *o, struct wchannel *ch)
{
	o->ch = ch;
	if (ch->http_ready && ch->sent <= ch->last) {
		ch->busy = o->busy_mine = true;
		o->units = units_for(ch, o->want.price);
		pay_now(o);
		return;
	}
	char err[300];
	if (!wallet_session_open(o->w, o->req, "http", ch, o->want.endpoint, after_session, o,
				 http_op_free, err, sizeof(err)))
		http_op_fail(o, "cannot open the channel at %s: %s", o->want.endpoint, err);
}

static void on_probe(void *arg, struct http_result *r, const char *why)
{
	struct http_op *o = arg;
	if (!r) {
		http_op_fail(o, "%s %s:%u%s: %s", o->method, o->host, o->port, o->uri, why);
		return;
	}
	if (r->status != 402) {
		mp_admin_reply(o->req, answer_json(r, NULL));
		http_op_free(o);
	} else {
		pay_required(o, r);
	}
	http_result_free(r);
}

static bool method_parse(struct http_op *o, const char *m)
{
	static const struct {
		const char *name;
		enum evhttp_cmd_type cmd;
	} known[] = {{"GET", EVHTTP_REQ_GET},	  {"POST", EVHTTP_REQ_POST},
		     {"PUT", EVHTTP_REQ_PUT},	  {"DELETE", EVHTTP_REQ_DELETE},
		     {"PATCH", EVHTTP_REQ_PATCH}, {"HEAD", EVHTTP_REQ_HEAD}};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(m, known[i].name)) {
			snprintf(o->method, sizeof(o->method), "%s", m);
			o->cmd = known[i].cmd;
			return true;
		}
	return false;
}

/* http://host[:port]/path[?query] into o; NULL or the reason it is refused. */
static const char *url_parse(struct http_op *o, const char *url)
{
	struct evhttp_uri *u = strlen(url) < HTTP_URL_MAX ? evhttp_uri_parse(url) : NULL;
	const char *why = NULL;
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	if (!u)
		why = "url is not a URL (at most 2047 characters)";
	else if (!scheme || strcasecmp(scheme, "http"))
		why = "url: only http:// (put the gateway behind a TLS terminator for https)";
	else if (!host || !*host || strlen(host) >= sizeof(o->host))
		why = "url has no host";
	if (!why) {
		snprintf(o->host, sizeof(o->host), "%s", host);
		int port = evhttp_uri_get_port(u);
		o->port = port > 0 ? (uint16_t)port : 80;
		const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
		snprintf(o->uri, sizeof(o->uri), "%s%s%s", path && *path ? path : "/",
			 query ? "?" : "", query ? query : "");
	}
	if (u)
		evhttp_uri_free(u);
	return why;
}

void wallet_admin_http(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	const char *method = "GET", *url = NULL, *body = "";
	struct http_op *o = calloc(1, sizeof(*o));
	if (!o) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "http: out of memory");
		return;
	}
	*o = (struct http_op){.w = w, .req = req, .max_price = w->cfg.http_max_price};
	if (!mp_admin_param_str(req, params, "method", &method, false) ||
	    !mp_admin_param_str(req, params, "url", &url, true) ||
	    !mp_admin_param_str(req, params, "body", &body, false) ||
	    !mp_admin_param_u64(req, params, "max_price", &o->max_price, false) ||
	    ((o->by_channel = json_object_get(params, "channel_id") != NULL) &&
	     !wallet_param_hex(req, params, "channel_id", o->channel_id, MP_ID_LEN, true, NULL))) {
		free(o);
		return;
	}
	o->receipt = json_is_true(json_object_get(params, "receipt"));
	const char *bad = url_parse(o, url);
	if (!bad && !method_parse(o, method ? method : "GET"))
		bad = "method must be GET, POST, PUT, DELETE, PATCH or HEAD";
	o->body_len = body ? strlen(body) : 0;
	if (!bad && !(o->body = strdup(body ? body : "")))
		bad = "out of memory";
	if (!bad && w->stopping)
		bad = "walletd is stopping";
	if (!bad && !fetch(o, NULL, on_probe))
		bad = "out of memory";
	if (bad) {
		mp_admin_fail(req, MP_ADMIN_BAD_PARAMS, "http: %s", bad);
		http_op_free(o);
	}
}
