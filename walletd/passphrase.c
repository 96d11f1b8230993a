/* Admin passphrase.change (docs/wallet-store.md "Changing the passphrase"): the store's data key
 * wrapped again under the passphrase now in [wallet] passphrase_file. Only the vault record
 * changes; no secret is sealed again. scrypt takes a second or more: it runs on the worker pool,
 * never on the loop.
 *
 *   admin call -> file read (loop) -> QUEUED -> derive (worker) -> done (loop):
 *                                                                   record stored, answered
 *   cancelled (walletd stopping) or scrypt failed -> answered with the error, store unchanged */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "vault.h"
#include "wallet.h"
#include "workers.h"

struct rewrap_job {
	struct wallet *w;
	struct mp_admin_req *req;
	struct wvault_kdf kdf;
	char pass[WVAULT_PASSPHRASE_MAX + 1];
	size_t pass_len;
	uint8_t kek[WVAULT_KEY_LEN];
	bool derived;
	char err[200];
	uint64_t started_ms;
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void job_free(struct rewrap_job *j)
{
	j->w->rewrapping = false;
	OPENSSL_clear_free(j, sizeof(*j)); /* the passphrase and the derived key */
}

static void rewrap_work(void *arg, const atomic_bool *stop)
{
	struct rewrap_job *j = arg;
	if (!atomic_load(stop))
		j->derived =
		    wvault_derive(&j->kdf, j->pass, j->pass_len, j->kek, j->err, sizeof(j->err));
	OPENSSL_cleanse(j->pass, sizeof(j->pass));
}

static void rewrap_done(void *arg, enum mp_job_outcome outcome)
{
	struct rewrap_job *j = arg;
	if (outcome != MP_JOB_DONE) {
		mp_admin_fail(
		    j->req, MP_ADMIN_UNAVAILABLE,
		    "passphrase.change: walletd is stopping; the passphrase is unchanged");
	} else if (!j->derived) {
		log_err("passphrase.change: %s", j->err);
		mp_admin_fail(j->req, MP_ADMIN_FAILED, "passphrase.change: %s", j->err);
	} else if (!wstore_rewrap(j->w->store, &j->kdf, j->kek)) {
		mp_admin_fail(j->req, MP_ADMIN_INTERNAL,
			      "passphrase.change: cannot store the re-wrapped key (see the log); "
			      "the old passphrase still opens the store");
	} else {
		uint64_t ms = monotonic_ms() - j->started_ms;
		log_info("store %s: data key re-wrapped under [wallet] passphrase_file (%llu ms)",
			 j->w->cfg.store, (unsigned long long)ms);
		json_t *r =
		    json_pack("{s:b, s:i, s:i, s:i, s:I}", "rewrapped", 1, "log2_n", j->kdf.log2_n,
			      "r", (int)j->kdf.r, "p", (int)j->kdf.p, "derive_ms", (json_int_t)ms);
		mp_admin_reply(j->req, r);
	}
	job_free(j);
}

/* The job with the passphrase read from the file; NULL (answered) if refused. */
static struct rewrap_job *job_new(struct wallet *w, struct mp_admin_req *req)
{
	struct rewrap_job *j = OPENSSL_zalloc(sizeof(*j));
	if (!j) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "out of memory");
		return NULL;
	}
	j->w = w;
	j->req = req;
	w->rewrapping = true;
	ssize_t len = mp_read_secret_line(w->cfg.passphrase_file, j->pass, sizeof(j->pass), j->err,
					  sizeof(j->err));
	if (len == 0)
		snprintf(j->err, sizeof(j->err), "%s: the passphrase is empty",
			 w->cfg.passphrase_file);
	if (len > 0 && !wvault_kdf_new(&j->kdf, WVAULT_LOG2_N_DEFAULT)) {
		snprintf(j->err, sizeof(j->err), "the random generator failed");
		len = -1;
	}
	if (len <= 0) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "passphrase.change: %s", j->err);
		job_free(j);
		return NULL;
	}
	j->pass_len = (size_t)len;
	j->started_ms = monotonic_ms();
	return j;
}

void wallet_admin_passphrase_change(struct mp_admin_req *req, json_t *params, void *ctx)
{
	struct wallet *w = ctx;
	if (!w->cfg.passphrase_file || !wstore_is_sealed(w->store)) {
		mp_admin_fail(req, MP_ADMIN_FAILED,
			      "passphrase.change: the store is not encrypted (set [wallet] "
			      "passphrase_file and restart to encrypt it)");
		return;
	}
	if (w->rewrapping) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE,
			      "passphrase.change: a change is running already; retry");
		return;
	}
	struct rewrap_job *j = job_new(w, req);
	if (j && !mp_workers_submit(w->workers, rewrap_work, rewrap_done, j)) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE,
			      "passphrase.change: the worker queue is full; retry");
		job_free(j);
	}
}
