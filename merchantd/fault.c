#include "fault.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

bool mp_fault_from_env(enum mp_fault *out)
{
	const char *name = getenv("MP_FAULT");
	*out = MP_FAULT_NONE;
	if (!name || !*name)
		return true;
	if (!strcmp(name, "handoff_after_commit")) {
		*out = MP_FAULT_HANDOFF_AFTER_COMMIT;
		log_warn("MP_FAULT=%s: test-only fault injection is armed", name);
		return true;
	}
	if (!strcmp(name, "cap_after_commit")) {
		*out = MP_FAULT_CAP_AFTER_COMMIT;
		log_warn("MP_FAULT=%s: test-only fault injection is armed", name);
		return true;
	}
	if (!strcmp(name, "close_after_commit")) {
		*out = MP_FAULT_CLOSE_AFTER_COMMIT;
		log_warn("MP_FAULT=%s: test-only fault injection is armed", name);
		return true;
	}
	log_err("MP_FAULT=%s: unknown fault point (known: handoff_after_commit, cap_after_commit, "
		"close_after_commit)",
		name);
	return false;
}
