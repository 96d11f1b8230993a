/* Goods file reads with their pin checks (goods_read.h). Worker threads only. */
#include "goods_read.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t ns_of(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* splitmix64's finaliser: every input bit moves about half the output bits. */
static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Device, inode and ctime folded into 63 bits (never GOODS_ANY): not secret, only distinct. */
static int64_t ident_of(const struct stat *st)
{
	uint64_t h = mix((uint64_t)st->st_dev);
	h = mix(h ^ (uint64_t)st->st_ino);
	h = mix(h ^ (uint64_t)ns_of(st->st_ctim));
	return (int64_t)(h >> 1);
}

static bool pinned_differs(int64_t pinned, int64_t now)
{
	return pinned != GOODS_ANY && pinned != now;
}

static enum goods_read check(int fd, const struct goods_pin *pin, struct goods_seen *seen, int *err)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		*err = errno;
		return GOODS_FAILED;
	}
	seen->mtime_ns = ns_of(st.st_mtim);
	seen->ident = ident_of(&st);
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != pin->size ||
	    pinned_differs(pin->mtime_ns, seen->mtime_ns) ||
	    pinned_differs(pin->ident, seen->ident))
		return GOODS_CHANGED;
	return GOODS_OK;
}

enum goods_read goods_open(const struct goods_pin *pin, int *fd, struct goods_seen *seen, int *err)
{
	*fd = open(pin->path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		*err = errno;
		return errno == ENOENT ? GOODS_CHANGED : GOODS_FAILED;
	}
	enum goods_read r = check(*fd, pin, seen, err);
	if (r != GOODS_OK) {
		close(*fd);
		*fd = -1;
	}
	return r;
}

enum goods_read goods_pread(int fd, uint8_t *buf, uint32_t len, uint64_t offset, int *err)
{
	for (uint32_t got = 0; got < len;) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*err = n < 0 ? errno : 0;
			return n < 0 ? GOODS_FAILED : GOODS_CHANGED; /* shorter than it was */
		}
		got += (uint32_t)n;
	}
	return GOODS_OK;
}

enum goods_read goods_still(int fd, const struct goods_pin *pin, int *err)
{
	struct goods_seen seen;
	return check(fd, pin, &seen, err);
}
