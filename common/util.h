/* Small helpers: hex, ids, big-endian integers. (Time: clock.h.) */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#define MP_ID_LEN     16
#define MP_HEX_ID_LEN (2 * MP_ID_LEN)

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void mp_hex_encode(const uint8_t *in, size_t len, char *out);
/* Exactly 2*len hex digits into len bytes; false on any other input. */
bool mp_hex_decode(const char *hex, uint8_t *out, size_t len);

/* A file holding a secret (a key): true if only its owner may read or write it (no group or
 * other permission bits); else false with "PATH: mode 0644 lets other users read the key: chmod
 * 600 PATH" (or why it cannot be checked) in err. */
bool mp_file_is_private(const char *path, char *err, size_t errlen);
/* A secret file's first cap-1 bytes (a key's hex, a PIN) into buf, NUL-terminated, trailing
 * newlines dropped: refused unless private (mp_file_is_private); read with read(2), so no stdio
 * buffer keeps a copy. The caller wipes buf. Its length, or -1 with a message in err. */
ssize_t mp_read_secret_line(const char *path, char *buf, size_t cap, char *err, size_t errlen);
/* A SQLite store (and its -wal, -shm, -journal files, where present) has no group or other
 * permission: false with "PATH: mode 0644 lets other users read the store: chmod 600 PATH".
 * An absent store is private (it is created 0600). */
bool mp_store_is_private(const char *path, char *err, size_t errlen);

/* Cryptographically random bytes (OpenSSL RAND); false if the generator failed. */
bool mp_random_bytes(uint8_t *out, size_t len);

static inline void mp_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t mp_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
