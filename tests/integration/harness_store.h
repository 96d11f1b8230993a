/* A daemon's SQLite store seen from outside, in integration tests: its write lock held the way
 * another process or a slow disk would stall a commit. */
#pragma once
#include <sqlite3.h>

/* BEGIN IMMEDIATE on the store at path (the daemon's next write waits, up to its busy
 * timeout); fails the test if the lock cannot be taken. */
sqlite3 *store_lock_hold(const char *path);
/* Roll back and close: the daemon's waiting write goes on. */
void store_lock_release(sqlite3 *db);
