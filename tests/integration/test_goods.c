/* The merchant's catalogue (docs/goods.md) against the real daemons (deploy/mpnet: brokerd,
 * merchant m1, walletd w1):
 * - m1 started with [merchant] catalogue lists its items (a file priced whole, a metered file,
 *   a directory's files) through the admin method and through mpctl, with sizes, chunk counts
 *   and totals;
 * - SIGHUP after the file changed: the new catalogue is listed; a reload of a bad catalogue
 *   (admin `reload` answers the reason; SIGHUP logs it) keeps the old one, served;
 * - merchantd refuses to start on a bad catalogue with the reason (a copy of m1's
 *   configuration, m1 still serving) and without one lists an empty catalogue.
 * Every test ends with the broker's audit clean. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "harness_net.h"
#include "../check_run.h"

static struct net net;
static char goods[700], cat_path[760];

static void write_bytes(const char *rel, size_t bytes)
{
	char p[800];
	snprintf(p, sizeof(p), "%s/%s", goods, rel);
	FILE *f = fopen(p, "w");
	ck_assert_msg(f != NULL, "cannot write %s", p);
	for (size_t i = 0; i < bytes; i++)
		fputc((int)(i * 13 % 256), f);
	fclose(f);
}

/* The catalogue file: text with every "@" replaced by the goods folder. */
static void write_catalogue(const char *text)
{
	FILE *f = fopen(cat_path, "w");
	ck_assert_ptr_nonnull(f);
	for (const char *t = text; *t; t++)
		if (*t == '@')
			fputs(goods, f);
		else
			fputc(*t, f);
	fclose(f);
}

static const char first[] = "[song]\nfile = @/song.ogg\nprice = 10\n"
			    "[film]\nfile = @/film.bin\nprice = 2\nmetered = true\n"
			    "[books]\ndir = @/books\nprice = 5\nchunk_size = 1024\n";

static void setup_net(void)
{
	net_up(&net);
	snprintf(goods, sizeof(goods), "%s/goods", net.dir);
	snprintf(cat_path, sizeof(cat_path), "%s/catalogue.ini", net.dir);
	char cmd[800];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/books'", goods);
	ck_assert_int_eq(system(cmd), 0);
	write_bytes("song.ogg", 200000);    /* 4 chunks of 64 KiB */
	write_bytes("film.bin", 5 * 65536); /* 5 chunks */
	write_bytes("books/a.txt", 3000);   /* 3 chunks of 1 KiB */
	write_catalogue(first);
}

static void teardown_net(void)
{
	net_down(&net);
}

static json_t *catalogue_item(json_t *cat, const char *id)
{
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(cat, "items"), i,
			   it) if (!strcmp(json_str(it, "item"), id)) return it;
	return NULL;
}

static void item_is(json_t *cat, const char *id, int64_t size, int64_t chunks, bool metered,
		    int64_t price, int64_t total)
{
	json_t *it = catalogue_item(cat, id);
	ck_assert_msg(it != NULL, "no item %s", id);
	ck_assert_int_eq(json_int(it, "size"), size);
	ck_assert_int_eq(json_int(it, "chunks"), chunks);
	ck_assert(json_is_true(json_object_get(it, "metered")) == metered);
	ck_assert_int_eq(json_int(it, "price"), price);
	ck_assert_int_eq(json_int(it, "total"), total);
}

/* A command's output file. */
static void slurp(const char *path, char *text, size_t len)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	text[fread(text, 1, len - 1, f)] = 0;
	fclose(f);
}

static void restart_with_catalogue(void)
{
	char setting[800];
	snprintf(setting, sizeof(setting), "catalogue = %s", cat_path);
	net_restart_with(&net, "m1", "merchant", setting);
}

START_TEST(catalogue_listed)
{
	restart_with_catalogue();
	json_t *cat = admin_ok(&net, "m1", "catalogue", NULL);
	ck_assert_str_eq(json_str(cat, "source"), cat_path);
	ck_assert_str_eq(json_str(cat, "currency"), "EUR");
	ck_assert_uint_eq(json_array_size(json_object_get(cat, "items")), 3);
	item_is(cat, "song", 200000, 4, false, 10, 10);
	item_is(cat, "film", 5 * 65536, 5, true, 2, 10);
	item_is(cat, "books/a.txt", 3000, 3, false, 5, 5);
	ck_assert_int_eq(json_int(catalogue_item(cat, "books/a.txt"), "chunk_size"), 1024);
	json_decref(cat);
	/* mpctl prints the same. */
	char cmd[2400], out[700], text[8192];
	snprintf(out, sizeof(out), "%s/catalogue.out", net.dir);
	snprintf(cmd, sizeof(cmd), "'%s/tools/mpctl' -s '%s/m1/admin.sock' catalogue >'%s' 2>&1",
		 net_build_root(), net.dir, out);
	ck_assert_int_eq(run_without_our_fds(cmd), 0);
	slurp(out, text, sizeof(text));
	ck_assert_msg(strstr(text, "books/a.txt") && strstr(text, "film") && strstr(text, "song"),
		      "mpctl catalogue: %s", text);
	net_audit_clean(&net);
}
END_TEST

