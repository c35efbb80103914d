/*
 * files: static-file answers for `nats-http serve --dir`. See files.h.
 *
 * Life of one request (nh_files_handle):
 *   method check -> decoded path to a relative path (reject "." / "..",
 *   fold empty segments) -> resolve beneath the root fd with openat2
 *   (RESOLVE_BENEATH, so neither ".." nor a symlink can leave the root) ->
 *   regular file: validators, conditionals, range -> fd + offset/length;
 *   directory: redirect, index.html or listing -> mem.
 * Every allocation happens before the first header is emitted, so an
 * allocation failure leaves the caller with nothing half-done.
 */
#define _GNU_SOURCE
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define NH_HAVE_OPENAT2_H 1
#endif
#endif

#ifndef NH_HAVE_OPENAT2_H
struct open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_BENEATH 0x08
#endif

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct nh_files {
    int rootfd;      /* O_PATH|O_DIRECTORY fd of DIR */
    char *root_real; /* realpath(DIR), for the fallback containment check */
    bool list;
    bool fallback; /* no usable openat2: resolve with realpath() */
    char *writable; /* PUT prefix as a relative path: "" = all, "up/" = below up/; NULL = none */
};

/* ---- allocation, with a test hook to fail the n-th call ---- */

static _Thread_local long nh_files_fail_at;

void nh_files_test_fail_alloc(long n)
{
    nh_files_fail_at = n > 0 ? n : 0;
}

static bool nh_alloc_fails(void)
{
    if (nh_files_fail_at <= 0)
        return false;
    return --nh_files_fail_at == 0;
}

static void *nh_malloc(size_t n)
{
    return nh_alloc_fails() ? NULL : malloc(n);
}

static void *nh_realloc(void *p, size_t n)
{
    return nh_alloc_fails() ? NULL : realloc(p, n);
}

/* ---- a growable buffer with a hard limit and a sticky error ---- */

typedef struct nh_dbuf {
    char *p;
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len */
    int err;    /* first error (-ENOMEM, -E2BIG); the buffer is then freed */
} nh_dbuf;

static void nh_dbuf_free(nh_dbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int nh_dbuf_fail(nh_dbuf *b, int err)
{
    nh_dbuf_free(b);
    b->err = err;
    return err;
}

static int nh_dbuf_add(nh_dbuf *b, const void *s, size_t n)
{
    if (b->err)
        return b->err;
    if (n > b->max - b->len)
        return nh_dbuf_fail(b, -E2BIG);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *p = nh_realloc(b->p, cap);
        if (!p)
            return nh_dbuf_fail(b, -ENOMEM);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int nh_dbuf_str(nh_dbuf *b, const char *s)
{
    return nh_dbuf_add(b, s, strlen(s));
}

/* Appends s with every byte for which keep() is false written as %XX. */
static int nh_dbuf_pct(nh_dbuf *b, const char *s, size_t n, bool (*keep)(unsigned char))
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n && !b->err; i++) {
        unsigned char c = (unsigned char)s[i];
        if (keep(c)) {
            nh_dbuf_add(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            nh_dbuf_add(b, e, 3);
        }
    }
    return b->err;
}

static int nh_dbuf_html(nh_dbuf *b, const char *s)
{
    for (; *s && !b->err; s++) {
        switch (*s) {
        case '&': nh_dbuf_str(b, "&amp;"); break;
        case '<': nh_dbuf_str(b, "&lt;"); break;
        case '>': nh_dbuf_str(b, "&gt;"); break;
        case '"': nh_dbuf_str(b, "&quot;"); break;
        case '\'': nh_dbuf_str(b, "&#39;"); break;
        default: nh_dbuf_add(b, s, 1); break;
        }
    }
    return b->err;
}

static bool nh_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool nh_unreserved_or_slash(unsigned char c)
{
    return c == '/' || nh_unreserved(c);
}

/* Raw (already encoded) path bytes that are safe in a Location header.
 * A backslash is encoded because browsers read "/\host" as "//host". */
static bool nh_location_safe(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '\\';
}

/* ---- pure helpers ---- */

static const struct {
    const char *ext;
    const char *type;
} nh_mime_tab[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"css", "text/css"},
    {"js", "text/javascript"},
    {"json", "application/json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"xml", "application/xml"},
    {"narinfo", "text/x-nix-narinfo"},
};

#define NH_MIME_DEFAULT "application/octet-stream"

const char *nh_files_mime(const char *name, size_t len)
{
    if (!name)
        return NH_MIME_DEFAULT;
    size_t base = len;
    while (base > 0 && name[base - 1] != '/')
        base--;
    const char *b = name + base;
    size_t blen = len - base;
    if (blen == sizeof("nix-cache-info") - 1 && memcmp(b, "nix-cache-info", blen) == 0)
        return "text/x-nix-cache-info";
    size_t dot = blen;
    while (dot > 0 && b[dot - 1] != '.')
        dot--;
    if (dot <= 1) /* no dot, or only a leading one (".profile") */
        return NH_MIME_DEFAULT;
    const char *ext = b + dot;
    size_t elen = blen - dot;
    for (size_t i = 0; i < sizeof(nh_mime_tab) / sizeof(nh_mime_tab[0]); i++) {
        if (strlen(nh_mime_tab[i].ext) == elen && strncasecmp(ext, nh_mime_tab[i].ext, elen) == 0)
            return nh_mime_tab[i].type;
    }
    return NH_MIME_DEFAULT;
}

int nh_files_errno_status(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return 403;
    case ENOENT:
    case ENOTDIR:
    case EXDEV: /* RESOLVE_BENEATH: the path or a symlink leaves the root */
    case ELOOP:
    case ENAMETOOLONG:
    case EISDIR:
    case ENXIO:
    case ENODEV:
        return 404;
    default:
        return 500;
    }
}

