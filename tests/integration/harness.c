#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "harness_merchant.h"
#include "net.h"
#include "tls.h"

static const char *source_root(void)
{
	const char *s = getenv("MP_SOURCE_ROOT");
	return s ? s : ".";
}

static const char *build_root(void)
{
	const char *s = getenv("MP_BUILD");
	return s ? s : "build";
}

const char *net_build_root(void)
{
	return build_root();
}

/* system(line), except that the shell (and every daemon it starts) inherits none of the test's
 * descriptors beyond stdin, stdout and stderr: a daemon holding a test's socket would keep it
 * open after the test closed it. */
int run_without_our_fds(const char *line)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (close_range(3, ~0U, 0) != 0)
			for (int fd = 3; fd < 65536; fd++)
				close(fd);
		execl("/bin/sh", "sh", "-c", line, (char *)NULL);
		_exit(127);
	}
	int rc;
	while (waitpid(pid, &rc, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int net_cmd(const struct net *n, const char *cmd, const char *args)
{
	char line[2048];
	snprintf(line, sizeof(line),
		 "MP_BUILD='%s' '%s/deploy/mpnet' %s '%s' %s >>'%s/mpnet.log' 2>&1", build_root(),
		 source_root(), cmd, n->dir, args ? args : "", n->dir);
	return run_without_our_fds(line);
}

void net_up(struct net *n)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(n->dir, sizeof(n->dir), "%s/mpnet-XXXXXX", tmp);
	if (!mkdtemp(n->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	if (net_cmd(n, "up", getenv("MP_NO_WALLET") ? "--no-wallet" : NULL) != 0) {
		char log[1200];
		snprintf(log, sizeof(log), "cat '%s/mpnet.log' >&2; tail -n 30 '%s'/*/log >&2",
			 n->dir, n->dir);
		if (system(log) != 0)
			fprintf(stderr, "(no logs)\n");
		net_cmd(n, "down", NULL);
		fprintf(stderr, "harness: mpnet up failed in %s\n", n->dir);
		exit(1);
	}
}

/* A daemon built with sanitizers reports in its log (at the latest when it exits). */
static bool sanitizer_reports(const struct net *n)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "grep -E -A30 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "
		 "'%s'/*/log >&2",
		 n->dir);
	return system(cmd) == 0;
}

void net_down(struct net *n)
{
	net_cmd(n, "down", NULL);
	if (sanitizer_reports(n)) {
		fprintf(stderr, "harness: a daemon reported a sanitizer error (logs in %s)\n",
			n->dir);
		exit(1);
	}
	if (!getenv("MP_KEEP")) {
		char line[1200];
		snprintf(line, sizeof(line), "rm -rf '%s'", n->dir);
		if (system(line) != 0)
			fprintf(stderr, "harness: could not remove %s\n", n->dir);
	}
}

void net_path(const struct net *n, const char *rel, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", n->dir, rel);
}

void net_read(const struct net *n, const char *daemon, const char *file, char *out, size_t len)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/%s", n->dir, daemon, file);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	size_t got = fread(out, 1, len - 1, f);
	fclose(f);
	out[got] = '\0';
	while (got && (out[got - 1] == '\n'))
		out[--got] = '\0';
}

void net_signal(const struct net *n, const char *daemon, int sig)
{
	char pid[32];
	net_read(n, daemon, "pid", pid, sizeof(pid));
	ck_assert_msg(kill((pid_t)atol(pid), sig) == 0, "cannot signal %s (pid %s)", daemon, pid);
}

/* Whether daemon (running) serves as far as its clock guard goes (common/clock_guard.h): its
 * status has no clock (brokerd) or a clock within the maximum offset. */
static bool clock_within(const struct net *n, const char *daemon)
{
	char err[256];
	json_t *s = admin(n, daemon, "status", NULL, err, sizeof(err));
	json_t *clock = s ? json_object_get(s, "clock") : NULL;
	bool within =
	    !clock || !json_is_object(clock) || json_is_true(json_object_get(clock, "within"));
	json_decref(s);
	return within;
}

