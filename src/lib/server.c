/* server.c - the server role: requests from "<prefix>.>", responses to their
 * reply subjects.
 *
 * DESIGN. Two subscriptions: the request subject (in the queue group, when
 * one is set) and "<inbox>.*", this instance's private subject for chunked
 * request bodies: the handshake hands the client "<inbox>.<id>", so every
 * further chunk of that request reaches this instance and no other, without a
 * subscription per request. nats.c's delivery threads only push messages onto
 * the server's queue; its dispatch thread parses them, runs the application's
 * callbacks and checks body timeouts.
 *
 * A transaction (natshttp_txn) has two holders: the library, until the
 * request body has ended, and the application, until natshttp_txn_finish.
 * The response side may be driven from any thread; it uses only the
 * connection and the txn's own mutex, never the server, so a txn outlives
 * the server that made it. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "server"
#define TICK_MS 100

enum { CMD_STOP = 1 };

typedef enum resp_mode {
    R_NONE,      /* not answered yet */
    R_NOBODY,    /* head only: HEAD, 1xx, 204, 304 */
    R_SINGLE,    /* head and body in one message, body gathered first */
    R_CHUNKED,   /* head with the first piece, then pieces, then an empty end */
    R_DONE,
} resp_mode;

struct natshttp_txn {
    _Atomic int refs;
    uint64_t id;
    natsConnection *nc;
    char *reply;
    natshttp_head *req;
    char *raw_path, *path;
    size_t path_len;
    bool is_head;

    /* request body, dispatch thread only */
    bool body_open;
    int64_t body_last;

    /* response, under mu */
    pthread_mutex_t mu;
    resp_mode mode;
    natshttp_head *resp;
    int64_t resp_cl, sent;
    uint8_t *buf;
    size_t buf_len;
    bool head_sent;
    int64_t max_payload;
};

struct natshttp_server {
    natsConnection *nc;
    char *prefix;
    char inbox[64];
    natsSubscription *req_sub, *body_sub;
    nh_queue q;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    nh_table open;            /* txns whose body is still arriving; dispatch thread */
    uint64_t next_id;
    natshttp_server_callbacks cb;
    void *ctx;
    size_t max_head;
    int64_t body_timeout_ms;
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    int subs_done;
};

/* ---- transactions ------------------------------------------------------------ */

