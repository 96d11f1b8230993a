#include "harness_redeem.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool wait_for(bool (*pred)(void *arg), void *arg, unsigned timeout_ms)
{
	uint64_t until = now_ms() + timeout_ms;
	for (;;) {
		if (pred(arg))
			return true;
		if (now_ms() >= until)
			return false;
		usleep(100 * 1000);
	}
}

int64_t broker_pending(const struct net *n, const char *mid_hex)
{
	char params[128];
	snprintf(params, sizeof(params), "{\"account\":\"%s\"}", mid_hex);
	json_t *acc = admin_ok(n, "broker", "account.show", params);
	json_t *rel = json_array_get(json_object_get(acc, "related"), 0);
	ck_assert_str_eq(json_str(rel, "kind"), "merchant_pending");
	int64_t b = json_int(rel, "balance");
	json_decref(acc);
	return b;
}

void broker_fund(const struct net *n, const uint8_t account[MP_ID_LEN], uint64_t amount)
{
	char hex[MP_HEX_ID_LEN + 1], fund_hex[MP_HEX_ID_LEN + 1], params[256];
	uint8_t fund_id[MP_ID_LEN];
	ck_assert(mp_random_bytes(fund_id, MP_ID_LEN));
	mp_hex_encode(account, MP_ID_LEN, hex);
	mp_hex_encode(fund_id, MP_ID_LEN, fund_hex);
	snprintf(params, sizeof(params), "{\"account\":\"%s\",\"amount\":%llu,\"fund_id\":\"%s\"}",
		 hex, (unsigned long long)amount, fund_hex);
	json_decref(admin_ok(n, "broker", "account.fund", params));
}

void broker_audit_clean(const struct net *n)
{
	json_t *a = admin_ok(n, "broker", "audit", NULL);
	char *text = json_dumps(a, JSON_COMPACT);
	ck_assert_msg(json_is_true(json_object_get(a, "ok")), "audit not clean: %s", text);
	free(text);
	json_decref(a);
}

static MpCode pay_code(MpEnvelope *e)
{
	ck_assert_msg(e && e->body_case == MP_BODY(PAY_ACK), "no PayAck");
	MpCode code = e->pay_ack->status->code;
	micropay__v1__envelope__free_unpacked(e, NULL);
	return code;
}

