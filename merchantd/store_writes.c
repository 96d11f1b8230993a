/* Store-thread jobs for the redemption outbox and our MerchantCert (store_writes.h). */
#include "store_writes.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "merchant.h"
#include "store_thread.h"

#define META_CERT     "merchant_cert"
#define META_RECEIVED "merchant_cert_received"

enum write_kind { WRITE_OUTBOX_PUT, WRITE_OUTBOX_ANSWERED, WRITE_CERT };

struct write_job {
	struct st_job job;
	enum write_kind kind;
	uint8_t redeem_id[MP_ID_LEN];
	uint8_t *bytes; /* PUT: the Redeem; CERT: the cert */
	size_t len;
	struct redeemed_claim *claims; /* ANSWERED */
	size_t n;
	uint64_t received_at; /* CERT */
	bool ok;	      /* written by the store thread, read by the loop after it */
	store_write_done_fn done;
	void *arg;
};

/* The cert first: a crash before received_at is stored only makes us ask for renewal early. */
static bool write_cert(struct store *s, const struct write_job *w)
{
	uint8_t be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)(w->received_at >> (56 - 8 * i));
	return store_meta_put(s, META_CERT, w->bytes, w->len) &&
	       store_meta_put(s, META_RECEIVED, be, sizeof(be));
}

/* Store thread. */
static void run_write(struct store *s, struct st_job *job)
{
	struct write_job *w = job->arg;
	switch (w->kind) {
	case WRITE_OUTBOX_PUT:
		w->ok = store_outbox_put(s, w->redeem_id, w->bytes, w->len);
		return;
	case WRITE_OUTBOX_ANSWERED:
		w->ok = store_outbox_answered(s, w->redeem_id, w->claims, w->n);
		return;
	case WRITE_CERT:
		w->ok = write_cert(s, w);
		return;
	}
}

static const char *kind_name(enum write_kind k)
{
	switch (k) {
	case WRITE_OUTBOX_PUT:
		return "storing a Redeem in the outbox";
	case WRITE_OUTBOX_ANSWERED:
		return "recording a Redeem's answer in the outbox";
	case WRITE_CERT:
		return "storing our MerchantCert";
	}
	return "?";
}

/* Loop. */
static void write_done(struct st_job *job)
{
	struct write_job *w = job->arg;
	if (!w->ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(w->redeem_id, MP_ID_LEN, hex);
		log_err("store: %s failed (redeem %s); nothing of it is durable, retried later",
			kind_name(w->kind), w->kind == WRITE_CERT ? "-" : hex);
	}
	w->done(w->arg, w->ok);
	free(w->bytes);
	free(w->claims);
	free(w);
}

static struct write_job *job_new(enum write_kind kind, const uint8_t *bytes, size_t len,
				 store_write_done_fn done, void *arg)
{
	struct write_job *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	*w = (struct write_job){.kind = kind, .done = done, .arg = arg, .len = len};
	if (len) {
		w->bytes = malloc(len);
		if (!w->bytes) {
			free(w);
			return NULL;
		}
		memcpy(w->bytes, bytes, len);
	}
	w->job = (struct st_job){.run = run_write, .done = write_done, .arg = w};
	return w;
}

static bool submit(struct merchant *m, struct write_job *w, enum write_kind kind)
{
	if (!w) {
		log_err("store: out of memory %s", kind_name(kind));
		return false;
	}
	store_thread_submit(m->store_thread, &w->job);
	return true;
}

bool store_write_outbox_put(struct merchant *m, const struct outbox_item *item,
			    store_write_done_fn done, void *arg)
{
	struct write_job *w = job_new(WRITE_OUTBOX_PUT, item->bytes, item->len, done, arg);
	if (w)
		memcpy(w->redeem_id, item->redeem_id, MP_ID_LEN);
	return submit(m, w, WRITE_OUTBOX_PUT);
}

bool store_write_outbox_answered(struct merchant *m, const uint8_t redeem_id[MP_ID_LEN],
				 const struct redeemed_claim *claims, size_t n,
				 store_write_done_fn done, void *arg)
{
	struct write_job *w = job_new(WRITE_OUTBOX_ANSWERED, NULL, 0, done, arg);
	if (w && n) {
		w->claims = malloc(n * sizeof(*claims));
		if (w->claims) {
			memcpy(w->claims, claims, n * sizeof(*claims));
			w->n = n;
		} else {
			free(w);
			w = NULL;
		}
	}
	if (w)
		memcpy(w->redeem_id, redeem_id, MP_ID_LEN);
	return submit(m, w, WRITE_OUTBOX_ANSWERED);
}

bool store_write_cert(struct merchant *m, const uint8_t *cert, size_t len, uint64_t received_at,
		      store_write_done_fn done, void *arg)
{
	struct write_job *w = job_new(WRITE_CERT, cert, len, done, arg);
	if (w)
		w->received_at = received_at;
	return submit(m, w, WRITE_CERT);
}
