#include "admin_service.h"

#include <jansson.h>

#include "admin.h"
#include "drain.h"
#include "log.h"
#include "reload.h"

void mp_admin_answer_shutdown(struct mp_admin_req *req, struct mp_drain *drain)
{
	log_info("shutdown requested on the admin socket");
	mp_admin_reply(req, json_pack("{s:b}", "stopping", true));
	mp_drain_start(drain, "admin shutdown");
}

void mp_admin_answer_reload(struct mp_admin_req *req, struct mp_reload *reload)
{
	char err[512];
	if (!mp_reload_run(reload, "admin reload", err, sizeof(err))) {
		mp_admin_fail(req, MP_ADMIN_FAILED, "reload failed, previous settings kept: %s",
			      err);
		return;
	}
	mp_admin_reply(req, json_pack("{s:b,s:s}", "reloaded", true, "log_level",
				      mp_log_level_name(mp_log_level())));
}
