/* buy (docs/goods.md "Buying (the wallet)"): an item of the holder's catalogue, bought chunk by
 * chunk on one channel, each chunk paid only after it arrived, so that at most one chunk's price
 * is ever at risk on either side. The admin method (params, channel choice) is in buy_admin.c,
 * the file OUT.part in buy_file.c.
 *
 *   OPENING (session at the holder: Open, in-flight Pays resent) --Pays resolved-->
 *   ASKING chunk 0 (ChunkReq{item}) --OK, checked (the purchase pinned: id, size, chunk_size,
 *     chunks, total; max_price)--> WRITING chunk k at k*chunk_size (worker)
 *   WRITING k --paid >= k+1 (a resumed purchase)--> ASKING k+1
 *   WRITING k --else--> PAYING u = max(1, ceil((price - credit) / unit_value)) units, order_ref
 *     = purchase_id (wallet_session_pay) --accepted--> ASKING k+1
 *   ASKING chunk k >= 1 --OK, checked (same purchase, chunk k, paid >= k)--> WRITING k
 *   ASKING chunks (the state) --OK, paid = chunks, no data--> COMMITTING (fsync, rename
 *     OUT.part to OUT) --> DONE (answered)
 *   ASKING --TOO_EARLY (the paying Pay still committing)--> ASKING again after 200 ms, at most
 *     BUY_EARLY_TRIES times
 *   any --refusal, a ChunkResp that does not check out, a deadline, a lost connection, a write
 *     error--> FAILED: OUT.part removed, the answer says how many chunks were received and
 *     how many units paid; the merchant keeps the purchase, so that a new buy of the same
 *   item on the channel resumes it (chunks paid for are served again free). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "clock.h"
#include "buy.h"
#include "buy_file.h"
#include "log.h"
#include "session.h"
#include "wallet.h"

#define BUY_EARLY_TRIES	   50
#define BUY_EARLY_DELAY_US 200000
#define BUY_PROGRESS_S	   5

static void ask(struct buy_op *x, uint32_t k);

void buy_op_free(void *arg)
{
	struct buy_op *x = arg;
	if (!x->answered && x->s)
		log_warn("buy %s: stopped after %u of %u chunks received", x->item, x->received,
			 x->chunks);
	buy_file_abandon(x->file);
	buy_key_free(x->key);
	if (x->retry)
		event_free(x->retry);
	free(x);
}

/* How far the buy got, for the session's failure answers. */
static void progress(void *arg, char *out, size_t len)
{
	const struct buy_op *x = arg;
	if (x->pinned)
		snprintf(out, len, "purchase %s: %u of %u chunks received", x->purchase_hex,
			 x->received, x->chunks);
	else
		snprintf(out, len, "no chunk received");
}

#define buy_fail(x, ...) wallet_session_fail((x)->s, __VA_ARGS__)

/* ---- the answers ---- */

/* The length chunk k must have. */
static uint64_t chunk_len(const struct buy_op *x, uint32_t k)
{
	return k + 1 < x->chunks ? x->chunk_size : x->size - (uint64_t)k * x->chunk_size;
}

/* Chunk 0's answer pins the purchase: NULL, or what is wrong with it. */
static const char *check_first(struct buy_op *x, const Micropay__V1__ChunkResp *r)
{
	if (r->purchase_id.len != BUY_PURCHASE_ID_LEN)
		return "the purchase_id is not 16 bytes";
	if (r->chunk_size < 1024 || r->chunk_size > 512 * 1024)
		return "chunk_size is not 1 KiB .. 512 KiB";
	if (r->size == 0 || r->chunks == 0 ||
	    (r->size + r->chunk_size - 1) / r->chunk_size != r->chunks)
		return "chunks is not ceil(size / chunk_size)";
	if (r->paid > r->chunks)
		return "paid is above chunks";
	memcpy(x->purchase_id, r->purchase_id.data, BUY_PURCHASE_ID_LEN);
	mp_hex_encode(x->purchase_id, BUY_PURCHASE_ID_LEN, x->purchase_hex);
	x->chunks = r->chunks;
	x->size = r->size;
	x->chunk_size = r->chunk_size;
	x->total = r->total;
	x->pinned = true;
	return NULL;
}

/* Every OK answer: NULL, or what is wrong with it. */
static const char *check_resp(struct buy_op *x, const Micropay__V1__ChunkResp *r)
{
	if (!r->item || strcmp(r->item, x->item))
		return "it names another item";
	if (r->chunk != x->asked)
		return "it carries another chunk than the one asked for";
	const char *bad = x->pinned ? NULL : check_first(x, r);
	if (bad)
		return bad;
	if (r->purchase_id.len != BUY_PURCHASE_ID_LEN ||
	    memcmp(r->purchase_id.data, x->purchase_id, BUY_PURCHASE_ID_LEN))
		return "it names another purchase";
	if (r->chunks != x->chunks || r->size != x->size || r->chunk_size != x->chunk_size ||
	    r->total != x->total)
		return "the item's chunks, size, chunk_size or total changed";
	if (r->paid > x->chunks || r->paid < x->paid || (x->asked > 0 && r->paid < x->asked))
		return "its count of paid chunks is not possible";
	if (x->asked == x->chunks)
		return r->data.len == 0 && r->paid == x->chunks
			   ? NULL
			   : "the state of a purchase paid in full is not paid in full";
	if (r->data.len != chunk_len(x, x->asked))
		return "the data is not the chunk's length";
	return NULL;
}

