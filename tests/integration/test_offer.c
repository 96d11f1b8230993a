/* Key release at the merchant (docs/goods.md "Key release") against the real daemons
 * (deploy/mpnet with MP_TEST_CLOCK: brokerd, merchant m1 restarted with a catalogue and
 * `key_deadline = 60`), the wallet's side played by a raw client:
 * - an honest sale: one unit paid, OfferReq, the Offer verified under m1's key, every sealed
 *   chunk fetched free and hashed to the Offer's ciphertext_hash, KeyReq refused UNDERPAID,
 *   exactly pay_index paid naming the offer (the excess of the units over the price stays
 *   credit), KeyReq answers the key whose SHA-256 is key_hash, each chunk opens to the file
 *   byte for byte; listed by `offers` (and the item by `catalogue` with delivery key), counted
 *   by the metrics;
 * - refusals: an OfferReq before any paid unit (UNDERPAID), a key item asked chunk by chunk and
 *   a chunk item asked by Offer (UNKNOWN_ITEM), the same OfferReq twice (the same bytes), a Pay
 *   at the wrong index or after the channel's last moved naming the offer (CONFLICT, nothing
 *   accepted; the next correct Pay works), a Pay past the deadline (EXPIRED, nothing accepted),
 *   other Pays and offers while an unpaid offer holds the channel, also lapsed (CONFLICT),
 *   a Pay naming an older offer replaced by a newer one (CONFLICT, nothing accepted),
 *   a KeyReq for no offer (UNKNOWN_ITEM);
 * - offers outlive SIGKILL: the same Offer bytes and sealed chunks after a restart, the key
 *   after another; a changed file is refused CONFLICT (also one rewritten in place with its
 *   size and mtime kept), the unpaid offer holds the channel, and
 *   once cancelled the next OfferReq makes a new offer;
 * - an unpaid offer holds the channel past its deadline until the buyer's OfferCancel (named
 *   in the OpenAck; cancels by another key, of another statement or merchant refused; kept
 *   over SIGKILL; a paid offer never cancelled);
 * - the paying Pay in a batch that cannot commit (the store write-locked from outside): KeyReq
 *   and OfferReq TOO_EARLY, no key released; after the commit the Pay OK and the key out;
 * - retention: a paid offer is kept by store.compact until goods_retention after its deadline,
 *   then deleted (goods_rows, the metric), and after a restart its key is unknown.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "harness_custody.h"
#include "harness_goods.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_store.h"
#include "offer.h"
#include "offer_cancel.h"
#include "sealed.h"
#include "sealed_tree.h"
#include "../check_run.h"

static struct net net;
static char goods[700], cat_path[760];
static struct tmerchant m1;

#define SONG_SIZE   (5 * 1024 - 100) /* 5 chunks of 1 KiB, the last shorter */
#define SONG_PRICE  13		     /* whole, sold by key release */
#define SONG_CHUNKS 5

static void setup_net(void)
{
	setenv("MP_TEST_CLOCK", "1", 1);
	net_up(&net);
	snprintf(goods, sizeof(goods), "%s/goods", net.dir);
	snprintf(cat_path, sizeof(cat_path), "%s/catalogue.ini", net.dir);
	ck_assert_int_eq(mkdir(goods, 0700), 0);
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	goods_write(goods, "meter.bin", 3000, 2);
	goods_write(goods, "book.pdf", 2000, 3);
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[song]\nfile = %s/song.ogg\nprice = %d\nchunk_size = 1024\ndelivery = key\n"
		"[meter]\nfile = %s/meter.bin\nprice = 3\nmetered = true\nchunk_size = 1024\n"
		"[book]\nfile = %s/book.pdf\nprice = 5\nchunk_size = 1024\ndelivery = key\n",
		goods, SONG_PRICE, goods, goods);
	fclose(f);
	char setting[900];
	snprintf(setting, sizeof(setting), "catalogue = %s\nkey_deadline = 60", cat_path);
	net_restart_with(&net, "m1", "merchant", setting);
	tmerchant_load(&m1, &net, "m1");
}

static void teardown_net(void)
{
	tmerchant_free(&m1);
	net_down(&net);
}

/* ---- the raw client's requests ---- */

static MpEnvelope *offer_call(struct wire *w, const uint8_t id[MP_ID_LEN], const char *item)
{
	Micropay__V1__OfferReq req = MICROPAY__V1__OFFER_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)id};
	req.item = (char *)item;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OFFER_REQ);
	env.offer_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	ck_assert_msg(e && e->body_case == MP_BODY(OFFER_RESP) && e->offer_resp->status,
		      "no OfferResp for '%s'", item);
	return e;
}