static const char nh_wday_short[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const nh_wday_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                            "Thursday", "Friday", "Saturday"};
static const char nh_month[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static char *nh_put_num(char *p, int v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + digits;
}

int nh_http_date_format(char out[30], time_t t)
{
    struct tm tm;
    out[0] = '\0';
    if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -1;
    char *p = out;
    memcpy(p, nh_wday_short[tm.tm_wday], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = nh_put_num(p, tm.tm_mday, 2);
    *p++ = ' ';
    memcpy(p, nh_month[tm.tm_mon], 3);
    p += 3;
    *p++ = ' ';
    p = nh_put_num(p, tm.tm_year + 1900, 4);
    *p++ = ' ';
    p = nh_put_num(p, tm.tm_hour, 2);
    *p++ = ':';
    p = nh_put_num(p, tm.tm_min, 2);
    *p++ = ':';
    p = nh_put_num(p, tm.tm_sec, 2);
    memcpy(p, " GMT", 5);
    return 0;
}

static bool nh_lit(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

static bool nh_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool nh_month_name(const char **p, int *mon)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, nh_month[i], 3) == 0) {
            *p += 3;
            *mon = i + 1;
            return true;
        }
    }
    return false;
}

static bool nh_wday_name(const char **p, bool full)
{
    for (int i = 0; i < 7; i++) {
        if (nh_lit(p, full ? nh_wday_long[i] : nh_wday_short[i]))
            return true;
    }
    return false;
}

static bool nh_clock(const char **p, int *h, int *m, int *s)
{
    return nh_digits(p, 2, h) && nh_lit(p, ":") && nh_digits(p, 2, m) && nh_lit(p, ":") && nh_digits(p, 2, s);
}

static bool nh_leap(int y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12). */
static int64_t nh_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in the past century. */
static int nh_rfc850_year(int yy)
{
    time_t now = time(NULL);
    struct tm tm;
    int cur = gmtime_r(&now, &tm) ? tm.tm_year + 1900 : 2000;
    int y = cur - cur % 100 + yy;
    if (y > cur + 50)
        y -= 100;
    return y;
}

int nh_http_date_parse(const char *s, time_t *out)
{
    int d = 0, mon = 0, y = 0, h = 0, mi = 0, sec = 0;
    bool ok;
    if (!s || !out || strlen(s) < 4)
        return -1;
    const char *p = s;
    if (s[3] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        ok = nh_wday_name(&p, false) && nh_lit(&p, ", ") && nh_digits(&p, 2, &d) && nh_lit(&p, " ") &&
             nh_month_name(&p, &mon) && nh_lit(&p, " ") && nh_digits(&p, 4, &y) && nh_lit(&p, " ") &&
             nh_clock(&p, &h, &mi, &sec) && nh_lit(&p, " GMT");
    } else if (s[3] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        ok = nh_wday_name(&p, false) && nh_lit(&p, " ") && nh_month_name(&p, &mon) && nh_lit(&p, " ") &&
             (nh_lit(&p, " ") ? nh_digits(&p, 1, &d) : nh_digits(&p, 2, &d)) && nh_lit(&p, " ") &&
             nh_clock(&p, &h, &mi, &sec) && nh_lit(&p, " ") && nh_digits(&p, 4, &y);
    } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        int yy = 0;
        ok = nh_wday_name(&p, true) && nh_lit(&p, ", ") && nh_digits(&p, 2, &d) && nh_lit(&p, "-") &&
             nh_month_name(&p, &mon) && nh_lit(&p, "-") && nh_digits(&p, 2, &yy) && nh_lit(&p, " ") &&
             nh_clock(&p, &h, &mi, &sec) && nh_lit(&p, " GMT");
        if (ok)
            y = nh_rfc850_year(yy);
    }
    if (!ok || *p != '\0')
        return -1;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = mdays[mon - 1] + (mon == 2 && nh_leap(y));
    if (d < 1 || d > dim || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t t = nh_days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + sec;
    *out = (time_t)t;
    return 0;
}

static const char *nh_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads decimal digits saturating at INT64_MAX; false when there are none. */
static bool nh_read_int64(const char **pp, int64_t *out)
{
    const char *p = *pp;
    int64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        int dgt = *p - '0';
        v = v > (INT64_MAX - dgt) / 10 ? INT64_MAX : v * 10 + dgt;
    }
    *pp = p;
    *out = v;
    return true;
}

int nh_range_parse(const char *value, int64_t size, int64_t *start, int64_t *len)
{
    if (!value || size < 0)
        return 0;
    const char *p = nh_skip_ows(value);
    if (strncasecmp(p, "bytes=", 6) != 0)
        return 0;
    p += 6;
    /* range-set = 1#range-spec: empty list elements are allowed, more than
     * one real element is a multi-range, which we answer with the full body. */
    const char *spec = NULL;
    for (const char *q = p;;) {
        q = nh_skip_ows(q);
        if (*q == '\0')
            break;
        if (*q == ',') {
            q++;
            continue;
        }
        if (spec)
            return 0;
        spec = q;
        while (*q && *q != ',')
            q++;
    }
    if (!spec)
        return 0;
    int64_t a = 0, b = 0;
    bool has_a = nh_read_int64(&spec, &a);
    if (*spec != '-')
        return 0;
    spec++;
    bool has_b = nh_read_int64(&spec, &b);
    spec = nh_skip_ows(spec);
    if (*spec != '\0' && *spec != ',')
        return 0;
    if (!has_a) { /* suffix: the last b bytes */
        if (!has_b)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *len = b < size ? b : size;
        *start = size - *len;
        return 1;
    }
    if (has_b && b < a)
        return 0;
    if (a >= size)
        return -1;
    int64_t last = (has_b && b < size - 1) ? b : size - 1;
    *start = a;
    *len = last - a + 1;
    return 1;
}

