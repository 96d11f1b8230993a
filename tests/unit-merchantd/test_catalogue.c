/* merchantd's catalogue file (merchantd/catalogue.c): a valid file with a whole-priced item, a
 * metered item and a directory loads sorted with sizes, chunk counts and totals; chunk prices of
 * a whole-priced item add up to its price exactly; each fault (unknown key, bad id, twice the
 * same id, no price, file and dir, a missing, empty or non-regular file, ranges, an overflowing
 * metered total, a key outside a section, a syntax error, a bad `delivery`, `delivery = key` on
 * a metered item) is refused with file:line or the item
 * named, and nothing is returned. A purchase's arithmetic (merchantd/purchase.c): what a credit
 * pays, in order. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalogue.h"
#include "catalogue_admin.h"
#include "purchase.h"
#include "../check_run.h"

#define DIR_TEMPLATE "/tmp/mp-test-cat-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char cat_path[sizeof(dir) + 16];
static char err[1024];

static void write_file(const char *rel, size_t bytes)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	for (size_t i = 0; i < bytes; i++)
		fputc((int)(i * 7 % 251), f);
	fclose(f);
}

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cat_path, sizeof(cat_path), "%s/goods.ini", dir);
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/books", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/books/nested", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	write_file("song.ogg", 100000);	  /* 2 chunks of 64 KiB */
	write_file("film.bin", 3 * 4096); /* 3 chunks of 4 KiB */
	write_file("books/b.txt", 10);	  /* 1 chunk */
	write_file("books/a.txt", 2048);  /* 2 chunks of 1 KiB */
	write_file("books/.hidden", 5);	  /* skipped */
	write_file("empty", 0);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* The catalogue file: text with every "@" replaced by the temporary folder. */
static void write_catalogue(const char *text)
{
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	for (const char *t = text; *t; t++)
		if (*t == '@')
			fputs(dir, f);
		else
			fputc(*t, f);
	fclose(f);
}

static const char valid[] = "; the goods\n"
			    "[song]\nfile = @/song.ogg\nprice = 10\ndelivery = key\n"
			    "[film]\nfile = @/film.bin\nprice = 3\nmetered = true\n"
			    "chunk_size = 4096\n"
			    "[books]\ndir = @/books\nprice = 7\nchunk_size = 1024\n"
			    "delivery = chunks\n";

START_TEST(valid_catalogue)
{
	write_catalogue(valid);
	struct catalogue *c = catalogue_load(cat_path, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->n, 4);
	ck_assert_str_eq(c->items[0].id, "books/a.txt"); /* sorted; .hidden, nested skipped */
	ck_assert_str_eq(c->items[1].id, "books/b.txt");
	ck_assert_str_eq(c->items[2].id, "film");
	ck_assert_str_eq(c->items[3].id, "song");
	ck_assert_str_eq(c->source, cat_path);
	const struct catalogue_item *song = catalogue_find(c, "song");
	ck_assert_ptr_nonnull(song);
	ck_assert_uint_eq(song->size, 100000);
	ck_assert_uint_eq(song->chunk_size, CATALOGUE_CHUNK_DEFAULT);
	ck_assert_uint_eq(song->chunks, 2);
	ck_assert(!song->metered);
	ck_assert(song->key_release);
	ck_assert_uint_eq(song->total, 10);
	ck_assert_uint_eq(catalogue_chunk_len(song, 0), 65536);
	ck_assert_uint_eq(catalogue_chunk_len(song, 1), 100000 - 65536);
	ck_assert_uint_eq(catalogue_chunk_len(song, 2), 0);
	const struct catalogue_item *film = catalogue_find(c, "film");
	ck_assert_uint_eq(film->chunks, 3);
	ck_assert(film->metered);
	ck_assert(!film->key_release); /* default: chunks */
	ck_assert_uint_eq(film->total, 9);
	for (uint64_t k = 0; k < 3; k++) {
		ck_assert_uint_eq(catalogue_chunk_price(film, k), 3);
		ck_assert_uint_eq(catalogue_chunk_len(film, k), 4096);
	}
	ck_assert_uint_eq(catalogue_chunk_price(film, 3), 0);
	const struct catalogue_item *a = catalogue_find(c, "books/a.txt");
	ck_assert_uint_eq(a->chunks, 2);
	ck_assert_uint_eq(a->total, 7);
	ck_assert(!a->key_release);
	ck_assert_str_eq(strrchr(a->path, '/'), "/a.txt");
	ck_assert_ptr_null(catalogue_find(c, "books"));
	ck_assert_ptr_null(catalogue_find(c, "nothing"));
	catalogue_free(c);
}
END_TEST

