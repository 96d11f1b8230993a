/* Each daemon as a systemd Type=notify service, with a fake NOTIFY_SOCKET the test reads
 * (harness_notify.h): READY=1 once serving, STATUS= refreshed with live counters, WATCHDOG=1
 * when WATCHDOG_USEC is set; SIGHUP: RELOADING=1, then READY=1, a renewed certificate served to
 * new connections while an existing connection keeps working, and a failed reload keeping the
 * old one; SIGTERM: STOPPING=1, the request in flight answered (a payment acknowledged, and
 * found in the merchant's store after a restart), exit status 0. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "harness_merchant.h"
#include "harness_net.h"
#include "harness_notify.h"
#include "net.h"
#include "../check_run.h"

static struct net net;
static char ca[700], broker_ep[128], m1_ep[128], m1_hex[MP_HEX_ID_LEN + 1];
static const char *const watchdog_env[] = {"WATCHDOG_USEC=1000000", NULL};

static void setup_net(void)
{
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "m1", "endpoint", m1_ep, sizeof(m1_ep));
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
}

static void teardown_net(void)
{
	net_down(&net);
}

static void append_config(const char *daemon, const char *text)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s/config.ini", net.dir, daemon);
	FILE *f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "\n%s\n", text);
	fclose(f);
}

static void fingerprint_of(X509 *x, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	ck_assert(x && X509_digest(x, EVP_sha256(), md, &len) == 1);
	mp_hex_encode(md, len, out);
}

/* SHA-256 of the certificate the server at endpoint presents on a connection (kept open in w). */
static void served_fingerprint(struct wire *w, const char *endpoint, char *out)
{
	ck_assert_msg(wire_connect(w, endpoint, ca, NULL, NULL), "cannot connect to %s", endpoint);
	X509 *x = SSL_get1_peer_certificate(w->ssl);
	fingerprint_of(x, out);
	X509_free(x);
}

static void file_fingerprint(const char *rel, char *out)
{
	char path[700];
	net_path(&net, rel, path, sizeof(path));
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	fingerprint_of(x, out);
	X509_free(x);
}

/* deploy/gen-certs DIR/tls ARGS: a new key and certificate in place of the old ones. */
static void renew_certificate(const char *args)
{
	char cmd[1600], dir[700];
	const char *src = getenv("MP_SOURCE_ROOT") ? getenv("MP_SOURCE_ROOT") : ".";
	net_path(&net, "tls", dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd), "'%s/deploy/gen-certs' '%s' %s", src, dir, args);
	ck_assert_int_eq(system(cmd), 0);
}

/* Stop DAEMON (mpnet) and start it again as our child, reporting to ns, with env (default:
 * WATCHDOG_USEC of 1 s). */
static pid_t restart_notified(const char *daemon, struct notify_sock *ns, const char *const *env)
{
	ck_assert_int_eq(net_cmd(&net, "kill", daemon), 0);
	append_config(daemon, "[service]\nstatus_interval = 1\ndrain_timeout = 20");
	notify_open(ns, &net, daemon);
	pid_t pid = net_start_notified(&net, daemon, ns, env ? env : watchdog_env);
	char msg[1024];
	ck_assert_msg(notify_wait(ns, "READY=1", 30000, msg, sizeof(msg)), "%s: no READY=1",
		      daemon);
	ck_assert_msg(strstr(msg, "STATUS=serving:"), "%s: READY without a status: %s", daemon,
		      msg);
	ck_assert_msg(notify_wait(ns, "WATCHDOG=1", 3000, msg, sizeof(msg)), "%s: no WATCHDOG=1",
		      daemon);
	/* STATUS= again within a status_interval, with live counters. */
	ck_assert_msg(notify_wait(ns, "STATUS=serving:", 3000, msg, sizeof(msg)),
		      "%s: no STATUS= refresh", daemon);
	ck_assert_msg(strstr(msg, "reloads (0 failed)"), "%s: %s", daemon, msg);
	return pid;
}