/* Every 10 % (items of 20 chunks or more; else every chunk), and at least every
 * BUY_PROGRESS_S seconds: logged, and a progress line to the admin client (which starts
 * mpctl's deadline again). */
void buy_report(struct buy_op *x)
{
	uint32_t step = x->chunks >= 20 ? x->chunks / 10 : 1;
	bool milestone = x->received % step == 0 || x->received == x->chunks;
	uint64_t now = mp_monotonic_s();
	if (!milestone && now < x->reported + BUY_PROGRESS_S)
		return;
	x->reported = now;
	char line[BUY_ITEM_MAX + 120];
	uint64_t bytes = x->received == x->chunks ? x->size : (uint64_t)x->received * x->chunk_size;
	snprintf(line, sizeof(line), "%s: %schunk %u/%u, %llu of %llu bytes, %u units paid",
		 x->item, x->by_key ? "sealed " : "", x->received, x->chunks,
		 (unsigned long long)bytes, (unsigned long long)x->size,
		 wallet_session_units_paid(x->s));
	if (milestone)
		log_info("buy %s", line);
	mp_admin_progress(wallet_session_req(x->s),
			  json_pack("{s:s,s:s,s:I,s:I,s:I}", "line", line, "purchase_id",
				    x->purchase_hex, "chunks_received", (json_int_t)x->received,
				    "chunks", (json_int_t)x->chunks, "units_paid",
				    (json_int_t)wallet_session_units_paid(x->s)));
}

static void on_committed(void *arg, const char *err)
{
	struct buy_op *x = arg;
	if (err) {
		buy_fail(x, "%s", err);
		return;
	}
	x->file = NULL; /* buy_file freed it */
	x->answered = true;
	char ch_hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(x->ch->channel_id, MP_ID_LEN, ch_hex);
	log_info("buy %s: %u chunks, %llu bytes in %s (purchase %s, %u units paid)", x->item,
		 x->chunks, (unsigned long long)x->size, x->out, x->purchase_hex,
		 wallet_session_units_paid(x->s));
	wallet_session_reply(
	    x->s, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "item", x->item,
			    "purchase_id", x->purchase_hex, "channel_id", ch_hex, "out", x->out,
			    "bytes", (json_int_t)x->size, "chunks", (json_int_t)x->chunks, "total",
			    (json_int_t)x->total, "paid_chunks", (json_int_t)x->paid, "units_paid",
			    (json_int_t)wallet_session_units_paid(x->s), "credit",
			    (json_int_t)x->credit, "issued", x->issued));
}

static void on_paid(struct pay_op *s, void *arg)
{
	struct buy_op *x = arg;
	ask(x, x->asked + 1);
}

/* Chunk `asked` is written: the next one, after paying for this one unless it is paid. */
static void on_written(void *arg, const char *err)
{
	struct buy_op *x = arg;
	if (err) {
		buy_fail(x, "%s", err);
		return;
	}
	x->received++;
	buy_report(x);
	if (x->paid >= x->asked + 1) {
		ask(x, x->asked + 1);
		return;
	}
	uint64_t unit = x->ch->unit_value ? x->ch->unit_value : 1;
	uint64_t need = x->price > x->credit ? x->price - x->credit : 0;
	uint64_t units = (need + unit - 1) / unit;
	if (units > UINT32_MAX) {
		buy_fail(x, "chunk %u costs %llu, more than a channel can pay", x->asked,
			 (unsigned long long)x->price);
		return;
	}
	wallet_session_pay(x->s, units ? (uint32_t)units : 1, x->purchase_id, BUY_PURCHASE_ID_LEN,
			   on_paid);
}

/* UNDERPAID on chunk 0 naming another purchase: the channel owes a delivered chunk of it. */
static void other_purchase(struct buy_op *x, const Micropay__V1__ChunkResp *r)
{
	char hex[2 * BUY_PURCHASE_ID_LEN + 1] = "?";
	if (r->purchase_id.len == BUY_PURCHASE_ID_LEN)
		mp_hex_encode(r->purchase_id.data, BUY_PURCHASE_ID_LEN, hex);
	buy_fail(x,
		 "the channel's purchase %s of item '%s' has a delivered chunk not paid yet (chunk "
		 "%u of %u, price %llu): the merchant sells nothing else on this channel until it "
		 "is paid",
		 hex, r->item ? r->item : "?", r->paid, r->chunks, (unsigned long long)r->price);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct buy_op *x = arg;
	ask(x, x->asked);
}

