/* The sealed chunks of an offer (offer.h), asked with ChunkReq{purchase_id = the offer's
 * order_ref, chunk k}: free, again on every request, never stored.
 *
 *   k >= chunks --> OUT_OF_RANGE
 *   submitted --worker: open, fstat (a regular file of the pinned size and modification time,
 *   else CHANGED), pread chunk k, seal it (prefix || be32(k))--> on the loop: OK with the
 *   sealed bytes (len + 16) | CONFLICT (the file changed since the offer: the channel's offer
 *   is then stale, and an OfferReq makes a new one) | INTERNAL; nothing
 *   if the wallet has gone. The queue full --> LIMIT. Memory: at most worker_queue jobs, each
 *   holding one chunk and its sealed copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunk.h"
#include "goods_read.h"
#include "log.h"
#include "offer.h"
#include "workers.h"

struct seal_job {
	struct merchant *m;
	struct mp_conn *conn; /* referenced until answered */
	uint64_t request_id;
	uint8_t channel_id[MP_ID_LEN];
	struct offer *snap; /* a copy: the pin, the key, the answer's fields */
	uint32_t k, len;
	uint8_t *plain, *sealed;
	enum goods_read outcome;
	int err;
};

static void reply(struct merchant *m, struct mp_conn *c, uint64_t request_id, MpCode code,
		  const char *detail, const struct offer *o, const struct channel *ch, uint32_t k,
		  const uint8_t *data, size_t len)
{
	Micropay__V1__ChunkResp resp = MICROPAY__V1__CHUNK_RESP__INIT;
	MpStatus st;
	resp.status = merchant_status(&st, code, detail);
	resp.chunk = k;
	resp.purchase_id = (ProtobufCBinaryData){OFFER_REF_LEN, (uint8_t *)o->order_ref};
	resp.item = (char *)o->item.id;
	resp.chunks = (uint32_t)o->item.chunks;
	resp.size = o->item.size;
	resp.chunk_size = o->item.chunk_size;
	resp.paid = o->paid_durable ? (uint32_t)o->item.chunks : 0;
	resp.total = o->price;
	if (ch)
		resp.credit = ch->durable_credit;
	resp.data = (ProtobufCBinaryData){len, (uint8_t *)data};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(CHUNK_RESP);
	env.chunk_resp = &resp;
	if (code != MP_ST(OK)) {
		m->stats.chunk_refusals++;
		log_info("%s: sealed chunk %u of the offer of '%s' refused: %s: %s",
			 mp_conn_peer(c), k, o->item.id, mp_code_name(code), detail);
	}
	merchant_send(c, request_id, &env);
}

static void work(void *arg, const atomic_bool *stop)
{
	struct seal_job *j = arg;
	struct goods_pin pin = {j->snap->item.path, j->snap->item.size, j->snap->mtime_ns,
				j->snap->ident};
	int fd;
	struct goods_seen seen;
	if (atomic_load(stop) || (j->outcome = goods_open(&pin, &fd, &seen, &j->err)) != GOODS_OK)
		return;
	j->outcome =
	    goods_pread(fd, j->plain, j->len, (uint64_t)j->k * j->snap->item.chunk_size, &j->err);
	close(fd);
	if (j->outcome == GOODS_OK &&
	    !mp_seal_chunk(j->snap->key, j->snap->prefix, j->k, j->plain, j->len, j->sealed)) {
		j->outcome = GOODS_FAILED;
		j->err = 0;
	}
}

static void job_free(struct seal_job *j)
{
	if (j->conn)
		mp_conn_unref(j->conn);
	offer_free(j->snap);
	free(j->plain);
	free(j->sealed);
	free(j);
}

static void answer(struct seal_job *j)
{
	struct merchant *m = j->m;
	const struct channel *ch = channel_find(&m->channels, j->channel_id);
	struct offer *cur = ch ? ch->offer : NULL;
	const struct offer *o =
	    cur && !memcmp(cur->order_ref, j->snap->order_ref, OFFER_REF_LEN) ? cur : j->snap;
	char why[200];
	switch (j->outcome) {
	case GOODS_OK:
		if (m->fault == MP_FAULT_OFFER_TAMPER_CHUNK) /* fault.h: a dishonest seller */
			j->sealed[0] ^= 0x01;
		m->stats.chunks_served++;
		m->stats.chunk_bytes += j->len + MP_SEAL_TAG_LEN;
		reply(m, j->conn, j->request_id, MP_ST(OK), "", o, ch, j->k, j->sealed,
		      j->len + MP_SEAL_TAG_LEN);
		return;
	case GOODS_CHANGED:
		if (o == cur) /* the next OfferReq makes a new offer */
			cur->stale = true;
		log_warn("offer of '%s': %s changed since the offer was made: sealed chunk %u not "
			 "sent",
			 o->item.id, o->item.path, j->k);
		reply(m, j->conn, j->request_id, MP_ST(CONFLICT),
		      "the item's file changed since the offer was made; ask for a new offer", o,
		      ch, j->k, NULL, 0);
		return;
	case GOODS_FAILED:
		log_err("offer of '%s': reading or sealing chunk %u of %s: %s", o->item.id, j->k,
			o->item.path, j->err ? strerror(j->err) : "sealing failed");
		snprintf(why, sizeof(why), "cannot read chunk %u; retry", j->k);
		reply(m, j->conn, j->request_id, MP_ST(INTERNAL), why, o, ch, j->k, NULL, 0);
		return;
	}
}

static void done(void *arg, enum mp_job_outcome outcome)
{
	struct seal_job *j = arg;
	if (outcome == MP_JOB_DONE && mp_conn_is_open(j->conn))
		answer(j);
	job_free(j);
}

void offer_chunk(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		 const struct channel *ch, struct offer *o, uint32_t k)
{
	if (k >= o->item.chunks) {
		reply(m, c, request_id, MP_ST(OUT_OF_RANGE), "chunk beyond the item's last", o, ch,
		      k, NULL, 0);
		return;
	}
	struct seal_job *j = calloc(1, sizeof(*j));
	if (j) {
		*j = (struct seal_job){.m = m,
				       .request_id = request_id,
				       .k = k,
				       .len = catalogue_chunk_len(&o->item, k),
				       .outcome = GOODS_FAILED,
				       .snap = offer_sealing_copy(m, o)};
		memcpy(j->channel_id, ch->id, MP_ID_LEN);
		j->plain = malloc(j->len);
		j->sealed = malloc(j->len + MP_SEAL_TAG_LEN);
	}
	if (!j || !j->snap || !j->plain || !j->sealed) {
		if (j)
			job_free(j);
		reply(m, c, request_id, MP_ST(LIMIT), "out of memory; retry", o, ch, k, NULL, 0);
		return;
	}
	j->conn = c;
	mp_conn_ref(c);
	if (!mp_workers_submit(m->workers, work, done, j)) {
		job_free(j);
		reply(m, c, request_id, MP_ST(LIMIT), "merchant busy: read queue full; retry", o,
		      ch, k, NULL, 0);
	}
}
