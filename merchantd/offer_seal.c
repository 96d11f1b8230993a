/* Hashing an offer's ciphertext on the worker pool (offer_seal.h).
 *
 *   submitted --worker: open (a regular file of the catalogue's size, else CHANGED), for each
 *   chunk k: pread, seal (prefix || be32(k)), hash; then fstat again (size, mtime and
 *   identity as at the open, else CHANGED: written meanwhile)--> loop: done(arg, outcome) |
 *   done(arg, NULL) when cancelled. Memory: one chunk and its sealed copy (<= 2 x 512 KiB +
 *   16) per job. */
#include "offer_seal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "merchant.h"
#include "sealed.h"
#include "sealed_tree.h"
#include "workers.h"

struct hash_job {
	struct offer *o; /* a copy: path, size, chunking, key, prefix */
	offer_hashed_fn done;
	void *arg;
	struct offer_hashed r;
};

static bool seal_all(struct hash_job *j, int fd, const atomic_bool *stop)
{
	const struct catalogue_item *it = &j->o->item;
	uint8_t *plain = malloc(it->chunk_size), *sealed = malloc(it->chunk_size + MP_SEAL_TAG_LEN);
	struct mp_sealed_hash *h = mp_sealed_hash_new();
	bool ok = plain && sealed && h;
	for (uint64_t k = 0; ok && k < it->chunks && !atomic_load(stop); k++) {
		uint32_t len = catalogue_chunk_len(it, k);
		j->r.outcome = goods_pread(fd, plain, len, k * it->chunk_size, &j->r.err);
		ok = j->r.outcome == GOODS_OK &&
		     mp_seal_chunk(j->o->key, j->o->prefix, (uint32_t)k, plain, len, sealed) &&
		     mp_sealed_hash_add(h, sealed, len + MP_SEAL_TAG_LEN);
	}
	ok = ok && !atomic_load(stop) && mp_sealed_hash_final(h, j->r.ciphertext_hash);
	mp_sealed_hash_free(h);
	free(plain);
	free(sealed);
	return ok;
}

static void work(void *arg, const atomic_bool *stop)
{
	struct hash_job *j = arg;
	struct goods_pin pin = {j->o->item.path, j->o->item.size, GOODS_ANY, GOODS_ANY};
	int fd;
	j->r.outcome = goods_open(&pin, &fd, &j->r.seen, &j->r.err);
	if (j->r.outcome != GOODS_OK)
		return;
	bool ok = seal_all(j, fd, stop);
	if (ok) {
		pin.mtime_ns = j->r.seen.mtime_ns;
		pin.ident = j->r.seen.ident;
		j->r.outcome = goods_still(fd, &pin, &j->r.err);
	} else if (j->r.outcome == GOODS_OK) {
		j->r.outcome = GOODS_FAILED; /* sealing, hashing or memory; err 0 */
	}
	close(fd);
}

static void done(void *arg, enum mp_job_outcome outcome)
{
	struct hash_job *j = arg;
	j->done(j->arg, outcome == MP_JOB_DONE ? &j->r : NULL);
	offer_free(j->o);
	free(j);
}

bool offer_hash_submit(struct merchant *m, const struct offer *o, offer_hashed_fn fn, void *arg)
{
	struct hash_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->o = offer_sealing_copy(m, o))) {
		free(j);
		return false;
	}
	j->done = fn;
	j->arg = arg;
	if (mp_workers_submit(m->workers, work, done, j))
		return true;
	offer_free(j->o);
	free(j);
	return false;
}
