/* The admin method `channel.settlement`: a channel's lifecycle and, once FINALIZED, its
 * finalisation (brokerd/sql/0015-settlement.sql mp_channel_settlement; docs/settlement.md). */
#pragma once
#include <libpq-fe.h>

struct mp_admin_req;

/* {channel, state, pay_until, redeem_until, finalize_at, expired_at, close_index, early_refund,
 * finalization: null | {finalized_at, spent, credited, refund, unclaimed, refund_seg,
 * refund_account, refund_paid, refunded_at}, refund_request: null | {refund_id, seg_seq,
 * answered_at}}. extra: the channel id (16 bytes). */
void channel_settlement_render(struct mp_admin_req *req, const PGresult *res, void *extra);
