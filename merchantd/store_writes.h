/* The durable writes of redemption and registration (the redemption outbox, our MerchantCert),
 * as jobs of the store thread (store_thread.h): queued in order with the group commits, run on
 * the thread's own connection, so their fsyncs and lock waits never run on the event loop. The
 * caller waits for done before it acts on the write (protocol.md section 5: durable before
 * sent), and must not free what arg points to until then.
 *
 *   caller --store_write_*--> QUEUED (copies of the data) --store thread--> written or not
 *          <--done(arg, ok) on the loop-------------------------------------+
 *
 * A write that fails (a lock held past the busy timeout, a full disk) is logged and reported
 * with ok false; nothing of it is durable, and the caller retries later. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "store_redeem.h"

struct merchant;

typedef void (*store_write_done_fn)(void *arg, bool ok);

/* A signed Redeem into the outbox. False (logged) if it cannot be queued; done is then never
 * called. */
bool store_write_outbox_put(struct merchant *m, const struct outbox_item *item,
			    store_write_done_fn done, void *arg);
/* The broker's answer: each claim's credited_end and the entry answered (claims may be NULL
 * with n 0: abandoned, never sent again). */
bool store_write_outbox_answered(struct merchant *m, const uint8_t redeem_id[MP_ID_LEN],
				 const struct redeemed_claim *claims, size_t n,
				 store_write_done_fn done, void *arg);
/* Our MerchantCert (encoded statement) and when we received it. */
bool store_write_cert(struct merchant *m, const uint8_t *cert, size_t len, uint64_t received_at,
		      store_write_done_fn done, void *arg);