/* A whole price split over its chunks: the shares add up to it exactly, each within one. */
START_TEST(whole_price_shares)
{
	static const uint64_t prices[] = {1, 2, 7, 10, 65537, (uint64_t)INT64_MAX};
	static const uint64_t chunks[] = {1, 2, 3, 7, 1000, 65536};
	for (size_t i = 0; i < sizeof(prices) / sizeof(prices[0]); i++)
		for (size_t j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			struct catalogue_item it = {.price = prices[i], .chunks = chunks[j]};
			uint64_t sum = 0, lo = prices[i] / chunks[j];
			for (uint64_t k = 0; k < chunks[j]; k++) {
				uint64_t p = catalogue_chunk_price(&it, k);
				ck_assert(p == lo || p == lo + 1);
				sum += p;
			}
			ck_assert_uint_eq(sum, prices[i]);
		}
}
END_TEST

/* What chunks 0 .. k-1 cost together, and how far a credit pays from chunk `from`: the same as
 * adding chunk prices one by one (brute force), for whole-priced and metered items, including
 * whole prices below the chunk count (shares of 0). */
START_TEST(credit_pays_chunks_in_order)
{
	static const uint64_t prices[] = {1, 3, 7, 10, 100, 1001};
	static const uint64_t credits[] = {0, 1, 2, 5, 13, 99, 1000, 5000};
	for (int metered = 0; metered < 2; metered++)
		for (size_t i = 0; i < sizeof(prices) / sizeof(prices[0]); i++)
			for (uint64_t chunks = 1; chunks <= 23; chunks += 11) {
				struct catalogue_item it = {
				    .price = prices[i], .chunks = chunks, .metered = metered};
				uint64_t sum = 0;
				for (uint64_t k = 0; k <= chunks; k++) {
					ck_assert_uint_eq(catalogue_price_through(&it, k), sum);
					sum += catalogue_chunk_price(&it, k);
				}
				for (uint64_t from = 0; from <= chunks; from++)
					for (size_t c = 0; c < sizeof(credits) / sizeof(credits[0]);
					     c++) {
						uint64_t b = from, left = credits[c];
						while (b < chunks &&
						       catalogue_chunk_price(&it, b) <= left)
							left -= catalogue_chunk_price(&it, b++);
						ck_assert_uint_eq(
						    catalogue_chunks_covered(&it, from, credits[c]),
						    b);
					}
			}
}
END_TEST

/* A purchase: leading free chunks are paid at the start; a Pay's credit pays the next chunks
 * it covers and keeps the rest; a credit below the next chunk's price pays nothing. */
