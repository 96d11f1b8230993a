#include "harness_net.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "tls.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tcp_socket(const char *endpoint, int rcvbuf)
{
	char host[64];
	uint16_t port;
	ck_assert(mp_split_endpoint(endpoint, host, sizeof(host), &port));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	ck_assert_int_eq(inet_pton(AF_INET, host, &sin.sin_addr), 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int tcp_open(const char *endpoint)
{
	int fd = tcp_socket(endpoint, 0);
	ck_assert_msg(fd >= 0, "cannot connect to %s", endpoint);
	return fd;
}

bool tcp_closed_within(int fd, int ms)
{
	int64_t end = now_ms() + ms;
	char buf[4096];
	for (int64_t left = ms; left > 0; left = end - now_ms()) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, (int)left) == 1 && read(fd, buf, sizeof(buf)) <= 0)
			return true;
	}
	return false;
}

bool wire_open(struct wire *w, const char *endpoint, const char *ca, const char *cert,
	       const char *key, int rcvbuf)
{
	char err[512];
	*w = (struct wire){.fd = -1};
	w->ctx = mp_tls_client_ctx(ca, cert, key, err, sizeof(err));
	ck_assert_msg(w->ctx != NULL, "wire: %s", err);
	w->fd = tcp_socket(endpoint, rcvbuf);
	if (w->fd < 0) {
		wire_close(w);
		return false;
	}
	w->ssl = SSL_new(w->ctx);
	SSL_set_fd(w->ssl, w->fd);
	if (SSL_connect(w->ssl) != 1) {
		ERR_clear_error();
		wire_close(w);
		return false;
	}
	return true;
}

bool wire_write_all(struct wire *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		int n = SSL_write(w->ssl, p, len > (1u << 30) ? 1 << 30 : (int)len);
		if (n <= 0) {
			ERR_clear_error();
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

bool wire_send_frame(struct wire *w, const uint8_t *body, size_t len)
{
	uint8_t *buf = malloc(len + 4);
	mp_put_be32(buf, (uint32_t)len);
	memcpy(buf + 4, body, len);
	bool ok = wire_write_all(w, buf, len + 4);
	free(buf);
	return ok;
}

bool wire_send_env(struct wire *w, const MpEnvelope *env)
{
	size_t len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *body = malloc(len ? len : 1);
	micropay__v1__envelope__pack(env, body);
	bool ok = wire_send_frame(w, body, len);
	free(body);
	return ok;
}

size_t env_frame(MpEnvelope *env, uint64_t request_id, uint8_t *frame, size_t cap)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = request_id;
	size_t len = micropay__v1__envelope__get_packed_size(env);
	if (len + 4 > cap)
		return 0;
	mp_put_be32(frame, (uint32_t)len);
	micropay__v1__envelope__pack(env, frame + 4);
	return len + 4;
}

bool wire_send_pipelined(struct wire *w, MpEnvelope *const *envs, size_t n, uint64_t first_id)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		envs[i]->version = MP_PROTOCOL_VERSION;
		envs[i]->request_id = first_id + i;
		total += 4 + micropay__v1__envelope__get_packed_size(envs[i]);
	}
	uint8_t *buf = malloc(total);
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = micropay__v1__envelope__get_packed_size(envs[i]);
		mp_put_be32(buf + at, (uint32_t)len);
		micropay__v1__envelope__pack(envs[i], buf + at + 4);
		at += 4 + len;
	}
	bool ok = wire_write_all(w, buf, total);
	free(buf);
	return ok;
}

/* Read exactly len bytes before the deadline. */
static bool read_until(struct wire *w, uint8_t *buf, size_t len, int64_t deadline)
{
	size_t got = 0;
	while (got < len) {
		if (SSL_pending(w->ssl) == 0) {
			struct pollfd p = {w->fd, POLLIN, 0};
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return false;
			int ready = poll(&p, 1, (int)left);
			if (ready < 0 && errno == EINTR)
				continue;
			if (ready != 1)
				return false;
		}
		int n = SSL_read(w->ssl, buf + got, (int)(len - got));
		if (n <= 0) {
			int e = SSL_get_error(w->ssl, n);
			ERR_clear_error();
			if (e == SSL_ERROR_WANT_READ)
				continue;
			return false;
		}
		got += (size_t)n;
	}
	return true;
}

