/* walletd's admin socket: status, metrics, register, issue, issue.retry, pay, transfer.offer,
 * transfer.send, transfer.accept, buy, budget, balance, channels, passphrase.change, shutdown.
 * Every method answers one top-level object of a fixed shape. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "drain.h"
#include "admin_service.h"
#include "reload.h"
#include "clock.h"
#include "amount.h"
#include "log.h"
#include "metrics_admin.h"
#include "wallet.h"
#include "wallet_receipt.h"

bool wallet_param_hex(struct mp_admin_req *req, json_t *params, const char *key, uint8_t *out,
		      size_t maxlen, bool exact, size_t *outlen)
{
	json_t *v = json_object_get(params, key);
	char digits[2 * 64 + 1];
	const char *hex = NULL;
	if (json_is_string(v)) {
		hex = json_string_value(v);
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		/* mpctl sends digit-only values as integers: take the digits back. */
		snprintf(digits, sizeof(digits), "%lld", (long long)json_integer_value(v));
		hex = digits;
	}
	size_t len = hex ? strlen(hex) : 0;
	bool ok = hex && len % 2 == 0 && len >= 2 && len <= 2 * maxlen &&
		  (!exact || len == 2 * maxlen) && mp_hex_decode(hex, out, len / 2);
	if (!ok) {
		if (exact)
			mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
				      "parameter '%s' must be %zu hex digits", key, 2 * maxlen);
		else
			mp_admin_fail(req, MP_ADMIN_BAD_PARAMS,
				      "parameter '%s' must be 2 .. %zu hex digits (1 .. %zu bytes)",
				      key, 2 * maxlen, maxlen);
		return false;
	}
	if (outlen)
		*outlen = len / 2;
	return true;
}

static json_t *account_json(const struct wallet *w)
{
	if (!w->registered)
		return json_null();
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(w->account_id, MP_ID_LEN, hex);
	return json_string(hex);
}

static void admin_status(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	char pk[2 * MP_PK_LEN + 1];
	mp_hex_encode(w->account_key.pk, MP_PK_LEN, pk);
	mp_admin_reply(req, json_pack("{s:s,s:o,s:s,s:I,s:s,s:s,s:I,s:I,s:o}", "daemon", "walletd",
				      "account_id", account_json(w), "account_pk", pk, "channels",
				      (json_int_t)wallet_channel_count(w), "currency",
				      w->cfg.currency, "broker", w->cfg.broker, "time",
				      (json_int_t)mp_clock_now(&w->clock), "uptime",
				      (json_int_t)(mp_monotonic_s() - w->started_mono), "clock",
				      mp_clock_guard_json(w->clock_guard)));
}

static void admin_metrics(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	mp_admin_metrics_reply(req, w->metrics);
}

/* The customer's position (protocol.md section 10, wallet channel): spendable (ACTIVE and
 * still payable), in open channels (every ACTIVE or CLOSING channel not yet past pay_until,
 * payable or not), pending refunds (the unspent value of channels past pay_until or CLOSED
 * not yet refunded, as the
 * wallet counts it: the broker pays (n - spent) * unit_value, spent by its own count) and
 * refunded (what the broker reported refunded). */
struct position {
	uint64_t spendable, in_open, pending_refunds, refunded;
};

static void add_capped(uint64_t *total, uint64_t v)
{
	if (!mp_amount_add(*total, v, total))
		*total = MP_AMOUNT_MAX;
}

