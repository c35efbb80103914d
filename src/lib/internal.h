/* internal.h - what the library's modules share and the public header does not show. */
#ifndef NH_INTERNAL_H
#define NH_INTERNAL_H

#include "natshttp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* Wire names (docs/protocol.md). */
#define NH_HDR_PATH "X-Path"
#define NH_HDR_QUERY "X-Query"
#define NH_HDR_FRAGMENT "X-Fragment"
#define NH_HDR_STATUS_CODE "X-Status-Code"
#define NH_HDR_STATUS "X-Status"
#define NH_HDR_RAW_PATH "Natshttp-Raw-Path"
#define NH_HDR_EMPTY "Natshttp-Empty"
/* v2 (docs/protocol.md, section 8) */
#define NH_HDR_VERSION "Natshttp-Version"
#define NH_HDR_WINDOW "Natshttp-Window"
#define NH_HDR_CREDIT "Natshttp-Credit"
#define NH_HDR_END "Natshttp-End"
#define NH_HDR_ABORT "Natshttp-Abort"
#define NH_HDR_CANCEL "Natshttp-Cancel"
#define NH_HDR_INSTANCE "Natshttp-Instance"   /* v2 response heads: the serving instance */

#define NH_DEFAULT_WINDOW (4 * 1024 * 1024)
#define NH_DEFAULT_IDLE_MS 30000

/* Room kept free in every message for the subject and reply, as the Go peer does. */
#define NH_SUBJECT_ROOM 256

#define NH_MAX_SUBJECT 4096

#define NH_LOG_E(comp, ...) natshttp_log(NATSHTTP_LOG_ERROR, comp, __VA_ARGS__)
#define NH_LOG_W(comp, ...) natshttp_log(NATSHTTP_LOG_WARN, comp, __VA_ARGS__)
#define NH_LOG_I(comp, ...) natshttp_log(NATSHTTP_LOG_INFO, comp, __VA_ARGS__)
#define NH_LOG_D(comp, ...) natshttp_log(NATSHTTP_LOG_DEBUG, comp, __VA_ARGS__)

bool nh_log_enabled(natshttp_log_level level);
/* v as one logfmt value in out (quoted and escaped when it holds a space,
 * '"', '=' or '\\', or is empty); truncated to cap; returns out. */
const char *nh_logfmt(char *out, size_t cap, const char *v);

/* A subject prefix a server may subscribe under and a client publish to:
 * literal tokens only (no wildcard, whitespace or empty token). */
bool nh_prefix_valid(const char *prefix);

/* ---- flushing (flush.c) ---- */
/* After a publish on nc: wakes nc's flusher, if it has one (natshttp_flusher_new). */
void nh_flush_kick(natsConnection *nc);

/* ---- time ---- */
int64_t nh_now_ms(void);
/* The time ms milliseconds from now on clock clk, for pthread_cond_timedwait. */
struct timespec nh_deadline(clockid_t clk, int64_t ms);

/* ---- metrics (metrics.c); every function accepts m == NULL and does nothing ---- */
void nh_metrics_begin(natshttp_metrics *m);
/* Body bytes received and sent, counted as they pass. */
void nh_metrics_bytes(natshttp_metrics *m, uint64_t bytes_in, uint64_t bytes_out);
/* One request over: its status (0 = none was sent), how long it took, and
 * whether its body broke off. */
void nh_metrics_end(natshttp_metrics *m, int status, int64_t duration_us, bool aborted);
typedef struct nh_metrics_totals {
    uint64_t requests, errors, duration_us;
    int last_error_status;   /* 0 = none */
    bool last_error_aborted;
} nh_metrics_totals;
void nh_metrics_totals_get(natshttp_metrics *m, nh_metrics_totals *out);
int64_t nh_now_us(void);

/* ---- heads ---- */
/* True when the header is one natshttp puts on the wire for itself (X-Path,
 * X-Status, Natshttp-*): such fields never reach an application or an HTTP peer. */
bool nh_is_wire_header(const char *name);
bool nh_token_valid(const char *s, size_t len);
const char *nh_reason_phrase(int status);

natshttp_status nh_head_clone(natshttp_head **out, const natshttp_head *src);

/* ---- flow control (flow.c) ---- */
typedef struct nh_credit nh_credit;
nh_credit *nh_credit_new(natsConnection *nc, int64_t window, const char *ctl_reply);
nh_credit *nh_credit_ref(nh_credit *c);
void nh_credit_unref(nh_credit *c);
/* No more credit is sent (the transfer ended). */
void nh_credit_close(nh_credit *c);
/* n bytes consumed; target is the reply subject of the chunk they came in. */
void nh_credit_consumed(nh_credit *c, size_t n, const char *target);
/* Publishes a data-less message with one control header. */
natshttp_status nh_publish_control(natsConnection *nc, const char *subject, const char *reply,
                                   const char *key, const char *value);
/* Parses "<base>.<id>[.<seq>]", base being the first base_len bytes; seq is
 * -1 when absent. False when the rest is not of that form. */
bool nh_parse_ids(const char *subject, size_t base_len, uint64_t *id, int64_t *seq);

/* ---- chunks ---- */
struct natshttp_chunk {
    natsMsg *msg;            /* owner of the bytes */
    const uint8_t *data;
    size_t len;
    nh_credit *credit;       /* v2: where consuming it is reported, or NULL */
};
natshttp_chunk *nh_chunk_from_msg(natsMsg *msg, nh_credit *credit);

/* ---- private subjects (subject.c) ---- */

