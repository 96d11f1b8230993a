/* The wallet's early closes (docs/close.md): table closes holds, per channel, the exact signed
 * CloseRequest (stored before it is sent; every retry resends those bytes) and, once the holder
 * answered with a Close that checked out, that answer (the packed CloseResp: the Close and its
 * custody chain, for the refund). A channel with a row is CLOSING while the answer is missing
 * and CLOSED once it is there; the row decides the state (the channels row keeps the state the
 * channel had when the close began). Every write is durable when the call returns. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "util.h"

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_close_migrate(struct wstore *s);
/* CLOSING: the signed CloseRequest. */
bool wstore_close_begin(struct wstore *s, const uint8_t id[MP_ID_LEN], const MpSigned *request);
/* CLOSED: the holder's answer as received (packed CloseResp). */
bool wstore_close_done(struct wstore *s, const uint8_t id[MP_ID_LEN], const uint8_t *resp,
		       size_t resp_len);
/* The holder refused and signed nothing: forget the request (the channel is ACTIVE again). */
bool wstore_close_abandon(struct wstore *s, const uint8_t id[MP_ID_LEN]);

struct wstore_close {
	MpSigned *request;
	uint8_t *resp; /* NULL while CLOSING */
	size_t resp_len;
};
/* 1 found (c filled; free with wstore_close_clear), 0 absent, -1 error. */
int wstore_close_get(struct wstore *s, const uint8_t id[MP_ID_LEN], struct wstore_close *c);
void wstore_close_clear(struct wstore_close *c);