static json_t *balance_entry(const struct wallet *w, const struct wchannel *ch,
			     struct position *pos)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	/* n * unit_value was checked at issue, so neither can overflow. */
	uint32_t spent = wallet_channel_spent(ch);
	uint64_t unspent = (uint64_t)(ch->n - spent) * ch->unit_value;
	uint64_t now = wallet_now(w);
	/* A closed channel's unspent rest is refunded early, an expired one's at finalisation;
	 * a CLOSING channel pays no more but its value is still in the channel. */
	bool expired = ch->state == WCH_CLOSED || (ch->pay_until && now >= ch->pay_until);
	bool payable = ch->state == WCH_ACTIVE && now + WALLET_PAY_MARGIN < ch->pay_until;
	if (wallet_channel_claim_refusal(ch)) /* never this wallet's: in no total */
		payable = false;
	else if (ch->refunded)
		add_capped(&pos->refunded, ch->refund_amount);
	else if (expired)
		add_capped(&pos->pending_refunds, unspent);
	else
		add_capped(&pos->in_open, unspent);
	if (!ch->refunded && payable)
		add_capped(&pos->spendable, unspent);
	return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:I}", "channel_id", hex, "state",
			 wallet_channel_state_name(w, ch), "currency", ch->currency, "n",
			 (json_int_t)ch->n, "last", (json_int_t)ch->last, "unit_value",
			 (json_int_t)ch->unit_value, "unspent", (json_int_t)unspent, "payable",
			 payable && !ch->refunded, "refunded",
			 (json_int_t)(ch->refunded ? ch->refund_amount : 0));
}

static void admin_balance(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	json_t *list = json_array();
	struct position pos = {0};
	for (const struct wchannel *ch = w->channels; ch; ch = ch->next)
		if (ch->state == WCH_ACTIVE || ch->state == WCH_CLOSING || ch->state == WCH_CLOSED)
			json_array_append_new(list, balance_entry(w, ch, &pos));
	mp_admin_reply(req, json_pack("{s:s,s:o,s:I,s:I,s:I,s:I,s:I}", "currency", w->cfg.currency,
				      "channels", list, "unspent_total", (json_int_t)pos.in_open,
				      "spendable", (json_int_t)pos.spendable, "in_open_channels",
				      (json_int_t)pos.in_open, "pending_refunds",
				      (json_int_t)pos.pending_refunds, "refunded",
				      (json_int_t)pos.refunded));
}

static void admin_channels(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	json_t *list = json_array();
	for (const struct wchannel *ch = w->channels; ch; ch = ch->next)
		json_array_append_new(list, wallet_channel_json(w, ch));
	json_t *offers = wallet_offers_json(w);
	if (!offers) {
		json_decref(list);
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "channels: cannot read the offers");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o,s:o}", "channels", list, "offers", offers));
}

static void admin_shutdown(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	mp_admin_answer_shutdown(req, w->drain);
}

/* What SIGHUP does: the CA and the log level from the configuration file (walletd/service.c). */
static void admin_reload(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	mp_admin_answer_reload(req, w->reload);
}

static void admin_clock_advance(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	mp_clock_admin_advance(req, params, &w->clock);
	mp_clock_guard_moved(w->clock_guard);
}

static void admin_clock_show(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	mp_clock_admin_show(req, &w->clock);
}

#define CHANNEL_ID                                                                                 \
	{                                                                                          \
		"channel_id", MP_ADMIN_T_HEX, true, NULL, "the channel id (32 hex digits)"         \
	}
#define ENDPOINT_HOLDER                                                                            \
	{                                                                                          \
		"endpoint", MP_ADMIN_T_STRING, false, "the holder's",                              \
		    "host:port of the merchant holding the channel"                                \
	}