static void txn_unref(natshttp_txn *t)
{
    if (--t->refs > 0)
        return;
    natshttp_head_free(t->req);
    natshttp_head_free(t->resp);
    free(t->buf);
    free(t->reply);
    free(t->raw_path);
    free(t->path);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

const char *natshttp_txn_path(const natshttp_txn *t, size_t *len)
{
    if (len)
        *len = t->path_len;
    return t->path;
}

const char *natshttp_txn_raw_path(const natshttp_txn *t) { return t->raw_path; }

size_t natshttp_txn_chunk_size(const natshttp_txn *t)
{
    int64_t room = t->max_payload - (int64_t)strlen(t->reply) - NH_SUBJECT_ROOM;
    return room < 1 ? 1 : (size_t)room;
}

/* Publishes the response head with data; t->mu held. */
static natshttp_status publish_head(natshttp_txn *t, const void *data, size_t len)
{
    natsMsg *m = NULL;
    natshttp_status st = nh_wire_response_msg(&m, t->reply, t->resp, t->resp_cl,
                                              t->mode == R_CHUNKED);
    if (st == NATSHTTP_OK && len > 0) {
        /* nats.c copies data at creation: build the message again with it. */
        natsMsg *full = NULL;
        natsStatus ns = natsMsg_Create(&full, t->reply, NULL, data, (int)len);
        const char **keys = NULL;
        int nkeys = 0;
        if (ns == NATS_OK)
            ns = natsMsgHeader_Keys(m, &keys, &nkeys);
        for (int i = 0; ns == NATS_OK && i < nkeys; i++) {
            const char **vals = NULL;
            int nvals = 0;
            ns = natsMsgHeader_Values(m, keys[i], &vals, &nvals);
            for (int j = 0; ns == NATS_OK && j < nvals; j++)
                ns = natsMsgHeader_Add(full, keys[i], vals[j]);
            free((void *)vals);
        }
        free((void *)keys);
        natsMsg_Destroy(m);
        m = full;
        if (ns != NATS_OK)
            st = natshttp_status_from_nats(ns);
    }
    if (st == NATSHTTP_OK) {
        natsStatus ns = natsConnection_PublishMsg(t->nc, m);
        if (ns != NATS_OK) {
            NH_LOG_W(COMP, "request %" PRIu64 ": publishing the response head failed: %s", t->id,
                     natsStatus_GetText(ns));
            st = natshttp_status_from_nats(ns);
        }
    }
    natsMsg_Destroy(m);
    t->head_sent = true;
    return st;
}

static size_t head_wire_size(natshttp_txn *t)
{
    natsMsg *m = NULL;
    size_t size = 0;
    if (nh_wire_response_msg(&m, t->reply, t->resp, t->resp_cl, t->resp_cl < 0) == NATSHTTP_OK) {
        size = nh_wire_header_size(m) + strlen(t->reply);
        natsMsg_Destroy(m);
    }
    return size;
}

natshttp_status natshttp_txn_respond(natshttp_txn *t, natshttp_head *resp, int64_t cl)
{
    natshttp_status st = NATSHTTP_OK;
    pthread_mutex_lock(&t->mu);
    if (t->mode != R_NONE) {
        pthread_mutex_unlock(&t->mu);
        return NATSHTTP_INVALID;
    }
    st = nh_head_clone(&t->resp, resp);
    if (st != NATSHTTP_OK) {
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    int status = natshttp_head_status(resp);
    t->resp_cl = cl;
    if (t->is_head || status < 200 || status == 204 || status == 304) {
        if (status == 204 || status < 200)
            t->resp_cl = -1;
        t->mode = R_NOBODY;
        st = publish_head(t, NULL, 0);
    } else if (cl == 0) {
        t->mode = R_SINGLE;
        st = publish_head(t, NULL, 0);
    } else if (cl > 0 && (int64_t)head_wire_size(t) + cl + NH_SUBJECT_ROOM < t->max_payload) {
        t->mode = R_SINGLE;
        t->buf = malloc((size_t)cl);
        if (!t->buf)
            st = NATSHTTP_NOMEM;
    } else {
        t->mode = R_CHUNKED;
        if ((int64_t)head_wire_size(t) + NH_SUBJECT_ROOM >= t->max_payload)
            st = NATSHTTP_HEAD_TOO_LARGE;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

natshttp_status natshttp_txn_write(natshttp_txn *t, const void *data, size_t len, size_t *taken)
{
    natshttp_status st = NATSHTTP_OK;
    const uint8_t *p = data;
    size_t done = 0;
    pthread_mutex_lock(&t->mu);
    if (t->resp_cl >= 0 && t->mode != R_NOBODY && t->sent + (int64_t)len > t->resp_cl) {
        st = NATSHTTP_BODY_TOO_LARGE;
        goto out;
    }
    switch (t->mode) {
    case R_NOBODY:
        done = len;   /* a head-only response: the body is not sent */
        break;
    case R_SINGLE:
        if (!t->buf) {
            st = NATSHTTP_INVALID;
            break;
        }
        memcpy(t->buf + t->buf_len, p, len);
        t->buf_len += len;
        t->sent += (int64_t)len;
        done = len;
        if (t->sent == t->resp_cl)
            st = publish_head(t, t->buf, t->buf_len);
        break;
    case R_CHUNKED:
        while (done < len && st == NATSHTTP_OK) {
            size_t room = natshttp_txn_chunk_size(t);
            if (!t->head_sent) {
                size_t hs = head_wire_size(t);
                room = room > hs + 1 ? room - hs : 1;
            }
            size_t n = len - done < room ? len - done : room;
            if (!t->head_sent) {
                st = publish_head(t, p + done, n);
            } else {
                natsStatus ns = natsConnection_Publish(t->nc, t->reply, p + done, (int)n);
                st = natshttp_status_from_nats(ns);
            }
            if (st == NATSHTTP_OK) {
                t->sent += (int64_t)n;
                done += n;
            }
        }
        break;
    default:
        st = NATSHTTP_INVALID;
    }
out:
    pthread_mutex_unlock(&t->mu);
    if (taken)
        *taken = done;
    return st;
}

/* A bare error answer: t->mu held, nothing sent yet. */
static void publish_error(natshttp_txn *t, int status, const char *text)
{
    natshttp_head *h = NULL;
    if (natshttp_head_new(&h, 0) != NATSHTTP_OK)
        return;
    natshttp_head_set_status(h, status, NULL);
    natshttp_head_add(h, "Content-Type", "text/plain; charset=utf-8");
    natshttp_head_free(t->resp);
    t->resp = h;
    t->resp_cl = (int64_t)strlen(text);
    t->mode = R_SINGLE;
    publish_head(t, text, strlen(text));
}

void natshttp_txn_finish(natshttp_txn *t, bool ok)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    switch (t->mode) {
    case R_NONE:
        publish_error(t, ok ? 500 : 502, ok ? "the server sent no response\n"
                                            : "the server failed before responding\n");
        break;
    case R_SINGLE:
        if (!t->head_sent) {
            /* Short of Content-Length: the peer sees the mismatch and fails it. */
            publish_head(t, t->buf, t->buf_len);
        }
        break;
    case R_CHUNKED:
        if (!t->head_sent) {
            if (ok || t->resp_cl > 0)
                publish_head(t, NULL, 0);   /* empty body, or visibly short of its length */
            else
                publish_error(t, 502, "the server failed before the body\n");
        } else if (ok && (t->resp_cl < 0 || t->sent == t->resp_cl)) {
            natsConnection_Publish(t->nc, t->reply, NULL, 0);
        } else {
            /* v1 has no abort message: the client sees the body stop (and a
             * length mismatch when it knows the length). */
            NH_LOG_I(COMP, "request %" PRIu64 ": response aborted after %" PRId64 " bytes", t->id,
                     t->sent);
        }
        break;
    default:
        break;
    }
    t->mode = R_DONE;
    pthread_mutex_unlock(&t->mu);
    txn_unref(t);
}

natshttp_status natshttp_txn_reply(natshttp_txn *t, int status, const char *content_type,
                                   const void *body, size_t len)
{
    natshttp_head *h = NULL;
    natshttp_status st = natshttp_head_new(&h, 0);
    if (st == NATSHTTP_OK)
        st = natshttp_head_set_status(h, status, NULL);
    if (st == NATSHTTP_OK && content_type)
        st = natshttp_head_add(h, "Content-Type", content_type);
    if (st == NATSHTTP_OK)
        st = natshttp_txn_respond(t, h, (int64_t)len);
    if (st == NATSHTTP_OK && len > 0)
        st = natshttp_txn_write(t, body, len, NULL);
    natshttp_head_free(h);
    natshttp_txn_finish(t, st == NATSHTTP_OK);
    return st;
}

/* ---- dispatch thread ------------------------------------------------------------ */

static void body_end(natshttp_server *s, natshttp_txn *t, natshttp_status st)
{
    if (t->body_open) {
        t->body_open = false;
        nh_table_del(&s->open, t->id);
    }
    if (s->cb.on_body_end)
        s->cb.on_body_end(s->ctx, t, st);
    txn_unref(t);
}

static void body_piece(natshttp_server *s, natshttp_txn *t, natsMsg *msg)
{
    if (natsMsg_GetDataLength(msg) == 0 || !s->cb.on_body) {
        natsMsg_Destroy(msg);
        return;
    }
    natshttp_chunk *ch = nh_chunk_from_msg(msg);
    if (!ch) {
        natsMsg_Destroy(msg);
        return;
    }
    s->cb.on_body(s->ctx, t, ch);
}

static void handshake(natshttp_server *s, natsMsg *msg, uint64_t id)
{
    char subj[96];
    snprintf(subj, sizeof subj, "%s.%" PRIu64, s->inbox, id);
    natsConnection_PublishRequest(s->nc, natsMsg_GetReply(msg), subj, NULL, 0);
}

/* Answers a request that could not be parsed, straight from the dispatch thread. */
static void reject(natshttp_server *s, natsMsg *msg, natshttp_status why)
{
    const char *reply = natsMsg_GetReply(msg);
    int status = natshttp_status_http(why);
    if (why == NATSHTTP_BAD_MESSAGE || why == NATSHTTP_INVALID)
        status = 400;
    NH_LOG_W(COMP, "rejected request on %s: %s (%d)", natsMsg_GetSubject(msg),
             natshttp_status_text(why), status);
    if (!reply || !*reply)
        return;
    bool chunked = false;
    if (nh_wire_request_is_chunked(msg, natsConnection_GetMaxPayload(s->nc), &chunked) ==
            NATSHTTP_OK &&
        chunked)
        handshake(s, msg, 0);   /* a v1 client waits for it; id 0 drops its chunks */
    natshttp_txn tmp = {.nc = s->nc, .reply = (char *)reply, .mode = R_NONE};
    tmp.max_payload = natsConnection_GetMaxPayload(s->nc);
    pthread_mutex_init(&tmp.mu, NULL);
    char text[160];
    snprintf(text, sizeof text, "natshttp: %s\n", natshttp_status_text(why));
    publish_error(&tmp, status, text);
    natshttp_head_free(tmp.resp);
    pthread_mutex_destroy(&tmp.mu);
}

static void on_request(natshttp_server *s, natsMsg *msg)
{
    const char *reply = natsMsg_GetReply(msg);
    if (!reply || !*reply) {
        NH_LOG_W(COMP, "request on %s has no reply subject; dropped", natsMsg_GetSubject(msg));
        natsMsg_Destroy(msg);
        return;
    }
    natshttp_txn *t = calloc(1, sizeof *t);
    natshttp_status st = t ? natshttp_head_new(&t->req, s->max_head) : NATSHTTP_NOMEM;
    if (st == NATSHTTP_OK) {
        pthread_mutex_init(&t->mu, NULL);
        t->refs = 2;
        t->nc = s->nc;
        t->id = ++s->next_id;
        t->resp_cl = -1;
        t->max_payload = natsConnection_GetMaxPayload(s->nc);
        t->reply = strdup(reply);
        st = t->reply ? nh_wire_parse_request(msg, s->prefix, t->req, &t->raw_path, &t->path,
                                              &t->path_len)
                      : NATSHTTP_NOMEM;
    }
    bool chunked = false;
    if (st == NATSHTTP_OK)
        st = nh_wire_request_is_chunked(msg, t->max_payload, &chunked);
    if (st != NATSHTTP_OK) {
        reject(s, msg, st);
        natsMsg_Destroy(msg);
        if (t) {
            if (t->req) {
                t->refs = 1;
                txn_unref(t);
            } else {
                free(t);
            }
        }
        return;
    }
    t->is_head = strcmp(natshttp_head_method(t->req), "HEAD") == 0;
    NH_LOG_D(COMP, "request %" PRIu64 ": %s %s", t->id, natshttp_head_method(t->req), t->raw_path);

    bool more = chunked && natsMsg_GetDataLength(msg) > 0;
    if (chunked) {
        handshake(s, msg, more ? t->id : 0);
        if (more) {
            t->body_open = true;
            t->body_last = nh_now_ms();
            if (nh_table_put(&s->open, t->id, t) != 0) {
                t->body_open = false;
                more = false;
            }
        }
    }
    if (s->cb.on_request)
        s->cb.on_request(s->ctx, t, t->req);
    else
        natshttp_txn_reply(t, 501, "text/plain", "no handler\n", 11);
    body_piece(s, t, msg);
    if (!more)
        body_end(s, t, NATSHTTP_OK);
}

static void on_body_msg(natshttp_server *s, natsMsg *msg)
{
    natshttp_txn *t = nh_table_get(&s->open, nh_subject_id(natsMsg_GetSubject(msg)));
    if (!t) {
        natsMsg_Destroy(msg);
        return;
    }
    t->body_last = nh_now_ms();
    if (natsMsg_GetDataLength(msg) == 0) {
        natsMsg_Destroy(msg);
        body_end(s, t, NATSHTTP_OK);
    } else {
        body_piece(s, t, msg);
    }
}

static void check_timeouts(natshttp_server *s, int64_t now)
{
    for (size_t i = 0; i < s->open.cap; i++) {
        natshttp_txn *t = s->open.ids[i] ? s->open.slots[i] : NULL;
        if (t && now - t->body_last > s->body_timeout_ms) {
            NH_LOG_W(COMP, "request %" PRIu64 ": request body stalled; aborted", t->id);
            body_end(s, t, NATSHTTP_TRUNCATED);
            i = (size_t)-1;   /* the table moved entries: rescan */
        }
    }
}

static void *dispatch_main(void *arg)
{
    natshttp_server *s = arg;
    size_t plen = strlen(s->inbox);
    int64_t last_scan = nh_now_ms();
    for (;;) {
        void *item = nh_queue_pop(&s->q, TICK_MS);
        if (item && NH_IS_CMD(item)) {
            free(NH_CMD_PTR(item));
            break;
        }
        if (item) {
            natsMsg *msg = item;
            const char *subj = natsMsg_GetSubject(msg);
            if (strncmp(subj, s->inbox, plen) == 0 && subj[plen] == '.')
                on_body_msg(s, msg);
            else
                on_request(s, msg);
        }
        int64_t now = nh_now_ms();
        if (now - last_scan >= TICK_MS) {
            last_scan = now;
            check_timeouts(s, now);
        }
    }
    return NULL;
}

static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    natshttp_server *s = closure;
    if (nh_queue_push(&s->q, msg) != 0)
        natsMsg_Destroy(msg);
}

static void on_sub_complete(void *closure)
{
    natshttp_server *s = closure;
    pthread_mutex_lock(&s->done_mu);
    s->subs_done++;
    pthread_cond_signal(&s->done_cv);
    pthread_mutex_unlock(&s->done_mu);
}

/* ---- public ------------------------------------------------------------------ */

natshttp_status natshttp_server_new(natshttp_server **out, natsConnection *nc,
                                    const natshttp_server_options *opts,
                                    const natshttp_server_callbacks *cb, void *ctx)
{
    if (!out || !nc || !opts || !opts->subject || !*opts->subject || !cb)
        return NATSHTTP_INVALID;
    natshttp_server *s = calloc(1, sizeof *s);
    if (!s)
        return NATSHTTP_NOMEM;
    s->nc = nc;
    s->cb = *cb;
    s->ctx = ctx;
    s->max_head = opts->max_head ? opts->max_head : NATSHTTP_DEFAULT_MAX_HEAD;
    s->body_timeout_ms = opts->body_timeout_ms > 0 ? opts->body_timeout_ms : 30000;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->done_mu, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    s->prefix = strdup(opts->subject);
    if (!s->prefix || nh_queue_init(&s->q) != 0) {
        free(s->prefix);
        free(s);
        return NATSHTTP_NOMEM;
    }

    natsInbox *inbox = NULL;
    char subj[NH_MAX_SUBJECT];
    natsStatus ns = natsInbox_Create(&inbox);
    if (ns == NATS_OK) {
        snprintf(s->inbox, sizeof s->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(subj, sizeof subj, "%s.*", s->inbox);
        ns = natsConnection_Subscribe(&s->body_sub, nc, subj, on_nats_msg, s);
    }
    if (ns == NATS_OK)
        ns = natsSubscription_SetOnCompleteCB(s->body_sub, on_sub_complete, s);
    if (ns == NATS_OK)
        ns = natsSubscription_SetPendingLimits(s->body_sub, -1, -1);
    if (ns == NATS_OK) {
        snprintf(subj, sizeof subj, "%s.>", s->prefix);
        if (opts->group && *opts->group)
            ns = natsConnection_QueueSubscribe(&s->req_sub, nc, subj, opts->group, on_nats_msg, s);
        else
            ns = natsConnection_Subscribe(&s->req_sub, nc, subj, on_nats_msg, s);
    }
    if (ns == NATS_OK)
        ns = natsSubscription_SetOnCompleteCB(s->req_sub, on_sub_complete, s);
    if (ns == NATS_OK)
        ns = natsSubscription_SetPendingLimits(s->req_sub, -1, -1);
    if (ns == NATS_OK)
        ns = natsConnection_Flush(nc);
    natshttp_status st = natshttp_status_from_nats(ns);
    if (ns != NATS_OK)
        NH_LOG_E(COMP, "subscribing on %s failed: %s", opts->subject, natsStatus_GetText(ns));
    if (st == NATSHTTP_OK && pthread_create(&s->thread, NULL, dispatch_main, s) != 0)
        st = NATSHTTP_NOMEM;
    if (st != NATSHTTP_OK) {
        natshttp_server_free(s);
        return st;
    }
    s->thread_started = true;
    *out = s;
    return NATSHTTP_OK;
}

void natshttp_server_free(natshttp_server *s)
{
    if (!s)
        return;
    int expect = 0;
    if (s->req_sub && natsSubscription_Unsubscribe(s->req_sub) == NATS_OK)
        expect++;
    if (s->body_sub && natsSubscription_Unsubscribe(s->body_sub) == NATS_OK)
        expect++;
    pthread_mutex_lock(&s->done_mu);
    while (s->subs_done < expect)
        pthread_cond_wait(&s->done_cv, &s->done_mu);
    pthread_mutex_unlock(&s->done_mu);
    natsSubscription_Destroy(s->req_sub);
    natsSubscription_Destroy(s->body_sub);
    if (s->thread_started) {
        nh_cmd *cmd = calloc(1, sizeof *cmd);
        if (cmd && nh_queue_push(&s->q, NH_CMD_TAG(cmd)) == 0)
            pthread_join(s->thread, NULL);
        else
            free(cmd);
    }
    void *item;
    while ((item = nh_queue_pop(&s->q, 0)) != NULL) {
        if (NH_IS_CMD(item))
            free(NH_CMD_PTR(item));
        else
            natsMsg_Destroy(item);
    }
    for (size_t i = 0; i < s->open.cap; i++) {
        natshttp_txn *t = s->open.ids[i] ? s->open.slots[i] : NULL;
        if (t) {
            body_end(s, t, NATSHTTP_CANCELLED);
            i = (size_t)-1;
        }
    }
    nh_table_free(&s->open);
    nh_queue_destroy(&s->q);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->done_mu);
    pthread_cond_destroy(&s->done_cv);
    free(s->prefix);
    free(s);
}
