/* fuzz_subject.c - subjects and paths from the wire.
 *
 * Input: "<prefix>\n<method>\n<flags byte><path bytes...>". The path is used
 * raw (percent-decoding is fuzzed on it too) and, decoded, mapped through
 * every subject layout; a subject built from the same bytes is given to each
 * layout's decoder, as a server would get it from NATS.
 *
 * Invariants: prefix validity matches the rule written out here; a mapped
 * subject is one nats-server accepts as a literal subject, starts with the
 * prefix, fits the buffer exactly when the buffer is large enough, and maps
 * back to the same method and path on the server side; whatever a decoder
 * accepts re-encodes to exactly the subject it came from (so no two
 * subjects reach a server as one path); in a layout marked injective two
 * different paths never share a subject (compat is not: it splits on '.'
 * and '/' alike, and marking it injective makes the seeds fail).
 *
 * Layouts. Each entry of `layouts` below is an encoder (the signature of
 * natshttp_subject_compat) plus an optional decoder recovering method and
 * path from the subject alone (NULL for compat, which is lossy: its server
 * side is nh_wire_parse_request with X-Path, fuzzed here too), and native,
 * whose decoder is natshttp_subject_native_parse. */
#include "fuzz.h"

typedef natshttp_status (*layout_encode_fn)(char *out, size_t cap, const char *prefix,
                                            const char *method, const char *path, size_t len);
/* Method and path from a subject; false when the subject is not one of this
 * layout under prefix. method holds 16 bytes, path NH_MAX_SUBJECT. */
typedef bool (*layout_decode_fn)(const char *prefix, const char *subject, char *method,
                                 char *path, size_t *path_len);

typedef struct layout {
    const char *name;
    layout_encode_fn encode;
    layout_decode_fn decode;   /* NULL: the subject alone does not give the path */
    bool injective;            /* different paths never share a subject */
} layout;

static bool native_decode(const char *prefix, const char *subject, char *method, char *path,
                          size_t *path_len)
{
    return natshttp_subject_native_parse(subject, prefix, method, 16, path, NH_MAX_SUBJECT,
                                         path_len) == NATSHTTP_OK;
}

static const layout layouts[] = {
    {"compat", natshttp_subject_compat, NULL, false},
    {"native", natshttp_subject_native, native_decode, true},
};

static nh_route compat_route(const char *prefix)
{
    return (nh_route){prefix, NATSHTTP_LAYOUT_COMPAT, false};
}

/* nats-server's literal subject: non-empty tokens without whitespace or wildcards. */
static bool subject_literal(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || (c == '.' && s[i + 1] == '.'))
            return false;
        if ((c == '*' || c == '>') && (i == 0 || s[i - 1] == '.') &&
            (s[i + 1] == 0 || s[i + 1] == '.'))
            return false;
    }
    return true;
}

/* The prefix rule as docs/protocol.md states it, written independently. */
static bool prefix_rule(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > NH_MAX_SUBJECT / 2 || p[0] == '.' || p[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f || c == '*' || c == '>' || (c == '.' && p[i + 1] == '.'))
            return false;
    }
    return true;
}

static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

/* The server side of compat: the request a subject and X-Path make. */
static natshttp_status server_parse(const char *prefix, const char *subject, const char *xpath,
                                    char **decoded, size_t *dlen)
{
    char hdr[NH_MAX_SUBJECT + 64];
    int n = snprintf(hdr, sizeof hdr, "X-Path: %s\n", xpath);
    if (n < 0 || (size_t)n >= sizeof hdr)
        return NATSHTTP_INVALID;
    natsMsg *m = fz_msg(subject, "_INBOX.r.1", FZ_HDR_ADD, (const uint8_t *)hdr, (size_t)n,
                        NULL, 0);
    if (!m)
        return NATSHTTP_INVALID;
    natshttp_head *req = NULL;
    char *raw = NULL;
    *decoded = NULL;
    natshttp_head_new(&req, 0);
    nh_route rt = compat_route(prefix);
    natshttp_status st = nh_wire_parse_request(m, &rt, req, &raw, decoded, dlen);
    if (st == NATSHTTP_OK) {
        FUZZ_CHECK(strcmp(natshttp_head_method(req), strrchr(subject, '.') + 1) == 0);
        FUZZ_CHECK(raw && raw[0] == '/');
        /* the raw path decodes to the decoded one */
        size_t rl = strlen(raw), cl = 0;
        char *check = malloc(rl + 1);
        natshttp_path_decode(raw, rl, check, &cl);
        FUZZ_CHECK(cl == *dlen && memcmp(check, *decoded, cl) == 0);
        free(check);
    }
    free(raw);
    natshttp_head_free(req);
    natsMsg_Destroy(m);
    return st;
}