/* ---- opening beneath the root ---- */

static bool nh_path_inside(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return p[0] == '/';
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

/* Without openat2: resolve every symlink with realpath() and check the result
 * against the resolved root on a separator boundary. Racy against concurrent
 * renames inside the root, which openat2 is not. */
static int nh_open_fallback(const nh_files *f, const char *rel, int flags, int *fd_out)
{
    size_t rl = strlen(f->root_real), l = strlen(rel);
    char *full = nh_malloc(rl + 1 + l + 1);
    char *res = NULL;
    int rc = 0;
    if (!full)
        return -ENOMEM;
    memcpy(full, f->root_real, rl);
    full[rl] = '/';
    memcpy(full + rl + 1, rel, l + 1);
    res = realpath(full, NULL);
    if (!res)
        rc = -errno;
    if (rc == 0 && !nh_path_inside(f->root_real, res))
        rc = -EXDEV;
    if (rc == 0) {
        int extra = (flags & O_PATH) ? 0 : O_NOCTTY;
        int fd = open(res, flags | extra | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            rc = -errno;
        else
            *fd_out = fd;
    }
    free(res);
    free(full);
    return rc;
}

static int nh_open_beneath(const nh_files *f, const char *rel, int flags, int *fd_out)
{
    if (f->fallback)
        return nh_open_fallback(f, rel, flags, fd_out);
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY));
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, f->rootfd, rel, &how, sizeof(how));
        if (fd >= 0) {
            *fd_out = (int)fd;
            return 0;
        }
        int e = errno;
        /* EAGAIN: a rename raced with RESOLVE_BENEATH's ".." check; retry. */
        if ((e == EINTR || e == EAGAIN) && tries < 16)
            continue;
        if (e == ENOSYS)
            return nh_open_fallback(f, rel, flags, fd_out);
        return -e;
    }
}

/* O_PATH open + fstat: learns what rel is without opening devices or FIFOs. */
static int nh_lookup(const nh_files *f, const char *rel, int *pfd, struct stat *st)
{
    int rc = nh_open_beneath(f, rel, O_PATH, pfd);
    if (rc == 0 && fstat(*pfd, st) != 0) {
        rc = -errno;
        close(*pfd);
        *pfd = -1;
    }
    return rc;
}

/* Opens rel for reading and checks it is still the regular file `want`. */
static int nh_open_regular(const nh_files *f, const char *rel, const struct stat *want, int *fd_out, struct stat *st)
{
    int fd = -1;
    int rc = nh_open_beneath(f, rel, O_RDONLY | O_NONBLOCK, &fd);
    if (rc == 0 && fstat(fd, st) != 0)
        rc = -errno;
    if (rc == 0 && (!S_ISREG(st->st_mode) || st->st_dev != want->st_dev || st->st_ino != want->st_ino))
        rc = -ENOENT; /* replaced between the two opens */
    if (rc == 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        *fd_out = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* ---- building one reply ---- */

#define NH_HDR_MAX 8

typedef struct nh_req {
    const nh_files *f;
    bool head;
    nh_files_getter get;
    void *get_cls;
    nh_files_reply *out;
    /* Headers are collected here and emitted only once the reply is complete. */
    const char *hname[NH_HDR_MAX];
    const char *hvalue[NH_HDR_MAX];
    int nhdr;
    char clen[24];
    char etag[64];
    char lmod[30];
    char crange[96];
    char *location; /* owned */
} nh_req;

static const char *nh_req_get(const nh_req *q, const char *name)
{
    return q->get ? q->get(q->get_cls, name) : NULL;
}

static void nh_req_hdr(nh_req *q, const char *name, const char *value)
{
    if (q->nhdr < NH_HDR_MAX) {
        q->hname[q->nhdr] = name;
        q->hvalue[q->nhdr] = value;
        q->nhdr++;
    }
}

static void nh_req_clen(nh_req *q, int64_t n)
{
    snprintf(q->clen, sizeof(q->clen), "%" PRId64, n);
    nh_req_hdr(q, "Content-Length", q->clen);
}

static const char *nh_reason(int status)
{
    switch (status) {
    case 201: return "Created";
    case 301: return "Moved Permanently";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 416: return "Range Not Satisfiable";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Internal Server Error";
    }
}

/* An in-memory body: takes ownership of mem. */
static void nh_reply_mem(nh_req *q, int status, const char *ctype, char *mem, size_t len)
{
    q->out->status = status;
    q->out->mem = mem;
    q->out->mem_len = len;
    q->out->length = (int64_t)len;
    nh_req_hdr(q, "Content-Type", ctype);
    nh_req_clen(q, (int64_t)len);
}

/* "404 Not Found\n" as text/plain, after any headers already collected. */
static int nh_reply_status(nh_req *q, int status)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%d %s\n", status, nh_reason(status));
    char *mem = nh_malloc((size_t)n + 1);
    if (!mem)
        return -ENOMEM;
    memcpy(mem, line, (size_t)n + 1);
    nh_reply_mem(q, status, "text/plain; charset=utf-8", mem, (size_t)n);
    return 0;
}

static int nh_reply_errno(nh_req *q, int neg)
{
    return neg == -ENOMEM ? -ENOMEM : nh_reply_status(q, nh_files_errno_status(-neg));
}

/* Comparison of our quoted tag against a list (RFC 9110 8.8.3.2): weak for
 * If-None-Match; strong for If-Match, where a W/ tag never matches. */
static bool nh_etag_list_match_as(const char *list, const char *etag, bool strong);

static bool nh_etag_list_match(const char *list, const char *etag)
{
    return nh_etag_list_match_as(list, etag, false);
}

static bool nh_etag_list_match_as(const char *list, const char *etag, bool strong)
{
    size_t elen = strlen(etag);
    const char *p = list;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return false;
        if (*p == '*') {
            const char *e = nh_skip_ows(p + 1);
            if (*e == '\0' || *e == ',')
                return true;
        }
        bool weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        if (*p != '"' || (weak && strong)) { /* not a (usable) entity-tag: skip the element */
            if (*p == '"') {
                const char *end = strchr(p + 1, '"');
                p = end ? end + 1 : p + strlen(p);
            }
            while (*p && *p != ',')
                p++;
            continue;
        }
        const char *end = strchr(p + 1, '"');
        if (!end)
            return false;
        size_t n = (size_t)(end - p) + 1;
        if (n == elen && memcmp(p, etag, n) == 0)
            return true;
        p = end + 1;
    }
}

