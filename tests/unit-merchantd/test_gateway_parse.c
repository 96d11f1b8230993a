/* The gateway's parsers (merchantd/gateway_routes.c, common/gateway_header.c): a price list
 * parses into its routes and matches exact paths, prefixes and any method, the first match
 * winning; each malformed entry (no price, a relative path, an unknown method, a negative,
 * trailing or overflowing price, more than GW_ROUTES_MAX routes) is refused with a message and
 * leaves no routes. An X-Payment value round-trips; each malformed one (not base64, not an
 * object, a wrong scheme, a short channel, j out of range, w not hex, no ref, too long) is
 * refused naming the field. A request's reference is SHA-256 of "mpay1-http", method, URI and
 * SHA-256 of the body, NUL-separated, and changes with each of them. */
#include <check.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_header.h"
#include "gateway_routes.h"
#include "util.h"
#include "../check_run.h"

static char err[1024];

/* --- routes --- */

static void parse_ok(const char *spec, struct gw_routes *rs)
{
	err[0] = '\0';
	ck_assert_msg(gw_routes_parse(spec, rs, err, sizeof(err)), "'%s': %s", spec, err);
}

/* The price matching method + path, or -1 when no route matches. */
static long long price_of(const struct gw_routes *rs, const char *method, const char *path)
{
	const struct gw_route *r = gw_routes_match(rs, method, path);
	return r ? (long long)r->price : -1;
}

START_TEST(routes_match)
{
	struct gw_routes rs = {0};
	parse_ok("GET /quote 5; POST /api/* 3; * /fail* 2; GET /free* 0", &rs);
	ck_assert_uint_eq(rs.n, 4);
	ck_assert_str_eq(rs.r[0].method, "GET");
	ck_assert_str_eq(rs.r[0].path, "/quote");
	ck_assert(!rs.r[0].prefix);
	ck_assert_uint_eq(rs.r[0].price, 5);
	ck_assert_str_eq(rs.r[1].method, "POST");
	ck_assert_str_eq(rs.r[1].path, "/api/");
	ck_assert(rs.r[1].prefix);
	ck_assert_uint_eq(rs.r[1].price, 3);
	ck_assert_str_eq(rs.r[2].method, "*");
	ck_assert_str_eq(rs.r[2].path, "/fail");
	ck_assert(rs.r[2].prefix);
	ck_assert_uint_eq(rs.r[2].price, 2);
	ck_assert_str_eq(rs.r[3].method, "GET");
	ck_assert_str_eq(rs.r[3].path, "/free");
	ck_assert(rs.r[3].prefix);
	ck_assert_uint_eq(rs.r[3].price, 0);

	ck_assert_int_eq(price_of(&rs, "GET", "/quote"), 5);
	ck_assert_ptr_eq(gw_routes_match(&rs, "GET", "/quote"), &rs.r[0]);
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/quote/x")); /* exact */
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/quot"));
	ck_assert_ptr_null(gw_routes_match(&rs, "POST", "/quote")); /* GET only */
	ck_assert_int_eq(price_of(&rs, "POST", "/api/v1"), 3);	    /* prefix */
	ck_assert_int_eq(price_of(&rs, "POST", "/api/"), 3);
	ck_assert_ptr_null(gw_routes_match(&rs, "POST", "/api")); /* the prefix is "/api/" */
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/api/v1"));
	ck_assert_int_eq(price_of(&rs, "DELETE", "/fail/x"), 2); /* any method */
	ck_assert_int_eq(price_of(&rs, "GET", "/fail"), 2);
	ck_assert_int_eq(price_of(&rs, "PATCH", "/failure"), 2);
	const struct gw_route *free_route = gw_routes_match(&rs, "GET", "/free");
	ck_assert_ptr_eq(free_route, &rs.r[3]);
	ck_assert_uint_eq(free_route->price, 0);
	ck_assert_int_eq(price_of(&rs, "GET", "/free/book"), 0);
	ck_assert_ptr_null(gw_routes_match(&rs, "POST", "/free"));
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/"));
	gw_routes_free(&rs);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert_ptr_null(rs.r);
}
END_TEST

