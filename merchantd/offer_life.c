/* An offer's life outside its making (offer.h): copies, the channel's current offer, whether a
 * Pay pays it, and its key for the dispute side. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "log.h"
#include "merchant.h"
#include "offer.h"
#include "offer_store.h"
#include "purchase.h"

struct offer *offer_copy(const struct offer *o)
{
	struct offer *c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	*c = *o;
	c->item.path = strdup(o->item.path);
	c->signed_offer = o->signed_len ? malloc(o->signed_len) : NULL;
	c->cancel = o->cancel_len ? malloc(o->cancel_len) : NULL;
	if (!c->item.path || (o->signed_len && !c->signed_offer) || (o->cancel_len && !c->cancel)) {
		free(c->item.path);
		free(c->signed_offer);
		free(c->cancel);
		free(c);
		return NULL;
	}
	if (o->signed_len)
		memcpy(c->signed_offer, o->signed_offer, o->signed_len);
	if (o->cancel_len)
		memcpy(c->cancel, o->cancel, o->cancel_len);
	return c;
}

void offer_free(struct offer *o)
{
	if (!o)
		return;
	OPENSSL_cleanse(o->key, sizeof(o->key));
	free(o->item.path);
	free(o->signed_offer);
	free(o->cancel);
	free(o);
}

struct offer *channel_offer(const struct channel *ch)
{
	return ch && ch->offer && ch->offer->seg_seq == ch->seg_seq ? ch->offer : NULL;
}

bool offer_is_ref(const struct offer *o, const uint8_t *ref, size_t len)
{
	return o && o->recorded && len == OFFER_REF_LEN && memcmp(o->order_ref, ref, len) == 0;
}

static MpCode current_offer_check(const struct merchant *m, const struct channel *ch,
				  const struct offer *o, uint32_t j, char *buf, size_t len)
{
	if (o->paid) {
		snprintf(buf, len, "offer already paid at index %u", o->pay_index);
		return MP_ST(CONFLICT);
	}
	if (o->cancel) {
		snprintf(buf, len,
			 "the buyer cancelled this offer (OfferCancel): ask for a new one");
		return MP_ST(CONFLICT);
	}
	if (ch->last != o->after_index || j != o->pay_index) {
		snprintf(buf, len,
			 "the offer is paid only by the Pay at pay_index %u right after "
			 "after_index %u (the channel's last is %u, this Pay's index %u)",
			 o->pay_index, o->after_index, ch->last, j);
		return MP_ST(CONFLICT);
	}
	if (merchant_now(m) >= o->deadline) {
		snprintf(buf, len, "the offer's deadline %llu has passed: ask for a new offer",
			 (unsigned long long)o->deadline);
		return MP_ST(EXPIRED);
	}
	return MP_ST(OK);
}

/* ref names an older offer of ch in the store: CONFLICT; none: OK. */
static MpCode older_offer_check(struct merchant *m, const struct channel *ch, const uint8_t *ref,
				char *buf, size_t len)
{
	struct offer *old = NULL;
	int found = offer_store_find(m->store, ch->id, ref, &old);
	if (found < 0) {
		snprintf(buf, len, "cannot read the store; retry");
		return MP_ST(INTERNAL);
	}
	if (found == 1)
		snprintf(buf, len,
			 "the offer (after_index %u, pay_index %u) is no longer the channel's "
			 "offer (a newer one replaced it): ask for a new offer",
			 old->after_index, old->pay_index);
	offer_free(old);
	return found ? MP_ST(CONFLICT) : MP_ST(OK);
}

const struct offer *offer_holding(const struct channel *ch)
{
	const struct offer *o = channel_offer(ch);
	return o && !o->paid && !o->cancel && !o->lapsed && ch->last == o->after_index ? o : NULL;
}

bool offer_blocks(const struct channel *ch, const char *what, char *buf, size_t len)
{
	const struct offer *held = offer_holding(ch);
	if (held)
		snprintf(buf, len,
			 "an unpaid offer of '%s' (pay_index %u) holds this channel at index %u: "
			 "no %s until the offer is paid or the buyer cancels it (OfferCancelReq at "
			 "this merchant; the OpenAck names the offer)",
			 held->item.id, held->pay_index, held->after_index, what);
	return held != NULL;
}

bool offer_open(const struct merchant *m, const struct channel *ch, const struct offer *o)
{
	return o && o == offer_holding(ch) && o->recorded && !o->stale &&
	       merchant_now(m) < o->deadline;
}

MpCode offer_pay_check(struct merchant *m, const struct channel *ch, const uint8_t *ref,
		       size_t ref_len, uint32_t j, char *buf, size_t len)
{
	const struct offer *o = channel_offer(ch), *held = offer_holding(ch);
	if (offer_is_ref(o, ref, ref_len))
		return current_offer_check(m, ch, o, j, buf, len);
	MpCode code = MP_ST(OK);
	if (ch->offer && ref_len == OFFER_REF_LEN && !order_find(&m->orders, ref, ref_len) &&
	    !purchase_is_ref(channel_purchase(ch), ref, ref_len))
		code = older_offer_check(m, ch, ref, buf, len);
	if (code == MP_ST(OK) && held && j > held->after_index) {
		snprintf(
		    buf, len,
		    "an offer of '%s' (pay_index %u, deadline %llu) holds this channel: it pays "
		    "nothing else past index %u until the offer is paid or the buyer cancels it "
		    "(OfferCancelReq; the OpenAck names it)",
		    held->item.id, held->pay_index, (unsigned long long)held->deadline,
		    held->after_index);
		code = MP_ST(CONFLICT);
	}
	return code;
}

bool offer_settle(struct offer *o, struct batch_entry *e, uint64_t *credit)
{
	if (!offer_is_ref(o, e->order_ref, e->order_ref_len) || o->paid || *credit < o->price)
		return false;
	*credit -= o->price;
	o->paid = true;
	e->pays_offer = true;
	memcpy(e->offer_ref, o->order_ref, OFFER_REF_LEN);
	e->price = o->price;
	e->code = MP_ST(OK);
	return true;
}

int offer_lookup(struct merchant *m, const uint8_t channel_id[MP_ID_LEN],
		 const uint8_t order_ref[MP_ID_LEN], struct offer **out)
{
	const struct channel *ch = channel_find(&m->channels, channel_id);
	const struct offer *o = ch ? ch->offer : NULL;
	*out = NULL;
	if (offer_is_ref(o, order_ref, OFFER_REF_LEN)) {
		if (!(*out = offer_copy(o)))
			log_err("offer lookup: out of memory");
		return *out ? 1 : -1;
	}
	return offer_store_find(m->store, channel_id, order_ref, out);
}
