/* gateway.c - HTTP/1.1 in (libmicrohttpd), natshttp calls out.
 *
 * DESIGN. libmicrohttpd owns the sockets and runs its handlers on its
 * polling thread(s); natshttp_client runs the call callbacks on its dispatch
 * thread. Each HTTP request has one gw_req, shared by the two and guarded by
 * its mutex. Neither side ever waits for the other: when the HTTP side has
 * nothing to do (no response head yet, no body bytes queued, the NATS side
 * not ready for more upload), it suspends the connection, and the NATS side
 * resumes it when that changes (MHD's own suspend/resume hook).
 *
 * A gw_req is held by the HTTP request (until MHD's completion callback) and
 * by the call (until on_end); the last to let go frees it. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COMP "gateway"
#define GW_MAX_FIELDS 100   /* header fields in one request */
#define GW_MAX_DISCARD (4u * 1024 * 1024)   /* refused body bytes read and dropped */

typedef struct gw_req gw_req;

struct natshttp_gateway {
    natshttp_client *client;
    struct MHD_Daemon *mhd;
    uint16_t port;
    size_t max_buffer;
    size_t max_head;
    int64_t max_body;          /* 0: no limit */
    size_t pool;               /* libmicrohttpd's memory per connection */
    int64_t head_timeout_ms;
    pthread_mutex_t cmu;       /* guards conns */
    struct conn_slot *conns;   /* every open connection */
    unsigned max_inflight;     /* 0: no limit */
    _Atomic unsigned inflight;
    bool https;
    char *https_cert, *https_key;   /* PEM copies, kept while MHD runs */

    /* Calls start under smu; once stopping is set no call starts, so the
     * client can be freed while libmicrohttpd still takes requests. */
    pthread_mutex_t smu;
    bool stopping;

    /* The watch: requests whose client could leave unnoticed. libmicrohttpd
     * does not poll a suspended socket (a request waiting for its response
     * head, an upload waiting for credit), and 0.9.75 can miss the end of an
     * upload's socket that came while the connection was suspended. */
    pthread_t watch;
    bool watch_started, watch_stop;
    pthread_mutex_t wmu;
    pthread_cond_t wcv;
    gw_req *watched;

    natshttp_metrics *metrics;
    _Atomic int live;          /* gw_reqs not yet freed: what a drain waits for */
    _Atomic bool draining;     /* new requests get 503 and Connection: close */
};

typedef struct qchunk {
    natshttp_chunk *chunk;
    struct qchunk *next;
} qchunk;

struct gw_req {
    natshttp_gateway *g;
    gw_req *wnext;             /* on g->watched, under g->wmu */
    gw_req *dnext;             /* unlinked by the watch thread, its own */
    bool on_watch;             /* linked on g->watched (holding a reference); under g->wmu */
    _Atomic bool watching;     /* waiting for the response head; false once it (or the end) came */
    _Atomic bool uploading;    /* the request body is still arriving from the client */
    bool client_gone;          /* the watch saw the client close; under g->wmu */
    int64_t body_cl;           /* the request's Content-Length, -1 without one */
    struct MHD_Connection *conn;
    pthread_mutex_t mu;
    int refs;
    char *target;              /* raw request-target */
    char method[16];
    int64_t t0;

    natshttp_call *call;       /* NULL once on_end ran (or never started) */
    int fd;                    /* the connection's socket, -1 before begin() */
    bool completed;            /* libmicrohttpd is done with the request */
    bool started, body_expected, body_ended, suspended, writable;

    natshttp_head *resp;       /* set by on_head */
    bool head_ready, ended, response_queued;
    bool queueing;             /* inside queue_response, r->mu held (the MHD thread) */
    natshttp_status end_status;
    int error_status;          /* answer with an error instead of a response */
    const char *error_text;
    bool error_close;          /* and close: the request's framing cannot be trusted */

    qchunk *qhead, *qtail;
    size_t qoff, queued;
    bool inflight_held;        /* holds one of g->max_inflight */
    bool discarding;           /* reading a refused body to drop it */
    size_t discarded;
    uint64_t bytes_out;        /* response bytes sent */
    _Atomic uint64_t bytes_in; /* request body bytes taken (the watch reads it) */
    char *subject;             /* for the access log: the call's subject */
    char instance[64];         /* and the serving instance, when it said */
    char client[INET6_ADDRSTRLEN];
    int64_t t0_us;
    bool counted;              /* in g->metrics' in-flight gauge */
};

/* ---- shared helpers ------------------------------------------------------------ */

static void req_unref_locked(gw_req *r)
{
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    while (r->qhead) {
        qchunk *q = r->qhead;
        r->qhead = q->next;
        natshttp_chunk_free(q->chunk);
        free(q);
    }
    natshttp_head_free(r->resp);
    free(r->target);
    free(r->subject);
    pthread_mutex_destroy(&r->mu);
    r->g->live--;
    free(r);
}

