/* client.c - the client role: one HTTP request out as NATS messages, its
 * response back.
 *
 * DESIGN. A client owns one subscription, "<inbox>.*", and every call gets
 * the reply subject "<inbox>.<id>", so the number of subscriptions does not
 * grow with load. nats.c's delivery thread only pushes each message onto the
 * client's queue; the client's dispatch thread pops it, finds the call by id
 * and runs the call's receive state machine and callbacks. Timeouts are
 * checked by the same thread between messages, so all callbacks of a client
 * run on one thread.
 *
 * The sending side (first message, body chunks) runs on the caller's thread,
 * under the call's mutex: it only needs the handshake subject, which the
 * dispatch thread sets under the same mutex. Neither thread ever calls back
 * into the application while holding a lock of the library. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "client"
#define TICK_MS 50

enum { CMD_CANCEL = 1, CMD_STOP };

typedef enum tx_state {
    TX_NONE,       /* no body: the first message went out at start */
    TX_COLLECT,    /* the body fits in one message: gathering it */
    TX_FIRST,      /* chunked: the first message waits for the first bytes */
    TX_HANDSHAKE,  /* chunked: waiting for the server's private subject */
    TX_STREAM,     /* chunked: sending to the private subject */
    TX_DONE,
} tx_state;

typedef enum rx_state { RX_WAIT, RX_BODY, RX_DONE } rx_state;

struct natshttp_call {
    natshttp_client *c;
    uint64_t id;
    char reply[96];
    natshttp_call_callbacks cb;
    void *ctx;

    /* sending side, under mu */
    pthread_mutex_t mu;
    tx_state tx;
    natshttp_head *req;      /* kept until the first message is out */
    int64_t body_len;        /* -1 none, -2 unknown */
    uint8_t *buf;            /* TX_COLLECT */
    size_t buf_len;
    char *chunk_subject;
    bool pending_end, want_writable;
    int64_t max_payload;

    /* receiving side, dispatch thread only */
    _Atomic int64_t deadline; /* first response due; 0 = not yet published */
    rx_state rx;
    natshttp_head *resp;
    bool resp_no_body, is_head;
    int64_t resp_cl, received, last_rx;
};

struct natshttp_client {
    natsConnection *nc;
    char *prefix;
    char inbox[64];
    natsSubscription *sub;
    nh_queue q;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;      /* guards calls and next_id */
    nh_table calls;
    uint64_t next_id;
    int64_t timeout_ms;
    size_t max_head;
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    bool sub_done;
};

/* ---- sending side --------------------------------------------------------- */

static int64_t payload_room(const natshttp_call *call, size_t subject_len)
{
    int64_t room = call->max_payload - (int64_t)subject_len - NH_SUBJECT_ROOM;
    return room < 1 ? 1 : room;
}

/* Publishes the first message with data; call->mu held. */
static natshttp_status publish_first(natshttp_call *call, bool chunked, const void *data,
                                     size_t len)
{
    natsMsg *m = NULL;
    natshttp_status st = nh_wire_request_msg(&m, call->c->prefix, call->req, call->reply,
                                             chunked, data, len);
    if (st != NATSHTTP_OK)
        return st;
    /* Arm the deadline before the message can be answered. */
    call->deadline = nh_now_ms() + call->c->timeout_ms;
    natsStatus ns = natsConnection_PublishMsg(call->c->nc, m);
    natsMsg_Destroy(m);
    natshttp_head_free(call->req);
    call->req = NULL;
    if (ns != NATS_OK) {
        NH_LOG_W(COMP, "publish of request %" PRIu64 " failed: %s", call->id,
                 natsStatus_GetText(ns));
        return natshttp_status_from_nats(ns);
    }
    return NATSHTTP_OK;
}

static natshttp_status publish_chunk(natshttp_call *call, const void *data, size_t len)
{
    natsStatus ns = natsConnection_Publish(call->c->nc, call->chunk_subject, data, (int)len);
    return natshttp_status_from_nats(ns);
}