bool pid_running(pid_t pid)
{
	/* A daemon that exited stays a zombie until PID 1 reaps it (seconds on some machines); once
	 * all its threads are gone it holds nothing any more, so it counts as gone. */
	char path[64], stat[256];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t got = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[got] = '\0';
	const char *end = strrchr(stat, ')');
	if (!end || end[1] != ' ')
		return false;
	if (end[2] != 'Z')
		return true;
	/* the main thread exited: running while another thread still exits */
	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	DIR *d = opendir(path);
	int tasks = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		tasks += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return tasks > 1;
}

static bool daemon_running(const struct net *n, const char *name)
{
	char pidfile[1100], pid[32];
	snprintf(pidfile, sizeof(pidfile), "%s/%s/pid", n->dir, name);
	FILE *f = name[0] != '.' ? fopen(pidfile, "r") : NULL;
	if (!f)
		return false;
	bool have = fgets(pid, sizeof(pid), f) != NULL;
	fclose(f);
	return have && pid_running((pid_t)atol(pid));
}

#define NET_MAX_DAEMONS 32

/* The broker first, so that each other daemon, asking the broker's time as soon as its own
 * clock moved, finds the clocks agreeing; then every daemon that served before is waited for
 * until its clock guard serves again (one round trip to the broker). A daemon whose clock
 * disagreed with the broker's before (a restarted broker starts again at offset 0) still
 * disagrees after: it is waited for at most 10 s, and the test goes on (its clocks are its
 * business). */
void net_clock_advance(const struct net *n, uint64_t seconds)
{
	DIR *d = opendir(n->dir);
	ck_assert_msg(d != NULL, "cannot list %s", n->dir);
	char params[64], names[NET_MAX_DAEMONS][256];
	bool within[NET_MAX_DAEMONS];
	size_t count = 0;
	snprintf(params, sizeof(params), "{\"seconds\":%llu}", (unsigned long long)seconds);
	struct dirent *e;
	while ((e = readdir(d)) && count < NET_MAX_DAEMONS)
		if (strcmp(e->d_name, "broker") && daemon_running(n, e->d_name)) {
			snprintf(names[count], sizeof(names[count]), "%s", e->d_name);
			within[count] = clock_within(n, names[count]);
			count++;
		}
	closedir(d);
	if (daemon_running(n, "broker"))
		json_decref(admin_ok(n, "broker", "clock.advance", params));
	for (size_t i = 0; i < count; i++)
		json_decref(admin_ok(n, names[i], "clock.advance", params));
	for (size_t i = 0; i < count; i++)
		for (int tries = 0; within[i] && tries < 200 && !clock_within(n, names[i]); tries++)
			usleep(50 * 1000);
}

void net_clock_catch_up(const struct net *n, const char *daemon)
{
	json_t *b = admin_ok(n, "broker", "clock.show", NULL);
	json_t *d = admin_ok(n, daemon, "clock.show", NULL);
	uint64_t broker_now = (uint64_t)json_int(b, "now"),
		 daemon_now = (uint64_t)json_int(d, "now");
	json_decref(b);
	json_decref(d);
	char params[64];
	snprintf(params, sizeof(params), "{\"seconds\":%llu}",
		 (unsigned long long)(broker_now - daemon_now));
	if (broker_now > daemon_now)
		json_decref(admin_ok(n, daemon, "clock.advance", params));
}

json_t *admin(const struct net *n, const char *daemon, const char *method, const char *params,
	      char *err, size_t errlen)
{
	char sock[700];
	snprintf(sock, sizeof(sock), "%s/%s/admin.sock", n->dir, daemon);
	json_t *p = NULL;
	if (params) {
		json_error_t jerr;
		p = json_loads(params, 0, &jerr);
		ck_assert_msg(p != NULL, "bad params in test: %s", params);
	}
	json_t *out = mp_admin_call(sock, method, p, err, errlen);
	json_decref(p);
	return out;
}