START_TEST(routes_first_match_wins)
{
	struct gw_routes rs = {0};
	/* the exact route first: it prices /api/special, the prefix prices the rest */
	parse_ok("GET /api/special 7; * /api/* 3", &rs);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_int_eq(price_of(&rs, "GET", "/api/special"), 7);
	ck_assert_ptr_eq(gw_routes_match(&rs, "GET", "/api/special"), &rs.r[0]);
	ck_assert_int_eq(price_of(&rs, "POST", "/api/special"), 3);
	ck_assert_int_eq(price_of(&rs, "GET", "/api/other"), 3);
	/* the same two the other way round: the prefix shadows the exact route */
	parse_ok("* /api/* 3; GET /api/special 7", &rs);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_int_eq(price_of(&rs, "GET", "/api/special"), 3);
	ck_assert_ptr_eq(gw_routes_match(&rs, "GET", "/api/special"), &rs.r[0]);
	/* two prefixes: the shorter first takes everything */
	parse_ok("GET /a* 1; GET /ab* 2", &rs);
	ck_assert_int_eq(price_of(&rs, "GET", "/abc"), 1);
	parse_ok("GET /ab* 2; GET /a* 1", &rs);
	ck_assert_int_eq(price_of(&rs, "GET", "/abc"), 2);
	ck_assert_int_eq(price_of(&rs, "GET", "/ax"), 1);
	gw_routes_free(&rs);
}
END_TEST

START_TEST(routes_empty)
{
	struct gw_routes rs = {0};
	parse_ok("", &rs);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/"));
	gw_routes_free(&rs);

	parse_ok("GET /x 1", &rs); /* then an empty spec empties it */
	ck_assert_uint_eq(rs.n, 1);
	parse_ok(";  ;", &rs);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/x"));
	gw_routes_free(&rs);

	parse_ok(NULL, &rs);
	ck_assert_uint_eq(rs.n, 0);
	gw_routes_free(&rs);

	/* blanks and empty entries around real ones are skipped */
	parse_ok(" ; GET\t/x  1 ;; \t; POST /y 2;", &rs);
	ck_assert_uint_eq(rs.n, 2);
	ck_assert_int_eq(price_of(&rs, "GET", "/x"), 1);
	ck_assert_int_eq(price_of(&rs, "POST", "/y"), 2);
	gw_routes_free(&rs);
}
END_TEST

/* in_err: a part of err's message; names: how it quotes the entry (NULL: not checked) */
static const struct {
	const char *spec, *in_err, *names;
} bad_routes[] = {
    {"GET /x", "want METHOD PATH PRICE", NULL},
    {"GET", "want METHOD PATH PRICE", NULL},
    {"GET x 5", "PATH starts with /", "route 'GET x 5'"},
    {"FETCH /x 5", "METHOD is GET", "route 'FETCH /x 5'"},
    {"get /x 5", "METHOD is GET", "route 'get /x 5'"},
    {"GET /x -1", "PRICE is a whole number", "route 'GET /x -1'"},
    {"GET /x +1", "PRICE is a whole number", "route 'GET /x +1'"},
    {"GET /x 5x", "PRICE is a whole number", "route 'GET /x 5x'"},
    {"GET /x 5 extra", "want METHOD PATH PRICE", NULL},
    {"GET /x 99999999999999999999999", "PRICE is a whole number",
     "route 'GET /x 99999999999999999999999'"},
    {"GET /ok 1; GET /x", "want METHOD PATH PRICE", NULL}, /* a bad entry after a good one */
};

