/* SQLite's heap in walletd wiped on free (store.h, wstore_wipe_freed_memory). The wallet
 * store's pages, bound values and column results hold the account seed, the chains' seeds and
 * the owner seeds; SQLite frees them to the C heap without clearing them. This wraps the
 * allocator SQLite has (its default, or whatever was installed before) so that every block is
 * cleared with OPENSSL_cleanse before it is freed, and before a realloc moves it. The cost is
 * one pass over each freed block: the wallet's store traffic is small. */
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <string.h>

#include "store.h"

/* The allocator we wrap. SQLite's configuration is process-wide, and so is this copy of it:
 * set once before SQLite starts, never changed after. */
static sqlite3_mem_methods wrapped;

static void *mem_malloc(int n)
{
	return wrapped.xMalloc(n);
}

static void mem_free(void *p)
{
	if (p)
		OPENSSL_cleanse(p, (size_t)wrapped.xSize(p));
	wrapped.xFree(p);
}

/* A block that moves is copied by the wrapped realloc and its old copy freed unwiped: move it
 * ourselves instead. Shrinking in place is left to the wrapped allocator (nothing is freed). */
static void *mem_realloc(void *p, int n)
{
	int have = p ? wrapped.xSize(p) : 0;
	if (!p || n <= have)
		return wrapped.xRealloc(p, n);
	void *q = wrapped.xMalloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, (size_t)have);
	mem_free(p);
	return q;
}

static int mem_size(void *p)
{
	return wrapped.xSize(p);
}

static int mem_roundup(int n)
{
	return wrapped.xRoundup(n);
}

static int mem_init(void *arg)
{
	return wrapped.xInit(wrapped.pAppData);
}

static void mem_shutdown(void *arg)
{
	wrapped.xShutdown(wrapped.pAppData);
}

bool wstore_wipe_freed_memory(void)
{
	static const sqlite3_mem_methods wiping = {mem_malloc,	mem_free, mem_realloc,	mem_size,
						   mem_roundup, mem_init, mem_shutdown, NULL};
	return sqlite3_config(SQLITE_CONFIG_GETMALLOC, &wrapped) == SQLITE_OK &&
	       sqlite3_config(SQLITE_CONFIG_MALLOC, &wiping) == SQLITE_OK;
}
