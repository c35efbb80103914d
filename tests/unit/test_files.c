/*
 * Unit tests of the static-file module (src/lib/files.c).
 *
 * The group setup builds a real directory tree under mkdtemp():
 *
 *   BASE/outside.txt                  outside the root
 *   BASE/www-leak/secret.txt          sibling sharing the root's name as prefix
 *   BASE/www/                         the served root
 *
 * Cases named BR-xx come from /work/shared/cases/proxy-cases.md.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

#define BIG_SIZE 5882
#define MTIME_SEC 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define MTIME_NSEC 123456789
#define MTIME_TEXT "Sun, 06 Nov 1994 08:49:37 GMT"

static struct {
    char base[64];
    char root[128];
    nh_files *plain;    /* list = false */
    nh_files *list;     /* list = true */
    nh_files *fallback; /* list = false, realpath() containment instead of openat2 */
    unsigned char big[BIG_SIZE];
    char big_etag[80];
    char hello_etag[80];
    int fds_at_start; /* open fds once the fixture is up */
} g;

/* ---- fixture ---- */

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static void path_in(char *out, size_t n, const char *rel)
{
    int k = snprintf(out, n, "%s/%s", g.base, rel);
    assert_true(k > 0 && (size_t)k < n);
}

static void put_file(const char *rel, const void *data, size_t len)
{
    char p[512];
    path_in(p, sizeof(p), rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    struct timespec ts[2] = {{MTIME_SEC, MTIME_NSEC}, {MTIME_SEC, MTIME_NSEC}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static void put_text(const char *rel, const char *text)
{
    put_file(rel, text, strlen(text));
}

static void put_dir(const char *rel)
{
    char p[512];
    path_in(p, sizeof(p), rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void put_link(const char *rel, const char *target)
{
    char p[512];
    path_in(p, sizeof(p), rel);
    assert_int_equal(symlink(target, p), 0);
}

static void etag_of(const char *rel, char *out, size_t n)
{
    char p[512];
    struct stat st;
    path_in(p, sizeof(p), rel);
    assert_int_equal(stat(p, &st), 0);
    uint64_t ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    snprintf(out, n, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_ino, (uint64_t)st.st_size, ns);
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(g.base, "/tmp/nh-files-XXXXXX");
    if (!mkdtemp(g.base))
        return -1;
    snprintf(g.root, sizeof(g.root), "%s/www", g.base);
    for (size_t i = 0; i < BIG_SIZE; i++)
        g.big[i] = (unsigned char)(i * 7 % 251);

    put_text("outside.txt", "outside\n");
    put_dir("www-leak");
    put_text("www-leak/secret.txt", "secret\n");
    put_dir("www");
    put_file("www/big.nar", g.big, BIG_SIZE);
    put_text("www/hello.txt", "hello\n");
    put_text("www/empty.txt", "");
    put_text("www/page.HTML", "<p>x</p>\n");
    put_text("www/nix-cache-info", "StoreDir: /nix/store\n");
    put_text("www/x.nar.xz", "xz");
    put_dir("www/%2e%2e");
    put_text("www/%2e%2e/y.txt", "y\n");
    put_dir("www/sp ace");
    put_text("www/sp ace/index.html", "<h1>space</h1>\n");
    put_text("www/sp ace/\xc3\xbc *%.txt", "odd\n");
    put_dir("www/back\\slash");
    put_text("www/back\\slash/index.html", "bs\n");
    put_dir("www/withindex");
    put_text("www/withindex/index.html", "<h1>hi</h1>\n");
    put_dir("www/noindex");
    put_text("www/noindex/a.txt", "a\n");
    put_dir("www/list");
    put_text("www/list/<a&b>", "amp\n");
    put_text("www/list/b.txt", "b\n");
    put_dir("www/list/sub");
    put_text("www/list/\xc3\xa9.txt", "e\n");
    put_dir("www/idxdir");
    put_dir("www/idxdir/index.html"); /* a directory named index.html is no index */
    put_link("www/link-in", "hello.txt");
    put_link("www/link-out", "../outside.txt");
    put_link("www/link-leak", "../www-leak/secret.txt");
    put_link("www/dirlink-out", "..");
    put_link("www/dirlink-in", "withindex");
    char abs[512];
    path_in(abs, sizeof(abs), "outside.txt");
    put_link("www/link-abs", abs);
    char fifo[512];
    path_in(fifo, sizeof(fifo), "www/fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    put_text("www/noperm.txt", "no\n");
    char np[512];
    path_in(np, sizeof(np), "www/noperm.txt");
    assert_int_equal(chmod(np, 0), 0);

    etag_of("www/big.nar", g.big_etag, sizeof(g.big_etag));
    etag_of("www/hello.txt", g.hello_etag, sizeof(g.hello_etag));

    if (nh_files_new(&g.plain, g.root, false) != 0 || nh_files_new(&g.list, g.root, true) != 0 ||
        nh_files_new(&g.fallback, g.root, false) != 0)
        return -1;
    nh_files_set_fallback(g.fallback, true);
    g.fds_at_start = count_fds();
    return 0;
}

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(p) : unlink(p);
}

static int group_teardown(void **state)
{
    (void)state;
    nh_files_free(g.plain);
    nh_files_free(g.list);
    nh_files_free(g.fallback);
    return nftw(g.base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- one request ---- */

#define MAXH 16

typedef struct resp {
    int rc;
    nh_files_reply r;
    int n;
    char *name[MAXH];
    char *value[MAXH];
} resp;

/* Request headers: NULL-terminated name, value, name, value, ... */
static const char *getter(void *cls, const char *name)
{
    const char *const *kv = cls;
    for (; kv && kv[0]; kv += 2) {
        if (strcasecmp(kv[0], name) == 0)
            return kv[1];
    }
    return NULL;
}

static void adder(void *cls, const char *name, const char *value)
{
    resp *x = cls;
    assert_true(x->n < MAXH);
    x->name[x->n] = strdup(name);
    x->value[x->n] = strdup(value);
    x->n++;
}

static void req_n(nh_files *f, const char *method, const char *path, size_t len, const char *raw,
                  const char *const *kv, resp *x)
{
    memset(x, 0, sizeof(*x));
    x->rc = nh_files_handle(f, method, path, len, raw, getter, (void *)kv, adder, x, &x->r);
}

static void req(nh_files *f, const char *method, const char *path, const char *const *kv, resp *x)
{
    req_n(f, method, path, strlen(path), path, kv, x);
}

static void resp_free(resp *x)
{
    nh_files_reply_release(&x->r);
    for (int i = 0; i < x->n; i++) {
        free(x->name[i]);
        free(x->value[i]);
    }
    x->n = 0;
}

/* The value of header `name`, NULL when absent; fails when it appears twice. */
static const char *hdr(const resp *x, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < x->n; i++) {
        if (strcasecmp(x->name[i], name) == 0) {
            assert_null(v);
            v = x->value[i];
        }
    }
    return v;
}

static void expect_hdr(const resp *x, const char *name, const char *value)
{
    const char *v = hdr(x, name);
    if (!value) {
        if (v)
            fail_msg("header %s should be absent, is \"%s\"", name, v);
        return;
    }
    if (!v)
        fail_msg("header %s missing (want \"%s\")", name, value);
    assert_string_equal(v, value);
}

static void expect_body(const resp *x, const void *want, size_t n)
{
    const nh_files_reply *r = &x->r;
    assert_false(r->no_body);
    assert_int_equal(r->length, (int64_t)n);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    if (r->fd >= 0) {
        assert_null(r->mem);
        assert_int_equal(pread(r->fd, buf, n, r->offset), (ssize_t)n);
    } else {
        assert_non_null(r->mem);
        assert_int_equal(r->mem_len, n);
        memcpy(buf, r->mem, n);
    }
    buf[n] = '\0';
    assert_memory_equal(buf, want, n);
    free(buf);
}

static void expect_text_body(const resp *x, const char *text)
{
    expect_body(x, text, strlen(text));
}

/* A short text/plain error reply with exactly these headers. */
static void expect_error(const resp *x, int status, const char *text)
{
    char clen[24];
    assert_int_equal(x->rc, 0);
    assert_int_equal(x->r.status, status);
    assert_int_equal(x->r.fd, -1);
    expect_hdr(x, "Content-Type", "text/plain; charset=utf-8");
    snprintf(clen, sizeof(clen), "%zu", strlen(text));
    expect_hdr(x, "Content-Length", clen);
    expect_hdr(x, "ETag", NULL);
    expect_hdr(x, "Accept-Ranges", NULL);
    expect_text_body(x, text);
}

static void expect_status(nh_files *f, const char *method, const char *path, int status)
{
    resp x;
    req(f, method, path, NULL, &x);
    assert_int_equal(x.rc, 0);
    if (x.r.status != status)
        fail_msg("%s %s: status %d, want %d", method, path, x.r.status, status);
    resp_free(&x);
}

/* ---- pure helpers ---- */

static void test_mime_table(void **state)
{
    (void)state;
    static const char *const tab[][2] = {
        {"a.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.css", "text/css"},
        {"a.js", "text/javascript"},
        {"a.json", "application/json"},
        {"a.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.ico", "image/x-icon"},
        {"a.wasm", "application/wasm"},
        {"a.pdf", "application/pdf"},
        {"a.xml", "application/xml"},
        {"abc.narinfo", "text/x-nix-narinfo"},
        {"nix-cache-info", "text/x-nix-cache-info"},
        {"a.nar", "application/octet-stream"},
        {"a.xz", "application/octet-stream"},
        {"a.zst", "application/octet-stream"},
        {"a.bz2", "application/octet-stream"},
        {"a.gz", "application/octet-stream"},
        {"a.bin", "application/octet-stream"},
        {"a.unknownext", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        assert_string_equal(nh_files_mime(tab[i][0], strlen(tab[i][0])), tab[i][1]);
}

static void test_mime_names(void **state)
{
    (void)state;
    static const char *const tab[][2] = {
        {"INDEX.HTML", "text/html; charset=utf-8"},
        {"x.Json", "application/json"},
        {"X.NARINFO", "text/x-nix-narinfo"},
        {"dir/sub/a.css", "text/css"},
        {"dir.html/file", "application/octet-stream"},
        {"nar/abc.nar.xz", "application/octet-stream"},
        {"a.tar.gz", "application/octet-stream"},
        {"cache/nix-cache-info", "text/x-nix-cache-info"},
        {"NIX-CACHE-INFO", "application/octet-stream"},
        {"nix-cache-info.bak", "application/octet-stream"},
        {"x.nix-cache-info", "application/octet-stream"},
        {".html", "application/octet-stream"},
        {"noext", "application/octet-stream"},
        {"trailing.", "application/octet-stream"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        assert_string_equal(nh_files_mime(tab[i][0], strlen(tab[i][0])), tab[i][1]);
    /* Only len bytes are read. */
    assert_string_equal(nh_files_mime("a.html", 4), "application/octet-stream");
    assert_string_equal(nh_files_mime("a.css.html", 5), "text/css");
    assert_string_equal(nh_files_mime(NULL, 0), "application/octet-stream");
}

static void test_date_format(void **state)
{
    (void)state;
    char d[30];
    assert_int_equal(nh_http_date_format(d, 784111777), 0);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(nh_http_date_format(d, 0), 0);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(nh_http_date_format(d, 951782400), 0);
    assert_string_equal(d, "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_int_equal(nh_http_date_format(d, (time_t)2147483648LL), 0);
    assert_string_equal(d, "Tue, 19 Jan 2038 03:14:08 GMT");
    assert_int_equal(nh_http_date_format(d, (time_t)253402300799LL), 0);
    assert_string_equal(d, "Fri, 31 Dec 9999 23:59:59 GMT");
    assert_int_equal(nh_http_date_format(d, (time_t)253402300800LL), -1);
    assert_string_equal(d, "");
}

static void test_date_parse_forms(void **state)
{
    (void)state;
    time_t t = 0;
    assert_int_equal(nh_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    t = 0;
    assert_int_equal(nh_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    t = 0;
    assert_int_equal(nh_http_date_parse("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(nh_http_date_parse("Wed Nov 16 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777 + 10 * 86400);
    assert_int_equal(nh_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(nh_http_date_parse("Tue, 29 Feb 2000 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 951782400);
    /* RFC 850 two-digit years are never more than 50 years in the future. */
    assert_int_equal(nh_http_date_parse("Tuesday, 01-Jan-30 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 1893456000); /* 2030, not 1930 */
}

static void test_date_roundtrip(void **state)
{
    (void)state;
    char d[30];
    for (int64_t v = 0; v < 253402300800LL; v += 86399LL * 97 + 13) {
        time_t t = (time_t)v, back = -1;
        assert_int_equal(nh_http_date_format(d, t), 0);
        assert_int_equal(strlen(d), 29);
        assert_int_equal(nh_http_date_parse(d, &back), 0);
        assert_int_equal(back, t);
    }
}

static void test_date_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "Sun",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Mon, 29 Feb 1900 00:00:00 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 1994 ",
        "Sun Nov  6 08:49:37 94",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT; length=12",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        time_t t = 42;
        if (nh_http_date_parse(bad[i], &t) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t, 42);
    }
    time_t t;
    assert_int_equal(nh_http_date_parse(NULL, &t), -1);
}

static void expect_range(const char *v, int64_t size, int want, int64_t start, int64_t len)
{
    int64_t s = -7, l = -7;
    int got = nh_range_parse(v, size, &s, &l);
    if (got != want)
        fail_msg("range \"%s\" size %" PRId64 ": %d, want %d", v ? v : "(null)", size, got, want);
    if (want == 1) {
        assert_int_equal(s, start);
        assert_int_equal(l, len);
    } else {
        assert_int_equal(s, -7);
        assert_int_equal(l, -7);
    }
}

static void test_range_parse_br17(void **state)
{
    (void)state;
    expect_range("bytes=100-199", BIG_SIZE, 1, 100, 100);
    expect_range("bytes=2000-", BIG_SIZE, 1, 2000, 3882);
    expect_range("bytes=-100", BIG_SIZE, 1, 5782, 100);
    expect_range("bytes=9999-", BIG_SIZE, -1, 0, 0);
    expect_range("bytes=0-0,10-20", BIG_SIZE, 0, 0, 0);
}

static void test_range_parse_edges(void **state)
{
    (void)state;
    expect_range(NULL, 10, 0, 0, 0);
    expect_range("bytes=0-0", 10, 1, 0, 1);
    expect_range("bytes=9-", 10, 1, 9, 1);
    expect_range("bytes=10-", 10, -1, 0, 0);
    expect_range("bytes=10-20", 10, -1, 0, 0);
    expect_range("bytes=5-1000", 10, 1, 5, 5);            /* B clamped */
    expect_range("bytes=5-99999999999999999999999", 10, 1, 5, 5);
    expect_range("bytes=99999999999999999999999-", 10, -1, 0, 0);
    expect_range("bytes=-0", 10, -1, 0, 0);
    expect_range("bytes=-10", 10, 1, 0, 10);
    expect_range("bytes=-11", 10, 1, 0, 10);              /* suffix longer than the body */
    expect_range("bytes=-99999999999999999999999", 10, 1, 0, 10);
    expect_range("bytes=0-", 0, -1, 0, 0);                /* empty body */
    expect_range("bytes=-5", 0, -1, 0, 0);
    expect_range("BYTES=1-2", 10, 1, 1, 2);               /* unit is case-insensitive */
    expect_range("bytes= 1-2 ", 10, 1, 1, 2);
    expect_range("bytes=1-2,", 10, 1, 1, 2);              /* empty list elements */
    expect_range("bytes=,1-2", 10, 1, 1, 2);
    expect_range("bytes=5-4", 10, 0, 0, 0);               /* last < first: invalid */
    expect_range("bytes=-", 10, 0, 0, 0);
    expect_range("bytes=", 10, 0, 0, 0);
    expect_range("bytes=,", 10, 0, 0, 0);
    expect_range("bytes=1", 10, 0, 0, 0);
    expect_range("bytes=a-b", 10, 0, 0, 0);
    expect_range("bytes=+1-2", 10, 0, 0, 0);
    expect_range("bytes=1 -2", 10, 0, 0, 0);
    expect_range("bytes=1-2x", 10, 0, 0, 0);
    expect_range("bytes=1--2", 10, 0, 0, 0);
    expect_range("bytes 1-2", 10, 0, 0, 0);
    expect_range("bytes=0-0,10-20", 100, 0, 0, 0);
    expect_range("bytes=50-60,0-0", 100, 0, 0, 0);
    expect_range("bytes=200-300,400-", 100, 0, 0, 0);     /* multi, even unsatisfiable */
    expect_range("items=0-1", 10, 0, 0, 0);
    expect_range("bytesx=0-1", 10, 0, 0, 0);
    expect_range("", 10, 0, 0, 0);
}

static void test_errno_status(void **state)
{
    (void)state;
    assert_int_equal(nh_files_errno_status(ENOENT), 404);
    assert_int_equal(nh_files_errno_status(ENOTDIR), 404);
    assert_int_equal(nh_files_errno_status(EXDEV), 404);
    assert_int_equal(nh_files_errno_status(ELOOP), 404);
    assert_int_equal(nh_files_errno_status(ENAMETOOLONG), 404);
    assert_int_equal(nh_files_errno_status(EACCES), 403);
    assert_int_equal(nh_files_errno_status(EPERM), 403);
    assert_int_equal(nh_files_errno_status(EMFILE), 500);
    assert_int_equal(nh_files_errno_status(EIO), 500);
}

/* ---- handle lifecycle ---- */

static void test_new_errors(void **state)
{
    (void)state;
    nh_files *f = (nh_files *)&g; /* must stay untouched on failure */
    char p[512];
    assert_int_equal(nh_files_new(&f, "/nonexistent/nh-files", false), -ENOENT);
    path_in(p, sizeof(p), "www/hello.txt");
    assert_int_equal(nh_files_new(&f, p, false), -ENOTDIR);
    assert_int_equal(nh_files_new(&f, NULL, false), -EINVAL);
    assert_int_equal(nh_files_new(NULL, g.root, false), -EINVAL);
    assert_ptr_equal(f, (nh_files *)&g);
    nh_files_free(NULL);
    nh_files_reply_release(NULL);

    nh_files_reply r;
    assert_int_equal(nh_files_handle(g.plain, "GET", "/", 1, "/", NULL, NULL, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(nh_files_handle(NULL, "GET", "/", 1, "/", NULL, NULL, NULL, NULL, &r), -EINVAL);
    assert_int_equal(r.fd, -1);
    assert_null(r.mem);
}

/* ---- GET / HEAD of a file ---- */

static void expect_big_headers(const resp *x, const char *clen)
{
    expect_hdr(x, "Content-Type", "application/octet-stream");
    expect_hdr(x, "Content-Length", clen);
    expect_hdr(x, "Last-Modified", MTIME_TEXT);
    expect_hdr(x, "ETag", g.big_etag);
    expect_hdr(x, "Accept-Ranges", "bytes");
    expect_hdr(x, "Content-Encoding", NULL);
}

static void test_get_file(void **state)
{
    (void)state;
    resp x;
    req(g.plain, "GET", "/big.nar", NULL, &x);
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.r.status, 200);
    assert_int_equal(x.n, 5);
    /* Header order is part of the contract with the glue. */
    assert_string_equal(x.name[0], "Content-Type");
    assert_string_equal(x.name[1], "Content-Length");
    assert_string_equal(x.name[2], "Last-Modified");
    assert_string_equal(x.name[3], "ETag");
    assert_string_equal(x.name[4], "Accept-Ranges");
    expect_big_headers(&x, "5882");
    expect_hdr(&x, "Content-Range", NULL);
    assert_true(x.r.fd >= 0);
    assert_null(x.r.mem);
    assert_int_equal(x.r.offset, 0);
    assert_int_equal(x.r.length, BIG_SIZE);
    assert_false(x.r.no_body);
    assert_non_null(strstr(g.big_etag, "-16fa-ae1b981c3a4d715\""));
    expect_body(&x, g.big, BIG_SIZE);
    /* The fd is blocking, read-only, close-on-exec. */
    int fl = fcntl(x.r.fd, F_GETFL);
    assert_int_equal(fl & O_NONBLOCK, 0);
    assert_int_equal(fl & O_ACCMODE, O_RDONLY);
    assert_true(fcntl(x.r.fd, F_GETFD) & FD_CLOEXEC);
    resp_free(&x);
    nh_files_reply_release(&x.r); /* twice is fine */
    assert_int_equal(x.r.fd, -1);
    assert_null(x.r.mem);

    req(g.plain, "GET", "/hello.txt", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_hdr(&x, "Content-Type", "text/plain; charset=utf-8");
    expect_hdr(&x, "Content-Length", "6");
    expect_hdr(&x, "ETag", g.hello_etag);
    expect_text_body(&x, "hello\n");
    resp_free(&x);

    req(g.plain, "GET", "/empty.txt", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_hdr(&x, "Content-Length", "0");
    expect_body(&x, "", 0);
    resp_free(&x);

    req(g.plain, "GET", "/page.HTML", NULL, &x);
    expect_hdr(&x, "Content-Type", "text/html; charset=utf-8");
    resp_free(&x);
    req(g.plain, "GET", "/nix-cache-info", NULL, &x);
    expect_hdr(&x, "Content-Type", "text/x-nix-cache-info");
    expect_text_body(&x, "StoreDir: /nix/store\n");
    resp_free(&x);
    req(g.plain, "GET", "/x.nar.xz", NULL, &x);
    expect_hdr(&x, "Content-Type", "application/octet-stream");
    expect_hdr(&x, "Content-Encoding", NULL);
    resp_free(&x);
}

/* BR-01: HEAD keeps Content-Length and every GET header, and has no body. */
static void test_head_br01(void **state)
{
    (void)state;
    resp get, head;
    req(g.plain, "GET", "/big.nar", NULL, &get);
    req(g.plain, "HEAD", "/big.nar", NULL, &head);
    assert_int_equal(head.rc, 0);
    assert_int_equal(head.r.status, 200);
    assert_true(head.r.no_body);
    assert_int_equal(head.r.fd, -1);
    assert_null(head.r.mem);
    assert_int_equal(head.r.length, BIG_SIZE);
    assert_int_equal(head.n, get.n);
    for (int i = 0; i < get.n; i++) {
        assert_string_equal(head.name[i], get.name[i]);
        assert_string_equal(head.value[i], get.value[i]);
    }
    expect_big_headers(&head, "5882");
    resp_free(&get);
    resp_free(&head);

    /* HEAD ignores Range. */
    static const char *const kv[] = {"Range", "bytes=100-199", NULL};
    req(g.plain, "HEAD", "/big.nar", kv, &head);
    assert_int_equal(head.r.status, 200);
    expect_big_headers(&head, "5882");
    expect_hdr(&head, "Content-Range", NULL);
    resp_free(&head);

    /* HEAD of an error keeps the error's Content-Length. */
    req(g.plain, "HEAD", "/missing", NULL, &head);
    assert_int_equal(head.r.status, 404);
    assert_true(head.r.no_body);
    assert_int_equal(head.r.fd, -1);
    assert_null(head.r.mem);
    assert_int_equal(head.r.length, 14);
    expect_hdr(&head, "Content-Length", "14");
    expect_hdr(&head, "Content-Type", "text/plain; charset=utf-8");
    resp_free(&head);
}

/* ---- BR-17: ranges through the handler ---- */

static void range_req(const char *range, const char *if_range, resp *x)
{
    const char *kv[5] = {"Range", range, NULL, NULL, NULL};
    if (if_range) {
        kv[2] = "If-Range";
        kv[3] = if_range;
    }
    req(g.plain, "GET", "/big.nar", kv, x);
    assert_int_equal(x->rc, 0);
}

static void expect_partial(const char *range, const char *if_range, int64_t start, int64_t len, const char *crange)
{
    resp x;
    char clen[24];
    range_req(range, if_range, &x);
    assert_int_equal(x.r.status, 206);
    snprintf(clen, sizeof(clen), "%" PRId64, len);
    expect_big_headers(&x, clen);
    expect_hdr(&x, "Content-Range", crange);
    assert_true(x.r.fd >= 0);
    assert_int_equal(x.r.offset, start);
    assert_int_equal(x.r.length, len);
    expect_body(&x, g.big + start, (size_t)len);
    resp_free(&x);
}

static void expect_full(const char *range, const char *if_range)
{
    resp x;
    range_req(range, if_range, &x);
    assert_int_equal(x.r.status, 200);
    expect_big_headers(&x, "5882");
    expect_hdr(&x, "Content-Range", NULL);
    assert_int_equal(x.r.offset, 0);
    expect_body(&x, g.big, BIG_SIZE);
    resp_free(&x);
}

static void test_range_br17(void **state)
{
    (void)state;
    expect_partial("bytes=100-199", NULL, 100, 100, "bytes 100-199/5882");
    expect_partial("bytes=2000-", NULL, 2000, 3882, "bytes 2000-5881/5882");
    expect_partial("bytes=-100", NULL, 5782, 100, "bytes 5782-5881/5882");
    expect_partial("bytes=5000-99999", NULL, 5000, 882, "bytes 5000-5881/5882");
    expect_partial("bytes=0-0", NULL, 0, 1, "bytes 0-0/5882");
    expect_full("bytes=0-0,10-20", NULL);
    expect_full("bytes=100-199", "\"stale-etag\"");
    expect_full("items=0-1", NULL);
    expect_full("bytes=x-y", NULL);

    resp x;
    range_req("bytes=9999-", NULL, &x);
    expect_error(&x, 416, "416 Range Not Satisfiable\n");
    expect_hdr(&x, "Content-Range", "bytes */5882");
    resp_free(&x);
    range_req("bytes=-0", NULL, &x);
    expect_error(&x, 416, "416 Range Not Satisfiable\n");
    expect_hdr(&x, "Content-Range", "bytes */5882");
    resp_free(&x);
    /* An If-Range mismatch turns even an unsatisfiable range into a 200. */
    expect_full("bytes=9999-", "\"stale-etag\"");
}

static void test_if_range(void **state)
{
    (void)state;
    char weak[256];
    snprintf(weak, sizeof(weak), "W/%s", g.big_etag);
    expect_partial("bytes=100-199", g.big_etag, 100, 100, "bytes 100-199/5882");
    expect_partial("bytes=100-199", MTIME_TEXT, 100, 100, "bytes 100-199/5882");
    expect_full("bytes=100-199", weak);                           /* strong comparison */
    expect_full("bytes=100-199", "Sun, 06 Nov 1994 08:49:38 GMT"); /* other date */
    expect_full("bytes=100-199", "Sunday, 06-Nov-94 08:49:37 GMT"); /* not the exact text */
    expect_full("bytes=100-199", "");
}

static void test_range_empty_file(void **state)
{
    (void)state;
    static const char *const kv[] = {"Range", "bytes=0-", NULL};
    resp x;
    req(g.plain, "GET", "/empty.txt", kv, &x);
    expect_error(&x, 416, "416 Range Not Satisfiable\n");
    expect_hdr(&x, "Content-Range", "bytes */0");
    resp_free(&x);
}

/* ---- conditionals ---- */

static void cond_req(const char *method, const char *name, const char *value, const char *name2,
                     const char *value2, resp *x)
{
    const char *kv[5] = {name, value, name2, value2, NULL};
    req(g.plain, method, "/big.nar", kv, x);
    assert_int_equal(x->rc, 0);
}

static void expect_304(const resp *x)
{
    assert_int_equal(x->r.status, 304);
    assert_true(x->r.no_body);
    assert_int_equal(x->r.fd, -1);
    assert_null(x->r.mem);
    assert_int_equal(x->r.length, 5882);   /* the 200's length, as metadata */
    assert_int_equal(x->n, 2);
    assert_string_equal(x->name[0], "ETag");
    assert_string_equal(x->value[0], g.big_etag);
    assert_string_equal(x->name[1], "Last-Modified");
    assert_string_equal(x->value[1], MTIME_TEXT);
}

static void test_if_none_match(void **state)
{
    (void)state;
    char list[512], weak[256], other[256];
    resp x;
    snprintf(list, sizeof(list), "\"a\", W/\"b\",%s , \"c\"", g.big_etag);
    snprintf(weak, sizeof(weak), "W/%s", g.big_etag);
    snprintf(other, sizeof(other), "\"x%s", g.big_etag + 1);

    const char *match[] = {g.big_etag, list, weak, "*", " * ", "\"a\", *"};
    for (size_t i = 0; i < sizeof(match) / sizeof(match[0]); i++) {
        cond_req("GET", "If-None-Match", match[i], NULL, NULL, &x);
        expect_304(&x);
        resp_free(&x);
        cond_req("HEAD", "If-None-Match", match[i], NULL, NULL, &x);
        expect_304(&x);
        resp_free(&x);
    }
    const char *miss[] = {"\"nope\"", other, "\"a\", \"b\"", "", "nonsense", "W/", "\"unterminated", "**"};
    for (size_t i = 0; i < sizeof(miss) / sizeof(miss[0]); i++) {
        cond_req("GET", "If-None-Match", miss[i], NULL, NULL, &x);
        if (x.r.status != 200)
            fail_msg("If-None-Match %s: %d", miss[i], x.r.status);
        expect_big_headers(&x, "5882");
        resp_free(&x);
    }
    /* 304 wins over Range. */
    cond_req("GET", "If-None-Match", g.big_etag, "Range", "bytes=0-9", &x);
    expect_304(&x);
    resp_free(&x);
}

static void test_if_modified_since(void **state)
{
    (void)state;
    resp x;
    cond_req("GET", "If-Modified-Since", MTIME_TEXT, NULL, NULL, &x); /* equal */
    expect_304(&x);
    resp_free(&x);
    cond_req("HEAD", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:38 GMT", NULL, NULL, &x); /* newer */
    expect_304(&x);
    resp_free(&x);
    cond_req("GET", "If-Modified-Since", "Sun Nov  6 08:49:37 1994", NULL, NULL, &x);
    expect_304(&x);
    resp_free(&x);
    cond_req("GET", "If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT", NULL, NULL, &x);
    expect_304(&x);
    resp_free(&x);
    cond_req("GET", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", NULL, NULL, &x); /* older */
    assert_int_equal(x.r.status, 200);
    expect_body(&x, g.big, BIG_SIZE);
    resp_free(&x);
    cond_req("GET", "If-Modified-Since", "yesterday", NULL, NULL, &x); /* invalid: ignored */
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
    /* If-None-Match present (and not matching): If-Modified-Since is ignored. */
    cond_req("GET", "If-None-Match", "\"nope\"", "If-Modified-Since", "Sun, 06 Nov 2094 08:49:37 GMT", &x);
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
}

/* If-Match (strong) and If-Unmodified-Since come first (RFC 9110 13.2.2). */
static void test_preconditions_412(void **state)
{
    (void)state;
    resp x;
    char weak[96], list[200];
    snprintf(weak, sizeof weak, "W/%s", g.big_etag);
    snprintf(list, sizeof list, "\"other\", %s", g.big_etag);
    cond_req("GET", "If-Match", "\"nope\"", NULL, NULL, &x);
    assert_int_equal(x.r.status, 412);
    assert_int_equal(x.r.fd, -1);
    expect_hdr(&x, "ETag", g.big_etag);
    resp_free(&x);
    cond_req("GET", "If-Match", weak, NULL, NULL, &x);   /* weak never matches If-Match */
    assert_int_equal(x.r.status, 412);
    resp_free(&x);
    cond_req("GET", "If-Match", list, NULL, NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_body(&x, g.big, BIG_SIZE);
    resp_free(&x);
    cond_req("HEAD", "If-Match", "*", NULL, NULL, &x);
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
    cond_req("GET", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", NULL, NULL, &x);
    assert_int_equal(x.r.status, 412);
    resp_free(&x);
    cond_req("GET", "If-Unmodified-Since", MTIME_TEXT, NULL, NULL, &x);
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
    /* If-Match present: If-Unmodified-Since is ignored; and 412 wins over 304. */
    cond_req("GET", "If-Match", g.big_etag, "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT", &x);
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
    cond_req("GET", "If-Match", "\"nope\"", "If-None-Match", "*", &x);
    assert_int_equal(x.r.status, 412);
    resp_free(&x);
}

/* ---- containment (BR-16) ---- */

static void check_traversal(nh_files *f)
{
    static const char *const bad[] = {
        "/../x",
        "/a/../../x",
        "/a/./b",
        "/a/..",
        "/.",
        "/..",
        "/./hello.txt",
        "/hello.txt/.",
        "/./sub/../index.html",
        "/../www-leak/secret.txt",
        "/../../etc/passwd", /* "/..%2f..%2fetc%2fpasswd" decoded once */
        "hello.txt",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        resp x;
        req(f, "GET", bad[i], NULL, &x);
        if (x.r.status != 400)
            fail_msg("\"%s\": %d, want 400", bad[i], x.r.status);
        expect_error(&x, 400, "400 Bad Request\n");
        resp_free(&x);
    }
    /* A NUL anywhere ("/index.html%00.png" decoded) is a 400. */
    static const char nul[] = "/hello.txt\0.png";
    resp x;
    req_n(f, "GET", nul, sizeof(nul) - 1, "/hello.txt%00.png", NULL, &x);
    expect_error(&x, 400, "400 Bad Request\n");
    resp_free(&x);

    /* Names that only look like escapes are names. */
    static const char *const missing[] = {
        "/%2e%2e/x",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/etc/passwd",
        "/..\\..\\etc\\passwd", /* "/..%5c..%5cetc%5cpasswd" decoded once */
        "/...",
        "/.hidden",
        "/hello.txt?x=1",
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        req(f, "GET", missing[i], NULL, &x);
        if (x.r.status != 404)
            fail_msg("\"%s\": %d, want 404", missing[i], x.r.status);
        expect_error(&x, 404, "404 Not Found\n");
        resp_free(&x);
    }
    req(f, "GET", "/%2e%2e/y.txt", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_text_body(&x, "y\n");
    resp_free(&x);

    /* Symlinks: inside works, anything leading out is a 404. */
    req(f, "GET", "/link-in", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_hdr(&x, "ETag", g.hello_etag);
    expect_text_body(&x, "hello\n");
    resp_free(&x);
    req(f, "GET", "/dirlink-in/", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_text_body(&x, "<h1>hi</h1>\n");
    resp_free(&x);
    static const char *const out[] = {
        "/link-out", "/link-abs", "/link-leak", "/dirlink-out/www-leak/secret.txt", "/dirlink-out/outside.txt",
        "/dirlink-out/", "/dirlink-out",
    };
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        req(f, "GET", out[i], NULL, &x);
        if (x.r.status != 404)
            fail_msg("\"%s\": %d, want 404", out[i], x.r.status);
        expect_error(&x, 404, "404 Not Found\n");
        resp_free(&x);
    }
}

static void test_traversal_openat2(void **state)
{
    (void)state;
    check_traversal(g.plain);
}

static void test_traversal_fallback(void **state)
{
    (void)state;
    check_traversal(g.fallback);
}

static void test_special_files(void **state)
{
    (void)state;
    expect_status(g.plain, "GET", "/fifo", 404);
    expect_status(g.fallback, "GET", "/fifo", 404);
    expect_status(g.plain, "GET", "/hello.txt/", 404);
    expect_status(g.plain, "GET", "/hello.txt//", 404);
    expect_status(g.plain, "GET", "/hello.txt/x", 404);
    expect_status(g.plain, "GET", "/missing.txt", 404);
    expect_status(g.plain, "GET", "/missing/", 404);
    if (geteuid() == 0) {
        /* root reads a mode-000 file anyway: the 403 mapping is covered by
         * test_errno_status; check the file is at least served sanely. */
        expect_status(g.plain, "GET", "/noperm.txt", 200);
    } else {
        resp x;
        req(g.plain, "GET", "/noperm.txt", NULL, &x);
        expect_error(&x, 403, "403 Forbidden\n");
        resp_free(&x);
    }
}

/* ---- directories ---- */

static void test_dir_index(void **state)
{
    (void)state;
    static const char *const paths[] = {"/withindex/", "/withindex//", "//withindex/", "/withindex///"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        resp x;
        req(g.plain, "GET", paths[i], NULL, &x);
        assert_int_equal(x.r.status, 200);
        expect_hdr(&x, "Content-Type", "text/html; charset=utf-8");
        expect_hdr(&x, "Content-Length", "12");
        expect_hdr(&x, "Accept-Ranges", "bytes");
        expect_hdr(&x, "Last-Modified", MTIME_TEXT);
        assert_non_null(hdr(&x, "ETag"));
        expect_text_body(&x, "<h1>hi</h1>\n");
        resp_free(&x);
    }
    /* The index is an ordinary file: conditionals and ranges apply. */
    resp x;
    char etag[80];
    etag_of("www/withindex/index.html", etag, sizeof(etag));
    const char *kv[] = {"If-None-Match", etag, NULL};
    req(g.plain, "GET", "/withindex/", kv, &x);
    assert_int_equal(x.r.status, 304);
    resp_free(&x);
    const char *kr[] = {"Range", "bytes=1-2", NULL};
    req(g.plain, "GET", "/withindex/", kr, &x);
    assert_int_equal(x.r.status, 206);
    expect_hdr(&x, "Content-Range", "bytes 1-2/12");
    expect_text_body(&x, "h1");
    resp_free(&x);

    req(g.plain, "GET", "/noindex/", NULL, &x);
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    expect_status(g.plain, "GET", "/", 404);
    expect_status(g.plain, "GET", "//", 404);
    expect_status(g.plain, "GET", "/idxdir/", 404);
    expect_status(g.plain, "GET", "/noindex/a.txt", 200);
    expect_status(g.plain, "GET", "/noindex//a.txt", 200);
    expect_status(g.plain, "GET", "//noindex/a.txt", 200);
}

static void expect_redirect(nh_files *f, const char *path, const char *raw, const char *location)
{
    resp x;
    req_n(f, "GET", path, strlen(path), raw, NULL, &x);
    expect_error(&x, 301, "301 Moved Permanently\n");
    expect_hdr(&x, "Location", location);
    resp_free(&x);
    req_n(f, "HEAD", path, strlen(path), raw, NULL, &x);
    assert_int_equal(x.r.status, 301);
    assert_true(x.r.no_body);
    expect_hdr(&x, "Location", location);
    expect_hdr(&x, "Content-Length", "22");
    resp_free(&x);
}

static void test_dir_redirect(void **state)
{
    (void)state;
    expect_redirect(g.plain, "/withindex", "/withindex", "/withindex/");
    expect_redirect(g.plain, "/sp ace", "/sp%20ace", "/sp%20ace/");
    expect_redirect(g.plain, "/sp ace", "/sp ace", "/sp%20ace/");          /* header-safe anyway */
    expect_redirect(g.plain, "/sp ace", NULL, "/sp%20ace/");               /* encoded from the path */
    expect_redirect(g.plain, "/back\\slash", "/back%5Cslash", "/back%5Cslash/");
    expect_redirect(g.plain, "/back\\slash", "/back\\slash", "/back%5Cslash/");
    expect_redirect(g.plain, "//withindex", "//withindex", "/withindex/"); /* never "//host/" */
    expect_redirect(g.plain, "///withindex", "///withindex", "/withindex/");
    expect_redirect(g.plain, "//withindex", NULL, "/withindex/");
    expect_redirect(g.plain, "/dirlink-in", "/dirlink-in", "/dirlink-in/");
    expect_redirect(g.list, "/noindex", "/noindex", "/noindex/");
    /* Not served with the slash either: no redirect. */
    resp x;
    req(g.plain, "GET", "/noindex", NULL, &x);
    expect_error(&x, 404, "404 Not Found\n");
    expect_hdr(&x, "Location", NULL);
    resp_free(&x);
    expect_status(g.plain, "GET", "/idxdir", 404);
}

static const char list_body[] = "<!DOCTYPE html>\n"
                                "<html>\n"
                                "<head>\n"
                                "<meta charset=\"utf-8\">\n"
                                "<title>Index of /list/</title>\n"
                                "</head>\n"
                                "<body>\n"
                                "<h1>Index of /list/</h1>\n"
                                "<ul>\n"
                                "<li><a href=\"../\">../</a></li>\n"
                                "<li><a href=\"%3Ca%26b%3E\">&lt;a&amp;b&gt;</a></li>\n"
                                "<li><a href=\"b.txt\">b.txt</a></li>\n"
                                "<li><a href=\"sub/\">sub/</a></li>\n"
                                "<li><a href=\"%C3%A9.txt\">\xc3\xa9.txt</a></li>\n"
                                "</ul>\n"
                                "</body>\n"
                                "</html>\n";

static void test_dir_listing(void **state)
{
    (void)state;
    resp x;
    char clen[24];
    snprintf(clen, sizeof(clen), "%zu", sizeof(list_body) - 1);
    req(g.list, "GET", "/list/", NULL, &x);
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.r.status, 200);
    assert_int_equal(x.n, 2);
    expect_hdr(&x, "Content-Type", "text/html; charset=utf-8");
    expect_hdr(&x, "Content-Length", clen);
    assert_int_equal(x.r.fd, -1);
    expect_text_body(&x, list_body);
    resp_free(&x);

    req(g.list, "HEAD", "/list//", NULL, &x);
    assert_int_equal(x.r.status, 200);
    assert_true(x.r.no_body);
    assert_null(x.r.mem);
    assert_int_equal(x.r.length, (int64_t)sizeof(list_body) - 1);
    expect_hdr(&x, "Content-Length", clen);
    resp_free(&x);

    /* The same listing with the realpath() fallback. */
    nh_files *fl;
    assert_int_equal(nh_files_new(&fl, g.root, true), 0);
    nh_files_set_fallback(fl, true);
    req(fl, "GET", "/list/", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_text_body(&x, list_body);
    resp_free(&x);
    nh_files_free(fl);

    /* The root: no "../"; index.html still wins over a listing. */
    req(g.list, "GET", "/", NULL, &x);
    assert_int_equal(x.r.status, 200);
    assert_int_equal(x.r.fd, -1);
    assert_non_null(x.r.mem);
    assert_non_null(strstr(x.r.mem, "<title>Index of /</title>"));
    assert_null(strstr(x.r.mem, "href=\"../\""));
    assert_non_null(strstr(x.r.mem, "<li><a href=\"%252e%252e/\">%2e%2e/</a></li>\n"));
    assert_non_null(strstr(x.r.mem, "<li><a href=\"sp%20ace/\">sp ace/</a></li>\n"));
    assert_non_null(strstr(x.r.mem, "<li><a href=\"back%5Cslash/\">back\\slash/</a></li>\n"));
    assert_non_null(strstr(x.r.mem, "<li><a href=\"hello.txt\">hello.txt</a></li>\n"));
    resp_free(&x);
    req(g.list, "GET", "/withindex/", NULL, &x);
    expect_text_body(&x, "<h1>hi</h1>\n");
    resp_free(&x);
    req(g.list, "GET", "/sp ace/", NULL, &x);
    expect_text_body(&x, "<h1>space</h1>\n");
    resp_free(&x);
    req(g.list, "GET", "/idxdir/", NULL, &x);
    assert_int_equal(x.r.status, 200);
    assert_non_null(strstr(x.r.mem, "<li><a href=\"index.html/\">index.html/</a></li>\n"));
    resp_free(&x);
    /* Listing mode never lists outside the root. */
    expect_status(g.list, "GET", "/dirlink-out/", 404);
    expect_status(g.list, "GET", "/../", 400);
}

/* ---- methods ---- */

static void test_method_405(void **state)
{
    (void)state;
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "head", "", "GETX"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        resp x;
        req(g.plain, methods[i], "/hello.txt", NULL, &x);
        expect_error(&x, 405, "405 Method Not Allowed\n");
        expect_hdr(&x, "Allow", "GET, HEAD");
        expect_hdr(&x, "Content-Length", "23");
        assert_int_equal(x.n, 3);
        resp_free(&x);
    }
    /* 405 comes before the path is looked at. */
    resp x;
    req(g.plain, "POST", "/../x", NULL, &x);
    assert_int_equal(x.r.status, 405);
    resp_free(&x);
}

/* ---- odd paths ---- */

static void test_odd_paths(void **state)
{
    (void)state;
    resp x;
    req(g.plain, "GET", "/sp ace/\xc3\xbc *%.txt", NULL, &x);
    assert_int_equal(x.r.status, 200);
    expect_hdr(&x, "Content-Type", "text/plain; charset=utf-8");
    expect_text_body(&x, "odd\n");
    resp_free(&x);
    expect_status(g.plain, "GET", "/*", 404);
    expect_status(g.plain, "GET", "/%", 404);
    expect_status(g.plain, "GET", "/\xff\xfe", 404);
    expect_status(g.plain, "GET", "/a b/c d", 404);
    expect_status(g.plain, "GET", "//hello.txt", 200);
    expect_status(g.plain, "GET", "/noindex//a.txt", 200);

    /* Over-long paths: 404 before touching the disk, no fixed buffers. */
    size_t big = 1u << 20;
    char *p = malloc(big + 1);
    assert_non_null(p);
    p[0] = '/';
    memset(p + 1, 'a', big - 1);
    p[big] = '\0';
    req_n(g.plain, "GET", p, big, p, NULL, &x);
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    req_n(g.plain, "GET", p, NH_FILES_PATH_MAX + 1, "/x", NULL, &x);
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    req_n(g.plain, "GET", p, NH_FILES_PATH_MAX, "/x", NULL, &x); /* one 4094-byte name */
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    for (size_t i = 1; i < NH_FILES_PATH_MAX; i += 2)
        p[i] = '/';
    req_n(g.plain, "GET", p, NH_FILES_PATH_MAX, "/x", NULL, &x); /* 2047 segments */
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    req_n(g.fallback, "GET", p, NH_FILES_PATH_MAX, "/x", NULL, &x);
    expect_error(&x, 404, "404 Not Found\n");
    resp_free(&x);
    for (size_t i = 0; i < NH_FILES_PATH_MAX; i++)
        p[i] = '/';
    req_n(g.list, "GET", p, NH_FILES_PATH_MAX, "/x", NULL, &x); /* all slashes: the root */
    assert_int_equal(x.r.status, 200);
    resp_free(&x);
    free(p);

    /* NULL getter and adder are allowed. */
    nh_files_reply r;
    assert_int_equal(nh_files_handle(g.plain, "GET", "/hello.txt", 10, "/hello.txt", NULL, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.length, 6);
    nh_files_reply_release(&r);
}

/* ---- allocation failure ---- */

static void test_alloc_failure(void **state)
{
    (void)state;
    static const char *const krange[] = {"Range", "bytes=100-199", NULL};
    static const char *const kbad[] = {"Range", "bytes=9999-", NULL};
    static const struct {
        nh_files **f;
        const char *method;
        const char *path;
        const char *raw;
        const char *const *kv;
        int status;
    } cases[] = {
        {&g.plain, "GET", "/big.nar", "/big.nar", NULL, 200},
        {&g.plain, "GET", "/big.nar", "/big.nar", krange, 206},
        {&g.plain, "GET", "/big.nar", "/big.nar", kbad, 416},
        {&g.plain, "HEAD", "/missing", "/missing", NULL, 404},
        {&g.plain, "PUT", "/x", "/x", NULL, 405},
        {&g.plain, "GET", "/../x", "/../x", NULL, 400},
        {&g.plain, "GET", "/withindex/", "/withindex/", NULL, 200},
        {&g.plain, "GET", "/sp ace", "/sp%20ace", NULL, 301},
        {&g.list, "GET", "/list/", "/list/", NULL, 200},
        {&g.list, "GET", "/", "/", NULL, 200},
        {&g.fallback, "GET", "/link-in", "/link-in", NULL, 200},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int failures = 0;
        for (long n = 1;; n++) {
            resp x;
            nh_files_test_fail_alloc(n);
            req_n(*cases[c].f, cases[c].method, cases[c].path, strlen(cases[c].path), cases[c].raw, cases[c].kv,
                  &x);
            nh_files_test_fail_alloc(0);
            if (x.rc == -ENOMEM) {
                failures++;
                assert_int_equal(x.n, 0); /* nothing half-emitted */
                assert_int_equal(x.r.fd, -1);
                assert_null(x.r.mem);
                resp_free(&x);
                continue;
            }
            assert_int_equal(x.rc, 0);
            if (x.r.status != cases[c].status)
                fail_msg("case %zu after %d failures: %d", c, failures, x.r.status);
            resp_free(&x);
            break;
        }
        assert_true(failures >= 1);
    }
    /* nh_files_new too. */
    for (long n = 1;; n++) {
        nh_files *f = NULL;
        nh_files_test_fail_alloc(n);
        int rc = nh_files_new(&f, g.root, false);
        nh_files_test_fail_alloc(0);
        if (rc == -ENOMEM) {
            assert_null(f);
            continue;
        }
        assert_int_equal(rc, 0);
        nh_files_free(f);
        break;
    }
}

/* ---- uploads (PUT) ---- */

static void test_put_path(void **state)
{
    (void)state;
    static const struct {
        const char *prefix, *path;
        int rc;
        const char *rel;
    } cases[] = {
        {"/", "/nar/x.nar", 0, "nar/x.nar"},
        {"/", "/x.narinfo", 0, "x.narinfo"},
        {"/", "//nar///x.nar", 0, "nar/x.nar"},          /* empty segments fold */
        {"/", "/%2e%2e", 0, "%2e%2e"},                   /* decoded once: a name */
        {"/up/", "/up/a/b", 0, "up/a/b"},
        {"/up", "/up/a", 0, "up/a"},                     /* a prefix is a directory */
        {"//up//", "/up/a", 0, "up/a"},
        {"/up/", "/upx", 405, NULL},                     /* not below up/ */
        {"/up", "/upload/a", 405, NULL},
        {"/up/", "/up", 405, NULL},                      /* the prefix directory itself */
        {"/up/", "/up/", 405, NULL},
        {"/up/", "/other/a", 405, NULL},
        {NULL, "/a", 405, NULL},                         /* read-only */
        {"/", "/", 405, NULL},                           /* the root itself */
        {"/", "/dir/", 409, NULL},                       /* a directory */
        {"/up/", "/up/a/", 409, NULL},
        {"/", "/../x", 400, NULL},
        {"/", "/a/./b", 400, NULL},
        {"/up/", "/up/../x", 400, NULL},
        {"/", "a", 400, NULL},                           /* no leading slash */
        {"/", "", 400, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *rel = NULL;
        int rc = nh_files_put_path(cases[i].prefix, cases[i].path, strlen(cases[i].path), &rel);
        if (rc != cases[i].rc)
            fail_msg("PUT %s under %s: %d, want %d", cases[i].path,
                     cases[i].prefix ? cases[i].prefix : "(none)", rc, cases[i].rc);
        if (cases[i].rel) {
            assert_non_null(rel);
            assert_string_equal(rel, cases[i].rel);
        } else {
            assert_null(rel);
        }
        free(rel);
    }
    /* A NUL inside the decoded path, and too long a path. */
    char *rel = NULL;
    assert_int_equal(nh_files_put_path("/", "/a\0b", 4, &rel), 400);
    char *longp = malloc(NH_FILES_PATH_MAX + 2);
    assert_non_null(longp);
    longp[0] = '/';
    memset(longp + 1, 'a', NH_FILES_PATH_MAX);
    assert_int_equal(nh_files_put_path("/", longp, NH_FILES_PATH_MAX + 1, &rel), 404);
    free(longp);
    /* Malformed prefixes. */
    assert_int_equal(nh_files_put_path("up/", "/up/a", 5, &rel), -EINVAL);
    assert_int_equal(nh_files_put_path("/up/../", "/up/a", 5, &rel), -EINVAL);
    assert_int_equal(nh_files_put_path("/", "/a", 2, NULL), -EINVAL);
    assert_null(rel);
}

static void test_put_errno_status(void **state)
{
    (void)state;
    assert_int_equal(nh_files_put_errno_status(EACCES), 403);
    assert_int_equal(nh_files_put_errno_status(EROFS), 403);
    assert_int_equal(nh_files_put_errno_status(EXDEV), 403);
    assert_int_equal(nh_files_put_errno_status(ELOOP), 403);
    assert_int_equal(nh_files_put_errno_status(ENOTDIR), 409);
    assert_int_equal(nh_files_put_errno_status(EISDIR), 409);
    assert_int_equal(nh_files_put_errno_status(ENOSPC), 507);
    assert_int_equal(nh_files_put_errno_status(EDQUOT), 507);
    assert_int_equal(nh_files_put_errno_status(EIO), 500);
}

/* Names in BASE/<rel>, sorted, joined with ' ' ("" when empty). */
static void dir_names(const char *rel, char *out, size_t n)
{
    char p[512];
    path_in(p, sizeof(p), rel);
    struct dirent **ents = NULL;
    int k = scandir(p, &ents, NULL, alphasort);
    assert_true(k >= 0);
    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (strcmp(ents[i]->d_name, ".") != 0 && strcmp(ents[i]->d_name, "..") != 0) {
            if (out[0])
                strncat(out, " ", n - strlen(out) - 1);
            strncat(out, ents[i]->d_name, n - strlen(out) - 1);
        }
        free(ents[i]);
    }
    free(ents);
}

static void expect_names(const char *rel, const char *want)
{
    char names[1024];
    dir_names(rel, names, sizeof(names));
    assert_string_equal(names, want);
}

static void expect_file(const char *rel, const char *text)
{
    char p[512], buf[256];
    path_in(p, sizeof(p), rel);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    assert_int_equal(n, (ssize_t)strlen(text));
    assert_memory_equal(buf, text, (size_t)n);
}

/* PUT through nh_files_put_begin: an error answer, or an upload. */
static nh_upload *put_begin(nh_files *f, const char *path, resp *x)
{
    nh_upload *up = NULL;
    memset(x, 0, sizeof(*x));
    x->rc = nh_files_put_begin(f, path, strlen(path), adder, x, &x->r, &up);
    return up;
}

static void expect_put_refused(nh_files *f, const char *path, int status)
{
    resp x;
    nh_upload *up = put_begin(f, path, &x);
    assert_null(up);
    char text[64];
    int n = snprintf(text, sizeof(text), "%d ", status);
    assert_int_equal(x.rc, 0);
    if (x.r.status != status)
        fail_msg("PUT %s: %d, want %d", path, x.r.status, status);
    assert_non_null(x.r.mem);
    assert_memory_equal(x.r.mem, text, (size_t)n);
    expect_hdr(&x, "Allow", status == 405 ? "GET, HEAD" : NULL);
    resp_free(&x);
}

static void test_put_upload(void **state)
{
    (void)state;
    put_dir("up");
    put_dir("up/dir");
    put_text("up/file", "file\n");
    put_dir("outside-dir");
    put_link("up/out", "../outside-dir");
    put_link("up/in", "dir");
    nh_files *f = NULL;
    char root[256];
    path_in(root, sizeof(root), "up");
    assert_int_equal(nh_files_new(&f, root, true), 0);
    assert_int_equal(nh_files_set_writable(f, "/"), 0);

    /* A new file in new directories: nothing under its name until commit. */
    resp x;
    nh_upload *up = put_begin(f, "/nar/sub/a.nar", &x);
    assert_non_null(up);
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.n, 0);
    assert_int_equal(nh_upload_write(up, "hello ", 6), 0);
    assert_int_equal(nh_upload_write(up, "world\n", 6), 0);
    assert_int_equal(nh_upload_size(up), 12);
    char names[1024];
    dir_names("up/nar/sub", names, sizeof(names));
    assert_int_equal(strncmp(names, NH_UPLOAD_TMP_PREFIX, strlen(NH_UPLOAD_TMP_PREFIX)), 0);
    assert_int_equal(strlen(names), strlen(NH_UPLOAD_TMP_PREFIX) + 32);   /* 128 random bits */
    assert_null(strchr(names, ' '));
    /* ... and a listing does not show it. */
    resp l;
    req(f, "GET", "/nar/sub/", NULL, &l);
    assert_int_equal(l.r.status, 200);
    assert_null(strstr(l.r.mem, NH_UPLOAD_TMP_PREFIX));
    resp_free(&l);
    bool created = false;
    assert_int_equal(nh_upload_commit(up, &created), 0);
    assert_true(created);
    expect_names("up/nar/sub", "a.nar");
    expect_file("up/nar/sub/a.nar", "hello world\n");
    resp_free(&x);

    /* Replacing it: the old content until commit, then the new. */
    up = put_begin(f, "/nar/sub/a.nar", &x);
    assert_non_null(up);
    assert_int_equal(nh_upload_write(up, "new\n", 4), 0);
    expect_file("up/nar/sub/a.nar", "hello world\n");
    created = true;
    assert_int_equal(nh_upload_commit(up, &created), 0);
    assert_false(created);
    expect_file("up/nar/sub/a.nar", "new\n");
    expect_names("up/nar/sub", "a.nar");
    resp_free(&x);

    /* An aborted upload leaves nothing... */
    up = put_begin(f, "/b.nar", &x);
    assert_non_null(up);
    assert_int_equal(nh_upload_write(up, "part", 4), 0);
    nh_upload_abort(up);
    resp_free(&x);
    expect_names("up", "dir file in nar out");
    /* ... nor touches a file it would have replaced. */
    up = put_begin(f, "/nar/sub/a.nar", &x);
    assert_non_null(up);
    assert_int_equal(nh_upload_write(up, "broken", 6), 0);
    nh_upload_abort(up);
    resp_free(&x);
    expect_file("up/nar/sub/a.nar", "new\n");
    expect_names("up/nar/sub", "a.nar");

    /* Refusals, each before anything is created. */
    expect_put_refused(f, "/dir", 409);          /* a directory */
    expect_put_refused(f, "/dir/", 409);
    expect_put_refused(f, "/file/x", 409);       /* a parent is a file */
    expect_put_refused(f, "/out/x", 403);        /* a symlink out of the root */
    expect_put_refused(f, "/out/new/x", 403);
    expect_put_refused(f, "/../x", 400);
    expect_names("outside-dir", "");
    expect_names("up/dir", "");
    /* A symlink that stays inside is followed. */
    up = put_begin(f, "/in/c.txt", &x);
    assert_non_null(up);
    assert_int_equal(nh_upload_commit(up, &created), 0);   /* an empty body */
    assert_true(created);
    expect_file("up/dir/c.txt", "");
    resp_free(&x);

    /* Only below the prefix. */
    assert_int_equal(nh_files_set_writable(f, "/nar/"), 0);
    expect_put_refused(f, "/c.txt", 405);
    expect_put_refused(f, "/nar", 405);
    up = put_begin(f, "/nar/d.txt", &x);
    assert_non_null(up);
    nh_upload_abort(up);
    resp_free(&x);
    /* Other methods: 405, whose Allow says whether PUT would do. */
    req(f, "DELETE", "/nar/d.txt", NULL, &x);
    assert_int_equal(x.r.status, 405);
    expect_hdr(&x, "Allow", "GET, HEAD, PUT");
    resp_free(&x);
    req(f, "POST", "/c.txt", NULL, &x);
    assert_int_equal(x.r.status, 405);
    expect_hdr(&x, "Allow", "GET, HEAD");
    resp_free(&x);
    /* Every allocation failing in turn: -ENOMEM with nothing left behind. */
    for (long n = 1;; n++) {
        nh_files_test_fail_alloc(n);
        up = put_begin(f, "/nar/e.txt", &x);
        nh_files_test_fail_alloc(0);
        if (x.rc == -ENOMEM) {
            assert_null(up);
            assert_int_equal(x.n, 0);
            assert_null(x.r.mem);
            assert_int_equal(x.r.fd, -1);
            expect_names("up/nar", "sub");
            continue;
        }
        assert_int_equal(x.rc, 0);
        assert_non_null(up);
        assert_true(n > 2);
        nh_upload_abort(up);
        resp_free(&x);
        break;
    }
    /* Read-only again. */
    assert_int_equal(nh_files_set_writable(f, NULL), 0);
    expect_put_refused(f, "/nar/d.txt", 405);
    assert_int_equal(nh_files_set_writable(f, "nar"), -EINVAL);
    assert_int_equal(nh_files_set_writable(f, "/a/../b"), -EINVAL);
    nh_files_free(f);
    expect_names("up/nar", "sub");
}

static void test_status_reply(void **state)
{
    (void)state;
    resp x;
    memset(&x, 0, sizeof(x));
    assert_int_equal(nh_files_status_reply(201, adder, &x, &x.r), 0);
    expect_error(&x, 201, "201 Created\n");
    resp_free(&x);
    memset(&x, 0, sizeof(x));
    assert_int_equal(nh_files_status_reply(204, adder, &x, &x.r), 0);
    assert_int_equal(x.r.status, 204);
    assert_true(x.r.no_body);
    assert_null(x.r.mem);
    assert_int_equal(x.n, 0);
    resp_free(&x);
    memset(&x, 0, sizeof(x));
    assert_int_equal(nh_files_status_reply(507, adder, &x, &x.r), 0);
    expect_error(&x, 507, "507 Insufficient Storage\n");
    resp_free(&x);
}

/* Runs last: every reply and listing closed what it opened. */
static void test_no_fd_leak(void **state)
{
    (void)state;
    assert_int_equal(count_fds(), g.fds_at_start);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mime_table),
        cmocka_unit_test(test_mime_names),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_date_parse_forms),
        cmocka_unit_test(test_date_roundtrip),
        cmocka_unit_test(test_date_parse_bad),
        cmocka_unit_test(test_range_parse_br17),
        cmocka_unit_test(test_range_parse_edges),
        cmocka_unit_test(test_errno_status),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_get_file),
        cmocka_unit_test(test_head_br01),
        cmocka_unit_test(test_range_br17),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_range_empty_file),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_if_modified_since),
        cmocka_unit_test(test_preconditions_412),
        cmocka_unit_test(test_traversal_openat2),
        cmocka_unit_test(test_traversal_fallback),
        cmocka_unit_test(test_special_files),
        cmocka_unit_test(test_dir_index),
        cmocka_unit_test(test_dir_redirect),
        cmocka_unit_test(test_dir_listing),
        cmocka_unit_test(test_method_405),
        cmocka_unit_test(test_odd_paths),
        cmocka_unit_test(test_put_path),
        cmocka_unit_test(test_put_errno_status),
        cmocka_unit_test(test_put_upload),
        cmocka_unit_test(test_status_reply),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_no_fd_leak),
    };
    return cmocka_run_group_tests_name("files", tests, group_setup, group_teardown);
}
