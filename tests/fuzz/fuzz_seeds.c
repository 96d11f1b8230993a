/* Writes the seed corpora of tests/fuzz/corpus/TARGET/ (docs/fuzzing.md): valid inputs of each
 * target's format, so that fuzzing starts from messages the daemons really exchange. Run by
 * deploy/fuzz --seeds; the files it writes are checked in.
 *   fuzz_seeds SOURCE_ROOT OUT_DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "custody_world.h"
#include "frame.h"

static const char *out_dir;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *target, const char *name, const uint8_t *a, size_t alen,
		const uint8_t *b, size_t blen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", out_dir, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
	    fclose(f) != 0)
		die(path);
}

static void put_text(const char *target, const char *name, const char *text)
{
	put(target, name, (const uint8_t *)text, strlen(text), NULL, 0);
}

/* A growing buffer of custody records. */
struct records {
	uint8_t buf[16384];
	size_t len;
};

static void add_record(struct records *r, uint8_t kind, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	if (r->len + 3 + len > sizeof(r->buf))
		abort();
	r->buf[r->len++] = kind;
	r->buf[r->len++] = (uint8_t)(len >> 8);
	r->buf[r->len++] = (uint8_t)len;
	protobuf_c_message_pack(m, r->buf + r->len);
	r->len += len;
}

static uint8_t kind(enum record_kind k, unsigned signer)
{
	return (uint8_t)(k | signer << 2);
}

/* stmt_hash of a body as a statement of type (the hash covers type and body only). */
static void body_hash(uint32_t type, const ProtobufCMessage *m, uint8_t out[MP_HASH_LEN])
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *body = malloc(len ? len : 1);
	if (!body)
		abort();
	protobuf_c_message_pack(m, body);
	uint8_t pk[MP_PK_LEN] = {0}, sig[MP_SIG_LEN] = {0};
	MpSigned *s = mp_stmt_from_parts(type, body, len, pk, sig);
	mp_stmt_hash(s, out);
	mp_stmt_free(s);
	free(body);
}

static uint8_t move_hash[MP_HASH_LEN] = {0x4d};

struct handoff_spec {
	unsigned from, to;
	uint32_t seg, index;
	const uint8_t *w, *head, *prev;
};

static void add_handoff(struct world *w, struct records *r, const struct handoff_spec *s,
			uint32_t hseq, uint8_t hash_out[MP_HASH_LEN])
{
	Micropay__V1__Handoff m = MICROPAY__V1__HANDOFF__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = s->seg;
	pt.index = s->index;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)s->w};
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, w->channel_id};
	m.hseq = hseq;
	m.from_mid = (ProtobufCBinaryData){MP_ID_LEN, w->mid[s->from]};
	m.to_mid = (ProtobufCBinaryData){MP_ID_LEN, w->mid[s->to]};
	m.point = &pt;
	m.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)s->head};
	m.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, (uint8_t *)s->prev};
	m.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	add_record(r, kind(RECORD_HANDOFF, s->from), &m.base);
	body_hash(MP_STMT_HANDOFF, &m.base, hash_out);
}

/* Transfer 1 from owner 0 to owner 1, capped by merchant `holder` in epoch g at index c. */
static void add_transfer_pair(struct world *w, struct records *r, unsigned holder, uint32_t g,
			      uint32_t c, uint8_t transfer_hash[MP_HASH_LEN])
{
	Micropay__V1__Transfer t = MICROPAY__V1__TRANSFER__INIT;
	t.channel_id = (ProtobufCBinaryData){MP_ID_LEN, w->channel_id};
	t.new_seg_seq = 1;
	t.holder_epoch = g;
	t.declared_last = c;
	t.to_owner_pk = (ProtobufCBinaryData){MP_PK_LEN, w->owner[1].pk};
	t.new_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, w->nonce1};
	t.new_root = (ProtobufCBinaryData){MP_HASH_LEN, w->w1[0]};
	t.new_len = WORLD_NEW_LEN;
	t.prev_seg_hash = (ProtobufCBinaryData){MP_HASH_LEN, w->cert_hash};
	t.valid_until = WORLD_KEY_VALID;
	add_record(r, kind(RECORD_TRANSFER, 0), &t.base);
	body_hash(MP_STMT_TRANSFER, &t.base, transfer_hash);
	Micropay__V1__Cap cap = MICROPAY__V1__CAP__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.seg_seq = 0;
	pt.index = c;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w->w0[c]};
	cap.channel_id = (ProtobufCBinaryData){MP_ID_LEN, w->channel_id};
	cap.new_seg_seq = 1;
	cap.transfer_hash = (ProtobufCBinaryData){MP_HASH_LEN, transfer_hash};
	cap.hseq = g;
	cap.point = &pt;
	add_record(r, kind(RECORD_CAP, holder), &cap.base);
}