json_t *admin_ok(const struct net *n, const char *daemon, const char *method, const char *params)
{
	char err[512];
	json_t *out = admin(n, daemon, method, params, err, sizeof(err));
	ck_assert_msg(out != NULL, "%s %s(%s) failed: %s", daemon, method, params ? params : "",
		      err);
	return out;
}

int64_t json_int(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	ck_assert_msg(json_is_integer(v), "no integer '%s' in reply", key);
	return json_integer_value(v);
}

const char *json_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	ck_assert_msg(json_is_string(v), "no string '%s' in reply", key);
	return json_string_value(v);
}

void hex_to_bytes(const char *hex, uint8_t *out, size_t len)
{
	ck_assert_msg(mp_hex_decode(hex, out, len), "bad hex %s", hex);
}

/* ---- wire client ---- */

bool wire_connect(struct wire *w, const char *endpoint, const char *ca, const char *cert,
		  const char *key)
{
	char host[256], err[512];
	uint16_t port;
	*w = (struct wire){.fd = -1};
	if (!mp_split_endpoint(endpoint, host, sizeof(host), &port))
		return false;
	w->ctx = mp_tls_client_ctx(ca, cert, key, err, sizeof(err));
	if (!w->ctx) {
		fprintf(stderr, "wire: %s\n", err);
		return false;
	}
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sin.sin_addr);
	w->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {10, 0};
	setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(w->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		wire_close(w);
		return false;
	}
	w->ssl = SSL_new(w->ctx);
	SSL_set_fd(w->ssl, w->fd);
	if (SSL_connect(w->ssl) != 1) {
		wire_close(w);
		return false;
	}
	return true;
}

void wire_close(struct wire *w)
{
	if (w->ssl)
		SSL_free(w->ssl);
	if (w->ctx)
		SSL_CTX_free(w->ctx);
	if (w->fd >= 0)
		close(w->fd);
	*w = (struct wire){.fd = -1};
}

bool wire_write(struct wire *w, const void *data, size_t len)
{
	return SSL_write(w->ssl, data, (int)len) == (int)len;
}

bool wire_read_exact(struct wire *w, uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		int n = SSL_read(w->ssl, buf + got, (int)(len - got));
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		/* A signal (a child such as psql exiting) interrupts a read under SO_RCVTIMEO even
		 * with SA_RESTART: read again; the receive timeout still bounds each wait. */
		bool interrupted =
		    SSL_get_error(w->ssl, n) == SSL_ERROR_WANT_READ && errno == EINTR;
		ERR_clear_error();
		if (!interrupted)
			return false;
	}
	return true;
}

MpEnvelope *wire_call(struct wire *w, MpEnvelope *env)
{
	env->version = MP_PROTOCOL_VERSION;
	env->request_id = ++w->next_id;
	size_t len = micropay__v1__envelope__get_packed_size(env);
	uint8_t *buf = malloc(len + 4);
	mp_put_be32(buf, (uint32_t)len);
	micropay__v1__envelope__pack(env, buf + 4);
	bool sent = wire_write(w, buf, len + 4);
	free(buf);
	if (!sent)
		return NULL;
	uint8_t hdr[4];
	if (!wire_read_exact(w, hdr, 4))
		return NULL;
	uint32_t n = mp_get_be32(hdr);
	uint8_t *body = malloc(n ? n : 1);
	MpEnvelope *out = NULL;
	if (wire_read_exact(w, body, n))
		out = micropay__v1__envelope__unpack(NULL, n, body);
	free(body);
	return out;
}

/* ---- test wallet ---- */

