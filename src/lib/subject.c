/* subject.c - URL paths to NATS subjects.
 *
 * Native layout: <prefix>.<METHOD>.<segment>.<segment>..., one token per path
 * segment, so that NATS permissions can grant by method and folder
 * ("site.GET.>", "site.PUT.uploads.>"). Invertible and canonical: the server
 * recovers the path from the subject alone and accepts only the subject the
 * path maps to.
 *
 * v1 ("compat") layout: <prefix>.<tokens of the path>.<METHOD>, the path split
 * on '/' and '.'. A NATS subject token may not be empty and may not hold
 * whitespace, '*' or '>' (nats-server rejects such a PUB, or reads it as a
 * wildcard), so bytes a token cannot carry are written as %XX and an empty
 * token as "%". '%' itself becomes %25, so the escaping is unambiguous. */
#include "internal.h"

#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void natshttp_path_decode(const char *src, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (src[i] == '%' && i + 2 < len && (hi = hexval((unsigned char)src[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)src[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = src[i];
        }
    }
    out[o] = 0;
    *out_len = o;
}

/* Bytes a subject token carries as they are. */
static bool token_byte_plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '*' && c != '>' && c != '%' && c != '.';
}

typedef struct sbuf {
    char *p;
    size_t cap, len;
    bool overflow;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->overflow || n > b->cap - 1 - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_token(sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    put(b, ".", 1);
    if (n == 0) {
        put(b, "%", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (token_byte_plain(c)) {
            put(b, (const char *)&s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(b, e, 3);
        }
    }
}

/* What both layouts ask of their arguments. */
static natshttp_status subject_args(const char *out, size_t cap, const char *prefix,
                                    const char *method, const char *path, size_t len)
{
    if (!out || cap == 0 || !prefix || !*prefix || !path || len == 0 || path[0] != '/')
        return NATSHTTP_INVALID;
    return natshttp_method_valid(method) ? NATSHTTP_OK : NATSHTTP_BAD_METHOD;
}

/* Ends a subject written into b: NUL-terminated, or URI_TOO_LONG. */
static natshttp_status subject_end(sbuf *b)
{
    if (b->overflow)
        return NATSHTTP_URI_TOO_LONG;
    b->p[b->len] = 0;
    return NATSHTTP_OK;
}

natshttp_status natshttp_subject_compat(char *out, size_t cap, const char *prefix,
                                        const char *method, const char *path, size_t len)
{
    natshttp_status st = subject_args(out, cap, prefix, method, path, len);
    if (st != NATSHTTP_OK)
        return st;
    sbuf b = {out, cap, 0, false};
    put(&b, prefix, strlen(prefix));
    /* "/" contributes nothing; otherwise every '/' or '.' starts a new token. */
    if (len > 1) {
        size_t start = 1;
        for (size_t i = 1; i <= len; i++) {
            if (i == len || path[i] == '/' || path[i] == '.') {
                put_token(&b, path + start, i - start);
                start = i + 1;
            }
        }
    }
    put(&b, ".", 1);
    put(&b, method, strlen(method));
    return subject_end(&b);
}

natshttp_status natshttp_subject_native(char *out, size_t cap, const char *prefix,
                                        const char *method, const char *path, size_t len)
{
    natshttp_status st = subject_args(out, cap, prefix, method, path, len);
    if (st != NATSHTTP_OK)
        return st;
    sbuf b = {out, cap, 0, false};
    put(&b, prefix, strlen(prefix));
    put(&b, ".", 1);
    put(&b, method, strlen(method));
    /* Every segment after the leading '/' is one token, the empty ones too:
     * "/" is one empty segment, "/a/" is "a" and an empty one. */
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i == len || path[i] == '/') {
            put_token(&b, path + start, i - start);
            start = i + 1;
        }
    }
    return subject_end(&b);
}

natshttp_status natshttp_subject_native_parse(const char *subject, const char *prefix,
                                              char *method, size_t method_cap, char *path,
                                              size_t path_cap, size_t *path_len)
{
    if (!subject || !prefix || !method || !path || path_cap == 0 || !path_len)
        return NATSHTTP_INVALID;
    size_t plen = strlen(prefix);
    if (strncmp(subject, prefix, plen) != 0 || subject[plen] != '.')
        return NATSHTTP_BAD_REQUEST;
    const char *m = subject + plen + 1;
    const char *dot = strchr(m, '.');
    size_t mlen = dot ? (size_t)(dot - m) : strlen(m);
    if (mlen + 1 > method_cap)
        return NATSHTTP_BAD_METHOD;
    memcpy(method, m, mlen);
    method[mlen] = 0;
    if (!natshttp_method_valid(method))
        return NATSHTTP_BAD_METHOD;
    if (!dot)
        return NATSHTTP_BAD_PATH;   /* every path has at least one segment */

    size_t o = 0;
    for (const char *t = dot + 1;;) {
        const char *end = strchr(t, '.');
        size_t n = end ? (size_t)(end - t) : strlen(t);
        if (o + 1 >= path_cap)
            return NATSHTTP_URI_TOO_LONG;
        path[o++] = '/';
        if (!(n == 1 && t[0] == '%')) {   /* "%" alone is the empty segment */
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)t[i];
                int hi, lo;
                if (c == '%') {
                    if (i + 2 >= n)
                        return NATSHTTP_BAD_PATH;
                    hi = hexval((unsigned char)t[i + 1]);
                    lo = hexval((unsigned char)t[i + 2]);
                    if (hi < 0 || lo < 0)
                        return NATSHTTP_BAD_PATH;
                    c = (unsigned char)(hi << 4 | lo);
                    i += 2;
                } else if (!token_byte_plain(c)) {
                    return NATSHTTP_BAD_PATH;
                }
                if (o + 1 >= path_cap)
                    return NATSHTTP_URI_TOO_LONG;
                path[o++] = (char)c;
            }
        }
        if (!end)
            break;
        t = end + 1;
    }
    path[o] = 0;
    *path_len = o;
    /* One path, one subject: a subject that is not exactly what the path maps
     * to (%61 for 'a', lower-case hex, a '/' smuggled in as %2F) would let a
     * request past a permission written for the canonical form. */
    char again[NH_MAX_SUBJECT];
    if (natshttp_subject_native(again, sizeof again, prefix, method, path, o) != NATSHTTP_OK ||
        strcmp(again, subject) != 0)
        return NATSHTTP_BAD_PATH;
    return NATSHTTP_OK;
}