#define NH_MAX_INBOX_PREFIX 32
/* NULL (the default, "_INBOX") or a literal subject of at most 32 bytes. */
bool nh_inbox_prefix_valid(const char *prefix);
/* A fresh private subject "<prefix>.<nuid>" (prefix NULL: "_INBOX"). */
natsStatus nh_make_inbox(char *out, size_t cap, const char *prefix);

/* ---- v1 wire encoding (wire.c) ---- */

/* How a side maps requests to subjects: its configuration, never the request's. */
typedef struct nh_route {
    const char *prefix;
    natshttp_layout layout;
    bool allow_dot_segments;
} nh_route;

/* nats-server's default max_control_line, and what "HPUB <subject> <reply>
 * <hdr> <total>\r\n" adds to subject and reply. */
#define NH_MAX_CONTROL_LINE 4096
#define NH_CONTROL_LINE_OVERHEAD 32

/* Builds the first message of a request: subject, reply, headers, optional data. */
/* window > 0 announces v2 with that window for the response body. */
natshttp_status nh_wire_request_msg(natsMsg **out, const nh_route *route,
                                    const natshttp_head *req, const char *reply, bool chunked,
                                    int64_t window, const void *data, size_t len);
/* Parses the first message of a request taken on route. Method and path come
 * from the subject (compat: X-Path, checked against the subject). Writes the
 * head (method, raw path, query) and the decoded path. */
natshttp_status nh_wire_parse_request(natsMsg *msg, const nh_route *route, natshttp_head *req,
                                      char **raw_path, char **decoded_path, size_t *decoded_len);
/* Builds the response head message to `subject` (the request's reply). */
natshttp_status nh_wire_response_msg(natsMsg **out, const char *subject, const char *reply,
                                     const natshttp_head *resp, int64_t content_length,
                                     bool chunked, bool v2, const void *data, size_t len);
/* A header's value or NULL. */
const char *nh_msg_header(natsMsg *msg, const char *key);
/* A non-negative decimal, or -1. */
int64_t nh_parse_u63(const char *s);
/* Parses a response head. */
natshttp_status nh_wire_parse_response(natsMsg *msg, natshttp_head *resp);
/* Size of the encoded header block of msg (as the peer's size rule counts it). */
size_t nh_wire_header_size(natsMsg *msg);
/* The peer's rule: does the first message announce a body that follows in further messages? */
natshttp_status nh_wire_request_is_chunked(natsMsg *msg, int64_t max_payload, bool *chunked);

/* ---- the client's receiving side without its thread (tests, fuzzers) ----
 * nh_client_deliver queues a message for the client, to be handled as its
 * subscription's delivery thread would handle it. A client made by
 * nh_client_new_pumped has no dispatch thread: nh_client_pump runs, on the
 * caller's thread, what that thread would do with everything queued so far
 * (callbacks included), without timeout checks. Its first message of each
 * request goes to `first` (if not NULL) instead of nc: nats.c 3.4 refuses a
 * message with headers on a connection that has never connected, and a
 * fuzzer's connection never does. nh_call_reply is the call's reply
 * subject, "<inbox>.<id>", that its response messages arrive on. */
typedef natsStatus (*nh_publish_fn)(void *ctx, natsMsg *msg);
void nh_client_deliver(natshttp_client *c, natsMsg *msg);
natshttp_status nh_client_new_pumped(natshttp_client **out, natsConnection *nc,
                                     const natshttp_client_options *opts, nh_publish_fn first,
                                     void *ctx);
void nh_client_pump(natshttp_client *c);
const char *nh_call_reply(const natshttp_call *call);

/* ---- a small FIFO of pointers, for handing work between threads ---- */
typedef struct nh_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void **items;
    size_t cap, head, len;
    bool closed;
} nh_queue;
int nh_queue_init(nh_queue *q);
void nh_queue_destroy(nh_queue *q);
int nh_queue_push(nh_queue *q, void *item);
/* Waits up to timeout_ms (-1 forever) for an item; NULL on timeout or when closed and empty. */
void *nh_queue_pop(nh_queue *q, int64_t timeout_ms);
void nh_queue_close(nh_queue *q);

#endif

/* ---- the id table shared by client and server: uint64 id -> object ---- */
typedef struct nh_table {
    void **slots;       /* open addressing; ids are never 0 */
    uint64_t *ids;
    size_t cap, len;
} nh_table;
int nh_table_put(nh_table *t, uint64_t id, void *obj);
void *nh_table_get(const nh_table *t, uint64_t id);
void *nh_table_del(nh_table *t, uint64_t id);
void nh_table_free(nh_table *t);

/* Tagged queue items: a natsMsg pointer, or a command (low bit set). */
typedef struct nh_cmd {
    int type;
    uint64_t id;
} nh_cmd;
#define NH_IS_CMD(p) (((uintptr_t)(p)) & 1u)
#define NH_CMD_PTR(p) ((nh_cmd *)(((uintptr_t)(p)) & ~(uintptr_t)1u))
#define NH_CMD_TAG(c) ((void *)(((uintptr_t)(c)) | 1u))

/* ---- fault injection for tests (NATSHTTP_TEST_HOOKS builds only) ----
 * NATSHTTP_TEST_DROP_SEQ=N / NATSHTTP_TEST_DUP_SEQ=N make a v2 sender skip or
 * repeat body piece N, so tests can show that a receiver never takes a
 * damaged body for a whole one. Read once; -1 when unset. */
typedef struct nh_hooks {
    int64_t drop_seq, dup_seq;
} nh_hooks;
void nh_hooks_load(nh_hooks *h);
