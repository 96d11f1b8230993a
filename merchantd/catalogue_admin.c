/* merchantd's catalogue at run time (catalogue_admin.h). Loading reads metadata only (stat,
 * directory listings): at start before the loop runs, on reload on the loop thread like the
 * rest of the reload (common/reload.h). */
#include "catalogue_admin.h"

#include <stdio.h>

#include "catalogue.h"
#include "log.h"
#include "merchant.h"

/* A ChunkResp carries the chunk (sealed: chunk_size + 16 bytes) with its ids and status, all
 * well within this much on top of chunk_size. */
#define CHUNK_FRAME_ROOM 4096u

/* Every item's chunk fits in a frame of max_frame; else err names the first that does not. */
static bool chunks_fit(const struct catalogue *c, uint32_t max_frame, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct catalogue_item *it = &c->items[i];
		if ((uint64_t)it->chunk_size + CHUNK_FRAME_ROOM > max_frame) {
			snprintf(err, errlen,
				 "%s: item [%s]: chunk_size %u does not fit in a frame of [limits] "
				 "max_frame %u with the %u bytes around it: lower chunk_size or "
				 "raise max_frame",
				 c->source ? c->source : "catalogue", it->id, it->chunk_size,
				 max_frame, CHUNK_FRAME_ROOM);
			return false;
		}
	}
	return true;
}

struct catalogue *merchant_catalogue_prepare(const char *path, uint32_t max_frame, char *err,
					     size_t errlen)
{
	struct catalogue *c = path ? catalogue_load(path, err, errlen) : catalogue_empty();
	if (!c && !path)
		snprintf(err, errlen, "catalogue: out of memory");
	if (c && !chunks_fit(c, max_frame, err, errlen)) {
		catalogue_free(c);
		return NULL;
	}
	return c;
}

bool merchant_catalogue_start(struct merchant *m)
{
	char err[1024];
	m->catalogue =
	    merchant_catalogue_prepare(m->cfg.catalogue, m->cfg.limits.max_frame, err, sizeof(err));
	if (!m->catalogue) {
		log_err("catalogue: %s", err);
		return false;
	}
	log_info("catalogue: %zu items%s%s", m->catalogue->n, m->cfg.catalogue ? " from " : "",
		 m->cfg.catalogue ? m->cfg.catalogue : " (no [merchant] catalogue)");
	return true;
}

void merchant_catalogue_adopt(struct merchant *m, struct catalogue *c)
{
	size_t before = m->catalogue ? m->catalogue->n : 0;
	catalogue_free(m->catalogue);
	m->catalogue = c;
	log_info("reload: catalogue %s, %zu items (was %zu)", c->source ? c->source : "none", c->n,
		 before);
}

void merchant_catalogue_free(struct merchant *m)
{
	catalogue_free(m->catalogue);
	m->catalogue = NULL;
}

static json_t *item_json(const struct catalogue_item *it)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:b,s:I,s:I,s:s}", "item", it->id, "size",
			 (json_int_t)it->size, "chunk_size", (json_int_t)it->chunk_size, "chunks",
			 (json_int_t)it->chunks, "metered", it->metered, "price",
			 (json_int_t)it->price, "total", (json_int_t)it->total, "delivery",
			 it->key_release ? "key" : "chunks");
}

void admin_catalogue(struct mp_admin_req *req, json_t *params, void *ctx)
{
	(void)params;
	struct merchant *m = ctx;
	const struct catalogue *c = m->catalogue;
	json_t *items = json_array();
	for (size_t i = 0; items && i < c->n; i++)
		json_array_append_new(items, item_json(&c->items[i]));
	if (!items) {
		mp_admin_fail(req, MP_ADMIN_INTERNAL, "catalogue: out of memory");
		return;
	}
	mp_admin_reply(req, json_pack("{s:o,s:s,s:o}", "source",
				      c->source ? json_string(c->source) : json_null(), "currency",
				      m->cfg.currency, "items", items));
}
