/* mpctl --human: an answer as text for people. Objects print as aligned "key: value" lines,
 * arrays of objects as tables with a column per key (nested values as compact JSON), a
 * multi-line string (Prometheus text) verbatim. */
#pragma once
#include <jansson.h>
#include <stdio.h>

void mpctl_print_human(FILE *out, const json_t *value);

/* The answer of `help` as text: each method, its description and its parameters. */
void mpctl_print_help(FILE *out, const json_t *help);
