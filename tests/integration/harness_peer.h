/* Acting as parties the real daemons talk to: a second device of a walletd customer (the
 * channel's chain and owner key read from walletd's store, so a test can sign Moves and pay
 * with the same channel) and a one-connection TLS server that stands in for a merchant at its
 * endpoint (for answers no honest merchantd would give). */
#pragma once
#include <stdbool.h>

#include "harness.h"

/* Channel channel_hex of walletd WALLET (e.g. "w1") as a tchannel: chain seed, nonce, owner
 * key, n and cert from the wallet's store (segment 0). walletd holds its store exclusively, so
 * it is stopped (SIGTERM) for the read and started again. Fails the test if absent. */
void twallet_channel_load(const struct net *n, const char *wallet, const char *channel_hex,
			  struct tchannel *ch);

/* One blob column of the row sql selects from walletd WALLET's store, sql's ?1 bound to the
 * channel id (malloc'd; *len its length). walletd is stopped for the read and started again.
 * Fails the test if there is no such row. */
uint8_t *twallet_blob(const struct net *n, const char *wallet, const char *sql,
		      const char *channel_hex, size_t *len);

/* walletd WALLET stopped (SIGTERM), edit(db, arg) run on its store opened read-write, walletd
 * started again: for states a test cannot reach through walletd itself. */
typedef struct sqlite3 sqlite3;
void twallet_store_edit(const struct net *n, const char *wallet,
			void (*edit)(sqlite3 *db, void *arg), void *arg);
/* In a walletd store: Pay j of channel id in flight with word w and order_ref ref (len bytes),
 * the channel's sent raised to j, as walletd records a Pay before sending it. */
void twallet_db_put_inflight(sqlite3 *db, const uint8_t id[MP_ID_LEN], uint32_t j,
			     const uint8_t w[MP_HASH_LEN], const uint8_t *ref, size_t len);

/* A wallet's TransferReq carrying t to endpoint (a merchant, or the broker), without a client
 * certificate; the TransferResp (fails the test if there is none; the caller frees it). */
MpEnvelope *twallet_transfer_call(const char *endpoint, const char *ca, MpSigned *t);

/* A walletd answer's base64 text (an offer, a bundle) as bytes (malloc'd; *len its length). */
uint8_t *tmp_b64_decode(const char *text, size_t *len);

/* Merchant NAME's own MerchantCert (from its store's meta table). Fails the test if absent. */
MpSigned *tmerchant_stored_cert(const struct net *n, const char *name);

struct tserver {
	SSL_CTX *ctx;
	int fd;
};
/* Listen on endpoint (host:port, address reuse; port 0 picks a free one) presenting cert/key,
 * asking clients for a certificate from ca. False on failure. */
bool tserver_listen(struct tserver *s, const char *endpoint, const char *cert, const char *key,
		    const char *ca);
/* The endpoint it listens on, host:port. */
void tserver_endpoint(const struct tserver *s, char *out, size_t len);
/* Accept one connection within ms and finish its handshake into w (wire_recv, wire_send_env and
 * wire_close work on it; the context stays the server's). */
bool tserver_accept(struct tserver *s, struct wire *w, int ms);
void tserver_close(struct tserver *s);