/* r->mu held. */
static void wake(gw_req *r)
{
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

static void drop_queue(gw_req *r)
{
    while (r->qhead) {
        qchunk *q = r->qhead;
        r->qhead = q->next;
        natshttp_chunk_free(q->chunk);
        free(q);
    }
    r->qtail = NULL;
    r->qoff = r->queued = 0;
}

/* A response that broke off: the client must see the connection end now,
 * even when it reads nothing (libmicrohttpd would only notice once the socket
 * became writable). Shutting the socket down (not closing it: the fd stays
 * libmicrohttpd's) makes its next poll fail, and it closes the connection.
 * r->mu held; the completion callback takes it too, so the connection is
 * still there. */
static void cut_off(gw_req *r)
{
    drop_queue(r);
    if (r->response_queued && !r->completed && r->fd >= 0)
        shutdown(r->fd, SHUT_RDWR);
}

/* Puts r on the watch thread's list, once; r->mu held. */
static void watch_add(gw_req *r)
{
    if (r->fd < 0)
        return;
    pthread_mutex_lock(&r->g->wmu);
    if (!r->on_watch) {
        r->refs++;   /* the watch's */
        r->on_watch = true;
        r->wnext = r->g->watched;
        r->g->watched = r;
    }
    pthread_mutex_unlock(&r->g->wmu);
}

/* ---- NATS side (client callbacks) --------------------------------------------- */

static void on_head(void *ctx, natshttp_call *call, const natshttp_head *resp)
{
    gw_req *r = ctx;
    r->watching = false;
    natshttp_head *copy = NULL;
    natshttp_status st = nh_head_clone(&copy, resp);
    const char *inst = natshttp_call_instance(call);
    pthread_mutex_lock(&r->mu);
    if (inst)
        snprintf(r->instance, sizeof r->instance, "%s", inst);
    if (st == NATSHTTP_OK) {
        r->resp = copy;
        r->head_ready = true;
    } else {
        r->error_status = 500;
        r->error_text = "natshttp gateway: out of memory\n";
    }
    wake(r);
    pthread_mutex_unlock(&r->mu);
}

static void on_body(void *ctx, natshttp_call *call, natshttp_chunk *chunk)
{
    gw_req *r = ctx;
    qchunk *q = malloc(sizeof *q);
    pthread_mutex_lock(&r->mu);
    if (!q || r->ended) {
        pthread_mutex_unlock(&r->mu);
        free(q);
        natshttp_chunk_free(chunk);
        return;
    }
    size_t len = natshttp_chunk_len(chunk);
    if (r->queued + len > r->g->max_buffer) {
        /* v1 has no flow control: a client slower than the server makes us
         * choose between unbounded memory and this transfer. */
        NH_LOG_W(COMP, "%s %s: HTTP client too slow, more than %zu bytes buffered; aborting",
                 r->method, r->target, r->g->max_buffer);
        pthread_mutex_unlock(&r->mu);
        free(q);
        natshttp_chunk_free(chunk);
        natshttp_call_cancel(call);
        pthread_mutex_lock(&r->mu);
        r->end_status = NATSHTTP_OVERRUN;
        r->ended = true;
        cut_off(r);
        wake(r);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    q->chunk = chunk;
    q->next = NULL;
    if (r->qtail)
        r->qtail->next = q;
    else
        r->qhead = q;
    r->qtail = q;
    r->queued += len;
    wake(r);
    pthread_mutex_unlock(&r->mu);
}

static void on_writable(void *ctx, natshttp_call *call)
{
    gw_req *r = ctx;
    pthread_mutex_lock(&r->mu);
    /* A resume is the whole notification; the flag is for a body reader that
     * is not suspended (it then tries again at once). A flag left set after
     * a resume would make the next AGAIN return without suspending, and
     * libmicrohttpd does not call again for data already in its buffer: the
     * end of an upload would stall. */
    if (r->suspended)
        wake(r);
    else
        r->writable = true;
    pthread_mutex_unlock(&r->mu);
}

static void on_end(void *ctx, natshttp_call *call, natshttp_status st)
{
    gw_req *r = ctx;
    r->watching = false;
    r->uploading = false;
    pthread_mutex_lock(&r->mu);
    r->call = NULL;
    if (!r->ended) {
        r->ended = true;
        r->end_status = st;
    }
    if (!r->head_ready && !r->error_status && st != NATSHTTP_OK) {
        r->error_status = natshttp_status_http(st);
        r->error_text = natshttp_status_text(st);
        if (st != NATSHTTP_CANCELLED)
            NH_LOG_I(COMP, "%s %s: %s", r->method, r->target, natshttp_status_text(st));
    } else if (st != NATSHTTP_OK && st != NATSHTTP_CANCELLED) {
        NH_LOG_W(COMP, "%s %s: response broke off (%s); closing the connection", r->method,
                 r->target, natshttp_status_text(st));
        cut_off(r);
    }
    wake(r);
    req_unref_locked(r);
}

static const natshttp_call_callbacks call_cb = {
    .on_head = on_head, .on_body = on_body, .on_writable = on_writable, .on_end = on_end};

/* ---- HTTP side (MHD threads) ------------------------------------------------------- */

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    gw_req *r = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&r->mu);
    while (r->qhead && (size_t)n < max) {
        qchunk *q = r->qhead;
        size_t avail = natshttp_chunk_len(q->chunk) - r->qoff;
        size_t take = avail < max - (size_t)n ? avail : max - (size_t)n;
        memcpy(buf + n, natshttp_chunk_data(q->chunk) + r->qoff, take);
        n += (ssize_t)take;
        r->qoff += take;
        if (r->qoff == natshttp_chunk_len(q->chunk)) {
            r->qhead = q->next;
            if (!r->qhead)
                r->qtail = NULL;
            r->qoff = 0;
            natshttp_chunk_free(q->chunk);
            free(q);
        }
    }
    r->queued -= (size_t)n;
    r->bytes_out += (uint64_t)n;
    if (n > 0)
        nh_metrics_bytes(r->g->metrics, 0, (uint64_t)n);
    if (n == 0) {
        if (r->ended) {
            n = r->end_status == NATSHTTP_OK ? MHD_CONTENT_READER_END_OF_STREAM
                                             : MHD_CONTENT_READER_END_WITH_ERROR;
        } else {
            r->suspended = true;
            MHD_suspend_connection(r->conn);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void free_body_cls(void *cls)
{
    gw_req *r = cls;
    if (r->queueing) {   /* from queue_response, which holds r->mu and a reference */
        r->refs--;
        return;
    }
    pthread_mutex_lock(&r->mu);
    req_unref_locked(r);
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, int status, const char *text,
                                   bool close)
{
    char body[256];
    int n = snprintf(body, sizeof body, "natshttp gateway: %s\n", text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (close)
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Builds and queues the MHD response for r; r->mu held. */
static enum MHD_Result queue_response(gw_req *r)
{
    r->response_queued = true;
    if (r->error_status)
        return queue_error(r->conn, r->error_status, r->error_text, r->error_close);

    natshttp_head *h = r->resp;
    int status = natshttp_head_status(h);
    int64_t cl = -1;
    if (natshttp_head_content_length(h, &cl) != NATSHTTP_OK) {
        NH_LOG_W(COMP, "%s %s: response has a malformed Content-Length", r->method, r->target);
        return queue_error(r->conn, 502, "malformed Content-Length from the server", false);
    }
    natshttp_head_strip_hop_by_hop(h);
    natshttp_head_remove(h, "Content-Length");

    struct MHD_Response *resp;
    bool no_body = strcmp(r->method, "HEAD") == 0 || status < 200 || status == 204 || status == 304;
    if (no_body) {
        /* MHD derives Content-Length from the size: keep the server's value for HEAD. */
        bool keeps_length = strcmp(r->method, "HEAD") == 0 || status == 304;
        uint64_t size = (!keeps_length || cl < 0) ? 0 : (uint64_t)cl;
        resp = size ? MHD_create_response_from_callback(size, 4096, read_body, r, free_body_cls)
                    : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp && size)
            r->refs++;
    } else {
        uint64_t size = cl >= 0 ? (uint64_t)cl : MHD_SIZE_UNKNOWN;
        /* MHD callocs the block per response: no bigger than the body (bench/run: a 1 KiB
         * GET cost 64 KiB of zeroing and the page faults of its trimmed heap). */
        size_t block = cl > 0 && cl < 64 * 1024 ? (size_t)cl : 64 * 1024;
        resp = MHD_create_response_from_callback(size, block, read_body, r, free_body_cls);
        if (resp)
            r->refs++;
    }
    if (!resp)
        return MHD_NO;
    for (size_t i = 0; i < natshttp_head_count(h); i++) {
        const char *n, *v;
        natshttp_head_at(h, i, &n, &v);
        /* libmicrohttpd refuses an empty value; a lone space is the same field
         * value once the client trims its whitespace (RFC 9110 5.5). */
        if (MHD_add_response_header(resp, n, *v ? v : " ") != MHD_YES)
            NH_LOG_W(COMP, "%s %s: response field %s not passed on", r->method, r->target, n);
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    /* Refused (the connection or the daemon is closing), destroy frees the
     * body at once, calling free_body_cls on this thread with r->mu held. */
    r->queueing = true;
    MHD_destroy_response(resp);
    r->queueing = false;
    return ret;
}

typedef struct head_build {
    natshttp_head *h;
    natshttp_status st;
} head_build;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    head_build *b = cls;
    if (b->st == NATSHTTP_OK)
        b->st = natshttp_head_addn(b->h, key, key_size, value ? value : "", value ? value_size : 0);
    return b->st == NATSHTTP_OK ? MHD_YES : MHD_NO;
}

/* Joins every value of `name` and `add` into one comma-separated value. */
static natshttp_status append_chain(natshttp_head *h, const char *name, const char *add)
{
    size_t len = strlen(add) + 1;
    for (long i = natshttp_head_find(h, name, 0); i >= 0; i = natshttp_head_find(h, name, (size_t)i + 1)) {
        const char *n, *v;
        natshttp_head_at(h, (size_t)i, &n, &v);
        len += strlen(v) + 2;
    }
    char *joined = malloc(len);
    if (!joined)
        return NATSHTTP_NOMEM;
    joined[0] = 0;
    for (long i = natshttp_head_find(h, name, 0); i >= 0; i = natshttp_head_find(h, name, (size_t)i + 1)) {
        const char *n, *v;
        natshttp_head_at(h, (size_t)i, &n, &v);
        if (*v) {
            strcat(joined, v);
            strcat(joined, ", ");
        }
    }
    strcat(joined, add);
    natshttp_head_remove(h, name);
    natshttp_status st = natshttp_head_add(h, name, joined);
    free(joined);
    return st;
}

/* X-Forwarded-For/-Proto/-Host and Via, each appended to what the client sent
 * (after hop-by-hop stripping, so "Connection: X-Forwarded-For" cannot remove ours). */
static natshttp_status add_forwarding(gw_req *r, natshttp_head *h)
{
    const char *host = natshttp_head_get(h, "Host");
    natshttp_status st = append_chain(h, "X-Forwarded-For", r->client);
    if (st == NATSHTTP_OK)
        st = append_chain(h, "X-Forwarded-Proto", r->g->https ? "https" : "http");
    if (st == NATSHTTP_OK && host && *host) {
        char *copy = strdup(host);
        st = copy ? append_chain(h, "X-Forwarded-Host", copy) : NATSHTTP_NOMEM;
        free(copy);
    }
    if (st == NATSHTTP_OK)
        st = append_chain(h, "Via", "1.1 natshttp-gateway");
    return st;
}

/* First call for a request: build the head and start the call. */
static enum MHD_Result begin(gw_req *r, const char *method)
{
    natshttp_gateway *g = r->g;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->t0 = nh_now_ms();
    r->t0_us = nh_now_us();
    r->counted = g->metrics != NULL;
    nh_metrics_begin(g->metrics);
    if (g->draining) {
        r->error_status = 503;
        r->error_text = "the gateway is stopping";
        r->error_close = true;
        return MHD_YES;
    }
    if (!natshttp_method_valid(method)) {
        r->error_status = 501;
        r->error_text = "method not supported";
        return MHD_YES;
    }

    /* The raw target: path and query exactly as the client sent them. */
    char *target = r->target;
    char *hash = strchr(target, '#');
    if (hash)
        *hash = 0;
    char *q = strchr(target, '?');
    const char *query = "";
    if (q) {
        *q = 0;
        query = q + 1;
    }
    /* RFC 9112 3.2.2: the absolute form is accepted; its authority is not ours to route by. */
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        char *p = strstr(target, "://") + 3;
        p += strcspn(p, "/");
        target = *p ? p : (char *)"/";
    }
    if (target[0] != '/') {
        r->error_status = 400;
        r->error_text = "request-target must be an absolute path";
        return MHD_YES;
    }

    head_build b = {NULL, natshttp_head_new(&b.h, g->max_head)};
    if (b.st == NATSHTTP_OK)
        b.st = natshttp_head_set_request(b.h, method, target, query);
    if (b.st == NATSHTTP_OK)
        MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_header, &b);
    if (q)
        *q = '?';

    int64_t cl = -1;
    bool chunked = false;
    if (b.st == NATSHTTP_OK && natshttp_head_count(b.h) > GW_MAX_FIELDS)
        b.st = NATSHTTP_HEAD_TOO_LARGE;
    if (b.st == NATSHTTP_OK)
        b.st = natshttp_head_content_length(b.h, &cl);
    if (b.st == NATSHTTP_OK && natshttp_head_find(b.h, "Transfer-Encoding", 0) >= 0) {
        /* Only a lone "chunked" is a framing libmicrohttpd and we agree on. */
        const char *te = natshttp_head_get(b.h, "Transfer-Encoding");
        if (natshttp_head_find(b.h, "Transfer-Encoding", 1 + (size_t)natshttp_head_find(
                                   b.h, "Transfer-Encoding", 0)) >= 0 ||
            strcasecmp(te, "chunked") != 0)
            b.st = NATSHTTP_BAD_TRANSFER;
        chunked = true;
        if (b.st == NATSHTTP_OK && cl >= 0)
            b.st = NATSHTTP_BAD_REQUEST;   /* both framings: refuse, never guess */
    }
    if (b.st == NATSHTTP_OK) {
        natshttp_head_strip_hop_by_hop(b.h);
        natshttp_head_remove(b.h, "Expect");
        if (chunked)
            natshttp_head_remove(b.h, "Content-Length");
        b.st = add_forwarding(r, b.h);
    }

    natshttp_status st = b.st;
    int64_t body_len = chunked ? -2 : cl > 0 ? cl : -1;
    if (st == NATSHTTP_OK && g->max_body > 0 && cl > g->max_body)
        st = NATSHTTP_BODY_TOO_LARGE;
    if (st == NATSHTTP_OK && g->max_inflight) {
        if (atomic_fetch_add(&g->inflight, 1) >= g->max_inflight) {
            atomic_fetch_sub(&g->inflight, 1);
            st = NATSHTTP_BUSY;
        } else {
            r->inflight_held = true;
        }
    }
    if (st == NATSHTTP_OK) {
        r->refs++;   /* the call's hold */
        pthread_mutex_lock(&g->smu);
        st = g->stopping ? NATSHTTP_CLOSED
                         : natshttp_call_start(&r->call, g->client, b.h, body_len, NULL, &call_cb, r);
        pthread_mutex_unlock(&g->smu);
        if (st != NATSHTTP_OK) {
            r->refs--;
            r->call = NULL;
        } else if (natshttp_call_subject(r->call)) {
            /* r->mu is held: the call cannot have ended yet */
            r->subject = strdup(natshttp_call_subject(r->call));
        }
    }
    natshttp_head_free(b.h);
    if (st != NATSHTTP_OK) {
        r->error_status = natshttp_status_http(st);
        r->error_text = natshttp_status_text(st);
        /* Refused before its body was read: that body must not be taken for
         * the next request on the connection. */
        r->error_close = st == NATSHTTP_BAD_REQUEST || st == NATSHTTP_BAD_TRANSFER ||
                         st == NATSHTTP_HEAD_TOO_LARGE || cl > 0 || chunked;
        NH_LOG_I(COMP, "%s %s: refused: %s", method, r->target, r->error_text);
        return MHD_YES;
    }
    r->body_expected = body_len != -1;
    r->body_cl = body_len >= 0 ? body_len : -1;
    if (r->body_expected) {
        r->uploading = true;
        watch_add(r);
    }
    return MHD_YES;
}

/* Per connection: the request whose URI was seen but which has not reached
 * the access handler. libmicrohttpd may fail such a request (a head larger
 * than its pool) without calling the completion callback; this slot is how
 * its gw_req is still freed. MHD thread only. */
typedef struct conn_slot conn_slot;
struct conn_slot {
    gw_req *pending;
    /* The head deadline (slowloris): libmicrohttpd's idle timer restarts with
     * every byte, so a client trickling a head would hold the connection for
     * ever. From the connection's start, or the end of its previous request,
     * the next head must be complete within g->head_timeout_ms; the watch
     * thread shuts the socket down otherwise. Under g->cmu. */
    conn_slot *next, *prev;
    int fd;
    bool in_head, shut;
    int64_t since;
    char client[INET6_ADDRSTRLEN];
};

static conn_slot *slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void drop_pending(conn_slot *slot)
{
    if (slot && slot->pending) {
        gw_req *r = slot->pending;
        slot->pending = NULL;
        pthread_mutex_lock(&r->mu);
        req_unref_locked(r);
    }
}

static void client_address(struct MHD_Connection *conn, char *addr, size_t cap);

static void head_wait(natshttp_gateway *g, conn_slot *slot, bool waiting)
{
    if (!slot)
        return;
    pthread_mutex_lock(&g->cmu);
    slot->in_head = waiting;
    slot->since = nh_now_ms();
    pthread_mutex_unlock(&g->cmu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    natshttp_gateway *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_slot *slot = calloc(1, sizeof(conn_slot));
        *socket_context = slot;
        if (!slot)
            return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        slot->fd = ci ? ci->connect_fd : -1;
        client_address(conn, slot->client, sizeof slot->client);
        slot->in_head = true;
        slot->since = nh_now_ms();
        pthread_mutex_lock(&g->cmu);
        slot->next = g->conns;
        if (g->conns)
            g->conns->prev = slot;
        g->conns = slot;
        pthread_mutex_unlock(&g->cmu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_slot *slot = *socket_context;
        drop_pending(slot);
        if (slot) {
            pthread_mutex_lock(&g->cmu);
            if (slot->prev)
                slot->prev->next = slot->next;
            else
                g->conns = slot->next;
            if (slot->next)
                slot->next->prev = slot->prev;
            pthread_mutex_unlock(&g->cmu);
        }
        free(slot);
        *socket_context = NULL;
    }
}

static void client_address(struct MHD_Connection *conn, char *addr, size_t cap)
{
    snprintf(addr, cap, "unknown");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, (socklen_t)cap);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, (socklen_t)cap);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls)
{
    gw_req *r = *req_cls;
    enum MHD_Result ret = MHD_YES;
    if (!r)
        return MHD_NO;
    pthread_mutex_lock(&r->mu);
    if (!r->started) {
        conn_slot *slot = slot_of(conn);
        if (slot && slot->pending == r)
            slot->pending = NULL;   /* the request is under way: completion frees it */
        head_wait(r->g, slot, false);
        r->started = true;
        r->conn = conn;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? ci->connect_fd : -1;
        client_address(conn, r->client, sizeof r->client);
        ret = begin(r, method);
        if (r->error_status && r->error_close) {
            /* Answer now: libmicrohttpd would otherwise read a body of unknown
             * framing until the client gives up. */
            ret = queue_response(r);
            pthread_mutex_unlock(&r->mu);
            return ret;
        }
        pthread_mutex_unlock(&r->mu);
        return ret;
    }

    if (*upload_data_size > 0) {
        if (r->error_status || r->head_ready || !r->call) {
            /* Answered already (refused, or an early response): drop the rest.
             * A body refused for its size is read and dropped up to a bound,
             * so that the client is still reading when the 413 comes (closing
             * on unread data would reset the connection and lose the answer). */
            r->discarded += *upload_data_size;
            *upload_data_size = 0;
            if (r->discarding && r->discarded > GW_MAX_DISCARD && !r->response_queued) {
                r->discarding = false;
                ret = queue_response(r);
            }
        } else if (r->g->max_body > 0 &&
                   (int64_t)*upload_data_size > r->g->max_body - (int64_t)r->bytes_in) {
            /* A chunked body past --max-body: refuse it now, forward no more. */
            NH_LOG_I(COMP, "%s %s: refused: body larger than %" PRId64 " bytes", r->method,
                     r->target, r->g->max_body);
            r->error_status = natshttp_status_http(NATSHTTP_BODY_TOO_LARGE);
            r->error_text = natshttp_status_text(NATSHTTP_BODY_TOO_LARGE);
            r->error_close = true;
            r->discarding = true;
            *upload_data_size = 0;
            natshttp_call_cancel(r->call);
            pthread_mutex_unlock(&r->mu);
            return MHD_YES;
        } else {
            size_t taken = 0, done = 0;
            natshttp_status st;
            bool retry;
            do {   /* writable said while we were not suspended: try again at once */
                st = natshttp_call_write(r->call, upload_data + done, *upload_data_size - done,
                                         &taken);
                done += taken;
                retry = st == NATSHTTP_AGAIN && r->writable;
                r->writable = false;
            } while (retry);
            *upload_data_size -= done;
            r->bytes_in += done;
            nh_metrics_bytes(r->g->metrics, done, 0);
            if (st == NATSHTTP_AGAIN) {
                r->suspended = true;
                MHD_suspend_connection(conn);
            } else if (st != NATSHTTP_OK) {
                r->error_status = natshttp_status_http(st);
                r->error_text = natshttp_status_text(st);
                *upload_data_size = 0;
                if (r->call)
                    natshttp_call_cancel(r->call);
            }
        }
        pthread_mutex_unlock(&r->mu);
        return MHD_YES;
    }

    /* The request is complete on the HTTP side. */
    r->uploading = false;
    if (r->body_expected && !r->body_ended && r->call && !r->error_status) {
        r->body_ended = true;
        natshttp_status st = natshttp_call_end_body(r->call);
        if (st != NATSHTTP_OK) {
            r->error_status = natshttp_status_http(st);
            r->error_text = natshttp_status_text(st);
            natshttp_call_cancel(r->call);
        }
    }
    if (r->error_status || r->head_ready) {
        ret = queue_response(r);
    } else {
        r->suspended = true;
        MHD_suspend_connection(conn);
        if (r->call && !r->watching) {
            r->watching = true;
            watch_add(r);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return ret;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    conn_slot *slot = slot_of(conn);
    drop_pending(slot);   /* the previous request on this connection never started */
    gw_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->target = strdup(uri);
    if (!r->target) {
        free(r);
        return NULL;
    }
    r->g = cls;
    r->g->live++;
    r->refs = 1;
    r->fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    if (slot)
        slot->pending = r;
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    gw_req *r = *req_cls;
    if (!r)
        return;
    *req_cls = NULL;
    conn_slot *slot = slot_of(conn);
    if (slot && slot->pending == r)
        slot->pending = NULL;
    head_wait(r->g, slot, true);   /* the next request's head starts now */
    pthread_mutex_lock(&r->mu);
    if (r->call)
        natshttp_call_cancel(r->call);
    /* Whose end it was: the response broke off on the NATS side, or the client left. */
    char note[96] = "", why[80];
    if (r->ended && r->head_ready && r->end_status != NATSHTTP_OK &&
        r->end_status != NATSHTTP_CANCELLED)
        snprintf(note, sizeof note, " end=broke_off reason=%s",
                 nh_logfmt(why, sizeof why, natshttp_status_text(r->end_status)));
    else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        snprintf(note, sizeof note, " end=client_closed");
    r->ended = true;
    r->completed = true;
    r->uploading = false;
    r->suspended = false;   /* the connection is gone: nothing to resume */
    if (r->inflight_held) {
        r->inflight_held = false;
        atomic_fetch_sub(&r->g->inflight, 1);
    }
    int status = r->error_status ? r->error_status : r->resp ? natshttp_head_status(r->resp) : 0;
    if (r->started && nh_log_enabled(NATSHTTP_LOG_INFO)) {
        /* docs/cli.md, "Access log" */
        char tg[1024], sj[512], in[96];
        NH_LOG_I(COMP, "access client=%s method=%s target=%s status=%d in=%" PRIu64
                       " out=%" PRIu64 " dur_ms=%" PRId64 " subject=%s instance=%s%s",
                 r->client, r->method, nh_logfmt(tg, sizeof tg, r->target), status, r->bytes_in,
                 r->bytes_out, nh_now_ms() - r->t0,
                 nh_logfmt(sj, sizeof sj, r->subject ? r->subject : "-"),
                 nh_logfmt(in, sizeof in, r->instance[0] ? r->instance : "-"), note);
    }
    if (r->counted) {
        r->counted = false;
        bool broke_off = r->head_ready && r->end_status != NATSHTTP_OK &&
                         r->end_status != NATSHTTP_CANCELLED;
        nh_metrics_end(r->g->metrics, status ? status : 499, nh_now_us() - r->t0_us, broke_off);
    }
    drop_queue(r);
    req_unref_locked(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    NH_LOG_D("mhd", "%s", line);
}

static void *watch_main(void *arg);

natshttp_status natshttp_gateway_new(natshttp_gateway **out, natsConnection *nc,
                                     const natshttp_gateway_options *opts)
{
    if (!out || !nc || !opts)
        return NATSHTTP_INVALID;
    natshttp_gateway *g = calloc(1, sizeof *g);
    if (!g)
        return NATSHTTP_NOMEM;
    g->max_buffer = opts->max_buffer ? opts->max_buffer : 64u * 1024 * 1024;
    g->max_body = opts->max_body > 0 ? opts->max_body : 0;
    g->max_inflight = opts->max_inflight;
    g->head_timeout_ms = 1000 * (int64_t)(opts->head_timeout_s   ? opts->head_timeout_s
                                          : opts->idle_timeout_s ? opts->idle_timeout_s
                                                                 : 60);
    pthread_mutex_init(&g->cmu, NULL);
    g->metrics = opts->metrics;
    pthread_mutex_init(&g->wmu, NULL);
    pthread_mutex_init(&g->smu, NULL);
    pthread_cond_init(&g->wcv, NULL);
    g->max_head = opts->client.max_head ? opts->client.max_head : NATSHTTP_DEFAULT_MAX_HEAD;
    g->pool = 3 * g->max_head;
    natshttp_status st = natshttp_client_new(&g->client, nc, &opts->client);
    if (st != NATSHTTP_OK) {
        free(g);
        return st;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    const char *addr = opts->listen_addr ? opts->listen_addr : "127.0.0.1";
    /* MHD_USE_ITC: natshttp_gateway_drain quiesces the daemon. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(opts->listen_port);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(opts->listen_port);
        flags |= MHD_USE_IPv6;
    } else {
        NH_LOG_E(COMP, "listen address %s is not an IP address", addr);
        natshttp_gateway_free(g);
        return NATSHTTP_INVALID;
    }
    unsigned threads = opts->threads > 1 ? (unsigned)opts->threads : 1;
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
    if (opts->https_cert || opts->https_key) {
        if (!opts->https_cert || !opts->https_key) {
            NH_LOG_E(COMP, "HTTPS needs both a certificate and a key");
            natshttp_gateway_free(g);
            return NATSHTTP_INVALID;
        }
        if (!natshttp_gateway_https_supported()) {
            NH_LOG_E(COMP, "this libmicrohttpd was built without TLS: no HTTPS");
            natshttp_gateway_free(g);
            return NATSHTTP_INVALID;
        }
        g->https_cert = strdup(opts->https_cert);
        g->https_key = strdup(opts->https_key);
        if (!g->https_cert || !g->https_key) {
            natshttp_gateway_free(g);
            return NATSHTTP_NOMEM;
        }
        g->https = true;
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, g->https_cert};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, g->https_key};
        tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    g->mhd = MHD_start_daemon(
        flags, opts->listen_port, NULL, NULL, on_access, g, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, g, MHD_OPTION_NOTIFY_COMPLETED, on_completed, g,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, g,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(opts->max_connections ? opts->max_connections : 1024),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(opts->idle_timeout_s ? opts->idle_timeout_s : 60),
        /* The request head (ours to refuse: 431) and the response head, both up to
         * max_head, and libmicrohttpd's records of the header fields. The whole
         * pool stays resident while a keep-alive connection is idle: libmicrohttpd
         * zeroes it after each request (docs/performance.md). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, g->pool,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, opts->max_connections_per_ip,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_THREAD_POOL_SIZE,
        threads > 1 ? threads : 0u, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!g->mhd) {
        NH_LOG_E(COMP, "cannot listen on %s:%u%s", addr, (unsigned)opts->listen_port,
                 g->https ? " (or the HTTPS certificate and key are unusable)" : "");
        natshttp_gateway_free(g);
        return NATSHTTP_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->mhd, MHD_DAEMON_INFO_BIND_PORT);
    g->port = info ? info->port : opts->listen_port;
    if (pthread_create(&g->watch, NULL, watch_main, g) != 0) {
        natshttp_gateway_free(g);
        return NATSHTTP_NOMEM;
    }
    g->watch_started = true;
    *out = g;
    return NATSHTTP_OK;
}

/* Has the client of a request closed its end? Waiting for the response head:
 * EOF or an error on a peek (a pipelined next request is data, not EOF).
 * Uploading: a reset (an error, or TCP state CLOSE) always; the peer's FIN
 * only when the body can no longer be whole: what we took, what the socket
 * holds and all libmicrohttpd can hold fall short of Content-Length (a
 * client may send its whole body and then shut down its side). g->wmu held. */
static bool client_gone(const gw_req *r)
{
    char c;
    ssize_t n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    bool error = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    if (!r->uploading)
        return n == 0 || error;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    bool tcp = getsockopt(r->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0;
    if (error || (tcp && ti.tcpi_state == TCP_CLOSE))
        return true;
    bool fin = n == 0 || (tcp && ti.tcpi_state == TCP_CLOSE_WAIT);
    int unread = 0;
    if (!fin || r->body_cl < 0 || ioctl(r->fd, SIOCINQ, &unread) != 0)
        return false;
    return (int64_t)r->bytes_in + unread + (int64_t)r->g->pool < r->body_cl;
}

/* Every half second: unlink what no longer needs watching; cancel the calls
 * of clients that closed their end, and shut their sockets down so that
 * libmicrohttpd, polling or not, ends the connection. */
static void *watch_main(void *arg)
{
    natshttp_gateway *g = arg;
    pthread_mutex_lock(&g->wmu);
    while (!g->watch_stop) {
        struct timespec until = nh_deadline(CLOCK_REALTIME, 500);
        pthread_cond_timedwait(&g->wcv, &g->wmu, &until);
        int64_t now = nh_now_ms();
        pthread_mutex_lock(&g->cmu);
        for (conn_slot *c = g->conns; c; c = c->next) {
            if (c->in_head && !c->shut && c->fd >= 0 && now - c->since > g->head_timeout_ms) {
                /* libmicrohttpd then reads EOF and closes the connection itself */
                c->shut = true;
                NH_LOG_I(COMP, "closing the connection from %s: no whole request head within %" PRId64
                               " s", c->client, g->head_timeout_ms / 1000);
                shutdown(c->fd, SHUT_RDWR);
            }
        }
        pthread_mutex_unlock(&g->cmu);
        gw_req *done = NULL, **pp = &g->watched;
        while (*pp) {
            gw_req *r = *pp;
            bool watched = r->watching || r->uploading;
            r->client_gone = watched && client_gone(r);
            if (!watched || r->client_gone) {
                *pp = r->wnext;
                r->on_watch = false;
                r->dnext = done;
                done = r;
            } else {
                pp = &r->wnext;
            }
        }
        pthread_mutex_unlock(&g->wmu);
        while (done) {
            gw_req *r = done;
            done = r->dnext;
            pthread_mutex_lock(&r->mu);
            if (r->client_gone && r->call) {
                NH_LOG_I(COMP, "%s %s: the client left %s; cancelled", r->method, r->target,
                         r->uploading ? "during the upload" : "before the response");
                natshttp_call_cancel(r->call);
                if (!r->completed)
                    shutdown(r->fd, SHUT_RDWR);
            }
            req_unref_locked(r);
        }
        pthread_mutex_lock(&g->wmu);
    }
    pthread_mutex_unlock(&g->wmu);
    return NULL;
}

uint16_t natshttp_gateway_port(const natshttp_gateway *g) { return g->port; }

void natshttp_gateway_async_error(natshttp_gateway *g, natsStatus err, const char *text)
{
    if (g)
        natshttp_client_async_error(g->client, err, text);
}

bool natshttp_gateway_https_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

natshttp_status natshttp_gateway_drain(natshttp_gateway *g, int64_t timeout_ms)
{
    if (!g || !g->mhd)
        return NATSHTTP_INVALID;
    int64_t until = nh_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    if (!g->draining) {
        g->draining = true;
        MHD_socket lsock = MHD_quiesce_daemon(g->mhd);
        if (lsock != MHD_INVALID_SOCKET)
            close(lsock);   /* new connections are refused from here on */
        else
            NH_LOG_W(COMP, "could not stop listening; new connections get 503");
    }
    while (g->live > 0 && nh_now_ms() < until)
        usleep(20 * 1000);
    int left = g->live;
    if (left > 0)
        NH_LOG_W(COMP, "%d request(s) still under way after the grace period; aborting them", left);
    return left > 0 ? NATSHTTP_TIMEOUT : NATSHTTP_OK;
}

void natshttp_gateway_free(natshttp_gateway *g)
{
    if (!g)
        return;
    if (g->watch_started) {
        pthread_mutex_lock(&g->wmu);
        g->watch_stop = true;
        pthread_cond_signal(&g->wcv);
        pthread_mutex_unlock(&g->wmu);
        pthread_join(g->watch, NULL);
    }
    /* The client first: every call ends (resuming its connection), then MHD
     * can stop without suspended connections left behind. Requests that come
     * meanwhile get 503 (stopping), not a freed client. */
    pthread_mutex_lock(&g->smu);
    g->stopping = true;
    pthread_mutex_unlock(&g->smu);
    natshttp_client_free(g->client);
    while (g->watched) {
        gw_req *r = g->watched;
        g->watched = r->wnext;
        r->on_watch = false;
        pthread_mutex_lock(&r->mu);
        req_unref_locked(r);
    }
    if (g->mhd)
        MHD_stop_daemon(g->mhd);
    pthread_mutex_destroy(&g->wmu);
    pthread_cond_destroy(&g->wcv);
    free(g->https_cert);
    free(g->https_key);
    pthread_mutex_destroy(&g->smu);
    pthread_mutex_destroy(&g->cmu);
    free(g);
}