static size_t first_room(natshttp_call *call)
{
    natsMsg *m = NULL;
    size_t hdr = 0;
    if (nh_wire_request_msg(&m, call->c->prefix, call->req, call->reply, true, NULL, 0) ==
        NATSHTTP_OK) {
        hdr = nh_wire_header_size(m) + strlen(natsMsg_GetSubject(m));
        natsMsg_Destroy(m);
    }
    int64_t room = payload_room(call, hdr + strlen(call->reply));
    return (size_t)room;
}

natshttp_status natshttp_call_write(natshttp_call *call, const void *data, size_t len,
                                    size_t *taken)
{
    natshttp_status st = NATSHTTP_OK;
    const uint8_t *p = data;
    size_t total = len;
    pthread_mutex_lock(&call->mu);
    while (len > 0 && st == NATSHTTP_OK) {
        switch (call->tx) {
        case TX_COLLECT:
            if ((int64_t)(call->buf_len + len) > call->body_len) {
                st = NATSHTTP_BODY_TOO_LARGE;
                break;
            }
            memcpy(call->buf + call->buf_len, p, len);
            call->buf_len += len;
            len = 0;
            break;
        case TX_FIRST: {
            size_t n = first_room(call);
            if (n > len)
                n = len;
            st = publish_first(call, call->body_len == -2, p, n);
            p += n;
            len -= n;
            call->tx = TX_HANDSHAKE;
            break;
        }
        case TX_HANDSHAKE:
            call->want_writable = true;
            st = NATSHTTP_AGAIN;
            break;
        case TX_STREAM: {
            size_t n = (size_t)payload_room(call, strlen(call->chunk_subject));
            if (n > len)
                n = len;
            st = publish_chunk(call, p, n);
            p += n;
            len -= n;
            break;
        }
        default:
            st = NATSHTTP_CLOSED;
        }
    }
    pthread_mutex_unlock(&call->mu);
    if (taken)
        *taken = total - len;
    return st;
}

natshttp_status natshttp_call_end_body(natshttp_call *call)
{
    natshttp_status st = NATSHTTP_OK;
    pthread_mutex_lock(&call->mu);
    switch (call->tx) {
    case TX_COLLECT:
        if ((int64_t)call->buf_len != call->body_len) {
            st = NATSHTTP_TRUNCATED;
            break;
        }
        st = publish_first(call, false, call->buf, call->buf_len);
        free(call->buf);
        call->buf = NULL;
        call->tx = TX_DONE;
        break;
    case TX_FIRST:
        /* An empty chunked body: the first message carries no data, which a v1
         * peer reads as the end; the end marker still follows the handshake. */
        st = publish_first(call, call->body_len == -2, NULL, 0);
        call->tx = TX_HANDSHAKE;
        call->pending_end = true;
        break;
    case TX_HANDSHAKE:
        call->pending_end = true;
        break;
    case TX_STREAM:
        st = publish_chunk(call, NULL, 0);
        call->tx = TX_DONE;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&call->mu);
    return st;
}

/* ---- receiving side (dispatch thread) --------------------------------------- */

static void call_free(natshttp_call *call)
{
    natshttp_head_free(call->req);
    natshttp_head_free(call->resp);
    free(call->buf);
    free(call->chunk_subject);
    pthread_mutex_destroy(&call->mu);
    free(call);
}

static void finish(natshttp_call *call, natshttp_status st)
{
    natshttp_client *c = call->c;
    pthread_mutex_lock(&c->mu);
    nh_table_del(&c->calls, call->id);
    pthread_mutex_unlock(&c->mu);
    /* A sender still inside natshttp_call_write holds mu: wait it out. */
    pthread_mutex_lock(&call->mu);
    call->tx = TX_DONE;
    pthread_mutex_unlock(&call->mu);
    call->rx = RX_DONE;
    if (st != NATSHTTP_OK && st != NATSHTTP_CANCELLED)
        NH_LOG_D(COMP, "call %" PRIu64 " ended: %s", call->id, natshttp_status_text(st));
    if (call->cb.on_end)
        call->cb.on_end(call->ctx, call, st);
    call_free(call);
}