/* If-Range: strong comparison with the ETag, or exact Last-Modified text. */
static bool nh_if_range_match(const char *v, const char *etag, const char *lmod)
{
    const char *s = nh_skip_ows(v);
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= 2 && s[0] == 'W' && s[1] == '/')
        return false;
    if (n > 0 && s[0] == '"')
        return n == strlen(etag) && memcmp(s, etag, n) == 0;
    return lmod && lmod[0] && n == strlen(lmod) && memcmp(s, lmod, n) == 0;
}

/* The regular file rel, known by its O_PATH stat `want`. */
static int nh_serve_file(nh_req *q, const char *rel, const struct stat *want)
{
    struct stat st;
    int fd = -1;
    int rc = nh_open_regular(q->f, rel, want, &fd, &st);
    if (rc != 0)
        return nh_reply_errno(q, rc);

    uint64_t mns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    snprintf(q->etag, sizeof(q->etag), "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_ino,
             (uint64_t)st.st_size, mns);
    bool have_lmod = nh_http_date_format(q->lmod, st.st_mtim.tv_sec) == 0;

    /* Preconditions in the order of RFC 9110 13.2.2. */
    time_t since;
    const char *im = nh_req_get(q, "If-Match");
    const char *ius;
    bool failed = false;
    if (im)
        failed = !nh_etag_list_match_as(im, q->etag, true);
    else if ((ius = nh_req_get(q, "If-Unmodified-Since")) && nh_http_date_parse(ius, &since) == 0)
        failed = st.st_mtim.tv_sec > since;
    if (failed) {
        close(fd);
        nh_req_hdr(q, "ETag", q->etag);
        return nh_reply_status(q, 412);
    }

    bool not_modified = false;
    const char *inm = nh_req_get(q, "If-None-Match");
    const char *ims;
    if (inm)
        not_modified = nh_etag_list_match(inm, q->etag);
    else if ((ims = nh_req_get(q, "If-Modified-Since")) && nh_http_date_parse(ims, &since) == 0)
        not_modified = st.st_mtim.tv_sec <= since;
    if (not_modified) {
        close(fd);
        q->out->status = 304;
        q->out->no_body = true;
        q->out->length = (int64_t)st.st_size;   /* what a 200 would carry, as metadata */
        nh_req_hdr(q, "ETag", q->etag);
        if (have_lmod)
            nh_req_hdr(q, "Last-Modified", q->lmod);
        return 0;
    }

    int64_t size = (int64_t)st.st_size, start = 0, len = size;
    int range = 0;
    const char *rv = q->head ? NULL : nh_req_get(q, "Range");
    if (rv) {
        const char *ir = nh_req_get(q, "If-Range");
        if (!ir || nh_if_range_match(ir, q->etag, have_lmod ? q->lmod : NULL))
            range = nh_range_parse(rv, size, &start, &len);
    }
    if (range < 0) {
        close(fd);
        snprintf(q->crange, sizeof(q->crange), "bytes */%" PRId64, size);
        nh_req_hdr(q, "Content-Range", q->crange);
        return nh_reply_status(q, 416);
    }

    q->out->status = range ? 206 : 200;
    q->out->fd = fd;
    q->out->offset = start;
    q->out->length = len;
    nh_req_hdr(q, "Content-Type", nh_files_mime(rel, strlen(rel)));
    nh_req_clen(q, len);
    if (have_lmod)
        nh_req_hdr(q, "Last-Modified", q->lmod);
    nh_req_hdr(q, "ETag", q->etag);
    nh_req_hdr(q, "Accept-Ranges", "bytes");
    if (range) {
        snprintf(q->crange, sizeof(q->crange), "bytes %" PRId64 "-%" PRId64 "/%" PRId64, start, start + len - 1,
                 size);
        nh_req_hdr(q, "Content-Range", q->crange);
    }
    return 0;
}

