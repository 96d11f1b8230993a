/* RegisterMerchant against the real brokerd and merchantd: the stored cert is returned while it
 * has more than a third of its life left and a fresh one (same key, later valid_until) after,
 * with the old one kept; merchantd renews on its own; a CONFLICT carries the stored cert and
 * stops a merchantd whose key is not the registered one. The broker's MerchantCert lifetime is
 * shortened to LIFETIME seconds ([broker] merchant_cert_lifetime_s). */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "harness.h"
#include "harness_db.h"
#include "harness_ledger.h"
#include "../check_run.h"

#define LIFETIME 15 /* seconds: renewal is due after 10 */

static struct net net;
static char ca[700], broker_ep[128], m1_hex[64];
static uint8_t broker_pk[MP_PK_LEN];

static void setup_net(void)
{
	char lifetime[16], pk_hex[80];
	snprintf(lifetime, sizeof(lifetime), "%d", LIFETIME);
	setenv("MP_MERCHANT_CERT_LIFETIME_S", lifetime, 1);
	setenv("MP_NO_WALLET", "1", 1);
	net_up(&net);
	net_path(&net, "tls/ca.crt", ca, sizeof(ca));
	net_read(&net, "broker", "endpoint", broker_ep, sizeof(broker_ep));
	net_read(&net, "broker", "broker_pk", pk_hex, sizeof(pk_hex));
	hex_to_bytes(pk_hex, broker_pk, MP_PK_LEN);
	net_read(&net, "m1", "merchant_id", m1_hex, sizeof(m1_hex));
}

static void teardown_net(void)
{
	net_down(&net);
}

static void audit_clean(void)
{
	net_audit_clean(&net);
}

/* A merchant account the operator created, with a TLS certificate, but no merchantd. */
static void new_merchant_account(char mid_hex[MP_HEX_ID_LEN + 1])
{
	json_t *r = admin_ok(&net, "broker", "account.create", "{\"kind\":\"merchant\"}");
	snprintf(mid_hex, MP_HEX_ID_LEN + 1, "%s", json_str(r, "merchant_id"));
	json_decref(r);
	const char *src = getenv("MP_SOURCE_ROOT") ? getenv("MP_SOURCE_ROOT") : ".";
	char cmd[1600];
	snprintf(cmd, sizeof(cmd), "'%s/deploy/gen-certs' '%s/tls' merchant %s", src, net.dir,
		 mid_hex);
	ck_assert_msg(system(cmd) == 0, "gen-certs failed");
}

/* Send RegisterMerchant{mid, key, endpoint} over mutual TLS with mid's certificate. */
static MpEnvelope *register_merchant(const char *mid_hex, const struct mp_key *key,
				     const char *endpoint)
{
	char cert[700], tls_key[700];
	snprintf(cert, sizeof(cert), "%s/tls/m-%s.crt", net.dir, mid_hex);
	snprintf(tls_key, sizeof(tls_key), "%s/tls/m-%s.key", net.dir, mid_hex);
	uint8_t mid[MP_ID_LEN];
	hex_to_bytes(mid_hex, mid, MP_ID_LEN);
	Micropay__V1__RegisterMerchant rm = MICROPAY__V1__REGISTER_MERCHANT__INIT;
	rm.merchant_id = (ProtobufCBinaryData){MP_ID_LEN, mid};
	rm.merchant_pk = (ProtobufCBinaryData){MP_PK_LEN, (uint8_t *)key->pk};
	rm.endpoint = (char *)endpoint;
	MpSigned *s = mp_stmt_sign(key, MP_STMT_REGISTER_MERCHANT, &rm.base);
	ck_assert(s != NULL);
	Micropay__V1__RegisterMerchantReq req = MICROPAY__V1__REGISTER_MERCHANT_REQ__INIT;
	req.stmt = s;
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_MERCHANT_REQ);
	env.register_merchant_req = &req;
	struct wire w;
	ck_assert_msg(wire_connect(&w, broker_ep, ca, cert, tls_key), "cannot reach brokerd");
	MpEnvelope *resp = wire_call(&w, &env);
	ck_assert(resp && resp->body_case == MP_BODY(REGISTER_MERCHANT_RESP));
	ck_assert(resp->register_merchant_resp->status != NULL);
	wire_close(&w);
	mp_stmt_free(s);
	return resp;
}

