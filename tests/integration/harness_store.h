/* A daemon's SQLite store seen from outside, in integration tests: its write lock held the way
 * another process or a slow disk would stall a commit. */
#pragma once
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* BEGIN IMMEDIATE on the store at path (the daemon's next write waits, up to its busy
 * timeout); fails the test if the lock cannot be taken. */
sqlite3 *store_lock_hold(const char *path);
/* Roll back and close: the daemon's waiting write goes on. */
void store_lock_release(sqlite3 *db);

/* One blob column (col) of the first row sql selects from the SQLite store at path, ?1 bound to
 * id (id_len bytes) and ?2 to k (unused by sql: ignored), opened read-only beside its running
 * daemon (merchantd's store is in WAL mode; walletd's must be stopped first). NULL if there is
 * no such row; else malloc'd, *len its length. */
uint8_t *store_row_blob(const char *path, const char *sql, const uint8_t *id, size_t id_len,
			int64_t k, int col, size_t *len);
