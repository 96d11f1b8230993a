/* Our MerchantCert: accepting one from the broker, keeping it in the store, knowing when to
 * ask for a fresh one, and stopping on a registration CONFLICT.
 *
 * Life of the cert (docs/architecture.md, "MerchantCert renewal"):
 *   NONE --RegisterMerchant OK--> HELD (stored on the store thread, store_writes.h; adopted
 *          once durable; received_at = when we received it)
 *   HELD --start-up-------------> HELD, not confirmed: RegisterMerchant once to confirm it
 *   HELD --less than max(a third, min(the longest channel's need + a day, half)) of
 *          (valid_until - received_at) left (common/cert_renewal.h)--> DUE: RegisterMerchant
 *          (the same statement) every check interval until the broker answers a cert with a
 *          later valid_until --> HELD (the new cert for every Open after it)
 *   any  --CONFLICT (the broker holds another registration of our id, or our key under
 *          another id)--> STOPPED: logged with both sides, the daemon exits with status 1
 * The broker applies the same rule to its own clock and issue time, and received_at is never
 * before the broker's issue time, so by the time we ask the broker agrees that it is due. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert_renewal.h"
#include "log.h"
#include "merchant.h"
#include "stmt.h"
#include "store.h"

#define META_CERT     "merchant_cert"
#define META_RECEIVED "merchant_cert_received"
#define CHECK_MAX_S   3600u

/* Verify a MerchantCert under the broker key from our configuration; the parsed body or NULL. */
static Micropay__V1__MerchantCert *open_cert(const struct merchant *m, const MpSigned *cert)
{
	ProtobufCMessage *body;
	if (!cert || mp_stmt_open(cert, MP_STMT_MERCHANT_CERT, m->broker_pk,
				  &micropay__v1__merchant_cert__descriptor, &body) != MP_ST(OK))
		return NULL;
	return (Micropay__V1__MerchantCert *)body;
}

bool merchant_cert_check(const struct merchant *m, const MpSigned *cert, uint64_t *valid_until)
{
	Micropay__V1__MerchantCert *mc = open_cert(m, cert);
	if (!mc)
		return false;
	bool ok = mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
		  !memcmp(mc->merchant_id.data, m->mid, MP_ID_LEN) &&
		  mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN) &&
		  !memcmp(mc->merchant_pk.data, m->key.pk, MP_PK_LEN) && mc->valid_until > 0;
	if (ok)
		*valid_until = mc->valid_until;
	protobuf_c_message_free_unpacked(&mc->base, NULL);
	return ok;
}

void merchant_cert_adopt(struct merchant *m, uint64_t valid_until, uint64_t received_at)
{
	m->cert_valid_until = valid_until;
	m->cert_received_at = received_at;
}

bool merchant_cert_load(struct merchant *m)
{
	uint8_t *cert = NULL, *received = NULL;
	size_t len = 0, rlen = 0;
	if (!store_meta_get(m->store, META_CERT, &cert, &len))
		return true; /* never registered */
	MpSigned *s = mp_stmt_decode(cert, len);
	free(cert);
	uint64_t valid_until = 0;
	if (!s || !merchant_cert_check(m, s, &valid_until)) {
		log_warn(
		    "store: the stored MerchantCert does not verify or is not ours; registering "
		    "again");
		mp_stmt_free(s);
		return true;
	}
	mp_stmt_free(s);
	merchant_cert_adopt(m, valid_until, mp_clock_now(&m->clock));
	/* Without a stored receipt time (a store of an older merchantd) the life is counted from
	 * now: renewal then comes later than it could, never after expiry. */
	if (store_meta_get(m->store, META_RECEIVED, &received, &rlen) && rlen == 8) {
		uint64_t at = 0;
		for (size_t i = 0; i < 8; i++)
			at = at << 8 | received[i];
		if (at < m->cert_valid_until)
			m->cert_received_at = at;
	}
	free(received);
	log_info("MerchantCert valid until %llu (received %llu)",
		 (unsigned long long)m->cert_valid_until, (unsigned long long)m->cert_received_at);
	return true;
}

bool merchant_cert_renewal_due(const struct merchant *m, uint64_t now)
{
	return mp_cert_renewal_due(m->cert_received_at, m->cert_valid_until, now,
				   mp_cert_channel_need(MP_T_GRACE_S));
}

bool merchant_cert_wanted(const struct merchant *m, uint64_t now)
{
	return m->cert_valid_until == 0 || !m->cert_confirmed || merchant_cert_renewal_due(m, now);
}

unsigned merchant_cert_check_interval(const struct merchant *m)
{
	uint64_t life = m->cert_valid_until > m->cert_received_at
			    ? m->cert_valid_until - m->cert_received_at
			    : 0;
	uint64_t every = life / 100; /* the renewal window is at least a third of the life */
	return every < 1 ? 1 : every > CHECK_MAX_S ? CHECK_MAX_S : (unsigned)every;
}

void merchant_cert_conflict(struct merchant *m, const MpSigned *stored, const char *detail)
{
	char our_mid[MP_HEX_ID_LEN + 1], our_pk[2 * MP_PK_LEN + 1];
	mp_hex_encode(m->mid, MP_ID_LEN, our_mid);
	mp_hex_encode(m->key.pk, MP_PK_LEN, our_pk);
	Micropay__V1__MerchantCert *mc = open_cert(m, stored);
	if (mc && mp_bytes_len_is(mc->merchant_id, MP_ID_LEN) &&
	    mp_bytes_len_is(mc->merchant_pk, MP_PK_LEN)) {
		char mid[MP_HEX_ID_LEN + 1], pk[2 * MP_PK_LEN + 1];
		mp_hex_encode(mc->merchant_id.data, MP_ID_LEN, mid);
		mp_hex_encode(mc->merchant_pk.data, MP_PK_LEN, pk);
		log_err(
		    "registration CONFLICT (%s): the broker holds merchant %s with key %s and "
		    "endpoint %s (MerchantCert valid until %llu); this merchantd is merchant %s "
		    "with key %s (%s) and endpoint %s. A merchant id is registered once and a key "
		    "belongs to one merchant: restore the key file that registered this id, or "
		    "have the operator create a new merchant account. Stopping.",
		    detail, mid, pk, mc->endpoint, (unsigned long long)mc->valid_until, our_mid,
		    our_pk, m->cfg.key_file, m->cfg.endpoint);
	} else {
		log_err("registration CONFLICT (%s) without a MerchantCert we can verify; this "
			"merchantd is merchant %s with key %s and endpoint %s. Stopping.",
			detail, our_mid, our_pk, m->cfg.endpoint);
	}
	if (mc)
		protobuf_c_message_free_unpacked(&mc->base, NULL);
	m->failed = true;
	event_base_loopexit(m->base, NULL);
}

bool merchant_own_cert(struct merchant *m, uint8_t **bytes, size_t *len)
{
	return m->cert_valid_until != 0 && store_meta_get(m->store, META_CERT, bytes, len);
}