/* SIGHUP: RELOADING=1, then READY=1 (with MONOTONIC_USEC as Type=notify-reload wants). */
static void reload_by_sighup(pid_t pid, struct notify_sock *ns, const char *daemon)
{
	char msg[1024];
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	ck_assert_msg(notify_wait(ns, "RELOADING=1", 5000, msg, sizeof(msg)), "%s: no RELOADING",
		      daemon);
	ck_assert_msg(strstr(msg, "MONOTONIC_USEC="), "%s: %s", daemon, msg);
	ck_assert_msg(notify_wait(ns, "READY=1", 5000, msg, sizeof(msg)),
		      "%s: no READY=1 after the reload", daemon);
}

/* The daemon ends its drain (one more "drain: done" line than drains_before) and exits with
 * status 0 after STOPPING=1; then mpnet starts it again. */
static void expect_clean_exit(pid_t pid, struct notify_sock *ns, const char *daemon,
			      int drains_before)
{
	ck_assert_int_eq(net_child_exit(pid, 25000), 0);
	ck_assert_int_eq(log_lines_with(&net, daemon, "drain: done"), drains_before + 1);
	notify_close(ns);
	char pidfile[700];
	snprintf(pidfile, sizeof(pidfile), "%s/%s/pid", net.dir, daemon);
	unlink(pidfile);
	ck_assert_int_eq(net_cmd(&net, "start", daemon), 0);
}

static void stopping_after_sigterm(pid_t pid, struct notify_sock *ns, const char *daemon)
{
	char msg[1024];
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_msg(notify_wait(ns, "STOPPING=1", 5000, msg, sizeof(msg)), "%s: no STOPPING",
		      daemon);
}

/* The merchant acknowledged payment j (a PayAck: recorded durably, whatever the order). */
static void expect_pay_ack(struct wire *w, uint32_t j)
{
	MpEnvelope *e = wire_recv(w);
	ck_assert_msg(e != NULL, "payment %u: no answer", j);
	ck_assert_int_eq(e->body_case, MP_BODY(PAY_ACK));
	MpCode code = e->pay_ack->status->code;
	ck_assert_msg(code == MP_ST(OK) || code == MP_ST(UNDERPAID), "payment %u: status %d", j,
		      (int)code);
	micropay__v1__envelope__free_unpacked(e, NULL);
}

/* m1's durable last index of the channel (admin `channels`); -1 if it does not hold it. */
static int64_t m1_last(const struct tchannel *ch)
{
	uint8_t id[MP_ID_LEN];
	char hex[MP_HEX_ID_LEN + 1];
	tchannel_id(ch, id);
	mp_hex_encode(id, MP_ID_LEN, hex);
	json_t *r = admin_ok(&net, "m1", "channels", NULL);
	json_t *list = json_object_get(r, "channels");
	int64_t last = -1;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *c = json_array_get(list, i);
		if (strcmp(json_str(c, "channel_id"), hex) == 0)
			last = json_int(c, "last");
	}
	json_decref(r);
	return last;
}

/* A funded test wallet's channel of m1 with n units of 1. */
static void new_channel(struct twallet *tw, struct tchannel *ch, uint32_t n)
{
	struct wire b;
	ck_assert(wire_connect(&b, broker_ep, ca, NULL, NULL));
	twallet_register(tw, &b);
	net_fund_id(&net, tw->account_id, n);
	uint8_t m1[MP_ID_LEN];
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	tchannel_make(ch, tw, n, 1, m1);
	ck_assert_int_eq(tchannel_issue(ch, &b), MP_ST(OK));
	wire_close(&b);
}

