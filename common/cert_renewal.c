#include "cert_renewal.h"

uint64_t mp_cert_channel_need(uint64_t t_grace)
{
	return MP_LONGEST_PAY_UNTIL_S + MP_REDEEM_WINDOW_S + t_grace + MP_CERT_RENEW_MARGIN_S;
}

uint64_t mp_cert_renew_before(uint64_t life, uint64_t channel_need)
{
	uint64_t third = life / 3, half = life / 2;
	uint64_t need = channel_need < half ? channel_need : half;
	return need > third ? need : third;
}

bool mp_cert_renewal_due(uint64_t issued, uint64_t valid_until, uint64_t now, uint64_t channel_need)
{
	if (valid_until <= now || valid_until <= issued)
		return true;
	return valid_until - now < mp_cert_renew_before(valid_until - issued, channel_need);
}