static void check_layout(const layout *l, const char *prefix, const char *method,
                         const char *path, size_t plen, size_t small_cap)
{
    static char big[NH_MAX_SUBJECT * 4], small[NH_MAX_SUBJECT];
    natshttp_status st = l->encode(big, sizeof big, prefix, method, path, plen);
    natshttp_status st2 = l->encode(small, small_cap, prefix, method, path, plen);
    if (st != NATSHTTP_OK) {
        FUZZ_CHECK(st2 == st || (st == NATSHTTP_URI_TOO_LONG && st2 != NATSHTTP_OK));
        return;
    }
    size_t n = strlen(big);
    FUZZ_CHECK(n < sizeof big);
    /* the small buffer holds it exactly when it is large enough */
    if (n < small_cap) {
        FUZZ_CHECK(st2 == NATSHTTP_OK && strcmp(small, big) == 0);
    } else {
        FUZZ_CHECK(st2 == NATSHTTP_URI_TOO_LONG);
    }
    size_t pl = strlen(prefix);
    FUZZ_CHECK(strncmp(big, prefix, pl) == 0 && big[pl] == '.');
    if (prefix_rule(prefix))
        FUZZ_CHECK(subject_literal(big));
    /* Beyond the prefix every byte is plain printable ASCII. */
    for (size_t i = pl; i < n; i++)
        FUZZ_CHECK(big[i] > 0x20 && big[i] < 0x7f && big[i] != '*' && big[i] != '>');

    /* (the decoder re-encodes into NH_MAX_SUBJECT to check the subject is canonical) */
    if (l->decode && n < NH_MAX_SUBJECT) {
        char m[16], *p = malloc(NH_MAX_SUBJECT);
        size_t got = 0;
        FUZZ_CHECK(l->decode(prefix, big, m, p, &got));
        FUZZ_CHECK(strcmp(m, method) == 0 && got == plen && memcmp(p, path, plen) == 0);
        free(p);
    }
    /* Compat's server side: the path that made the subject is accepted on it. */
    if (strcmp(l->name, "compat") == 0 && n < NH_MAX_SUBJECT && !has_ctl(path, plen) &&
        !memchr(path, 0, plen) && prefix_rule(prefix)) {
        char *xpath = fz_str((const uint8_t *)path, plen), *dec = NULL;
        size_t dl = 0;
        natshttp_status ps = server_parse(prefix, big, xpath, &dec, &dl);
        /* dot segments are refused on purpose (docs/protocol.md 1.1) */
        FUZZ_CHECK(ps == NATSHTTP_OK || ps == NATSHTTP_INVALID ||
                   (ps == NATSHTTP_DOT_SEGMENT && natshttp_path_has_dot_segment(path, plen)));
        if (ps == NATSHTTP_OK)
            FUZZ_CHECK(dl == plen && memcmp(dec, path, plen) == 0);
        free(dec);
        free(xpath);
    }
}

