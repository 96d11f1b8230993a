/* Opening OUT.sealed into OUT off the loop (buy_unseal.h). */
#include "buy_unseal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "proto.h"
#include "sealed_tree.h"
#include "workers.h"

struct unseal_job {
	struct buy_unseal_spec spec;
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	char sealed[4104], part[4104];
	char err[8400];
	bool bad_chunk; /* chunk bad_k's tag did not verify */
	uint32_t bad_k;
	uint8_t *proof; /* the packed BadKeyProof, when built */
	size_t proof_len;
	buy_unseal_fn done;
	void *arg;
};

static bool read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

static bool write_full(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* Plaintext bytes of chunk k. */
static size_t chunk_len(const struct buy_unseal_spec *sp, uint32_t k)
{
	return k + 1 < sp->chunks ? sp->chunk_size
				  : (size_t)(sp->size - (uint64_t)k * sp->chunk_size);
}

/* Every chunk of in opened into out; false with j->err. */
static bool open_all(struct unseal_job *j, int in, int out, uint8_t *sealed, uint8_t *plain)
{
	const struct buy_unseal_spec *sp = &j->spec;
	for (uint32_t k = 0; k < sp->chunks; k++) {
		size_t len = chunk_len(sp, k);
		uint64_t at = (uint64_t)k * (sp->chunk_size + MP_SEAL_TAG_LEN);
		if (!read_full(in, sealed, len + MP_SEAL_TAG_LEN, at)) {
			snprintf(j->err, sizeof(j->err), "cannot read chunk %u of %s", k,
				 j->sealed);
			return false;
		}
		if (!mp_open_chunk(sp->key, j->prefix, k, sealed, len + MP_SEAL_TAG_LEN, plain)) {
			j->bad_chunk = true;
			j->bad_k = k;
			snprintf(j->err, sizeof(j->err),
				 "chunk %u of %s does not open under the key (its tag does not "
				 "verify)",
				 k, j->sealed);
			return false;
		}
		if (!write_full(out, plain, len, (uint64_t)k * sp->chunk_size)) {
			snprintf(j->err, sizeof(j->err), "cannot write %s: %s", j->part,
				 strerror(errno));
			return false;
		}
	}
	return true;
}

/* Every chunk's leaf hash (n x 32 bytes, malloc'd); NULL with j->err. */
static uint8_t (*leaf_hashes(struct unseal_job *j, int in, uint8_t *sealed))[MP_SEALED_HASH_LEN]
{
	const struct buy_unseal_spec *sp = &j->spec;
	uint8_t(*leaves)[MP_SEALED_HASH_LEN] = calloc(sp->chunks, MP_SEALED_HASH_LEN);
	for (uint32_t k = 0; leaves && k < sp->chunks; k++) {
		size_t len = chunk_len(sp, k) + MP_SEAL_TAG_LEN;
		if (!read_full(in, sealed, len, (uint64_t)k * (sp->chunk_size + MP_SEAL_TAG_LEN)) ||
		    !mp_sealed_leaf(k, sealed, len, leaves[k])) {
			free(leaves);
			leaves = NULL;
		}
	}
	if (!leaves)
		snprintf(j->err + strlen(j->err), sizeof(j->err) - strlen(j->err),
			 "; no proof could be built from %s", j->sealed);
	return leaves;
}

/* The BadKeyProof of chunk bad_k (read into sealed), packed into j->proof. */
static void build_proof(struct unseal_job *j, int in, uint8_t *sealed)
{
	struct buy_unseal_spec *sp = &j->spec;
	uint8_t(*leaves)[MP_SEALED_HASH_LEN] = leaf_hashes(j, in, sealed);
	uint8_t path[MP_SEALED_PATH_MAX][MP_SEALED_HASH_LEN];
	ProtobufCBinaryData hashes[MP_SEALED_PATH_MAX];
	size_t len = chunk_len(sp, j->bad_k) + MP_SEAL_TAG_LEN;
	if (!leaves ||
	    !read_full(in, sealed, len, (uint64_t)j->bad_k * (sp->chunk_size + MP_SEAL_TAG_LEN))) {
		free(leaves);
		return;
	}
	Micropay__V1__BadKeyProof p = MICROPAY__V1__BAD_KEY_PROOF__INIT;
	p.key = (ProtobufCBinaryData){MP_SEAL_KEY_LEN, sp->key};
	p.chunk_index = j->bad_k;
	p.chunk_count = sp->chunks;
	p.sealed_chunk = (ProtobufCBinaryData){len, sealed};
	p.n_path = mp_sealed_path((const uint8_t(*)[MP_SEALED_HASH_LEN])leaves, sp->chunks,
				  j->bad_k, path);
	for (size_t i = 0; i < p.n_path; i++)
		hashes[i] = (ProtobufCBinaryData){MP_SEALED_HASH_LEN, path[i]};
	p.path = hashes;
	free(leaves);
	j->proof_len = protobuf_c_message_get_packed_size(&p.base);
	if ((j->proof = malloc(j->proof_len)))
		protobuf_c_message_pack(&p.base, j->proof);
}

static bool finish(struct unseal_job *j, int out)
{
	const struct buy_unseal_spec *sp = &j->spec;
	if (fsync(out) != 0) {
		snprintf(j->err, sizeof(j->err), "cannot flush %s: %s", j->part, strerror(errno));
		return false;
	}
	int rc = sp->overwrite ? rename(j->part, sp->out)
			       : renameat2(AT_FDCWD, j->part, AT_FDCWD, sp->out, RENAME_NOREPLACE);
	if (rc != 0) {
		snprintf(j->err, sizeof(j->err), "cannot rename %s to %s: %s", j->part, sp->out,
			 strerror(errno));
		return false;
	}
	if (unlink(j->sealed) != 0)
		log_warn("buy: %s is written but %s cannot be removed: %s", sp->out, j->sealed,
			 strerror(errno));
	return true;
}

static void work(void *arg, const atomic_bool *stop)
{
	(void)stop; /* one pass over the file; walletd waits for it when stopping */
	struct unseal_job *j = arg;
	size_t cap = (size_t)j->spec.chunk_size + MP_SEAL_TAG_LEN;
	uint8_t *sealed = malloc(cap), *plain = malloc(cap);
	int in = open(j->sealed, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int out = open(j->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	bool ok = false;
	if (!sealed || !plain)
		snprintf(j->err, sizeof(j->err), "out of memory");
	else if (in < 0 || out < 0)
		snprintf(j->err, sizeof(j->err), "cannot open %s or create %s: %s", j->sealed,
			 j->part, strerror(errno));
	else
		ok = open_all(j, in, out, sealed, plain) && finish(j, out);
	if (!ok && j->bad_chunk)
		build_proof(j, in, sealed);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (!ok && out >= 0)
		unlink(j->part);
	free(sealed);
	free(plain);
}

static void job_done(void *arg, enum mp_job_outcome outcome)
{
	struct unseal_job *j = arg;
	if (outcome == MP_JOB_CANCELLED && !j->err[0])
		snprintf(j->err, sizeof(j->err), "walletd is stopping");
	j->done(j->arg, j->err[0] ? j->err : NULL, j->proof, j->proof_len);
	OPENSSL_cleanse(j->spec.key, sizeof(j->spec.key));
	free(j->proof);
	free(j);
}

bool buy_unseal(struct mp_workers *workers, const struct buy_unseal_spec *spec, buy_unseal_fn done,
		void *arg)
{
	struct unseal_job *j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	j->spec = *spec;
	mp_sealed_prefix(spec->key, j->prefix);
	snprintf(j->sealed, sizeof(j->sealed), "%s.sealed", spec->out);
	snprintf(j->part, sizeof(j->part), "%s.part", spec->out);
	j->done = done;
	j->arg = arg;
	if (mp_workers_submit(workers, work, job_done, j))
		return true;
	free(j);
	return false;
}
