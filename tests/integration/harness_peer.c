#include "harness_peer.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"

static void blob(sqlite3_stmt *st, int col, void *out, size_t len)
{
	ck_assert_int_eq(sqlite3_column_bytes(st, col), (int)len);
	memcpy(out, sqlite3_column_blob(st, col), len);
}

void twallet_channel_load(const struct net *n, const char *wallet, const char *channel_hex,
			  struct tchannel *ch)
{
	char rel[64], path[700];
	uint8_t id[MP_ID_LEN], owner_seed[MP_SK_LEN];
	snprintf(rel, sizeof(rel), "%s/wallet.db", wallet);
	net_path(n, rel, path, sizeof(path));
	hex_to_bytes(channel_hex, id, MP_ID_LEN);
	memset(ch, 0, sizeof(*ch));
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(net_cmd(n, "kill", wallet), 0); /* walletd locks its store exclusively */
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT chain_seed, nonce, owner_seed, n, cert FROM "
					    "channels WHERE channel_id = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s has no channel %s", wallet, channel_hex);
	blob(st, 0, ch->seed, MP_SEED_LEN);
	blob(st, 1, ch->nonce, MP_NONCE_LEN);
	blob(st, 2, owner_seed, MP_SK_LEN);
	ch->n = (uint32_t)sqlite3_column_int64(st, 3);
	ch->cert = mp_stmt_decode(sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4));
	ck_assert(ch->cert != NULL);
	ck_assert(mp_key_from_seed(&ch->owner, owner_seed));
	sqlite3_finalize(st);
	sqlite3_close(db);
	ck_assert_int_eq(net_cmd(n, "start", wallet), 0);
}

uint8_t *twallet_blob(const struct net *n, const char *wallet, const char *sql,
		      const char *channel_hex, size_t *len)
{
	char rel[64], path[700];
	ck_assert_int_eq(net_cmd(n, "kill", wallet), 0); /* walletd locks its store exclusively */
	uint8_t id[MP_ID_LEN];
	hex_to_bytes(channel_hex, id, MP_ID_LEN);
	snprintf(rel, sizeof(rel), "%s/wallet.db", wallet);
	net_path(n, rel, path, sizeof(path));
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: no row for %s", wallet, channel_hex);
	*len = (size_t)sqlite3_column_bytes(st, 0);
	uint8_t *out = malloc(*len + 1);
	ck_assert_ptr_nonnull(out);
	memcpy(out, sqlite3_column_blob(st, 0), *len);
	sqlite3_finalize(st);
	sqlite3_close(db);
	ck_assert_int_eq(net_cmd(n, "start", wallet), 0);
	return out;
}

void twallet_store_edit(const struct net *n, const char *wallet,
			void (*edit)(sqlite3 *db, void *arg), void *arg)
{
	char rel[64], path[700];
	snprintf(rel, sizeof(rel), "%s/wallet.db", wallet);
	net_path(n, rel, path, sizeof(path));
	ck_assert_int_eq(net_cmd(n, "kill", wallet), 0);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	edit(db, arg);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(net_cmd(n, "start", wallet), 0);
}

void twallet_db_put_inflight(sqlite3 *db, const uint8_t id[MP_ID_LEN], uint32_t j,
			     const uint8_t w[MP_HASH_LEN], const uint8_t *ref, size_t len)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "INSERT INTO inflight (channel_id, j, w, order_ref) "
					    "VALUES (?1, ?2, ?3, ?4)",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, j);
	sqlite3_bind_blob(st, 3, w, MP_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, ref, (int)len, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "UPDATE channels SET sent = max(sent, ?2) "
					    "WHERE channel_id = ?1",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, id, MP_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, j);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_eq(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
}

MpEnvelope *twallet_transfer_call(const char *endpoint, const char *ca, MpSigned *t)
{
	struct wire w;
	ck_assert(wire_connect(&w, endpoint, ca, NULL, NULL));
	Micropay__V1__TransferReq req = MICROPAY__V1__TRANSFER_REQ__INIT;
	req.transfer = t;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(TRANSFER_REQ);
	env.transfer_req = &req;
	MpEnvelope *e = wire_call(&w, &env);
	wire_close(&w);
	ck_assert_msg(e && e->body_case == MP_BODY(TRANSFER_RESP) && e->transfer_resp->status,
		      "no TransferResp from %s", endpoint);
	return e;
}

uint8_t *tmp_b64_decode(const char *text, size_t *len)
{
	size_t n = strlen(text);
	uint8_t *out = malloc(n + 1);
	ck_assert_ptr_nonnull(out);
	int got = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
	ck_assert_int_ge(got, 0);
	size_t pad = (n > 0 && text[n - 1] == '=') + (n > 1 && text[n - 2] == '=');
	*len = (size_t)got - pad;
	return out;
}

MpSigned *tmerchant_stored_cert(const struct net *n, const char *name)
{
	char rel[64], path[700];
	snprintf(rel, sizeof(rel), "%s/merchant.db", name);
	net_path(n, rel, path, sizeof(path));
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT value FROM meta WHERE key = 'merchant_cert'",
					    -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s has no MerchantCert", name);
	MpSigned *cert =
	    mp_stmt_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	ck_assert(cert != NULL);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return cert;
}

bool tserver_listen(struct tserver *s, const char *endpoint, const char *cert, const char *key,
		    const char *ca)
{
	char host[256], err[512];
	*s = (struct tserver){.fd = -1};
	const char *colon = strrchr(endpoint, ':');
	if (!colon || (size_t)(colon - endpoint) >= sizeof(host))
		return false;
	memcpy(host, endpoint, (size_t)(colon - endpoint));
	host[colon - endpoint] = '\0';
	uint16_t port = (uint16_t)atoi(colon + 1);
	s->ctx = mp_tls_server_ctx(cert, key, ca, MP_CLIENT_CERT_OPTIONAL, err, sizeof(err));
	if (!s->ctx) {
		fprintf(stderr, "tserver: %s\n", err);
		return false;
	}
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sin.sin_addr);
	int one = 1;
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(s->fd, 8) != 0) {
		perror("tserver: bind/listen");
		tserver_close(s);
		return false;
	}
	return true;
}

void tserver_endpoint(const struct tserver *s, char *out, size_t len)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char host[64] = "?";
	ck_assert_int_eq(getsockname(s->fd, (struct sockaddr *)&sin, &sl), 0);
	inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
	snprintf(out, len, "%s:%u", host, (unsigned)ntohs(sin.sin_port));
}

bool tserver_accept(struct tserver *s, struct wire *w, int ms)
{
	*w = (struct wire){.fd = -1};
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return false;
	w->fd = accept(s->fd, NULL, NULL);
	if (w->fd < 0)
		return false;
	struct timeval tv = {10, 0};
	setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	w->ssl = SSL_new(s->ctx);
	SSL_set_fd(w->ssl, w->fd);
	if (SSL_accept(w->ssl) != 1) {
		wire_close(w);
		return false;
	}
	return true;
}

void tserver_close(struct tserver *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	*s = (struct tserver){.fd = -1};
}
