/* test_wire.c - unit tests of subject mapping, path decoding, heads and the
 * v1 message encoding (no connection needed: nats.c messages stand alone). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void expect_subject(const char *method, const char *path, const char *want)
{
    char out[512];
    assert_int_equal(natshttp_subject_compat(out, sizeof out, "demo.site", method, path, strlen(path)),
                     NATSHTTP_OK);
    assert_string_equal(out, want);
}

/* The examples of wire-v1.md, exactly. */
static void subject_v1_examples(void **state)
{
    expect_subject("GET", "/hello/world", "demo.site.hello.world.GET");
    expect_subject("GET", "/", "demo.site.GET");
    expect_subject("GET", "/nar/abc.nar.xz", "demo.site.nar.abc.nar.xz.GET");
    expect_subject("HEAD", "/abc.narinfo", "demo.site.abc.narinfo.HEAD");
    expect_subject("PUT", "/nix-cache-info", "demo.site.nix-cache-info.PUT");
}

/* What v1 cannot carry gets escaped into a valid subject. */
static void subject_escapes(void **state)
{
    expect_subject("GET", "/dir/", "demo.site.dir.%.GET");
    expect_subject("GET", "//", "demo.site.%.%.GET");
    expect_subject("GET", "/a b", "demo.site.a%20b.GET");
    expect_subject("GET", "/a/*/b", "demo.site.a.%2A.b.GET");
    expect_subject("GET", "/>", "demo.site.%3E.GET");
    expect_subject("GET", "/100%", "demo.site.100%25.GET");
    expect_subject("GET", "/\t\x7f", "demo.site.%09%7F.GET");
    expect_subject("GET", "/caf\xc3\xa9", "demo.site.caf%C3%A9.GET");
    expect_subject("GET", "/a..b", "demo.site.a.%.b.GET");
}

static void subject_errors(void **state)
{
    char out[32];
    assert_int_equal(natshttp_subject_compat(out, sizeof out, "p", "BREW", "/", 1), NATSHTTP_BAD_METHOD);
    assert_int_equal(natshttp_subject_compat(out, sizeof out, "p", "GET", "x", 1), NATSHTTP_INVALID);
    const char *longp = "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_int_equal(natshttp_subject_compat(out, sizeof out, "p", "GET", longp, strlen(longp)),
                     NATSHTTP_URI_TOO_LONG);
    /* exactly fitting */
    assert_int_equal(natshttp_subject_compat(out, 11, "p", "GET", "/abcd", 5), NATSHTTP_OK);
    assert_string_equal(out, "p.abcd.GET");
    assert_int_equal(natshttp_subject_compat(out, 11, "p", "GET", "/abcde", 6), NATSHTTP_URI_TOO_LONG);
}

/* Every generated subject is valid: no empty token, no whitespace, no wildcard. */
static void subject_always_valid(void **state)
{
    srand(7);
    char path[64], out[1024];
    for (int n = 0; n < 20000; n++) {
        size_t len = 1 + (size_t)(rand() % 40);
        path[0] = '/';
        for (size_t i = 1; i < len; i++) {
            static const char pick[] = "/./%*> \tab\x01\xff";
            path[i] = rand() % 3 ? pick[rand() % (sizeof pick - 1)] : (char)(rand() % 256);
            if (path[i] == 0)
                path[i] = 'z';
        }
        assert_int_equal(natshttp_subject_compat(out, sizeof out, "p", "GET", path, len), NATSHTTP_OK);
        size_t olen = strlen(out);
        assert_true(olen > 0 && out[0] != '.' && out[olen - 1] != '.');
        for (size_t i = 0; i < olen; i++) {
            unsigned char c = (unsigned char)out[i];
            assert_true(c > 0x20 && c < 0x7f && c != '*' && c != '>');
            if (c == '.')
                assert_true(out[i + 1] != '.');
        }
    }
}

static void path_decode_once(void **state)
{
    char out[64];
    size_t n;
    natshttp_path_decode("/a%20b%2Fc%252e%zz%4", 20, out, &n);
    assert_string_equal(out, "/a b/c%2e%zz%4");
    assert_int_equal(n, 14);
    natshttp_path_decode("/%00x", 5, out, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "/\0x", 3);
}

