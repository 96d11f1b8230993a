/* OpenSSL's heap, recorded for tests of wiping (tests/unit/test_secrets.c,
 * tests/unit-walletd/test_chainstore.c): every block OpenSSL allocates carries its size in a
 * header, and a block freed while it still holds the watched bytes is counted.
 * OPENSSL_clear_free and OPENSSL_secure_clear_free clear a block before CRYPTO_free reaches us,
 * so a wiped secret is never counted. Call secret_heap_install() first thing in main, before
 * OpenSSL allocates anything. */
#pragma once
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint8_t secret_heap_watched[64];
static size_t secret_heap_watched_len;
static unsigned secret_heap_hits;

/* Blocks start zeroed: with MALLOC_PERTURB_ (meson sets a random one) malloc fills new memory
 * with one repeated byte, which a uniform test seed of the complementary byte would match. */
static void *secret_heap_malloc(size_t n, const char *file, int line)
{
	uint64_t *p = calloc(1, n + 16);
	if (!p)
		return NULL;
	p[0] = n;
	return p + 2;
}

static void secret_heap_free(void *q, const char *file, int line)
{
	if (!q)
		return;
	uint64_t *p = (uint64_t *)q - 2;
	if (secret_heap_watched_len &&
	    memmem(q, (size_t)p[0], secret_heap_watched, secret_heap_watched_len))
		secret_heap_hits++;
	free(p);
}

static void *secret_heap_realloc(void *q, size_t n, const char *file, int line)
{
	void *r = secret_heap_malloc(n, file, line);
	if (r && q) {
		size_t have = (size_t)((uint64_t *)q - 2)[0];
		memcpy(r, q, have < n ? have : n);
		secret_heap_free(q, file, line);
	}
	return r;
}

static inline int secret_heap_install(void)
{
	return CRYPTO_set_mem_functions(secret_heap_malloc, secret_heap_realloc, secret_heap_free);
}

/* Count from now on the blocks freed while holding these len (<= 64) bytes. */
static inline void secret_heap_watch(const void *bytes, size_t len)
{
	memcpy(secret_heap_watched, bytes, len);
	secret_heap_watched_len = len;
	secret_heap_hits = 0;
}