START_TEST(routes_refused)
{
	const char *spec = bad_routes[_i].spec;
	struct gw_routes rs = {0};
	parse_ok("GET /old 1; POST /older* 2", &rs); /* a failure must empty these */
	ck_assert_uint_eq(rs.n, 2);
	err[0] = '\0';
	ck_assert_msg(!gw_routes_parse(spec, &rs, err, sizeof(err)), "'%s' accepted", spec);
	ck_assert_msg(err[0] != '\0', "'%s': no message", spec);
	ck_assert_msg(strstr(err, bad_routes[_i].in_err), "'%s': '%s'", spec, err);
	ck_assert_msg(strstr(err, "route '"), "'%s': '%s' names no route", spec, err);
	if (bad_routes[_i].names)
		ck_assert_msg(strstr(err, bad_routes[_i].names), "'%s': '%s'", spec, err);
	ck_assert_uint_eq(rs.n, 0);
	ck_assert_ptr_null(rs.r);
	ck_assert_ptr_null(gw_routes_match(&rs, "GET", "/old"));
	gw_routes_free(&rs); /* harmless on the emptied struct */
}
END_TEST

/* n entries "GET /r<i> <i>;" */
static char *many_routes(size_t n)
{
	size_t cap = n * 32 + 1, len = 0;
	char *s = malloc(cap);
	ck_assert_ptr_nonnull(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "GET /r%zu %zu;", i, i);
	return s;
}

START_TEST(routes_too_many)
{
	struct gw_routes rs = {0};
	char *spec = many_routes(GW_ROUTES_MAX);
	parse_ok(spec, &rs);
	ck_assert_uint_eq(rs.n, GW_ROUTES_MAX);
	ck_assert_int_eq(price_of(&rs, "GET", "/r255"), 255);
	free(spec);

	spec = many_routes(GW_ROUTES_MAX + 1);
	err[0] = '\0';
	ck_assert(!gw_routes_parse(spec, &rs, err, sizeof(err)));
	ck_assert_str_eq(err, "more than 256 routes");
	ck_assert_uint_eq(rs.n, 0);
	ck_assert_ptr_null(rs.r);
	free(spec);
	gw_routes_free(&rs);
}
END_TEST

/* --- X-Payment --- */

static void sample_payment(struct gw_payment *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < sizeof(p->channel_id); i++)
		p->channel_id[i] = (uint8_t)(0x10 + i);
	for (size_t i = 0; i < sizeof(p->w); i++)
		p->w[i] = (uint8_t)(0xa0 + i);
	for (size_t i = 0; i < sizeof(p->ref); i++)
		p->ref[i] = (uint8_t)(0xff - 3 * i);
	p->seg_seq = 0xdeadbeef;
	p->j = 0x12345678;
}

static void assert_payment_eq(const struct gw_payment *a, const struct gw_payment *b)
{
	ck_assert_mem_eq(a->channel_id, b->channel_id, sizeof(a->channel_id));
	ck_assert_uint_eq(a->seg_seq, b->seg_seq);
	ck_assert_uint_eq(a->j, b->j);
	ck_assert_mem_eq(a->w, b->w, sizeof(a->w));
	ck_assert_mem_eq(a->ref, b->ref, sizeof(a->ref));
}

START_TEST(payment_round_trip)
{
	struct gw_payment p, q;
	sample_payment(&p);
	char *v = gw_payment_encode(&p);
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_gt(strlen(v), 0);
	ck_assert_uint_le(strlen(v), GW_HEADER_MAX);
	memset(&q, 0x55, sizeof(q));
	const char *why = NULL;
	ck_assert_msg(gw_payment_parse(v, &q, &why), "%s", why ? why : "?");
	assert_payment_eq(&p, &q);
	free(v);

	/* the edges of the integers */
	p.seg_seq = 0;
	p.j = UINT32_MAX;
	v = gw_payment_encode(&p);
	ck_assert_ptr_nonnull(v);
	memset(&q, 0, sizeof(q));
	ck_assert_msg(gw_payment_parse(v, &q, &why), "%s", why ? why : "?");
	assert_payment_eq(&p, &q);
	ck_assert_uint_eq(q.j, UINT32_MAX);
	free(v);
}
END_TEST