/* 301 to the same path plus "/". */
static int nh_reply_redirect(nh_req *q, const char *path, size_t path_len, const char *raw_path)
{
    nh_dbuf b = {.max = 8 * (NH_FILES_PATH_MAX + 1)};
    if (raw_path) {
        /* One leading slash only: "//host/" would be a protocol-relative URL. */
        while (raw_path[0] == '/' && raw_path[1] == '/')
            raw_path++;
        if (raw_path[0] != '/')
            nh_dbuf_str(&b, "/");
        nh_dbuf_pct(&b, raw_path, strlen(raw_path), nh_location_safe);
    } else {
        while (path_len > 1 && path[0] == '/' && path[1] == '/') {
            path++;
            path_len--;
        }
        nh_dbuf_pct(&b, path, path_len, nh_unreserved_or_slash);
    }
    nh_dbuf_str(&b, "/");
    if (b.err == -E2BIG)
        return nh_reply_status(q, 404);
    if (b.err)
        return b.err;
    q->location = b.p;
    nh_req_hdr(q, "Location", q->location);
    return nh_reply_status(q, 301);
}

typedef struct nh_entry {
    char *name;
    bool dir;
} nh_entry;

static int nh_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const nh_entry *)a)->name, ((const nh_entry *)b)->name);
}

/* Reads up to NH_FILES_LIST_MAX names of the directory open as O_PATH pfd. */
static int nh_read_dir(int pfd, nh_entry **out, size_t *count, bool *cut)
{
    nh_entry *ents = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = NULL;
    if (dfd < 0)
        return -errno;
    d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    *cut = false;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            rc = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strncmp(de->d_name, NH_UPLOAD_TMP_PREFIX, sizeof(NH_UPLOAD_TMP_PREFIX) - 1) == 0)
            continue;   /* an upload under way is nobody's business */
        if (n == NH_FILES_LIST_MAX) {
            *cut = true;
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            nh_entry *p = nh_realloc(ents, ncap * sizeof(*ents));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            ents = p;
            cap = ncap;
        }
        bool isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                isdir = S_ISDIR(st.st_mode);
        }
        size_t l = strlen(de->d_name);
        char *name = nh_malloc(l + 1);
        if (!name) {
            rc = -ENOMEM;
            break;
        }
        memcpy(name, de->d_name, l + 1);
        ents[n].name = name;
        ents[n].dir = isdir;
        n++;
    }
    closedir(d);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(ents[i].name);
        free(ents);
        return rc;
    }
    *out = ents;
    *count = n;
    return 0;
}

static int nh_reply_listing(nh_req *q, const char *rel, int pfd)
{
    nh_entry *ents = NULL;
    size_t n = 0;
    bool cut = false;
    int rc = nh_read_dir(pfd, &ents, &n, &cut);
    if (rc != 0)
        return nh_reply_errno(q, rc);
    if (n > 1)
        qsort(ents, n, sizeof(*ents), nh_entry_cmp);

    bool root = strcmp(rel, ".") == 0;
    nh_dbuf b = {.max = 64u << 20};
    nh_dbuf title = {.max = 4 * (NH_FILES_PATH_MAX + 2)};
    nh_dbuf_str(&title, "/");
    if (!root) {
        nh_dbuf_html(&title, rel);
        nh_dbuf_str(&title, "/");
    }
    if (title.err == 0) {
        nh_dbuf_str(&b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Index of ");
        nh_dbuf_str(&b, title.p);
        nh_dbuf_str(&b, "</title>\n</head>\n<body>\n<h1>Index of ");
        nh_dbuf_str(&b, title.p);
        nh_dbuf_str(&b, "</h1>\n<ul>\n");
    } else {
        b.err = title.err;
    }
    if (!root)
        nh_dbuf_str(&b, "<li><a href=\"../\">../</a></li>\n");
    for (size_t i = 0; i < n && !b.err; i++) {
        nh_dbuf_str(&b, "<li><a href=\"");
        nh_dbuf_pct(&b, ents[i].name, strlen(ents[i].name), nh_unreserved);
        nh_dbuf_str(&b, ents[i].dir ? "/\">" : "\">");
        nh_dbuf_html(&b, ents[i].name);
        nh_dbuf_str(&b, ents[i].dir ? "/</a></li>\n" : "</a></li>\n");
    }
    nh_dbuf_str(&b, "</ul>\n");
    if (cut) {
        char note[80];
        snprintf(note, sizeof(note), "<p>Listing cut at %d entries.</p>\n", NH_FILES_LIST_MAX);
        nh_dbuf_str(&b, note);
    }
    nh_dbuf_str(&b, "</body>\n</html>\n");

    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    nh_dbuf_free(&title);
    if (b.err == -ENOMEM)
        return -ENOMEM;
    if (b.err)
        return nh_reply_status(q, 500);
    nh_reply_mem(q, 200, "text/html; charset=utf-8", b.p, b.len);
    return 0;
}

/* Looks for rel/index.html: 1 and *irel (owned) + *st if it is a regular
 * file, 0 if there is none, or -errno (-ENOMEM, -EACCES, ...). */
static int nh_find_index(const nh_files *f, const char *rel, char **irel, struct stat *st)
{
    static const char idx[] = "index.html";
    bool root = strcmp(rel, ".") == 0;
    size_t l = root ? 0 : strlen(rel) + 1;
    char *p = nh_malloc(l + sizeof(idx));
    int pfd = -1;
    if (!p)
        return -ENOMEM;
    if (!root) {
        memcpy(p, rel, l - 1);
        p[l - 1] = '/';
    }
    memcpy(p + l, idx, sizeof(idx));
    int rc = nh_lookup(f, p, &pfd, st);
    if (pfd >= 0)
        close(pfd);
    if (rc == 0)
        rc = S_ISREG(st->st_mode) ? 1 : 0;
    else if (nh_files_errno_status(-rc) == 404)
        rc = 0;
    if (rc == 1)
        *irel = p;
    else
        free(p);
    return rc;
}

static int nh_serve_dir(nh_req *q, const char *rel, int pfd, bool slash, const char *path, size_t path_len,
                        const char *raw_path)
{
    char *irel = NULL;
    struct stat ist;
    int rc = nh_find_index(q->f, rel, &irel, &ist);
    if (rc == -ENOMEM)
        return rc;
    if (!slash) {
        if (rc == 1 || q->f->list)
            rc = nh_reply_redirect(q, path, path_len, raw_path);
        else
            rc = nh_reply_status(q, 404);
    } else if (rc == 1) {
        rc = nh_serve_file(q, irel, &ist);
    } else if (rc < 0) {
        rc = nh_reply_errno(q, rc);
    } else if (q->f->list) {
        rc = nh_reply_listing(q, rel, pfd);
    } else {
        rc = nh_reply_status(q, 404);
    }
    free(irel);
    return rc;
}

/* Decoded path -> relative path beneath the root ("." for the root itself).
 * Returns 0, an HTTP status to answer with, or -ENOMEM. */
static int nh_path_to_rel(const char *path, size_t len, char **out, bool *slash)
{
    if (len == 0 || path[0] != '/' || memchr(path, '\0', len))
        return 400;
    if (len > NH_FILES_PATH_MAX)
        return 404;
    char *rel = nh_malloc(len + 2);
    size_t n = 0, i = 0;
    if (!rel)
        return -ENOMEM;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        size_t s = i;
        while (i < len && path[i] != '/')
            i++;
        size_t sl = i - s;
        if (sl == 0)
            continue; /* empty segment: "//" folds into "/" */
        if ((sl == 1 && path[s] == '.') || (sl == 2 && path[s] == '.' && path[s + 1] == '.')) {
            free(rel);
            return 400;
        }
        if (n > 0)
            rel[n++] = '/';
        memcpy(rel + n, path + s, sl);
        n += sl;
    }
    if (n == 0)
        rel[n++] = '.';
    rel[n] = '\0';
    *slash = path[len - 1] == '/';
    *out = rel;
    return 0;
}

