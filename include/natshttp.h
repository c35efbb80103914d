/*
 * natshttp.h - HTTP/1.1 carried over NATS.
 *
 * The whole public API of libnatshttp. The library speaks the wire format of
 * the Go library nats-http ("v1", docs/protocol.md) in both roles:
 *
 *   client  (natshttp_client, natshttp_call): turns an HTTP request into NATS
 *           messages on a subject and streams the response back;
 *   server  (natshttp_server, natshttp_txn):  takes requests from a subject,
 *           optionally in a queue group, and lets an application answer them.
 *
 * and, on top of those, the two daemons' engines: a file server
 * (natshttp_files) and an HTTP gateway (natshttp_gateway).
 *
 * Threads. The callbacks of one client or one server run one at a time,
 * never concurrently, so per-request state needs no lock of the
 * application's own as long as it is only touched from callbacks. They run
 * on nats.c's delivery thread of the subscription a message came on, or on
 * the owner's dispatch thread (timeouts, cancellation), holding the owner's
 * dispatch mutex; no public function takes it, so a callback may call any of
 * them, but a callback that blocks holds up every other request of its
 * client or server. Functions documented as "any thread" may be called from
 * elsewhere.
 *
 * Memory. Every object comes in a _new/_free pair; the out-pointer is the
 * first argument and is written only on success; _free(NULL) does nothing.
 * Options structs are copied when used, so the caller may free its copy.
 */
#ifndef NATSHTTP_H
#define NATSHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NATSHTTP_VERSION "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status                                                                    */
/* ------------------------------------------------------------------------ */

/* X(name, HTTP status the gateway answers with, text) */
#define NATSHTTP_STATUS_MAP(X)                                                  \
    X(OK, 200, "ok")                                                            \
    X(NOMEM, 500, "out of memory")                                              \
    X(INVALID, 500, "invalid argument")                                         \
    X(BAD_REQUEST, 400, "malformed request")                                    \
    X(BAD_PATH, 400, "path cannot be carried over NATS")                        \
    X(DOT_SEGMENT, 400, "path has a . or .. segment")                           \
    X(BAD_METHOD, 501, "method not supported")                                  \
    X(BAD_TRANSFER, 501, "transfer coding not supported")                       \
    X(URI_TOO_LONG, 414, "URL too long for a NATS subject")                     \
    X(HEAD_TOO_LARGE, 431, "header block too large")                            \
    X(BODY_TOO_LARGE, 413, "body too large")                                    \
    X(BAD_MESSAGE, 502, "malformed NATS message from peer")                     \
    X(NO_RESPONDERS, 503, "no responders on the subject")                       \
    X(TIMEOUT, 504, "no response in time")                                      \
    X(PERMISSION, 403, "NATS permission denied")                                \
    X(NATS, 503, "NATS connection error")                                       \
    X(OVERRUN, 502, "peer sent more than the buffer limit")                     \
    X(TRUNCATED, 502, "body ended early")                                       \
    X(IDLE, 504, "transfer made no progress within the idle timeout")           \
    X(CANCELLED, 499, "cancelled")                                              \
    X(AGAIN, 503, "not ready, try again")                                       \
    X(BUSY, 503, "too many requests in flight")                                 \
    X(CLOSED, 503, "closed")                                                    \
    X(IO, 500, "I/O error")

typedef enum natshttp_status {
#define NATSHTTP_X_ENUM(name, http, text) NATSHTTP_##name,
    NATSHTTP_STATUS_MAP(NATSHTTP_X_ENUM)
#undef NATSHTTP_X_ENUM
    NATSHTTP_STATUS_COUNT
} natshttp_status;

