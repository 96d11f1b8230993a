#include "metrics_admin.h"

#include <stdlib.h>

#include "admin.h"
#include "metrics.h"

void mp_admin_metrics_reply(struct mp_admin_req *req, const struct mp_metrics *reg)
{
	if (!reg) {
		mp_admin_fail(req, MP_ADMIN_UNAVAILABLE, "metrics: the daemon is still starting");
		return;
	}
	char *text = mp_metrics_text(reg);
	if (!text) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "metrics: out of memory");
		return;
	}
	mp_admin_reply(req, json_pack("{s:s}", "prometheus", text));
	free(text);
}