static int nh_serve_path(nh_req *q, const char *rel, bool slash, const char *path, size_t path_len,
                         const char *raw_path)
{
    struct stat st;
    int pfd = -1;
    int rc = nh_lookup(q->f, rel, &pfd, &st);
    if (rc != 0)
        return nh_reply_errno(q, rc);
    if (S_ISDIR(st.st_mode))
        rc = nh_serve_dir(q, rel, pfd, slash, path, path_len, raw_path);
    else if (S_ISREG(st.st_mode) && !slash)
        rc = nh_serve_file(q, rel, &st);
    else /* a file asked for as a directory, FIFOs, devices, sockets */
        rc = nh_reply_status(q, 404);
    close(pfd);
    return rc;
}

static void nh_reply_init(nh_files_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

/* ---- uploads (PUT below the writable prefix) ---- */

/* A prefix ("/", "/up/", "/up") as a relative path with a trailing '/'
 * ("" for the root). Returns 0, 400 for a prefix that is not a clean
 * absolute path, or -ENOMEM. */
static int nh_prefix_to_rel(const char *prefix, char **out)
{
    char *rel = NULL;
    bool slash = false;
    int rc = nh_path_to_rel(prefix, strlen(prefix), &rel, &slash);
    if (rc != 0)
        return rc;
    if (strcmp(rel, ".") == 0) {
        rel[0] = '\0';
    } else {
        size_t n = strlen(rel);   /* rel has room for two more bytes */
        rel[n] = '/';
        rel[n + 1] = '\0';
    }
    *out = rel;
    return 0;
}

/* The PUT decision against an already normalised prefix (NULL: none). */
static int nh_put_rel(const char *wrel, const char *path, size_t path_len, char **out)
{
    char *rel = NULL;
    bool slash = false;
    int rc = nh_path_to_rel(path, path_len, &rel, &slash);
    if (rc != 0)
        return rc;
    if (!wrel || strncmp(rel, wrel, strlen(wrel)) != 0 || strcmp(rel, ".") == 0) {
        /* outside the prefix (the prefix directory itself included) */
        rc = 405;
    } else if (slash) {
        rc = 409;   /* a directory cannot be uploaded */
    }
    if (rc != 0) {
        free(rel);
        return rc;
    }
    *out = rel;
    return 0;
}

int nh_files_put_path(const char *prefix, const char *path, size_t path_len, char **rel)
{
    char *wrel = NULL;
    if (!rel || (!path && path_len > 0))
        return -EINVAL;
    if (!path)
        return 400;
    if (prefix) {
        int rc = nh_prefix_to_rel(prefix, &wrel);
        if (rc != 0)
            return rc < 0 ? rc : -EINVAL;
    }
    int rc = nh_put_rel(wrel, path, path_len, rel);
    free(wrel);
    return rc;
}

int nh_files_set_writable(nh_files *f, const char *prefix)
{
    char *wrel = NULL;
    if (!f)
        return -EINVAL;
    if (prefix) {
        int rc = nh_prefix_to_rel(prefix, &wrel);
        if (rc != 0)
            return rc < 0 ? rc : -EINVAL;
    }
    free(f->writable);
    f->writable = wrel;
    return 0;
}

int nh_files_put_errno_status(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
    case EXDEV:   /* RESOLVE_BENEATH: a symlink would lead out of the root */
    case ELOOP:
        return 403;
    case ENOTDIR: /* a parent is a file */
    case EISDIR:  /* the target is a directory */
    case EEXIST:
        return 409;
    case ENAMETOOLONG:
        return 404;
    case ENOSPC:
    case EDQUOT:
        return 507;
    default:
        return 500;
    }
}

