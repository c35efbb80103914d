/* upstream.c - `serve --upstream`: natshttp_server requests forwarded to an
 * HTTP server through libcurl's multi interface.
 *
 * DESIGN. Two threads touch a request, neither ever waits for the other.
 *
 * The server's dispatch thread runs the natshttp callbacks. on_request turns
 * the request head into what curl will send (request-target, header list)
 * and keeps it in a `ureq`; on_body queues the body chunks on it; on_body_end
 * and on_writable post events. It never calls curl.
 *
 * The module's own thread owns the multi handle and every easy handle. It
 * takes posted ureqs off the ready list (one mutex, one curl_multi_wakeup),
 * adds their transfers, polls, and runs curl's callbacks: READFUNCTION feeds
 * the queued chunks to curl, freeing each as soon as it is copied, and pauses
 * the upload while the queue is empty; HEADERFUNCTION collects and checks the
 * response head, which goes to the txn with the first body byte (at once when
 * there is no body); WRITEFUNCTION writes body bytes to the txn as curl
 * delivers them, and when the txn cannot take more (AGAIN) keeps the rest and
 * pauses the download until on_writable.
 *
 * The ureq hangs off its txn (natshttp_txn_set_data), read and written only
 * under the module's mutex. It has two holders, like the txn: the library's
 * side until on_body_end, and the curl thread until it finishes the txn. The
 * last to let go clears the txn's pointer and frees the ureq; a callback that
 * comes later (on_writable can, in v2) finds NULL and does nothing.
 *
 * Memory per request: curl's receive buffer, the response bytes one write
 * left untaken (at most CURL_MAX_WRITE_SIZE, and as much again inside curl
 * while paused), and the queued request chunks, which flow control bounds. */
#include "internal.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COMP "upstream"
#define TICK_MS 100
#define IDLE_POLL_MS 1000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_CONNS 16
#define DEFAULT_BUFFER (64 * 1024)
#define VIA_ENTRY "1.1 natshttp"

enum { EV_START = 1, EV_BODY = 2, EV_ABORT = 4, EV_WRITABLE = 8 };

typedef enum body_kind {
    BODY_UNKNOWN,   /* no Content-Length: on_body or on_body_end decides */
    BODY_NONE,
    BODY_SIZED,
    BODY_CHUNKED,
} body_kind;

typedef struct qchunk {
    natshttp_chunk *chunk;
    struct qchunk *next;
} qchunk;

typedef struct ureq ureq;

struct ureq {
    natshttp_upstream *up;
    natshttp_txn *txn;
    char method[16];
    char *target;                /* request-target sent upstream (base path, raw path, query) */
    struct curl_slist *headers;
    bool is_head;
    int64_t body_len;            /* BODY_SIZED */

    /* under up->mu */
    body_kind body;
    qchunk *qhead, *qtail;
    size_t qoff;
    bool body_done;              /* on_body_end ran: the library let go */
    natshttp_status body_status;
    bool send_paused;            /* the read callback paused curl for want of chunks */
    bool finished;               /* the curl thread let go */
    unsigned events;
    bool linked;
    ureq *rnext, *rprev;         /* ready list */

    /* curl thread only */
    CURL *easy;
    ureq *anext, *aprev;         /* active list */
    bool active;
    int64_t wait_since;          /* since when the upstream owes us the head */
    bool waiting_body;           /* upload paused: the upstream owes us nothing yet */
    natshttp_head *resp;
    int status;
    bool head_done, responded, no_body, failed, curl_done;
    int64_t resp_cl;             /* the upstream's Content-Length, -1 when none or chunked */
    int fail_status;             /* answer when we gave up before responding */
    const char *fail_text;
    CURLcode done_code;
    uint8_t *pend;               /* response bytes the txn did not take yet */
    size_t pend_len, pend_off;
    bool recv_paused;
    int64_t body_bytes;
    char errbuf[CURL_ERROR_SIZE];
};

struct natshttp_upstream {
    natshttp_server *srv;
    CURLM *multi;
    pthread_t thread;
    bool thread_started, curl_inited;
    char *origin;                /* scheme://authority/ */
    char *base;                  /* "" or "/base", no trailing '/' */
    char *host;                  /* Host override, or NULL */
    int64_t timeout_ms;
    long max_conns, buffer_size;
    size_t max_head;

    pthread_mutex_t mu;          /* the ready list, every ureq's shared part, txn data */
    ureq *ready_head, *ready_tail;
    long live;                   /* ureqs not yet freed */
    bool draining, drained, stopping;
    pthread_cond_t drained_cv;

    ureq *active;                /* curl thread only */
};

static void free_chunks(qchunk *q)
{
    while (q) {
        qchunk *next = q->next;
        natshttp_chunk_free(q->chunk);
        free(q);
        q = next;
    }
}

