/* Declared admin parameters (admin.h, struct mp_admin_param): the check every request passes
 * before its method runs, and the JSON description `help` answers. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "admin.h"

struct mp_admin_param_error {
	char param[64];	   /* the parameter at fault */
	char message[512]; /* a whole sentence naming it and the method */
};

/* True if params (an object) names only declared parameters, each of its declared type, and
 * every required one; else false with err filled. */
bool mp_admin_check_params(const struct mp_admin_method *m, json_t *params,
			   struct mp_admin_param_error *err);

/* {name, description, params: [{name, type, required, default?, description}]} (params an
 * array even when empty); NULL when out of memory. */
json_t *mp_admin_method_json(const struct mp_admin_method *m);