static void custody_seeds(struct world *w)
{
	uint8_t flags = 0, h1[MP_HASH_LEN], h2[MP_HASH_LEN], h3[MP_HASH_LEN], th[MP_HASH_LEN];
	struct records r = {.len = 0};
	r.buf[r.len++] = flags;
	add_handoff(w, &r, &(struct handoff_spec){1, 2, 0, 5, w->w0[5], w->cert_hash, w->cert_hash},
		    1, h1);
	put("fuzz_custody", "one-handoff", r.buf, r.len, NULL, 0);
	add_handoff(w, &r, &(struct handoff_spec){2, 3, 0, 20, w->w0[20], w->cert_hash, h1}, 2, h2);
	put("fuzz_custody", "two-handoffs", r.buf, r.len, NULL, 0);
	add_transfer_pair(w, &r, 3, 2, 30, th);
	put("fuzz_custody", "handoffs-and-transfer", r.buf, r.len, NULL, 0);
	/* Handoff 3 in the new segment: absolute index 40 is chain-relative 10. */
	add_handoff(w, &r, &(struct handoff_spec){3, 1, 1, 40, w->w1[10], th, h2}, 3, h3);
	put("fuzz_custody", "transfer-then-handoff", r.buf, r.len, NULL, 0);
	struct records t = {.len = 0};
	t.buf[t.len++] = flags;
	add_transfer_pair(w, &t, 1, 0, 0, th);
	put("fuzz_custody", "transfer-in-epoch-0", t.buf, t.len, NULL, 0);
}

static void stmt_seeds(struct world *w)
{
	Micropay__V1__Handoff m = MICROPAY__V1__HANDOFF__INIT;
	MpPoint pt = MICROPAY__V1__POINT__INIT;
	pt.index = 5;
	pt.w = (ProtobufCBinaryData){MP_HASH_LEN, w->w0[5]};
	m.channel_id = (ProtobufCBinaryData){MP_ID_LEN, w->channel_id};
	m.hseq = 1;
	m.from_mid = (ProtobufCBinaryData){MP_ID_LEN, w->mid[1]};
	m.to_mid = (ProtobufCBinaryData){MP_ID_LEN, w->mid[2]};
	m.point = &pt;
	m.segments_head = (ProtobufCBinaryData){MP_HASH_LEN, w->cert_hash};
	m.prev_handoff_hash = (ProtobufCBinaryData){MP_HASH_LEN, w->cert_hash};
	m.move_hash = (ProtobufCBinaryData){MP_HASH_LEN, move_hash};
	uint8_t body[512];
	size_t len = micropay__v1__handoff__pack(&m, body);
	uint8_t type = MP_STMT_HANDOFF - 1; /* the target adds 1 */
	put("fuzz_stmt", "handoff-body", &type, 1, body, len);
	MpSigned *s = world_sign(&w->merchant[1], MP_STMT_HANDOFF, body, len);
	size_t slen;
	uint8_t *enc = mp_stmt_encode(s, &slen);
	put("fuzz_stmt", "handoff-signed", &type, 1, enc, slen);
	/* The same Signed inside an OpenReq-shaped frame and a PayReq frame for the decoders. */
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
	open.move = s;
	env.version = MP_PROTOCOL_VERSION;
	env.request_id = 7;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &open;
	uint8_t frame[1024];
	size_t flen = micropay__v1__envelope__pack(&env, frame + 4);
	frame[0] = frame[1] = 0;
	frame[2] = (uint8_t)(flen >> 8);
	frame[3] = (uint8_t)flen;
	put("fuzz_frame", "open-req", frame, flen + 4, NULL, 0);
	/* fuzz_decode: which message (0: the Envelope), then the arena's size (255: 64 KiB, n:
	 * 16 n + 1 bytes, so that the decode spills to the heap). */
	const uint8_t full[2] = {0, 255}, small[2] = {0, 2};
	put("fuzz_decode", "envelope-open-req", full, 2, frame + 4, flen);
	put("fuzz_decode", "envelope-open-req-small-arena", small, 2, frame + 4, flen);
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT;
	uint8_t ref[1] = {1};
	pay.channel_id = (ProtobufCBinaryData){MP_ID_LEN, w->channel_id};
	pay.j = 6;
	pay.w_j = (ProtobufCBinaryData){MP_HASH_LEN, w->w0[6]};
	pay.order_ref = (ProtobufCBinaryData){1, ref};
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	flen = micropay__v1__envelope__pack(&env, frame + 4);
	frame[2] = (uint8_t)(flen >> 8);
	frame[3] = (uint8_t)flen;
	uint8_t two[2048];
	memcpy(two, frame, flen + 4);
	memcpy(two + flen + 4, frame, flen + 4);
	put("fuzz_frame", "two-pays", two, 2 * (flen + 4), NULL, 0);
	put("fuzz_decode", "envelope-pay-req", full, 2, frame + 4, flen);
	put("fuzz_decode", "envelope-pay-req-small-arena", small, 2, frame + 4, flen);
	free(enc);
	mp_stmt_free(s);
}

