#include "harness_flood.h"

#include <check.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

enum { BATCH = 4096 };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Answers parsed out of the bytes read so far (partial frames stay in the buffer). */
struct reader {
	uint8_t *buf;
	size_t len, cap;
	uint8_t *first; /* the first answer's body */
	size_t first_len;
};

static void take_answers(struct reader *rd, struct flood_result *r)
{
	size_t at = 0;
	while (rd->len - at >= 4) {
		uint32_t n = mp_get_be32(rd->buf + at);
		if (rd->len - at - 4 < n)
			break;
		const uint8_t *body = rd->buf + at + 4;
		if (!rd->first) {
			rd->first = malloc(n ? n : 1);
			memcpy(rd->first, body, n);
			rd->first_len = n;
			r->first = micropay__v1__envelope__unpack(NULL, n, body);
		}
		r->answers++;
		r->same += n == rd->first_len && memcmp(body, rd->first, n) == 0;
		at += 4 + n;
	}
	memmove(rd->buf, rd->buf + at, rd->len - at);
	rd->len -= at;
}

/* Read what is there; false once the connection has ended. */
static bool read_some(struct wire *w, struct reader *rd, struct flood_result *r)
{
	for (;;) {
		if (rd->cap - rd->len < 16384) {
			rd->cap = rd->cap * 2 + 65536;
			rd->buf = realloc(rd->buf, rd->cap);
		}
		int n = SSL_read(w->ssl, rd->buf + rd->len, (int)(rd->cap - rd->len));
		if (n > 0) {
			rd->len += (size_t)n;
			take_answers(rd, r);
			continue;
		}
		int e = SSL_get_error(w->ssl, n);
		ERR_clear_error();
		return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
	}
}

void flood_frames(struct wire *w, const uint8_t *frame, size_t len, uint64_t count, int stall_ms,
		  struct flood_result *r)
{
	*r = (struct flood_result){0};
	uint8_t *chunk = malloc(len * BATCH);
	for (size_t i = 0; i < BATCH; i++)
		memcpy(chunk + i * len, frame, len);
	struct reader rd = {0};
	int flags = fcntl(w->fd, F_GETFL);
	fcntl(w->fd, F_SETFL, flags | O_NONBLOCK);
	size_t at = 0, chunk_len = 0; /* the part of the chunk being written */
	double start = now_s();
	bool open = true;
	while (open && r->answers < count) {
		if (chunk_len == 0 && r->sent < count) {
			uint64_t frames = count - r->sent < BATCH ? count - r->sent : BATCH;
			chunk_len = (size_t)frames * len;
			at = 0;
		}
		bool progress = false;
		if (chunk_len > at) {
			int n = SSL_write(w->ssl, chunk + at, (int)(chunk_len - at));
			if (n > 0) {
				at += (size_t)n;
				progress = true;
				if (at == chunk_len) {
					r->sent += chunk_len / len;
					chunk_len = at = 0;
				}
			} else {
				int e = SSL_get_error(w->ssl, n);
				ERR_clear_error();
				open = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
			}
		}
		uint64_t before = r->answers;
		open = open && read_some(w, &rd, r);
		progress = progress || r->answers > before;
		if (!progress && open) {
			struct pollfd p = {w->fd, POLLIN | (chunk_len > at ? POLLOUT : 0), 0};
			open = poll(&p, 1, stall_ms) == 1;
		}
	}
	r->seconds = now_s() - start;
	fcntl(w->fd, F_SETFL, flags);
	free(rd.first);
	free(rd.buf);
	free(chunk);
}

/* One non-blocking write of what is left for w; false once w has failed. */
static bool fill_one(struct wire *w, const uint8_t *data, size_t len, size_t *took)
{
	int n = SSL_write(w->ssl, data + *took, (int)(len - *took));
	if (n > 0) {
		*took += (size_t)n;
		return true;
	}
	int e = SSL_get_error(w->ssl, n);
	ERR_clear_error();
	return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
}

void flood_fill(struct wire *w, int n, const uint8_t *data, size_t len, int ms, size_t *took)
{
	int *flags = calloc((size_t)n, sizeof(*flags));
	bool *failed = calloc((size_t)n, sizeof(*failed));
	for (int i = 0; i < n; i++) {
		took[i] = 0;
		flags[i] = fcntl(w[i].fd, F_GETFL);
		fcntl(w[i].fd, F_SETFL, flags[i] | O_NONBLOCK);
		SSL_set_mode(w[i].ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	}
	double end = now_s() + ms / 1000.0;
	while (now_s() < end) {
		bool progress = false, left = false;
		for (int i = 0; i < n; i++) {
			if (failed[i] || took[i] == len)
				continue;
			size_t before = took[i];
			failed[i] = !fill_one(&w[i], data, len, &took[i]);
			progress = progress || took[i] > before;
			left = left || (!failed[i] && took[i] < len);
		}
		if (!left)
			break;
		if (!progress)
			usleep(20000);
	}
	for (int i = 0; i < n; i++) {
		SSL_clear_mode(w[i].ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
		fcntl(w[i].fd, F_SETFL, flags[i]);
	}
	free(flags);
	free(failed);
}
