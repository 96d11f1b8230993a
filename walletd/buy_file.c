/* OUT.part of a buy, written off the loop (buy_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buy_file.h"
#include "log.h"
#include "sealed.h"
#include "sealed_tree.h"
#include "workers.h"

enum job { JOB_NONE, JOB_WRITE, JOB_COMMIT };

struct buy_file {
	struct mp_workers *workers;
	int fd;
	char out[4096], part[4104];
	enum job job;	/* the job queued or running */
	bool abandoned; /* abandon came while a job ran: clean up when it ends */
	bool committed; /* OUT.part is OUT now */
	bool overwrite;
	struct mp_sealed_hash *hash; /* the caller's: every write added to it, in order */
	uint8_t *data;
	size_t len;
	uint64_t off;
	char err[8400]; /* the job's failure, "" if none */
	buy_file_fn done;
	void *arg;
};

struct buy_file *buy_file_open(struct mp_workers *workers, const char *out, char *err,
			       size_t errlen)
{
	struct buy_file *f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->workers = workers;
	snprintf(f->out, sizeof(f->out), "%s", out);
	snprintf(f->part, sizeof(f->part), "%s.part", out);
	f->fd = open(f->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (f->fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", f->part, strerror(errno));
		free(f);
		return NULL;
	}
	return f;
}

/* Close the file and remove OUT.part (unless it became OUT), free f. */
static void cleanup(struct buy_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (!f->committed && unlink(f->part) != 0 && errno != ENOENT)
		log_warn("buy: cannot remove %s: %s", f->part, strerror(errno));
	free(f->data);
	free(f);
}

static void write_work(struct buy_file *f)
{
	size_t done = 0;
	while (done < f->len) {
		ssize_t n = pwrite(f->fd, f->data + done, f->len - done, (off_t)(f->off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(f->err, sizeof(f->err), "cannot write %s at %llu: %s", f->part,
				 (unsigned long long)(f->off + done),
				 n < 0 ? strerror(errno) : "no progress");
			return;
		}
		done += (size_t)n;
	}
	if (f->hash && !mp_sealed_hash_add(f->hash, f->data, f->len))
		snprintf(f->err, sizeof(f->err), "cannot hash the chunk written at %llu",
			 (unsigned long long)f->off);
}

static void commit_work(struct buy_file *f)
{
	if (fsync(f->fd) != 0) {
		snprintf(f->err, sizeof(f->err), "cannot flush %s: %s", f->part, strerror(errno));
		return;
	}
	int rc = close(f->fd);
	f->fd = -1;
	if (rc != 0) {
		snprintf(f->err, sizeof(f->err), "cannot close %s: %s", f->part, strerror(errno));
		return;
	}
	rc = f->overwrite ? rename(f->part, f->out)
			  : renameat2(AT_FDCWD, f->part, AT_FDCWD, f->out, RENAME_NOREPLACE);
	if (rc != 0)
		snprintf(f->err, sizeof(f->err), "cannot rename %s to %s: %s", f->part, f->out,
			 strerror(errno));
	else
		f->committed = true;
}

static void work(void *arg, const atomic_bool *stop)
{
	(void)stop; /* one write of at most 512 KiB, or one fsync: short */
	struct buy_file *f = arg;
	if (f->job == JOB_WRITE)
		write_work(f);
	else
		commit_work(f);
}

static void job_done(void *arg, enum mp_job_outcome outcome)
{
	struct buy_file *f = arg;
	enum job job = f->job;
	f->job = JOB_NONE;
	free(f->data);
	f->data = NULL;
	if (f->abandoned) {
		cleanup(f);
		return;
	}
	if (outcome == MP_JOB_CANCELLED && !f->err[0])
		snprintf(f->err, sizeof(f->err), "walletd is stopping");
	bool freed = job == JOB_COMMIT && f->committed;
	f->done(f->arg, f->err[0] ? f->err : NULL);
	if (freed)
		cleanup(f);
}

static bool submit(struct buy_file *f, enum job job, buy_file_fn done, void *arg)
{
	f->job = job;
	f->err[0] = 0;
	f->done = done;
	f->arg = arg;
	if (mp_workers_submit(f->workers, work, job_done, f))
		return true;
	f->job = JOB_NONE;
	free(f->data);
	f->data = NULL;
	return false;
}

bool buy_file_write(struct buy_file *f, uint64_t off, const uint8_t *data, size_t len,
		    buy_file_fn done, void *arg)
{
	if (f->job != JOB_NONE || !(f->data = malloc(len ? len : 1)))
		return false;
	memcpy(f->data, data, len);
	f->len = len;
	f->off = off;
	return submit(f, JOB_WRITE, done, arg);
}

bool buy_file_commit(struct buy_file *f, bool overwrite, buy_file_fn done, void *arg)
{
	if (f->job != JOB_NONE)
		return false;
	f->overwrite = overwrite;
	return submit(f, JOB_COMMIT, done, arg);
}

void buy_file_hash(struct buy_file *f, struct mp_sealed_hash *h)
{
	f->hash = h;
}

void buy_file_abandon(struct buy_file *f)
{
	if (!f)
		return;
	if (f->job != JOB_NONE)
		f->abandoned = true;
	else
		cleanup(f);
}
