/* The admin method `conflicts`: the evidence of misbehaviour brokerd recorded while settling
 * custody chains (brokerd/sql/0008-custody.sql, docs/custody.md). */
#pragma once
#include <libpq-fe.h>

struct mp_admin_req;

/* {conflicts: [{id, kind, channel, hseq, liable, claimant, claim_index, detail, stmt_a,
 * stmt_b, created_at}]}: oldest first; an array even when empty; claimant, claim_index and
 * stmt_b are null when the conflict has none; statements are the exact Signed bytes in hex. */
void conflicts_render(struct mp_admin_req *req, const PGresult *res, void *extra);