static void head_fields(void **state)
{
    natshttp_head *h;
    assert_int_equal(natshttp_head_new(&h, 0), NATSHTTP_OK);
    assert_int_equal(natshttp_head_add(h, "Set-Cookie", "a=1; Path=/"), NATSHTTP_OK);
    assert_int_equal(natshttp_head_add(h, "set-cookie", "b=2; Expires=Thu, 01 Jan 1970 00:00:01 GMT"), NATSHTTP_OK);
    assert_int_equal(natshttp_head_add(h, "X-Empty", ""), NATSHTTP_OK);
    assert_int_equal(natshttp_head_add(h, "Bad Name", "x"), NATSHTTP_BAD_REQUEST);
    assert_int_equal(natshttp_head_add(h, "X", "a\r\nInjected: 1"), NATSHTTP_BAD_REQUEST);
    assert_int_equal(natshttp_head_count(h), 3);
    const char *n, *v;
    natshttp_head_at(h, 1, &n, &v);
    assert_string_equal(n, "set-cookie");
    assert_string_equal(v, "b=2; Expires=Thu, 01 Jan 1970 00:00:01 GMT");
    assert_int_equal(natshttp_head_find(h, "SET-COOKIE", 1), 1);
    assert_string_equal(natshttp_head_get(h, "x-empty"), "");
    assert_int_equal(natshttp_head_remove(h, "Set-Cookie"), 2);
    assert_int_equal(natshttp_head_count(h), 1);
    natshttp_head_free(h);
}

static void head_bounded(void **state)
{
    natshttp_head *h;
    assert_int_equal(natshttp_head_new(&h, 100), NATSHTTP_OK);
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(natshttp_head_add(h, "A", big), NATSHTTP_HEAD_TOO_LARGE);
    big[80] = 0;
    assert_int_equal(natshttp_head_add(h, "A", big), NATSHTTP_OK);
    assert_int_equal(natshttp_head_add(h, "B", big), NATSHTTP_HEAD_TOO_LARGE);
    natshttp_head_free(h);
}

