#include "harness_hostile.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "harness_net.h"
#include "util.h"

enum { FRAME_CAP = 1 << 16, TICK_US = 200000 };

/* One connection being served: its TLS, the last answer sent (for REPLAY and WRONG_TYPE). */
struct session {
	struct hostile *h;
	SSL *ssl;
	uint8_t prev[FRAME_CAP];
	size_t prev_len;
	uint8_t buf[FRAME_CAP];
};

static bool send_all(SSL *ssl, const uint8_t *p, size_t len)
{
	while (len) {
		int n = SSL_write(ssl, p, (int)len);
		if (n <= 0) {
			ERR_clear_error();
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Exactly len bytes; false on EOF, error or stop (the socket has a 200 ms receive timeout). */
static bool read_all(struct session *s, uint8_t *p, size_t len)
{
	while (len) {
		if (atomic_load(&s->h->stop))
			return false;
		int n = SSL_read(s->ssl, p, (int)len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		int e = SSL_get_error(s->ssl, n);
		ERR_clear_error();
		if (e != SSL_ERROR_WANT_READ && !(e == SSL_ERROR_SYSCALL && n < 0))
			return false;
	}
	return true;
}

/* Send p (step bytes at a time, or whole: 0) every 200 ms, round and round, until stop or
 * the peer goes away. */
static void keep_sending(struct session *s, const uint8_t *p, size_t len, size_t step)
{
	for (size_t at = 0; !atomic_load(&s->h->stop);) {
		size_t n = step ? step : len;
		if (at + n > len)
			at = 0;
		if (!send_all(s->ssl, p + at, n))
			return;
		at += n;
		usleep(TICK_US);
	}
}

static size_t wrong_type(struct session *s, const MpEnvelope *req, uint8_t *out)
{
	if (s->prev_len < 4)
		return 0;
	MpEnvelope *e = micropay__v1__envelope__unpack(NULL, s->prev_len - 4, s->prev + 4);
	if (!e)
		return 0;
	size_t n = env_frame(e, req->request_id, out, FRAME_CAP);
	micropay__v1__envelope__free_unpacked(e, NULL);
	return n;
}

/* The hostile reply to req; false once the connection is done for. */
static bool misbehave(struct session *s, const MpEnvelope *req)
{
	uint8_t *out = s->buf;
	size_t n;
	switch (s->h->mode) {
	case HOSTILE_SILENT:
		return true;
	case HOSTILE_TRICKLE:
		mp_put_be32(out, 1000);
		memset(out + 4, 0x08, 1000);
		if (!send_all(s->ssl, out, 4))
			return false;
		keep_sending(s, out + 4, 1000, 1);
		return false;
	case HOSTILE_REPLAY:
		if (s->prev_len)
			keep_sending(s, s->prev, s->prev_len, 0);
		return false;
	case HOSTILE_WRONG_TYPE:
		n = wrong_type(s, req, out);
		return n && send_all(s->ssl, out, n);
	case HOSTILE_GARBAGE:
		mp_put_be32(out, 64);
		memset(out + 4, 0xff, 64);
		return send_all(s->ssl, out, 68);
	case HOSTILE_OVERSIZED:
		mp_put_be32(out, MP_FRAME_MAX_MERCHANT + 1);
		memset(out + 4, 0x08, 1000);
		return send_all(s->ssl, out, 1004);
	case HOSTILE_CLOSE_MID_FRAME:
		n = s->h->answer(req, out, FRAME_CAP, s->h->arg);
		if (n)
			send_all(s->ssl, out, n / 2);
		return false;
	}
	return false;
}

static void serve(struct session *s)
{
	unsigned seen = 0;
	for (;;) {
		uint8_t hdr[4];
		if (!read_all(s, hdr, 4))
			return;
		uint32_t len = mp_get_be32(hdr);
		if (len == 0 || len > FRAME_CAP || !read_all(s, s->buf, len))
			return;
		MpEnvelope *req = micropay__v1__envelope__unpack(NULL, len, s->buf);
		if (!req)
			return;
		atomic_fetch_add(&s->h->requests, 1);
		bool go_on;
		if (seen++ < s->h->honest) {
			s->prev_len = s->h->answer(req, s->prev, sizeof(s->prev), s->h->arg);
			go_on = s->prev_len && send_all(s->ssl, s->prev, s->prev_len);
		} else {
			go_on = misbehave(s, req);
		}
		micropay__v1__envelope__free_unpacked(req, NULL);
		if (!go_on)
			return;
	}
}

static void *hostile_main(void *arg)
{
	struct hostile *h = arg;
	struct session *s = calloc(1, sizeof(*s));
	s->h = h;
	while (!atomic_load(&h->stop)) {
		struct pollfd p = {h->lfd, POLLIN, 0};
		if (poll(&p, 1, 100) != 1)
			continue;
		int fd = accept(h->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		struct timeval tv = {0, TICK_US};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		s->ssl = SSL_new(h->ctx);
		SSL_set_fd(s->ssl, fd);
		s->prev_len = 0;
		if (SSL_accept(s->ssl) == 1)
			serve(s);
		ERR_clear_error();
		SSL_free(s->ssl);
		close(fd);
	}
	free(s);
	return NULL;
}

void hostile_start(struct hostile *h, uint16_t port, const char *cert, const char *key,
		   enum hostile_mode mode, unsigned honest, hostile_answer_fn answer, void *arg)
{
	*h = (struct hostile){.mode = mode, .honest = honest, .answer = answer, .arg = arg};
	signal(SIGPIPE, SIG_IGN); /* a write to a client that left fails, it does not kill us */
	h->ctx = SSL_CTX_new(TLS_server_method());
	ck_assert(h->ctx);
	SSL_CTX_set_min_proto_version(h->ctx, TLS1_3_VERSION);
	ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(h->ctx, cert), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(h->ctx, key, SSL_FILETYPE_PEM), 1);
	h->lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_msg(bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "cannot bind port %u",
		      port);
	ck_assert_int_eq(listen(h->lfd, 8), 0);
	socklen_t sl = sizeof(sa);
	getsockname(h->lfd, (struct sockaddr *)&sa, &sl);
	snprintf(h->endpoint, sizeof(h->endpoint), "127.0.0.1:%u", ntohs(sa.sin_port));
	atomic_init(&h->stop, false);
	atomic_init(&h->requests, 0);
	ck_assert_int_eq(pthread_create(&h->thread, NULL, hostile_main, h), 0);
}

void hostile_stop(struct hostile *h)
{
	atomic_store(&h->stop, true);
	pthread_join(h->thread, NULL);
	close(h->lfd);
	SSL_CTX_free(h->ctx);
}