/* The store's write lock, taken from outside: m1's next group commit waits for it. */
static sqlite3 *lock_m1_store(void)
{
	char path[700];
	sqlite3 *db;
	net_path(&net, "m1/merchant.db", path, sizeof(path));
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static void unlock_m1_store(sqlite3 *db)
{
	ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* A TCP connection to endpoint (host:port, IPv4) is accepted by the kernel. */
static bool accepts_connections(const char *endpoint)
{
	char host[64];
	uint16_t port;
	ck_assert(mp_split_endpoint(endpoint, host, sizeof(host), &port));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	ck_assert_int_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

START_TEST(merchantd_notify_reload_and_drain)
{
	struct notify_sock ns;
	pid_t pid = restart_notified("m1", &ns, NULL);
	struct twallet tw;
	struct tchannel ch;
	new_channel(&tw, &ch, 20);

	char before[80], after[80], renewed[80], cert_rel[128];
	struct wire old, fresh;
	served_fingerprint(&old, m1_ep, before);
	MpEnvelope *e = tchannel_open(&ch, &old);
	ck_assert(e && e->body_case == MP_BODY(OPEN_ACK));
	ck_assert_int_eq(e->open_ack->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);

	/* A renewed certificate (same CN, new key): served to new connections after SIGHUP. */
	char args[128];
	snprintf(args, sizeof(args), "merchant %s", m1_hex);
	renew_certificate(args);
	snprintf(cert_rel, sizeof(cert_rel), "tls/m-%s.crt", m1_hex);
	file_fingerprint(cert_rel, renewed);
	ck_assert_str_ne(renewed, before);
	reload_by_sighup(pid, &ns, "m1");
	served_fingerprint(&fresh, m1_ep, after);
	ck_assert_str_eq(after, renewed);
	wire_close(&fresh);
	tchannel_send_pay(&ch, &old, 1); /* the connection accepted before the reload still works */
	expect_pay_ack(&old, 1);

	/* A reload that fails (an unreadable certificate) keeps the certificate in use. */
	char cert[700], saved[720];
	net_path(&net, cert_rel, cert, sizeof(cert));
	snprintf(saved, sizeof(saved), "%s.saved", cert);
	ck_assert_int_eq(rename(cert, saved), 0);
	FILE *f = fopen(cert, "w");
	ck_assert_ptr_nonnull(f);
	fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	reload_by_sighup(pid, &ns, "m1");
	ck_assert(log_has(&net, "m1", "reload (SIGHUP) failed, the previous settings stay", 2000));
	char err[512];
	ck_assert(admin(&net, "m1", "reload", NULL, err, sizeof(err)) == NULL);
	ck_assert_msg(strstr(err, "reload failed, previous settings kept"), "%s", err);
	served_fingerprint(&fresh, m1_ep, after);
	ck_assert_str_eq(after, renewed);
	wire_close(&fresh);
	ck_assert_int_eq(rename(saved, cert), 0);
	json_t *r = admin_ok(&net, "m1", "reload", NULL); /* the admin method does the same */
	ck_assert(json_is_true(json_object_get(r, "reloaded")));
	json_decref(r);

	/* SIGTERM with a payment in the open batch (its commit held by the store's lock): the
	 * daemon waits for it, acknowledges it, then exits 0; the payment is in the store. */
	sqlite3 *lock = lock_m1_store();
	tchannel_send_pay(&ch, &old, 2);
	usleep(300 * 1000);
	int drains = log_lines_with(&net, "m1", "drain: done");
	stopping_after_sigterm(pid, &ns, "m1");
	usleep(300 * 1000);
	ck_assert_msg(pid_running(pid), "merchantd exited with a payment in flight");
	ck_assert_msg(!accepts_connections(m1_ep), "merchantd still listens while draining");
	unlock_m1_store(lock);
	expect_pay_ack(&old, 2);
	wire_close(&old);
	expect_clean_exit(pid, &ns, "m1", drains);
	ck_assert_int_eq(m1_last(&ch), 2);
	tchannel_free(&ch);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

struct held_lock {
	const uint8_t *account;
	int ms;
};

/* Holds the customer account's row lock for a while: the broker's Issue waits behind it. */
static void *hold_account_lock(void *arg)
{
	const struct held_lock *h = arg;
	char id[64];
	sql_exec(&net, "SELECT 1 FROM accounts WHERE id = %s FOR UPDATE; SELECT pg_sleep(%g);",
		 sql_bytea(h->account, MP_ID_LEN, id, sizeof(id)), h->ms / 1000.0);
	return NULL;
}

START_TEST(brokerd_notify_reload_and_drain)
{
	struct notify_sock ns;
	pid_t pid = restart_notified("broker", &ns, NULL);
	char before[80], after[80], renewed[80];
	struct wire old, fresh;
	served_fingerprint(&old, broker_ep, before);
	struct twallet tw;
	twallet_register(&tw, &old);

	renew_certificate("broker");
	file_fingerprint("tls/broker.crt", renewed);
	ck_assert_str_ne(renewed, before);
	reload_by_sighup(pid, &ns, "broker");
	served_fingerprint(&fresh, broker_ep, after);
	ck_assert_str_eq(after, renewed);
	wire_close(&fresh);
	net_fund_id(&net, tw.account_id, 30);
	uint8_t m1[MP_ID_LEN];
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	struct tchannel ch;
	tchannel_make(&ch, &tw, 10, 1, m1);
	ck_assert_int_eq(tchannel_issue(&ch, &old), MP_ST(OK)); /* the old connection works */

	/* SIGTERM with an Issue in flight (waiting for the account's row lock). */
	struct tchannel ch2;
	tchannel_make(&ch2, &tw, 10, 1, m1);
	struct held_lock h = {tw.account_id, 1500};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, hold_account_lock, &h), 0);
	usleep(400 * 1000);
	Micropay__V1__IssueReq req = MICROPAY__V1__ISSUE_REQ__INIT;
	req.stmt = ch2.request;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(ISSUE_REQ);
	env.issue_req = &req;
	ck_assert(wire_send(&old, &env));
	usleep(200 * 1000);
	int drains = log_lines_with(&net, "broker", "drain: done");
	stopping_after_sigterm(pid, &ns, "broker");
	usleep(200 * 1000);
	ck_assert_msg(pid_running(pid), "brokerd exited with a request in flight");
	ck_assert_msg(!accepts_connections(broker_ep), "brokerd still listens while draining");
	MpEnvelope *e = wire_recv(&old);
	ck_assert_msg(e && e->body_case == MP_BODY(ISSUE_RESP),
		      "the Issue in flight got no answer");
	ck_assert_int_eq(e->issue_resp->status->code, MP_ST(OK));
	micropay__v1__envelope__free_unpacked(e, NULL);
	pthread_join(t, NULL);
	wire_close(&old);
	expect_clean_exit(pid, &ns, "broker", drains);
	tchannel_free(&ch);
	tchannel_free(&ch2);
	mp_key_free(&tw.account);
	net_audit_clean(&net);
}
END_TEST

struct wallet_call {
	const char *params;
	json_t *result;
	char err[512];
};

static void *wallet_pay(void *arg)
{
	struct wallet_call *c = arg;
	c->result = admin(&net, "w1", "pay", c->params, c->err, sizeof(c->err));
	return NULL;
}

START_TEST(walletd_notify_reload_and_drain)
{
	json_t *r = admin_ok(&net, "w1", "register", NULL);
	char account[64], channel[64], order[64], params[512];
	snprintf(account, sizeof(account), "%s", json_str(r, "account_id"));
	json_decref(r);
	net_fund(&net, account, 20);
	snprintf(params, sizeof(params),
		 "{\"merchant_id\":\"%s\",\"n\":10,\"unit_value\":1,\"days\":1}", m1_hex);
	r = admin_ok(&net, "w1", "issue", params);
	snprintf(channel, sizeof(channel), "%s", json_str(r, "channel_id"));
	json_decref(r);

	/* Paths as a unit gives them: the CA through LoadCredential=, the store in
	 * StateDirectory=, the admin socket in RuntimeDirectory= (deploy/systemd). */
	char saved[8192], path[700];
	net_path(&net, "w1/config.ini", path, sizeof(path));
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t len = fread(saved, 1, sizeof(saved) - 1, f);
	fclose(f);
	saved[len] = '\0';
	append_config("w1", "[tls]\nca = $CREDENTIALS_DIRECTORY/ca.crt\n[wallet]\n"
			    "store = $STATE_DIRECTORY/wallet.db\n[admin]\n"
			    "socket = $RUNTIME_DIRECTORY/admin.sock");
	static char creds[700], state[700], runtime[700];
	snprintf(creds, sizeof(creds), "CREDENTIALS_DIRECTORY=%s/tls", net.dir);
	snprintf(state, sizeof(state), "STATE_DIRECTORY=%s/w1", net.dir);
	snprintf(runtime, sizeof(runtime), "RUNTIME_DIRECTORY=%s/w1", net.dir);
	const char *const env[] = {creds, state, runtime, "WATCHDOG_USEC=1000000", NULL};
	struct notify_sock ns;
	pid_t pid = restart_notified("w1", &ns, env);
	json_t *bal = admin_ok(&net, "w1", "channels", NULL); /* the same store: our channel */
	ck_assert_int_eq(json_array_size(json_object_get(bal, "channels")), 1);
	json_decref(bal);
	reload_by_sighup(pid, &ns, "w1");
	ck_assert(log_has(&net, "w1", "reload (SIGHUP): done", 2000));

	/* A CA that cannot be read: the reload fails and the wallet keeps the one it has. */
	char missing[700];
	net_path(&net, "tls/missing-ca.crt", missing, sizeof(missing));
	char line[800];
	snprintf(line, sizeof(line), "[tls]\nca = %s", missing);
	append_config("w1", line);
	reload_by_sighup(pid, &ns, "w1");
	ck_assert(log_has(&net, "w1", "reload (SIGHUP) failed, the previous settings stay", 2000));
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(saved, f);
	fclose(f);

	/* SIGTERM while a payment waits for m1 (its store locked): the wallet finishes it,
	 * answers the caller, then exits 0. */
	net_new_order(&net, "m1", 1, order, sizeof(order));
	char pay[512];
	snprintf(pay, sizeof(pay),
		 "{\"channel_id\":\"%s\",\"endpoint\":\"%s\",\"units\":1,\"order_ref\":\"%s\"}",
		 channel, m1_ep, order);
	struct wallet_call call = {pay, NULL, ""};
	sqlite3 *lock = lock_m1_store();
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, wallet_pay, &call), 0);
	usleep(500 * 1000);
	int drains = log_lines_with(&net, "w1", "drain: done");
	stopping_after_sigterm(pid, &ns, "w1");
	usleep(300 * 1000);
	ck_assert_msg(pid_running(pid), "walletd exited with a payment in flight");
	unlock_m1_store(lock);
	pthread_join(t, NULL);
	ck_assert_msg(call.result != NULL, "the payment in flight failed: %s", call.err);
	json_decref(call.result);
	expect_clean_exit(pid, &ns, "w1", drains);
	snprintf(params, sizeof(params), "{\"order_ref\":\"%s\"}", order);
	r = admin_ok(&net, "m1", "order.show", params); /* acknowledged, so durable at m1 */
	ck_assert(json_is_true(json_object_get(r, "paid")));
	json_decref(r);
	net_audit_clean(&net);
}
END_TEST

