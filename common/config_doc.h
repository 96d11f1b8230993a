/* Every configuration key of a daemon, described from the same table mp_config_load parses:
 * the `--help` text, the example configuration (`--print-config`, deploy/config/) and the
 * reference in docs/config.md are all written by this one function, so none can drift from
 * what the daemon accepts (the suite config_doc compares the committed files with it). */
#pragma once
#include <stdio.h>

#include "config.h"

enum mp_cfg_doc_format {
	MP_CFG_DOC_TEXT,     /* plain text, for --help */
	MP_CFG_DOC_INI,	     /* an example configuration: required keys set, the others commented */
	MP_CFG_DOC_MARKDOWN, /* a table per section, for docs/config.md */
};

/* The value an example configuration gives a required key (which has no default). */
struct mp_cfg_example {
	const char *section;
	const char *name;
	const char *value;
};

/* Describe `keys` of daemon `name`. `defaults` is the daemon's configuration struct with its
 * defaults applied (read through each key's offset); `examples` ends with a NULL name and must
 * give a value for every required key. False (with the missing key on stderr) when one lacks
 * its example: a bug in the build, caught by the suite config_doc. */
bool mp_config_doc(FILE *out, enum mp_cfg_doc_format format, const char *name,
		   const struct mp_cfg_key *keys, const void *defaults,
		   const struct mp_cfg_example *examples);