struct nh_upload {
    int dirfd;       /* the target's directory, O_RDONLY (fsync'd after the rename) */
    int fd;          /* the temporary file, or -1 once closed */
    char *base;      /* the target's name in dirfd */
    char tmp[sizeof(NH_UPLOAD_TMP_PREFIX) + 32];
    int64_t size;
};

static void nh_fsync_dir(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Opens the directory rel[0..len) (len 0: the root) beneath the root,
 * creating it and any missing parent first. Every step goes through
 * nh_open_beneath, so a symlink is followed only while it stays inside;
 * mkdirat never follows one. Returns 0 and *fd_out (O_RDONLY), or -errno. */
static int nh_open_dir_creating(const nh_files *f, char *rel, size_t len, int *fd_out)
{
    int parent = -1, rc = 0;
    if (len == 0) {
        int fd = openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        *fd_out = fd;
        return 0;
    }
    size_t i = 0;
    while (rc == 0) {
        size_t s = i;
        while (i < len && rel[i] != '/')
            i++;
        bool last = i >= len;
        char saved = rel[i];
        rel[i] = '\0';   /* rel[0..i) is the directory to open now */
        int fd = -1;
        int flags = last ? O_RDONLY | O_DIRECTORY : O_PATH | O_DIRECTORY;
        rc = nh_open_beneath(f, rel, flags, &fd);
        if (rc == -ENOENT) {
            int pd = parent >= 0 ? parent : f->rootfd;
            if (mkdirat(pd, rel + s, 0755) == 0)
                nh_fsync_dir(pd);
            else if (errno != EEXIST)
                rc = -errno;
            if (rc == -ENOENT)
                rc = nh_open_beneath(f, rel, flags, &fd);
        }
        rel[i] = saved;
        if (parent >= 0)
            close(parent);
        parent = fd;
        if (rc == 0 && last) {
            *fd_out = fd;
            return 0;
        }
        i++;
    }
    if (parent >= 0)
        close(parent);
    return rc;
}

int nh_upload_open(const nh_files *f, const char *rel, nh_upload **out)
{
    if (!f || !rel || !out || !*rel || strcmp(rel, ".") == 0)
        return -EINVAL;
    nh_upload *u = nh_malloc(sizeof(*u));
    if (!u)
        return -ENOMEM;
    memset(u, 0, sizeof(*u));
    u->dirfd = u->fd = -1;
    size_t n = strlen(rel);
    char *copy = nh_malloc(n + 1);
    int rc = copy ? 0 : -ENOMEM;
    if (rc == 0) {
        memcpy(copy, rel, n + 1);
        char *slash = strrchr(copy, '/');
        size_t dlen = slash ? (size_t)(slash - copy) : 0;
        size_t blen = n - (slash ? dlen + 1 : 0);
        u->base = nh_malloc(blen + 1);
        if (!u->base)
            rc = -ENOMEM;
        else
            memcpy(u->base, rel + n - blen, blen + 1);
        if (rc == 0)
            rc = nh_open_dir_creating(f, copy, dlen, &u->dirfd);
    }
    free(copy);
    struct stat st;
    if (rc == 0 && fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        rc = -EISDIR;
    for (int tries = 0; rc == 0 && u->fd < 0; tries++) {
        unsigned char rnd[16];
        static const char hex[] = "0123456789abcdef";
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            rc = -EIO;
            break;
        }
        char *p = u->tmp + sprintf(u->tmp, "%s", NH_UPLOAD_TMP_PREFIX);
        for (size_t k = 0; k < sizeof(rnd); k++) {
            *p++ = hex[rnd[k] >> 4];
            *p++ = hex[rnd[k] & 15];
        }
        *p = '\0';
        u->fd = openat(u->dirfd, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
                       0644);
        if (u->fd < 0 && (errno != EEXIST || tries >= 4))
            rc = -errno;
    }
    if (rc != 0) {
        u->tmp[0] = '\0';   /* nothing of ours to remove */
        nh_upload_abort(u);
        return rc;
    }
    *out = u;
    return 0;
}

int nh_upload_write(nh_upload *u, const void *data, size_t len)
{
    const char *p = data;
    if (!u || u->fd < 0 || (!data && len > 0))
        return -EINVAL;
    while (len > 0) {
        ssize_t n = write(u->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        u->size += n;
    }
    return 0;
}

int64_t nh_upload_size(const nh_upload *u)
{
    return u ? u->size : 0;
}

int nh_upload_commit(nh_upload *u, bool *created)
{
    int rc = 0;
    bool fresh = true;
    if (!u || u->fd < 0)
        return -EINVAL;
    if (fsync(u->fd) != 0)
        rc = -errno;
    if (close(u->fd) != 0 && rc == 0)
        rc = -errno;
    u->fd = -1;
    if (rc == 0 && renameat2(u->dirfd, u->tmp, u->dirfd, u->base, RENAME_NOREPLACE) != 0) {
        rc = -errno;
        if (rc == -EEXIST || rc == -EINVAL || rc == -ENOSYS) {
            /* there is a file (or the file system cannot tell us): replace it */
            struct stat st;
            fresh = rc != -EEXIST && fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) != 0;
            rc = renameat(u->dirfd, u->tmp, u->dirfd, u->base) == 0 ? 0 : -errno;
        }
    }
    if (rc == 0) {
        u->tmp[0] = '\0';   /* it has the target's name now */
        if (fsync(u->dirfd) != 0)
            rc = -errno;
    }
    if (rc == 0 && created)
        *created = fresh;
    nh_upload_abort(u);
    return rc;
}

void nh_upload_abort(nh_upload *u)
{
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    if (u->tmp[0] && u->dirfd >= 0)
        (void)unlinkat(u->dirfd, u->tmp, 0);
    if (u->dirfd >= 0)
        close(u->dirfd);
    free(u->base);
    free(u);
}

/* Emits the collected headers of a finished reply, or empties it on failure. */
static int nh_req_emit(nh_req *q, int rc, nh_files_adder add, void *add_cls)
{
    if (rc == 0) {
        for (int i = 0; i < q->nhdr && add; i++)
            add(add_cls, q->hname[i], q->hvalue[i]);
    } else {
        nh_files_reply_release(q->out);
        nh_reply_init(q->out);
    }
    return rc;
}

int nh_files_put_begin(const nh_files *f, const char *path, size_t path_len, nh_files_adder add,
                       void *add_cls, nh_files_reply *out, nh_upload **up)
{
    nh_req q = {.f = f, .out = out};
    char *rel = NULL;
    if (!out)
        return -EINVAL;
    nh_reply_init(out);
    if (!up || !f || (!path && path_len > 0))
        return -EINVAL;
    *up = NULL;
    int rc = path ? nh_put_rel(f->writable, path, path_len, &rel) : 400;
    if (rc == 0) {
        rc = nh_upload_open(f, rel, up);
        if (rc < 0 && rc != -ENOMEM)
            rc = nh_files_put_errno_status(-rc);
    }
    if (rc == 405)
        nh_req_hdr(&q, "Allow", "GET, HEAD");
    if (rc > 0)
        rc = nh_reply_status(&q, rc);
    free(rel);
    return nh_req_emit(&q, rc, add, add_cls);
}

int nh_files_status_reply(int status, nh_files_adder add, void *add_cls, nh_files_reply *out)
{
    nh_req q = {.out = out};
    if (!out)
        return -EINVAL;
    nh_reply_init(out);
    int rc = 0;
    if (status == 204 || status == 304) {
        out->status = status;
        out->no_body = true;
    } else {
        rc = nh_reply_status(&q, status);
    }
    return nh_req_emit(&q, rc, add, add_cls);
}

int nh_files_handle(const nh_files *f, const char *method, const char *path, size_t path_len,
                    const char *raw_path, nh_files_getter get, void *get_cls, nh_files_adder add,
                    void *add_cls, nh_files_reply *out)
{
    nh_req q = {.f = f, .get = get, .get_cls = get_cls, .out = out};
    char *rel = NULL;
    bool slash = false;
    int rc = 0;

    if (!out)
        return -EINVAL;
    nh_reply_init(out);
    if (!f || !method || (!path && path_len > 0))
        return -EINVAL;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        rc = path ? nh_put_rel(f->writable, path, path_len, &rel) : 400;
        nh_req_hdr(&q, "Allow", rc == 0 ? "GET, HEAD, PUT" : "GET, HEAD");
        rc = rc < 0 ? rc : nh_reply_status(&q, 405);
        goto done;
    }
    q.head = strcmp(method, "HEAD") == 0;
    rc = nh_path_to_rel(path, path_len, &rel, &slash);
    if (rc > 0) {
        rc = nh_reply_status(&q, rc);
        goto done;
    }
    if (rc == 0)
        rc = nh_serve_path(&q, rel, slash, path, path_len, raw_path);

done:
    if (rc == 0) {
        if (q.head || out->no_body) {
            int64_t len = out->length;
            int status = out->status;
            nh_files_reply_release(out);
            out->status = status;
            out->length = len;
            out->no_body = true;
        }
        for (int i = 0; i < q.nhdr && add; i++)
            add(add_cls, q.hname[i], q.hvalue[i]);
    } else {
        nh_files_reply_release(out);
        nh_reply_init(out);
    }
    free(q.location);
    free(rel);
    return rc;
}