/* A subject from the wire given to every decoder. */
static void check_decoders(const char *prefix, const char *subject, const char *xpath)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        const layout *l = &layouts[i];
        if (!l->decode)
            continue;
        char m[16], *p = malloc(NH_MAX_SUBJECT);
        size_t got = 0;
        if (l->decode(prefix, subject, m, p, &got)) {
            FUZZ_CHECK(natshttp_method_valid(m) && got > 0 && p[0] == '/');
            static char again[NH_MAX_SUBJECT];
            FUZZ_CHECK(l->encode(again, sizeof again, prefix, m, p, got) == NATSHTTP_OK);
            FUZZ_CHECK(strcmp(again, subject) == 0);
        }
        free(p);
    }
    if (prefix_rule(prefix)) {
        char *dec = NULL;
        size_t dl = 0;
        if (server_parse(prefix, subject, xpath, &dec, &dl) == NATSHTTP_OK) {
            char expect[NH_MAX_SUBJECT];
            const char *method = strrchr(subject, '.') + 1;
            FUZZ_CHECK(natshttp_subject_compat(expect, sizeof expect, prefix, method, dec, dl) ==
                       NATSHTTP_OK);
            FUZZ_CHECK(strcmp(expect, subject) == 0);
        }
        free(dec);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    size_t pl, ml, rl;
    const uint8_t *pp = fz_line(&in, &pl), *mp = fz_line(&in, &ml);
    uint8_t flags = fz_u8(&in);
    const uint8_t *raw = fz_bytes(&in, in.n, &rl);
    char *prefix = fz_str(pp, pl), *method = fz_str(mp, ml);

    FUZZ_CHECK(natshttp_subject_valid(prefix) == prefix_rule(prefix));
    FUZZ_CHECK(nh_prefix_valid(prefix) == prefix_rule(prefix));

    /* Percent-decoding: never longer, NUL-terminated, and undone by escaping all. */
    char *dec = malloc(rl + 1);
    size_t dl = 0;
    natshttp_path_decode((const char *)raw, rl, dec, &dl);
    FUZZ_CHECK(dl <= rl && dec[dl] == 0);
    char *esc = malloc(dl * 3 + 1), *back = malloc(dl * 3 + 1);
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < dl; i++) {
        esc[3 * i] = '%';
        esc[3 * i + 1] = hex[(unsigned char)dec[i] >> 4];
        esc[3 * i + 2] = hex[dec[i] & 15];
    }
    size_t bl = 0;
    natshttp_path_decode(esc, dl * 3, back, &bl);
    FUZZ_CHECK(bl == dl && memcmp(back, dec, dl) == 0);
    free(esc);
    free(back);

    /* The path as the gateway maps it (flags bit 0: the raw bytes instead). */
    const char *path = flags & 1 ? (const char *)raw : dec;
    size_t plen = flags & 1 ? rl : dl;
    size_t small_cap = 1 + (size_t)(flags >> 1) * 4;   /* 1..509: exercises the bound */
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        check_layout(&layouts[i], prefix, method, path, plen, small_cap);

    /* Collision-free layouts: two different paths never get one subject. The
     * pairs: raw and decoded bytes; the decoded path and the same with every
     * '.' a '/' (which compat, splitting on both, maps to one subject). */
    char *slashed = malloc(dl + 1);
    for (size_t i = 0; i <= dl; i++)
        slashed[i] = dec[i] == '.' ? '/' : dec[i];
    const char *pa[2] = {(const char *)raw, slashed};
    size_t la[2] = {rl, dl};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        const layout *l = &layouts[i];
        static char s1[NH_MAX_SUBJECT * 4], s2[NH_MAX_SUBJECT * 4];
        for (int k = 0; l->injective && k < 2; k++) {
            if (la[k] == dl && memcmp(pa[k], dec, dl) == 0)
                continue;
            if (l->encode(s1, sizeof s1, prefix, method, pa[k], la[k]) == NATSHTTP_OK &&
                l->encode(s2, sizeof s2, prefix, method, dec, dl) == NATSHTTP_OK)
                FUZZ_CHECK(strcmp(s1, s2) != 0);
        }
    }
    free(slashed);

    /* The same bytes as a subject from the wire, with X-Path = the decoded path. */
    char *subject = fz_str(raw, rl), *xpath = fz_str((const uint8_t *)dec, dl);
    check_decoders(prefix, subject, xpath);

    /* v2 ids in reply subjects: "<base>.<id>[.<seq>]". */
    size_t base = flags % (rl + 1);
    if (base <= strlen(subject)) {
        uint64_t id = 0;
        int64_t seq = 0;
        if (nh_parse_ids(subject, base, &id, &seq)) {
            FUZZ_CHECK(subject[base] == '.' && seq >= -1);
            FUZZ_CHECK(id <= UINT64_C(9999999999999999999));
        }
    }
    int64_t v = nh_parse_u63(subject);
    if (v >= 0) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)v);
        const char *s = subject;
        while (*s == '0' && s[1])
            s++;
        FUZZ_CHECK(strcmp(num, s) == 0);
    } else if (*subject && strspn(subject, "0123456789") == strlen(subject)) {
        /* all digits yet refused: only when too large */
        const char *s = subject;
        while (*s == '0' && s[1])
            s++;
        FUZZ_CHECK(strlen(s) >= 18);
    }

    free(subject);
    free(xpath);
    free(dec);
    free(prefix);
    free(method);
    return 0;
}
