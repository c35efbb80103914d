/* wire.c - heads to and from the v1 NATS message format (docs/protocol.md). */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Adds every end-to-end field of head to msg, one NATS header entry per value.
 *
 * nats.c (3.4) cannot read back an empty header value: its parser skips the
 * CRLF after "Name: " and takes the next line for the value, losing that
 * line's field. So empty values do not go on the wire as fields; their names
 * travel in Natshttp-Empty and the receiving side restores them. */
static natsStatus add_fields(natsMsg *m, const natshttp_head *h)
{
    natsStatus s = NATS_OK;
    char *empty = NULL;   /* "name,name,...", sized on the first empty value */
    size_t elen = 0;
    for (size_t i = 0; s == NATS_OK && i < natshttp_head_count(h); i++) {
        const char *n, *v;
        natshttp_head_at(h, i, &n, &v);
        if (nh_is_wire_header(n) || strcasecmp(n, "Content-Length") == 0 ||
            strcasecmp(n, "Transfer-Encoding") == 0)
            continue;
        if (*v) {
            s = natsMsgHeader_Add(m, n, v);
            continue;
        }
        if (!empty) {
            size_t cap = 1;
            for (size_t j = i; j < natshttp_head_count(h); j++) {
                const char *n2, *v2;
                natshttp_head_at(h, j, &n2, &v2);
                cap += strlen(n2) + 1;
            }
            empty = malloc(cap);
            if (!empty) {
                s = NATS_NO_MEMORY;
                break;
            }
        }
        if (elen)
            empty[elen++] = ',';
        size_t nl = strlen(n);
        memcpy(empty + elen, n, nl);
        elen += nl;
    }
    if (s == NATS_OK && elen) {
        empty[elen] = 0;
        s = natsMsgHeader_Set(m, NH_HDR_EMPTY, empty);
    }
    free(empty);
    return s;
}

/* Restores the empty-valued fields named in Natshttp-Empty, except those
 * copy_fields leaves out: the wire's own and the framing. */
static natshttp_status restore_empty(natsMsg *msg, natshttp_head *h)
{
    const char *list = nh_msg_header(msg, NH_HDR_EMPTY);
    natshttp_status st = NATSHTTP_OK;
    while (list && *list && st == NATSHTTP_OK) {
        size_t n = strcspn(list, ",");
        if (n > 0) {
            char *name = strndup(list, n);
            if (!name)
                return NATSHTTP_NOMEM;
            if (!nh_is_wire_header(name) && strcasecmp(name, "Transfer-Encoding") != 0)
                st = natshttp_head_addn(h, list, n, "", 0);
            free(name);
        }
        list += n;
        if (*list == ',')
            list++;
    }
    return st == NATSHTTP_BAD_REQUEST ? NATSHTTP_OK : st;   /* a malformed name is dropped */
}

size_t nh_wire_header_size(natsMsg *msg)
{
    const char **keys = NULL;
    int nkeys = 0;
    if (natsMsgHeader_Keys(msg, &keys, &nkeys) != NATS_OK || nkeys == 0) {
        free((void *)keys);
        return 0;
    }
    size_t size = strlen("NATS/1.0\r\n") + 2;
    for (int i = 0; i < nkeys; i++) {
        const char **vals = NULL;
        int nvals = 0;
        if (natsMsgHeader_Values(msg, keys[i], &vals, &nvals) == NATS_OK) {
            for (int j = 0; j < nvals; j++)
                size += strlen(keys[i]) + 2 + strlen(vals[j]) + 2;
        }
        free((void *)vals);
    }
    free((void *)keys);
    return size;
}

/* Percent-encodes what is not an unreserved, sub-delim, ':', '@' or '/' byte. */
static char *encode_path(const char *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (isalnum(c) || (c && strchr(keep, c))) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
    return out;
}

/* What a decoded path may hold, the same on both sides: no control byte (a
 * CR LF must never reach a header block, a request line or a file name), and
 * no dot segment unless the route allows it (it could leave the folder the
 * subject names). */