MpEnvelope *wire_recv_within(struct wire *w, int ms)
{
	int64_t deadline = now_ms() + ms;
	uint8_t hdr[4];
	if (!read_until(w, hdr, 4, deadline))
		return NULL;
	uint32_t n = mp_get_be32(hdr);
	uint8_t *body = malloc(n ? n : 1);
	MpEnvelope *env = NULL;
	if (read_until(w, body, n, deadline))
		env = micropay__v1__envelope__unpack(NULL, n, body);
	free(body);
	return env;
}

bool wire_closed_within(struct wire *w, int ms)
{
	int64_t deadline = now_ms() + ms;
	uint8_t buf[4096];
	for (;;) {
		if (SSL_pending(w->ssl) == 0) {
			struct pollfd p = {w->fd, POLLIN, 0};
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return false;
			int ready = poll(&p, 1, (int)left);
			if (ready < 0 && errno == EINTR)
				continue;
			if (ready != 1)
				return false;
		}
		int n = SSL_read(w->ssl, buf, sizeof(buf));
		if (n > 0)
			continue;
		int e = SSL_get_error(w->ssl, n);
		ERR_clear_error();
		if (e != SSL_ERROR_WANT_READ)
			return true; /* close_notify, EOF or reset */
	}
}

size_t wire_flood(struct wire *w, const uint8_t *frame, size_t len, int stall_ms)
{
	enum { COPIES = 512 };
	uint8_t *chunk = malloc(len * COPIES);
	for (size_t i = 0; i < COPIES; i++)
		memcpy(chunk + i * len, frame, len);
	fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
	size_t written = 0, at = 0, total = len * COPIES;
	for (;;) {
		int n = SSL_write(w->ssl, chunk + at, (int)(total - at));
		if (n > 0) {
			written += (size_t)n;
			at = (at + (size_t)n) % total;
			continue;
		}
		int e = SSL_get_error(w->ssl, n);
		ERR_clear_error();
		struct pollfd p = {w->fd, POLLOUT, 0};
		if (e != SSL_ERROR_WANT_WRITE || poll(&p, 1, stall_ms) != 1)
			break;
	}
	fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) & ~O_NONBLOCK);
	free(chunk);
	return written;
}

uint8_t *big_envelope_frame(size_t len)
{
	ck_assert_uint_ge(len, 16);
	size_t hint = len - 12; /* close enough; adjusted below until the packed size fits */
	uint8_t *fill = calloc(1, len);
	for (;;) {
		Micropay__V1__OpenReq open = MICROPAY__V1__OPEN_REQ__INIT;
		open.holder_hint = (ProtobufCBinaryData){hint, fill};
		MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
		env.version = MP_PROTOCOL_VERSION;
		env.request_id = 1;
		env.body_case = MP_BODY(OPEN_REQ);
		env.open_req = &open;
		size_t packed = micropay__v1__envelope__get_packed_size(&env);
		if (packed > len) {
			hint -= packed - len;
			continue;
		}
		uint8_t *frame = malloc(4 + packed);
		mp_put_be32(frame, (uint32_t)packed);
		micropay__v1__envelope__pack(&env, frame + 4);
		free(fill);
		return frame;
	}
}

int64_t metric(const struct net *n, const char *daemon, const char *name)
{
	json_t *m = admin_ok(n, daemon, "metrics", NULL);
	const char *text = json_str(m, "prometheus");
	size_t nl = strlen(name);
	int64_t value = -1;
	for (const char *line = text; line && *line; line = strchr(line, '\n')) {
		if (*line == '\n')
			line++;
		if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
			value = strtoll(line + nl + 1, NULL, 10);
			break;
		}
	}
	json_decref(m);
	return value;
}

