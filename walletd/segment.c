/* The wallet's view of a channel's segments (protocol.md section 4; docs/transfer.md): the
 * Transfer/Cap pairs 1..seg_seq it carries in every Open, the current segment's head (the
 * prev_seg_hash of the next Transfer) and owner key. */
#include <openssl/crypto.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "stmt.h"
#include "store.h"
#include "wallet.h"

bool wallet_segment_load(struct wallet *w, struct wchannel *ch)
{
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
	if (!wstore_segments_load(w->store, ch->channel_id, &ch->segments, &ch->n_segments) ||
	    ch->n_segments != 2 * (size_t)ch->seg_seq) {
		log_err("channel %s: its %u segment pairs cannot be read from the store", hex,
			ch->seg_seq);
		return false;
	}
	ch->claim_state = -1;
	if (ch->request && ch->seg_seq == 0) /* issued by this wallet: segment 0, no claim */
		return true;
	struct wstore_claim c;
	int found = wstore_claim_get(w->store, ch->channel_id, ch->seg_seq, &c);
	if (found < 0)
		return false;
	ch->claim_state = found == 1 ? (int)c.answer : WCLAIM_WAITING;
	if (found == 1 && c.answer == WCLAIM_REFUSED)
		wallet_channel_claim_refused(ch, c.status);
	if (found == 1)
		wstore_claim_clear(&c);
	return true;
}

void wallet_segment_head(const struct wchannel *ch, uint8_t head[MP_HASH_LEN])
{
	if (ch->n_segments >= 2)
		mp_stmt_hash(ch->segments[ch->n_segments - 2], head);
	else
		mp_stmt_hash(ch->cert, head);
}

bool wallet_owner_key(struct wallet *w, const struct wchannel *ch, struct mp_key *key)
{
	uint8_t seed[MP_SK_LEN];
	bool ok =
	    wstore_owner_seed(w->store, ch->channel_id, seed) == 1 && mp_key_from_seed(key, seed);
	OPENSSL_cleanse(seed, sizeof(seed));
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(ch->channel_id, MP_ID_LEN, hex);
		log_err("channel %s: cannot load the owner key of segment %u", hex, ch->seg_seq);
	}
	return ok;
}

json_t *wallet_segment_json(const struct wchannel *ch)
{
	json_t *o = json_pack("{s:I,s:I,s:I}", "seg_seq", (json_int_t)ch->seg_seq, "start",
			      (json_int_t)ch->seg_start, "len", (json_int_t)ch->seg_len);
	if (o && ch->cert) {
		uint8_t head[MP_HASH_LEN];
		wallet_segment_head(ch, head);
		json_object_set_new(o, "head", mp_json_hex(head, MP_HASH_LEN));
	}
	return o;
}
