/* The [limits] section every daemon with a TLS listener accepts: what one peer may make it hold
 * (see net.h). Declared once here, stored in each daemon's config struct, range-checked at
 * load, turned into the listener's mp_net_opts. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "frame.h"
#include "net.h"

#define MP_NET_READ_BUDGET_MIN (1u << 20)
#define MP_NET_READ_BUDGET_MAX (1u << 31)

struct mp_net_limits {
	uint32_t max_connections;
	uint32_t max_in_flight;
	uint32_t output_high_water;
	uint32_t output_low_water;
	uint32_t handshake_timeout;
	uint32_t frame_timeout; /* seconds from a frame's first byte to its last */
	uint32_t max_frame;	/* frames from peers without a merchant certificate (wallets) */
	uint32_t read_budget;	/* bytes in partial frames, all connections together */
};

/* The [limits] keys, for a daemon's key table: type is its config struct, member the
 * struct mp_net_limits in it, max_frame at least frame_min (frame_help says why). */
#define MP_NET_LIMIT_KEY(type, member, name, min, max, help)                                       \
	{                                                                                          \
		"limits", #name, MP_CFG_U32, offsetof(type, member.name), false, help, min, max    \
	}
#define MP_NET_LIMIT_KEYS(type, member, frame_min, frame_help)                                     \
	MP_NET_LIMIT_KEY(type, member, max_connections, 1, 1000000, "per listener"),               \
	    MP_NET_LIMIT_KEY(type, member, max_in_flight, 1, 65536, "requests per connection"),    \
	    MP_NET_LIMIT_KEY(type, member, output_high_water, 4096, 1u << 30, "bytes"),            \
	    MP_NET_LIMIT_KEY(type, member, output_low_water, 0, 1u << 30,                          \
			     "bytes, below output_high_water"),                                    \
	    MP_NET_LIMIT_KEY(type, member, handshake_timeout, 1, 3600, "seconds"),                 \
	    MP_NET_LIMIT_KEY(type, member, frame_timeout, 1, 3600,                                 \
			     "seconds from a frame's first byte to its last"),                     \
	    MP_NET_LIMIT_KEY(type, member, max_frame, frame_min, MP_FRAME_MAX_MERCHANT,            \
			     frame_help),                                                          \
	    MP_NET_LIMIT_KEY(type, member, read_budget, MP_NET_READ_BUDGET_MIN,                    \
			     MP_NET_READ_BUDGET_MAX,                                               \
			     "bytes held in partly read frames, all connections together; "        \
			     "default 64 MiB")

void mp_net_limits_default(struct mp_net_limits *l);
/* Every value in its range; false with "path: [limits] key ..." in err otherwise. */
bool mp_net_limits_check(const struct mp_net_limits *l, const char *path, char *err, size_t errlen);
/* The idle timeout every listening daemon has: 1..86400 seconds. */
bool mp_net_idle_timeout_check(uint32_t idle_timeout, const char *path, const char *section,
			       char *err, size_t errlen);
/* A listener's options from the limits (name: for logs and metrics). */
struct mp_net_opts mp_net_limits_opts(const struct mp_net_limits *l, uint32_t idle_timeout,
				      const char *name);
