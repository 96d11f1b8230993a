/* A held channel's fields that come from its ChannelCert. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merchant.h"

/* From our own stored (already verified) cert bytes: nonce, n, unit value, deadlines, and a
 * copy of the bytes. False if they do not decode. */
bool channel_from_cert(struct channel *ch, const uint8_t *cert, size_t len);
