/* test_subject.c - unit tests of the native subject layout: examples, the
 * round trip of generated paths, collisions, validity, canonical form, dot
 * segments, and the request message built and parsed in either layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void expect_native(const char *method, const char *path, size_t len, const char *want)
{
    char out[NH_MAX_SUBJECT];
    assert_int_equal(natshttp_subject_native(out, sizeof out, "site", method, path, len),
                     NATSHTTP_OK);
    assert_string_equal(out, want);
}
#define NATIVE(m, p, want) expect_native(m, p, sizeof p - 1, want)

/* The examples of docs/protocol.md. */
static void native_examples(void **state)
{
    (void)state;
    NATIVE("GET", "/", "site.GET.%");
    NATIVE("GET", "/hello/world", "site.GET.hello.world");
    NATIVE("HEAD", "/abc.narinfo", "site.HEAD.abc%2Enarinfo");
    NATIVE("GET", "/nar/abc.nar.xz", "site.GET.nar.abc%2Enar%2Exz");
    NATIVE("PUT", "/uploads/x.bin", "site.PUT.uploads.x%2Ebin");
    NATIVE("GET", "/dir/", "site.GET.dir.%");
    NATIVE("GET", "//", "site.GET.%.%");
    NATIVE("GET", "/a b", "site.GET.a%20b");
    NATIVE("GET", "/a/*/>", "site.GET.a.%2A.%3E");
    NATIVE("GET", "/100%", "site.GET.100%25");
    NATIVE("GET", "/caf\xc3\xa9", "site.GET.caf%C3%A9");
    NATIVE("GET", "/a\r\nPUB x 1", "site.GET.a%0D%0APUB%20x%201");
    NATIVE("GET", "/nul\0byte", "site.GET.nul%00byte");
    NATIVE("DELETE", "/item/7", "site.DELETE.item.7");
    /* v1 makes these two one subject; here they differ */
    NATIVE("GET", "/a.b", "site.GET.a%2Eb");
    NATIVE("GET", "/a/b", "site.GET.a.b");
}

static void native_errors(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(natshttp_subject_native(out, sizeof out, "p", "BREW", "/", 1),
                     NATSHTTP_BAD_METHOD);
    assert_int_equal(natshttp_subject_native(out, sizeof out, "p", "GET", "x", 1),
                     NATSHTTP_INVALID);
    assert_int_equal(natshttp_subject_native(out, sizeof out, "p", "GET", "", 0),
                     NATSHTTP_INVALID);
    /* "p.GET.abc" is 9 bytes: fits 10, not 9 */
    assert_int_equal(natshttp_subject_native(out, 10, "p", "GET", "/abc", 4), NATSHTTP_OK);
    assert_int_equal(natshttp_subject_native(out, 9, "p", "GET", "/abc", 4),
                     NATSHTTP_URI_TOO_LONG);
}

static bool subject_is_valid_literal(const char *s)
{
    size_t tok = 0;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' || c == 0) {
            if (tok == 0)
                return false;   /* empty token */
            if (c == 0)
                return true;
            tok = 0;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f || c == '*' || c == '>')
            return false;
        tok++;
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A path made to hit the hard cases: random bytes, dots, empty segments,
 * '%' and escapes-looking text, multi-byte UTF-8. */
static size_t gen_path(char *p, size_t cap)
{
    static const char *const pieces[] = {".", "..", "...", "%", "%2F", "%2e", "*", ">", " ",
                                         "a.b", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "\r\n", "\t", "~", "$", "nar", "x", "a%b", ""};
    size_t n = 0;
    p[n++] = '/';
    int segs = (int)(rnd() % 6);
    for (int s = 0; s < segs && n + 16 < cap; s++) {
        if (s > 0)
            p[n++] = '/';
        int parts = (int)(rnd() % 4);
        for (int k = 0; k < parts && n + 16 < cap; k++) {
            if (rnd() % 3 == 0) {
                unsigned char b = (unsigned char)(rnd() & 0xff);
                if (b != '/')
                    p[n++] = (char)b;
            } else {
                const char *piece = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
                size_t l = strlen(piece);
                memcpy(p + n, piece, l);
                n += l;
            }
        }
    }
    return n;
}

typedef struct entry {
    char *subject;
    char *path;
    size_t len;
} entry;

static int by_subject(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->subject, ((const entry *)b)->subject);
}