/* The response's cert: signed by the broker; its body parsed (free with free_unpacked). */
static Micropay__V1__MerchantCert *cert_of(const MpEnvelope *resp)
{
	const MpSigned *cert = resp->register_merchant_resp->merchant_cert;
	ck_assert_msg(cert != NULL, "no MerchantCert in the answer (%s)",
		      mp_code_name(resp->register_merchant_resp->status->code));
	ProtobufCMessage *body;
	ck_assert_int_eq(mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, broker_pk,
				      &micropay__v1__merchant_cert__descriptor, &body),
			 MP_ST(OK));
	return (Micropay__V1__MerchantCert *)body;
}

static bool same_cert_bytes(const MpEnvelope *a, const MpEnvelope *b)
{
	const MpSigned *x = a->register_merchant_resp->merchant_cert;
	const MpSigned *y = b->register_merchant_resp->merchant_cert;
	return x && y && x->body.len == y->body.len &&
	       !memcmp(x->body.data, y->body.data, x->body.len) &&
	       !memcmp(x->signature.data, y->signature.data, MP_SIG_LEN);
}

static MpCode code_of(const MpEnvelope *resp)
{
	return resp->register_merchant_resp->status->code;
}

static void load_merchant_key(const char *name, struct mp_key *key)
{
	char path[700], err[256];
	snprintf(path, sizeof(path), "%s/%s/merchant.key", net.dir, name);
	ck_assert_msg(mp_key_load(key, path, err, sizeof(err)), "%s", err);
}

START_TEST(stored_cert_until_two_thirds_then_a_fresh_one_with_history)
{
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	MpEnvelope *first = register_merchant(mid, &key, "127.0.0.1:1");
	ck_assert_int_eq(code_of(first), MP_ST(OK));
	Micropay__V1__MerchantCert *c1 = cert_of(first);
	ck_assert(!memcmp(c1->merchant_pk.data, key.pk, MP_PK_LEN));
	uint64_t now = mp_wall_clock_s();
	ck_assert_msg(c1->valid_until >= now + LIFETIME - 2 && c1->valid_until <= now + LIFETIME,
		      "valid_until %llu is not now + %d", (unsigned long long)c1->valid_until,
		      LIFETIME);

	/* Before two thirds of the life: the very same stored cert. */
	MpEnvelope *again = register_merchant(mid, &key, "127.0.0.1:1");
	ck_assert_int_eq(code_of(again), MP_ST(DUPLICATE_OK));
	ck_assert(same_cert_bytes(first, again));
	micropay__v1__envelope__free_unpacked(again, NULL);

	/* Past two thirds: a new cert, same key, later valid_until. */
	while (mp_wall_clock_s() * 3 <= c1->valid_until * 3 - LIFETIME + 3)
		usleep(200000);
	MpEnvelope *renewed = register_merchant(mid, &key, "127.0.0.1:1");
	ck_assert_int_eq(code_of(renewed), MP_ST(OK));
	ck_assert(!same_cert_bytes(first, renewed));
	Micropay__V1__MerchantCert *c2 = cert_of(renewed);
	ck_assert_uint_gt(c2->valid_until, c1->valid_until);
	ck_assert(!memcmp(c2->merchant_pk.data, key.pk, MP_PK_LEN));
	ck_assert(!memcmp(c2->merchant_id.data, c1->merchant_id.data, MP_ID_LEN));
	ck_assert_str_eq(c2->endpoint, "127.0.0.1:1");

	/* And that one is now the stored one. */
	again = register_merchant(mid, &key, "127.0.0.1:1");
	ck_assert_int_eq(code_of(again), MP_ST(DUPLICATE_OK));
	ck_assert(same_cert_bytes(renewed, again));
	micropay__v1__envelope__free_unpacked(again, NULL);

	/* The old cert is kept next to the new one. */
	char *certs =
	    sql_value(&net,
		      "SELECT count(*) || ' ' || min(valid_until) || ' ' || max(valid_until)"
		      " || ' ' || count(DISTINCT merchant_pk) FROM merchant_certs"
		      " WHERE merchant_id = '\\x%s'",
		      mid);
	char expect[128];
	snprintf(expect, sizeof(expect), "2 %llu %llu 1", (unsigned long long)c1->valid_until,
		 (unsigned long long)c2->valid_until);
	ck_assert_str_eq(certs, expect);
	free(certs);
	micropay__v1__merchant_cert__free_unpacked(c1, NULL);
	micropay__v1__merchant_cert__free_unpacked(c2, NULL);
	micropay__v1__envelope__free_unpacked(first, NULL);
	micropay__v1__envelope__free_unpacked(renewed, NULL);
	mp_key_free(&key);
	audit_clean();
}
END_TEST