/* What is left once both holders let go. */
static void ureq_free(ureq *u)
{
    free_chunks(u->qhead);
    curl_slist_free_all(u->headers);
    natshttp_head_free(u->resp);
    free(u->pend);
    free(u->target);
    free(u);
}

/* up->mu held. True when the curl thread must be woken. */
static bool post_locked(natshttp_upstream *up, ureq *u, unsigned ev)
{
    if (!ev || u->finished)
        return false;
    u->events |= ev;
    if (u->linked)
        return false;
    u->linked = true;
    u->rnext = NULL;
    u->rprev = up->ready_tail;
    if (up->ready_tail)
        up->ready_tail->rnext = u;
    else
        up->ready_head = u;
    up->ready_tail = u;
    return true;
}

/* up->mu held. */
static void unlink_ready_locked(natshttp_upstream *up, ureq *u)
{
    if (!u->linked)
        return;
    if (u->rprev)
        u->rprev->rnext = u->rnext;
    else
        up->ready_head = u->rnext;
    if (u->rnext)
        u->rnext->rprev = u->rprev;
    else
        up->ready_tail = u->rprev;
    u->rnext = u->rprev = NULL;
    u->linked = false;
}

/* ---- building the upstream request (dispatch thread) ------------------------ */

static natshttp_status add_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return NATSHTTP_NOMEM;
    *list = l;
    return NATSHTTP_OK;
}

/* "Name: value", or "Name;" which is how curl is told to send an empty value. */
static natshttp_status add_header(struct curl_slist **list, const char *name, const char *value,
                                  const char *suffix)
{
    size_t n = strlen(name) + strlen(value) + strlen(suffix) + 4;
    char *line = malloc(n);
    if (!line)
        return NATSHTTP_NOMEM;
    if (*value || *suffix)
        snprintf(line, n, "%s: %s%s", name, value, suffix);
    else
        snprintf(line, n, "%s;", name);
    natshttp_status st = add_line(list, line);
    free(line);
    return st;
}

static natshttp_status build_request(natshttp_upstream *up, ureq *u, natshttp_txn *txn,
                                     const natshttp_head *req)
{
    const char *method = natshttp_head_method(req);
    const char *raw = natshttp_txn_raw_path(txn);
    const char *query = natshttp_head_query(req);
    natshttp_head *h = NULL;
    int64_t cl = -1;

    snprintf(u->method, sizeof u->method, "%s", method);
    u->up = up;
    u->txn = txn;
    u->is_head = strcmp(method, "HEAD") == 0;
    natshttp_status st = natshttp_head_content_length(req, &cl);
    if (st == NATSHTTP_OK)
        st = nh_head_clone(&h, req);
    if (st == NATSHTTP_OK) {
        size_t n = strlen(up->base) + strlen(raw) + strlen(query) + 2;
        u->target = malloc(n);
        if (u->target)
            snprintf(u->target, n, "%s%s%s%s", up->base, raw, *query ? "?" : "", query);
        else
            st = NATSHTTP_NOMEM;
    }
    if (st == NATSHTTP_OK) {
        /* curl frames the body itself (Content-Length or chunked), and an
         * Expect would make it wait for a 100 that an upload never needs. */
        natshttp_head_strip_hop_by_hop(h);
        natshttp_head_remove(h, "Content-Length");
        natshttp_head_remove(h, "Expect");
        if (up->host)
            natshttp_head_remove(h, "Host");
    }
    long last_via = -1;
    for (long i = h ? natshttp_head_find(h, "Via", 0) : -1; i >= 0;
         i = natshttp_head_find(h, "Via", (size_t)i + 1))
        last_via = i;
    for (size_t i = 0; st == NATSHTTP_OK && i < natshttp_head_count(h); i++) {
        const char *n, *v;
        natshttp_head_at(h, i, &n, &v);
        st = add_header(&u->headers, n, v, (long)i == last_via ? (*v ? ", " VIA_ENTRY : VIA_ENTRY) : "");
    }
    if (st == NATSHTTP_OK && last_via < 0)
        st = add_header(&u->headers, "Via", VIA_ENTRY, "");
    if (st == NATSHTTP_OK && up->host)
        st = add_header(&u->headers, "Host", up->host, "");
    /* "Name:" removes a header curl would add by itself. */
    if (st == NATSHTTP_OK && !natshttp_head_get(h, "Accept"))
        st = add_line(&u->headers, "Accept:");
    if (st == NATSHTTP_OK)
        st = add_line(&u->headers, "Expect:");
    natshttp_head_free(h);

    if (u->is_head)
        u->body = BODY_NONE;   /* curl sends HEAD without a body; chunks are dropped */
    else if (cl >= 0) {
        u->body = BODY_SIZED;
        u->body_len = cl;
    } else {
        u->body = BODY_UNKNOWN;
    }
    return st;
}