/* Thousands of generated paths: every subject is a valid literal subject,
 * parses back to exactly its path, and no two different paths share one. */
static void native_round_trip_and_no_collisions(void **state)
{
    (void)state;
    enum { N = 20000 };
    entry *e = calloc(N, sizeof *e);
    assert_non_null(e);
    for (int i = 0; i < N; i++) {
        char path[128], subj[NH_MAX_SUBJECT], back[NH_MAX_SUBJECT], method[16];
        size_t len = gen_path(path, sizeof path), blen = 0;
        static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE", "POST"};
        const char *m = methods[rnd() % 5];
        assert_int_equal(natshttp_subject_native(subj, sizeof subj, "cache.site", m, path, len),
                         NATSHTTP_OK);
        assert_true(subject_is_valid_literal(subj));
        assert_int_equal(natshttp_subject_native_parse(subj, "cache.site", method, sizeof method,
                                                       back, sizeof back, &blen),
                         NATSHTTP_OK);
        assert_string_equal(method, m);
        assert_int_equal(blen, len);
        assert_memory_equal(back, path, len);
        e[i].subject = malloc(strlen(subj) + 8);
        sprintf(e[i].subject, "%s", subj);
        e[i].path = malloc(len + strlen(m) + 2);
        sprintf(e[i].path, "%s ", m);
        memcpy(e[i].path + strlen(m) + 1, path, len);
        e[i].len = len + strlen(m) + 1;
    }
    qsort(e, N, sizeof *e, by_subject);
    for (int i = 1; i < N; i++) {
        if (strcmp(e[i].subject, e[i - 1].subject) == 0) {
            /* the same subject: must be the same method and path */
            assert_int_equal(e[i].len, e[i - 1].len);
            assert_memory_equal(e[i].path, e[i - 1].path, e[i].len);
        }
    }
    for (int i = 0; i < N; i++) {
        free(e[i].subject);
        free(e[i].path);
    }
    free(e);
}

static natshttp_status parse(const char *subject, char *path, size_t cap, size_t *len)
{
    char method[16];
    return natshttp_subject_native_parse(subject, "site", method, sizeof method, path, cap, len);
}

/* Only the canonical subject of a path is accepted: another spelling of the
 * same bytes would slip past a permission written for the canonical one. */
static void native_parse_refuses_non_canonical(void **state)
{
    (void)state;
    char path[256];
    size_t len;
    static const struct {
        const char *subject;
        natshttp_status want;
    } cases[] = {
        {"site.GET.secret", NATSHTTP_OK},
        {"site.GET.%73ecret", NATSHTTP_BAD_PATH},     /* 's' escaped */
        {"site.GET.a%2eb", NATSHTTP_BAD_PATH},        /* lower-case hex */
        {"site.GET.a%2Eb", NATSHTTP_OK},
        {"site.GET.a%2Fb", NATSHTTP_BAD_PATH},        /* '/' inside a token */
        {"site.GET.%", NATSHTTP_OK},                  /* "/" */
        {"site.GET.%%", NATSHTTP_BAD_PATH},
        {"site.GET.a%", NATSHTTP_BAD_PATH},           /* cut escape */
        {"site.GET.a%4", NATSHTTP_BAD_PATH},
        {"site.GET.a%ZZ", NATSHTTP_BAD_PATH},
        {"site.GET.*", NATSHTTP_BAD_PATH},            /* wildcards are no paths */
        {"site.GET.>", NATSHTTP_BAD_PATH},
        {"site.GET.a..b", NATSHTTP_BAD_PATH},         /* empty token */
        {"site.GET.a.", NATSHTTP_BAD_PATH},
        {"site.GET.", NATSHTTP_BAD_PATH},
        {"site.GET", NATSHTTP_BAD_PATH},              /* no segment at all */
        {"site.BREW.a", NATSHTTP_BAD_METHOD},
        {"site.get.a", NATSHTTP_BAD_METHOD},
        {"site.GETTINGLONGERTHANAMETHOD.a", NATSHTTP_BAD_METHOD},
        {"other.GET.a", NATSHTTP_BAD_REQUEST},
        {"sitex.GET.a", NATSHTTP_BAD_REQUEST},
        {"site.a.GET", NATSHTTP_BAD_METHOD},          /* a compat subject */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        natshttp_status got = parse(cases[i].subject, path, sizeof path, &len);
        if (got != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].subject, natshttp_status_text(got),
                     natshttp_status_text(cases[i].want));
    }
    assert_int_equal(parse("site.GET.a%2Eb.%", path, sizeof path, &len), NATSHTTP_OK);
    assert_string_equal(path, "/a.b/");
    /* a path that does not fit the buffer */
    assert_int_equal(parse("site.GET.abcdef", path, 4, &len), NATSHTTP_URI_TOO_LONG);
}