void twallet_register(struct twallet *tw, struct wire *broker)
{
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&tw->account, seed));
	Micropay__V1__RegisterAccount ra = MICROPAY__V1__REGISTER_ACCOUNT__INIT;
	ra.account_pk = (ProtobufCBinaryData){MP_PK_LEN, tw->account.pk};
	MpSigned *s = mp_stmt_sign(&tw->account, MP_STMT_REGISTER_ACCOUNT, &ra.base);
	Micropay__V1__RegisterAccountReq req = MICROPAY__V1__REGISTER_ACCOUNT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_REQ);
	env.register_account_req = &req;
	MpEnvelope *resp = wire_call(broker, &env);
	ck_assert(resp && resp->body_case == MP_BODY(REGISTER_ACCOUNT_RESP));
	ck_assert_int_eq(resp->register_account_resp->status->code, MP_ST(OK));
	ck_assert_uint_eq(resp->register_account_resp->account_id.len, MP_ID_LEN);
	memcpy(tw->account_id, resp->register_account_resp->account_id.data, MP_ID_LEN);
	micropay__v1__envelope__free_unpacked(resp, NULL);
	mp_stmt_free(s);
}

void tchannel_make(struct tchannel *ch, const struct twallet *tw, uint32_t n, uint64_t unit,
		   const uint8_t holder0[MP_ID_LEN])
{
	uint8_t owner_seed[MP_SK_LEN];
	memset(ch, 0, sizeof(*ch));
	ck_assert(mp_random_bytes(ch->seed, sizeof(ch->seed)));
	ck_assert(mp_random_bytes(ch->nonce, sizeof(ch->nonce)));
	ck_assert(mp_random_bytes(ch->req_id, sizeof(ch->req_id)));
	ck_assert(mp_key_generate(&ch->owner, owner_seed));
	ch->n = n;
	ch->unit_value = unit;
	if (holder0)
		memcpy(ch->holder0, holder0, MP_ID_LEN);
	struct mp_hasher *h = mp_hasher_new();
	ck_assert_int_eq(mp_chain_generate(h, ch->seed, ch->nonce, n, 0, NULL, NULL, ch->root), 0);
	mp_hasher_free(h);
	Micropay__V1__IssueRequest r = MICROPAY__V1__ISSUE_REQUEST__INIT;
	r.issue_req_id = (ProtobufCBinaryData){MP_ID_LEN, ch->req_id};
	r.account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)tw->account_id};
	r.owner_pk = (ProtobufCBinaryData){MP_PK_LEN, ch->owner.pk};
	r.chain_nonce = (ProtobufCBinaryData){MP_NONCE_LEN, ch->nonce};
	r.root = (ProtobufCBinaryData){MP_HASH_LEN, ch->root};
	r.n = n;
	r.unit_value = unit;
	r.currency = "EUR";
	r.holder0 = (ProtobufCBinaryData){holder0 ? MP_ID_LEN : 0, ch->holder0};
	r.pay_until_days = 1;
	ch->request = mp_stmt_sign(&tw->account, MP_STMT_ISSUE_REQUEST, &r.base);
	ck_assert(ch->request != NULL);
}

MpCode tchannel_issue(struct tchannel *ch, struct wire *broker)
{
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = ch->request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	MpEnvelope *resp = wire_call(broker, &env);
	ck_assert(resp && resp->body_case == MP_BODY(ISSUE_RESP));
	MpCode code = resp->issue_resp->status->code;
	if (resp->issue_resp->channel_cert) {
		mp_stmt_free(ch->cert);
		ch->cert = mp_stmt_copy(resp->issue_resp->channel_cert);
	}
	micropay__v1__envelope__free_unpacked(resp, NULL);
	return code;
}

void tchannel_word(const struct tchannel *ch, uint32_t j, uint8_t out[MP_HASH_LEN])
{
	struct mp_hasher *h = mp_hasher_new();
	uint8_t top[MP_HASH_LEN];
	mp_chain_top(h, ch->seed, ch->nonce, top);
	mp_chain_walk(h, ch->nonce, ch->n, top, j, out);
	mp_hasher_free(h);
}