/* ---- server callbacks (dispatch thread) ------------------------------------------ */

static void wake(natshttp_upstream *up, bool needed)
{
    if (needed)
        curl_multi_wakeup(up->multi);
}

static void on_request(void *ctx, natshttp_txn *txn, const natshttp_head *req)
{
    natshttp_upstream *up = ctx;
    if (strcmp(natshttp_head_method(req), "CONNECT") == 0) {
        static const char text[] = "natshttp upstream: CONNECT cannot be forwarded\n";
        natshttp_txn_reply(txn, 501, "text/plain; charset=utf-8", text, sizeof text - 1);
        return;
    }
    ureq *u = calloc(1, sizeof *u);
    natshttp_status st = u ? build_request(up, u, txn, req) : NATSHTTP_NOMEM;
    bool woke = false;
    if (st == NATSHTTP_OK) {
        pthread_mutex_lock(&up->mu);
        natshttp_txn_set_data(txn, u);
        up->live++;
        if (u->body != BODY_UNKNOWN)
            woke = post_locked(up, u, EV_START);
        pthread_mutex_unlock(&up->mu);
    }
    if (st != NATSHTTP_OK) {
        int code = st == NATSHTTP_BAD_REQUEST ? 400 : natshttp_status_http(st);
        NH_LOG_W(COMP, "%s %s: cannot build the upstream request: %s",
                 natshttp_head_method(req), natshttp_txn_raw_path(txn), natshttp_status_text(st));
        if (u)
            ureq_free(u);
        char text[128];
        int n = snprintf(text, sizeof text, "natshttp upstream: %s\n", natshttp_status_text(st));
        natshttp_txn_reply(txn, code, "text/plain; charset=utf-8", text, (size_t)n);
        return;
    }
    wake(up, woke);
}

static void on_body(void *ctx, natshttp_txn *txn, natshttp_chunk *chunk)
{
    natshttp_upstream *up = ctx;
    qchunk *q = malloc(sizeof *q);
    bool woke = false;
    pthread_mutex_lock(&up->mu);
    ureq *u = natshttp_txn_data(txn);
    if (!q || !u || u->finished || u->body == BODY_NONE) {
        if (u && !q && !u->finished)
            woke = post_locked(up, u, EV_ABORT);   /* a hole in the body: give up on it */
        pthread_mutex_unlock(&up->mu);
        free(q);
        natshttp_chunk_free(chunk);
        wake(up, woke);
        return;
    }
    unsigned ev = 0;
    if (u->body == BODY_UNKNOWN) {
        u->body = BODY_CHUNKED;
        ev |= EV_START;
    }
    q->chunk = chunk;
    q->next = NULL;
    if (u->qtail)
        u->qtail->next = q;
    else
        u->qhead = q;
    u->qtail = q;
    if (u->send_paused)
        ev |= EV_BODY;
    woke = post_locked(up, u, ev);
    pthread_mutex_unlock(&up->mu);
    wake(up, woke);
}

static void on_body_end(void *ctx, natshttp_txn *txn, natshttp_status status)
{
    natshttp_upstream *up = ctx;
    qchunk *drop = NULL;
    bool woke = false, release = false;
    pthread_mutex_lock(&up->mu);
    ureq *u = natshttp_txn_data(txn);
    if (!u) {
        pthread_mutex_unlock(&up->mu);
        return;
    }
    u->body_done = true;
    u->body_status = status;
    if (u->finished) {
        release = true;
        natshttp_txn_set_data(txn, NULL);
        up->live--;
        drop = u->qhead;
        u->qhead = u->qtail = NULL;
    } else {
        unsigned ev = 0;
        if (u->body == BODY_UNKNOWN) {
            u->body = BODY_NONE;
            ev |= EV_START;
        }
        if (status != NATSHTTP_OK)
            ev |= EV_ABORT;
        else if (u->send_paused)
            ev |= EV_BODY;   /* the read callback can now say "end of body" */
        woke = post_locked(up, u, ev);
    }
    pthread_mutex_unlock(&up->mu);
    free_chunks(drop);
    if (release)
        ureq_free(u);
    wake(up, woke);
}

static void on_writable(void *ctx, natshttp_txn *txn)
{
    natshttp_upstream *up = ctx;
    pthread_mutex_lock(&up->mu);
    ureq *u = natshttp_txn_data(txn);
    bool woke = u && post_locked(up, u, EV_WRITABLE);
    pthread_mutex_unlock(&up->mu);
    wake(up, woke);
}

/* ---- curl callbacks (curl thread) ----------------------------------------------- */

/* Gives up on the transfer from inside a curl callback; before the response
 * head, the client gets `status`. Returning 0 then makes curl abort. */