/* Make mid's current cert look like a 90-day cert with `left_days` left (its stored times only:
 * the broker decides renewal on them, in the database clock). */
static void age_current_cert(const char *mid, int left_days)
{
	sql_exec(&net,
		 "WITH t AS (SELECT floor(extract(epoch FROM now()))::bigint AS now),"
		 " c AS (UPDATE merchant_certs mc SET valid_until = t.now + %d * 86400,"
		 " issued_at = t.now + %d * 86400 - 90 * 86400 FROM t, merchants m"
		 " WHERE mc.merchant_id = '\\x%s' AND m.merchant_id = mc.merchant_id"
		 " AND mc.valid_until = m.cert_valid_until RETURNING mc.valid_until)"
		 " UPDATE merchants SET cert_valid_until = (SELECT valid_until FROM c)"
		 " WHERE merchant_id = '\\x%s'",
		 left_days, left_days, mid, mid);
}

/* The renewal gap: a 90-day cert renewed at a third (30 days) left could not back a 30-day
 * channel (30 d + 48 h + T_grace = 33 days) in its days 57 to 60. The broker now renews once
 * less than the longest channel's need plus a day (34 days) is left. */
START_TEST(cert_renewed_while_it_still_backs_the_longest_channel)
{
	/* The default lifetime (90 days) from here on: brokerd restarted with it. */
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "sed -i 's/^merchant_cert_lifetime_s = .*/merchant_cert_lifetime_s = 0/' "
		 "'%s/broker/config.ini'",
		 net.dir);
	ck_assert(system(cmd) == 0);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	MpEnvelope *first = register_merchant(mid, &key, "127.0.0.1:5");
	ck_assert_int_eq(code_of(first), MP_ST(OK));

	/* Day 50 of 90 (40 days left): still the stored cert. */
	age_current_cert(mid, 40);
	MpEnvelope *r = register_merchant(mid, &key, "127.0.0.1:5");
	ck_assert_int_eq(code_of(r), MP_ST(DUPLICATE_OK));
	micropay__v1__envelope__free_unpacked(r, NULL);

	/* Day 58 (32 days left, more than a third): too short for a 30-day channel; renewed. */
	age_current_cert(mid, 32);
	r = register_merchant(mid, &key, "127.0.0.1:5");
	ck_assert_msg(code_of(r) == MP_ST(OK),
		      "a cert with 32 of 90 days left was not renewed (%s)",
		      mp_code_name(code_of(r)));
	Micropay__V1__MerchantCert *c = cert_of(r);
	ck_assert_uint_ge(c->valid_until, mp_wall_clock_s() + 90 * 86400 - 2);
	char *current = sql_value(
	    &net, "SELECT cert_valid_until FROM merchants WHERE merchant_id = '\\x%s'", mid);
	ck_assert_uint_eq(strtoull(current, NULL, 10), c->valid_until);
	free(current);
	micropay__v1__merchant_cert__free_unpacked(c, NULL);
	micropay__v1__envelope__free_unpacked(r, NULL);
	micropay__v1__envelope__free_unpacked(first, NULL);
	mp_key_free(&key);
	audit_clean();
}
END_TEST

/* The MerchantCert's bond is the bond posted (bond.post) when the cert is issued or renewed; a
 * cert already issued keeps its figure until the next renewal. */