MpEnvelope *tchannel_open(const struct tchannel *ch, struct wire *merchant)
{
	Micropay__V1__OpenReq req = MICROPAY__V1__OPEN_REQ__INIT;
	req.cert = ch->cert;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(OPEN_REQ);
	env.open_req = &req;
	return wire_call(merchant, &env);
}

void tchannel_id(const struct tchannel *ch, uint8_t out[MP_ID_LEN])
{
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, ch->cert->body.data, ch->cert->body.len);
	ck_assert(cc != NULL);
	memcpy(out, cc->channel_id.data, MP_ID_LEN);
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
}

/* Send a Pay of word j; wait for its answer (returned) or not (NULL). */
static MpEnvelope *pay_word(const struct tchannel *ch, struct wire *merchant, uint32_t j,
			    const uint8_t *order_ref, size_t ref_len, bool wait)
{
	uint8_t w[MP_HASH_LEN], channel_id[MP_ID_LEN];
	tchannel_word(ch, j, w);
	tchannel_id(ch, channel_id);
	Micropay__V1__PayReq req = MICROPAY__V1__PAY_REQ__INIT;
	req.channel_id = (ProtobufCBinaryData){MP_ID_LEN, channel_id};
	req.j = j;
	req.w_j = (ProtobufCBinaryData){MP_HASH_LEN, w};
	req.order_ref = (ProtobufCBinaryData){ref_len, (uint8_t *)order_ref};
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(PAY_REQ);
	env.pay_req = &req;
	if (wait)
		return wire_call(merchant, &env);
	ck_assert(wire_send(merchant, &env));
	return NULL;
}

MpEnvelope *tchannel_pay(const struct tchannel *ch, struct wire *merchant, uint32_t j,
			 const uint8_t *order_ref, size_t ref_len)
{
	return pay_word(ch, merchant, j, order_ref, ref_len, true);
}

void tchannel_send_pay(const struct tchannel *ch, struct wire *merchant, uint32_t j)
{
	static const uint8_t ref[1] = {1};
	pay_word(ch, merchant, j, ref, sizeof(ref), false);
}

void tchannel_send_pay_ref(const struct tchannel *ch, struct wire *merchant, uint32_t j,
			   const uint8_t *order_ref, size_t ref_len)
{
	pay_word(ch, merchant, j, order_ref, ref_len, false);
}

void tchannel_free(struct tchannel *ch)
{
	mp_stmt_free(ch->request);
	mp_stmt_free(ch->cert);
	mp_key_free(&ch->owner);
}

/* mpnet start DAEMON; on a failure the test fails with mpnet's and the daemon's last lines on
 * stderr (the network's folder goes away with it). */
static void start_or_report(const struct net *n, const char *daemon)
{
	if (net_cmd(n, "start", daemon) == 0)
		return;
	char log[1500];
	snprintf(log, sizeof(log), "tail -n 5 '%s/mpnet.log' >&2; tail -n 30 '%s/%s/log' >&2",
		 n->dir, n->dir, daemon);
	if (system(log) != 0)
		fprintf(stderr, "(no logs)\n");
	ck_abort_msg("mpnet start %s failed in %s (its log above)", daemon, n->dir);
}

void net_restart_with(const struct net *n, const char *daemon, const char *section,
		      const char *settings)
{
	ck_assert_int_eq(net_cmd(n, "kill", daemon), 0);
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/config.ini", n->dir, daemon);
	FILE *f = fopen(path, "a");
	ck_assert_msg(f != NULL, "cannot append to %s", path);
	fprintf(f, "[%s]\n%s\n", section, settings);
	fclose(f);
	start_or_report(n, daemon);
}

void net_audit_clean(const struct net *n)
{
	json_t *a = admin_ok(n, "broker", "audit", NULL);
	char *text = json_dumps(a, JSON_COMPACT);
	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "audit not clean: %s", text);
	free(text);
	json_decref(a);
}