static MpCode offer_code(struct wire *w, const uint8_t id[MP_ID_LEN], const char *item,
			 const char *detail_has)
{
	MpEnvelope *e = offer_call(w, id, item);
	MpCode code = e->offer_resp->status->code;
	ck_assert_msg(!detail_has || strstr(e->offer_resp->status->detail, detail_has),
		      "OfferResp detail '%s' lacks '%s'", e->offer_resp->status->detail,
		      detail_has);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* Pay j naming ref (16 bytes) or the plain order_ref 0x01; the answer's code, *last its
 * durable last. */
static MpCode pay(struct tchannel *ch, struct wire *w, uint32_t j, const uint8_t *ref,
		  uint32_t *last, uint64_t *credit, const char *detail_has)
{
	static const uint8_t plain = 1;
	MpEnvelope *e = tchannel_pay(ch, w, j, ref ? ref : &plain, ref ? 16 : 1);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	MpCode code = e->pay_ack->status->code;
	ck_assert_msg(!detail_has || strstr(e->pay_ack->status->detail, detail_has),
		      "PayAck detail '%s' lacks '%s'", e->pay_ack->status->detail, detail_has);
	if (last)
		*last = e->pay_ack->last;
	if (credit)
		*credit = e->pay_ack->credit;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* ---- an offer as the wallet sees it ---- */

struct got_offer {
	struct mp_offer o;
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	uint8_t *bytes; /* the Signed Offer, packed: compared between answers */
	size_t len;
};

/* OfferReq answered OK: the Offer opened under m1's key and checked against the answer. */
static void get_offer(struct wire *w, const uint8_t id[MP_ID_LEN], struct got_offer *g)
{
	MpEnvelope *e = offer_call(w, id, "song");
	const Micropay__V1__OfferResp *r = e->offer_resp;
	ck_assert_msg(r->status->code == MP_ST(OK), "OfferReq: %s: %s",
		      mp_code_name(r->status->code), r->status->detail);
	const char *bad = mp_offer_open(r->offer, m1.key.pk, &g->o);
	ck_assert_msg(bad == NULL, "%s", bad);
	ck_assert(!memcmp(g->o.merchant_id, m1.mid, MP_ID_LEN));
	ck_assert(!memcmp(g->o.channel_id, id, MP_ID_LEN));
	ck_assert_uint_eq(g->o.seg_seq, 0);
	ck_assert_uint_eq(g->o.price, SONG_PRICE);
	ck_assert_str_eq(r->item, "song");
	ck_assert_uint_eq(r->size, SONG_SIZE);
	ck_assert_uint_eq(r->chunk_size, 1024);
	ck_assert_uint_eq(r->chunks, SONG_CHUNKS);
	ck_assert_uint_eq(r->nonce_prefix.len, MP_SEAL_PREFIX_LEN);
	memcpy(g->prefix, r->nonce_prefix.data, MP_SEAL_PREFIX_LEN);
	g->len = micropay__v1__signed__get_packed_size(r->offer);
	g->bytes = malloc(g->len);
	ck_assert_ptr_nonnull(g->bytes);
	micropay__v1__signed__pack(r->offer, g->bytes);
	micropay__v1__envelope__free_unpacked(e, NULL);
}

static bool same_offer(const struct got_offer *a, const struct got_offer *b)
{
	return a->len == b->len && !memcmp(a->bytes, b->bytes, a->len);
}

/* OfferCancelReq for g signed by key (the hash it names spoiled if wrong_hash); the code. */
static MpCode cancel_code(struct wire *w, const struct got_offer *g, const struct mp_key *key,
			  bool wrong_hash)
{
	MpSigned *offer = mp_stmt_decode(g->bytes, g->len);
	ck_assert_ptr_nonnull(offer);
	struct mp_offer o = g->o;
	if (wrong_hash)
		offer->body.data[0] ^= 1; /* another statement: another stmt_hash */
	MpCode code = goods_offer_cancel(w, key, offer, &o);
	mp_stmt_free(offer);
	return code;
}

/* Every sealed chunk of the offer, fetched free (each len + 16 bytes, paid as given),
 * concatenated in *sealed; their Merkle tree (common/sealed_tree.h) is the Offer's
 * ciphertext_hash. */
static void fetch_sealed(struct wire *w, const uint8_t id[MP_ID_LEN], const struct got_offer *g,
			 uint32_t paid, uint8_t **sealed, size_t *len)
{
	*sealed = malloc(SONG_SIZE + SONG_CHUNKS * MP_SEAL_TAG_LEN);
	*len = 0;
	struct mp_sealed_hash *tree = mp_sealed_hash_new();
	ck_assert_ptr_nonnull(tree);
	for (uint32_t k = 0; k < SONG_CHUNKS; k++) {
		MpEnvelope *e = chunk_req_call(w, id, NULL, g->o.order_ref, k);
		const Micropay__V1__ChunkResp *r = e->chunk_resp;
		size_t plain = k + 1 < SONG_CHUNKS ? 1024 : SONG_SIZE - 4 * 1024;
		ck_assert_msg(r->status->code == MP_ST(OK), "chunk %u: %s", k, r->status->detail);
		ck_assert_uint_eq(r->data.len, plain + MP_SEAL_TAG_LEN);
		ck_assert_uint_eq(r->chunk, k);
		ck_assert_uint_eq(r->chunks, SONG_CHUNKS);
		ck_assert_uint_eq(r->total, SONG_PRICE);
		ck_assert_uint_eq(r->paid, paid);
		ck_assert(!memcmp(r->purchase_id.data, g->o.order_ref, 16));
		memcpy(*sealed + *len, r->data.data, r->data.len);
		*len += r->data.len;
		ck_assert(mp_sealed_hash_add(tree, r->data.data, r->data.len));
		micropay__v1__envelope__free_unpacked(e, NULL);
	}
	uint8_t h[32];
	ck_assert(mp_sealed_hash_final(tree, h));
	mp_sealed_hash_free(tree);
	ck_assert_msg(!memcmp(h, g->o.ciphertext_hash, 32), "the sealed chunks do not hash to "
							    "the Offer's ciphertext_hash");
}

/* The key checked against key_hash opens every chunk to the file's bytes. */
static void open_all(const struct got_offer *g, const uint8_t key[32], const uint8_t *sealed)
{
	uint8_t h[32], plain[1024];
	SHA256(key, 32, h);
	ck_assert(!memcmp(h, g->o.key_hash, 32));
	uint8_t derived[MP_SEAL_PREFIX_LEN];
	mp_sealed_prefix(key, derived);
	ck_assert_mem_eq(derived, g->prefix, MP_SEAL_PREFIX_LEN); /* the key's prefix, as sent */
	char path[800];
	snprintf(path, sizeof(path), "%s/song.ogg", goods);
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	uint8_t file[SONG_SIZE];
	ck_assert_uint_eq(fread(file, 1, SONG_SIZE, f), SONG_SIZE);
	fclose(f);
	size_t at = 0;
	for (uint32_t k = 0; k < SONG_CHUNKS; k++) {
		size_t len = k + 1 < SONG_CHUNKS ? 1024 : SONG_SIZE - 4 * 1024;
		ck_assert_msg(
		    mp_open_chunk(key, g->prefix, k, sealed + at, len + MP_SEAL_TAG_LEN, plain),
		    "chunk %u does not open", k);
		ck_assert_msg(!memcmp(plain, file + k * 1024, len), "chunk %u differs", k);
		at += len + MP_SEAL_TAG_LEN;
	}
}

static json_t *listed(const uint8_t ref[16])
{
	return listed_row(&net, "offers", "order_ref", ref);
}

/* ---- an honest sale ---- */

START_TEST(honest_offer)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], *sealed;
	size_t sealed_len;
	uint32_t last;
	uint64_t credit;
	json_t *cat = admin_ok(&net, "m1", "catalogue", NULL); /* sorted: book, meter, song */
	json_t *items = json_object_get(cat, "items");
	ck_assert_str_eq(json_str(json_array_get(items, 1), "delivery"), "chunks");
	ck_assert_str_eq(json_str(json_array_get(items, 2), "item"), "song");
	ck_assert_str_eq(json_str(json_array_get(items, 2), "delivery"), "key");
	json_decref(cat);
	tchannel_opened_unit(&net, "m1", &tw, &ch, 50, 2, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, NULL, NULL, NULL), MP_ST(UNDERPAID)); /* credit 2 */
	struct got_offer g;
	get_offer(&w, id, &g);
	ck_assert_uint_eq(g.o.after_index, 1);
	ck_assert_uint_eq(g.o.pay_index, 1 + 7); /* ceil(13 / 2) */
	fetch_sealed(&w, id, &g, 0, &sealed, &sealed_len);
	MpEnvelope *e = chunk_req_call(&w, id, NULL, g.o.order_ref, SONG_CHUNKS);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(OUT_OF_RANGE));
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(goods_key_code(&w, id, g.o.order_ref), MP_ST(UNDERPAID));
	json_t *row = listed(g.o.order_ref);
	ck_assert(!json_is_true(json_object_get(row, "paid")));
	json_decref(row);
	/* Exactly pay_index naming the offer: 14 of credit, 13 for the song, 2 + 1 left. */
	ck_assert_int_eq(pay(&ch, &w, g.o.pay_index, g.o.order_ref, &last, &credit, NULL),
			 MP_ST(OK));
	ck_assert_uint_eq(last, g.o.pay_index);
	ck_assert_uint_eq(credit, 2 + 7 * 2 - SONG_PRICE);
	e = goods_key_call(&w, id, g.o.order_ref);
	ck_assert_int_eq(e->key_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->key_resp->key.len, 32);
	ck_assert(!memcmp(e->key_resp->order_ref.data, g.o.order_ref, 16));
	open_all(&g, e->key_resp->key.data, sealed);
	micropay__v1__envelope__free_unpacked(e, NULL);
	e = chunk_req_call(&w, id, NULL, g.o.order_ref, 0); /* paid: chunks */
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->chunk_resp->paid, SONG_CHUNKS);
	micropay__v1__envelope__free_unpacked(e, NULL);
	row = listed(g.o.order_ref);
	ck_assert(json_is_true(json_object_get(row, "paid")));
	ck_assert_int_eq(json_int(row, "after_index"), 1);
	ck_assert_int_eq(json_int(row, "pay_index"), 8);
	ck_assert_int_eq(json_int(row, "price"), SONG_PRICE);
	ck_assert_str_eq(json_str(row, "item"), "song");
	json_decref(row);
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_offers_total"), 1);
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_keys_released_total"), 1);
	free(sealed);
	free(g.bytes);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- refusals ---- */

