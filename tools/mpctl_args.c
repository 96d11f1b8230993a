#include "mpctl_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mpctl_complain(const struct mpctl_options *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mpctl: ", o->errors);
	vfprintf(o->errors, fmt, ap);
	fputc('\n', o->errors);
	va_end(ap);
}

/* Digits only, no leading zero (except "0"), fits in a JSON integer. */
static bool as_integer(const char *s, json_int_t *out)
{
	if (!*s || (s[0] == '0' && s[1]))
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (json_int_t)v;
	return true;
}

static json_t *typed_value(const char *s)
{
	json_int_t i;
	if (as_integer(s, &i))
		return json_integer(i);
	if (!strcmp(s, "true"))
		return json_true();
	if (!strcmp(s, "false"))
		return json_false();
	return json_string(s);
}

/* key=value or key:=JSON into params; false with a message on stderr. */
static bool add_param(const struct mpctl_options *o, json_t *params, const char *arg)
{
	const char *eq = strchr(arg, '=');
	bool raw = eq > arg && eq[-1] == ':';
	size_t klen = (size_t)(eq - arg) - (raw ? 1 : 0);
	if (klen == 0) {
		mpctl_complain(o, "'%s': expected key=value", arg);
		return false;
	}
	char *key = strndup(arg, klen);
	if (!key) {
		mpctl_complain(o, "out of memory");
		return false;
	}
	json_t *value = NULL;
	json_error_t jerr;
	if (json_object_get(params, key))
		mpctl_complain(o, "parameter '%s' given twice", key);
	else if (raw && !(value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr)))
		mpctl_complain(o, "'%s': the value after := is not JSON", arg);
	else if (!raw)
		value = typed_value(eq + 1);
	bool ok = value && json_object_set_new(params, key, value) == 0;
	free(key);
	return ok;
}

/* SECONDS (decimal, 0.001 .. 86400) into ms. */
static bool parse_timeout(const struct mpctl_options *o, const char *text, int *ms)
{
	char *end;
	errno = 0;
	double s = strtod(text, &end);
	if (errno || end == text || *end || !(s >= 0.001 && s <= 86400)) {
		mpctl_complain(o, "--timeout '%s': expected seconds, 0.001 .. 86400", text);
		return false;
	}
	*ms = (int)(s * 1000 + 0.5);
	return true;
}

static bool add_word(struct mpctl_options *o, const char *word)
{
	if (strlen(o->method) + strlen(word) + 2 > sizeof(o->method)) {
		mpctl_complain(o, "method name too long: %s", word);
		return false;
	}
	if (o->method[0])
		strcat(o->method, ".");
	strcat(o->method, word);
	return true;
}

/* `http METHOD URL` (a walletd method): the two words after http are its method and url
 * parameters, taken whole (a URL holds '=' and '.'). True if word was taken so. */
static bool http_positional(struct mpctl_options *o, const char *word)
{
	if (strcmp(o->method, "http") != 0)
		return false;
	const char *key = !json_object_get(o->params, "method") &&
				  !json_object_get(o->params, "url") && !strchr(word, ':')
			      ? "method"
			  : !json_object_get(o->params, "url") ? "url"
							       : NULL;
	return key && json_object_set_new(o->params, key, json_string(word)) == 0;
}

/* An option taking a value: --name VALUE or --name=VALUE. */
static const char *option_value(const struct mpctl_options *o, int argc, char **argv, int *i,
				const char *name)
{
	size_t len = strlen(name);
	if (!strncmp(argv[*i], name, len) && argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (strcmp(argv[*i], name) != 0)
		return NULL;
	if (*i + 1 >= argc) {
		mpctl_complain(o, "%s needs a value (see --help)", name);
		return "";
	}
	return argv[++*i];
}

bool mpctl_parse_args(int argc, char **argv, struct mpctl_options *o)
{
	bool in_params = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			o->help = true;
		else if (!strcmp(a, "--human"))
			o->human = true;
		else if (!strcmp(a, "--json"))
			o->json = true;
		else if ((v = option_value(o, argc, argv, &i, "--timeout"))) {
			if (!*v || !parse_timeout(o, v, &o->timeout_ms))
				return false;
		} else if ((v = option_value(o, argc, argv, &i, "--socket")) ||
			   (v = option_value(o, argc, argv, &i, "-s"))) {
			if (!*v)
				return false;
			o->socket = v;
		} else if ((v = option_value(o, argc, argv, &i, "--field"))) {
			if (!*v)
				return false;
			o->field = v;
		} else if ((v = option_value(o, argc, argv, &i, "--params"))) {
			if (!*v)
				return false;
			o->raw_params = v;
		} else if (a[0] == '-' && a[1]) {
			mpctl_complain(o, "unknown option '%s' (see --help)", a);
			return false;
		} else if (!in_params && http_positional(o, a)) {
			continue;
		} else if (strchr(a, '=')) {
			in_params = true;
			if (!add_param(o, o->params, a))
				return false;
		} else if (in_params) {
			mpctl_complain(o, "'%s': expected key=value after the first parameter", a);
			return false;
		} else if (!add_word(o, a)) {
			return false;
		}
	}
	return true;
}

bool mpctl_merge_raw_params(struct mpctl_options *o)
{
	json_error_t jerr;
	json_t *given = json_loads(o->raw_params, 0, &jerr);
	if (!json_is_object(given)) {
		json_decref(given);
		mpctl_complain(o, "--params must be a JSON object: %s", jerr.text);
		return false;
	}
	const char *key;
	json_t *value;
	json_object_foreach(o->params, key, value)
	{
		if (json_object_get(given, key)) {
			json_decref(given);
			mpctl_complain(o, "parameter '%s' given twice", key);
			return false;
		}
	}
	json_object_update(given, o->params);
	json_decref(o->params);
	o->params = given;
	return true;
}

void mpctl_as_help_request(struct mpctl_options *o)
{
	const char *topic = NULL;
	if (o->help)
		topic = o->method;
	else if (!strncmp(o->method, "help.", 5))
		topic = o->method + 5;
	if (!topic)
		return;
	json_object_clear(o->params);
	json_object_set_new(o->params, "method", json_string(topic));
	memmove(o->method, "help", 5);
	o->help = true;
}
