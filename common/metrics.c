/* The metrics registry and the Prometheus text exposition writer (metrics.h). */
#include "metrics.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

enum source {
	SRC_COUNTER,   /* registry-owned struct mp_counter */
	SRC_GAUGE,     /* registry-owned struct mp_gauge */
	SRC_HISTOGRAM, /* registry-owned struct mp_histogram */
	SRC_U64,
	SRC_U32,
	SRC_I64,
	SRC_ATOMIC,
	SRC_FN,
};

struct series {
	enum source src;
	char *labels; /* rendered and escaped: a="b",c="d"; NULL for none */
	union {
		struct mp_counter counter;
		struct mp_gauge gauge;
		struct mp_histogram hist;
		const uint64_t *u64;
		const unsigned *u32;
		const int64_t *i64;
		const _Atomic uint64_t *atomic;
		struct {
			double (*fn)(const void *arg);
			const void *arg;
		} fn;
	} v;
	struct series *next;
};

struct family {
	char *name;
	const char *help;
	enum mp_metric_type type;
	struct series *first, *last;
	struct family *next;
};

struct mp_metrics {
	struct family *first, *last;
	bool failed;
	/* What a failed registration hands back, so that callers never see NULL. */
	struct mp_counter sink_counter;
	struct mp_gauge sink_gauge;
	struct mp_histogram sink_histogram;
};

uint64_t mp_metrics_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void mp_histogram_observe(struct mp_histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n_bounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

struct mp_metrics *mp_metrics_new(void)
{
	return calloc(1, sizeof(struct mp_metrics));
}

void mp_metrics_free(struct mp_metrics *reg)
{
	if (!reg)
		return;
	for (struct family *f = reg->first, *fn; f; f = fn) {
		fn = f->next;
		for (struct series *s = f->first, *sn; s; s = sn) {
			sn = s->next;
			free(s->labels);
			free(s);
		}
		free(f->name);
		free(f);
	}
	free(reg);
}

bool mp_metrics_ok(const struct mp_metrics *reg)
{
	return reg && !reg->failed;
}

static bool name_valid(const char *name, bool label)
{
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
			     (!label && *p == ':');
		bool digit = *p >= '0' && *p <= '9';
		if (!alpha && !(digit && p != name))
			return false;
	}
	return !(label && strncmp(name, "__", 2) == 0);
}

bool mp_metrics_escape(struct evbuffer *out, const char *text, bool label_value)
{
	for (const char *p = text; *p; p++) {
		const char *esc = NULL;
		if (*p == '\\')
			esc = "\\\\";
		else if (*p == '\n')
			esc = "\\n";
		else if (*p == '"' && label_value)
			esc = "\\\"";
		if (esc ? evbuffer_add(out, esc, 2) != 0 : evbuffer_add(out, p, 1) != 0)
			return false;
	}
	return true;
}

/* name="value",... escaped, as a heap string; NULL with *ok false on a bad label. */
static char *render_labels(const char *const *labels, bool *ok)
{
	*ok = true;
	if (!labels || !labels[0])
		return NULL;
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		*ok = false;
		return NULL;
	}
	for (size_t i = 0; *ok && labels[i]; i += 2) {
		*ok = labels[i + 1] && name_valid(labels[i], true) &&
		      strcmp(labels[i], "le") != 0 &&
		      evbuffer_add_printf(b, "%s%s=\"", i ? "," : "", labels[i]) >= 0 &&
		      mp_metrics_escape(b, labels[i + 1], true) && evbuffer_add(b, "\"", 1) == 0;
	}
	size_t len = evbuffer_get_length(b);
	char *text = *ok ? malloc(len + 1) : NULL;
	if (text) {
		evbuffer_remove(b, text, len);
		text[len] = '\0';
	}
	*ok = *ok && text;
	evbuffer_free(b);
	return text;
}

