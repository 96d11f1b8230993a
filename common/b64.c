#include "b64.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *mp_b64_encode(const uint8_t *data, size_t len)
{
	if (len > (size_t)INT32_MAX / 2)
		return NULL;
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

uint8_t *mp_b64_decode(const char *text, size_t max, size_t *len)
{
	size_t n = strlen(text);
	if (n == 0 || n % 4 != 0 || n / 4 * 3 > max + 2)
		return NULL;
	size_t pad = text[n - 1] == '=' ? (text[n - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < n - pad; i++)
		if (!b64_char(text[i]))
			return NULL;
	uint8_t *out = malloc(n / 4 * 3);
	if (!out)
		return NULL;
	/* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
	int got = EVP_DecodeBlock(out, (const unsigned char *)text, (int)n);
	if (got < 0 || (size_t)got != n / 4 * 3 || (size_t)got - pad > max) {
		free(out);
		return NULL;
	}
	*len = (size_t)got - pad;
	return out;
}
