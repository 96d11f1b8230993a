/* mpctl's command line (tools/mpctl_args.h): the input cut at NUL bytes into arguments, parsed
 * as mpctl parses argv, then --params merged and help requests formed as mpctl does before it
 * calls a daemon. What parses has a method name that fits and parameters in an object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mpctl_args.h"

#define MAX_ARGS 32

static FILE *discard;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	discard = fopen("/dev/null", "w");
	return discard ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	char *argv[MAX_ARGS + 1] = {"mpctl"};
	int argc = 1;
	for (char *p = copy; argc < MAX_ARGS && p <= copy + size; p += strlen(p) + 1)
		argv[argc++] = p;
	struct mpctl_options o = {.params = json_object(), .timeout_ms = 30000, .errors = discard};
	if (o.params && mpctl_parse_args(argc, argv, &o)) {
		if (strlen(o.method) >= sizeof(o.method))
			abort();
		if (!o.raw_params || mpctl_merge_raw_params(&o)) {
			mpctl_as_help_request(&o);
			if (!json_is_object(o.params))
				abort();
		}
	}
	json_decref(o.params);
	free(copy);
	return 0;
}