/* The JSON object gw_payment_encode would send for p. */
static json_t *payment_object(const struct gw_payment *p)
{
	char channel[2 * MP_ID_LEN + 1], w[65], ref[2 * GW_REF_LEN + 1];
	mp_hex_encode(p->channel_id, MP_ID_LEN, channel);
	mp_hex_encode(p->w, sizeof(p->w), w);
	mp_hex_encode(p->ref, GW_REF_LEN, ref);
	json_t *o =
	    json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "scheme", GW_SCHEME, "channel", channel,
		      "seg", (json_int_t)p->seg_seq, "j", (json_int_t)p->j, "w", w, "ref", ref);
	ck_assert_ptr_nonnull(o);
	return o;
}

static void assert_refused(const char *value, const char *in_why)
{
	struct gw_payment q;
	const char *why = NULL;
	ck_assert_msg(!gw_payment_parse(value, &q, &why), "'%.80s' accepted", value);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, in_why), "'%.80s': '%s' does not mention '%s'", value, why,
		      in_why);
}

/* Encode o (released) and check the value is refused, why mentioning in_why. */
static void assert_object_refused(json_t *o, const char *in_why)
{
	char *v = gw_header_value(o);
	ck_assert_ptr_nonnull(v);
	assert_refused(v, in_why);
	free(v);
}

START_TEST(payment_object_is_valid)
{
	/* the unmodified object parses: the refusals below are each due to their change */
	struct gw_payment p, q;
	sample_payment(&p);
	char *v = gw_header_value(payment_object(&p));
	ck_assert_ptr_nonnull(v);
	const char *why = NULL;
	ck_assert_msg(gw_payment_parse(v, &q, &why), "%s", why ? why : "?");
	assert_payment_eq(&p, &q);
	char *enc = gw_payment_encode(&p);
	ck_assert_str_eq(v, enc);
	free(enc);
	free(v);
}
END_TEST

START_TEST(payment_refused)
{
	struct gw_payment p;
	sample_payment(&p);
	char hex31[32], hex64_bad[65];
	memset(hex31, 'a', 31);
	hex31[31] = '\0';
	memset(hex64_bad, 'a', 64);
	hex64_bad[10] = 'g';
	hex64_bad[64] = '\0';

	assert_refused("@@@@", "not base64 of a JSON object");
	assert_refused("", "not base64 of a JSON object");
	assert_refused("abc", "not base64 of a JSON object"); /* not a multiple of 4 */

	json_t *arr = json_pack("[s, i]", "mpay1", 1);
	ck_assert_ptr_nonnull(arr);
	assert_object_refused(arr, "not base64 of a JSON object");

	json_t *o = payment_object(&p);
	json_object_set_new(o, "scheme", json_string("mpay2"));
	assert_object_refused(o, "scheme");

	o = payment_object(&p);
	json_object_del(o, "scheme");
	assert_object_refused(o, "scheme");

	o = payment_object(&p);
	json_object_set_new(o, "channel", json_string(hex31));
	assert_object_refused(o, "channel");

	o = payment_object(&p);
	json_object_set_new(o, "j", json_integer(-1));
	assert_object_refused(o, "j must be");

	o = payment_object(&p);
	json_object_set_new(o, "j", json_integer((json_int_t)UINT32_MAX + 1));
	assert_object_refused(o, "j must be");

	o = payment_object(&p);
	json_object_set_new(o, "j", json_string("7"));
	assert_object_refused(o, "j must be");

	o = payment_object(&p);
	json_object_set_new(o, "seg", json_integer(-1));
	assert_object_refused(o, "seg");

	o = payment_object(&p);
	json_object_set_new(o, "w", json_string(hex64_bad));
	assert_object_refused(o, "w is not");

	o = payment_object(&p);
	json_object_del(o, "ref");
	assert_object_refused(o, "ref");
}
END_TEST