START_TEST(cert_carries_the_posted_bond_refreshed_at_renewal)
{
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	net_post_bond(&net, mid, 70);
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	MpEnvelope *first = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_int_eq(code_of(first), MP_ST(OK));
	Micropay__V1__MerchantCert *c = cert_of(first);
	ck_assert_uint_eq(c->bond, 70);
	micropay__v1__merchant_cert__free_unpacked(c, NULL);

	/* More bond posted: the issued cert keeps 70 until it is renewed. */
	net_post_bond(&net, mid, 10);
	MpEnvelope *r = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_int_eq(code_of(r), MP_ST(DUPLICATE_OK));
	ck_assert(same_cert_bytes(first, r));
	micropay__v1__envelope__free_unpacked(r, NULL);
	age_current_cert(mid, 10);
	r = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_int_eq(code_of(r), MP_ST(OK));
	c = cert_of(r);
	ck_assert_uint_eq(c->bond, 80);
	micropay__v1__merchant_cert__free_unpacked(c, NULL);
	micropay__v1__envelope__free_unpacked(r, NULL);
	micropay__v1__envelope__free_unpacked(first, NULL);
	mp_key_free(&key);
	audit_clean();
}
END_TEST

START_TEST(merchantd_renews_its_cert_ahead_of_time)
{
	json_t *st = admin_ok(&net, "m1", "status", NULL);
	int64_t first = json_int(st, "cert_valid_until");
	json_decref(st);
	int64_t now_valid = first;
	for (int i = 0; i < 4 * 2 * LIFETIME && now_valid == first; i++) {
		usleep(250000);
		st = admin_ok(&net, "m1", "status", NULL);
		now_valid = json_int(st, "cert_valid_until");
		json_decref(st);
	}
	ck_assert_msg(now_valid > first, "m1 did not renew its MerchantCert (valid until %lld)",
		      (long long)first);
	/* Ahead of time: before the old one ran out. */
	ck_assert_int_lt((int64_t)mp_wall_clock_s(), first);
	/* The broker holds the new one as m1's current cert, the old one in its history. */
	char *v =
	    sql_value(&net,
		      "SELECT m.cert_valid_until || ' ' || (SELECT count(*) FROM merchant_certs"
		      " c WHERE c.merchant_id = m.merchant_id AND c.valid_until = %lld)"
		      " FROM merchants m WHERE m.merchant_id = '\\x%s'",
		      (long long)first, m1_hex);
	char expect[64];
	snprintf(expect, sizeof(expect), "%lld 1", (long long)now_valid);
	ck_assert_str_eq(v, expect);
	free(v);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "grep -q 'MerchantCert renewed: valid until %lld' '%s/m1/log'",
		 (long long)now_valid, net.dir);
	ck_assert_msg(system(cmd) == 0, "m1 did not log the renewal");
	audit_clean();
}
END_TEST

START_TEST(conflict_carries_the_stored_cert_and_changes_nothing)
{
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	struct mp_key key, other, m1_key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed) && mp_key_generate(&other, seed));
	MpEnvelope *stored = register_merchant(mid, &key, "127.0.0.1:2");
	ck_assert_int_eq(code_of(stored), MP_ST(OK));

	/* The same merchant_id with another key: CONFLICT carrying the stored cert. */
	MpEnvelope *r = register_merchant(mid, &other, "127.0.0.1:2");
	ck_assert_int_eq(code_of(r), MP_ST(CONFLICT));
	ck_assert(same_cert_bytes(stored, r));
	micropay__v1__envelope__free_unpacked(r, NULL);
	/* ... or another endpoint. */
	r = register_merchant(mid, &key, "127.0.0.1:3");
	ck_assert_int_eq(code_of(r), MP_ST(CONFLICT));
	ck_assert(same_cert_bytes(stored, r));
	micropay__v1__envelope__free_unpacked(r, NULL);

	/* A new merchant registering m1's key: CONFLICT carrying m1's cert (was INTERNAL). */
	char fresh[MP_HEX_ID_LEN + 1];
	new_merchant_account(fresh);
	load_merchant_key("m1", &m1_key);
	r = register_merchant(fresh, &m1_key, "127.0.0.1:4");
	ck_assert_int_eq(code_of(r), MP_ST(CONFLICT));
	Micropay__V1__MerchantCert *c = cert_of(r);
	uint8_t m1[MP_ID_LEN];
	hex_to_bytes(m1_hex, m1, MP_ID_LEN);
	ck_assert(!memcmp(c->merchant_id.data, m1, MP_ID_LEN));
	ck_assert(!memcmp(c->merchant_pk.data, m1_key.pk, MP_PK_LEN));
	micropay__v1__merchant_cert__free_unpacked(c, NULL);
	micropay__v1__envelope__free_unpacked(r, NULL);

	/* Nothing changed: the fresh merchant is unregistered, mid keeps its key and one cert. */
	char *v = sql_value(&net,
			    "SELECT (SELECT merchant_pk IS NULL FROM merchants WHERE merchant_id ="
			    " '\\x%s') || ' ' || (SELECT count(*) FROM merchant_certs WHERE"
			    " merchant_id = '\\x%s')",
			    fresh, mid);
	ck_assert_str_eq(v, "true 1");
	free(v);
	micropay__v1__envelope__free_unpacked(stored, NULL);
	mp_key_free(&key);
	mp_key_free(&other);
	mp_key_free(&m1_key);
	audit_clean();
}
END_TEST

