/* RegisterAccount and RegisterMerchant (protocol.md section 6, "Register and fund"). Both are
 * checked against the key in their own body (register_open.h: the signature on the worker
 * pool; a full queue answers LIMIT busy with nothing stored): they move no money.
 *
 *   RegisterAccount: VERIFYING [worker pool] --(refused)--> its status
 *      v
 *   register_account (db: the account by its key) --> OK / DUPLICATE_OK + the account id */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cert_renewal.h"
#include "db.h"
#include "log.h"
#include "sign_job.h"
#include "stmt.h"
#include "tls.h"
#include "util.h"
#include "register_open.h"
#include "verify_job.h"

static void reply_account(struct broker_call *call, MpCode code, const char *detail,
			  const uint8_t *account_id)
{
	Micropay__V1__RegisterAccountResp resp = MICROPAY__V1__REGISTER_ACCOUNT_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	if (account_id)
		resp.account_id = (ProtobufCBinaryData){MP_ID_LEN, (uint8_t *)account_id};
	resp.broker_time = mp_clock_now(&call->b->clock);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_ACCOUNT_RESP);
	env.register_account_resp = &resp;
	broker_call_reply(call, &env);
}

static void on_account_registered(const PGresult *res, const char *error, void *arg)
{
	struct broker_call *call = arg;
	uint8_t account_id[MP_ID_LEN];
	if (!res || PQntuples(res) != 1 ||
	    !db_get_bytes(res, 0, "account_id", account_id, MP_ID_LEN)) {
		reply_account(call, MP_ST(INTERNAL),
			      error ? error : "unexpected database result; retry", NULL);
		return;
	}
	bool created = db_get_bool(res, 0, "created");
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(account_id, MP_ID_LEN, hex);
	log_info("account %s: %s", hex, created ? "registered" : "registration repeated");
	if (created)
		call->b->stats.accounts_registered++;
	reply_account(call, created ? MP_ST(OK) : MP_ST(DUPLICATE_OK), NULL, account_id);
}

/* A RegisterAccount while its signature is checked on a worker. */
struct account_reg {
	struct broker_call *call;
	MpSigned *stmt; /* our copy: the job's to read until on_account_opened */
};

static void account_refused(struct broker_call *call, MpCode code, const char *detail)
{
	call->b->stats.requests_refused++;
	reply_account(call, code, detail, NULL);
}

/* VERIFYING done, on the loop: the account is created (or found) by its key. */
static void on_account_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct account_reg *ar = arg;
	struct broker_call *call = ar->call;
	struct broker *b = call->b;
	if (code != MP_ST(OK)) {
		account_refused(call, code,
				code == MP_ST(INTERNAL) ? "verification did not finish; retry"
							: "RegisterAccount refused");
		mp_stmt_free(ar->stmt);
		free(ar);
		return;
	}
	Micropay__V1__RegisterAccount *ra = (Micropay__V1__RegisterAccount *)body;
	uint8_t new_id[MP_ID_LEN];
	size_t stmt_len;
	uint8_t *stmt = mp_stmt_encode(ar->stmt, &stmt_len);
	struct db_params p = {0};
	db_param_bytes(&p, ra->account_pk.data, MP_PK_LEN);
	db_param_bytes(&p, new_id, MP_ID_LEN);
	db_param_bytes(&p, stmt, stmt_len);
	db_param_text(&p, b->cfg.currency);
	const char *refused =
	    !stmt || !mp_random_bytes(new_id, sizeof(new_id))
		? "out of memory or randomness"
		: db_call(b->db, "register_account", &p, on_account_registered, call);
	if (refused)
		reply_account(call, MP_ST(INTERNAL), refused, NULL);
	free(stmt);
	protobuf_c_message_free_unpacked(body, NULL);
	mp_stmt_free(ar->stmt);
	free(ar);
}