START_TEST(offer_refusals)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], nothing[16] = {9};
	uint32_t last;
	tchannel_opened(&net, "m1", &tw, &ch, 100, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(offer_code(&w, id, "song", "at least one paid unit"), MP_ST(UNDERPAID));
	MpEnvelope *e = chunk_req_call(&w, id, "song", NULL, 0);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(UNKNOWN_ITEM));
	ck_assert_ptr_nonnull(strstr(e->chunk_resp->status->detail, "key release"));
	ck_assert_uint_eq(e->chunk_resp->data.len, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(offer_code(&w, id, "meter", "chunk by chunk"), MP_ST(UNKNOWN_ITEM));
	ck_assert_int_eq(offer_code(&w, id, "nosuch", NULL), MP_ST(UNKNOWN_ITEM));
	ck_assert_int_eq(goods_key_code(&w, id, nothing), MP_ST(UNKNOWN_ITEM));
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, NULL, NULL, NULL), MP_ST(UNDERPAID));
	/* The same OfferReq twice: the same bytes. */
	struct got_offer a, b;
	get_offer(&w, id, &a);
	get_offer(&w, id, &b);
	ck_assert(same_offer(&a, &b));
	ck_assert_uint_eq(a.o.pay_index, 1 + SONG_PRICE);
	free(b.bytes);
	/* Another item while it is open: CONFLICT (no two offers of a channel cover one index). */
	ck_assert_int_eq(offer_code(&w, id, "book", "holds this channel"), MP_ST(CONFLICT));
	/* A Pay at the wrong index naming the offer: CONFLICT, nothing accepted. */
	ck_assert_int_eq(pay(&ch, &w, a.o.pay_index + 1, a.o.order_ref, &last, NULL, "pay_index"),
			 MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 1);
	ck_assert_int_eq(pay(&ch, &w, a.o.pay_index - 1, a.o.order_ref, &last, NULL, "pay_index"),
			 MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 1);
	/* While the offer is open the channel pays nothing else past its after_index. */
	ck_assert_int_eq(pay(&ch, &w, 2, NULL, &last, NULL, "holds this channel"), MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 1);
	net_clock_advance(&net, 61); /* the offer lapses unpaid: it still holds the channel */
	ck_assert_int_eq(pay(&ch, &w, 2, NULL, &last, NULL, "holds this channel"), MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 1);
	ck_assert_int_eq(offer_code(&w, id, "book", "holds this channel"), MP_ST(CONFLICT));
	ck_assert_int_eq(cancel_code(&w, &a, &ch.owner, false), MP_ST(OK));
	/* Cancelled, the channel's last moves (an ordinary unit): the offer is not payable. */
	ck_assert_int_eq(pay(&ch, &w, 2, NULL, &last, NULL, NULL), MP_ST(UNDERPAID));
	ck_assert_uint_eq(last, 2);
	ck_assert_int_eq(pay(&ch, &w, a.o.pay_index, a.o.order_ref, &last, NULL, "cancelled"),
			 MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 2);
	/* A new offer at the new last; past its deadline a Pay is EXPIRED, nothing accepted. */
	get_offer(&w, id, &b);
	ck_assert(!same_offer(&a, &b));
	ck_assert_uint_eq(b.o.after_index, 2);
	net_clock_advance(&net, 61);
	ck_assert_int_eq(pay(&ch, &w, b.o.pay_index, b.o.order_ref, &last, NULL, "deadline"),
			 MP_ST(EXPIRED));
	ck_assert_uint_eq(last, 2);
	ck_assert_int_eq(goods_key_code(&w, id, b.o.order_ref), MP_ST(UNDERPAID));
	/* Cancelled, then asked again: a new offer; the correct Pay now works. */
	ck_assert_int_eq(cancel_code(&w, &b, &ch.owner, false), MP_ST(OK));
	struct got_offer c;
	get_offer(&w, id, &c);
	ck_assert(!same_offer(&b, &c));
	ck_assert_int_eq(pay(&ch, &w, c.o.pay_index, c.o.order_ref, &last, NULL, NULL), MP_ST(OK));
	ck_assert_uint_eq(last, 2 + SONG_PRICE);
	ck_assert_int_eq(goods_key_code(&w, id, c.o.order_ref), MP_ST(OK));
	ck_assert_int_eq(goods_key_code(&w, id, a.o.order_ref),
			 MP_ST(UNDERPAID)); /* from the store */
	/* Paid: the same item again is a new offer after the new last. */
	free(a.bytes);
	get_offer(&w, id, &a);
	ck_assert_uint_eq(a.o.after_index, 2 + SONG_PRICE);
	/* A Pay naming an older offer (replaced, in the store only): CONFLICT, nothing accepted. */
	ck_assert_int_eq(pay(&ch, &w, 3 + SONG_PRICE, b.o.order_ref, &last, NULL, "no longer"),
			 MP_ST(CONFLICT));
	ck_assert_uint_eq(last, 2 + SONG_PRICE);
	free(a.bytes);
	free(b.bytes);
	free(c.bytes);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- offers outlive a restart; a changed file ---- */

