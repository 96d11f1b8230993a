/* Protocol limits on the number of items in a message (protocol.md section 11). Decoding
 * refuses a message above them (common/decode.c); daemons refuse configuration above them. */
#pragma once

#define MP_MAX_HANDOFFS 256 /* Handoffs per channel */
#define MP_MAX_SEGMENTS 16  /* segments per channel, segment 0 included: seg_seq <= 15 */
/* The Transfer/Cap pairs of segments 1..MP_MAX_SEGMENTS-1, as carried in "segments" fields. */
#define MP_MAX_SEGMENT_STMTS (2 * (MP_MAX_SEGMENTS - 1))
/* A custody chain: event 0 (holder0 or a Bind) and at most MP_MAX_HANDOFFS Handoffs. */
#define MP_MAX_CUSTODY (MP_MAX_HANDOFFS + 1)
/* The default MAX_CLAIMS_PER_REDEEM is 10,000; a deployment may raise it up to this ceiling,
 * which is what a decoder accepts (a broker answers LIMIT above its own configured maximum).
 * It is bounded by the decoding budget's floor (common/decode.h): a RedeemResp of this many
 * BAD_CHAIN results is 4 bytes a result on the wire and about 125 bytes decoded. */
#define MP_MAX_CLAIMS_CEILING 20000
/* Open disputes against one merchant answered in one OpenDisputesResp (the oldest first; the
 * merchant asks again for the rest). */
#define MP_MAX_OPEN_DISPUTES 256
/* ForcedCloses of epochs one merchant held answered in one ForcedClosesResp (the newest first;
 * older ones were delivered by earlier polls). */
#define MP_MAX_FORCED_CLOSES 256
/* Hashes in a BadKeyProof's audit path: a tree of up to 2^32 chunks (common/sealed_tree.h). */
#define MP_MAX_PROOF_PATH 32