/* merchantd restarted with a key that is not the registered one: CONFLICT, a clear log line,
 * exit; it does not retry forever. */
START_TEST(merchantd_stops_on_conflict)
{
	ck_assert_int_eq(net_cmd(&net, "merchant", "m2"), 0);
	char m2_hex[64];
	net_read(&net, "m2", "merchant_id", m2_hex, sizeof(m2_hex));
	char *pk_before = sql_value(&net,
				    "SELECT encode(merchant_pk, 'hex') FROM merchants"
				    " WHERE merchant_id = '\\x%s'",
				    m2_hex);
	ck_assert_int_eq(net_cmd(&net, "kill", "m2"), 0);
	char cmd[1600];
	snprintf(cmd, sizeof(cmd), "(umask 077; openssl rand -hex 32 >'%s/m2/merchant.key')",
		 net.dir);
	ck_assert(system(cmd) == 0);
	net_cmd(&net, "start", "m2"); /* may see it exit already */
	char pid_text[32];
	net_read(&net, "m2", "pid", pid_text, sizeof(pid_text));
	pid_t pid = (pid_t)atoi(pid_text);
	bool alive = true;
	for (int i = 0; i < 100 && alive; i++) {
		usleep(100000);
		alive = pid_running(pid);
	}
	ck_assert_msg(!alive, "merchantd keeps running after a registration CONFLICT");
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'registration CONFLICT .*the broker holds merchant %s with key %s.*"
		 "Stopping' '%s/m2/log'",
		 m2_hex, pk_before, net.dir);
	ck_assert_msg(system(cmd) == 0, "no clear CONFLICT line in %s/m2/log", net.dir);
	char *pk_after = sql_value(&net,
				   "SELECT encode(merchant_pk, 'hex') FROM merchants"
				   " WHERE merchant_id = '\\x%s'",
				   m2_hex);
	ck_assert_str_eq(pk_after, pk_before);
	free(pk_before);
	free(pk_after);
	audit_clean();
}
END_TEST

/* Renewal is decided at the broker's protocol time, not the database clock (migration 0018):
 * brokerd restarted with --test-clock; a 90-day cert registered now is still the stored one
 * 50 days later by the broker's clock, renewed at day 57 (33 days left, less than the longest
 * channel's need of 34), and the new cert is valid from the broker's time, not the wall's. */
