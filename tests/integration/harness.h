/* Integration harness: a real network (deploy/mpnet: PostgreSQL, CA, brokerd, merchantd,
 * walletd) in a temporary folder, admin calls, and a blocking TLS client that speaks the wire
 * protocol so tests can act as a wallet or a merchant byte by byte. */
#pragma once
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "chain.h"
#include "proto.h"
#include "sig.h"
#include "stmt.h"
#include "util.h"

struct net {
	char dir[512];
};

/* deploy/mpnet up in a fresh temporary folder; aborts the test program on failure. */
void net_up(struct net *n);
void net_down(struct net *n);
/* deploy/mpnet CMD DIR ARGS (e.g. "merchant", "m2"); returns the exit status. */
int net_cmd(const struct net *n, const char *cmd, const char *args);
/* Stop DAEMON, append "[section]\nsettings\n" to its config.ini (the last value of a key
 * wins) and start it again (same state, same port); fails the test if it does not start. */
void net_restart_with(const struct net *n, const char *daemon, const char *section,
		      const char *settings);
/* Run a shell command line without the test's open descriptors (a server it starts must not
 * hold the test's connections open); its exit status, -1 if it did not exit. */
int run_without_our_fds(const char *line);
/* Contents of DIR/DAEMON/FILE, trailing newline removed (static buffer per call site use). */
void net_read(const struct net *n, const char *daemon, const char *file, char *out, size_t len);
/* Send sig to the daemon's process (DIR/NAME/pid), without waiting. */
/* The process runs (not gone, not a zombie). */
bool pid_running(pid_t pid);
void net_signal(const struct net *n, const char *daemon, int sig);
void net_path(const struct net *n, const char *rel, char *out, size_t len);
/* Where the daemons' binaries are built ($MP_BUILD, default ./build). */
const char *net_build_root(void);

/* Admin call on DIR/DAEMON/admin.sock: params is a JSON text (or NULL). NULL on error with the
 * message in err. */
json_t *admin(const struct net *n, const char *daemon, const char *method, const char *params,
	      char *err, size_t errlen);
/* Same, failing the test if the call fails. */
json_t *admin_ok(const struct net *n, const char *daemon, const char *method, const char *params);
/* Move the test clock of every daemon of the network (started with MP_TEST_CLOCK=1) forward
 * by `seconds` (admin clock.advance), the broker's first; daemons that are not running are
 * skipped. Returns once every daemon whose clock guard served before serves again (it asks
 * the broker's time when its clock moves: common/clock_guard.h). */
void net_clock_advance(const struct net *n, uint64_t seconds);
/* A daemon restarted after the clocks moved (its test clock starts at the real time) brought
 * to the broker's now. */
void net_clock_catch_up(const struct net *n, const char *daemon);
/* The broker's audit answers ok; fails the test with the whole answer otherwise. */
void net_audit_clean(const struct net *n);
int64_t json_int(json_t *obj, const char *key);
const char *json_str(json_t *obj, const char *key);

/* Blocking TLS client. */
struct wire {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	uint64_t next_id;
};
/* cert/key NULL: no client certificate. */
bool wire_connect(struct wire *w, const char *endpoint, const char *ca, const char *cert,
		  const char *key);
void wire_close(struct wire *w);
/* Send env (version and request_id set here) and wait for its answer; NULL on EOF/timeout. */
MpEnvelope *wire_call(struct wire *w, MpEnvelope *env);
bool wire_write(struct wire *w, const void *data, size_t len);
/* Exactly len bytes from w (reads interrupted by a signal are retried); false on EOF, error or
 * the receive timeout. */
bool wire_read_exact(struct wire *w, uint8_t *buf, size_t len);

/* A test wallet: account key, registration, issue with its own chain. */
struct twallet {
	struct mp_key account;
	uint8_t account_id[MP_ID_LEN];
};

struct tchannel {
	uint8_t seed[MP_SEED_LEN];
	uint8_t nonce[MP_NONCE_LEN];
	uint8_t root[MP_HASH_LEN];
	uint8_t req_id[MP_ID_LEN];
	struct mp_key owner;
	uint32_t n;
	uint64_t unit_value;
	uint8_t holder0[MP_ID_LEN];
	MpSigned *request;
	MpSigned *cert;
};

void twallet_register(struct twallet *tw, struct wire *broker);
/* Build and sign an IssueRequest (fresh chain material). holder0 NULL: none, an unbound
 * channel (ch->holder0 stays zero). */
void tchannel_make(struct tchannel *ch, const struct twallet *tw, uint32_t n, uint64_t unit,
		   const uint8_t holder0[MP_ID_LEN]);
/* Send IssueReq with the channel's request; returns the response status, stores the cert. */
MpCode tchannel_issue(struct tchannel *ch, struct wire *broker);
/* The channel id from the issued cert. */
void tchannel_id(const struct tchannel *ch, uint8_t out[MP_ID_LEN]);
void tchannel_word(const struct tchannel *ch, uint32_t j, uint8_t out[MP_HASH_LEN]);
MpEnvelope *tchannel_open(const struct tchannel *ch, struct wire *merchant);
MpEnvelope *tchannel_pay(const struct tchannel *ch, struct wire *merchant, uint32_t j,
			 const uint8_t *order_ref, size_t ref_len);
/* The same Pay (order_ref 0x01), sent without waiting for its answer. */
void tchannel_send_pay(const struct tchannel *ch, struct wire *merchant, uint32_t j);
/* The same naming order_ref. */
void tchannel_send_pay_ref(const struct tchannel *ch, struct wire *merchant, uint32_t j,
			   const uint8_t *order_ref, size_t ref_len);
void tchannel_free(struct tchannel *ch);

/* Hex helpers for tests. */
void hex_to_bytes(const char *hex, uint8_t *out, size_t len);