static void deliver(natshttp_call *call, natsMsg *msg)
{
    int len = natsMsg_GetDataLength(msg);
    if (len == 0 || !call->cb.on_body) {
        natsMsg_Destroy(msg);
        return;
    }
    natshttp_chunk *ch = nh_chunk_from_msg(msg);
    if (!ch) {
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_NOMEM);
        return;
    }
    call->received += len;
    call->cb.on_body(call->ctx, call, ch);
}

static void on_handshake(natshttp_call *call, natsMsg *msg)
{
    bool writable;
    natshttp_status st = NATSHTTP_OK;
    pthread_mutex_lock(&call->mu);
    if (call->tx == TX_HANDSHAKE && !call->chunk_subject) {
        call->chunk_subject = strdup(natsMsg_GetReply(msg));
        if (!call->chunk_subject) {
            st = NATSHTTP_NOMEM;
        } else {
            call->tx = TX_STREAM;
            if (call->pending_end) {
                st = publish_chunk(call, NULL, 0);
                call->tx = TX_DONE;
            }
        }
    }
    writable = call->want_writable && call->tx == TX_STREAM;
    call->want_writable = false;
    pthread_mutex_unlock(&call->mu);
    natsMsg_Destroy(msg);
    if (st != NATSHTTP_OK)
        finish(call, st);
    else if (writable && call->cb.on_writable)
        call->cb.on_writable(call->ctx, call);
}

static void on_head(natshttp_call *call, natsMsg *msg)
{
    natshttp_status st = natshttp_head_new(&call->resp, call->c->max_head);
    if (st == NATSHTTP_OK)
        st = nh_wire_parse_response(msg, call->resp);
    if (st == NATSHTTP_OK)
        st = natshttp_head_content_length(call->resp, &call->resp_cl);
    if (st != NATSHTTP_OK) {
        NH_LOG_W(COMP, "call %" PRIu64 ": bad response head from the server (%s)", call->id,
                 natshttp_status_text(st));
        natsMsg_Destroy(msg);
        finish(call, st == NATSHTTP_NOMEM ? st : NATSHTTP_BAD_MESSAGE);
        return;
    }
    int status = natshttp_head_status(call->resp);
    call->resp_no_body = call->is_head || status < 200 || status == 204 || status == 304;

    /* v1 framing: one message unless chunked or the whole would not fit. */
    bool chunked = false;
    if (!call->resp_no_body) {
        const char *te = NULL;
        natsMsgHeader_Get(msg, "Transfer-Encoding", &te);
        int64_t size = (int64_t)strlen(natsMsg_GetSubject(msg)) + (int64_t)nh_wire_header_size(msg) +
                       (call->resp_cl > 0 ? call->resp_cl : 0);
        chunked = (te && strcmp(te, "chunked") == 0) ||
                  size >= natsConnection_GetMaxPayload(call->c->nc);
    }
    call->deadline = 0;
    call->last_rx = nh_now_ms();
    int datalen = natsMsg_GetDataLength(msg);
    bool single = !call->resp_no_body && (!chunked || datalen == 0);
    /* A single message is whole or broken before anything is passed on, so a
     * broken one can still become an error status. */
    if (single && call->resp_cl >= 0 && datalen != call->resp_cl) {
        NH_LOG_W(COMP, "call %" PRIu64 ": body of %d bytes, Content-Length %" PRId64, call->id,
                 datalen, call->resp_cl);
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_TRUNCATED);
        return;
    }
    if (call->cb.on_head)
        call->cb.on_head(call->ctx, call, call->resp);

    if (call->resp_no_body) {
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_OK);
    } else if (single) {
        /* Chunked with an empty first piece is how a v1 peer sends an empty body. */
        deliver(call, msg);
        finish(call, NATSHTTP_OK);
    } else {
        call->rx = RX_BODY;
        deliver(call, msg);
    }
}

