/* The catalogue file (catalogue.h): parse every section, then expand and check each entry.
 *
 *   parse (inih, one entry per section; unknown key, bad value, syntax: file:line)
 *     -> expand (an entry with `file` is one item; with `dir`, one item per regular file)
 *     -> check (stat: regular, readable, non-empty; sizes, price totals, id rules, unique)
 *     -> sorted catalogue | NULL with the first fault */
#include "catalogue.h"

#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amount.h"

/* One section as written. */
struct entry {
	char id[CATALOGUE_ID_MAX + 1];
	int line;
	char *file, *dir;
	uint64_t price;
	bool metered;
	bool key_release;
	uint32_t chunk_size;
};

struct parse {
	const char *path;
	FILE *f;
	int line;
	struct entry *entries;
	size_t n, cap;
	char *err;
	size_t errlen;
	bool failed;
};

static char *read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *got = fgets(str, num, p->f);
	if (got)
		p->line++;
	return got;
}

static bool fail(struct parse *p, const char *fmt, const char *a, const char *b)
{
	char msg[600];
	snprintf(msg, sizeof(msg), fmt, a, b);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->path, p->line, msg);
	p->failed = true;
	return false;
}

static bool id_valid(const char *id)
{
	size_t len = strlen(id);
	if (len < 1 || len > CATALOGUE_ID_MAX || id[0] == '/' || id[len - 1] == '/' ||
	    strstr(id, "..") || strstr(id, "//"))
		return false;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/") ==
	       len;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* The entry for section, a new one when the section starts. */
static struct entry *entry_for(struct parse *p, const char *section)
{
	if (p->n && !strcmp(p->entries[p->n - 1].id, section))
		return &p->entries[p->n - 1];
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->entries[i].id, section))
			return fail(p, "item '%s' defined twice%s", section, ""), NULL;
	if (!id_valid(section))
		return fail(p,
			    "bad item id '%s'%s: 1 .. 128 of A-Z a-z 0-9 . _ - /, no '..', no "
			    "leading or trailing '/'",
			    section, ""),
		       NULL;
	if (p->n == CATALOGUE_ITEMS_MAX)
		return fail(p, "more than %s items%s", "10000", ""), NULL;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct entry *e = realloc(p->entries, cap * sizeof(*e));
		if (!e)
			return fail(p, "out of memory%s%s", "", ""), NULL;
		p->entries = e;
		p->cap = cap;
	}
	struct entry *e = &p->entries[p->n++];
	*e = (struct entry){.line = p->line, .chunk_size = CATALOGUE_CHUNK_DEFAULT};
	snprintf(e->id, sizeof(e->id), "%s", section);
	return e;
}

static bool set_string(struct parse *p, char **slot, const char *value)
{
	free(*slot);
	*slot = strdup(value);
	return *slot || fail(p, "out of memory%s%s", "", "");
}

static bool set_key(struct parse *p, struct entry *e, const char *name, const char *value)
{
	uint64_t v;
	if (!strcmp(name, "file"))
		return set_string(p, &e->file, value);
	if (!strcmp(name, "dir"))
		return set_string(p, &e->dir, value);
	if (!strcmp(name, "price"))
		return parse_u64(value, 1, MP_AMOUNT_MAX, &e->price) ||
		       fail(p, "price = %s%s: expected 1 .. 2^63-1 minor units", value, "");
	if (!strcmp(name, "chunk_size")) {
		if (!parse_u64(value, CATALOGUE_CHUNK_MIN, CATALOGUE_CHUNK_MAX, &v))
			return fail(p, "chunk_size = %s%s: expected 1024 .. 524288 bytes", value,
				    "");
		e->chunk_size = (uint32_t)v;
		return true;
	}
	if (!strcmp(name, "metered")) {
		if (!strcmp(value, "true") || !strcmp(value, "false")) {
			e->metered = value[0] == 't';
			return true;
		}
		return fail(p, "metered = %s%s: expected true or false", value, "");
	}
	if (!strcmp(name, "delivery")) {
		if (!strcmp(value, "chunks") || !strcmp(value, "key")) {
			e->key_release = value[0] == 'k';
			return true;
		}
		return fail(p, "delivery = %s%s: expected chunks or key", value, "");
	}
	return fail(p,
		    "unknown key '%s' in item [%s] (file, dir, price, metered, chunk_size, "
		    "delivery)",
		    name, e->id);
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	if (p->failed)
		return 0;
	if (!*section) {
		fail(p, "key '%s' outside an item section%s", name, "");
		return 0;
	}
	struct entry *e = entry_for(p, section);
	return e && set_key(p, e, name, value);
}

