/* The Merkle tree of an offer's sealed chunks (sealed_tree.h). Written here rather than taken
 * from a library: OpenSSL has no Merkle tree, and the shape (RFC 9162's, with our own domain
 * bytes and the count hashed in) is a few lines over SHA-256. */
#include "sealed_tree.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define LEN MP_SEALED_HASH_LEN

struct mp_sealed_hash {
	uint8_t root[MP_SEALED_PATH_MAX + 2][LEN]; /* subtree roots, largest first */
	uint64_t leaves[MP_SEALED_PATH_MAX + 2];   /* each one's leaf count (a power of two) */
	size_t depth;
	uint64_t count;
};

static void be32(uint32_t v, uint8_t out[4])
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

static void node(const uint8_t left[LEN], const uint8_t right[LEN], uint8_t out[LEN])
{
	uint8_t in[1 + 2 * LEN];
	in[0] = 0x01;
	memcpy(in + 1, left, LEN);
	memcpy(in + 1 + LEN, right, LEN);
	SHA256(in, sizeof(in), out);
}

bool mp_sealed_leaf(uint32_t k, const uint8_t *sealed, size_t len, uint8_t out[LEN])
{
	uint8_t head[5] = {0x00};
	be32(k, head + 1);
	unsigned int n = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
		  EVP_DigestUpdate(c, head, sizeof(head)) == 1 &&
		  EVP_DigestUpdate(c, sealed, len) == 1 && EVP_DigestFinal_ex(c, out, &n) == 1 &&
		  n == LEN;
	EVP_MD_CTX_free(c);
	return ok;
}

/* SHA-256(0x02 || be32(n) || root). */
static void top(uint32_t n, const uint8_t root[LEN], uint8_t out[LEN])
{
	uint8_t in[5 + LEN] = {0x02};
	be32(n, in + 1);
	memcpy(in + 5, root, LEN);
	SHA256(in, sizeof(in), out);
}

struct mp_sealed_hash *mp_sealed_hash_new(void)
{
	return calloc(1, sizeof(struct mp_sealed_hash));
}

bool mp_sealed_hash_add(struct mp_sealed_hash *h, const uint8_t *sealed, size_t len)
{
	if (h->count > UINT32_MAX)
		return false;
	if (!mp_sealed_leaf((uint32_t)h->count, sealed, len, h->root[h->depth]))
		return false;
	h->leaves[h->depth++] = 1;
	h->count++;
	while (h->depth >= 2 && h->leaves[h->depth - 1] == h->leaves[h->depth - 2]) {
		node(h->root[h->depth - 2], h->root[h->depth - 1], h->root[h->depth - 2]);
		h->leaves[h->depth - 2] *= 2;
		h->depth--;
	}
	return true;
}

/* The right subtrees folded into the left ones, smallest first: RFC 9162's shape. */
bool mp_sealed_hash_final(struct mp_sealed_hash *h, uint8_t out[LEN])
{
	uint8_t root[LEN];
	if (!h->depth) {
		SHA256(NULL, 0, root);
	} else {
		memcpy(root, h->root[h->depth - 1], LEN);
		for (size_t i = h->depth - 1; i-- > 0;)
			node(h->root[i], root, root);
	}
	top((uint32_t)h->count, root, out);
	return true;
}

void mp_sealed_hash_free(struct mp_sealed_hash *h)
{
	free(h);
}

/* The largest power of two below n (n >= 2). */
static uint32_t split(uint32_t n)
{
	uint32_t k = 1;
	while ((uint64_t)k * 2 < n)
		k *= 2;
	return k;
}

/* The root of n >= 1 leaves. */
static void subtree(const uint8_t (*leaves)[LEN], uint32_t n, uint8_t out[LEN])
{
	if (n == 1) {
		memcpy(out, leaves[0], LEN);
		return;
	}
	uint32_t k = split(n);
	uint8_t left[LEN], right[LEN];
	subtree(leaves, k, left);
	subtree(leaves + k, n - k, right);
	node(left, right, out);
}

size_t mp_sealed_path(const uint8_t (*leaves)[LEN], uint32_t n, uint32_t k, uint8_t (*path)[LEN])
{
	if (n <= 1)
		return 0;
	uint32_t half = split(n);
	size_t len;
	if (k < half) {
		len = mp_sealed_path(leaves, half, k, path);
		subtree(leaves + half, n - half, path[len]);
	} else {
		len = mp_sealed_path(leaves + half, n - half, k - half, path);
		subtree(leaves, half, path[len]);
	}
	return len + 1;
}

/* RFC 9162 section 2.1.3.2, the inclusion proof check. */
bool mp_sealed_path_check(const uint8_t ciphertext_hash[LEN], uint32_t n, uint32_t k,
			  const uint8_t *sealed, size_t len, const uint8_t (*path)[LEN],
			  size_t path_len)
{
	if (k >= n || path_len > MP_SEALED_PATH_MAX)
		return false;
	uint8_t r[LEN], want[LEN];
	if (!mp_sealed_leaf(k, sealed, len, r))
		return false;
	uint32_t fn = k, sn = n - 1;
	for (size_t i = 0; i < path_len; i++) {
		if (sn == 0)
			return false;
		if ((fn & 1) || fn == sn) {
			node(path[i], r, r);
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			node(r, path[i], r);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return false;
	top(n, r, want);
	return CRYPTO_memcmp(want, ciphertext_hash, LEN) == 0;
}
