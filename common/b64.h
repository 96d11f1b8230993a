/* Base64 (RFC 4648, standard alphabet, padded), strict on input: the blobs customers exchange
 * (offers and bundles, docs/transfer.md) and the HTTP gateway's header values
 * (gateway_header.h). Encoding is OpenSSL's EVP_EncodeBlock; decoding checks the alphabet and
 * padding first, since EVP_DecodeBlock skips whitespace and counts padding as data. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NUL-terminated text (malloc'd), or NULL when memory runs out. */
char *mp_b64_encode(const uint8_t *data, size_t len);
/* Strict: only the alphabet, padding only at the end, length a multiple of 4, at most max
 * decoded bytes. NULL on any other input; *len receives the size. */
uint8_t *mp_b64_decode(const char *text, size_t max, size_t *len);