static void dot_segments(void **state)
{
    (void)state;
    static const char *const dots[] = {"/.", "/..", "/./a", "/../a", "/a/.", "/a/..", "/a/./b",
                                       "/a/../b", "/a//../b", "/.."};
    static const char *const fine[] = {"/", "/a", "/.a", "/..a", "/a.", "/a..", "/...", "/a/...",
                                       "/a.b/c", "//", "/a/b/"};
    for (size_t i = 0; i < sizeof dots / sizeof *dots; i++)
        assert_true(natshttp_path_has_dot_segment(dots[i], strlen(dots[i])));
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++)
        if (natshttp_path_has_dot_segment(fine[i], strlen(fine[i])))
            fail_msg("%s taken for a dot segment", fine[i]);
}

static const char *hdr(natsMsg *m, const char *k)
{
    const char *v = NULL;
    natsMsgHeader_Get(m, k, &v);
    return v;
}

static natshttp_head *request(const char *method, const char *raw, const char *query)
{
    natshttp_head *h = NULL;
    assert_int_equal(natshttp_head_new(&h, 0), NATSHTTP_OK);
    assert_int_equal(natshttp_head_set_request(h, method, raw, query), NATSHTTP_OK);
    return h;
}

static const nh_route native = {"site", NATSHTTP_LAYOUT_NATIVE, false};
static const nh_route native_dots = {"site", NATSHTTP_LAYOUT_NATIVE, true};
static const nh_route compat = {"site", NATSHTTP_LAYOUT_COMPAT, false};

/* The native request message: the path rides in the subject only; the raw
 * form (for a byte-exact upstream) is checked against it. */
static void native_request_message(void **state)
{
    (void)state;
    natshttp_head *req = request("GET", "/api/queues/%2F/a%2eb", "x=1");
    natshttp_head_add(req, "X-Path", "/forged");
    natsMsg *m = NULL;
    assert_int_equal(nh_wire_request_msg(&m, &native, req, "_INBOX.x.1", false, 0, NULL, 0),
                     NATSHTTP_OK);
    assert_string_equal(natsMsg_GetSubject(m), "site.GET.api.queues.%.%.a%2Eb");
    assert_null(hdr(m, "X-Path"));
    assert_string_equal(hdr(m, "Natshttp-Raw-Path"), "/api/queues/%2F/a%2eb");
    assert_string_equal(hdr(m, "X-Query"), "x=1");

    natshttp_head *back = NULL;
    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(nh_wire_parse_request(m, &native, back, &raw, &dec, &dlen), NATSHTTP_OK);
    assert_string_equal(raw, "/api/queues/%2F/a%2eb");
    assert_string_equal(dec, "/api/queues///a.b");
    assert_string_equal(natshttp_head_method(back), "GET");
    assert_null(natshttp_head_get(back, "X-Path"));
    free(raw);
    free(dec);
    natshttp_head_free(back);
    natsMsg_Destroy(m);

    /* a compat server does not take a native subject */
    natsMsg_Create(&m, "site.GET.public", "_INBOX.x.1", NULL, 0);
    natshttp_head_new(&back, 0);
    assert_int_equal(nh_wire_parse_request(m, &compat, back, &raw, &dec, &dlen),
                     NATSHTTP_BAD_METHOD);   /* "public" is no method */
    natsMsg_Destroy(m);
    natshttp_head_free(back);
    natshttp_head_free(req);
}

