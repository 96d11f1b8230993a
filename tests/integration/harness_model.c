#include "harness_model.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "harness_settle.h"

uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(r) % (hi - lo + 1);
}

static unsigned weight_at(const void *items, size_t i, size_t size, size_t weight_offset)
{
	unsigned w;
	memcpy(&w, (const char *)items + i * size + weight_offset, sizeof(w));
	return w;
}

size_t rng_weighted(struct rng *r, const void *items, size_t n, size_t size, size_t weight_offset)
{
	unsigned total = 0;
	for (size_t i = 0; i < n; i++)
		total += weight_at(items, i, size, weight_offset);
	unsigned x = (unsigned)rng_range(r, 0, total - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned w = weight_at(items, i, size, weight_offset);
		if (x < w)
			return i;
		x -= w;
	}
	return 0;
}

struct mexpect model_expect(const struct mchannel *c)
{
	struct mexpect e = {0};
	for (int i = 0; i < c->n_epochs; i++) {
		const struct mepoch *ep = &c->epochs[i];
		if (ep->redeemed > e.spent)
			e.spent = ep->redeemed;
		e.credited += (uint64_t)(ep->redeemed - ep->start) * c->unit;
	}
	if (c->state == CH_CLOSED && c->close_index > e.spent)
		e.spent = c->close_index;
	e.refund = (uint64_t)(c->n - e.spent) * c->unit - c->early_refund;
	e.unclaimed = (uint64_t)e.spent * c->unit - e.credited;
	return e;
}

uint64_t model_credit(const struct model *md, int m)
{
	uint64_t sum = 0;
	for (int i = 0; i < md->n_chans; i++) {
		const struct mchannel *c = &md->chans[i];
		for (int k = 0; k < c->n_epochs; k++)
			if (c->epochs[k].merchant == m)
				sum += (uint64_t)(c->epochs[k].redeemed - c->epochs[k].start) *
				       c->unit;
	}
	return sum;
}

uint64_t model_acknowledged(const struct model *md, int m)
{
	uint64_t sum = 0;
	for (int i = 0; i < md->n_chans; i++) {
		const struct mchannel *c = &md->chans[i];
		for (int k = 0; k < c->n_epochs; k++)
			if (c->epochs[k].merchant == m)
				sum += (uint64_t)(c->epochs[k].end - c->epochs[k].start) * c->unit;
	}
	return sum;
}

struct mepoch *model_epoch(struct mchannel *c)
{
	return c->n_epochs ? &c->epochs[c->n_epochs - 1] : NULL;
}

void model_new_epoch(struct mchannel *c, int m)
{
	ck_assert_int_lt(c->n_epochs, MODEL_MAX_EPOCHS);
	c->epochs[c->n_epochs++] = (struct mepoch){m, c->last, c->last, c->last};
	c->holder = m;
}

void model_redeemed(struct model *md, int m)
{
	for (int i = 0; i < md->n_chans; i++) {
		struct mchannel *c = &md->chans[i];
		for (int k = 0; k < c->n_epochs && !c->finalized; k++)
			if (c->epochs[k].merchant == m)
				c->epochs[k].redeemed = c->epochs[k].end;
	}
}

void model_check_finalized(const struct net *n, struct mchannel *c, const char *owner_account)
{
	struct mexpect e = model_expect(c);
	json_t *s = settle_channel(n, c->id);
	ck_assert_str_eq(json_str(s, "state"), "FINALIZED");
	json_t *f = json_object_get(s, "finalization");
	ck_assert_msg(json_int(f, "spent") == e.spent, "%s: spent %lld, model %u", c->id,
		      (long long)json_int(f, "spent"), e.spent);
	ck_assert_msg(json_int(f, "credited") == (int64_t)e.credited,
		      "%s: credited %lld, model %llu", c->id, (long long)json_int(f, "credited"),
		      (unsigned long long)e.credited);
	ck_assert_msg(json_int(f, "refund") == (int64_t)e.refund, "%s: refund %lld, model %llu",
		      c->id, (long long)json_int(f, "refund"), (unsigned long long)e.refund);
	ck_assert_msg(json_int(f, "unclaimed") == (int64_t)e.unclaimed,
		      "%s: unclaimed %lld, model %llu", c->id, (long long)json_int(f, "unclaimed"),
		      (unsigned long long)e.unclaimed);
	ck_assert_int_eq(json_int(s, "early_refund"), (int64_t)c->early_refund);
	ck_assert_int_eq(e.credited + c->early_refund + e.refund + e.unclaimed,
			 (uint64_t)c->n * c->unit);
	if (e.refund > 0) { /* nothing to pay, no ledger transfer */
		ck_assert_msg(json_is_true(json_object_get(f, "refund_paid")),
			      "%s: refund not paid", c->id);
		ck_assert_str_eq(json_str(f, "refund_account"), owner_account);
	}
	json_decref(s);
	c->finalized = true;
	fprintf(stderr, "  finalised %s: spent %u refund %" PRIu64 " unclaimed %" PRIu64 "\n",
		c->id, e.spent, e.refund, e.unclaimed);
}