static size_t fail_cb(ureq *u, int status, const char *text)
{
    if (!u->failed) {
        u->failed = true;
        u->fail_status = status;
        u->fail_text = text;
    }
    return 0;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    ureq *u = ud;
    natshttp_upstream *up = u->up;
    size_t max = size * nitems, n = 0, ret;
    qchunk *done = NULL, **done_tail = &done;

    pthread_mutex_lock(&up->mu);
    while (n < max && u->qhead) {
        qchunk *q = u->qhead;
        size_t avail = natshttp_chunk_len(q->chunk) - u->qoff;
        size_t take = avail < max - n ? avail : max - n;
        memcpy(buf + n, natshttp_chunk_data(q->chunk) + u->qoff, take);
        n += take;
        u->qoff += take;
        if (u->qoff == natshttp_chunk_len(q->chunk)) {
            /* Copied: let it go now, which is what grants the client more credit. */
            u->qhead = q->next;
            if (!u->qhead)
                u->qtail = NULL;
            u->qoff = 0;
            q->next = NULL;
            *done_tail = q;
            done_tail = &q->next;
        }
    }
    if (n > 0)
        ret = n;
    else if (u->body_done && u->body_status == NATSHTTP_OK)
        ret = 0;
    else if (u->body_done)
        ret = CURL_READFUNC_ABORT;
    else {
        u->send_paused = true;
        ret = CURL_READFUNC_PAUSE;
    }
    pthread_mutex_unlock(&up->mu);
    free_chunks(done);

    if (ret == CURL_READFUNC_ABORT)
        fail_cb(u, 502, "the request body broke off");
    u->waiting_body = ret == CURL_READFUNC_PAUSE;
    if (!u->waiting_body)
        u->wait_since = nh_now_ms();
    return ret;
}

/* Answers the txn with the upstream's head. */
static bool respond(ureq *u)
{
    natshttp_status st = natshttp_txn_respond(u->txn, u->resp, u->resp_cl);
    u->responded = true;
    if (st != NATSHTTP_OK) {
        fail_cb(u, 502, natshttp_status_text(st));
        return false;
    }
    return true;
}

/* The end of the final response head. A head without a body is answered at
 * once; one with a body goes out with the first body byte, so that an upstream
 * dying before any byte still becomes a clean 502. */
static bool head_end(ureq *u)
{
    natshttp_head *h = u->resp;
    int64_t cl = -1;
    u->head_done = true;
    if (natshttp_head_content_length(h, &cl) != NATSHTTP_OK) {
        fail_cb(u, 502, "conflicting or malformed Content-Length from the upstream");
        return false;
    }
    if (natshttp_head_is_chunked(h))
        cl = -1;   /* chunked wins over a Content-Length next to it */
    u->no_body = u->is_head || u->status == 204 || u->status == 304;
    if (u->status == 204)
        cl = -1;
    u->resp_cl = cl;
    natshttp_head_strip_hop_by_hop(h);
    natshttp_head_remove(h, "Content-Length");
    return (u->no_body || cl == 0) ? respond(u) : true;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    ureq *u = ud;
    size_t total = size * nitems, len = total;
    if (u->head_done || u->failed)
        return u->failed ? 0 : total;   /* after the head: trailers, which v1 cannot carry */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;

    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* "HTTP/1.1 200 OK": a new head (after a 1xx there is another). */
        const char *p = memchr(buf, ' ', len), *end = buf + len;
        int status = 0;
        if (p && end - p >= 4 && p[1] >= '1' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
            p[3] >= '0' && p[3] <= '9' && (end - p == 4 || p[4] == ' '))
            status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
        if (!status)
            return fail_cb(u, 502, "malformed status line from the upstream");
        const char *reason = end - p > 5 ? p + 5 : end;
        char text[256];
        snprintf(text, sizeof text, "%.*s", (int)(end - reason), reason);
        natshttp_head_free(u->resp);
        u->resp = NULL;
        if (natshttp_head_new(&u->resp, u->up->max_head) != NATSHTTP_OK ||
            natshttp_head_set_status(u->resp, status, text) != NATSHTTP_OK)
            return fail_cb(u, 500, "out of memory");
        u->status = status;
        return total;
    }
    if (!u->resp)
        return fail_cb(u, 502, "header line before the status line");
    if (len == 0) {
        if (u->status < 200) {
            natshttp_head_free(u->resp);   /* interim (1xx): the final head follows */
            u->resp = NULL;
            return total;
        }
        return head_end(u) ? total : 0;
    }
    if (buf[0] == ' ' || buf[0] == '\t')
        return fail_cb(u, 502, "obsolete line folding in the upstream's head");
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return fail_cb(u, 502, "malformed header line from the upstream");
    const char *v = colon + 1, *vend = buf + len;
    while (v < vend && (*v == ' ' || *v == '\t'))
        v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    natshttp_status st = natshttp_head_addn(u->resp, buf, (size_t)(colon - buf), v, (size_t)(vend - v));
    if (st == NATSHTTP_HEAD_TOO_LARGE)
        return fail_cb(u, 502, "response head from the upstream too large");
    if (st != NATSHTTP_OK)
        return fail_cb(u, 502, "malformed header line from the upstream");
    return total;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    ureq *u = ud;
    size_t len = size * nmemb, taken = 0;
    if (u->failed || !u->head_done)
        return fail_cb(u, 502, "body before the response head");
    if (u->no_body)
        return len;
    if (!u->responded && !respond(u))
        return 0;
    if (u->pend_off < u->pend_len) {
        /* Still holding untaken bytes: curl keeps these and delivers them again. */
        u->recv_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    natshttp_status st = natshttp_txn_write(u->txn, data, len, &taken);
    u->body_bytes += (int64_t)taken;
    if (st == NATSHTTP_OK || (st == NATSHTTP_AGAIN && taken == len))
        return len;
    if (st == NATSHTTP_AGAIN) {
        /* Keep what is left; the next delivery pauses curl until on_writable. */
        u->pend = malloc(len - taken);
        if (!u->pend)
            return fail_cb(u, 502, "out of memory");
        memcpy(u->pend, data + taken, len - taken);
        u->pend_len = len - taken;
        u->pend_off = 0;
        return len;
    }
    return fail_cb(u, 502, st == NATSHTTP_CANCELLED ? "the client went away"
                                                    : natshttp_status_text(st));
}

