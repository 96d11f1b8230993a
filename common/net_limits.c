#include "net_limits.h"

#include <stdio.h>

#include "frame.h"

void mp_net_limits_default(struct mp_net_limits *l)
{
	*l = (struct mp_net_limits){
	    .max_connections = 512,
	    .max_in_flight = 64,
	    .output_high_water = 1u << 20,
	    .output_low_water = 256u << 10,
	    .handshake_timeout = 10,
	    .frame_timeout = 60,
	    .max_frame = MP_FRAME_MAX_WALLET,
	    .read_budget = 64u << 20,
	};
}

static bool in_range(uint32_t v, uint32_t lo, uint32_t hi, const char *path, const char *key,
		     char *err, size_t errlen)
{
	if (v >= lo && v <= hi)
		return true;
	snprintf(err, errlen, "%s: [limits] %s must be %u..%u, not %u", path, key, lo, hi, v);
	return false;
}

bool mp_net_limits_check(const struct mp_net_limits *l, const char *path, char *err, size_t errlen)
{
	if (!in_range(l->max_connections, 1, 1000000, path, "max_connections", err, errlen) ||
	    !in_range(l->max_in_flight, 1, 65536, path, "max_in_flight", err, errlen) ||
	    !in_range(l->output_high_water, 4096, 1u << 30, path, "output_high_water", err,
		      errlen) ||
	    !in_range(l->handshake_timeout, 1, 3600, path, "handshake_timeout", err, errlen) ||
	    !in_range(l->frame_timeout, 1, 3600, path, "frame_timeout", err, errlen) ||
	    !in_range(l->max_frame, 4096, MP_FRAME_MAX_MERCHANT, path, "max_frame", err, errlen) ||
	    !in_range(l->read_budget, MP_NET_READ_BUDGET_MIN, MP_NET_READ_BUDGET_MAX, path,
		      "read_budget", err, errlen))
		return false;
	if (l->output_low_water >= l->output_high_water) {
		snprintf(err, errlen,
			 "%s: [limits] output_low_water (%u) must be below output_high_water (%u)",
			 path, l->output_low_water, l->output_high_water);
		return false;
	}
	return true;
}

bool mp_net_idle_timeout_check(uint32_t idle_timeout, const char *path, const char *section,
			       char *err, size_t errlen)
{
	if (idle_timeout >= 1 && idle_timeout <= 86400)
		return true;
	snprintf(err, errlen, "%s: [%s] idle_timeout must be 1..86400 seconds, not %u", path,
		 section, idle_timeout);
	return false;
}

struct mp_net_opts mp_net_limits_opts(const struct mp_net_limits *l, uint32_t idle_timeout,
				      const char *name)
{
	return (struct mp_net_opts){
	    .max_frame = l->max_frame,
	    .idle_timeout_s = idle_timeout,
	    .name = name,
	    .handshake_timeout_s = l->handshake_timeout,
	    .frame_timeout_s = l->frame_timeout,
	    .max_conns = l->max_connections,
	    .max_in_flight = l->max_in_flight,
	    .out_high_water = l->output_high_water,
	    .out_low_water = l->output_low_water,
	    .read_budget = l->read_budget,
	};
}
