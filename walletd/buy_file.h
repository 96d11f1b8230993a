/* The file a `buy` writes (buy.c): OUT.part, created O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC|
 * O_NOFOLLOW with mode 0600, each chunk written at its offset and, once every chunk is in,
 * flushed to disk and renamed to OUT, the writes, fsync and rename on the wallet's worker
 * threads (the loop never waits for the disk).
 *
 *   OPEN --write(chunk)--> WRITING --done--> OPEN ... --commit--> COMMITTING --done--> COMMITTED
 *   any --abandon--> the file closed and OUT.part removed (after a running job ends; its done
 *   is then not called) */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mp_workers;
struct buy_file;

/* err NULL: the job succeeded; else what failed (valid during the call). */
typedef void (*buy_file_fn)(void *arg, const char *err);

/* Create OUT.part; NULL (err filled) if it cannot be created. */
struct buy_file *buy_file_open(struct mp_workers *workers, const char *out, char *err,
			       size_t errlen);
/* Write a copy of data at off; done(arg, ...) on the loop afterwards. False (nothing queued)
 * if the job cannot be queued. */
bool buy_file_write(struct buy_file *f, uint64_t off, const uint8_t *data, size_t len,
		    buy_file_fn done, void *arg);
/* fsync, close and rename OUT.part to OUT (refused if OUT exists, unless overwrite); done
 * afterwards. On success f is freed after done returns. False if it cannot be queued. */
bool buy_file_commit(struct buy_file *f, bool overwrite, buy_file_fn done, void *arg);
/* Add every later write's bytes, in the order written, to h (the caller's, which must outlive
 * the writes): the hash runs on the worker with the write. Writes are one at a time (a write
 * is refused while a job runs), so the order is the order of the calls. */
struct mp_sealed_hash;
void buy_file_hash(struct buy_file *f, struct mp_sealed_hash *h);
/* Give the file up (NULL: nothing): OUT.part removed, f freed (at once, or when its running
 * job ends, whose done is then not called). */
void buy_file_abandon(struct buy_file *f);
