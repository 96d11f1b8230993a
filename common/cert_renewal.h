/* When a MerchantCert is renewed: one rule for brokerd (which decides) and merchantd (which
 * asks), docs/operations.md "MerchantCert renewal".
 *
 * A channel can name a merchant as holder0 only while the merchant's current cert lasts until
 * the channel's redeem_until + T_grace: the longest menu channel (pay_until_days 30, redeem_until
 * 48 h later) needs 30 d + 48 h + T_grace of cert left. A cert is due for renewal once less than
 *     max(life / 3, min(that need + a day of margin, life / 2))
 * is left, so a merchant never stops qualifying as long as life >= 2 * (need + margin) (68 days
 * with T_grace 24 h; the default life is 90). The half-life cap keeps a short life (tests) from
 * making every cert due at once. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define MP_LONGEST_PAY_UNTIL_S ((uint64_t)30 * 86400) /* pay_until_days 30 */
#define MP_REDEEM_WINDOW_S     ((uint64_t)48 * 3600)  /* redeem_until - pay_until */
#define MP_T_GRACE_S	       ((uint64_t)24 * 3600)  /* protocol.md section 11 */
#define MP_CERT_RENEW_MARGIN_S ((uint64_t)86400)      /* checks, clock offsets */

/* Seconds of cert life the longest channel needs, plus the margin, for a broker's T_grace. */
uint64_t mp_cert_channel_need(uint64_t t_grace);

/* Seconds before valid_until at which a cert of this life (valid_until - issued) is due. */
uint64_t mp_cert_renew_before(uint64_t life, uint64_t channel_need);

/* The cert (issued .. valid_until) is due for renewal at `now` (or has expired). */
bool mp_cert_renewal_due(uint64_t issued, uint64_t valid_until, uint64_t now,
			 uint64_t channel_need);