static void reconnect(struct wire *w)
{
	char ca[800], ep[128];
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "m1", "endpoint", ep, sizeof(ep));
	ck_assert(wire_connect(w, ep, ca, NULL, NULL));
}

static void kill_and_start(struct wire *w)
{
	wire_close(w);
	ck_assert_int_eq(net_cmd(&net, "kill", "m1 KILL"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "m1"), 0);
	reconnect(w);
}

/* The offer the OpenAck names as holding the channel (NULL: none; to mp_stmt_free). */
static MpSigned *held_by(struct tchannel *ch, struct wire *w)
{
	MpEnvelope *e = tchannel_open(ch, w);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK) && e->open_ack->status);
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	MpSigned *held =
	    e->open_ack->held_by_offer ? mp_stmt_copy(e->open_ack->held_by_offer) : NULL;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return held;
}

static bool held_is(struct tchannel *ch, struct wire *w, const struct got_offer *g)
{
	MpSigned *held = held_by(ch, w);
	size_t len = 0;
	uint8_t *bytes = held ? mp_stmt_encode(held, &len) : NULL;
	bool same = bytes && len == g->len && !memcmp(bytes, g->bytes, len);
	free(bytes);
	mp_stmt_free(held);
	return same;
}

/* The owner's TransferReq of ch's rest after declared_last to a new customer, on w: the
 * TransferResp's code; its detail must hold detail_has. */