static const struct mp_admin_method wallet_methods[] = {
    {"status", admin_status, "daemon status: account, channels, currency, broker, time", NULL},
    {"metrics", admin_metrics, "Prometheus text", NULL},
    {"register", wallet_admin_register, "register the account key with the broker", NULL},
    {"issue", wallet_admin_issue, "issue a channel: escrow n * unit_value at the broker",
     MP_ADMIN_PARAMS({"merchant_id", MP_ADMIN_T_HEX, false, "unbound",
		      "the first holder (32 hex digits); without it the first merchant paid "
		      "binds the channel"},
		     {"n", MP_ADMIN_T_UINT, true, NULL, "number of units"},
		     {"unit_value", MP_ADMIN_T_UINT, true, NULL, "value of one unit, minor units"},
		     {"days", MP_ADMIN_T_UINT, true, NULL, "lifetime: 1, 7 or 30"})},
    {"issue.retry", wallet_admin_issue_retry, "resend a stored IssueRequest",
     MP_ADMIN_PARAMS(CHANNEL_ID)},
    {"pay", wallet_admin_pay, "pay units at a merchant for an order",
     MP_ADMIN_PARAMS(
	 CHANNEL_ID, {"endpoint", MP_ADMIN_T_STRING, true, NULL, "host:port of the merchant"},
	 {"units", MP_ADMIN_T_UINT, true, NULL, "units to pay"},
	 {"order_ref", MP_ADMIN_T_HEX, true, NULL, "the merchant's order reference (hex)"},
	 {"merchant_id", MP_ADMIN_T_HEX, false, "the holder",
	  "the merchant to pay (another one: a handoff)"},
	 {"receipt", MP_ADMIN_T_BOOL, false, "false",
	  "also ask for the signed Receipt of the last Pay (stored, shown as \"receipt\")"})},
    {"http", wallet_admin_http,
     "fetch a URL, paying an HTTP 402 gateway with a channel held by its merchant (one issued "
     "within [wallet] auto_issue_budget when none can pay)",
     MP_ADMIN_PARAMS({"url", MP_ADMIN_T_STRING, true, NULL, "http://host:port/path?query"},
		     {"method", MP_ADMIN_T_STRING, false, "GET", "GET, POST, PUT, DELETE, ..."},
		     {"body", MP_ADMIN_T_STRING, false, "empty", "the request body"},
		     {"max_price", MP_ADMIN_T_UINT, false, "[wallet] http_max_price",
		      "the most this request may cost, minor units"},
		     {"channel_id", MP_ADMIN_T_HEX, false, "a free channel at the merchant",
		      "the channel to pay with"},
		     {"receipt", MP_ADMIN_T_BOOL, false, "false",
		      "ask for the merchant's signed Receipt in the answer (checked, stored, "
		      "shown as paid.receipt)"})},
    {"http.spending", wallet_admin_http_spending,
     "what HTTP 402 gateways were paid, per host, and the forward proxy's budget", NULL},
    {"transfer.offer", wallet_admin_transfer_offer, "the receiver's offer to take a channel",
     MP_ADMIN_PARAMS(CHANNEL_ID, {"len", MP_ADMIN_T_UINT, false, "10000",
				  "length of the receiver's new chain"})},
    {"transfer.send", wallet_admin_transfer_send, "give the channel's rest away",
     MP_ADMIN_PARAMS(CHANNEL_ID, {"offer", MP_ADMIN_T_STRING, true, NULL, "the receiver's offer"},
		     ENDPOINT_HOLDER)},
    {"transfer.accept", wallet_admin_transfer_accept, "take a channel given to this wallet",
     MP_ADMIN_PARAMS({"bundle", MP_ADMIN_T_STRING, true, NULL, "the sender's bundle"})},
    {"close", wallet_admin_close, "close the channel early at its holder",
     MP_ADMIN_PARAMS(CHANNEL_ID, ENDPOINT_HOLDER)},
    {"receipt", wallet_admin_receipt,
     "ask a merchant for the signed Receipt of an acknowledged payment; stored and shown",
     MP_ADMIN_PARAMS(
	 CHANNEL_ID,
	 {"index", MP_ADMIN_T_UINT, false, "the channel's last",
	  "the paid index (a Pay's j) in the current segment"},
	 {"merchant_id", MP_ADMIN_T_HEX, false, "the holder",
	  "the merchant that accepted the payment"},
	 {"endpoint", MP_ADMIN_T_STRING, false, "the holder's", "host:port of that merchant"})},
    {"buy", wallet_admin_buy,
     "buy an item of the holder's catalogue: chunk by chunk, each chunk paid after it arrived, "
     "or by key release",
     MP_ADMIN_PARAMS(
	 {"item", MP_ADMIN_T_STRING, true, NULL, "the item's id in the merchant's catalogue"},
	 {"out", MP_ADMIN_T_STRING, true, NULL, "the file to write (absolute path)"},
	 {"channel_id", MP_ADMIN_T_HEX, false, NULL, "the channel to pay with (32 hex digits)"},
	 {"merchant_id", MP_ADMIN_T_HEX, false, NULL,
	  "the merchant to buy at: alone, its ACTIVE channel with the most units left, else "
	  "another merchant's (with [wallet] auto_issue_budget: one that can pay max_price, else "
	  "a new one); a channel held by another merchant is handed off to it"},
	 {"endpoint", MP_ADMIN_T_STRING, false, "the holder's",
	  "host:port of the merchant holding the channel"},
	 {"max_price", MP_ADMIN_T_UINT, false, "none",
	  "stop after chunk 0 (key: before paying) if the item costs more (minor units)"},
	 {"delivery", MP_ADMIN_T_STRING, false, "chunks",
	  "chunks: paid chunk by chunk; key: the holder's Offer, the ciphertext checked, one Pay, "
	  "the key"},
	 {"overwrite", MP_ADMIN_T_BOOL, false, "false", "replace out if it exists"},
	 {"budget", MP_ADMIN_T_UINT, false, "what is left of [wallet] auto_issue_budget",
	  "the most this buy may escrow in a channel it issues when none fits (needs "
	  "max_price)"})},
    {"budget", wallet_admin_budget,
     "[wallet] auto_issue_budget: committed by the channels buy and http issued by "
     "themselves, left, and those channels",
     NULL},
    {"dispute", wallet_admin_dispute,
     "dispute a paid key-release offer whose key did not come by its deadline, at the broker; "
     "again: its state (DISPUTED while the merchant may still answer, KEY_RELEASED: the file "
     "written, REFUNDED)",
     MP_ADMIN_PARAMS(CHANNEL_ID, {"order_ref", MP_ADMIN_T_HEX, true, NULL,
				  "the offer's order_ref (32 hex digits, from key_offers)"})},
    {"release", wallet_admin_release,
     "ask the broker to release the channel from a holder that does not answer: after "
     "[broker] release_wait without its Handoff or Close, a ForcedClose at its highest redeemed "
     "point and the rest refunded; again: the state (PENDING, DONE, FORCED with final_index)",
     MP_ADMIN_PARAMS(CHANNEL_ID,
		     {"to_mid", MP_ADMIN_T_HEX, false, "none", "the merchant to hand it to"},
		     {"close", MP_ADMIN_T_BOOL, false, "false", "close it (instead of to_mid)"})},
    {"key_offers", wallet_admin_key_offers,
     "the key-release offers on record: {channel_id, order_ref, item, out, state, deadline, "
     "size, refunded}",
     NULL},
    {"receipts", wallet_admin_receipts, "the channel's stored receipts, checked again",
     MP_ADMIN_PARAMS(CHANNEL_ID)},
    {"receipt.verify", wallet_admin_receipt_verify,
     "check a Receipt against a MerchantCert and the broker key, off-line; show its fields",
     MP_ADMIN_PARAMS(
	 {"receipt", MP_ADMIN_T_STRING, true, NULL, "the Receipt (base64)"},
	 {"merchant_cert", MP_ADMIN_T_STRING, true, NULL, "the merchant's MerchantCert (base64)"},
	 {"broker_pk", MP_ADMIN_T_HEX, false, "this wallet's broker key",
	  "the broker's public key (hex)"})},
    {"refund", wallet_admin_refund,
     "ask the broker for the channel's refund (TOO_EARLY: when to ask again)",
     MP_ADMIN_PARAMS(CHANNEL_ID)},
    {"balance", admin_balance,
     "spendable value, value in open channels, pending refunds, refunded, per channel", NULL},
    {"channels", admin_channels, "every channel of this wallet, and its offers", NULL},
    {"clock.show", admin_clock_show, "protocol time: {test_clock, offset, now}", NULL},
    {"clock.advance", admin_clock_advance, "move the test clock forward (--test-clock only)",
     MP_ADMIN_PARAMS({"seconds", MP_ADMIN_T_UINT, true, NULL, "seconds to add"})},
    {"passphrase.change", wallet_admin_passphrase_change,
     "re-wrap the store's data key under the passphrase now in [wallet] passphrase_file "
     "(docs/wallet-store.md)",
     NULL},
    {"reload", admin_reload, "re-read the CA and the log level (as SIGHUP)", NULL},
    {"shutdown", admin_shutdown,
     "stop gracefully: refuse new exchanges, finish those in progress, then exit", NULL},
    {NULL, NULL, NULL, NULL},
};

bool wallet_admin_open(struct wallet *w)
{
	w->admin =
	    mp_admin_open(w->base, w->cfg.admin_socket, w->cfg.admin_group, wallet_methods, w);
	return w->admin != NULL;
}
