/* An evhttp server request answered later (merchantd's gateway waiting for its upstream and
 * commit, walletd's forward proxy waiting for a payment): its client is not read meanwhile.
 * libevent 2.1 keeps reading a connection whose request is out, and on a byte received then
 * ends it ("illegal connection state"); reading is paused when the request is deferred and
 * resumed once the answer is written (as Bitcoin Core does). Loop thread only. */
#pragma once
#include <event2/buffer.h>
#include <event2/http.h>

/* req will be answered later: its client is not read until then. */
void mp_http_defer(struct evhttp_request *req);
/* evhttp_send_reply for a request that may have been deferred: reading resumes after it. */
void mp_http_reply(struct evhttp_request *req, int status, const char *reason,
		   struct evbuffer *body);