START_TEST(cert_renewal_follows_the_broker_clock)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/test-clock", net.dir);
	FILE *f = fopen(path, "w"); /* mpnet starts the network's daemons with --test-clock */
	ck_assert(f != NULL);
	fclose(f);
	ck_assert_int_eq(net_cmd(&net, "kill", "broker"), 0);
	ck_assert_int_eq(net_cmd(&net, "start", "broker"), 0);
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	MpEnvelope *first = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_int_eq(code_of(first), MP_ST(OK));
	Micropay__V1__MerchantCert *c1 = cert_of(first);

	json_decref(admin_ok(&net, "broker", "clock.advance", "{\"seconds\":4320000}")); /* 50 d */
	MpEnvelope *r = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_int_eq(code_of(r), MP_ST(DUPLICATE_OK));
	ck_assert(same_cert_bytes(first, r));
	micropay__v1__envelope__free_unpacked(r, NULL);

	json_decref(admin_ok(&net, "broker", "clock.advance", "{\"seconds\":604800}")); /* 57 d */
	json_t *clock = admin_ok(&net, "broker", "clock.show", NULL);
	uint64_t broker_now = (uint64_t)json_int(clock, "now");
	json_decref(clock);
	r = register_merchant(mid, &key, "127.0.0.1:6");
	ck_assert_msg(code_of(r) == MP_ST(OK),
		      "a cert with 33 of 90 days left by the broker's clock was not renewed (%s)",
		      mp_code_name(code_of(r)));
	Micropay__V1__MerchantCert *c2 = cert_of(r);
	ck_assert_uint_ge(c2->valid_until, broker_now + 90 * 86400);
	ck_assert_uint_le(c2->valid_until, broker_now + 90 * 86400 + 5);
	ck_assert_uint_ge(c2->valid_until, c1->valid_until + 57 * 86400);
	char *current = sql_value(
	    &net, "SELECT cert_valid_until FROM merchants WHERE merchant_id = '\\x%s'", mid);
	ck_assert_uint_eq(strtoull(current, NULL, 10), c2->valid_until);
	free(current);
	micropay__v1__merchant_cert__free_unpacked(c1, NULL);
	micropay__v1__merchant_cert__free_unpacked(c2, NULL);
	micropay__v1__envelope__free_unpacked(r, NULL);
	micropay__v1__envelope__free_unpacked(first, NULL);
	mp_key_free(&key);
	audit_clean();
}
END_TEST

/* No function of the merchant lookup path reads the database clock (issue 7): the one-argument
 * lookup a Redeem uses returns the merchant's key and current cert only (its renewal_due and
 * db_now columns, computed from now(), are gone with migration 0021), and renewal is decided at
 * the broker's time by the three-argument lookup. */
START_TEST(merchant_lookup_reads_no_clock)
{
	char mid[MP_HEX_ID_LEN + 1];
	new_merchant_account(mid);
	struct mp_key key;
	uint8_t seed[MP_SK_LEN];
	ck_assert(mp_key_generate(&key, seed));
	MpEnvelope *r = register_merchant(mid, &key, "127.0.0.1:7");
	ck_assert_int_eq(code_of(r), MP_ST(OK));
	Micropay__V1__MerchantCert *c = cert_of(r);
	char *clocked =
	    sql_value(&net, "SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p"
			    " WHERE p.proname IN ('mp_merchant_lookup',"
			    " 'mp_merchant_cert_renewal_due', 'mp_register_merchant')"
			    " AND p.prosrc ILIKE '%%now()%%'");
	ck_assert_msg(clocked == NULL || clocked[0] == '\0', "read now(): %s", clocked);
	free(clocked);
	char *cols = sql_value(&net, "SELECT pg_get_function_result('mp_merchant_lookup(bytea)'"
				     "::regprocedure)");
	ck_assert_msg(!strstr(cols, "renewal_due") && !strstr(cols, "db_now"), "%s", cols);
	free(cols);
	char *row = sql_value(
	    &net, "SELECT found || ' ' || cert_valid_until FROM mp_merchant_lookup('\\x%s')", mid);
	char want[64];
	snprintf(want, sizeof(want), "true %" PRIu64, c->valid_until);
	ck_assert_str_eq(row, want);
	free(row);
	micropay__v1__merchant_cert__free_unpacked(c, NULL);
	micropay__v1__envelope__free_unpacked(r, NULL);
	mp_key_free(&key);
	audit_clean();
}
END_TEST

static Suite *registration_suite(void)
{
	Suite *s = suite_create("registration");
	TCase *tc = tcase_create("registration");
	tcase_add_unchecked_fixture(tc, setup_net, teardown_net);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, stored_cert_until_two_thirds_then_a_fresh_one_with_history);
	tcase_add_test(tc, merchantd_renews_its_cert_ahead_of_time);
	tcase_add_test(tc, conflict_carries_the_stored_cert_and_changes_nothing);
	tcase_add_test(tc, merchantd_stops_on_conflict);
	tcase_add_test(tc, merchant_lookup_reads_no_clock);
	/* Last: it restarts brokerd with the default MerchantCert lifetime. */
	tcase_add_test(tc, cert_renewed_while_it_still_backs_the_longest_channel);
	tcase_add_test(tc, cert_carries_the_posted_bond_refreshed_at_renewal);
	/* Last: it restarts brokerd with --test-clock. */
	tcase_add_test(tc, cert_renewal_follows_the_broker_clock);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(registration_suite());
}