/* ---- expansion and checks ---- */

struct build {
	struct catalogue *c;
	size_t cap;
	const char *path;
	char *err;
	size_t errlen;
};

static bool item_fail(struct build *b, const struct entry *e, const char *fmt, const char *a,
		      const char *why)
{
	char msg[4700];
	snprintf(msg, sizeof(msg), fmt, a, why);
	snprintf(b->err, b->errlen, "%s:%d: item [%s]: %s", b->path, e->line, e->id, msg);
	return false;
}

/* A regular, readable, non-empty file: its size. */
static bool file_ok(struct build *b, const struct entry *e, const char *file, uint64_t *size)
{
	struct stat st;
	if (stat(file, &st) != 0)
		return item_fail(b, e, "%s: %s", file, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return item_fail(b, e, "%s: %s", file, "not a regular file");
	if (access(file, R_OK) != 0)
		return item_fail(b, e, "%s: not readable: %s", file, strerror(errno));
	if (st.st_size <= 0)
		return item_fail(b, e, "%s: %s", file, "empty (an item has at least one byte)");
	*size = (uint64_t)st.st_size;
	return true;
}

static bool add_item(struct build *b, const struct entry *e, const char *id, const char *file)
{
	struct catalogue *c = b->c;
	if (c->n == CATALOGUE_ITEMS_MAX)
		return item_fail(b, e, "%s%s", "more than 10000 items", "");
	if (c->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;
		struct catalogue_item *items = realloc(c->items, cap * sizeof(*items));
		if (!items)
			return item_fail(b, e, "%s%s", "out of memory", "");
		c->items = items;
		b->cap = cap;
	}
	struct catalogue_item it = {.price = e->price,
				    .metered = e->metered,
				    .key_release = e->key_release,
				    .chunk_size = e->chunk_size};
	if (!id_valid(id))
		return item_fail(b, e, "%s: not a valid item id%s", id, "");
	snprintf(it.id, sizeof(it.id), "%s", id);
	if (!file_ok(b, e, file, &it.size))
		return false;
	it.chunks = it.size / it.chunk_size + (it.size % it.chunk_size != 0);
	it.total = it.price;
	if (it.metered &&
	    (__builtin_mul_overflow(it.price, it.chunks, &it.total) || !mp_amount_valid(it.total)))
		return item_fail(b, e, "%s: price * chunks is above 2^63-1%s", file, "");
	if (!(it.path = strdup(file)))
		return item_fail(b, e, "%s%s", "out of memory", "");
	c->items[c->n++] = it;
	return true;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files' names in dir (hidden ones skipped), sorted; NULL with err. */
static char **dir_names(struct build *b, const struct entry *e, size_t *n)
{
	DIR *d = opendir(e->dir);
	if (!d)
		return item_fail(b, e, "dir %s: %s", e->dir, strerror(errno)), NULL;
	char **names = NULL;
	size_t cap = 0;
	*n = 0;
	struct dirent *de;
	bool ok = true;
	while (ok && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			char **grown = realloc(names, cap * sizeof(*names));
			ok = grown != NULL;
			names = grown ? grown : names;
		}
		if (ok && !(names[*n] = strdup(de->d_name)))
			ok = false;
		else if (ok)
			(*n)++;
	}
	closedir(d);
	if (!ok) {
		for (size_t i = 0; i < *n; i++)
			free(names[i]);
		free(names);
		return item_fail(b, e, "dir %s: %s", e->dir, "out of memory"), NULL;
	}
	if (*n)
		qsort(names, *n, sizeof(*names), name_cmp);
	return names ? names : calloc(1, sizeof(*names));
}

/* Every regular file of the directory (others are skipped) as item ID/NAME. */
static bool expand_dir(struct build *b, const struct entry *e)
{
	size_t n;
	char **names = dir_names(b, e, &n);
	if (!names)
		return false;
	bool ok = true;
	size_t added = 0;
	for (size_t i = 0; i < n; i++) {
		char file[4096], id[CATALOGUE_ID_MAX + 2];
		struct stat st;
		snprintf(file, sizeof(file), "%s/%s", e->dir, names[i]);
		if (ok && stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
			if (snprintf(id, sizeof(id), "%s/%s", e->id, names[i]) > CATALOGUE_ID_MAX)
				ok = item_fail(b, e, "%s: the id %s/NAME is too long", file, "");
			else if ((ok = add_item(b, e, id, file)))
				added++;
		}
		free(names[i]);
	}
	free(names);
	return ok && (added || item_fail(b, e, "dir %s: %s", e->dir, "no regular file in it"));
}

static bool expand(struct build *b, const struct entry *e)
{
	if (!e->file == !e->dir)
		return item_fail(b, e, "%s%s", "needs exactly one of file or dir", "");
	if (!e->price)
		return item_fail(b, e, "%s%s", "needs price (minor units)", "");
	if (e->key_release && e->metered)
		return item_fail(b, e, "%s%s",
				 "delivery = key needs an item priced whole (metered = false)", "");
	return e->file ? add_item(b, e, e->id, e->file) : expand_dir(b, e);
}

static int item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct catalogue_item *)a)->id,
		      ((const struct catalogue_item *)b)->id);
}

