/* Deferred evhttp requests (http_deferred.h). */
#include "http_deferred.h"

#include <event2/bufferevent.h>
#include <event2/event.h>

static struct bufferevent *client_bev(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	return conn ? evhttp_connection_get_bufferevent(conn) : NULL;
}

void mp_http_defer(struct evhttp_request *req)
{
	struct bufferevent *bev = client_bev(req);
	if (bev)
		bufferevent_disable(bev, EV_READ);
}

void mp_http_reply(struct evhttp_request *req, int status, const char *reason,
		   struct evbuffer *body)
{
	struct bufferevent *bev = client_bev(req); /* before: the reply may end the request */
	evhttp_send_reply(req, status, reason, body);
	if (bev) /* evhttp writes now, with no read callback set: nothing is read meanwhile */
		bufferevent_enable(bev, EV_READ | EV_WRITE);
}
