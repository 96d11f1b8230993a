#include "ids.h"

#include <openssl/sha.h>
#include <string.h>

void mp_channel_id(const uint8_t account_id[MP_ID_LEN], const uint8_t issue_req_id[MP_ID_LEN],
		   uint8_t out[MP_ID_LEN])
{
	static const char prefix[] = "MPAY1-CID";
	uint8_t buf[sizeof(prefix) - 1 + 2 * MP_ID_LEN], digest[SHA256_DIGEST_LENGTH];
	memcpy(buf, prefix, sizeof(prefix) - 1);
	memcpy(buf + sizeof(prefix) - 1, account_id, MP_ID_LEN);
	memcpy(buf + sizeof(prefix) - 1 + MP_ID_LEN, issue_req_id, MP_ID_LEN);
	SHA256(buf, sizeof(buf), digest);
	memcpy(out, digest, MP_ID_LEN);
}
