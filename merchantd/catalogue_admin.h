/* merchantd's catalogue at run time (docs/goods.md): loaded at start from [merchant]
 * catalogue, replaced on reload only by a catalogue that validated whole (a reload that fails
 * keeps the old one and says why), listed by the admin method `catalogue`. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"

struct merchant;
struct catalogue;

/* At start: the configured catalogue (or an empty one); false (logged) on any fault. */
bool merchant_catalogue_start(struct merchant *m);
/* Reload, step 1: the catalogue file path (NULL: none) read and validated, not yet in use,
 * every item's chunk fitting in a frame of max_frame (the listener's, which a reload does not
 * change). NULL with err on a fault. */
struct catalogue *merchant_catalogue_prepare(const char *path, uint32_t max_frame, char *err,
					     size_t errlen);
/* Reload, step 2 (once everything else of the reload succeeded): c replaces the catalogue. */
void merchant_catalogue_adopt(struct merchant *m, struct catalogue *c);
void merchant_catalogue_free(struct merchant *m);
/* The admin method `catalogue`: {source, currency, items: [...]}. */
void admin_catalogue(struct mp_admin_req *req, json_t *params, void *ctx);