void nh_files_reply_release(nh_files_reply *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->mem);
    r->fd = -1;
    r->mem = NULL;
    r->mem_len = 0;
}

/* ---- the handle ---- */

int nh_files_new(nh_files **out, const char *dir, bool list)
{
    nh_files *f = NULL;
    int rc = 0;
    if (!out || !dir)
        return -EINVAL;
    f = nh_malloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    memset(f, 0, sizeof(*f));
    f->list = list;
    f->rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (f->rootfd < 0)
        rc = -errno;
    if (rc == 0 && !(f->root_real = realpath(dir, NULL)))
        rc = -errno;
    if (rc == 0) {
        /* Probe once: kernels before 5.6 say ENOSYS, some seccomp filters EPERM. */
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, f->rootfd, ".", &how, sizeof(how));
        if (fd >= 0)
            close((int)fd);
        else if (errno == ENOSYS || errno == EPERM)
            f->fallback = true;
    }
    if (rc != 0) {
        nh_files_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void nh_files_free(nh_files *f)
{
    if (!f)
        return;
    if (f->rootfd >= 0)
        close(f->rootfd);
    free(f->root_real);
    free(f->writable);
    free(f);
}

void nh_files_set_fallback(nh_files *f, bool on)
{
    if (f)
        f->fallback = on;
}