static natshttp_status path_allowed(const nh_route *route, const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f)
            return NATSHTTP_BAD_PATH;
    }
    if (!route->allow_dot_segments && natshttp_path_has_dot_segment(path, len))
        return NATSHTTP_DOT_SEGMENT;
    return NATSHTTP_OK;
}

natshttp_status nh_wire_request_msg(natsMsg **out, const nh_route *route,
                                    const natshttp_head *req, const char *reply, bool chunked,
                                    int64_t window, const void *data, size_t len)
{
    const char *prefix = route->prefix;
    const char *method = natshttp_head_method(req);
    const char *raw = natshttp_head_path(req);
    const char *query = natshttp_head_query(req);
    size_t rawlen = strlen(raw);
    char subject[NH_MAX_SUBJECT];
    char *decoded = malloc(rawlen + 1);
    size_t dlen = 0;
    natsMsg *m = NULL;
    natshttp_status st = NATSHTTP_OK;
    natsStatus ns = NATS_OK;

    if (!decoded)
        return NATSHTTP_NOMEM;
    natshttp_path_decode(raw, rawlen, decoded, &dlen);
    st = path_allowed(route, decoded, dlen);
    if (st != NATSHTTP_OK)
        goto out;
    if (route->layout == NATSHTTP_LAYOUT_COMPAT)
        st = natshttp_subject_compat(subject, sizeof subject, prefix, method, decoded, dlen);
    else
        st = natshttp_subject_native(subject, sizeof subject, prefix, method, decoded, dlen);
    if (st != NATSHTTP_OK)
        goto out;
    /* nats-server drops a connection whose control line ("HPUB subject reply
     * sizes") is longer than its max_control_line: refuse such a URL here. */
    if (strlen(subject) + strlen(reply) + NH_CONTROL_LINE_OVERHEAD > NH_MAX_CONTROL_LINE) {
        st = NATSHTTP_URI_TOO_LONG;
        goto out;
    }

    ns = natsMsg_Create(&m, subject, reply, data, (int)len);
    /* The native subject carries the path itself; X-Path is for v1 peers. */
    if (ns == NATS_OK && route->layout == NATSHTTP_LAYOUT_COMPAT)
        ns = natsMsgHeader_Set(m, NH_HDR_PATH, decoded);
    if (ns == NATS_OK && *query)
        ns = natsMsgHeader_Set(m, NH_HDR_QUERY, query);
    if (ns == NATS_OK && memchr(raw, '%', rawlen))
        ns = natsMsgHeader_Set(m, NH_HDR_RAW_PATH, raw);
    if (ns == NATS_OK && window > 0) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)window);
        ns = natsMsgHeader_Set(m, NH_HDR_VERSION, "2");
        if (ns == NATS_OK)
            ns = natsMsgHeader_Set(m, NH_HDR_WINDOW, num);
    }
    if (ns == NATS_OK)
        ns = add_fields(m, req);
    if (ns == NATS_OK) {
        /* A known length always travels as Content-Length: the peer decides from
         * it and its max payload whether more messages follow. */
        int64_t cl = -1;
        st = natshttp_head_content_length(req, &cl);
        if (st == NATSHTTP_OK && cl >= 0) {
            char num[24];
            snprintf(num, sizeof num, "%lld", (long long)cl);
            ns = natsMsgHeader_Set(m, "Content-Length", num);
        } else if (st == NATSHTTP_OK && chunked) {
            ns = natsMsgHeader_Set(m, "Transfer-Encoding", "chunked");
        }
    }
    if (st == NATSHTTP_OK && ns != NATS_OK)
        st = natshttp_status_from_nats(ns);
out:
    free(decoded);
    if (st == NATSHTTP_OK)
        *out = m;
    else
        natsMsg_Destroy(m);
    return st;
}

