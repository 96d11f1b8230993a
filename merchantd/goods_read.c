/* Goods file reads with their pin checks (goods_read.h). Worker threads only. */
#include "goods_read.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t mtime_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static enum goods_read check(int fd, const struct goods_pin *pin, int64_t *mtime_ns, int *err)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		*err = errno;
		return GOODS_FAILED;
	}
	*mtime_ns = mtime_of(&st);
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != pin->size ||
	    (pin->mtime_ns != GOODS_ANY_MTIME && *mtime_ns != pin->mtime_ns))
		return GOODS_CHANGED;
	return GOODS_OK;
}

enum goods_read goods_open(const struct goods_pin *pin, int *fd, int64_t *mtime_ns, int *err)
{
	*fd = open(pin->path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		*err = errno;
		return errno == ENOENT ? GOODS_CHANGED : GOODS_FAILED;
	}
	enum goods_read r = check(*fd, pin, mtime_ns, err);
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
	int64_t mtime;
	return check(fd, pin, &mtime, err);
}