/* Static text of a status; never NULL. */
const char *natshttp_status_text(natshttp_status s);
/* The HTTP status code a gateway answers with when a request fails with s. */
int natshttp_status_http(natshttp_status s);
/* Converts a nats.c status into ours (the boundary with nats.c). */
natshttp_status natshttp_status_from_nats(natsStatus s);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum natshttp_log_level {
    NATSHTTP_LOG_ERROR = 0,
    NATSHTTP_LOG_WARN,
    NATSHTTP_LOG_INFO,
    NATSHTTP_LOG_DEBUG,
} natshttp_log_level;

/* Process-wide: lines at or below level go to stderr as
 * "<RFC3339 UTC time> <level> <component>: <text>". Any thread. */
void natshttp_log_set_level(natshttp_log_level level);
void natshttp_log(natshttp_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------ */
/* Heads: method, path, query, status and an ordered list of header fields   */
/* ------------------------------------------------------------------------ */

/* One request or response head. Header fields keep their order and the case
 * of their names; lookups ignore case; repeated names stay separate entries
 * (never joined, never split on commas). Bounded: adding past max_bytes of
 * names+values fails with NATSHTTP_HEAD_TOO_LARGE. */
typedef struct natshttp_head natshttp_head;

#define NATSHTTP_DEFAULT_MAX_HEAD (32 * 1024)

natshttp_status natshttp_head_new(natshttp_head **out, size_t max_bytes);
void natshttp_head_free(natshttp_head *h);

/* Request line. path is the raw request path as sent by the HTTP client
 * (percent-escapes untouched), starting with '/'; query is the raw query
 * without '?', "" when absent. The strings are copied. */
natshttp_status natshttp_head_set_request(natshttp_head *h, const char *method,
                                          const char *path, const char *query);
const char *natshttp_head_method(const natshttp_head *h);
const char *natshttp_head_path(const natshttp_head *h);
const char *natshttp_head_query(const natshttp_head *h);

/* Status line. reason may be NULL (the standard phrase is used). */
natshttp_status natshttp_head_set_status(natshttp_head *h, int status, const char *reason);
int natshttp_head_status(const natshttp_head *h);
const char *natshttp_head_reason(const natshttp_head *h);

/* Appends a field; name and value are copied. Fails with BAD_REQUEST when the
 * name is not an HTTP token or the value holds CR, LF or NUL. */
natshttp_status natshttp_head_add(natshttp_head *h, const char *name, const char *value);
natshttp_status natshttp_head_addn(natshttp_head *h, const char *name, size_t nlen,
                                   const char *value, size_t vlen);
/* Removes every field with this name (case-insensitive); returns how many. */
int natshttp_head_remove(natshttp_head *h, const char *name);
size_t natshttp_head_count(const natshttp_head *h);
/* The i-th field, in order; pointers live until the head changes or is freed. */
void natshttp_head_at(const natshttp_head *h, size_t i, const char **name, const char **value);
/* Index of the next field named `name` at or after `from`, or -1. */
long natshttp_head_find(const natshttp_head *h, const char *name, size_t from);
/* First value of `name`, or NULL. */
const char *natshttp_head_get(const natshttp_head *h, const char *name);

/* Length of the body the head announces: Content-Length, or -1 when absent.
 * Fails with BAD_REQUEST when Content-Length is not plain digits, or when
 * several Content-Length values differ. */
natshttp_status natshttp_head_content_length(const natshttp_head *h, int64_t *out);
/* True when Transfer-Encoding names "chunked". */
bool natshttp_head_is_chunked(const natshttp_head *h);

/* Removes the hop-by-hop fields of RFC 9110 section 7.6.1: Connection and every
 * field it names, Keep-Alive, Proxy-Connection, Proxy-Authenticate,
 * Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade. */
void natshttp_head_strip_hop_by_hop(natshttp_head *h);

/* ------------------------------------------------------------------------ */
/* Subjects                                                                  */
/* ------------------------------------------------------------------------ */

/* Percent-decodes src[0..len) once into out (which must hold len+1 bytes;
 * out is NUL-terminated). Malformed escapes are copied literally.
 * Writes the decoded length to *out_len. */
void natshttp_path_decode(const char *src, size_t len, char *out, size_t *out_len);

/* How request subjects are laid out. A server accepts exactly one layout,
 * chosen by its configuration, so a request cannot pick the one that escapes
 * a permission.
 *   NATIVE (the default): <prefix>.<METHOD>.<segment>..., one escaped token
 *     per path segment (see docs/protocol.md); invertible, collision-free, and
 *     grantable by method and folder ("site.GET.>", "site.PUT.uploads.>").
 *   COMPAT: v1's <prefix>.<tokens>.<METHOD>, for Go nats-http peers. */
typedef enum natshttp_layout {
    NATSHTTP_LAYOUT_NATIVE = 0,
    NATSHTTP_LAYOUT_COMPAT = 1,
} natshttp_layout;

/* The native subject of a request: prefix, method, then one token per segment
 * of the decoded path (split on '/' only; "/" is one empty segment). Bytes a
 * token cannot carry ('.', '*', '>', '%', space, control and non-ASCII bytes)
 * are written as %XX (upper-case hex); an empty segment is "%". Fails with
 * URI_TOO_LONG when more than cap-1 bytes would be needed. */
natshttp_status natshttp_subject_native(char *out, size_t cap, const char *prefix,
                                        const char *method, const char *decoded_path,
                                        size_t path_len);

/* The inverse: method (NUL-terminated, at most method_cap-1 bytes) and decoded
 * path (path_cap bytes at most, NUL-terminated, length in *path_len) of a
 * native subject under prefix. OK only for the one canonical subject of that
 * path: anything else (a different escaping of the same bytes, a wildcard, an
 * unknown method) fails with BAD_REQUEST, BAD_METHOD or BAD_PATH. */
natshttp_status natshttp_subject_native_parse(const char *subject, const char *prefix,
                                              char *method, size_t method_cap, char *path,
                                              size_t path_cap, size_t *path_len);

/* True when a segment of the decoded path is "." or "..". */
bool natshttp_path_has_dot_segment(const char *decoded_path, size_t len);

/* The v1 ("compat") subject of a request: prefix, then every token of the
 * decoded path (split on '/' and '.'), then the method. Bytes a subject token
 * cannot carry are escaped as %XX (see docs/protocol.md); an empty token is
 * written as "%". Fails with URI_TOO_LONG when more than cap-1 bytes would be
 * needed. out is NUL-terminated. */
natshttp_status natshttp_subject_compat(char *out, size_t cap, const char *prefix,
                                        const char *method, const char *decoded_path,
                                        size_t path_len);

/* True when prefix can be a server's subject: literal tokens separated by
 * '.', none empty, no wildcard ('*', '>'), whitespace or control byte. */
bool natshttp_subject_valid(const char *prefix);

/* True for the nine methods the v1 format can carry. */
bool natshttp_method_valid(const char *method);

/* ------------------------------------------------------------------------ */
/* Body chunks                                                               */
/* ------------------------------------------------------------------------ */

/* A piece of a body, as received from NATS (no copy is made). Freeing it
 * tells the flow control that its bytes were consumed: the peer may then
 * send as many more, so a consumer that holds chunks slows its peer down. */
typedef struct natshttp_chunk natshttp_chunk;

const uint8_t *natshttp_chunk_data(const natshttp_chunk *c);
size_t natshttp_chunk_len(const natshttp_chunk *c);
/* Any thread. */
void natshttp_chunk_free(natshttp_chunk *c);

/* ------------------------------------------------------------------------ */
/* Client role                                                               */
/* ------------------------------------------------------------------------ */

typedef struct natshttp_client natshttp_client;
typedef struct natshttp_call natshttp_call;
typedef struct natshttp_metrics natshttp_metrics;   /* see "Metrics" below */

typedef struct natshttp_client_options {
    const char *subject;       /* the server's subject prefix, e.g. "demo" (required) */
    int64_t timeout_ms;        /* first response deadline; 0 = 30000 */
    size_t max_head;           /* response head bound; 0 = NATSHTTP_DEFAULT_MAX_HEAD */
    int protocol;              /* 2 (default): announce v2 and use it when the server
                                  answers in v2; 1: behave exactly as a v1 client */
    int64_t window;            /* v2 flow-control window per body, bytes; 0 = 4 MiB */
    int64_t idle_timeout_ms;   /* a body that makes no progress this long is aborted
                                  (v2: also told to the server); 0 = 30000 */
    natshttp_layout layout;    /* the servers' subject layout; default NATIVE */
    const char *inbox_prefix;  /* this client's private subjects live under
                                  "<inbox_prefix>.>"; NULL = "_INBOX". Give each NATS
                                  user its own, so that no user may subscribe to the
                                  others' responses */
    bool allow_dot_segments;   /* send paths with "." or ".." segments (else BAD_PATH) */
} natshttp_client_options;

/* Callbacks of one call; run one at a time, as the client's callbacks do (see Threads). */
typedef struct natshttp_call_callbacks {
    /* The response head. The head is owned by the call and valid until on_end. */
    void (*on_head)(void *ctx, natshttp_call *call, const natshttp_head *resp);
    /* A piece of the response body, in order; ownership of chunk passes to the
     * callee, which frees it with natshttp_chunk_free (on any thread). */
    void (*on_body)(void *ctx, natshttp_call *call, natshttp_chunk *chunk);
    /* The request body may be written now (natshttp_call_write returned AGAIN
     * before). */
    void (*on_writable)(void *ctx, natshttp_call *call);
    /* Last callback, exactly once: OK when the whole response arrived;
     * otherwise why it failed (NO_RESPONDERS, TIMEOUT, TRUNCATED, IDLE,
     * BAD_MESSAGE, CANCELLED, ...). After it returns, the call is freed and
     * ctx is never used again. */
    void (*on_end)(void *ctx, natshttp_call *call, natshttp_status status);
} natshttp_call_callbacks;

/* Binds a client to a connection the caller keeps open for the client's life. */
natshttp_status natshttp_client_new(natshttp_client **out, natsConnection *nc,
                                    const natshttp_client_options *opts);
/* Cancels every call (each gets on_end(CANCELLED)), then frees. Not from a callback. */
void natshttp_client_free(natshttp_client *c);

/* Starts a call: publishes the request head (and, when body_len >= 0 and the
 * whole request fits in one message, the body given in body/body_len).
 *   body_len == -1: no body follows (GET and the like);
 *   body_len >= 0 with body == NULL: a body of body_len bytes follows through
 *                 natshttp_call_write;
 *   body_len == -2: a body of unknown length follows (sent chunked).
 * The head is not kept. Any thread. On success *out is the call; its callbacks
 * may run before this function returns. */
natshttp_status natshttp_call_start(natshttp_call **out, natshttp_client *c,
                                    const natshttp_head *req, int64_t body_len,
                                    const void *body, const natshttp_call_callbacks *cb,
                                    void *ctx);

/* Writes request body bytes; *taken says how many were taken. Returns OK
 * when all len bytes were taken, AGAIN when the call took fewer and cannot
 * take more yet (on_writable follows), or an error. Any thread, but one
 * writer at a time, and never after on_end has run. */
natshttp_status natshttp_call_write(natshttp_call *call, const void *data, size_t len,
                                    size_t *taken);
/* Ends the request body. Any thread. */
natshttp_status natshttp_call_end_body(natshttp_call *call);
/* Hands the client an asynchronous error of its connection; call it from
 * the natsErrHandler set on the connection's options. A permission violation
 * on a publish of this client ends the call that made it at once with
 * PERMISSION (a gateway answers 403), instead of by its timeout. Other errors
 * are ignored. Any thread. */
void natshttp_client_async_error(natshttp_client *c, natsStatus err, const char *text);
/* The NATS subject the request went to, or NULL before it went out. Valid
 * until on_end returns; call it from a callback. */
const char *natshttp_call_subject(const natshttp_call *call);
/* The name of the server instance that answered (v2 servers with a name
 * send it; see docs/protocol.md), or NULL. Valid until on_end returns; call
 * it from a callback. */
const char *natshttp_call_instance(const natshttp_call *call);

/* Abandons the call: on_end(CANCELLED) follows (unless on_end already ran or
 * is running). Any thread. */
void natshttp_call_cancel(natshttp_call *call);

/* ------------------------------------------------------------------------ */
/* Server role                                                               */
/* ------------------------------------------------------------------------ */

typedef struct natshttp_server natshttp_server;
typedef struct natshttp_txn natshttp_txn;

typedef struct natshttp_server_callbacks {
    /* A request arrived. The head (method, decoded-once path via
     * natshttp_txn_path, query, end-to-end fields) is valid until the txn is
     * released. The application answers with natshttp_txn_respond. */
    void (*on_request)(void *ctx, natshttp_txn *txn, const natshttp_head *req);
    /* A piece of the request body; ownership passes to the callee. Optional:
     * when NULL, the body is discarded. */
    void (*on_body)(void *ctx, natshttp_txn *txn, natshttp_chunk *chunk);
    /* End of the request body: OK when complete, else why it broke off.
     * Runs for every request, also those without a body. Optional. */
    void (*on_body_end)(void *ctx, natshttp_txn *txn, natshttp_status status);
    /* A natshttp_txn_write that returned AGAIN may be retried now (the client
     * granted more credit), or the client went away (the retry then returns
     * CANCELLED). Optional; runs like every server callback (see Threads). */
    void (*on_writable)(void *ctx, natshttp_txn *txn);
} natshttp_server_callbacks;

typedef struct natshttp_server_options {
    const char *subject;      /* prefix; the server subscribes to "<subject>.>" (required) */
    const char *group;        /* queue group, or NULL */
    size_t max_head;          /* request head bound; 0 = NATSHTTP_DEFAULT_MAX_HEAD */
    int protocol;             /* 2 (default): answer v2 clients in v2; 1: v1 only */
    int64_t window;           /* v2 flow-control window per body, bytes; 0 = 4 MiB */
    int64_t idle_timeout_ms;  /* a body (either way) that makes no progress this long
                                 is aborted; 0 = 30000 */
    natshttp_layout layout;   /* the only subject layout accepted; default NATIVE */
    const char *inbox_prefix; /* private subjects under "<inbox_prefix>.>"; NULL = "_INBOX" */
    bool allow_dot_segments;  /* accept paths with "." or ".." segments (else 400) */
    const char *instance;     /* this instance's name, sent to v2 clients in the
                                 response head and logged; NULL = none; at most 63 bytes */
    natshttp_metrics *metrics;  /* counts every request here, or NULL; must outlive the
                                   server and every txn it handed out */
} natshttp_server_options;

natshttp_status natshttp_server_new(natshttp_server **out, natsConnection *nc,
                                    const natshttp_server_options *opts,
                                    const natshttp_server_callbacks *cb, void *ctx);
/* Stops taking requests and frees the server. Transactions the application
 * still holds stay valid until it releases them. Not from a callback. */
void natshttp_server_free(natshttp_server *s);
/* Graceful stop, first half: drains the request subscription (messages
 * already delivered are still taken; nothing new arrives, so other members
 * of the queue group get the new requests), keeps the private subject for
 * the bodies, credits and cancels of requests under way, and waits until
 * every transaction has been released or timeout_ms passed. Returns OK when
 * all finished, TIMEOUT otherwise; natshttp_server_free then aborts what is
 * left. Not from a callback. */
natshttp_status natshttp_server_drain(natshttp_server *s, int64_t timeout_ms);

/* The request path, percent-decoded once, NUL-terminated (it has no NUL). */
const char *natshttp_txn_path(const natshttp_txn *t, size_t *len);
/* The request path as the HTTP client sent it (escapes untouched) when the
 * peer carried it, else the decoded path re-encoded. */
const char *natshttp_txn_raw_path(const natshttp_txn *t);

/* Sends the response head. content_length is the body length, or -1 when
 * unknown (the body is then sent chunked). Exactly once per txn. Any thread. */
natshttp_status natshttp_txn_respond(natshttp_txn *t, natshttp_head *resp, int64_t content_length);
/* Sends body bytes (split into messages as the connection's max payload
 * requires); *taken says how many were taken. Returns OK when all were,
 * AGAIN when the client's flow-control window is full (on_writable follows
 * when it opens), CANCELLED when the client went away, or another error.
 * A write of 0 bytes sends nothing and only reports CANCELLED or OK.
 * Any thread, one writer at a time. taken may be NULL. */
natshttp_status natshttp_txn_write(natshttp_txn *t, const void *data, size_t len, size_t *taken);
/* Ends the response and releases the application's hold on the txn. ok=false
 * aborts it instead (the peer sees a truncated body). Any thread. */
void natshttp_txn_finish(natshttp_txn *t, bool ok);
/* Convenience: a complete response with a small body in one go, then finish. */
natshttp_status natshttp_txn_reply(natshttp_txn *t, int status, const char *content_type,
                                   const void *body, size_t len);
/* Largest body piece natshttp_txn_write sends as one message. */
size_t natshttp_txn_chunk_size(const natshttp_txn *t);
/* One pointer of the application's own per txn (e.g. its job), NULL at first. */
void natshttp_txn_set_data(natshttp_txn *t, void *data);
void *natshttp_txn_data(const natshttp_txn *t);
/* True when the peer speaks v2 (flow control, integrity, cancellation). */
bool natshttp_txn_is_v2(const natshttp_txn *t);

/* ------------------------------------------------------------------------ */
/* File server (nats-http serve --dir)                                       */
/* ------------------------------------------------------------------------ */

typedef struct natshttp_files natshttp_files;

typedef struct natshttp_files_options {
    natshttp_server_options server;
    const char *dir;         /* root directory (required) */
    bool list;               /* HTML listings of directories without index.html */
    int workers;             /* threads sending bodies over 64 KiB and writing uploads; 0 = 2.
                                Smaller answers are read and sent where the request
                                arrives (see Threads): cheaper than a hand-off for
                                files in the page cache. */
    size_t chunk_size;       /* bytes read and published per step; 0 = connection max payload */
    const char *writable;    /* URL path prefix below which PUT writes files ("/" = all,
                                "/up/" = below up/), or NULL: read-only (PUT -> 405).
                                Each upload goes to a temporary file that is fsync'd and
                                renamed over the target only once the body is complete:
                                201 Created, or 204 when it replaced a file. */
} natshttp_files_options;

natshttp_status natshttp_files_new(natshttp_files **out, natsConnection *nc,
                                   const natshttp_files_options *opts);
/* natshttp_server_drain for the file server: in-flight downloads go on. */
natshttp_status natshttp_files_drain(natshttp_files *f, int64_t timeout_ms);
void natshttp_files_free(natshttp_files *f);

/* ------------------------------------------------------------------------ */
/* Upstream (nats-http serve --upstream)                                     */
/* ------------------------------------------------------------------------ */

/* Forwards every request taken from the subject to an HTTP server through
 * one libcurl multi handle, driven by one thread of its own; the server's
 * receiving side only hands requests and body chunks over, so it never waits
 * for the upstream. Method, raw path, raw query and end-to-end headers go to
 * the upstream as the client sent them (hop-by-hop fields removed, a Via entry
 * added); status, reason, headers and body come back the same way, streamed
 * in both directions with curl paused while the other side cannot take more.
 *
 * Failures: connection refused or reset before a response -> 502; no response
 * head within timeout_ms -> 504; the upstream breaking off after the head ->
 * the response is aborted (the HTTP client sees a cut-off body). Each failure
 * is one log line of component "upstream". */
typedef struct natshttp_upstream natshttp_upstream;

typedef struct natshttp_upstream_options {
    natshttp_server_options server;
    const char *url;          /* http://HOST[:PORT][/base] or https://...; a base path
                                 is put in front of every request path (required) */
    const char *host;         /* Host header the upstream sees; NULL = the client's */
    int64_t timeout_ms;       /* connecting, and waiting for the response head (counted
                                 while the upstream owes us something); also how long
                                 a response body may stall; 0 = 30000 */
    int max_conns;            /* connections to the upstream, reused (keep-alive); 0 = 16 */
    size_t buffer_size;       /* curl's receive buffer per transfer; 0 = 64 KiB */
} natshttp_upstream_options;

/* Checks the options, starts the curl thread and subscribes. The caller keeps
 * nc open for the upstream's life. */
natshttp_status natshttp_upstream_new(natshttp_upstream **out, natsConnection *nc,
                                      const natshttp_upstream_options *opts);
/* natshttp_server_drain for the upstream forwarder. */
natshttp_status natshttp_upstream_drain(natshttp_upstream *u, int64_t timeout_ms);
/* Stops taking requests, aborts the transfers in flight (their HTTP clients
 * see 502 or a cut-off body), joins the thread and frees. Not from a callback. */
void natshttp_upstream_free(natshttp_upstream *u);

/* ------------------------------------------------------------------------ */
/* Gateway (nats-http gateway)                                               */
/* ------------------------------------------------------------------------ */

typedef struct natshttp_gateway natshttp_gateway;

typedef struct natshttp_gateway_options {
    natshttp_client_options client;
    const char *listen_addr;   /* IPv4/IPv6 literal; NULL = 127.0.0.1 */
    uint16_t listen_port;      /* 0 = pick a free port */
    int threads;               /* HTTP threads; 0 = 1 */
    size_t chunk_size;         /* request body bytes per NATS message; 0 = 128 KiB */
    unsigned idle_timeout_s;   /* idle keep-alive connection timeout; 0 = 60 */
    unsigned head_timeout_s;   /* a request head must be whole within this long of the
                                  connection's start or the previous request's end, or
                                  the connection is closed (slowloris); 0 = idle_timeout_s */
    unsigned max_connections;  /* 0 = 1024 */
    size_t max_buffer;         /* response bytes one request may hold unsent to its HTTP
                                  client before it is aborted (v1 has no flow control);
                                  0 = 64 MiB */
    int64_t max_body;          /* request body bound (413); 0 = none */
    unsigned max_inflight;     /* requests forwarded at once; more get 503 with
                                  Retry-After; 0 = no limit */
    unsigned max_connections_per_ip; /* 0 = no limit */
    const char *https_cert;    /* PEM text of the certificate (chain): HTTPS instead of
                                  HTTP; NULL = plain HTTP. Copied. */
    const char *https_key;     /* PEM text of its private key (with https_cert) */
    natshttp_metrics *metrics; /* counts every HTTP request, or NULL; must outlive the gateway */
} natshttp_gateway_options;

natshttp_status natshttp_gateway_new(natshttp_gateway **out, natsConnection *nc,
                                     const natshttp_gateway_options *opts);
/* As natshttp_client_async_error, for the gateway's client. */
void natshttp_gateway_async_error(natshttp_gateway *g, natsStatus err, const char *text);
/* True when this libmicrohttpd can serve HTTPS (built with GnuTLS). */
bool natshttp_gateway_https_supported(void);
/* The port the gateway listens on (useful with listen_port 0). */
uint16_t natshttp_gateway_port(const natshttp_gateway *g);
/* Graceful stop, first half: closes the listening socket (new connections
 * are refused), answers new requests on open connections with 503 and
 * "Connection: close", and waits until every request under way has ended or
 * timeout_ms passed. OK when all ended, TIMEOUT otherwise. Then
 * natshttp_gateway_free. Not from a callback. */
natshttp_status natshttp_gateway_drain(natshttp_gateway *g, int64_t timeout_ms);
void natshttp_gateway_free(natshttp_gateway *g);

/* ------------------------------------------------------------------------ */
/* Metrics (Prometheus text format)                                          */
/* ------------------------------------------------------------------------ */

/* Counters of one process's requests: by HTTP status, body bytes in and
 * out, in flight, durations (a histogram), aborted transfers, and the NATS
 * connection's reconnects. A gateway or server given one in its options
 * counts into it (any thread, lock-free); natshttp_metrics_listen serves
 * them on GET /metrics from a small libmicrohttpd daemon of their own (one
 * thread). Metric names are listed in docs/operations.md. */
natshttp_status natshttp_metrics_new(natshttp_metrics **out, natsConnection *nc);
/* Starts the HTTP endpoint on addr (IPv4/IPv6 literal) and port (0 = any free). */
natshttp_status natshttp_metrics_listen(natshttp_metrics *m, const char *addr, uint16_t port);
/* The port natshttp_metrics_listen bound, 0 before. */
uint16_t natshttp_metrics_port(const natshttp_metrics *m);
/* The Prometheus text document as GET /metrics serves it; free() it. NULL
 * when out of memory. Any thread. */
char *natshttp_metrics_render(natshttp_metrics *m);
void natshttp_metrics_free(natshttp_metrics *m);

/* ------------------------------------------------------------------------ */
/* NATS service API (discovery)                                              */
/* ------------------------------------------------------------------------ */

/* Answers $SRV.PING, $SRV.INFO and $SRV.STATS (also $SRV.<VERB>.<name> and
 * $SRV.<VERB>.<name>.<id>) as the NATS micro service API defines them
 * (io.nats.micro.v1.*_response), so that `nats micro ls` and the like list
 * the server. One subscription ($SRV.>), so one nats.c delivery thread. */
typedef struct natshttp_service natshttp_service;

typedef struct natshttp_service_options {
    const char *name;          /* [A-Za-z0-9_-]+ (required) */
    const char *version;       /* semantic version; NULL = NATSHTTP_VERSION */
    const char *description;   /* NULL = none */
    const char *subject;       /* the endpoint's subject, e.g. "demo.>" (required) */
    const char *queue_group;   /* NULL = none */
    const char *const *metadata;  /* key, value, key, value, ..., NULL; may be NULL */
    natshttp_metrics *metrics; /* the source of STATS counters; may be NULL */
} natshttp_service_options;

natshttp_status natshttp_service_new(natshttp_service **out, natsConnection *nc,
                                     const natshttp_service_options *opts);
/* This instance's id (as in the responses). */
const char *natshttp_service_id(const natshttp_service *s);
void natshttp_service_free(natshttp_service *s);

/* ------------------------------------------------------------------------ */
/* Flushing                                                                   */
/* ------------------------------------------------------------------------ */

/* nats.c buffers publishes and writes them about 1 ms later from its flusher
 * thread. A natshttp_flusher makes everything this library publishes on nc
 * go out at once when the connection is quiet (it writes a PING and what is
 * buffered before it), and leaves batching to nats.c when it is busy. One thread per
 * flusher; at most 16 in a process. Create it after connecting, free it
 * before natsConnection_Close. Without one, nats.c's own buffering applies. */
typedef struct natshttp_flusher natshttp_flusher;

natshttp_status natshttp_flusher_new(natshttp_flusher **out, natsConnection *nc);
void natshttp_flusher_free(natshttp_flusher *f);

#ifdef __cplusplus
}
#endif
#endif /* NATSHTTP_H */
