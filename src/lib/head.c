/* head.c - request and response heads: the request or status line and an
 * ordered, bounded list of header fields. */
#include "internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct field {
    char *name;    /* one allocation: name '\0' value '\0' */
    char *value;
} field;

struct natshttp_head {
    size_t max_bytes, used;
    field *fields;
    size_t count, cap;
    char *method, *path, *query;
    int status;
    char *reason;
};

natshttp_status natshttp_head_new(natshttp_head **out, size_t max_bytes)
{
    natshttp_head *h = calloc(1, sizeof *h);
    if (!h)
        return NATSHTTP_NOMEM;
    h->max_bytes = max_bytes ? max_bytes : NATSHTTP_DEFAULT_MAX_HEAD;
    *out = h;
    return NATSHTTP_OK;
}

void natshttp_head_free(natshttp_head *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->count; i++)
        free(h->fields[i].name);
    free(h->fields);
    free(h->method);
    free(h->path);
    free(h->query);
    free(h->reason);
    free(h);
}

static natshttp_status replace(char **slot, const char *s)
{
    char *copy = strdup(s ? s : "");
    if (!copy)
        return NATSHTTP_NOMEM;
    free(*slot);
    *slot = copy;
    return NATSHTTP_OK;
}

bool natshttp_method_valid(const char *m)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (!m)
        return false;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(m, methods[i]) == 0)
            return true;
    return false;
}

natshttp_status natshttp_head_set_request(natshttp_head *h, const char *method, const char *path,
                                          const char *query)
{
    if (!method || !path)
        return NATSHTTP_INVALID;
    natshttp_status s = replace(&h->method, method);
    if (s == NATSHTTP_OK)
        s = replace(&h->path, path);
    if (s == NATSHTTP_OK)
        s = replace(&h->query, query);
    return s;
}

const char *natshttp_head_method(const natshttp_head *h) { return h->method ? h->method : ""; }
const char *natshttp_head_path(const natshttp_head *h) { return h->path ? h->path : "/"; }
const char *natshttp_head_query(const natshttp_head *h) { return h->query ? h->query : ""; }

natshttp_status natshttp_head_set_status(natshttp_head *h, int status, const char *reason)
{
    if (status < 100 || status > 999)
        return NATSHTTP_INVALID;
    h->status = status;
    return replace(&h->reason, reason ? reason : nh_reason_phrase(status));
}

int natshttp_head_status(const natshttp_head *h) { return h->status; }
const char *natshttp_head_reason(const natshttp_head *h)
{
    return h->reason ? h->reason : nh_reason_phrase(h->status);
}

bool nh_token_valid(const char *s, size_t len)
{
    /* RFC 9110 tchar */
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || (c && strchr(extra, c))))
            return false;
    }
    return true;
}

natshttp_status natshttp_head_addn(natshttp_head *h, const char *name, size_t nlen,
                                   const char *value, size_t vlen)
{
    if (!nh_token_valid(name, nlen))
        return NATSHTTP_BAD_REQUEST;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '\r' || c == '\n' || c == 0)
            return NATSHTTP_BAD_REQUEST;
    }
    if (nlen + vlen + 4 > h->max_bytes - h->used)
        return NATSHTTP_HEAD_TOO_LARGE;
    if (h->count == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        field *f = realloc(h->fields, cap * sizeof *f);
        if (!f)
            return NATSHTTP_NOMEM;
        h->fields = f;
        h->cap = cap;
    }
    char *block = malloc(nlen + vlen + 2);
    if (!block)
        return NATSHTTP_NOMEM;
    memcpy(block, name, nlen);
    block[nlen] = 0;
    memcpy(block + nlen + 1, value, vlen);
    block[nlen + 1 + vlen] = 0;
    h->fields[h->count].name = block;
    h->fields[h->count].value = block + nlen + 1;
    h->count++;
    h->used += nlen + vlen + 4;   /* ": " and CRLF, as it goes on the wire */
    return NATSHTTP_OK;
}

natshttp_status natshttp_head_add(natshttp_head *h, const char *name, const char *value)
{
    return natshttp_head_addn(h, name, strlen(name), value, strlen(value));
}

int natshttp_head_remove(natshttp_head *h, const char *name)
{
    size_t w = 0;
    int removed = 0;
    for (size_t r = 0; r < h->count; r++) {
        if (strcasecmp(h->fields[r].name, name) == 0) {
            h->used -= strlen(h->fields[r].name) + strlen(h->fields[r].value) + 4;
            free(h->fields[r].name);
            removed++;
        } else {
            h->fields[w++] = h->fields[r];
        }
    }
    h->count = w;
    return removed;
}

size_t natshttp_head_count(const natshttp_head *h) { return h->count; }

void natshttp_head_at(const natshttp_head *h, size_t i, const char **name, const char **value)
{
    *name = h->fields[i].name;
    *value = h->fields[i].value;
}

