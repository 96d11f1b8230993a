/* Chunk reads on the worker pool (chunk.h): the loop never touches a goods file. A job copies
 * what it needs (path, pinned size, offset, length), reads on a worker, and answers on the
 * loop with the purchase's state as it is then.
 *
 *   submitted (delivered advanced) --worker: open, fstat (a regular file of the pinned size,
 *   else CHANGED), pread the whole chunk--> on the loop: OK with the bytes | CONFLICT (the
 *   file changed since the purchase began) | INTERNAL (cannot read); nothing if the wallet
 *   has gone. Memory: at most worker_queue jobs, each holding one chunk (<= 512 KiB). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunk.h"
#include "goods_read.h"
#include "log.h"
#include "workers.h"

struct read_job {
	struct merchant *m;
	struct mp_conn *conn; /* referenced until answered */
	uint64_t request_id;
	uint8_t channel_id[MP_ID_LEN];
	struct purchase *snap; /* a copy: the answer's fields if the purchase is gone by then */
	uint32_t k;
	uint64_t offset;
	uint32_t len;
	uint8_t *data;
	enum goods_read outcome;
	int err; /* GOODS_FAILED: errno */
};

static enum goods_read read_chunk(struct read_job *j)
{
	struct goods_pin pin = {j->snap->item.path, j->snap->item.size, GOODS_ANY, GOODS_ANY};
	int fd;
	struct goods_seen seen;
	enum goods_read out = goods_open(&pin, &fd, &seen, &j->err);
	if (out != GOODS_OK)
		return out;
	out = goods_pread(fd, j->data, j->len, j->offset, &j->err);
	close(fd);
	return out;
}

static void work(void *arg, const atomic_bool *stop)
{
	struct read_job *j = arg;
	if (!atomic_load(stop))
		j->outcome = read_chunk(j);
}

static void job_free(struct read_job *j)
{
	if (j->conn)
		mp_conn_unref(j->conn);
	purchase_free(j->snap);
	free(j->data);
	free(j);
}

static void answer(struct read_job *j)
{
	struct merchant *m = j->m;
	const struct channel *ch = channel_find(&m->channels, j->channel_id);
	const struct purchase *cur = channel_purchase_with_id(ch, j->snap->id);
	const struct purchase *p = cur ? cur : j->snap;
	char why[200];
	switch (j->outcome) {
	case GOODS_OK:
		m->stats.chunks_served++;
		m->stats.chunk_bytes += j->len;
		chunk_reply(m, j->conn, j->request_id, MP_ST(OK), "", p, ch, j->k, j->data, j->len);
		return;
	case GOODS_CHANGED:
		log_warn("purchase of '%s': %s changed since the purchase began (not a regular "
			 "file of %llu bytes any more): chunk %u not sent",
			 p->item.id, p->item.path, (unsigned long long)p->item.size, j->k);
		chunk_reply(m, j->conn, j->request_id, MP_ST(CONFLICT),
			    "the item's file changed since the purchase began; buy it again", p, ch,
			    j->k, NULL, 0);
		return;
	case GOODS_FAILED:
		log_err("purchase of '%s': reading chunk %u of %s: %s", p->item.id, j->k,
			p->item.path, strerror(j->err));
		snprintf(why, sizeof(why), "cannot read chunk %u; retry", j->k);
		chunk_reply(m, j->conn, j->request_id, MP_ST(INTERNAL), why, p, ch, j->k, NULL, 0);
		return;
	}
}

static void done(void *arg, enum mp_job_outcome outcome)
{
	struct read_job *j = arg;
	if (outcome == MP_JOB_DONE && mp_conn_is_open(j->conn))
		answer(j);
	job_free(j);
}

bool chunk_read_submit(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		       const struct channel *ch, struct purchase *p, uint32_t k)
{
	struct read_job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	*j = (struct read_job){.m = m,
			       .request_id = request_id,
			       .k = k,
			       .offset = (uint64_t)k * p->item.chunk_size,
			       .len = catalogue_chunk_len(&p->item, k),
			       .outcome = GOODS_FAILED};
	memcpy(j->channel_id, ch->id, MP_ID_LEN);
	j->snap = purchase_copy(p);
	j->data = malloc(j->len ? j->len : 1);
	if (!j->snap || !j->data) {
		job_free(j);
		return false;
	}
	j->conn = c;
	mp_conn_ref(c);
	if (!mp_workers_submit(m->workers, work, done, j)) {
		job_free(j);
		return false;
	}
	if (p->delivered < k + 1)
		p->delivered = k + 1;
	return true;
}