START_TEST(payment_too_long)
{
	/* pad a valid object with an unknown field up to exactly GW_HEADER_MAX (accepted), then
	 * one base64 quantum more (refused) */
	struct gw_payment p, q;
	sample_payment(&p);
	bool at_max = false, over_max = false;
	char pad[GW_HEADER_MAX];
	for (size_t k = 1; k < sizeof(pad) && !over_max; k++) {
		memset(pad, 'x', k);
		pad[k] = '\0';
		json_t *o = payment_object(&p);
		json_object_set_new(o, "pad", json_string(pad));
		char *v = gw_header_value(o);
		ck_assert_ptr_nonnull(v);
		size_t len = strlen(v);
		const char *why = NULL;
		if (len == GW_HEADER_MAX) {
			ck_assert_msg(gw_payment_parse(v, &q, &why), "%s", why ? why : "?");
			assert_payment_eq(&p, &q);
			at_max = true;
		} else if (len > GW_HEADER_MAX) {
			ck_assert_uint_eq(len, GW_HEADER_MAX + 4);
			assert_refused(v, "not base64 of a JSON object");
			over_max = true;
		}
		free(v);
	}
	ck_assert(at_max);
	ck_assert(over_max);
}
END_TEST

/* --- the request's reference --- */

/* SHA-256("mpay1-http\0" || method || "\0" || uri || "\0" || SHA-256(body)), one buffer. */
static void expected_ref(const char *method, const char *uri, const void *body, size_t len,
			 uint8_t out[32])
{
	static const char tag[] = "mpay1-http"; /* sizeof counts its NUL */
	uint8_t body_hash[32];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ck_assert_ptr_nonnull(ctx);
	ck_assert(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL));
	if (len)
		ck_assert(EVP_DigestUpdate(ctx, body, len));
	ck_assert(EVP_DigestFinal_ex(ctx, body_hash, &n));
	ck_assert_uint_eq(n, 32);

	size_t ml = strlen(method), ul = strlen(uri);
	size_t total = sizeof(tag) + ml + 1 + ul + 1 + sizeof(body_hash);
	uint8_t *buf = malloc(total), *at = buf;
	ck_assert_ptr_nonnull(buf);
	memcpy(at, tag, sizeof(tag));
	at += sizeof(tag);
	memcpy(at, method, ml);
	at += ml;
	*at++ = 0;
	memcpy(at, uri, ul);
	at += ul;
	*at++ = 0;
	memcpy(at, body_hash, sizeof(body_hash));
	at += sizeof(body_hash);
	ck_assert_uint_eq((size_t)(at - buf), total);

	ck_assert(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL));
	ck_assert(EVP_DigestUpdate(ctx, buf, total));
	ck_assert(EVP_DigestFinal_ex(ctx, out, &n));
	ck_assert_uint_eq(n, 32);
	free(buf);
	EVP_MD_CTX_free(ctx);
}

static void ref_of(const char *method, const char *uri, const void *body, size_t len,
		   uint8_t out[GW_REF_LEN])
{
	ck_assert(gw_request_ref(method, uri, body, len, out));
}