/* ---- the curl thread ------------------------------------------------------------ */

static void active_link(natshttp_upstream *up, ureq *u)
{
    u->aprev = NULL;
    u->anext = up->active;
    if (up->active)
        up->active->aprev = u;
    up->active = u;
    u->active = true;
}

static void active_unlink(natshttp_upstream *up, ureq *u)
{
    if (!u->active)
        return;
    if (u->aprev)
        u->aprev->anext = u->anext;
    else
        up->active = u->anext;
    if (u->anext)
        u->anext->aprev = u->aprev;
    u->anext = u->aprev = NULL;
    u->active = false;
}

static void detach_easy(natshttp_upstream *up, ureq *u)
{
    if (!u->easy)
        return;
    curl_multi_remove_handle(up->multi, u->easy);
    curl_easy_cleanup(u->easy);
    u->easy = NULL;
}

/* The curl thread lets go of u; u may be freed by the time this returns. */
static void release(natshttp_upstream *up, ureq *u)
{
    detach_easy(up, u);
    active_unlink(up, u);
    pthread_mutex_lock(&up->mu);
    u->finished = true;
    unlink_ready_locked(up, u);
    qchunk *drop = u->qhead;
    u->qhead = u->qtail = NULL;
    bool last = u->body_done;
    if (last) {
        natshttp_txn_set_data(u->txn, NULL);
        up->live--;
    }
    pthread_mutex_unlock(&up->mu);
    free_chunks(drop);
    if (last)
        ureq_free(u);
}

/* Ends a request, whatever state it is in: exactly one log line when it
 * failed, then the txn's end (an error answer if nothing was sent yet). */
static void end_request(natshttp_upstream *up, ureq *u, CURLcode code, const char *why)
{
    natshttp_txn *txn = u->txn;
    bool responded = u->responded;
    bool ok = code == CURLE_OK && !u->failed && !why && responded;
    int status = 502;
    const char *text = why ? why : u->fail_text;
    if (!ok) {
        if (u->fail_status)
            status = u->fail_status;
        else if (code == CURLE_OPERATION_TIMEDOUT)
            status = 504;
        if (!text)
            text = code == CURLE_OK ? "no response from the upstream"
                   : code == CURLE_OPERATION_TIMEDOUT ? "the upstream timed out"
                   : responded ? "the upstream broke off the response"
                   : u->head_done ? "the upstream broke off before the body"
                                  : "the upstream failed before responding";
        const char *detail = u->errbuf[0] ? u->errbuf : curl_easy_strerror(code);
        if (responded)
            NH_LOG_W(COMP, "%s %s: %s after %" PRId64 " body bytes (curl: %s)", u->method,
                     u->target, text, u->body_bytes, code == CURLE_OK ? "ok" : detail);
        else
            NH_LOG_W(COMP, "%s %s: %s, answering %d (curl: %s)", u->method, u->target, text,
                     status, code == CURLE_OK ? "ok" : detail);
    }
    release(up, u);
    if (responded) {
        natshttp_txn_finish(txn, ok);
    } else {
        char body[256];
        int n = snprintf(body, sizeof body, "natshttp upstream: %s\n", text);
        if (n < 0 || (size_t)n >= sizeof body)
            n = (int)sizeof body - 1;
        natshttp_txn_reply(txn, status, "text/plain; charset=utf-8", body, (size_t)n);
    }
}