void paid_channel(const struct net *n, const char *name, struct twallet *tw, struct tchannel *ch,
		  uint32_t units, uint64_t unit, const uint32_t *pays, size_t n_pays)
{
	char ca[700], broker_ep[128], mid_hex[64];
	net_path(n, "tls/ca.crt", ca, sizeof(ca));
	net_read(n, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(n, name, "merchant_id", mid_hex, sizeof(mid_hex));
	uint8_t mid[MP_ID_LEN];
	hex_to_bytes(mid_hex, mid, MP_ID_LEN);
	struct wire b;
	ck_assert_msg(wire_connect(&b, broker_ep, ca, NULL, NULL), "cannot reach brokerd");
	twallet_register(tw, &b);
	broker_fund(n, tw->account_id, (uint64_t)units * unit);
	tchannel_make(ch, tw, units, unit, mid);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
	pay_channel_underpaid(n, name, ch, pays, n_pays);
}

void pay_channel_underpaid(const struct net *n, const char *name, const struct tchannel *ch,
			   const uint32_t *pays, size_t n_pays)
{
	char ca[700], ep[128];
	net_path(n, "tls/ca.crt", ca, sizeof(ca));
	net_read(n, name, "endpoint", ep, sizeof(ep));
	struct wire m;
	ck_assert_msg(wire_connect(&m, ep, ca, NULL, NULL), "cannot reach merchantd %s", name);
	MpEnvelope *ack = tchannel_open(ch, &m);
	ck_assert(ack && ack->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(ack->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(ack, NULL);
	json_t *o = admin_ok(n, name, "order.create", "{\"price\":1000000000000}");
	uint8_t order[MP_ID_LEN];
	hex_to_bytes(json_str(o, "order_ref"), order, MP_ID_LEN);
	json_decref(o);
	for (size_t i = 0; i < n_pays; i++)
		ck_assert_int_eq(pay_code(tchannel_pay(ch, &m, pays[i], order, MP_ID_LEN)),
				 MP_ST(UNDERPAID));
	wire_close(&m);
}

int64_t merchant_redeemed_end(const struct net *n, const char *name, const struct tchannel *ch)
{
	uint8_t cid[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(ch, cid);
	mp_hex_encode(cid, MP_ID_LEN, hex);
	json_t *all = admin_ok(n, name, "channels", NULL);
	json_t *list = json_object_get(all, "channels"), *c;
	size_t i;
	int64_t end = -1;
	json_array_foreach(list, i, c)
	{
		if (strcmp(json_str(c, "channel_id"), hex) == 0)
			end = json_int(c, "redeemed_end");
	}
	json_decref(all);
	return end;
}

int64_t metric(const struct net *n, const char *daemon, const char *name)
{
	json_t *r = admin_ok(n, daemon, "metrics", NULL);
	const char *text = json_str(r, "prometheus");
	size_t len = strlen(name);
	int64_t value = -1;
	bool found = false;
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
		if (strncmp(line, name, len) == 0 && line[len] == ' ') {
			value = strtoll(line + len + 1, NULL, 10);
			found = true;
			break;
		}
	}
	json_decref(r);
	ck_assert_msg(found, "%s: no metric %s", daemon, name);
	return value;
}

bool log_contains(const struct net *n, const char *daemon, const char *text)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/log", n->dir, daemon);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	char line[2048];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

/* ---- a slow DNS server ---- */

struct slow_dns {
	int fd;
	uint16_t port;
	char name[128];
	unsigned delay_ms;
	char probe[700];
	pthread_t thread;
	atomic_bool stop;
	unsigned queries;
	int64_t probe_ms;
	bool held;
};

/* The question's name in dotted form; its end offset in *end. False if malformed. */
static bool question_name(const uint8_t *q, size_t len, char *out, size_t outlen, size_t *end)
{
	size_t at = 12, o = 0;
	while (at < len && q[at] != 0) {
		size_t l = q[at++];
		if (l > 63 || at + l > len || o + l + 2 > outlen)
			return false;
		if (o)
			out[o++] = '.';
		memcpy(out + o, q + at, l);
		o += l;
		at += l;
	}
	out[o] = '\0';
	*end = at + 1 + 4; /* the zero label, qtype, qclass */
	return *end <= len;
}

static void answer(struct slow_dns *d, const uint8_t *q, size_t len, const struct sockaddr *from,
		   socklen_t fromlen)
{
	char qname[256];
	size_t end;
	if (len < 12 || !question_name(q, len, qname, sizeof(qname), &end))
		return;
	unsigned qtype = (unsigned)(q[end - 4] << 8 | q[end - 3]);
	bool known = strcasecmp(qname, d->name) == 0;
	bool give_a = known && qtype == 1;
	uint8_t r[512];
	if (end + 16 > sizeof(r))
		return;
	memcpy(r, q, end);
	r[2] = 0x81;			 /* QR, RD */
	r[3] = known ? 0x80 : 0x83;	 /* RA; NOERROR or NXDOMAIN */
	r[4] = 0, r[5] = 1;		 /* one question */
	r[6] = 0, r[7] = give_a ? 1 : 0; /* answers */
	r[8] = r[9] = r[10] = r[11] = 0; /* no authority, no additional */
	size_t o = end;
	if (give_a) {
		static const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1};
		memcpy(r + o, rr, sizeof(rr));
		o += sizeof(rr);
	}
	if (sendto(d->fd, r, o, 0, from, fromlen) < 0)
		perror("slow dns: sendto");
}

static void hold_first(struct slow_dns *d)
{
	if (d->held)
		return;
	d->held = true;
	uint64_t start = now_ms();
	char err[256];
	json_t *st = mp_admin_call(d->probe, "status", NULL, err, sizeof(err));
	d->probe_ms = st ? (int64_t)(now_ms() - start) : -1;
	json_decref(st);
	uint64_t until = start + d->delay_ms;
	while (now_ms() < until)
		usleep(10 * 1000);
}

static void *dns_thread(void *arg)
{
	struct slow_dns *d = arg;
	while (!d->stop) {
		struct pollfd p = {d->fd, POLLIN, 0};
		if (poll(&p, 1, 100) <= 0)
			continue;
		uint8_t q[512];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t len = recvfrom(d->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
		if (len <= 0)
			continue;
		d->queries++;
		hold_first(d);
		answer(d, q, (size_t)len, (struct sockaddr *)&from, fromlen);
	}
	return NULL;
}

struct slow_dns *slow_dns_start(const char *name, unsigned delay_ms, const char *probe_socket)
{
	struct slow_dns *d = calloc(1, sizeof(*d));
	ck_assert(d != NULL);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->probe, sizeof(d->probe), "%s", probe_socket);
	d->delay_ms = delay_ms;
	d->probe_ms = -1;
	d->fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	ck_assert(d->fd >= 0 && bind(d->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		  getsockname(d->fd, (struct sockaddr *)&sin, &slen) == 0);
	d->port = ntohs(sin.sin_port);
	ck_assert(pthread_create(&d->thread, NULL, dns_thread, d) == 0);
	return d;
}

uint16_t slow_dns_port(const struct slow_dns *d)
{
	return d->port;
}

void slow_dns_stop(struct slow_dns *d, unsigned *queries, int64_t *probe_ms)
{
	d->stop = true;
	pthread_join(d->thread, NULL);
	close(d->fd);
	*queries = d->queries;
	*probe_ms = d->probe_ms;
	free(d);
}