static MpCode transfer_code(struct tchannel *ch, struct wire *w, uint32_t declared_last,
			    const char *detail_has)
{
	struct tseg seg;
	uint8_t id[MP_ID_LEN], cert_hash[MP_HASH_LEN];
	tchannel_id(ch, id);
	tseg_make(&seg, ch->n - declared_last);
	mp_stmt_hash(ch->cert, cert_hash);
	MpSigned *t = transfer_sign(id, 1, 0, declared_last, &seg, &ch->owner, cert_hash);
	Micropay__V1__TransferReq req = MICROPAY__V1__TRANSFER_REQ__INIT;
	req.transfer = t;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	mp_stmt_free(t);
	mp_key_free(&seg.owner);
	ck_assert(e && e->body_case == MP_BODY(TRANSFER_RESP) && e->transfer_resp->status);
	MpCode code = e->transfer_resp->status->code;
	ck_assert_msg(strstr(e->transfer_resp->status->detail, detail_has),
		      "TransferResp detail '%s' lacks '%s'", e->transfer_resp->status->detail,
		      detail_has);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* The owner's CloseReq for ch (segment 0, epoch 0) on w: the CloseResp's code; its detail must
 * hold detail_has. */
static MpCode close_code(struct tchannel *ch, struct wire *w, const char *detail_has)
{
	uint8_t id[MP_ID_LEN];
	tchannel_id(ch, id);
	Micropay__V1__CloseRequest r = MICROPAY__V1__CLOSE_REQUEST__INIT;
	r.channel_id = (ProtobufCBinaryData){MP_ID_LEN, id};
	MpSigned *s = mp_stmt_sign(&ch->owner, MP_STMT_CLOSE_REQUEST, &r.base);
	ck_assert_ptr_nonnull(s);
	Micropay__V1__CloseReq req = MICROPAY__V1__CLOSE_REQ__INIT;
	req.request = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CLOSE_REQ);
	env.close_req = &req;
	MpEnvelope *e = wire_call(w, &env);
	mp_stmt_free(s);
	ck_assert(e && e->body_case == MP_BODY(CLOSE_RESP) && e->close_resp->status);
	MpCode code = e->close_resp->status->code;
	ck_assert_msg(strstr(e->close_resp->status->detail, detail_has),
		      "CloseResp detail '%s' lacks '%s'", e->close_resp->status->detail,
		      detail_has);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

/* An unpaid offer holds the channel past its deadline until the buyer cancels it (docs/
 * goods.md "Cancelling an offer"): the OpenAck names it; a Transfer and a Close are refused
 * CONFLICT; a cancel
 * signed by another key is BAD_SIG, one naming another statement MALFORMED, one naming another
 * merchant UNKNOWN_ITEM; the owner's OK, again DUPLICATE_OK, also after SIGKILL (from the store);
 * the channel then pays on and takes a new offer; a paid offer is never cancelled (CONFLICT). */
START_TEST(lapsed_offer_cancelled)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], seed[MP_SK_LEN];
	uint32_t last;
	struct mp_key other;
	ck_assert(mp_key_generate(&other, seed));
	tchannel_opened(&net, "m1", &tw, &ch, 100, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, &last, NULL, NULL), MP_ST(UNDERPAID));
	struct got_offer a, b;
	get_offer(&w, id, &a);
	ck_assert(held_is(&ch, &w, &a));
	net_clock_advance(&net, 61); /* lapsed unpaid */
	ck_assert(held_is(&ch, &w, &a));
	ck_assert_int_eq(pay(&ch, &w, 2, NULL, &last, NULL, "holds this channel"), MP_ST(CONFLICT));
	/* Nor does the channel leave m1 by a Cap or end by a Close while held (offer_blocks). */
	ck_assert_int_eq(transfer_code(&ch, &w, 1, "no transfer until the offer is paid"),
			 MP_ST(CONFLICT));
	ck_assert_int_eq(close_code(&ch, &w, "no close until the offer is paid"), MP_ST(CONFLICT));
	ck_assert_int_eq(cancel_code(&w, &a, &other, false), MP_ST(BAD_SIG));
	ck_assert_int_eq(cancel_code(&w, &a, &ch.owner, true), MP_ST(MALFORMED));
	struct got_offer elsewhere = a;
	elsewhere.o.merchant_id[0] ^= 1;
	ck_assert_int_eq(cancel_code(&w, &elsewhere, &ch.owner, false), MP_ST(UNKNOWN_ITEM));
	ck_assert(held_is(&ch, &w, &a)); /* none of them changed anything */
	ck_assert_int_eq(cancel_code(&w, &a, &ch.owner, false), MP_ST(OK));
	ck_assert_int_eq(cancel_code(&w, &a, &ch.owner, false), MP_ST(DUPLICATE_OK));
	MpSigned *held = held_by(&ch, &w);
	ck_assert_ptr_null(held);
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_offers_cancelled_total"), 1);
	ck_assert_int_eq(pay(&ch, &w, 2, NULL, &last, NULL, NULL), MP_ST(UNDERPAID));
	ck_assert_uint_eq(last, 2);
	/* A paid offer is not cancelled. */
	get_offer(&w, id, &b);
	ck_assert_int_eq(pay(&ch, &w, b.o.pay_index, b.o.order_ref, &last, NULL, NULL), MP_ST(OK));
	ck_assert_int_eq(cancel_code(&w, &b, &ch.owner, false), MP_ST(CONFLICT));
	kill_and_start(&w);
	ck_assert_int_eq(cancel_code(&w, &a, &ch.owner, false), MP_ST(DUPLICATE_OK));
	ck_assert_int_eq(cancel_code(&w, &b, &ch.owner, false), MP_ST(CONFLICT));
	free(a.bytes);
	free(b.bytes);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	mp_key_free(&other);
	net_audit_clean(&net);
}
END_TEST