#define SET(opt, val)                                                                       \
    do {                                                                                    \
        if (rc == CURLE_OK)                                                                 \
            rc = curl_easy_setopt(e, opt, val);                                             \
    } while (0)

static void start_transfer(natshttp_upstream *up, ureq *u)
{
    CURL *e = curl_easy_init();
    CURLcode rc = e ? CURLE_OK : CURLE_OUT_OF_MEMORY;
    body_kind body;
    int64_t body_len;
    pthread_mutex_lock(&up->mu);
    body = u->body;
    body_len = u->body_len;
    pthread_mutex_unlock(&up->mu);

    if (rc == CURLE_OK && body == BODY_CHUNKED &&
        add_line(&u->headers, "Transfer-Encoding: chunked") != NATSHTTP_OK)
        rc = CURLE_OUT_OF_MEMORY;
    /* The target goes out exactly as built (escapes untouched, dot segments
     * kept): the URL only names the origin. */
    SET(CURLOPT_URL, up->origin);
    SET(CURLOPT_REQUEST_TARGET, u->target);
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_HTTPHEADER, u->headers);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_PROXY, "");   /* never an http_proxy from the environment */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);   /* bytes pass through untouched */
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)up->timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)(up->timeout_ms >= 2000 ? up->timeout_ms / 1000 : 1));
    SET(CURLOPT_BUFFERSIZE, up->buffer_size);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, u);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, u);
    SET(CURLOPT_ERRORBUFFER, u->errbuf);
    SET(CURLOPT_PRIVATE, u);
    if (u->is_head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(u->method, "GET") != 0 || body != BODY_NONE) {
        SET(CURLOPT_CUSTOMREQUEST, u->method);
    }
    if (body == BODY_SIZED || body == BODY_CHUNKED) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, read_cb);
        SET(CURLOPT_READDATA, u);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)(body == BODY_SIZED ? body_len : -1));
    }
    if (rc == CURLE_OK && curl_multi_add_handle(up->multi, e) != CURLM_OK)
        rc = CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK) {
        curl_easy_cleanup(e);
        end_request(up, u, rc, "cannot start the upstream request");
        return;
    }
    u->easy = e;
    u->wait_since = nh_now_ms();
    active_link(up, u);
}

/* The txn may take bytes again: send what it left, then let curl go on. */
static void writable(natshttp_upstream *up, ureq *u)
{
    if (!u->responded) {
        /* Nothing was written yet, so this says the client went away: a
         * retry (of nothing) tells, and the upstream need not go on. */
        if (natshttp_txn_write(u->txn, NULL, 0, NULL) == NATSHTTP_CANCELLED) {
            fail_cb(u, 502, "the client went away");
            end_request(up, u, CURLE_ABORTED_BY_CALLBACK, NULL);
        }
        return;
    }
    if (u->pend_off < u->pend_len) {
        size_t taken = 0;
        natshttp_status st =
            natshttp_txn_write(u->txn, u->pend + u->pend_off, u->pend_len - u->pend_off, &taken);
        u->pend_off += taken;
        u->body_bytes += (int64_t)taken;
        if (st == NATSHTTP_AGAIN)
            return;
        if (st != NATSHTTP_OK) {
            fail_cb(u, 502, st == NATSHTTP_CANCELLED ? "the client went away"
                                                     : natshttp_status_text(st));
            end_request(up, u, u->done_code, NULL);
            return;
        }
        free(u->pend);
        u->pend = NULL;
        u->pend_len = u->pend_off = 0;
    }
    if (u->curl_done) {
        end_request(up, u, u->done_code, NULL);
    } else if (u->recv_paused && u->easy) {
        u->recv_paused = false;
        curl_easy_pause(u->easy, u->waiting_body ? CURLPAUSE_SEND : CURLPAUSE_CONT);
    }
}

