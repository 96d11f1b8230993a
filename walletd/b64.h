/* Base64 (RFC 4648, standard alphabet, padded) of the blobs customers exchange: offers and
 * bundles (docs/transfer.md). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NUL-terminated text (malloc'd), or NULL when memory runs out. */
char *wallet_b64_encode(const uint8_t *data, size_t len);
/* Strict: only the alphabet, padding only at the end, length a multiple of 4, at most max
 * decoded bytes. NULL on any other input; *len receives the size. */
uint8_t *wallet_b64_decode(const char *text, size_t max, size_t *len);
