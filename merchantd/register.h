/* Registration with the broker: RegisterMerchant -> MerchantCert (protocol.md section 6,
 * "Register and fund"), sent over the broker link, so with its deadlines and backoff. */
#pragma once
#include <stdbool.h>

struct merchant;
struct broker_link;

/* Sign our RegisterMerchant (id, key, endpoint: fixed for the run) once, at start-up before
 * anything is served, into m->registration: every (re)registration sends those bytes, so no
 * signature runs on the loop for it (docs/keys.md, "Threads and the token"). False (logged) if
 * it cannot be signed. */
bool merchant_register_sign(struct merchant *m);
/* ok: the broker answered a MerchantCert for our id and key (stored if new; m->cert_confirmed
 * set). A CONFLICT stops the daemon (merchant_cert_conflict). */
typedef void (*register_done_fn)(void *arg, bool ok);
/* Send RegisterMerchant on the link, which must be up; done is called once with the outcome
 * (false also when the connection is lost or the answer is late). False if it cannot be sent;
 * done is then never called. */
bool merchant_register(struct merchant *m, struct broker_link *l, register_done_fn done, void *arg);
