/* A paid request's checks (gateway_internal.h): a Pay's, in protocol order (docs/protocol.md
 * section 6), then the offer holding the channel, the price, and the chain check last (the
 * only hashing of the chain); before them the header and the request's reference. Nothing
 * changes until all passed. */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "batch.h"
#include "gateway_internal.h"
#include "offer.h"

static struct gw_verdict refused(int status, const char *code, const char *detail)
{
	return (struct gw_verdict){status, code, detail};
}

/* The header and the reference (this request's method, target and body). */
static struct gw_verdict check_header(struct gw_call *c)
{
	const char *value =
	    evhttp_find_header(evhttp_request_get_input_headers(c->req), GW_HEADER_PAYMENT);
	const char *detail = NULL;
	if (!value)
		return refused(402, "REQUIRED", "send the payment in " GW_HEADER_PAYMENT);
	if (!gw_payment_parse(value, &c->pay, &detail))
		return refused(402, "MALFORMED", detail);
	struct evbuffer *body = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(body);
	uint8_t ref[GW_REF_LEN];
	if (!gw_request_ref(c->method, evhttp_request_get_uri(c->req),
			    len ? evbuffer_pullup(body, -1) : NULL, len, ref))
		return refused(503, "INTERNAL", "cannot hash the request");
	if (memcmp(ref, c->pay.ref, GW_REF_LEN) != 0)
		return refused(402, "CONFLICT",
			       "the payment's ref is bound to another method, URI or body");
	return (struct gw_verdict){0};
}

/* The channel: held, this segment, a fresh index in range, payable for as long as the
 * upstream may take, no offer holding it. */
static struct gw_verdict check_channel(struct gateway *g, struct gw_call *c, struct channel *ch,
				       char *why, size_t whylen)
{
	struct merchant *m = g->m;
	const char *detail = NULL;
	if (!mp_clock_guard_serving(m->clock_guard, why, whylen))
		return refused(503, "INTERNAL", why);
	if (ch && ch->gateway_hold)
		return refused(409, "LIMIT", GATEWAY_HOLD_DETAIL);
	if (ch && ch->signing)
		return refused(503, "LIMIT", channel_busy(ch));
	MpCode code = merchant_pay_precheck(m, c->pay.seg_seq, c->pay.j, ch, &detail);
	if (code != MP_ST(OK))
		return refused(402, mp_code_name(code), detail);
	if (c->pay.j <= ch->last)
		return refused(402, "STALE_INDEX", "index already paid: this payment was used");
	if (merchant_now(m) + m->cfg.gateway_upstream_timeout + m->cfg.pay_margin >= ch->pay_until)
		return refused(402, "EXPIRED",
			       "the channel stops being payable before the upstream's deadline");
	code = offer_pay_check(m, ch, c->pay.ref, GW_REF_LEN, c->pay.j, why, whylen);
	if (code != MP_ST(OK))
		return refused(code == MP_ST(INTERNAL) ? 503 : 402, mp_code_name(code), why);
	return (struct gw_verdict){0};
}

struct gw_verdict gw_verify(struct gateway *g, struct gw_call *c, char *why, size_t whylen)
{
	struct merchant *m = g->m;
	struct gw_verdict v = check_header(c);
	if (v.status)
		return v;
	struct channel *ch = channel_find(&m->channels, c->pay.channel_id);
	v = check_channel(g, c, ch, why, whylen);
	if (v.status)
		return v;
	if (c->pay.has_price && c->pay.price < c->route->price) {
		snprintf(why, whylen,
			 "the price is %llu now, above the %llu this payment agreed to: ask again",
			 (unsigned long long)c->route->price, (unsigned long long)c->pay.price);
		return refused(402, "UNDERPAID", why);
	}
	uint64_t added, credit;
	if (!mp_amount_mul(c->pay.j - ch->last, ch->unit_value, &added) ||
	    !mp_amount_add(ch->credit, added, &credit))
		return refused(402, "LIMIT", "channel credit would overflow");
	if (credit < c->route->price) {
		snprintf(why, whylen, "%u units and the channel's credit pay %llu of %llu",
			 c->pay.j - ch->last, (unsigned long long)credit,
			 (unsigned long long)c->route->price);
		return refused(402, "UNDERPAID", why);
	}
	if (!batch_has_room(m))
		return refused(503, "LIMIT", "merchant busy: payments are being committed; retry");
	if (!mp_chain_verify(m->hasher, ch->nonce, ch->last - ch->seg_start, ch->w_last,
			     c->pay.j - ch->seg_start, c->pay.w))
		return refused(402, "BAD_CHAIN", "payword does not verify");
	c->ch = ch;
	return (struct gw_verdict){0};
}

/* Targets a server behind us may read as another path than the one priced here: an empty
 * segment (//), path parameters (;), backslashes, fragments, encoded slashes, backslashes or
 * NULs, dot segments. */
static bool target_ambiguous(const char *target, size_t len)
{
	static const char *const bad[] = {"//",	 ";",	"\\",  "#",   "%2f", "%2F",
					  "%5c", "%5C", "%00", "/./", "/../"};
	char path[GW_ROUTE_PATH_MAX * 3 + 1];
	if (len >= sizeof(path))
		return true;
	memcpy(path, target, len);
	path[len] = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (strstr(path, bad[i]))
			return true;
	return (len >= 2 && !strcmp(path + len - 2, "/.")) ||
	       (len >= 3 && !strcmp(path + len - 3, "/.."));
}

char *gw_request_path(struct evhttp_request *req)
{
	const char *target = evhttp_request_get_uri(req);
	if (!target || target[0] != '/')
		return NULL; /* absolute-form, authority-form, asterisk: not served */
	size_t len = strcspn(target, "?");
	if (target_ambiguous(target, len))
		return NULL;
	char raw[GW_ROUTE_PATH_MAX * 3 + 1];
	snprintf(raw, sizeof(raw), "%.*s", (int)len, target);
	size_t n = 0;
	char *path = evhttp_uridecode(raw, 0, &n);
	if (path && (n != strlen(path) || target_ambiguous(path, n))) { /* %00, %2e%2e, ... */
		free(path);
		path = NULL;
	}
	return path;
}