static void text_seeds(void)
{
	put_text("fuzz_admin_request", "status", "{\"id\":1,\"version\":1,\"method\":\"status\"}");
	put_text("fuzz_admin_request", "params",
		 "{\"id\":\"a\",\"version\":1,\"method\":\"account.show\",\"params\":{\"account\":"
		 "\"00ff\",\"amount\":5,\"note\":\"x\",\"dry_run\":true,\"extra\":[1,{}]}}");
	put_text("fuzz_admin_request", "help",
		 "{\"id\":2,\"version\":1,\"method\":\"help\",\"params\":{\"method\":\"status\"}}");
	static const char args1[] = "-s\0/run/b.sock\0account\0show\0account=00ff\0n:=[1,2]";
	static const char args2[] = "--timeout=2.5\0--human\0-s\0x\0help\0account.show";
	static const char args3[] = "--socket\0s\0issue\0--params\0{\"n\":10}\0unit=2";
	put("fuzz_mpctl_args", "words-and-params", (const uint8_t *)args1, sizeof(args1) - 1, NULL,
	    0);
	put("fuzz_mpctl_args", "help", (const uint8_t *)args2, sizeof(args2) - 1, NULL, 0);
	put("fuzz_mpctl_args", "raw-params", (const uint8_t *)args3, sizeof(args3) - 1, NULL, 0);
}

static void config_seeds(const char *source_root)
{
	static const char *const names[3] = {"brokerd", "merchantd", "walletd"};
	for (uint8_t i = 0; i < 3; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/deploy/config/%s.ini", source_root, names[i]);
		FILE *f = fopen(path, "rb");
		if (!f)
			die(path);
		static uint8_t text[65536];
		size_t len = fread(text, 1, sizeof(text), f);
		fclose(f);
		put("fuzz_config", names[i], &i, 1, text, len);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fuzz_seeds SOURCE_ROOT OUT_DIR\n");
		return 2;
	}
	out_dir = argv[2];
	if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
		die(out_dir);
	struct world w;
	if (!world_init(&w)) {
		fprintf(stderr, "fuzz_seeds: cannot build the custody world\n");
		return 1;
	}
	custody_seeds(&w);
	stmt_seeds(&w);
	text_seeds();
	config_seeds(argv[1]);
	world_free(&w);
	return 0;
}