static void on_msg_for_call(natshttp_call *call, natsMsg *msg)
{
    if (call->rx == RX_WAIT) {
        if (natsMsg_IsNoResponders(msg)) {
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_NO_RESPONDERS);
            return;
        }
        const char *code = NULL;
        bool has_head = natsMsgHeader_Get(msg, NH_HDR_STATUS_CODE, &code) == NATS_OK;
        const char *reply = natsMsg_GetReply(msg);
        if (!has_head && reply && *reply && natsMsg_GetDataLength(msg) == 0) {
            on_handshake(call, msg);
            return;
        }
        if (!has_head) {
            NH_LOG_W(COMP, "call %" PRIu64 ": response without %s", call->id, NH_HDR_STATUS_CODE);
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_BAD_MESSAGE);
            return;
        }
        on_head(call, msg);
        return;
    }
    /* RX_BODY */
    call->last_rx = nh_now_ms();
    if (natsMsg_GetDataLength(msg) == 0) {
        natsMsg_Destroy(msg);
        if (call->resp_cl >= 0 && call->received != call->resp_cl) {
            NH_LOG_W(COMP, "call %" PRIu64 ": body ended at %" PRId64 " of %" PRId64 " bytes",
                     call->id, call->received, call->resp_cl);
            finish(call, NATSHTTP_TRUNCATED);
        } else {
            finish(call, NATSHTTP_OK);
        }
        return;
    }
    if (call->resp_cl >= 0 && call->received + natsMsg_GetDataLength(msg) > call->resp_cl) {
        natsMsg_Destroy(msg);
        NH_LOG_W(COMP, "call %" PRIu64 ": body longer than Content-Length %" PRId64, call->id,
                 call->resp_cl);
        finish(call, NATSHTTP_BAD_MESSAGE);
        return;
    }
    deliver(call, msg);
}

static void check_timeouts(natshttp_client *c, int64_t now)
{
    natshttp_call *expired[64];
    natshttp_status why[64];
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->calls.cap && n < 64; i++) {
        natshttp_call *call = c->calls.ids[i] ? c->calls.slots[i] : NULL;
        if (!call)
            continue;
        int64_t dl = call->deadline;
        if (call->rx == RX_WAIT && dl && now > dl) {
            why[n] = NATSHTTP_TIMEOUT;
            expired[n++] = call;
        } else if (call->rx == RX_BODY && now - call->last_rx > c->timeout_ms) {
            why[n] = NATSHTTP_TRUNCATED;
            expired[n++] = call;
        }
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        NH_LOG_I(COMP, "call %" PRIu64 ": %s", expired[i]->id,
                 why[i] == NATSHTTP_TIMEOUT ? "no response in time" : "response body stalled");
        finish(expired[i], why[i]);
    }
}

static void *dispatch_main(void *arg)
{
    natshttp_client *c = arg;
    int64_t last_scan = nh_now_ms();
    for (;;) {
        void *item = nh_queue_pop(&c->q, TICK_MS);
        if (item && NH_IS_CMD(item)) {
            nh_cmd *cmd = NH_CMD_PTR(item);
            int type = cmd->type;
            uint64_t id = cmd->id;
            free(cmd);
            if (type == CMD_STOP)
                break;
            pthread_mutex_lock(&c->mu);
            natshttp_call *call = nh_table_get(&c->calls, id);
            pthread_mutex_unlock(&c->mu);
            if (call)
                finish(call, NATSHTTP_CANCELLED);
        } else if (item) {
            natsMsg *msg = item;
            uint64_t id = nh_subject_id(natsMsg_GetSubject(msg));
            pthread_mutex_lock(&c->mu);
            natshttp_call *call = nh_table_get(&c->calls, id);
            pthread_mutex_unlock(&c->mu);
            if (call)
                on_msg_for_call(call, msg);
            else
                natsMsg_Destroy(msg);   /* late or stray: the call is gone */
        }
        int64_t now = nh_now_ms();
        if (now - last_scan >= TICK_MS) {
            last_scan = now;
            check_timeouts(c, now);
        }
    }
    return NULL;
}