static void handle_events(natshttp_upstream *up, ureq *u, unsigned ev)
{
    if (ev & EV_ABORT) {
        natshttp_status why;
        pthread_mutex_lock(&up->mu);
        why = u->body_status;
        pthread_mutex_unlock(&up->mu);
        char text[128];
        snprintf(text, sizeof text, "the request body broke off (%s)",
                 why == NATSHTTP_OK ? "out of memory" : natshttp_status_text(why));
        /* end_request logs before the text goes out of scope */
        u->fail_status = 502;
        end_request(up, u, CURLE_ABORTED_BY_CALLBACK, text);
        return;
    }
    if (ev & EV_START) {
        start_transfer(up, u);
        if (!u->active)
            return;   /* could not start: already ended */
    }
    if ((ev & EV_BODY) && u->easy && u->waiting_body) {
        u->waiting_body = false;
        u->wait_since = nh_now_ms();
        curl_easy_pause(u->easy, u->recv_paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
    }
    if (ev & EV_WRITABLE)
        writable(up, u);
}

static void abort_active(natshttp_upstream *up, const char *why)
{
    while (up->active)
        end_request(up, up->active, CURLE_ABORTED_BY_CALLBACK, why);
}

/* Takes the posted events one ureq at a time; false once stopping. */
static bool take_events(natshttp_upstream *up)
{
    for (;;) {
        pthread_mutex_lock(&up->mu);
        if (up->stopping) {
            pthread_mutex_unlock(&up->mu);
            return false;
        }
        if (up->draining && !up->drained) {
            /* Answer while the server can still carry answers (see _free). */
            pthread_mutex_unlock(&up->mu);
            abort_active(up, "shutting down");
            pthread_mutex_lock(&up->mu);
            up->drained = true;
            pthread_cond_signal(&up->drained_cv);
        }
        bool draining = up->draining;
        ureq *u = up->ready_head;
        if (!u) {
            pthread_mutex_unlock(&up->mu);
            return true;
        }
        unlink_ready_locked(up, u);
        unsigned ev = u->events;
        u->events = 0;
        if (ev & EV_BODY)
            u->send_paused = false;
        pthread_mutex_unlock(&up->mu);
        if (draining && !u->active) {
            u->fail_status = 503;
            end_request(up, u, CURLE_ABORTED_BY_CALLBACK, "shutting down");
            continue;
        }
        handle_events(up, u, ev);
    }
}

static void reap(natshttp_upstream *up)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result;
        ureq *u = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&u);
        if (!u)
            continue;
        u->done_code = code;
        if (code == CURLE_OK && !u->head_done)
            fail_cb(u, 502, "no response head from the upstream");
        else if (code == CURLE_OK && !u->failed && !u->responded)
            respond(u);   /* an empty body (chunked or ended by closing) */
        if (code == CURLE_OK && !u->failed && u->pend_off < u->pend_len) {
            /* Finished on the wire; the txn still has to take the rest. */
            detach_easy(up, u);
            u->curl_done = true;
            continue;
        }
        end_request(up, u, code, NULL);
    }
}

/* Requests whose head is overdue get 504. */
static void check_deadlines(natshttp_upstream *up, int64_t now)
{
    for (ureq *u = up->active, *next; u; u = next) {
        next = u->anext;
        if (u->head_done || !u->easy || u->waiting_body || now - u->wait_since <= up->timeout_ms)
            continue;
        u->fail_status = 504;
        char text[96];
        snprintf(text, sizeof text, "no response head within %" PRId64 " ms", up->timeout_ms);
        end_request(up, u, CURLE_OPERATION_TIMEDOUT, text);
    }
}

static void stop_all(natshttp_upstream *up)
{
    for (;;) {
        pthread_mutex_lock(&up->mu);
        ureq *u = up->ready_head;
        if (u)
            unlink_ready_locked(up, u);
        pthread_mutex_unlock(&up->mu);
        if (!u)
            break;
        if (!u->active)
            end_request(up, u, CURLE_ABORTED_BY_CALLBACK, "shutting down");
    }
    abort_active(up, "shutting down");
}

static void *curl_main(void *arg)
{
    natshttp_upstream *up = arg;
    int64_t last_scan = nh_now_ms();
    while (take_events(up)) {
        int running = 0;
        curl_multi_perform(up->multi, &running);
        reap(up);
        int64_t now = nh_now_ms();
        if (now - last_scan >= TICK_MS) {
            last_scan = now;
            check_deadlines(up, now);
        }
        /* curl_multi_poll returns earlier for curl's own timers and on wakeup. */
        curl_multi_poll(up->multi, NULL, 0, up->active ? TICK_MS : IDLE_POLL_MS, NULL);
    }
    stop_all(up);
    return NULL;
}

/* ---- public ------------------------------------------------------------------ */