/* Flip one byte of the file at path in place, then set its modification time back. */
static void rewrite_keeping_mtime(const char *path)
{
	struct stat before;
	ck_assert_int_eq(stat(path, &before), 0);
	usleep(20 * 1000); /* a later kernel timestamp tick than the offer's look at the file */
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, 100), 1);
	b ^= 0xff;
	ck_assert_int_eq(pwrite(fd, &b, 1, 100), 1);
	struct timespec times[2] = {before.st_atim, before.st_mtim};
	ck_assert_int_eq(futimens(fd, times), 0);
	close(fd);
	struct stat after;
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert(after.st_size == before.st_size &&
		  after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
		  after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
}

START_TEST(offers_outlive_a_restart)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN], *sealed, *again;
	size_t len, len2;
	tchannel_opened(&net, "m1", &tw, &ch, 100, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, NULL, NULL, NULL), MP_ST(UNDERPAID));
	struct got_offer a, b;
	get_offer(&w, id, &a);
	fetch_sealed(&w, id, &a, 0, &sealed, &len);
	kill_and_start(&w);
	get_offer(&w, id, &b); /* the store row: the same Offer */
	ck_assert(same_offer(&a, &b));
	free(b.bytes);
	fetch_sealed(&w, id, &a, 0, &again, &len2);
	ck_assert(len == len2 && !memcmp(sealed, again, len));
	free(again);
	ck_assert_int_eq(goods_key_code(&w, id, a.o.order_ref), MP_ST(UNDERPAID));
	ck_assert_int_eq(pay(&ch, &w, a.o.pay_index, a.o.order_ref, NULL, NULL, NULL), MP_ST(OK));
	kill_and_start(&w);
	MpEnvelope *e = goods_key_call(&w, id, a.o.order_ref);
	ck_assert_int_eq(e->key_resp->status->code, MP_ST(OK));
	open_all(&a, e->key_resp->key.data, sealed);
	micropay__v1__envelope__free_unpacked(e, NULL);
	free(sealed);
	/* A new offer, then its file changes: its chunks are refused CONFLICT, never served. */
	get_offer(&w, id, &b);
	char path[800];
	snprintf(path, sizeof(path), "%s/song.ogg", goods);
	ck_assert_int_eq(truncate(path, SONG_SIZE - 1), 0);
	e = chunk_req_call(&w, id, NULL, b.o.order_ref, 0);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(CONFLICT));
	ck_assert_uint_eq(e->chunk_resp->data.len, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Unpaid, it holds the channel until the buyer cancels it. */
	ck_assert_int_eq(offer_code(&w, id, "song", "holds this channel"), MP_ST(CONFLICT));
	/* The same bytes again but written anew (another mtime): still not the offer's file. */
	goods_write(goods, "song.ogg", SONG_SIZE, 1);
	e = chunk_req_call(&w, id, NULL, b.o.order_ref, 0);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(CONFLICT));
	micropay__v1__envelope__free_unpacked(e, NULL);
	/* Cancelled, a new OfferReq makes a new offer of the file as it is now, served and
	 * hashed. */
	ck_assert_int_eq(cancel_code(&w, &b, &ch.owner, false), MP_ST(OK));
	free(a.bytes);
	get_offer(&w, id, &a);
	ck_assert(!same_offer(&a, &b));
	fetch_sealed(&w, id, &a, 0, &sealed, &len);
	free(sealed);
	/* One byte rewritten in place and the mtime set back (as cp -p or rsync -t leave it):
	 * same size, same mtime, other bytes. Chunk 0 sealed again under the offer's key and
	 * nonce would be two plaintexts under one nonce: the file's identity (its ctime moved)
	 * refuses it. */
	rewrite_keeping_mtime(path);
	e = chunk_req_call(&w, id, NULL, a.o.order_ref, 0);
	ck_assert_int_eq(e->chunk_resp->status->code, MP_ST(CONFLICT));
	ck_assert_uint_eq(e->chunk_resp->data.len, 0);
	micropay__v1__envelope__free_unpacked(e, NULL);
	free(a.bytes);
	free(b.bytes);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- while the paying Pay commits ---- */