static struct family *family_get(struct mp_metrics *reg, const char *name, const char *help,
				 enum mp_metric_type type)
{
	for (struct family *f = reg->first; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f->type == type ? f : NULL;
	if (!name_valid(name, false) || !help)
		return NULL;
	struct family *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	*f = (struct family){.name = strdup(name), .help = help, .type = type};
	if (!f->name) {
		free(f);
		return NULL;
	}
	if (reg->last)
		reg->last->next = f;
	else
		reg->first = f;
	reg->last = f;
	return f;
}

/* Startup: a new series of family name; NULL (and the registry marked failed) on error. */
static struct series *add(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
			  const char *help, const char *const *labels, enum source src)
{
	bool ok;
	struct family *f = family_get(reg, name, help, type);
	char *rendered = f ? render_labels(labels, &ok) : NULL;
	struct series *s = f && ok ? calloc(1, sizeof(*s)) : NULL;
	if (!s) {
		free(rendered);
		reg->failed = true;
		log_err("metrics: cannot register %s (bad name or labels, another type, or out of "
			"memory)",
			name ? name : "(null)");
		return NULL;
	}
	s->src = src;
	s->labels = rendered;
	if (f->last)
		f->last->next = s;
	else
		f->first = s;
	f->last = s;
	return s;
}

struct mp_counter *mp_metrics_counter(struct mp_metrics *reg, const char *name, const char *help,
				      const char *const *labels)
{
	struct series *s = add(reg, MP_METRIC_COUNTER, name, help, labels, SRC_COUNTER);
	return s ? &s->v.counter : &reg->sink_counter;
}

struct mp_gauge *mp_metrics_gauge(struct mp_metrics *reg, const char *name, const char *help,
				  const char *const *labels)
{
	struct series *s = add(reg, MP_METRIC_GAUGE, name, help, labels, SRC_GAUGE);
	return s ? &s->v.gauge : &reg->sink_gauge;
}

static bool bounds_valid(const double *bounds, size_t n)
{
	if (!bounds || n == 0 || n > MP_HISTOGRAM_MAX_BUCKETS)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
			return false;
	return true;
}

struct mp_histogram *mp_metrics_histogram(struct mp_metrics *reg, const char *name,
					  const char *help, const char *const *labels,
					  const double *bounds, size_t n_bounds)
{
	struct series *s = NULL;
	if (bounds_valid(bounds, n_bounds))
		s = add(reg, MP_METRIC_HISTOGRAM, name, help, labels, SRC_HISTOGRAM);
	else
		log_err("metrics: %s: histogram bounds must be 1..%d finite increasing values",
			name, MP_HISTOGRAM_MAX_BUCKETS);
	if (!s) {
		reg->failed = true;
		reg->sink_histogram = (struct mp_histogram){.n_bounds = 0};
		return &reg->sink_histogram;
	}
	s->v.hist.bounds = bounds;
	s->v.hist.n_bounds = n_bounds;
	return &s->v.hist;
}

void mp_metrics_u64(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const uint64_t *value)
{
	struct series *s = add(reg, type, name, help, labels, SRC_U64);
	if (s)
		s->v.u64 = value;
}

void mp_metrics_u32(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const unsigned *value)
{
	struct series *s = add(reg, type, name, help, labels, SRC_U32);
	if (s)
		s->v.u32 = value;
}

void mp_metrics_i64(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		    const char *help, const char *const *labels, const int64_t *value)
{
	struct series *s = add(reg, type, name, help, labels, SRC_I64);
	if (s)
		s->v.i64 = value;
}

void mp_metrics_atomic(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		       const char *help, const char *const *labels, const _Atomic uint64_t *value)
{
	struct series *s = add(reg, type, name, help, labels, SRC_ATOMIC);
	if (s)
		s->v.atomic = value;
}

void mp_metrics_fn(struct mp_metrics *reg, enum mp_metric_type type, const char *name,
		   const char *help, const char *const *labels, double (*fn)(const void *arg),
		   const void *arg)
{
	struct series *s = add(reg, type, name, help, labels, SRC_FN);
	if (s) {
		s->v.fn.fn = fn;
		s->v.fn.arg = arg;
	}
}

/* A float as the format spells it: +Inf, -Inf, NaN, or the shortest exact decimal. */
static void format_double(char *out, size_t len, double v)
{
	if (isnan(v))
		snprintf(out, len, "NaN");
	else if (isinf(v))
		snprintf(out, len, "%sInf", v > 0 ? "+" : "-");
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		snprintf(out, len, "%lld", (long long)v);
	else {
		snprintf(out, len, "%.15g", v); /* short when exact: 0.1, not 0.10000000000000001 */
		if (strtod(out, NULL) != v)
			snprintf(out, len, "%.17g", v);
	}
}

/* name{labels[,extra]} value */
static bool sample(struct evbuffer *out, const char *name, const char *suffix, const char *labels,
		   const char *extra, const char *value)
{
	bool braces = labels || extra;
	return evbuffer_add_printf(out, "%s%s%s%s%s%s%s %s\n", name, suffix, braces ? "{" : "",
				   labels ? labels : "", labels && extra ? "," : "",
				   extra ? extra : "", braces ? "}" : "", value) >= 0;
}

static bool write_histogram(struct evbuffer *out, const char *name, const struct series *s)
{
	const struct mp_histogram *h = &s->v.hist;
	char le[64], value[64], bound[40];
	uint64_t cumulative = 0;
	bool ok = true;
	for (size_t i = 0; ok && i < h->n_bounds; i++) {
		cumulative += h->counts[i];
		format_double(bound, sizeof(bound), h->bounds[i]);
		snprintf(le, sizeof(le), "le=\"%s\"", bound);
		snprintf(value, sizeof(value), "%llu", (unsigned long long)cumulative);
		ok = sample(out, name, "_bucket", s->labels, le, value);
	}
	snprintf(value, sizeof(value), "%llu", (unsigned long long)h->count);
	ok = ok && sample(out, name, "_bucket", s->labels, "le=\"+Inf\"", value);
	format_double(value, sizeof(value), h->sum);
	ok = ok && sample(out, name, "_sum", s->labels, NULL, value);
	snprintf(value, sizeof(value), "%llu", (unsigned long long)h->count);
	return ok && sample(out, name, "_count", s->labels, NULL, value);
}

static void series_value(const struct series *s, char *out, size_t len)
{
	switch (s->src) {
	case SRC_COUNTER:
		snprintf(out, len, "%llu", (unsigned long long)s->v.counter.value);
		return;
	case SRC_GAUGE:
		snprintf(out, len, "%lld", (long long)s->v.gauge.value);
		return;
	case SRC_U64:
		snprintf(out, len, "%llu", (unsigned long long)*s->v.u64);
		return;
	case SRC_U32:
		snprintf(out, len, "%u", *s->v.u32);
		return;
	case SRC_I64:
		snprintf(out, len, "%lld", (long long)*s->v.i64);
		return;
	case SRC_ATOMIC:
		snprintf(
		    out, len, "%llu",
		    (unsigned long long)atomic_load_explicit(s->v.atomic, memory_order_relaxed));
		return;
	case SRC_FN:
		format_double(out, len, s->v.fn.fn(s->v.fn.arg));
		return;
	case SRC_HISTOGRAM:
		snprintf(out, len, "0");
		return;
	}
}

static const char *type_name(enum mp_metric_type t)
{
	switch (t) {
	case MP_METRIC_COUNTER:
		return "counter";
	case MP_METRIC_GAUGE:
		return "gauge";
	case MP_METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

bool mp_metrics_write(const struct mp_metrics *reg, struct evbuffer *out)
{
	bool ok = true;
	char value[64];
	for (const struct family *f = reg->first; ok && f; f = f->next) {
		ok = evbuffer_add_printf(out, "# HELP %s ", f->name) >= 0 &&
		     mp_metrics_escape(out, f->help, false) &&
		     evbuffer_add_printf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type)) >= 0;
		for (const struct series *s = f->first; ok && s; s = s->next) {
			if (s->src == SRC_HISTOGRAM) {
				ok = write_histogram(out, f->name, s);
				continue;
			}
			series_value(s, value, sizeof(value));
			ok = sample(out, f->name, "", s->labels, NULL, value);
		}
	}
	return ok;
}

char *mp_metrics_text(const struct mp_metrics *reg)
{
	struct evbuffer *b = evbuffer_new();
	char *text = NULL;
	if (b && mp_metrics_write(reg, b)) {
		size_t len = evbuffer_get_length(b);
		text = malloc(len + 1);
		if (text) {
			evbuffer_remove(b, text, len);
			text[len] = '\0';
		}
	}
	if (b)
		evbuffer_free(b);
	return text;
}