static void content_length_rules(void **state)
{
    static const struct {
        const char *a, *b;
        natshttp_status st;
        int64_t want;
    } cases[] = {
        {"5", NULL, NATSHTTP_OK, 5},          {"5, 5", NULL, NATSHTTP_OK, 5},
        {"5", "5", NATSHTTP_OK, 5},           {"0", "40", NATSHTTP_BAD_REQUEST, 0},
        {"+5", NULL, NATSHTTP_BAD_REQUEST, 0}, {"0x10", NULL, NATSHTTP_BAD_REQUEST, 0},
        {"5, 6", NULL, NATSHTTP_BAD_REQUEST, 0}, {"-1", NULL, NATSHTTP_BAD_REQUEST, 0},
        {"", NULL, NATSHTTP_BAD_REQUEST, 0},  {"99999999999999999999", NULL, NATSHTTP_BAD_REQUEST, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        natshttp_head *h;
        natshttp_head_new(&h, 0);
        natshttp_head_add(h, "Content-Length", cases[i].a);
        if (cases[i].b)
            natshttp_head_add(h, "content-length", cases[i].b);
        int64_t got = -7;
        assert_int_equal(natshttp_head_content_length(h, &got), cases[i].st);
        if (cases[i].st == NATSHTTP_OK)
            assert_int_equal(got, cases[i].want);
        natshttp_head_free(h);
    }
    natshttp_head *h;
    natshttp_head_new(&h, 0);
    int64_t got = 0;
    assert_int_equal(natshttp_head_content_length(h, &got), NATSHTTP_OK);
    assert_int_equal(got, -1);
    natshttp_head_add(h, "Transfer-Encoding", "gzip, Chunked");
    assert_true(natshttp_head_is_chunked(h));
    natshttp_head_free(h);
}

/* BR-10: hop-by-hop fields, including every name listed in any Connection field. */
static void hop_by_hop(void **state)
{
    natshttp_head *h;
    natshttp_head_new(&h, 0);
    natshttp_head_add(h, "Connection", "Upgrade, HTTP2-Settings, X-Secret");
    natshttp_head_add(h, "Connection", "");
    natshttp_head_add(h, "connection", "X-Forwarded-For");
    natshttp_head_add(h, "Upgrade", "h2c");
    natshttp_head_add(h, "HTTP2-Settings", "AAMAAABkAAQAAP__");
    natshttp_head_add(h, "Keep-Alive", "timeout=5");
    natshttp_head_add(h, "TE", "trailers");
    natshttp_head_add(h, "Proxy-Connection", "keep-alive");
    natshttp_head_add(h, "Proxy-Authorization", "Basic Zm9vOmJhcg==");
    natshttp_head_add(h, "X-Secret", "s3cr3t");
    natshttp_head_add(h, "X-Forwarded-For", "10.0.0.1");
    natshttp_head_add(h, "Accept", "a, b");
    natshttp_head_strip_hop_by_hop(h);
    assert_int_equal(natshttp_head_count(h), 1);
    const char *n, *v;
    natshttp_head_at(h, 0, &n, &v);
    assert_string_equal(n, "Accept");
    assert_string_equal(v, "a, b");
    natshttp_head_free(h);
}

static const char *hdr(natsMsg *m, const char *k)
{
    const char *v = NULL;
    natsMsgHeader_Get(m, k, &v);
    return v;
}

static const nh_route compat_demo = {"demo.site", NATSHTTP_LAYOUT_COMPAT, false};
static const nh_route native_p = {"p", NATSHTTP_LAYOUT_NATIVE, false};

/* A request as a v1 message and back: subject, X-Path, X-Query, repeated fields. */
static void request_round_trip(void **state)
{
    natshttp_head *req, *back;
    natshttp_head_new(&req, 0);
    natshttp_head_set_request(req, "GET", "/files/a%20b%2Bc", "q=1+2&x=%2B");
    natshttp_head_add(req, "Cookie", "a=1");
    natshttp_head_add(req, "Cookie", "b=2");
    natshttp_head_add(req, "X-Path", "/forged");   /* a client cannot set wire fields */
    natsMsg *m = NULL;
    assert_int_equal(nh_wire_request_msg(&m, &compat_demo, req, "_INBOX.x.1", false, 0, NULL, 0), NATSHTTP_OK);
    assert_string_equal(natsMsg_GetSubject(m), "demo.site.files.a%20b+c.GET");
    assert_string_equal(hdr(m, "X-Path"), "/files/a b+c");
    assert_string_equal(hdr(m, "X-Query"), "q=1+2&x=%2B");
    assert_string_equal(hdr(m, "Natshttp-Raw-Path"), "/files/a%20b%2Bc");
    const char **vals;
    int nvals;
    assert_int_equal(natsMsgHeader_Values(m, "Cookie", &vals, &nvals), NATS_OK);
    assert_int_equal(nvals, 2);
    assert_string_equal(vals[0], "a=1");
    assert_string_equal(vals[1], "b=2");
    free((void *)vals);

    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(nh_wire_parse_request(m, &compat_demo, back, &raw, &dec, &dlen), NATSHTTP_OK);
    assert_string_equal(raw, "/files/a%20b%2Bc");
    assert_string_equal(dec, "/files/a b+c");
    assert_string_equal(natshttp_head_method(back), "GET");
    assert_string_equal(natshttp_head_query(back), "q=1+2&x=%2B");
    assert_null(natshttp_head_get(back, "X-Path"));
    assert_null(natshttp_head_get(back, "Natshttp-Raw-Path"));
    assert_int_equal(natshttp_head_find(back, "Cookie", 0) >= 0, 1);
    free(raw);
    free(dec);
    natshttp_head_free(back);
    natsMsg_Destroy(m);
    natshttp_head_free(req);
}

/* The subject is the authority: an X-Path that does not map to the subject is refused. */
static void forged_path_refused(void **state)
{
    natsMsg *m = NULL;
    natsMsg_Create(&m, "demo.site.public.GET", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "X-Path", "/secret");
    natshttp_head *back;
    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen;
    assert_int_equal(nh_wire_parse_request(m, &compat_demo, back, &raw, &dec, &dlen), NATSHTTP_BAD_PATH);
    natsMsg_Destroy(m);

    /* a raw path that does not decode to X-Path */
    natsMsg_Create(&m, "demo.site.public.GET", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "X-Path", "/public");
    natsMsgHeader_Set(m, "Natshttp-Raw-Path", "/secret");
    assert_int_equal(nh_wire_parse_request(m, &compat_demo, back, &raw, &dec, &dlen), NATSHTTP_BAD_PATH);
    natsMsg_Destroy(m);

    /* method from the subject must be one of the nine */
    natsMsg_Create(&m, "demo.site.public.BREW", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "X-Path", "/public");
    assert_int_equal(nh_wire_parse_request(m, &compat_demo, back, &raw, &dec, &dlen), NATSHTTP_BAD_METHOD);
    natsMsg_Destroy(m);

    /* no X-Path at all */
    natsMsg_Create(&m, "demo.site.GET", "_INBOX.x.1", NULL, 0);
    assert_int_equal(nh_wire_parse_request(m, &compat_demo, back, &raw, &dec, &dlen), NATSHTTP_BAD_REQUEST);
    natsMsg_Destroy(m);
    natshttp_head_free(back);
}

/* The peer's chunking rule: Transfer-Encoding, or head plus Content-Length over max payload. */
static void chunking_rule(void **state)
{
    natsMsg *m = NULL;
    bool chunked = true;
    natsMsg_Create(&m, "s.GET", "r", NULL, 0);
    natsMsgHeader_Set(m, "X-Path", "/");
    assert_int_equal(nh_wire_request_is_chunked(m, 1000, &chunked), NATSHTTP_OK);
    assert_false(chunked);
    size_t hs = nh_wire_header_size(m);
    assert_int_equal(hs, strlen("NATS/1.0\r\nX-Path: /\r\n\r\n"));
    char num[32];
    snprintf(num, sizeof num, "%zu", 1000 - hs - strlen("s.GET") - 1);
    natsMsgHeader_Set(m, "Content-Length", num);   /* grows the head: now over by a little */
    assert_int_equal(nh_wire_request_is_chunked(m, 1000, &chunked), NATSHTTP_OK);
    assert_true(chunked);
    natsMsgHeader_Set(m, "Content-Length", "1");
    assert_int_equal(nh_wire_request_is_chunked(m, 1000, &chunked), NATSHTTP_OK);
    assert_false(chunked);
    natsMsgHeader_Set(m, "Transfer-Encoding", "chunked");
    assert_int_equal(nh_wire_request_is_chunked(m, 1000, &chunked), NATSHTTP_OK);
    assert_true(chunked);
    natsMsgHeader_Set(m, "Content-Length", "12abc");
    assert_int_equal(nh_wire_request_is_chunked(m, 1000, &chunked), NATSHTTP_BAD_REQUEST);
    natsMsg_Destroy(m);
}

static void response_round_trip(void **state)
{
    natshttp_head *resp, *back;
    natshttp_head_new(&resp, 0);
    natshttp_head_set_status(resp, 404, NULL);
    natshttp_head_add(resp, "Set-Cookie", "a=1");
    natshttp_head_add(resp, "Set-Cookie", "b=2");
    natsMsg *m = NULL;
    assert_int_equal(nh_wire_response_msg(&m, "_INBOX.x.1", NULL, resp, 12, false, false, NULL, 0), NATSHTTP_OK);
    assert_string_equal(hdr(m, "X-Status-Code"), "404");
    assert_string_equal(hdr(m, "X-Status"), "Not Found");
    assert_string_equal(hdr(m, "Content-Length"), "12");
    natshttp_head_new(&back, 0);
    assert_int_equal(nh_wire_parse_response(m, back), NATSHTTP_OK);
    assert_int_equal(natshttp_head_status(back), 404);
    assert_null(natshttp_head_get(back, "X-Status"));
    assert_int_equal(natshttp_head_find(back, "Set-Cookie", 0), natshttp_head_find(back, "Set-Cookie", 0));
    natsMsg_Destroy(m);
    natshttp_head_free(back);

    /* no X-Status-Code, or a bad one: a malformed message */
    const char *bad[] = {NULL, "abc", "20", "2000", "099"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        natsMsg_Create(&m, "r", NULL, NULL, 0);
        natsMsgHeader_Set(m, "X-Other", "1");
        if (bad[i])
            natsMsgHeader_Set(m, "X-Status-Code", bad[i]);
        natshttp_head_new(&back, 0);
        assert_int_equal(nh_wire_parse_response(m, back), NATSHTTP_BAD_MESSAGE);
        natshttp_head_free(back);
        natsMsg_Destroy(m);
    }
    natshttp_head_free(resp);
}

static void status_texts(void **state)
{
    assert_string_equal(natshttp_status_text(NATSHTTP_OK), "ok");
    assert_int_equal(natshttp_status_http(NATSHTTP_NO_RESPONDERS), 503);
    assert_int_equal(natshttp_status_http(NATSHTTP_TIMEOUT), 504);
    assert_int_equal(natshttp_status_http(NATSHTTP_BAD_MESSAGE), 502);
    assert_int_equal(natshttp_status_from_nats(NATS_NO_RESPONDERS), NATSHTTP_NO_RESPONDERS);
    assert_string_equal(natshttp_status_text((natshttp_status)999), "unknown status");
}

static void table_ops(void **state)
{
    nh_table t = {0};
    int objs[3000];
    for (int i = 0; i < 3000; i++)
        assert_int_equal(nh_table_put(&t, (uint64_t)i + 1, &objs[i]), 0);
    for (int i = 0; i < 3000; i += 2)
        assert_ptr_equal(nh_table_del(&t, (uint64_t)i + 1), &objs[i]);
    for (int i = 0; i < 3000; i++)
        assert_ptr_equal(nh_table_get(&t, (uint64_t)i + 1), i % 2 ? &objs[i] : NULL);
    assert_int_equal(t.len, 1500);
    nh_table_free(&t);
}

/* v2 subjects: "<base>.<id>[.<seq>]", and the numbers in v2 headers. */
static void v2_ids_and_numbers(void **state)
{
    uint64_t id = 0;
    int64_t seq = 0;
    const char *base = "_INBOX.abc";
    size_t bl = strlen(base);
    assert_true(nh_parse_ids("_INBOX.abc.42", bl, &id, &seq));
    assert_int_equal(id, 42);
    assert_int_equal(seq, -1);
    assert_true(nh_parse_ids("_INBOX.abc.42.0", bl, &id, &seq));
    assert_int_equal(id, 42);
    assert_int_equal(seq, 0);
    assert_true(nh_parse_ids("_INBOX.abc.7.123456", bl, &id, &seq));
    assert_int_equal(seq, 123456);
    const char *bad[] = {"_INBOX.abc", "_INBOX.abc.", "_INBOX.abc.x", "_INBOX.abc.1.", "_INBOX.abc.1.2.3",
                         "_INBOX.abcd.1", "_INBOX.abc.1x", "_INBOX.abc.99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(nh_parse_ids(bad[i], bl, &id, &seq));
    assert_int_equal(nh_parse_u63("0"), 0);
    assert_int_equal(nh_parse_u63("4194304"), 4194304);
    assert_int_equal(nh_parse_u63(NULL), -1);
    assert_int_equal(nh_parse_u63(""), -1);
    assert_int_equal(nh_parse_u63("-1"), -1);
    assert_int_equal(nh_parse_u63("+1"), -1);
    assert_int_equal(nh_parse_u63("12 "), -1);
    assert_int_equal(nh_parse_u63("99999999999999999999"), -1);
}

/* A v2 request announces itself; empty values travel in Natshttp-Empty. */
static void v2_announce_and_empty_values(void **state)
{
    natshttp_head *req, *back;
    natshttp_head_new(&req, 0);
    natshttp_head_set_request(req, "GET", "/x", "");
    natshttp_head_add(req, "X-Empty", "");
    natshttp_head_add(req, "X-After", "1");
    natshttp_head_add(req, "x-empty", "");
    natsMsg *m = NULL;
    assert_int_equal(nh_wire_request_msg(&m, &native_p, req, "_INBOX.x.1", false, 4096, NULL, 0), NATSHTTP_OK);
    assert_string_equal(hdr(m, "Natshttp-Version"), "2");
    assert_string_equal(hdr(m, "Natshttp-Window"), "4096");
    assert_string_equal(hdr(m, "Natshttp-Empty"), "X-Empty,x-empty");
    assert_null(hdr(m, "X-Empty"));
    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen;
    assert_int_equal(nh_wire_parse_request(m, &native_p, back, &raw, &dec, &dlen), NATSHTTP_OK);
    assert_string_equal(natshttp_head_get(back, "X-After"), "1");
    long i = natshttp_head_find(back, "X-Empty", 0);
    assert_true(i >= 0);
    assert_string_equal(natshttp_head_get(back, "X-Empty"), "");
    assert_true(natshttp_head_find(back, "X-Empty", (size_t)i + 1) >= 0);
    assert_null(natshttp_head_get(back, "Natshttp-Version"));
    free(raw);
    free(dec);
    natshttp_head_free(back);
    natsMsg_Destroy(m);
    natshttp_head_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subject_v1_examples), cmocka_unit_test(subject_escapes),
        cmocka_unit_test(subject_errors),      cmocka_unit_test(subject_always_valid),
        cmocka_unit_test(path_decode_once),    cmocka_unit_test(head_fields),
        cmocka_unit_test(head_bounded),        cmocka_unit_test(content_length_rules),
        cmocka_unit_test(hop_by_hop),          cmocka_unit_test(request_round_trip),
        cmocka_unit_test(forged_path_refused), cmocka_unit_test(chunking_rule),
        cmocka_unit_test(response_round_trip), cmocka_unit_test(status_texts),
        cmocka_unit_test(table_ops),           cmocka_unit_test(v2_ids_and_numbers),
        cmocka_unit_test(v2_announce_and_empty_values),
    };
    nats_Open(-1);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return failed;
}