START_TEST(purchase_settles_chunks)
{
	struct catalogue_item it = {.id = "song", .path = "/dev/null", .price = 3, .chunks = 10};
	uint8_t channel[MP_ID_LEN] = {1};
	struct purchase *p = purchase_new(&it, channel, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(p->paid, 3); /* shares 0,0,0,1,0,0,1,0,0,1 */
	uint64_t credit = 0, cost = 9;
	ck_assert(!purchase_settle(p, &credit, &cost));
	ck_assert_uint_eq(p->paid, 3);
	credit = 1;
	ck_assert(purchase_settle(p, &credit, &cost));
	ck_assert_uint_eq(cost, 1);
	ck_assert_uint_eq(credit, 0);
	ck_assert_uint_eq(p->paid, 6); /* chunk 3 paid, chunks 4, 5 free */
	credit = 1;
	ck_assert(purchase_settle(p, &credit, &cost));
	ck_assert_uint_eq(cost, 1);
	ck_assert_uint_eq(p->paid, 9); /* chunk 6 paid, chunks 7, 8 free */
	ck_assert_uint_eq(credit, 0);
	p->paid_durable = p->paid;
	ck_assert_uint_eq(purchase_next_price(p), 1);
	credit = 7;
	ck_assert(purchase_settle(p, &credit, &cost));
	ck_assert_uint_eq(p->paid, 10);
	ck_assert_uint_eq(credit, 6);
	ck_assert(!purchase_settle(p, &credit, &cost));
	p->paid_durable = p->paid;
	ck_assert_uint_eq(purchase_next_price(p), 0);
	ck_assert(!purchase_owes(p));
	p->delivered = 11;
	ck_assert(purchase_owes(p));
	struct catalogue_item huge = it;
	huge.chunks = (uint64_t)UINT32_MAX + 1;
	ck_assert_ptr_null(purchase_new(&huge, channel, 0));
	purchase_free(p);
}
END_TEST

START_TEST(empty_catalogue)
{
	write_catalogue("; nothing on sale\n");
	struct catalogue *c = catalogue_load(cat_path, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->n, 0);
	ck_assert_ptr_null(catalogue_find(c, "x"));
	catalogue_free(c);
}
END_TEST

/* Each bad catalogue: refused, the error contains want. */
static const struct {
	const char *text, *want;
} bad[] = {
    {"[a]\nfile = @/song.ogg\nprice = 1\ncolour = red\n", "goods.ini:4: unknown key 'colour'"},
    {"[a]\nfile = @/song.ogg\n", "item [a]: needs price"},
    {"[a]\nfile = @/song.ogg\ndir = @/books\nprice = 1\n", "exactly one of file or dir"},
    {"[a]\nprice = 1\n", "exactly one of file or dir"},
    {"[a]\nfile = @/missing\nprice = 1\n", "missing: No such file or directory"},
    {"[a]\nfile = @/empty\nprice = 1\n", "empty (an item has at least one byte)"},
    {"[a]\nfile = @/books\nprice = 1\n", "not a regular file"},
    {"[a]\nfile = @/song.ogg\nprice = 0\n", "goods.ini:3: price = 0"},
    {"[a]\nfile = @/song.ogg\nprice = 9223372036854775808\n", "price = 9223372036854775808"},
    {"[a]\nfile = @/song.ogg\nprice = -1\n", "price = -1"},
    {"[a]\nfile = @/song.ogg\nprice = 1\nchunk_size = 1023\n", "goods.ini:4: chunk_size = 1023"},
    {"[a]\nfile = @/song.ogg\nprice = 1\nchunk_size = 524289\n", "chunk_size = 524289"},
    {"[a]\nfile = @/song.ogg\nprice = 1\nmetered = maybe\n", "metered = maybe"},
    {"[a]\nfile = @/song.ogg\nprice = 9223372036854775807\nmetered = true\n",
     "price * chunks is above 2^63-1"},
    {"[a]\nfile = @/song.ogg\nprice = 1\n[b]\nfile = @/film.bin\nprice = 1\n[a]\nprice = 2\n",
     "goods.ini:8: item 'a' defined twice"},
    {"[../x]\nfile = @/song.ogg\nprice = 1\n", "goods.ini:2: bad item id '../x'"},
    {"[/x]\nfile = @/song.ogg\nprice = 1\n", "bad item id '/x'"},
    {"[a b]\nfile = @/song.ogg\nprice = 1\n", "bad item id 'a b'"},
    {"[books/a.txt]\nfile = @/song.ogg\nprice = 1\n[books]\ndir = @/books\nprice = 1\n",
     "item id 'books/a.txt' given twice"},
    {"[d]\ndir = @/nowhere\nprice = 1\n", "dir "},
    {"[d]\ndir = @/books/nested\nprice = 1\n", "no regular file in it"},
    {"price = 1\n", "goods.ini:1: key 'price' outside an item section"},
    {"[a]\nfile = @/song.ogg\nprice = 1\ndelivery = mail\n",
     "goods.ini:4: delivery = mail: expected chunks or key"},
    {"[a]\nfile = @/song.ogg\nprice = 1\nmetered = true\ndelivery = key\n",
     "goods.ini:2: item [a]: delivery = key needs an item priced whole"},
    {"[a]\nfile = @/song.ogg\nprice = 1\nthis is not ini\n", "goods.ini:4: syntax error"},
};

START_TEST(bad_catalogue)
{
	write_catalogue(bad[_i].text);
	err[0] = 0;
	struct catalogue *c = catalogue_load(cat_path, err, sizeof(err));
	ck_assert_msg(c == NULL, "case %d loaded", _i);
	ck_assert_msg(strstr(err, bad[_i].want) != NULL, "case %d: '%s' lacks '%s'", _i, err,
		      bad[_i].want);
}
END_TEST

START_TEST(missing_catalogue)
{
	struct catalogue *c = catalogue_load("/nonexistent/goods.ini", err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, "cannot open the catalogue"));
}
END_TEST

/* merchantd's loader refuses a catalogue whose chunks do not fit in its frames: a ChunkResp
 * carries chunk_size bytes (and 16 more when sealed) with up to 4 KiB around them. */
START_TEST(chunks_must_fit_the_frame)
{
	write_catalogue(valid); /* chunks of 65536 (song), 4096 and 1024 bytes */
	struct catalogue *c = merchant_catalogue_prepare(cat_path, 65536 + 4096, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	catalogue_free(c);
	c = merchant_catalogue_prepare(cat_path, 65536 + 4095, err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err,
			     "item [song]: chunk_size 65536 does not fit in a frame of [limits] "
			     "max_frame 69631"),
		      "%s", err);
	c = merchant_catalogue_prepare(NULL, 4096, err,
				       sizeof(err)); /* no catalogue: nothing to fit */
	ck_assert_msg(c != NULL, "%s", err);
	catalogue_free(c);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("merchantd_catalogue");
	TCase *tc = tcase_create("catalogue");
	tcase_set_timeout(
	    tc, 60); /* each test forks `rm -rf` in its teardown: slow under ASan and load */
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_catalogue);
	tcase_add_test(tc, whole_price_shares);
	tcase_add_test(tc, credit_pays_chunks_in_order);
	tcase_add_test(tc, purchase_settles_chunks);
	tcase_add_test(tc, empty_catalogue);
	tcase_add_loop_test(tc, bad_catalogue, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, missing_catalogue);
	tcase_add_test(tc, chunks_must_fit_the_frame);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
