/* Shared by the libFuzzer targets of tests/fuzz (docs/fuzzing.md): quiet logs, and a reader
 * that cuts a fuzz input into length-prefixed records. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Logs at error level only (a target's refusals are its normal output, not findings); all
 * levels with MP_FUZZ_VERBOSE set. stderr stays open: libFuzzer and the sanitizers report
 * there. */
void fuzz_quiet(void);

/* An input read front to back. */
struct fuzz_reader {
	const uint8_t *p;
	size_t left;
};

/* One byte (0 once the input is used up). */
uint8_t fuzz_byte(struct fuzz_reader *r);
/* A record: be16 length, then that many bytes (fewer if the input ends first). False when the
 * input is used up. */
bool fuzz_record(struct fuzz_reader *r, const uint8_t **data, size_t *len);