/* The Pay at pay_index in a batch that cannot commit (m1's store held by an outside write
 * lock, as a stalled disk would): KeyReq and OfferReq are TOO_EARLY, no key goes out; once the
 * batch commits the Pay is acknowledged and the key released. */
START_TEST(key_too_early_while_the_pay_commits)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w, w2;
	uint8_t id[MP_ID_LEN];
	tchannel_opened(&net, "m1", &tw, &ch, 100, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, NULL, NULL, NULL), MP_ST(UNDERPAID));
	struct got_offer a;
	get_offer(&w, id, &a);
	reconnect(&w2);
	char db[700];
	net_path(&net, "m1/merchant.db", db, sizeof(db));
	const char *idle = "micropay_merchant_batches_submitted_total{trigger=\"idle\"}";
	int64_t submitted = metric(&net, "m1", idle);
	int64_t released = metric(&net, "m1", "micropay_merchant_keys_released_total");
	sqlite3 *lock = store_lock_hold(db);
	tchannel_send_pay_ref(&ch, &w, a.o.pay_index, a.o.order_ref, 16);
	ck_assert_int_eq(metric_wait(&net, "m1", idle, submitted + 1, 4000), submitted + 1);
	MpCode key = goods_key_code(&w2, id, a.o.order_ref);
	MpCode offer = offer_code(&w2, id, "song", "committing");
	store_lock_release(lock);
	ck_assert_int_eq(key, MP_ST(TOO_EARLY));
	ck_assert_int_eq(offer, MP_ST(TOO_EARLY));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_keys_released_total"), released);
	MpEnvelope *e = wire_recv(&w);
	ck_assert(e && e->body_case == MP_BODY(PAY_ACK));
	ck_assert_int_eq(e->pay_ack->status->code, MP_ST(OK));
	ck_assert_uint_eq(e->pay_ack->last, a.o.pay_index);
	micropay__v1__envelope__free_unpacked(e, NULL);
	ck_assert_int_eq(goods_key_code(&w2, id, a.o.order_ref), MP_ST(OK));
	ck_assert_int_eq(metric(&net, "m1", "micropay_merchant_keys_released_total"), released + 1);
	free(a.bytes);
	wire_close(&w2);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

