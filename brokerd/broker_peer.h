/* The broker's state of one client connection (mp_conn_data): made at open and freed at close
 * (unroutable.c), NULL if it could not be allocated. */
#ifndef MP_BROKER_PEER_H
#define MP_BROKER_PEER_H

#include <stdint.h>

struct broker_peer {
	uint64_t unroutable; /* requests of this connection not served by the broker */
	unsigned
	    dispute_verifying; /* disputes of this connection being verified (dispute_budget.c) */
	unsigned dispute_bad_chain; /* disputes of this connection answered BAD_CHAIN */
};

#endif
