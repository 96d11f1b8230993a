/* Reading a goods file on a worker thread (chunk_read.c, offer_seal.c): never on the loop. A
 * file is checked against what was pinned when it was sold (a regular file of the pinned size,
 * and for key release its modification time too); a file that changed is never served. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

enum goods_read { GOODS_OK, GOODS_CHANGED, GOODS_FAILED };

struct goods_pin {
	const char *path;
	uint64_t size;
	int64_t mtime_ns; /* GOODS_ANY_MTIME: not checked */
};
#define GOODS_ANY_MTIME INT64_MIN

/* Open pin->path read-only and check it against the pin; *fd (to close) with GOODS_OK, and
 * *mtime_ns the file's modification time (ns). *err: errno with GOODS_FAILED. A missing file
 * is CHANGED. */
enum goods_read goods_open(const struct goods_pin *pin, int *fd, int64_t *mtime_ns, int *err);
/* Exactly len bytes at offset into buf (EINTR retried); a short file is CHANGED. */
enum goods_read goods_pread(int fd, uint8_t *buf, uint32_t len, uint64_t offset, int *err);
/* fd still matches the pin (size and, if pinned, mtime): after a whole-file pass. */
enum goods_read goods_still(int fd, const struct goods_pin *pin, int *err);