/* The catalogue as listed, polled until it has `want` items (a SIGHUP is handled on m1's loop
 * after the signal returns); fails after 30 s. */
static json_t *catalogue_with(size_t want)
{
	for (int i = 0; i < 600; i++) {
		json_t *cat = admin_ok(&net, "m1", "catalogue", NULL);
		if (json_array_size(json_object_get(cat, "items")) == want)
			return cat;
		json_decref(cat);
		usleep(50000);
	}
	ck_abort_msg("m1's catalogue never had %zu items", want);
	return NULL;
}

static void sighup_m1(void)
{
	char pid[32];
	net_read(&net, "m1", "pid", pid, sizeof(pid));
	ck_assert_int_eq(kill((pid_t)atol(pid), SIGHUP), 0);
}

START_TEST(catalogue_reloaded)
{
	restart_with_catalogue();
	json_decref(catalogue_with(3));
	/* A new item and a changed price: SIGHUP. */
	write_bytes("extra.bin", 70000);
	write_catalogue("[song]\nfile = @/song.ogg\nprice = 12\n"
			"[extra]\nfile = @/extra.bin\nprice = 1\nmetered = true\n"
			"[books]\ndir = @/books\nprice = 5\nchunk_size = 1024\n"
			"[film]\nfile = @/film.bin\nprice = 2\nmetered = true\n");
	sighup_m1();
	json_t *cat = catalogue_with(4);
	item_is(cat, "song", 200000, 4, false, 12, 12);
	item_is(cat, "extra", 70000, 2, true, 1, 2);
	json_decref(cat);
	/* A bad catalogue: the admin reload answers why, the old catalogue stays. */
	write_catalogue("[song]\nfile = @/song.ogg\nprice = 12\n[gone]\nfile = @/missing.bin\n"
			"price = 3\n");
	char err[1024];
	json_t *r = admin(&net, "m1", "reload", NULL, err, sizeof(err));
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(err, "missing.bin: No such file or directory"), "reload: %s", err);
	cat = admin_ok(&net, "m1", "catalogue", NULL);
	ck_assert_uint_eq(json_array_size(json_object_get(cat, "items")), 4);
	json_decref(cat);
	/* The same by SIGHUP: logged with the reason, the old catalogue served. */
	int before = log_lines_with(&net, "m1", "missing.bin: No such file or directory");
	sighup_m1();
	for (int i = 0; i < 600 && log_lines_with(&net, "m1",
						  "missing.bin: No such file or "
						  "directory") == before;
	     i++)
		usleep(50000);
	ck_assert_int_gt(log_lines_with(&net, "m1", "missing.bin: No such file or directory"),
			 before);
	cat = admin_ok(&net, "m1", "catalogue", NULL);
	ck_assert_uint_eq(json_array_size(json_object_get(cat, "items")), 4);
	item_is(cat, "extra", 70000, 2, true, 1, 2);
	json_decref(cat);
	net_audit_clean(&net);
}
END_TEST

START_TEST(bad_catalogue_at_start)
{
	/* Without [merchant] catalogue: an empty one. */
	json_t *cat = admin_ok(&net, "m1", "catalogue", NULL);
	ck_assert(json_is_null(json_object_get(cat, "source")));
	ck_assert_uint_eq(json_array_size(json_object_get(cat, "items")), 0);
	json_decref(cat);
	/* A copy of m1's configuration naming a bad catalogue: merchantd stops before it opens
	 * the store or a socket, saying why; m1 serves on. */
	write_catalogue("[song]\nfile = @/song.ogg\nprice = 0\n");
	char cmd[6000], out[700], text[8192];
	snprintf(out, sizeof(out), "%s/bad-start.out", net.dir);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s/m1/config.ini' '%s/bad.ini' && printf '[merchant]\\ncatalogue = %s\\n' "
		 ">>'%s/bad.ini' && '%s/merchantd/merchantd' -c '%s/bad.ini' >'%s' 2>&1",
		 net.dir, net.dir, cat_path, net.dir, net_build_root(), net.dir, out);
	ck_assert_int_eq(run_without_our_fds(cmd), 1);
	slurp(out, text, sizeof(text));
	ck_assert_msg(strstr(text, "catalogue.ini:3: price = 0"), "merchantd said: %s", text);
	ck_assert_msg(!strstr(text, "Sanitizer") && !strstr(text, "runtime error:"),
		      "merchantd (sanitizers) said: %s", text);
	json_decref(admin_ok(&net, "m1", "status", NULL));
	net_audit_clean(&net);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("goods");
	TCase *tc = tcase_create("catalogue");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, setup_net, teardown_net);
	tcase_add_test(tc, catalogue_listed);
	tcase_add_test(tc, catalogue_reloaded);
	tcase_add_test(tc, bad_catalogue_at_start);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