/* Sorted; an id given twice (an item and a directory's file) is a fault. */
static bool sort_unique(struct build *b)
{
	struct catalogue *c = b->c;
	if (c->n)
		qsort(c->items, c->n, sizeof(*c->items), item_cmp);
	for (size_t i = 1; i < c->n; i++)
		if (!strcmp(c->items[i - 1].id, c->items[i].id)) {
			snprintf(b->err, b->errlen, "%s: item id '%s' given twice", b->path,
				 c->items[i].id);
			return false;
		}
	return true;
}

static void entries_free(struct parse *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->entries[i].file);
		free(p->entries[i].dir);
	}
	free(p->entries);
}

static bool parse_file(struct parse *p)
{
	if (!(p->f = fopen(p->path, "r"))) {
		snprintf(p->err, p->errlen, "%s: cannot open the catalogue: %s", p->path,
			 strerror(errno));
		return false;
	}
	int rc = ini_parse_stream(read_line, p, on_entry, p);
	fclose(p->f);
	if (!p->failed && rc != 0) {
		snprintf(p->err, p->errlen,
			 "%s:%d: syntax error (expected [item-id] or key = value)", p->path, rc);
		return false;
	}
	return !p->failed;
}

struct catalogue *catalogue_load(const char *path, char *err, size_t errlen)
{
	struct parse p = {.path = path, .err = err, .errlen = errlen};
	struct build b = {.path = path, .err = err, .errlen = errlen};
	bool ok = parse_file(&p);
	if (ok && (!(b.c = catalogue_empty()) || !(b.c->source = strdup(path)))) {
		snprintf(err, errlen, "%s: out of memory", path);
		ok = false;
	}
	for (size_t i = 0; ok && i < p.n; i++)
		ok = expand(&b, &p.entries[i]);
	ok = ok && sort_unique(&b);
	entries_free(&p);
	if (!ok) {
		catalogue_free(b.c);
		return NULL;
	}
	return b.c;
}

struct catalogue *catalogue_empty(void)
{
	return calloc(1, sizeof(struct catalogue));
}

void catalogue_free(struct catalogue *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->items[i].path);
	free(c->items);
	free(c->source);
	free(c);
}

const struct catalogue_item *catalogue_find(const struct catalogue *c, const char *id)
{
	struct catalogue_item key;
	if (strlen(id) > CATALOGUE_ID_MAX || !c->n)
		return NULL;
	snprintf(key.id, sizeof(key.id), "%s", id);
	return bsearch(&key, c->items, c->n, sizeof(*c->items), item_cmp);
}

uint64_t catalogue_chunk_price(const struct catalogue_item *it, uint64_t k)
{
	if (k >= it->chunks)
		return 0;
	if (it->metered)
		return it->price;
	unsigned __int128 p = it->price;
	return (uint64_t)(p * (k + 1) / it->chunks - p * k / it->chunks);
}

uint64_t catalogue_price_through(const struct catalogue_item *it, uint64_t k)
{
	if (k > it->chunks)
		k = it->chunks;
	if (it->metered)
		return it->price * k; /* at most total, which load checked for overflow */
	unsigned __int128 p = it->price;
	return (uint64_t)(p * k / it->chunks);
}

uint64_t catalogue_chunks_covered(const struct catalogue_item *it, uint64_t from, uint64_t credit)
{
	if (from >= it->chunks)
		return it->chunks;
	unsigned __int128 b;
	if (it->metered) {
		b = from + credit / it->price;
	} else {
		/* the largest b with floor(price*b/chunks) <= floor(price*from/chunks) + credit */
		unsigned __int128 t = (unsigned __int128)catalogue_price_through(it, from) + credit;
		b = ((t + 1) * it->chunks - 1) / it->price;
	}
	return b > it->chunks ? it->chunks : (uint64_t)b;
}

uint32_t catalogue_chunk_len(const struct catalogue_item *it, uint64_t k)
{
	if (k >= it->chunks)
		return 0;
	if (k + 1 < it->chunks)
		return it->chunk_size;
	return (uint32_t)(it->size - k * it->chunk_size);
}
