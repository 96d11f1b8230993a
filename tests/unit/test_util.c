/* Hex helpers (common/util.c) and endpoint parsing (common/net.c). */
#include <check.h>
#include <string.h>

#include "net.h"
#include "util.h"
#include "../check_run.h"

START_TEST(hex_round_trip)
{
	uint8_t bytes[256], back[256];
	char hex[2 * sizeof(bytes) + 1];
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)i;
	mp_hex_encode(bytes, sizeof(bytes), hex);
	ck_assert_uint_eq(strlen(hex), 2 * sizeof(bytes));
	ck_assert(strncmp(hex, "000102", 6) == 0);
	ck_assert_str_eq(hex + 2 * 250, "fafbfcfdfeff");
	ck_assert(mp_hex_decode(hex, back, sizeof(back)));
	ck_assert_mem_eq(back, bytes, sizeof(bytes));
}
END_TEST

START_TEST(hex_upper_case_accepted)
{
	uint8_t out[2];
	ck_assert(mp_hex_decode("ABcd", out, sizeof(out)));
	ck_assert_uint_eq(out[0], 0xab);
	ck_assert_uint_eq(out[1], 0xcd);
}
END_TEST

START_TEST(hex_bad_refused)
{
	uint8_t out[2];
	ck_assert(!mp_hex_decode("abc", out, sizeof(out)));    /* odd length, short */
	ck_assert(!mp_hex_decode("abcde", out, sizeof(out)));  /* odd length, long */
	ck_assert(!mp_hex_decode("ab", out, sizeof(out)));     /* too short */
	ck_assert(!mp_hex_decode("abcdef", out, sizeof(out))); /* too long */
	ck_assert(!mp_hex_decode("abcg", out, sizeof(out)));   /* not hex */
	ck_assert(!mp_hex_decode("ab d", out, sizeof(out)));
	ck_assert(!mp_hex_decode("abcd\n", out, sizeof(out)));
	ck_assert(!mp_hex_decode("", out, sizeof(out)));
	ck_assert(!mp_hex_decode(NULL, out, sizeof(out)));
}
END_TEST

START_TEST(endpoint_good)
{
	char host[64];
	uint16_t port = 0;
	ck_assert(mp_split_endpoint("127.0.0.1:8080", host, sizeof(host), &port));
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_uint_eq(port, 8080);
	ck_assert(mp_split_endpoint("[::1]:9", host, sizeof(host), &port));
	ck_assert_str_eq(host, "::1");
	ck_assert_uint_eq(port, 9);
	ck_assert(mp_split_endpoint("broker.example:65535", host, sizeof(host), &port));
	ck_assert_str_eq(host, "broker.example");
	ck_assert_uint_eq(port, 65535);
}
END_TEST

START_TEST(endpoint_bad)
{
	static const char *const bad[] = {"host", "host:", "host:0",  "host:70000",
					  ":80",  "[]:80", "host:80x"};
	char host[64];
	uint16_t port = 4242;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!mp_split_endpoint(bad[i], host, sizeof(host), &port),
			      "'%s' accepted", bad[i]);
	ck_assert_uint_eq(port, 4242);
	/* A host that does not fit the caller's buffer. */
	ck_assert(!mp_split_endpoint("a-rather-long-host-name:80", host, 8, &port));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");
	tcase_add_test(tc, hex_round_trip);
	tcase_add_test(tc, hex_upper_case_accepted);
	tcase_add_test(tc, hex_bad_refused);
	tcase_add_test(tc, endpoint_good);
	tcase_add_test(tc, endpoint_bad);
	suite_add_tcase(s, tc);

	return mp_check_run(s);
}