natshttp_status nh_wire_request_is_chunked(natsMsg *msg, int64_t max_payload, bool *chunked)
{
    const char *te = NULL, *cl = NULL;
    int64_t len = -1;
    natsMsgHeader_Get(msg, "Transfer-Encoding", &te);
    if (natsMsgHeader_Get(msg, "Content-Length", &cl) == NATS_OK && cl) {
        char *end;
        if (!isdigit((unsigned char)cl[0]))
            return NATSHTTP_BAD_REQUEST;
        len = strtoll(cl, &end, 10);
        if (*end)
            return NATSHTTP_BAD_REQUEST;
    }
    int64_t size = (int64_t)strlen(natsMsg_GetSubject(msg)) +
                   (int64_t)(natsMsg_GetReply(msg) ? strlen(natsMsg_GetReply(msg)) : 0) +
                   (int64_t)nh_wire_header_size(msg);
    /* size + len > max_payload, without overflow for a huge Content-Length */
    *chunked = (te && strcmp(te, "chunked") == 0) || len > max_payload - size;
    return NATSHTTP_OK;
}

/* Copies msg's end-to-end headers into h, skipping the wire's own. */
static natshttp_status copy_fields(natsMsg *msg, natshttp_head *h, bool skip_framing)
{
    const char **keys = NULL;
    int nkeys = 0;
    natshttp_status st = NATSHTTP_OK;
    natsStatus ns = natsMsgHeader_Keys(msg, &keys, &nkeys);
    if (ns == NATS_NOT_FOUND)
        return NATSHTTP_OK;
    if (ns != NATS_OK)
        return NATSHTTP_BAD_MESSAGE;
    for (int i = 0; st == NATSHTTP_OK && i < nkeys; i++) {
        if (nh_is_wire_header(keys[i]))
            continue;
        if (skip_framing && strcasecmp(keys[i], "Transfer-Encoding") == 0)
            continue;
        const char **vals = NULL;
        int nvals = 0;
        if (natsMsgHeader_Values(msg, keys[i], &vals, &nvals) == NATS_OK) {
            for (int j = 0; st == NATSHTTP_OK && j < nvals; j++)
                st = natshttp_head_add(h, keys[i], vals[j]);
        }
        free((void *)vals);
    }
    free((void *)keys);
    return st;
}

natshttp_status nh_wire_parse_request(natsMsg *msg, const nh_route *route, natshttp_head *req,
                                      char **raw_path, char **decoded_path, size_t *decoded_len)
{
    const char *subject = natsMsg_GetSubject(msg);
    const char *prefix = route->prefix;
    size_t plen = strlen(prefix);
    const char *path = NULL, *query = NULL, *raw = NULL;
    char method[16];
    char *rawcopy = NULL, *dcopy = NULL, *native = NULL;
    size_t dlen = 0;
    natshttp_status st;

    if (strncmp(subject, prefix, plen) != 0 || subject[plen] != '.')
        return NATSHTTP_BAD_REQUEST;
    natsMsgHeader_Get(msg, NH_HDR_QUERY, &query);
    natsMsgHeader_Get(msg, NH_HDR_RAW_PATH, &raw);

    /* The subject is what NATS authorised: method and path come from it. */
    if (route->layout == NATSHTTP_LAYOUT_COMPAT) {
        const char *m = strrchr(subject, '.') + 1;
        if (strlen(m) >= sizeof method)
            return NATSHTTP_BAD_METHOD;
        strcpy(method, m);
        if (!natshttp_method_valid(method))
            return NATSHTTP_BAD_METHOD;
        if (natsMsgHeader_Get(msg, NH_HDR_PATH, &path) != NATS_OK || !path || path[0] != '/')
            return NATSHTTP_BAD_REQUEST;
        /* The subject is lossy: the path must map to exactly it. */
        char expect[NH_MAX_SUBJECT];
        dlen = strlen(path);
        st = natshttp_subject_compat(expect, sizeof expect, prefix, method, path, dlen);
        if (st != NATSHTTP_OK)
            return st == NATSHTTP_URI_TOO_LONG ? NATSHTTP_BAD_PATH : st;
        if (strcmp(expect, subject) != 0)
            return NATSHTTP_BAD_PATH;
    } else {
        size_t cap = strlen(subject) + 1;
        native = malloc(cap);
        if (!native)
            return NATSHTTP_NOMEM;
        st = natshttp_subject_native_parse(subject, prefix, method, sizeof method, native, cap,
                                           &dlen);
        if (st != NATSHTTP_OK) {
            free(native);
            return st == NATSHTTP_URI_TOO_LONG ? NATSHTTP_BAD_PATH : st;
        }
        path = native;
    }
    st = path_allowed(route, path, dlen);
    if (st != NATSHTTP_OK)
        goto fail;

    if (raw) {
        size_t rlen = strlen(raw), n = 0;
        char *check = malloc(rlen + 1);
        if (!check) {
            st = NATSHTTP_NOMEM;
            goto fail;
        }
        natshttp_path_decode(raw, rlen, check, &n);
        bool same = n == dlen && memcmp(check, path, n) == 0;
        free(check);
        if (!same || raw[0] != '/') {
            st = NATSHTTP_BAD_PATH;   /* the raw form must be this very path */
            goto fail;
        }
        rawcopy = strdup(raw);
    } else {
        rawcopy = encode_path(path, dlen);
    }
    dcopy = native ? native : strdup(path);
    native = NULL;
    if (!rawcopy || !dcopy) {
        st = NATSHTTP_NOMEM;
        goto fail;
    }
    st = natshttp_head_set_request(req, method, rawcopy, query ? query : "");
    if (st == NATSHTTP_OK)
        st = copy_fields(msg, req, true);   /* framing is the library's business */
    if (st == NATSHTTP_OK)
        st = restore_empty(msg, req);
    if (st != NATSHTTP_OK)
        goto fail;
    *raw_path = rawcopy;
    *decoded_path = dcopy;
    *decoded_len = dlen;
    return NATSHTTP_OK;
fail:
    free(native);
    free(rawcopy);
    free(dcopy);
    return st;
}

