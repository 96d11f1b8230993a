#include "channel_cert.h"

#include <stdlib.h>
#include <string.h>

#include "segments.h"
#include "stmt.h"

static Micropay__V1__ChannelCert *parse_cert(const uint8_t *bytes, size_t len)
{
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (!s)
		return NULL;
	Micropay__V1__ChannelCert *cc = (Micropay__V1__ChannelCert *)mp_strict_unpack(
	    &micropay__v1__channel_cert__descriptor, s->body.data, s->body.len);
	mp_stmt_free(s);
	return cc;
}

static bool cert_hash(const uint8_t *bytes, size_t len, uint8_t out[MP_HASH_LEN])
{
	MpSigned *s = mp_stmt_decode(bytes, len);
	if (s)
		mp_stmt_hash(s, out);
	mp_stmt_free(s);
	return s != NULL;
}

/* From our own stored (already verified) cert bytes. */
bool channel_from_cert(struct channel *ch, const uint8_t *cert, size_t len)
{
	Micropay__V1__ChannelCert *cc = parse_cert(cert, len);
	if (!cc || !mp_bytes_len_is(cc->chain_nonce, MP_NONCE_LEN) ||
	    !mp_bytes_len_is(cc->root, MP_HASH_LEN) || !mp_bytes_len_is(cc->owner_pk, MP_PK_LEN) ||
	    (cc->holder0.len != 0 && !mp_bytes_len_is(cc->holder0, MP_ID_LEN))) {
		if (cc)
			micropay__v1__channel_cert__free_unpacked(cc, NULL);
		return false;
	}
	memcpy(ch->nonce0, cc->chain_nonce.data, MP_NONCE_LEN);
	memcpy(ch->root0, cc->root.data, MP_HASH_LEN);
	memcpy(ch->owner0_pk, cc->owner_pk.data, MP_PK_LEN);
	ch->unbound = cc->holder0.len == 0; /* holder0 comes from the Bind (bind.c) */
	if (!ch->unbound)
		memcpy(ch->holder0, cc->holder0.data, MP_ID_LEN);
	ch->n = cc->n;
	ch->unit_value = cc->unit_value;
	ch->pay_until = cc->pay_until;
	ch->redeem_until = cc->redeem_until;
	micropay__v1__channel_cert__free_unpacked(cc, NULL);
	if (!cert_hash(cert, len, ch->cert_hash))
		return false;
	channel_segment0(ch); /* the caller pushes the stored pairs, if any */
	ch->cert = malloc(len);
	if (!ch->cert)
		return false;
	memcpy(ch->cert, cert, len);
	ch->cert_len = len;
	return true;
}