/* ---- retention ---- */

/* Whether m1's `offers` lists ref. */
static bool offer_listed(const uint8_t ref[16])
{
	char hex[33];
	mp_hex_encode(ref, 16, hex);
	json_t *all = admin_ok(&net, "m1", "offers", NULL);
	size_t i;
	json_t *row;
	bool found = false;
	json_array_foreach(json_object_get(all, "offers"), i, row)
	{
		found = found || !strcmp(json_str(row, "order_ref"), hex);
	}
	json_decref(all);
	return found;
}

/* A paid offer stays through compactions until goods_retention (8 days by default) after its
 * deadline, then store.compact deletes it; after a restart its key is no longer known. */
START_TEST(old_offers_folded_by_compaction)
{
	struct twallet tw;
	struct tchannel ch;
	struct wire w;
	uint8_t id[MP_ID_LEN];
	tchannel_opened_unit(&net, "m1", &tw, &ch, 50, 2, &w);
	tchannel_id(&ch, id);
	ck_assert_int_eq(pay(&ch, &w, 1, NULL, NULL, NULL, NULL), MP_ST(UNDERPAID));
	struct got_offer g;
	get_offer(&w, id, &g);
	ck_assert_int_eq(pay(&ch, &w, g.o.pay_index, g.o.order_ref, NULL, NULL, NULL), MP_ST(OK));
	ck_assert_int_eq(goods_key_code(&w, id, g.o.order_ref), MP_ST(OK));
	net_clock_advance(&net, 61); /* past the deadline, well within the retention */
	json_t *r = admin_ok(&net, "m1", "store.compact", NULL);
	ck_assert_int_eq(json_int(r, "goods_rows"), 0);
	json_decref(r);
	ck_assert(offer_listed(g.o.order_ref));
	net_clock_advance(&net, 8 * 86400);
	r = admin_ok(&net, "m1", "store.compact", NULL);
	ck_assert_int_ge(json_int(r, "goods_rows"), 1);
	json_decref(r);
	ck_assert(!offer_listed(g.o.order_ref));
	ck_assert_int_ge(metric(&net, "m1", "micropay_merchant_goods_rows_deleted_total"), 1);
	kill_and_start(&w);
	ck_assert_int_eq(goods_key_code(&w, id, g.o.order_ref), MP_ST(UNKNOWN_ITEM));
	free(g.bytes);
	wire_close(&w);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("offer");
	TCase *tc = tcase_create("offer");
	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, honest_offer);
	tcase_add_test(tc, offer_refusals);
	tcase_add_test(tc, lapsed_offer_cancelled);
	tcase_add_test(tc, offers_outlive_a_restart);
	tcase_add_test(tc, key_too_early_while_the_pay_commits);
	tcase_add_test(tc, old_offers_folded_by_compaction);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