START_TEST(request_ref)
{
	static const char body[] = "{\"q\":\"tea\"}";
	const size_t blen = sizeof(body) - 1;
	uint8_t a[GW_REF_LEN], b[GW_REF_LEN], want[32];

	ref_of("POST", "/api/v1?x=1", body, blen, a);
	ref_of("POST", "/api/v1?x=1", body, blen, b);
	ck_assert_mem_eq(a, b, GW_REF_LEN); /* deterministic */
	expected_ref("POST", "/api/v1?x=1", body, blen, want);
	ck_assert_mem_eq(a, want, GW_REF_LEN);

	ref_of("PUT", "/api/v1?x=1", body, blen, b); /* method */
	ck_assert_mem_ne(a, b, GW_REF_LEN);
	expected_ref("PUT", "/api/v1?x=1", body, blen, want);
	ck_assert_mem_eq(b, want, GW_REF_LEN);

	ref_of("POST", "/api/v2?x=1", body, blen, b); /* path */
	ck_assert_mem_ne(a, b, GW_REF_LEN);

	ref_of("POST", "/api/v1?x=2", body, blen, b); /* only the query */
	ck_assert_mem_ne(a, b, GW_REF_LEN);
	expected_ref("POST", "/api/v1?x=2", body, blen, want);
	ck_assert_mem_eq(b, want, GW_REF_LEN);

	ref_of("POST", "/api/v1", body, blen, b); /* no query */
	ck_assert_mem_ne(a, b, GW_REF_LEN);

	ref_of("POST", "/api/v1?x=1", "{\"q\":\"tee\"}", blen, b); /* body */
	ck_assert_mem_ne(a, b, GW_REF_LEN);
	expected_ref("POST", "/api/v1?x=1", "{\"q\":\"tee\"}", blen, want);
	ck_assert_mem_eq(b, want, GW_REF_LEN);

	ref_of("POST", "/api/v1?x=1", body, blen - 1, b); /* body's length */
	ck_assert_mem_ne(a, b, GW_REF_LEN);

	/* the NUL separators: moving a byte between method and uri changes the reference */
	ref_of("GET", "/a", NULL, 0, a);
	ref_of("GE", "T/a", NULL, 0, b);
	ck_assert_mem_ne(a, b, GW_REF_LEN);
}
END_TEST

START_TEST(request_ref_empty_body)
{
	/* SHA-256 of nothing, to pin the body hash expected_ref uses for an empty body */
	static const char empty_sha256[] =
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	uint8_t h[32], want_h[32];
	unsigned int n = 0;
	ck_assert(EVP_Digest("", 0, h, &n, EVP_sha256(), NULL));
	ck_assert(mp_hex_decode(empty_sha256, want_h, sizeof(want_h)));
	ck_assert_mem_eq(h, want_h, sizeof(h));

	uint8_t a[GW_REF_LEN], b[GW_REF_LEN], want[32];
	ref_of("GET", "/quote?sym=EUR", NULL, 0, a);
	ref_of("GET", "/quote?sym=EUR", "", 0, b); /* NULL or not: the same empty body */
	ck_assert_mem_eq(a, b, GW_REF_LEN);
	ref_of("GET", "/quote?sym=EUR", "ignored", 0, b); /* len 0: nothing is read */
	ck_assert_mem_eq(a, b, GW_REF_LEN);
	expected_ref("GET", "/quote?sym=EUR", NULL, 0, want);
	ck_assert_mem_eq(a, want, GW_REF_LEN);

	ref_of("GET", "/quote?sym=EUR", "\0", 1, b); /* one NUL byte is not an empty body */
	ck_assert_mem_ne(a, b, GW_REF_LEN);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("merchantd_gateway_parse");
	TCase *tc = tcase_create("gateway_parse");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, routes_match);
	tcase_add_test(tc, routes_first_match_wins);
	tcase_add_test(tc, routes_empty);
	tcase_add_loop_test(tc, routes_refused, 0,
			    (int)(sizeof(bad_routes) / sizeof(bad_routes[0])));
	tcase_add_test(tc, routes_too_many);
	tcase_add_test(tc, payment_round_trip);
	tcase_add_test(tc, payment_object_is_valid);
	tcase_add_test(tc, payment_refused);
	tcase_add_test(tc, payment_too_long);
	tcase_add_test(tc, request_ref);
	tcase_add_test(tc, request_ref_empty_body);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return mp_check_run(suite());
}
