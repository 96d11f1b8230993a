/* Reading a goods file on a worker thread (chunk_read.c, offer_seal.c): never on the loop. A
 * file is checked against what was pinned when it was sold (a regular file of the pinned size,
 * and for key release its modification time and its identity too); a file that changed is
 * never served.
 *
 * The identity folds the file's device, inode and status-change time (ctime) into one number.
 * A key-release chunk is sealed again under the offer's key and nonce on every ChunkReq, so a
 * file rewritten with different bytes must never pass for the one the Offer hashed (AES-GCM
 * under a repeated nonce leaks both plaintexts' XOR and its authentication key). The
 * modification time alone can be set back (touch -d, cp -p, rsync -t); the ctime cannot be set
 * by a file's owner and moves on every write, and a file replaced by a rename has another
 * inode. Left: a write within the same kernel timestamp tick (a few milliseconds) as the
 * offer's last look at the file keeps the ctime; chmod, chown or a rename in place also end
 * the offer (CHANGED: the buyer asks for a new one). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

enum goods_read { GOODS_OK, GOODS_CHANGED, GOODS_FAILED };

struct goods_pin {
	const char *path;
	uint64_t size;
	int64_t mtime_ns; /* GOODS_ANY: not checked */
	int64_t ident;	  /* device, inode and ctime folded (goods_ident); GOODS_ANY: not checked */
};
#define GOODS_ANY INT64_MIN

/* What goods_open saw of the file. */
struct goods_seen {
	int64_t mtime_ns; /* modification time (ns) */
	int64_t ident;	  /* never GOODS_ANY */
};

/* Open pin->path read-only and check it against the pin; *fd (to close) with GOODS_OK, and
 * *seen what the file is now. *err: errno with GOODS_FAILED. A missing file is CHANGED. */
enum goods_read goods_open(const struct goods_pin *pin, int *fd, struct goods_seen *seen, int *err);
/* Exactly len bytes at offset into buf (EINTR retried); a short file is CHANGED. */
enum goods_read goods_pread(int fd, uint8_t *buf, uint32_t len, uint64_t offset, int *err);
/* fd still matches the pin (size and, if pinned, mtime and identity): after a whole-file
 * pass. */
enum goods_read goods_still(int fd, const struct goods_pin *pin, int *err);