static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    natshttp_client *c = closure;
    if (nh_queue_push(&c->q, msg) != 0)
        natsMsg_Destroy(msg);
}

static void on_sub_complete(void *closure)
{
    natshttp_client *c = closure;
    pthread_mutex_lock(&c->done_mu);
    c->sub_done = true;
    pthread_cond_signal(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
}

/* ---- public ----------------------------------------------------------------- */

natshttp_status natshttp_client_new(natshttp_client **out, natsConnection *nc,
                                    const natshttp_client_options *opts)
{
    if (!out || !nc || !opts || !opts->subject || !*opts->subject)
        return NATSHTTP_INVALID;
    natshttp_client *c = calloc(1, sizeof *c);
    if (!c)
        return NATSHTTP_NOMEM;
    natshttp_status st = NATSHTTP_OK;
    natsInbox *inbox = NULL;
    char subj[80];

    c->nc = nc;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    c->max_head = opts->max_head ? opts->max_head : NATSHTTP_DEFAULT_MAX_HEAD;
    c->next_id = 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->done_mu, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    c->prefix = strdup(opts->subject);
    if (!c->prefix || nh_queue_init(&c->q) != 0) {
        free(c->prefix);
        free(c);
        return NATSHTTP_NOMEM;
    }
    natsStatus ns = natsInbox_Create(&inbox);
    if (ns == NATS_OK) {
        snprintf(c->inbox, sizeof c->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(subj, sizeof subj, "%s.*", c->inbox);
        ns = natsConnection_Subscribe(&c->sub, nc, subj, on_nats_msg, c);
    }
    if (ns == NATS_OK)
        ns = natsSubscription_SetPendingLimits(c->sub, -1, -1);
    if (ns == NATS_OK)
        ns = natsSubscription_SetOnCompleteCB(c->sub, on_sub_complete, c);
    if (ns != NATS_OK)
        st = natshttp_status_from_nats(ns);
    if (st == NATSHTTP_OK && pthread_create(&c->thread, NULL, dispatch_main, c) != 0)
        st = NATSHTTP_NOMEM;
    if (st != NATSHTTP_OK) {
        c->thread_started = false;
        natshttp_client_free(c);
        return st;
    }
    c->thread_started = true;
    *out = c;
    return NATSHTTP_OK;
}

static void post_cmd(natshttp_client *c, int type, uint64_t id)
{
    nh_cmd *cmd = malloc(sizeof *cmd);
    if (!cmd)
        return;   /* the call then ends by its timeout */
    cmd->type = type;
    cmd->id = id;
    if (nh_queue_push(&c->q, NH_CMD_TAG(cmd)) != 0)
        free(cmd);
}

void natshttp_client_free(natshttp_client *c)
{
    if (!c)
        return;
    if (c->sub) {
        bool wait = natsSubscription_Unsubscribe(c->sub) == NATS_OK;
        pthread_mutex_lock(&c->done_mu);
        while (wait && !c->sub_done)
            pthread_cond_wait(&c->done_cv, &c->done_mu);
        pthread_mutex_unlock(&c->done_mu);
        natsSubscription_Destroy(c->sub);
    }
    if (c->thread_started) {
        post_cmd(c, CMD_STOP, 0);
        pthread_join(c->thread, NULL);
    }
    /* Whatever is still queued was never dispatched. */
    void *item;
    while ((item = nh_queue_pop(&c->q, 0)) != NULL) {
        if (NH_IS_CMD(item))
            free(NH_CMD_PTR(item));
        else
            natsMsg_Destroy(item);
    }
    for (size_t i = 0; i < c->calls.cap; i++)
        if (c->calls.ids[i])
            finish(c->calls.slots[i], NATSHTTP_CANCELLED);
    nh_table_free(&c->calls);
    nh_queue_destroy(&c->q);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->done_mu);
    pthread_cond_destroy(&c->done_cv);
    free(c->prefix);
    free(c);
}

natshttp_status natshttp_call_start(natshttp_call **out, natshttp_client *c,
                                    const natshttp_head *req, int64_t body_len, const void *body,
                                    const natshttp_call_callbacks *cb, void *ctx)
{
    if (!out || !c || !req || !cb || body_len < -2)
        return NATSHTTP_INVALID;
    const char *method = natshttp_head_method(req);
    if (!natshttp_method_valid(method))
        return NATSHTTP_BAD_METHOD;

    natshttp_call *call = calloc(1, sizeof *call);
    if (!call)
        return NATSHTTP_NOMEM;
    natshttp_status st = nh_head_clone(&call->req, req);
    if (st != NATSHTTP_OK) {
        free(call);
        return st;
    }
    pthread_mutex_init(&call->mu, NULL);
    call->c = c;
    call->cb = *cb;
    call->ctx = ctx;
    call->body_len = body_len;
    call->resp_cl = -1;
    call->is_head = strcmp(method, "HEAD") == 0;
    call->max_payload = natsConnection_GetMaxPayload(c->nc);
    if (call->max_payload <= 0)
        call->max_payload = 1024 * 1024;

    /* The whole head must fit in one message (with room for body bytes). */
    natsMsg *probe = NULL;
    pthread_mutex_lock(&c->mu);
    call->id = c->next_id++;
    pthread_mutex_unlock(&c->mu);
    snprintf(call->reply, sizeof call->reply, "%s.%" PRIu64, c->inbox, call->id);
    st = nh_wire_request_msg(&probe, c->prefix, req, call->reply, body_len == -2, NULL, 0);
    int64_t head_size = 0;
    if (st == NATSHTTP_OK) {
        head_size = (int64_t)(strlen(natsMsg_GetSubject(probe)) + strlen(call->reply) +
                              nh_wire_header_size(probe));
        natsMsg_Destroy(probe);
        if (head_size + NH_SUBJECT_ROOM > call->max_payload)
            st = NATSHTTP_HEAD_TOO_LARGE;
    }
    if (st == NATSHTTP_OK) {
        pthread_mutex_lock(&c->mu);
        if (nh_table_put(&c->calls, call->id, call) != 0)
            st = NATSHTTP_NOMEM;
        pthread_mutex_unlock(&c->mu);
    }
    if (st != NATSHTTP_OK) {
        call_free(call);
        return st;
    }

    pthread_mutex_lock(&call->mu);
    if (body_len == -1 || (body_len >= 0 && body)) {
        call->tx = TX_DONE;
        st = publish_first(call, false, body, body_len > 0 ? (size_t)body_len : 0);
    } else if (body_len >= 0 && head_size + body_len <= call->max_payload) {
        call->tx = TX_COLLECT;
        call->buf = malloc(body_len > 0 ? (size_t)body_len : 1);
        if (!call->buf)
            st = NATSHTTP_NOMEM;
    } else {
        call->tx = TX_FIRST;
    }
    pthread_mutex_unlock(&call->mu);
    if (st != NATSHTTP_OK) {
        pthread_mutex_lock(&c->mu);
        nh_table_del(&c->calls, call->id);
        pthread_mutex_unlock(&c->mu);
        call_free(call);
        return st;
    }
    *out = call;
    return NATSHTTP_OK;
}

void natshttp_call_cancel(natshttp_call *call)
{
    if (call)
        post_cmd(call->c, CMD_CANCEL, call->id);
}