long natshttp_head_find(const natshttp_head *h, const char *name, size_t from)
{
    for (size_t i = from; i < h->count; i++)
        if (strcasecmp(h->fields[i].name, name) == 0)
            return (long)i;
    return -1;
}

const char *natshttp_head_get(const natshttp_head *h, const char *name)
{
    long i = natshttp_head_find(h, name, 0);
    return i < 0 ? NULL : h->fields[i].value;
}

/* Content-Length is 1*DIGIT; a list of identical values counts as one (RFC 9110 8.6). */
static natshttp_status parse_length_list(const char *v, int64_t *out)
{
    int64_t seen = -1;
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!isdigit((unsigned char)*p))
            return NATSHTTP_BAD_REQUEST;
        int64_t n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n > (INT64_MAX - 9) / 10)
                return NATSHTTP_BAD_REQUEST;
            n = n * 10 + (*p++ - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (seen >= 0 && n != seen)
            return NATSHTTP_BAD_REQUEST;
        seen = n;
        if (*p == 0)
            break;
        if (*p++ != ',')
            return NATSHTTP_BAD_REQUEST;
    }
    *out = seen;
    return NATSHTTP_OK;
}

natshttp_status natshttp_head_content_length(const natshttp_head *h, int64_t *out)
{
    int64_t len = -1;
    for (long i = natshttp_head_find(h, "Content-Length", 0); i >= 0;
         i = natshttp_head_find(h, "Content-Length", (size_t)i + 1)) {
        int64_t n;
        natshttp_status s = parse_length_list(h->fields[i].value, &n);
        if (s != NATSHTTP_OK)
            return s;
        if (len >= 0 && n != len)
            return NATSHTTP_BAD_REQUEST;
        len = n;
    }
    *out = len;
    return NATSHTTP_OK;
}

/* Calls fn for each comma-separated element of every value of `name`. */
static bool any_element(const natshttp_head *h, const char *name,
                        bool (*fn)(const char *s, size_t n, void *cls), void *cls)
{
    for (long i = natshttp_head_find(h, name, 0); i >= 0;
         i = natshttp_head_find(h, name, (size_t)i + 1)) {
        const char *p = h->fields[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *start = p;
            while (*p && *p != ',')
                p++;
            const char *end = p;
            while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if (end > start && fn(start, (size_t)(end - start), cls))
                return true;
        }
    }
    return false;
}

static bool is_chunked_elem(const char *s, size_t n, void *cls)
{
    (void)cls;
    return n == 7 && strncasecmp(s, "chunked", 7) == 0;
}

bool natshttp_head_is_chunked(const natshttp_head *h)
{
    return any_element(h, "Transfer-Encoding", is_chunked_elem, NULL);
}

typedef struct named_list {
    char **names;
    size_t n, cap;
} named_list;

static bool collect_elem(const char *s, size_t n, void *cls)
{
    named_list *l = cls;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **p = realloc(l->names, cap * sizeof *p);
        if (!p)
            return false;
        l->names = p;
        l->cap = cap;
    }
    char *copy = strndup(s, n);
    if (copy)
        l->names[l->n++] = copy;
    return false;
}

void natshttp_head_strip_hop_by_hop(natshttp_head *h)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                        "Proxy-Authenticate", "Proxy-Authorization", "TE",
                                        "Trailer", "Transfer-Encoding", "Upgrade"};
    named_list named = {0};
    any_element(h, "Connection", collect_elem, &named);
    for (size_t i = 0; i < named.n; i++) {
        natshttp_head_remove(h, named.names[i]);
        free(named.names[i]);
    }
    free(named.names);
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        natshttp_head_remove(h, fixed[i]);
}

bool nh_is_wire_header(const char *name)
{
    return strcasecmp(name, NH_HDR_PATH) == 0 || strcasecmp(name, NH_HDR_QUERY) == 0 ||
           strcasecmp(name, NH_HDR_FRAGMENT) == 0 || strcasecmp(name, NH_HDR_STATUS) == 0 ||
           strcasecmp(name, NH_HDR_STATUS_CODE) == 0 || strncasecmp(name, "Natshttp-", 9) == 0;
}

const char *nh_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

natshttp_status nh_head_clone(natshttp_head **out, const natshttp_head *src)
{
    natshttp_head *h = NULL;
    natshttp_status s = natshttp_head_new(&h, src->max_bytes);
    if (s == NATSHTTP_OK && src->method)
        s = natshttp_head_set_request(h, src->method, natshttp_head_path(src),
                                      natshttp_head_query(src));
    if (s == NATSHTTP_OK && src->status)
        s = natshttp_head_set_status(h, src->status, src->reason);
    for (size_t i = 0; s == NATSHTTP_OK && i < src->count; i++)
        s = natshttp_head_add(h, src->fields[i].name, src->fields[i].value);
    if (s != NATSHTTP_OK) {
        natshttp_head_free(h);
        return s;
    }
    *out = h;
    return NATSHTTP_OK;
}