natshttp_status nh_wire_response_msg(natsMsg **out, const char *subject, const char *reply,
                                     const natshttp_head *resp, int64_t content_length,
                                     bool chunked, bool v2, const void *data, size_t len)
{
    natsMsg *m = NULL;
    char num[24];
    natsStatus ns = natsMsg_Create(&m, subject, reply, data, (int)len);
    if (ns == NATS_OK && v2)
        ns = natsMsgHeader_Set(m, NH_HDR_VERSION, "2");
    snprintf(num, sizeof num, "%d", natshttp_head_status(resp));
    if (ns == NATS_OK)
        ns = natsMsgHeader_Set(m, NH_HDR_STATUS_CODE, num);
    if (ns == NATS_OK)
        ns = natsMsgHeader_Set(m, NH_HDR_STATUS, natshttp_head_reason(resp));
    if (ns == NATS_OK)
        ns = add_fields(m, resp);
    if (ns == NATS_OK && content_length >= 0) {
        snprintf(num, sizeof num, "%lld", (long long)content_length);
        ns = natsMsgHeader_Set(m, "Content-Length", num);
    }
    if (ns == NATS_OK && content_length < 0 && chunked)
        ns = natsMsgHeader_Set(m, "Transfer-Encoding", "chunked");
    if (ns != NATS_OK) {
        natsMsg_Destroy(m);
        return natshttp_status_from_nats(ns);
    }
    *out = m;
    return NATSHTTP_OK;
}

natshttp_status nh_wire_parse_response(natsMsg *msg, natshttp_head *resp)
{
    const char *code = NULL, *reason = NULL;
    if (natsMsgHeader_Get(msg, NH_HDR_STATUS_CODE, &code) != NATS_OK || !code)
        return NATSHTTP_BAD_MESSAGE;
    if (!(isdigit((unsigned char)code[0]) && isdigit((unsigned char)code[1]) &&
          isdigit((unsigned char)code[2]) && code[3] == 0) || code[0] == '0')
        return NATSHTTP_BAD_MESSAGE;
    natsMsgHeader_Get(msg, NH_HDR_STATUS, &reason);
    natshttp_status st = natshttp_head_set_status(resp, atoi(code), reason);
    if (st == NATSHTTP_OK)
        st = copy_fields(msg, resp, true);
    if (st == NATSHTTP_OK)
        st = restore_empty(msg, resp);
    return st;
}

const char *nh_msg_header(natsMsg *msg, const char *key)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, key, &v) != NATS_OK)
        return NULL;
    return v;
}

int64_t nh_parse_u63(const char *s)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    int64_t n = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n;
}
