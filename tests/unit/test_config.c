/* Table-driven INI configuration (common/config.c): values and error messages. */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "../check_run.h"

struct cfg {
	char *listen;
	uint64_t max_escrow;
	uint32_t n_max;
	bool tls;
	uint32_t commit_delay_us;
	uint64_t pool;
};

static const struct mp_cfg_key keys[] = {
    {"broker", "listen", MP_CFG_STRING, offsetof(struct cfg, listen), true, "host:port", 0, 0},
    {"broker", "max_escrow", MP_CFG_U64, offsetof(struct cfg, max_escrow), false, NULL, 0,
     UINT64_MAX},
    {"limits", "n_max", MP_CFG_U32, offsetof(struct cfg, n_max), false, "units per channel", 0,
     UINT32_MAX},
    {"limits", "tls", MP_CFG_BOOL, offsetof(struct cfg, tls), false, NULL, 0, 0},
    {"limits", "commit_delay_us", MP_CFG_U32, offsetof(struct cfg, commit_delay_us), false,
     "microseconds", 0, 999999},
    {"limits", "pool", MP_CFG_U64, offsetof(struct cfg, pool), false, NULL, 1, 64},
    MP_CFG_END,
};

#define DIR_TEMPLATE "/tmp/mp-test-config-XXXXXX"
static char dir[sizeof(DIR_TEMPLATE)];
static char path[sizeof(dir) + 16];
static struct cfg cfg;
static char err[512];

static void setup(void)
{
	memcpy(dir, DIR_TEMPLATE, sizeof(dir));
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/test.conf", dir);
	memset(&cfg, 0, sizeof(cfg));
	err[0] = '\0';
}

static void teardown(void)
{
	mp_config_free(keys, &cfg);
	unlink(path);
	rmdir(dir);
}

static bool load(const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return mp_config_load(path, keys, &cfg, err, sizeof(err));
}

/* The error names path:line and contains every one of the given words. */
static void expect_error(int line, const char *word1, const char *word2)
{
	char where[sizeof(path) + 16];
	snprintf(where, sizeof(where), "%s:%d:", path, line);
	ck_assert_msg(strncmp(err, where, strlen(where)) == 0, "'%s' does not start with '%s'", err,
		      where);
	ck_assert_msg(strstr(err, word1) != NULL, "'%s' does not mention '%s'", err, word1);
	ck_assert_msg(!word2 || strstr(err, word2) != NULL, "'%s' does not mention '%s'", err,
		      word2);
}

START_TEST(good_file)
{
	ck_assert_msg(load("; a comment\n"
			   "[broker]\n"
			   "listen = 127.0.0.1:7000\n"
			   "max_escrow = 18446744073709551615\n"
			   "\n"
			   "[limits]\n"
			   "n_max = 4294967295\n"
			   "tls = yes\n"),
		      "%s", err);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:7000");
	ck_assert_uint_eq(cfg.max_escrow, UINT64_MAX);
	ck_assert_uint_eq(cfg.n_max, UINT32_MAX);
	ck_assert(cfg.tls);
}
END_TEST

START_TEST(unknown_key)
{
	ck_assert(!load("[broker]\n"
			"listen = x:1\n"
			"\n"
			"lisen = y:2\n"));
	expect_error(4, "lisen", NULL);
}
END_TEST

START_TEST(bad_u64)
{
	ck_assert(!load("[broker]\nlisten = x:1\nmax_escrow = lots\n"));
	expect_error(3, "max_escrow", "lots");
}
END_TEST

START_TEST(negative_u64)
{
	ck_assert(!load("[broker]\nlisten = x:1\nmax_escrow = -1\n"));
	expect_error(3, "max_escrow", "-1");
}
END_TEST

START_TEST(u64_out_of_range)
{
	ck_assert(!load("[broker]\nlisten = x:1\nmax_escrow = 18446744073709551616\n"));
	expect_error(3, "max_escrow", NULL);
}
END_TEST

START_TEST(u32_out_of_range)
{
	ck_assert(!load("[broker]\nlisten = x:1\n[limits]\nn_max = 4294967296\n"));
	expect_error(4, "n_max", "units per channel");
}
END_TEST

START_TEST(bad_bool)
{
	ck_assert(!load("[broker]\nlisten = x:1\n[limits]\ntls = maybe\n"));
	expect_error(4, "tls", "maybe");
}
END_TEST

START_TEST(missing_file)
{
	ck_assert(!mp_config_load("/nonexistent/micropay.conf", keys, &cfg, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/micropay.conf"));
	ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
}
END_TEST

START_TEST(missing_required_key)
{
	ck_assert(!load("[broker]\nmax_escrow = 5\n"));
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "listen"));
	ck_assert_ptr_nonnull(strstr(err, "missing"));
}
END_TEST