static void on_chunk(struct mp_conn *c, const MpEnvelope *env, void *arg)
{
	struct pay_op *s = arg;
	if (!env)
		return; /* the session reports why */
	struct buy_op *x = wallet_session_arg(s);
	char text[400];
	if (env->body_case != MP_BODY(CHUNK_RESP) || !env->chunk_resp->status) {
		wallet_status_text(env->body_case == MP_BODY(ERROR) ? env->error : NULL, text,
				   sizeof(text));
		buy_fail(x, "unexpected answer to ChunkReq for chunk %u: %s", x->asked, text);
		return;
	}
	const Micropay__V1__ChunkResp *r = env->chunk_resp;
	MpCode code = r->status->code;
	wallet_status_text(r->status, text, sizeof(text));
	struct timeval tv = {0, BUY_EARLY_DELAY_US};
	if (code == MP_ST(TOO_EARLY) && x->asked > 0 && ++x->early_tries <= BUY_EARLY_TRIES) {
		if (evtimer_add(x->retry, &tv) != 0)
			buy_fail(x, "cannot arm the retry of chunk %u", x->asked);
		return;
	}
	if (code == MP_ST(UNDERPAID) && x->asked == 0 && r->purchase_id.len) {
		other_purchase(x, r);
		return;
	}
	if (code != MP_ST(OK)) {
		buy_fail(x, "ChunkReq for chunk %u refused: %s", x->asked, text);
		return;
	}
	const char *bad = check_resp(x, r);
	if (bad) {
		buy_fail(x, "the answer for chunk %u does not check out: %s", x->asked, bad);
		return;
	}
	x->early_tries = 0;
	x->paid = r->paid;
	x->price = r->price;
	x->credit = r->credit;
	if (x->asked == 0) {
		log_info("buy %s: purchase %s, %u chunks of %u bytes, total %llu, %u paid already",
			 x->item, x->purchase_hex, x->chunks, x->chunk_size,
			 (unsigned long long)x->total, x->paid);
		if (x->has_max && x->total > x->max_price) {
			buy_fail(x,
				 "the item costs %llu, above max_price %llu: stopped after chunk 0 "
				 "(purchase %s)",
				 (unsigned long long)x->total, (unsigned long long)x->max_price,
				 x->purchase_hex);
			return;
		}
	}
	if (x->asked == x->chunks) {
		if (!buy_file_commit(x->file, x->overwrite, on_committed, x))
			buy_fail(x, "cannot queue the final write of %s.part", x->out);
		return;
	}
	if (!buy_file_write(x->file, (uint64_t)x->asked * x->chunk_size, r->data.data, r->data.len,
			    on_written, x))
		buy_fail(x, "cannot queue the write of chunk %u (workers busy)", x->asked);
}

static void ask(struct buy_op *x, uint32_t k)
{
	Micropay__V1__ChunkReq req = MICROPAY__V1__CHUNK_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, x->ch->channel_id};
	if (k == 0)
		req.item = x->item;
	else
		req.purchase_id = (ProtobufCBinaryData){BUY_PURCHASE_ID_LEN, x->purchase_id};
	req.chunk = k;
	x->asked = k;
	snprintf(x->what, sizeof(x->what), "ChunkReq for chunk %u of %s", k, x->item);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.version = MP_PROTOCOL_VERSION;
	env.body_case = MP_BODY(CHUNK_REQ);
	env.chunk_req = &req;
	if (!wallet_session_call(x->s, &env, on_chunk, x->what))
		buy_fail(x, "cannot send the ChunkReq for chunk %u", k);
}

/* By key on a channel buy issued: its opening unit is paid, the Offer can be asked. */
static void on_opening_unit(struct pay_op *s, void *arg)
{
	buy_key_start(arg);
}

/* The opening unit (a Pay of one unit, order_ref = the channel id), unless the channel was
 * paid meanwhile (a Pay of an earlier buy resent by the Open). */
static void pay_opening_unit(struct buy_op *x)
{
	if (wallet_channel_spent(x->ch) > x->ch->seg_start) {
		buy_key_start(x);
		return;
	}
	char line[BUY_ITEM_MAX + 160];
	snprintf(line, sizeof(line),
		 "%s: paying one opening unit (a holder makes offers only on a channel with a "
		 "paid unit)",
		 x->item);
	log_info("buy %s", line);
	mp_admin_progress(wallet_session_req(x->s), json_pack("{s:s}", "line", line));
	wallet_session_pay(x->s, 1, x->ch->channel_id, MP_ID_LEN, on_opening_unit);
}

void buy_on_opened(struct pay_op *s, void *arg)
{
	struct buy_op *x = arg;
	x->s = s;
	wallet_session_set_progress(s, progress);
	if (!wallet_session_pays_resolved(s, x->ch, "buying"))
		return;
	if (x->by_key && x->opening_unit) {
		pay_opening_unit(x);
		return;
	}
	if (x->by_key) {
		buy_key_start(x);
		return;
	}
	if (!(x->retry = evtimer_new(wallet_session_wallet(s)->base, on_retry, x))) {
		buy_fail(x, "out of memory");
		return;
	}
	ask(x, 0);
}