bool natshttp_path_has_dot_segment(const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/')
            continue;
        size_t n = 0;
        while (i + 1 + n < len && path[i + 1 + n] != '/')
            n++;
        if ((n == 1 || n == 2) && memcmp(path + i + 1, "..", n) == 0)
            return true;
    }
    return false;
}

bool nh_inbox_prefix_valid(const char *p)
{
    return !p || (strlen(p) <= NH_MAX_INBOX_PREFIX && nh_prefix_valid(p));
}

natsStatus nh_make_inbox(char *out, size_t cap, const char *prefix)
{
    natsInbox *inbox = NULL;
    natsStatus ns = natsInbox_Create(&inbox);   /* "_INBOX.<nuid>" */
    if (ns != NATS_OK)
        return ns;
    const char *nuid = strrchr((const char *)inbox, '.');
    nuid = nuid ? nuid + 1 : (const char *)inbox;
    int n = snprintf(out, cap, "%s.%s", prefix ? prefix : "_INBOX", nuid);
    natsInbox_Destroy(inbox);
    return n > 0 && (size_t)n < cap ? NATS_OK : NATS_INVALID_ARG;
}

bool nh_prefix_valid(const char *p)
{
    if (!p || !*p || *p == '.')
        return false;
    size_t n = strlen(p);
    if (p[n - 1] == '.' || n > NH_MAX_SUBJECT / 2)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f || c == '*' || c == '>' || (c == '.' && p[i + 1] == '.'))
            return false;
    }
    return true;
}

bool natshttp_subject_valid(const char *prefix) { return nh_prefix_valid(prefix); }