/* The subject is the authority: headers cannot name another path or method. */
static void native_headers_cannot_override_the_subject(void **state)
{
    (void)state;
    natsMsg *m = NULL;
    natsMsg_Create(&m, "site.GET.public", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "X-Path", "/secret");
    natshttp_head *back = NULL;
    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(nh_wire_parse_request(m, &native, back, &raw, &dec, &dlen), NATSHTTP_OK);
    assert_string_equal(dec, "/public");
    assert_string_equal(raw, "/public");
    free(raw);
    free(dec);
    natsMsg_Destroy(m);

    /* a raw path that decodes to another path is refused */
    natsMsg_Create(&m, "site.GET.public", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "Natshttp-Raw-Path", "/secret");
    assert_int_equal(nh_wire_parse_request(m, &native, back, &raw, &dec, &dlen),
                     NATSHTTP_BAD_PATH);
    natsMsg_Destroy(m);

    /* the method is the subject's, whatever a header says */
    natsMsg_Create(&m, "site.PUT.uploads.a", "_INBOX.x.1", NULL, 0);
    natsMsgHeader_Set(m, "X-Method", "GET");
    natshttp_head_free(back);
    natshttp_head_new(&back, 0);
    assert_int_equal(nh_wire_parse_request(m, &native, back, &raw, &dec, &dlen), NATSHTTP_OK);
    assert_string_equal(natshttp_head_method(back), "PUT");
    assert_string_equal(dec, "/uploads/a");
    free(raw);
    free(dec);
    natsMsg_Destroy(m);
    natshttp_head_free(back);
}

/* Dot segments, after percent-decoding, never reach a subject; nor does a
 * server take them (a raw NATS client could send the escaped token). */
static void dot_segments_refused_both_ends(void **state)
{
    (void)state;
    static const char *const raws[] = {"/uploads/../secret", "/uploads/%2e%2e/secret",
                                       "/./a", "/a/.", "/a/%2E"};
    for (size_t i = 0; i < sizeof raws / sizeof *raws; i++) {
        natshttp_head *req = request("PUT", raws[i], "");
        natsMsg *m = NULL;
        assert_int_equal(nh_wire_request_msg(&m, &native, req, "_INBOX.x.1", false, 0, NULL, 0),
                         NATSHTTP_DOT_SEGMENT);
        assert_int_equal(nh_wire_request_msg(&m, &compat, req, "_INBOX.x.1", false, 0, NULL, 0),
                         NATSHTTP_DOT_SEGMENT);
        assert_int_equal(nh_wire_request_msg(&m, &native_dots, req, "_INBOX.x.1", false, 0,
                                             NULL, 0),
                         NATSHTTP_OK);
        natsMsg_Destroy(m);
        natshttp_head_free(req);
    }
    natsMsg *m = NULL;
    natsMsg_Create(&m, "site.PUT.uploads.%2E%2E.secret", "_INBOX.x.1", NULL, 0);
    natshttp_head *back = NULL;
    natshttp_head_new(&back, 0);
    char *raw = NULL, *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(nh_wire_parse_request(m, &native, back, &raw, &dec, &dlen),
                     NATSHTTP_DOT_SEGMENT);
    assert_int_equal(nh_wire_parse_request(m, &native_dots, back, &raw, &dec, &dlen),
                     NATSHTTP_OK);
    assert_string_equal(dec, "/uploads/../secret");
    free(raw);
    free(dec);
    natsMsg_Destroy(m);
    natshttp_head_free(back);
}

/* nats-server drops a connection whose control line passes max_control_line
 * (4096): such a URL is a 414 for this request, never a lost connection. */
static void control_line_limit(void **state)
{
    (void)state;
    const char *reply = "_INBOX.abcdefghijklmnopqrstuv.123";
    size_t room = NH_MAX_CONTROL_LINE - NH_CONTROL_LINE_OVERHEAD - strlen(reply) -
                  strlen("site.GET.");
    char *raw = malloc(room + 3);
    for (int fits = 1; fits >= 0; fits--) {
        size_t n = room + (fits ? 0 : 1);
        raw[0] = '/';
        memset(raw + 1, 'b', n);
        raw[n + 1] = 0;
        natshttp_head *req = request("GET", raw, "");
        natsMsg *m = NULL;
        natshttp_status st = nh_wire_request_msg(&m, &native, req, reply, false, 0, NULL, 0);
        assert_int_equal(st, fits ? NATSHTTP_OK : NATSHTTP_URI_TOO_LONG);
        natsMsg_Destroy(m);
        natshttp_head_free(req);
    }
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(native_examples),
        cmocka_unit_test(native_errors),
        cmocka_unit_test(native_round_trip_and_no_collisions),
        cmocka_unit_test(native_parse_refuses_non_canonical),
        cmocka_unit_test(dot_segments),
        cmocka_unit_test(native_request_message),
        cmocka_unit_test(native_headers_cannot_override_the_subject),
        cmocka_unit_test(dot_segments_refused_both_ends),
        cmocka_unit_test(control_line_limit),
    };
    nats_Open(-1);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return failed;
}
