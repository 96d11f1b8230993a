#include "fault.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static const struct {
	const char *name;
	enum mp_fault fault;
} faults[] = {
    {"handoff_after_commit", MP_FAULT_HANDOFF_AFTER_COMMIT},
    {"cap_after_commit", MP_FAULT_CAP_AFTER_COMMIT},
    {"close_after_commit", MP_FAULT_CLOSE_AFTER_COMMIT},
    {"offer_tamper_chunk", MP_FAULT_OFFER_TAMPER_CHUNK},
    {"key_withhold", MP_FAULT_KEY_WITHHOLD},
    {"offer_wrong_key", MP_FAULT_OFFER_WRONG_KEY},
};

bool mp_fault_from_env(enum mp_fault *out)
{
	const char *name = getenv("MP_FAULT");
	*out = MP_FAULT_NONE;
	if (!name || !*name)
		return true;
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		if (!strcmp(name, faults[i].name)) {
			*out = faults[i].fault;
			log_warn("MP_FAULT=%s: test-only fault injection is armed", name);
			return true;
		}
	log_err("MP_FAULT=%s: unknown fault point (known: handoff_after_commit, cap_after_commit, "
		"close_after_commit, offer_tamper_chunk, key_withhold, offer_wrong_key)",
		name);
	return false;
}