START_TEST(unknown_section)
{
	ck_assert(!load("[broker]\nlisten = x:1\n\n[brokr]\nmax_escrow = 5\n"));
	expect_error(5, "brokr", "max_escrow");
}
END_TEST

START_TEST(syntax_error)
{
	ck_assert(!load("[broker]\nlisten = x:1\nthis line has no equals sign\n"));
	expect_error(3, "syntax", NULL);
}
END_TEST

/* A timeval's microseconds stop at 999999: one more is refused with file:line and the range. */
START_TEST(above_range)
{
	ck_assert(!load("[broker]\nlisten = x:1\n[limits]\ncommit_delay_us = 1000000\n"));
	expect_error(4, "commit_delay_us = 1000000 is out of range", "0 .. 999999 (microseconds)");
	ck_assert_uint_eq(cfg.commit_delay_us, 0);
}
END_TEST

START_TEST(below_range)
{
	ck_assert(!load("[broker]\nlisten = x:1\n[limits]\n\npool = 0\n"));
	expect_error(5, "pool = 0 is out of range", "1 .. 64");
}
END_TEST

START_TEST(range_edges_accepted)
{
	ck_assert_msg(load("[broker]\nlisten = x:1\n[limits]\ncommit_delay_us = 999999\n"
			   "pool = 64\n"),
		      "%s", err);
	ck_assert_uint_eq(cfg.commit_delay_us, 999999);
	ck_assert_uint_eq(cfg.pool, 64);
	mp_config_free(keys, &cfg);
	ck_assert_msg(load("[broker]\nlisten = x:1\n[limits]\ncommit_delay_us = 0\npool = 1\n"),
		      "%s", err);
	ck_assert_uint_eq(cfg.pool, 1);
}
END_TEST

/* A numeric key declared without a range is a bug of the build: the loader refuses it even
 * when the file does not mention the key. */
START_TEST(numeric_key_without_range_refused)
{
	static const struct mp_cfg_key unranged[] = {
	    {"broker", "listen", MP_CFG_STRING, offsetof(struct cfg, listen), true, NULL, 0, 0},
	    {"broker", "n_max", MP_CFG_U32, offsetof(struct cfg, n_max), false, NULL, 0, 0},
	    MP_CFG_END,
	};
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("[broker]\nlisten = x:1\n", f);
	fclose(f);
	ck_assert(!mp_config_load(path, unranged, &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "[broker] n_max has no declared range") != NULL, "%s", err);
	mp_config_free(unranged, &cfg);
}
END_TEST

/* "$CREDENTIALS_DIRECTORY/..." (and the state and runtime directories) name the directory
 * systemd passes; an unset variable is an error naming the key; other values stay as they are. */
START_TEST(systemd_directories_expanded)
{
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/brokerd.service", 1);
	ck_assert_msg(load("[broker]\nlisten = $CREDENTIALS_DIRECTORY/tls.crt\n"), "%s", err);
	ck_assert_str_eq(cfg.listen, "/run/credentials/brokerd.service/tls.crt");
	setenv("STATE_DIRECTORY", "/var/lib/micropay", 1);
	ck_assert_msg(load("[broker]\nlisten = $STATE_DIRECTORY/m.db\n"), "%s", err);
	ck_assert_str_eq(cfg.listen, "/var/lib/micropay/m.db");
	ck_assert_msg(load("[broker]\nlisten = $HOME/x\n"), "%s", err);
	ck_assert_str_eq(cfg.listen, "$HOME/x");
	unsetenv("RUNTIME_DIRECTORY");
	ck_assert(!load("[broker]\nlisten = $RUNTIME_DIRECTORY/admin.sock\n"));
	expect_error(2, "$RUNTIME_DIRECTORY is not set", "[broker] listen");
	setenv("STATE_DIRECTORY", "/var/lib/a:/var/lib/b", 1);
	ck_assert(!load("[broker]\nlisten = $STATE_DIRECTORY/m.db\n"));
	expect_error(2, "a list of directories", NULL);
	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("STATE_DIRECTORY");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, good_file);
	tcase_add_test(tc, unknown_key);
	tcase_add_test(tc, bad_u64);
	tcase_add_test(tc, negative_u64);
	tcase_add_test(tc, u64_out_of_range);
	tcase_add_test(tc, u32_out_of_range);
	tcase_add_test(tc, bad_bool);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, missing_required_key);
	tcase_add_test(tc, unknown_section);
	tcase_add_test(tc, syntax_error);
	tcase_add_test(tc, above_range);
	tcase_add_test(tc, below_range);
	tcase_add_test(tc, range_edges_accepted);
	tcase_add_test(tc, numeric_key_without_range_refused);
	tcase_add_test(tc, systemd_directories_expanded);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
