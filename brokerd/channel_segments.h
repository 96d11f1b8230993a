/* The admin method `channel.segments`: a channel's segments as the broker recorded them
 * (brokerd/sql/0010-segments.sql mp_channel_segments; docs/operations.md). */
#pragma once
#include <libpq-fe.h>

struct mp_admin_req;

/* {channel, segments: [{seg_seq, start, len, owner_pk, payout_account, cap_index, cap_hseq,
 * holder, noticed, claimed}]} in seg_seq order (segment 0 first). cap_index: where the next
 * segment's Cap ended this one (null while it is the last); cap_hseq and holder: the Cap that
 * started it; noticed and claimed: unix seconds of the first CapNotice and of the SegmentClaim
 * (null: not yet, and always for segment 0). extra: the channel id (16 bytes). */
void channel_segments_render(struct mp_admin_req *req, const PGresult *res, void *extra);
