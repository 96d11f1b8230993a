/* The admin `metrics` method's answer, the same for every daemon: {"prometheus": text}, the
 * registry's exposition (metrics.h) as one string. */
#pragma once

struct mp_admin_req;
struct mp_metrics;

/* Answers req with the exposition of reg; UNAVAILABLE while reg is NULL (start-up). */
void mp_admin_metrics_reply(struct mp_admin_req *req, const struct mp_metrics *reg);