/* Splits the --upstream URL into the origin curl connects to and a base path. */
static natshttp_status parse_url(natshttp_upstream *up, const char *url)
{
    CURLU *h = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    natshttp_status st = NATSHTTP_OK;
    if (!h)
        return NATSHTTP_NOMEM;
    if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        st = NATSHTTP_INVALID;
    curl_url_get(h, CURLUPART_PORT, &port, 0);
    curl_url_get(h, CURLUPART_QUERY, &query, 0);
    curl_url_get(h, CURLUPART_USER, &user, 0);
    if (st == NATSHTTP_OK &&
        ((strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) || !*host ||
         query || user || strchr(url, '#')))
        st = NATSHTTP_INVALID;
    if (st == NATSHTTP_OK) {
        size_t n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + 6;
        up->origin = malloc(n);
        size_t plen = strlen(path);
        while (plen > 0 && path[plen - 1] == '/')
            plen--;
        up->base = strndup(path, plen);
        if (!up->origin || !up->base)
            st = NATSHTTP_NOMEM;
        else
            snprintf(up->origin, n, "%s://%s%s%s/", scheme, host, port ? ":" : "",
                     port ? port : "");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(h);
    return st;
}

natshttp_status natshttp_upstream_new(natshttp_upstream **out, natsConnection *nc,
                                      const natshttp_upstream_options *opts)
{
    if (!out || !nc || !opts || !opts->url)
        return NATSHTTP_INVALID;
    natshttp_upstream *up = calloc(1, sizeof *up);
    if (!up)
        return NATSHTTP_NOMEM;
    pthread_mutex_init(&up->mu, NULL);
    pthread_cond_init(&up->drained_cv, NULL);
    up->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    up->max_conns = opts->max_conns > 0 ? opts->max_conns : DEFAULT_MAX_CONNS;
    up->buffer_size = opts->buffer_size ? (long)opts->buffer_size : DEFAULT_BUFFER;
    if (up->buffer_size < 1024)
        up->buffer_size = 1024;
    if (up->buffer_size > CURL_MAX_READ_SIZE)
        up->buffer_size = CURL_MAX_READ_SIZE;
    up->max_head = opts->server.max_head ? opts->server.max_head : NATSHTTP_DEFAULT_MAX_HEAD;

    natshttp_status st = NATSHTTP_OK;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        st = NATSHTTP_NOMEM;
    else
        up->curl_inited = true;
    if (st == NATSHTTP_OK) {
        st = parse_url(up, opts->url);
        if (st == NATSHTTP_INVALID)
            NH_LOG_E(COMP, "--upstream %s: not an http:// or https:// URL without query, "
                           "fragment or credentials", opts->url);
    }
    if (st == NATSHTTP_OK && opts->host && !(up->host = strdup(opts->host)))
        st = NATSHTTP_NOMEM;
    if (st == NATSHTTP_OK && !(up->multi = curl_multi_init()))
        st = NATSHTTP_NOMEM;
    if (st == NATSHTTP_OK) {
        curl_multi_setopt(up->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, up->max_conns);
        curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, up->max_conns);
        curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, up->max_conns);
        if (pthread_create(&up->thread, NULL, curl_main, up) != 0)
            st = NATSHTTP_NOMEM;
        else
            up->thread_started = true;
    }
    if (st == NATSHTTP_OK) {
        natshttp_server_callbacks cb = {.on_request = on_request,
                                        .on_body = on_body,
                                        .on_body_end = on_body_end,
                                        .on_writable = on_writable};
        st = natshttp_server_new(&up->srv, nc, &opts->server, &cb, up);
    }
    if (st != NATSHTTP_OK) {
        natshttp_upstream_free(up);
        return st;
    }
    *out = up;
    return NATSHTTP_OK;
}

void natshttp_upstream_free(natshttp_upstream *up)
{
    if (!up)
        return;
    /* First answer what is in flight (502) and what still comes (503): a v2
     * server cancels the txns it still holds when freed, after which nothing
     * sent for them reaches the client. */
    if (up->thread_started) {
        pthread_mutex_lock(&up->mu);
        up->draining = true;
        pthread_mutex_unlock(&up->mu);
        curl_multi_wakeup(up->multi);
        pthread_mutex_lock(&up->mu);
        while (!up->drained)
            pthread_cond_wait(&up->drained_cv, &up->mu);
        pthread_mutex_unlock(&up->mu);
    }
    /* No callback runs after this; every body has ended (CANCELLED if it was
     * still arriving), so every ureq left is posted or active. */
    natshttp_server_free(up->srv);
    if (up->thread_started) {
        pthread_mutex_lock(&up->mu);
        up->stopping = true;
        pthread_mutex_unlock(&up->mu);
        curl_multi_wakeup(up->multi);
        pthread_join(up->thread, NULL);
    }
    if (up->live != 0)
        NH_LOG_E(COMP, "%ld requests left over at shutdown", up->live);
    if (up->multi)
        curl_multi_cleanup(up->multi);
    if (up->curl_inited)
        curl_global_cleanup();
    pthread_cond_destroy(&up->drained_cv);
    pthread_mutex_destroy(&up->mu);
    free(up->origin);
    free(up->base);
    free(up->host);
    free(up);
}

natshttp_status natshttp_upstream_drain(natshttp_upstream *u, int64_t timeout_ms)
{
    return u ? natshttp_server_drain(u->srv, timeout_ms) : NATSHTTP_INVALID;
}