/* A certificate near its notAfter is warned of when loaded (here at a reload, as at start and
 * once a day): "expires in N days" in the log, within [tls] expiry_warning_days (21). A
 * certificate of the usual 825 days is not. */
START_TEST(expiring_certificate_warned_at_reload)
{
	char args[128];
	snprintf(args, sizeof(args), "merchant %s", m1_hex);
	int before = log_lines_with(&net, "m1", "TLS certificate expires in");
	setenv("MP_CERT_DAYS", "5", 1);
	renew_certificate(args);
	unsetenv("MP_CERT_DAYS");
	json_decref(admin_ok(&net, "m1", "reload", NULL));
	/* 5 days from its signing, less the seconds until the reload read it. */
	ck_assert_msg(log_has(&net, "m1", "merchantd TLS certificate expires in", 5000),
		      "no expiry warning after loading a certificate valid for 5 days");
	ck_assert(log_lines_with(&net, "m1", "TLS certificate expires in 4 days") +
		      log_lines_with(&net, "m1", "TLS certificate expires in 5 days") ==
		  before + 1);
	ck_assert_int_eq(log_lines_with(&net, "m1", "TLS certificate expires in"), before + 1);
	renew_certificate(args);
	json_decref(admin_ok(&net, "m1", "reload", NULL));
	ck_assert(log_has(&net, "m1", "reload: certificate", 5000));
	ck_assert_int_eq(log_lines_with(&net, "m1", "TLS certificate expires in"), before + 1);
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("systemd");
	TCase *tc = tcase_create("systemd");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, merchantd_notify_reload_and_drain);
	tcase_add_test(tc, brokerd_notify_reload_and_drain);
	tcase_add_test(tc, walletd_notify_reload_and_drain);
	tcase_add_test(tc, expiring_certificate_warned_at_reload);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