void handle_register_account(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct broker_call *call = broker_call_new(b, c, env);
	if (!call)
		return;
	const MpSigned *s = env->register_account_req->stmt;
	struct account_reg *ar = calloc(1, sizeof(*ar));
	if (!ar || (s && !(ar->stmt = mp_stmt_copy(s)))) {
		free(ar);
		reply_account(call, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	ar->call = call;
	MpCode code = register_open_submit(
	    b, ar->stmt, MP_STMT_REGISTER_ACCOUNT, &micropay__v1__register_account__descriptor,
	    offsetof(Micropay__V1__RegisterAccount, account_pk), on_account_opened, ar);
	if (code == MP_ST(OK))
		return;
	account_refused(call, code,
			code == MP_ST(LIMIT) ? BROKER_BUSY_VERIFYING : "RegisterAccount refused");
	mp_stmt_free(ar->stmt);
	free(ar);
}

/* ---- RegisterMerchant ----
 * Flow (one request):
 *   VERIFYING [worker pool, register_open.h] the statement, then (on the loop) its fields and
 *   the peer certificate (read when the request arrived)
 *     -> merchant_lookup (the broker's protocol time p_now, stored cert, renewal_due)
 *        unknown merchant                         -> UNKNOWN_ACCOUNT
 *        registered, another statement            -> CONFLICT + the stored cert
 *        registered, same statement, not due      -> DUPLICATE_OK + the stored cert
 *        not registered, or same statement and due -> sign a cert (valid_until = p_now +
 *           lifetime) on the worker pool (common/sign_job.h; queue full -> LIMIT busy,
 *           signing failed or pool stopped -> INTERNAL; nothing stored either way)
 *           -> register_merchant, which decides again under the row lock
 *           -> OK + the new cert (registered or renewed) | DUPLICATE_OK / CONFLICT + stored
 * The renewal rule (less than max(a third of the life, min(the longest channel's need + a day,
 * half the life)) left; common/cert_renewal.h) is docs/operations.md, "MerchantCert renewal";
 * the SQL is brokerd/sql/0005-merchant-cert-history.sql, 0007-merchant-cert-renewal-need.sql and
 * 0018-merchant-cert-broker-time.sql (p_now: under --test-clock the broker's time moves on and
 * certs age with it). */

struct merchant_reg {
	struct broker_call *call;
	MpSigned *stmt; /* our copy: the job's to read until on_merchant_opened */
	bool has_peer_mid;
	uint8_t peer_mid[MP_ID_LEN]; /* the peer certificate's merchant id, read on arrival */
	Micropay__V1__RegisterMerchant *rm;
	uint8_t reg_hash[MP_HASH_LEN];
	MpSigned *cert;
	uint64_t bond;
	uint64_t valid_until;
	bool renewal; /* the merchant is registered: a new cert replaces a due one */
	uint64_t now; /* the broker's protocol time: renewal is decided and the cert issued at it */
};

static void merchant_reg_free(struct merchant_reg *reg)
{
	if (reg->rm)
		micropay__v1__register_merchant__free_unpacked(reg->rm, NULL);
	mp_stmt_free(reg->stmt);
	mp_stmt_free(reg->cert);
	free(reg);
}

static void reply_merchant(struct merchant_reg *reg, MpCode code, const char *detail,
			   const MpSigned *cert)
{
	Micropay__V1__RegisterMerchantResp resp = MICROPAY__V1__REGISTER_MERCHANT_RESP__INIT;
	MpStatus st;
	resp.status = broker_status(&st, code, detail);
	resp.merchant_cert = (MpSigned *)cert;
	resp.broker_time = mp_clock_now(&reg->call->b->clock);
	MpEnvelope env = MICROPAY__V1__ENVELOPE__INIT;
	env.body_case = MP_BODY(REGISTER_MERCHANT_RESP);
	env.register_merchant_resp = &resp;
	broker_call_reply(reg->call, &env);
	merchant_reg_free(reg);
}

/* DUPLICATE_OK or CONFLICT carrying the stored MerchantCert (protocol.md section 5). */
static void reply_stored_cert(struct merchant_reg *reg, MpCode code, const char *detail,
			      const PGresult *res)
{
	size_t len = 0;
	uint8_t *bytes = db_get_blob(res, 0, "cert", &len);
	MpSigned *stored = bytes ? mp_stmt_decode(bytes, len) : NULL;
	free(bytes);
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(reg->rm->merchant_id.data, MP_ID_LEN, hex);
	if (code == MP_ST(CONFLICT))
		log_warn("merchant %s: RegisterMerchant refused: %s", hex, detail);
	if (!stored) {
		log_err("merchant %s: the stored MerchantCert is missing or unreadable", hex);
		reply_merchant(reg, MP_ST(INTERNAL), "stored MerchantCert unreadable", NULL);
	} else {
		reply_merchant(reg, code, detail, stored);
	}
	mp_stmt_free(stored);
}

static void on_merchant_registered(const PGresult *res, const char *error, void *arg)
{
	struct merchant_reg *reg = arg;
	if (!res || PQntuples(res) != 1) {
		reply_merchant(reg, MP_ST(INTERNAL),
			       error ? error : "unexpected database result; retry", NULL);
		return;
	}
	MpCode code = (MpCode)db_get_i64(res, 0, "status");
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(reg->rm->merchant_id.data, MP_ID_LEN, hex);
	log_info("merchant %s: registration answered %s%s", hex, mp_code_name(code),
		 code == MP_ST(OK) && reg->renewal ? " (MerchantCert renewed)" : "");
	if (code == MP_ST(OK)) {
		if (reg->renewal)
			reg->call->b->stats.merchant_certs_renewed++;
		else
			reg->call->b->stats.merchants_registered++;
		reply_merchant(reg, code, NULL, reg->cert);
	} else if (code == MP_ST(DUPLICATE_OK)) {
		reply_stored_cert(reg, code, NULL, res);
	} else if (code == MP_ST(CONFLICT)) {
		reply_stored_cert(reg, code,
				  "merchant_id or merchant_pk is registered by another "
				  "RegisterMerchant: the stored MerchantCert is attached",
				  res);
	} else {
		reply_merchant(reg, code,
			       code == MP_ST(INTERNAL) ? "bond changed meanwhile; retry"
						       : "registration refused",
			       NULL);
	}
}

static void store_merchant_cert(struct merchant_reg *reg)
{
	struct broker *b = reg->call->b;
	size_t cert_len;
	uint8_t *cert = mp_stmt_encode(reg->cert, &cert_len);
	struct db_params p = {0};
	db_param_bytes(&p, reg->rm->merchant_id.data, MP_ID_LEN);
	db_param_bytes(&p, reg->rm->merchant_pk.data, MP_PK_LEN);
	db_param_text(&p, reg->rm->endpoint);
	db_param_bytes(&p, reg->reg_hash, MP_HASH_LEN);
	db_param_u64(&p, reg->bond);
	db_param_bytes(&p, cert, cert_len);
	db_param_u64(&p, reg->valid_until);
	db_param_u64(&p, reg->now);
	db_param_u64(&p, mp_cert_channel_need(b->cfg.t_grace));
	db_param_u64(&p, reg->now);
	const char *refused =
	    !cert ? "out of memory"
		  : db_call(b->db, "register_merchant", &p, on_merchant_registered, reg);
	if (refused)
		reply_merchant(reg, MP_ST(INTERNAL), refused, NULL);
	free(cert);
}

static void on_merchant_cert_signed(void *arg, MpSigned *cert)
{
	struct merchant_reg *reg = arg;
	if (!cert) {
		reply_merchant(reg, MP_ST(INTERNAL), "signing failed; retry", NULL);
		return;
	}
	reg->call->b->stats.signatures_worker++;
	reg->cert = cert;
	store_merchant_cert(reg);
}

/* The cert's body now; its signature on a worker. */
static void sign_merchant_cert(struct merchant_reg *reg)
{
	struct broker *b = reg->call->b;
	Micropay__V1__MerchantCert mc = MICROPAY__V1__MERCHANT_CERT__INIT;
	mc.broker_key_id = (ProtobufCBinaryData){MP_KEY_ID_LEN, b->key_id};
	mc.merchant_id = reg->rm->merchant_id;
	mc.merchant_pk = reg->rm->merchant_pk;
	mc.endpoint = reg->rm->endpoint;
	mc.bond = reg->bond;
	mc.valid_until = reg->valid_until;
	if (mp_sign_job_submit(b->workers, &b->key, MP_STMT_MERCHANT_CERT, &mc.base,
			       on_merchant_cert_signed, reg))
		return;
	char hex[MP_HEX_ID_LEN + 1];
	mp_hex_encode(reg->rm->merchant_id.data, MP_ID_LEN, hex);
	log_warn("merchant %s: RegisterMerchant refused: worker queue full", hex);
	b->stats.worker_queue_refusals++;
	reply_merchant(reg, MP_ST(LIMIT), "broker busy: signing queue full, retry later", NULL);
}

static void on_merchant_looked_up(const PGresult *res, const char *error, void *arg)
{
	struct merchant_reg *reg = arg;
	struct broker *b = reg->call->b;
	if (!res || PQntuples(res) != 1) {
		reply_merchant(reg, MP_ST(INTERNAL),
			       error ? error : "unexpected database result; retry", NULL);
		return;
	}
	if (!db_get_bool(res, 0, "found")) {
		reply_merchant(reg, MP_ST(UNKNOWN_ACCOUNT),
			       "no merchant account with this id: the operator creates it first",
			       NULL);
		return;
	}
	if (!db_is_null(res, 0, "register_hash")) {
		uint8_t stored_hash[MP_HASH_LEN];
		if (!db_get_bytes(res, 0, "register_hash", stored_hash, MP_HASH_LEN) ||
		    memcmp(stored_hash, reg->reg_hash, MP_HASH_LEN) != 0) {
			reply_stored_cert(reg, MP_ST(CONFLICT),
					  "merchant_id is registered with another key or endpoint: "
					  "the stored MerchantCert is attached",
					  res);
			return;
		}
		if (!db_get_bool(res, 0, "renewal_due")) {
			reply_stored_cert(reg, MP_ST(DUPLICATE_OK), NULL, res);
			return;
		}
		reg->renewal = true;
	}
	reg->bond = (uint64_t)db_get_i64(res, 0, "bond");
	/* The broker's protocol time, as the lookup decided renewal with it. */
	reg->valid_until = reg->now + broker_merchant_cert_lifetime(&b->cfg);
	sign_merchant_cert(reg);
}

/* The fields of a verified RegisterMerchant, and the peer certificate read on arrival. */
static MpCode check_register_merchant(const struct merchant_reg *reg, const char **detail)
{
	if (!mp_bytes_len_is(reg->rm->merchant_id, MP_ID_LEN) || !reg->rm->endpoint[0]) {
		*detail = "merchant_id must be 16 bytes and endpoint non-empty";
		return MP_ST(MALFORMED);
	}
	if (!reg->has_peer_mid || memcmp(reg->peer_mid, reg->rm->merchant_id.data, MP_ID_LEN)) {
		*detail = "the peer certificate does not name this merchant";
		return MP_ST(BAD_SIG);
	}
	return MP_ST(OK);
}

static void merchant_refused(struct merchant_reg *reg, MpCode code, const char *detail)
{
	reg->call->b->stats.requests_refused++;
	reply_merchant(reg, code, detail, NULL);
}

/* VERIFYING done, on the loop: the fields, then the lookup. */
static void on_merchant_opened(void *arg, MpCode code, ProtobufCMessage *body)
{
	struct merchant_reg *reg = arg;
	struct broker *b = reg->call->b;
	const char *detail = code == MP_ST(INTERNAL) ? "verification did not finish; retry"
						     : "RegisterMerchant refused";
	reg->rm = (Micropay__V1__RegisterMerchant *)body;
	if (code == MP_ST(OK))
		code = check_register_merchant(reg, &detail);
	if (code != MP_ST(OK)) {
		merchant_refused(reg, code, detail);
		return;
	}
	mp_stmt_hash(reg->stmt, reg->reg_hash);
	struct db_params p = {0};
	db_param_bytes(&p, reg->rm->merchant_id.data, MP_ID_LEN);
	db_param_u64(&p, mp_cert_channel_need(b->cfg.t_grace));
	reg->now = mp_clock_now(&b->clock);
	db_param_u64(&p, reg->now);
	const char *refused =
	    db_call(b->db, "merchant_lookup_renewal", &p, on_merchant_looked_up, reg);
	if (refused)
		reply_merchant(reg, MP_ST(INTERNAL), refused, NULL);
}

void handle_register_merchant(struct broker *b, struct mp_conn *c, const MpEnvelope *env)
{
	struct merchant_reg *reg = calloc(1, sizeof(*reg));
	if (!reg || !(reg->call = broker_call_new(b, c, env))) {
		free(reg);
		return;
	}
	const MpSigned *s = env->register_merchant_req->stmt;
	if (s && !(reg->stmt = mp_stmt_copy(s))) {
		reply_merchant(reg, MP_ST(INTERNAL), "out of memory", NULL);
		return;
	}
	reg->has_peer_mid = mp_tls_peer_merchant_id(mp_conn_ssl(c), reg->peer_mid);
	MpCode code = register_open_submit(
	    b, reg->stmt, MP_STMT_REGISTER_MERCHANT, &micropay__v1__register_merchant__descriptor,
	    offsetof(Micropay__V1__RegisterMerchant, merchant_pk), on_merchant_opened, reg);
	if (code != MP_ST(OK))
		merchant_refused(reg, code,
				 code == MP_ST(LIMIT) ? BROKER_BUSY_VERIFYING
						      : "RegisterMerchant refused");
}
