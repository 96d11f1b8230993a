/* Methods every admin socket answers besides its daemon's own (the daemon's table is searched
 * first): `help` and `log.level`. Their ctx is the struct mp_admin itself. */
#pragma once
#include "admin.h"

extern const struct mp_admin_method mp_admin_builtins[];

/* The daemon's own method table (admin.c). */
const struct mp_admin_method *mp_admin_daemon_methods(const struct mp_admin *a);