int64_t metric_wait(const struct net *n, const char *daemon, const char *name, int64_t value,
		    int ms)
{
	int64_t end = now_ms() + ms, v;
	while ((v = metric(n, daemon, name)) < value && now_ms() < end)
		usleep(50000);
	return v;
}

int64_t daemon_mem_kb(const struct net *n, const char *daemon, const char *field)
{
	char pid[32], path[128], line[256];
	net_read(n, daemon, "pid", pid, sizeof(pid));
	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	int64_t kb = -1;
	size_t fl = strlen(field);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			kb = strtoll(line + fl + 1, NULL, 10);
	fclose(f);
	ck_assert_msg(kb >= 0, "no %s in %s", field, path);
	return kb;
}

bool daemon_peak_reset(const struct net *n, const char *daemon)
{
	char pid[32], path[128];
	net_read(n, daemon, "pid", pid, sizeof(pid));
	snprintf(path, sizeof(path), "/proc/%s/clear_refs", pid);
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

int log_lines_with(const struct net *n, const char *daemon, const char *needle)
{
	char path[700], line[4096];
	snprintf(path, sizeof(path), "%s/%s/log", n->dir, daemon);
	FILE *f = fopen(path, "r");
	int count = 0;
	while (f && fgets(line, sizeof(line), f))
		count += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return count;
}

bool log_has(const struct net *n, const char *daemon, const char *needle, int ms)
{
	char path[700], line[4096];
	snprintf(path, sizeof(path), "%s/%s/log", n->dir, daemon);
	int64_t end = now_ms() + ms;
	do {
		FILE *f = fopen(path, "r");
		bool found = false;
		while (f && !found && fgets(line, sizeof(line), f))
			found = strstr(line, needle) != NULL;
		if (f)
			fclose(f);
		if (found)
			return true;
		usleep(50000);
	} while (now_ms() < end);
	return false;
}

MpCode register_fresh_account(struct wire *broker, char *detail, size_t len)
{
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, key.pk};
	MpSigned *s = mp_stmt_sign(&key, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	Micropay__V1__RegisterAccountReq req = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &req;
	MpEnvelope *resp = wire_call(broker, &env);
	ck_assert(resp && resp->body_case == MP_BODY(REGISTER_ACCOUNT_RESP));
	MpCode code = resp->register_account_resp->status->code;
	snprintf(detail, len, "%s", resp->register_account_resp->status->detail);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
	mp_key_free(&key);
	return code;
}

bool honest_request_answered(const char *endpoint, const char *ca)
{
	struct wire w;
	if (!wire_connect(&w, endpoint, ca, NULL, NULL))
		return false;
	Micropay__V1__PayReq pay = MICROPAY__V1__PAY_REQ__INIT; /* answered by either daemon */
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &pay;
	MpEnvelope *resp = wire_call(&w, &env);
	bool answered = resp != NULL;
	if (resp)
		micropay__v1__envelope__free_unpacked(resp, NULL);
	wire_close(&w);
	return answered;
}

MpEnvelope *issue_envelope(const struct tchannel *ch, Micropay__V1__IssueReq *req)
{
	MpEnvelope *env = calloc(1, sizeof(*env));
	ck_assert_ptr_nonnull(env);
	micropay__v1__envelope__init(env);
	micropay__v1__issue_req__init(req);
	req->stmt = ch->request;
	env->body_case = MP_BODY(ISSUE_REQ);
	env->issue_req = req;
	return env;
}

bool stmt_same_bytes(const MpSigned *a, const MpSigned *b)
{
	size_t la = 0, lb = 0;
	uint8_t *ba = mp_stmt_encode(a, &la), *bb = mp_stmt_encode(b, &lb);
	bool same = ba && bb && la == lb && memcmp(ba, bb, la) == 0;
	free(ba);
	free(bb);
	return same;
}
