#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

void mp_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool mp_hex_decode(const char *hex, uint8_t *out, size_t len)
{
	if (!hex)
		return false;
	for (size_t i = 0; i < len; i++) {
		int hi = hex_value(hex[2 * i]);
		if (hi < 0)
			return false;
		int lo = hex_value(hex[2 * i + 1]);
		if (lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[2 * len] == '\0';
}

bool mp_random_bytes(uint8_t *out, size_t len)
{
	return RAND_bytes(out, (int)len) == 1;
}

/* path's mode has no group or other bits; absent is private when may_be_absent. */
static bool mode_private(const char *path, const char *what, bool may_be_absent, char *err,
			 size_t errlen)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (may_be_absent && errno == ENOENT)
			return true;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s: mode %04o lets other users read the %s: chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), what, path);
		return false;
	}
	return true;
}

bool mp_file_is_private(const char *path, char *err, size_t errlen)
{
	return mode_private(path, "key", false, err, errlen);
}

ssize_t mp_read_secret_line(const char *path, char *buf, size_t cap, char *err, size_t errlen)
{
	if (!mp_file_is_private(path, err, errlen))
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	size_t got = n > 0 ? (size_t)n : 0;
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
		got--;
	buf[got] = '\0';
	return (ssize_t)got;
}

bool mp_store_is_private(const char *path, char *err, size_t errlen)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char file[4096];
		if ((size_t)snprintf(file, sizeof(file), "%s%s", path, suffixes[i]) >=
		    sizeof(file)) {
			snprintf(err, errlen, "%s: path too long", path);
			return false;
		}
		if (!mode_private(file, "store", true, err, errlen))
			return false;
	}
	return true;
}
