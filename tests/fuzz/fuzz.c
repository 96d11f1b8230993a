#include "fuzz.h"

#include <stdlib.h>

#include "log.h"

void fuzz_quiet(void)
{
	mp_log_init("fuzz", getenv("MP_FUZZ_VERBOSE") ? MP_LOG_DEBUG : MP_LOG_ERR);
}

uint8_t fuzz_byte(struct fuzz_reader *r)
{
	if (!r->left)
		return 0;
	r->left--;
	return *r->p++;
}

bool fuzz_record(struct fuzz_reader *r, const uint8_t **data, size_t *len)
{
	if (r->left < 2)
		return false;
	size_t want = (size_t)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->left -= 2;
	*len = want < r->left ? want : r->left;
	*data = r->p;
	r->p += *len;
	r->left -= *len;
	return true;
}
