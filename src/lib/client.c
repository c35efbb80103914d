/* client.c - the client role: one HTTP request out as NATS messages, its
 * response back.
 *
 * DESIGN. A client owns one subscription, "<inbox>.>", and every call gets
 * the reply subject "<inbox>.<id>" (v2 credits for its upload arrive on
 * "<inbox>.<id>.<seq>"), so the number of subscriptions does not grow with
 * load. nats.c's delivery thread of that subscription finds the call by id
 * and runs the call's receive state machine and callbacks at once: handing
 * each message to a thread of our own would cost a wake-up per message
 * (docs/performance.md). The client's dispatch thread runs the rest:
 * commands from other threads (cancel, a permission refusal, stop) and,
 * every TICK_MS, the timeout and connection checks. Both hold the client's
 * dispatch mutex (dmu) while they run, so the callbacks of a client never
 * run concurrently, and each call's receive state is touched by one of them
 * at a time.
 *
 * The sending side (first message, body chunks) runs on the caller's thread,
 * under the call's mutex: it needs only the handshake subject and the credit,
 * which the receiving side updates under the same mutex. Callbacks run
 * holding dmu and no other lock of the library; no public function takes
 * dmu, so a callback may call any of them. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "client"
#define TICK_MS 50

enum { CMD_CANCEL = 1, CMD_STOP, CMD_DENIED };

/* CMD_DENIED: nats-server refused a publish of ours to `subject`. */
typedef struct denied_cmd {
    nh_cmd base;
    char subject[];
} denied_cmd;

typedef enum tx_state {
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
    int64_t head_size;       /* subject, reply and headers of the first message (with a body) */
    bool tx_v2;              /* the server's handshake was v2: credit applies */
    int64_t tx_allowed, tx_after_first, tx_total, tx_seq;
    _Atomic int64_t last_tx; /* progress of the upload, for the idle check */

    /* receiving side: under dmu only */
    _Atomic int64_t deadline; /* first response due; 0 = request not fully sent */
    rx_state rx;
    natshttp_head *resp;
    bool resp_no_body, is_head, v2;
    int64_t resp_cl, received, last_rx, rx_seq;
    nh_credit *credit;
    char srv_ctl[128];       /* the server's subject for this request (v2), or "" */
    char *subject;           /* the request's subject, set before it is published */
    bool first_sent;         /* the first message is out (under mu) */
    char instance[64];       /* Natshttp-Instance of the response head, or "" */
    uint64_t epoch;          /* the connection's reconnect count when the call started */
};

struct natshttp_client {
    natsConnection *nc;
    char *prefix;
    nh_route route;
    char inbox[64];
    natsSubscription *sub;
    nh_queue q;              /* commands (and, pumped, messages) for the dispatch thread */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t dmu;     /* held while receiving: message, command or timeout scan */
    pthread_mutex_t mu;      /* guards calls and next_id */
    nh_table calls;
    uint64_t next_id;
    int64_t timeout_ms, idle_ms, window;
    size_t max_head;
    nh_hooks hooks;
    nh_publish_fn send_first;      /* NULL: to nc (see nh_client_new_pumped) */
    void *send_ctx;
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    bool sub_done;
    natsStatistics *stats;   /* under dmu: reconnects, to notice a lost connection */
    uint64_t epoch;          /* reconnects seen so far; under dmu */
};

/* ---- sending side ----------------------------------------------------------- */

static int64_t payload_room(const natshttp_call *call, size_t subject_len)
{
    int64_t room = call->max_payload - (int64_t)subject_len - NH_SUBJECT_ROOM;
    return room < 1 ? 1 : room;
}

static int64_t announced_window(const natshttp_call *call)
{
    return call->c->window;   /* 0 in v1 mode: nothing is announced */
}

/* Publishes the first message with data; call->mu held. */
static natshttp_status publish_first(natshttp_call *call, bool chunked, const void *data,
                                     size_t len, bool last)
{
    natsMsg *m = NULL;
    natshttp_status st = nh_wire_request_msg(&m, &call->c->route, call->req, call->reply,
                                             chunked, announced_window(call), data, len);
    if (st != NATSHTTP_OK)
        return st;
    if (!call->subject)
        call->subject = strdup(natsMsg_GetSubject(m));
    call->last_tx = nh_now_ms();
    call->first_sent = true;
    if (last)   /* the whole request is out: the response is due */
        call->deadline = nh_now_ms() + call->c->timeout_ms;
    natshttp_client *c = call->c;
    natsStatus ns = c->send_first ? c->send_first(c->send_ctx, m)
                                  : natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    nh_flush_kick(call->c->nc);
    natshttp_head_free(call->req);
    call->req = NULL;
    call->tx_total = (int64_t)len;
    call->tx_seq = len > 0 ? 1 : 0;
    if (ns != NATS_OK) {
        NH_LOG_W(COMP, "publish of request %" PRIu64 " failed: %s", call->id,
                 natsStatus_GetText(ns));
        return natshttp_status_from_nats(ns);
    }
    return NATSHTTP_OK;
}

/* A body chunk to the server's private subject; call->mu held. */
static natshttp_status publish_chunk(natshttp_call *call, const void *data, size_t len)
{
    char reply[128];
    const char *r = NULL;
    if (call->tx_v2) {
        snprintf(reply, sizeof reply, "%s.%" PRId64, call->reply, call->tx_seq);
        r = reply;
    }
    const nh_hooks *hk = &call->c->hooks;
    natsStatus ns = NATS_OK;
    if (!r)
        ns = natsConnection_Publish(call->c->nc, call->chunk_subject, data, (int)len);
    else if (call->tx_seq != hk->drop_seq)
        ns = natsConnection_PublishRequest(call->c->nc, call->chunk_subject, r, data, (int)len);
    if (ns == NATS_OK && r && call->tx_seq == hk->dup_seq)
        ns = natsConnection_PublishRequest(call->c->nc, call->chunk_subject, r, data, (int)len);
    nh_flush_kick(call->c->nc);
    call->tx_seq++;
    call->tx_total += (int64_t)len;
    call->tx_after_first += (int64_t)len;
    call->last_tx = nh_now_ms();
    return natshttp_status_from_nats(ns);
}

/* The end of the request body; call->mu held. */
static natshttp_status publish_end(natshttp_call *call)
{
    call->deadline = nh_now_ms() + call->c->timeout_ms;
    if (!call->tx_v2) {
        natsStatus ns = natsConnection_Publish(call->c->nc, call->chunk_subject, NULL, 0);
        nh_flush_kick(call->c->nc);
        return natshttp_status_from_nats(ns);
    }
    char reply[128], num[24];
    snprintf(reply, sizeof reply, "%s.%" PRId64, call->reply, call->tx_seq);
    snprintf(num, sizeof num, "%" PRId64, call->tx_total);
    return nh_publish_control(call->c->nc, call->chunk_subject, reply, NH_HDR_END, num);
}

/* Body bytes the first message can carry next to the head. */
static size_t first_room(natshttp_call *call)
{
    return (size_t)payload_room(call, (size_t)call->head_size);
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
            st = publish_first(call, call->body_len == -2, p, n, false);
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
            int64_t n = payload_room(call, strlen(call->chunk_subject));
            if (call->tx_v2) {
                int64_t avail = call->tx_allowed - call->tx_after_first;
                if (avail <= 0) {
                    call->want_writable = true;
                    st = NATSHTTP_AGAIN;
                    break;
                }
                if (n > avail)
                    n = avail;
            }
            if ((size_t)n > len)
                n = (int64_t)len;
            st = publish_chunk(call, p, (size_t)n);
            p += n;
            len -= (size_t)n;
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
        st = publish_first(call, false, call->buf, call->buf_len, true);
        free(call->buf);
        call->buf = NULL;
        call->tx = TX_DONE;
        break;
    case TX_FIRST:
        /* An empty chunked body: the first message carries no data, which a v1
         * peer reads as the end; the end marker still follows the handshake. */
        st = publish_first(call, call->body_len == -2, NULL, 0, false);
        call->tx = TX_HANDSHAKE;
        call->pending_end = true;
        break;
    case TX_HANDSHAKE:
        call->pending_end = true;
        break;
    case TX_STREAM:
        st = publish_end(call);
        call->tx = TX_DONE;
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&call->mu);
    return st;
}

/* ---- receiving side (under dmu) ------------------------------------------- */

static void call_free(natshttp_call *call)
{
    natshttp_head_free(call->req);
    natshttp_head_free(call->resp);
    free(call->buf);
    free(call->chunk_subject);
    free(call->subject);
    if (call->credit) {
        nh_credit_close(call->credit);
        nh_credit_unref(call->credit);
    }
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
    bool upload_open = call->tx != TX_DONE;
    call->tx = TX_DONE;
    pthread_mutex_unlock(&call->mu);
    /* v2: a server still sending, or still waiting for our upload, is told to stop. */
    if (call->srv_ctl[0] && (st != NATSHTTP_OK || upload_open))
        nh_publish_control(c->nc, call->srv_ctl, NULL, NH_HDR_CANCEL, natshttp_status_text(st));
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
    natshttp_chunk *ch = nh_chunk_from_msg(msg, call->credit);
    if (!ch) {
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_NOMEM);
        return;
    }
    call->received += len;
    call->cb.on_body(call->ctx, call, ch);
}

static void on_credit(natshttp_call *call, natsMsg *msg, int64_t n)
{
    bool writable;
    pthread_mutex_lock(&call->mu);
    /* n is any u63 a peer sends: saturate instead of overflowing */
    call->tx_allowed = call->tx_allowed > INT64_MAX - n ? INT64_MAX : call->tx_allowed + n;
    call->last_tx = nh_now_ms();
    writable = call->want_writable && call->tx == TX_STREAM;
    if (writable)
        call->want_writable = false;
    pthread_mutex_unlock(&call->mu);
    natsMsg_Destroy(msg);
    if (writable && call->cb.on_writable)
        call->cb.on_writable(call->ctx, call);
}

static void on_handshake(natshttp_call *call, natsMsg *msg)
{
    bool writable;
    natshttp_status st = NATSHTTP_OK;
    const char *ver = nh_msg_header(msg, NH_HDR_VERSION);
    int64_t window = nh_parse_u63(nh_msg_header(msg, NH_HDR_WINDOW));
    pthread_mutex_lock(&call->mu);
    /* v2: the server's control subject, for a cancel (also sent on its own
     * by a server that is slow to answer a request without a body). */
    if (ver && strcmp(ver, "2") == 0 && call->c->window > 0 && !call->srv_ctl[0] &&
        strlen(natsMsg_GetReply(msg)) < sizeof call->srv_ctl)
        snprintf(call->srv_ctl, sizeof call->srv_ctl, "%s", natsMsg_GetReply(msg));
    if (call->tx == TX_HANDSHAKE && !call->chunk_subject) {
        call->chunk_subject = strdup(natsMsg_GetReply(msg));
        if (!call->chunk_subject) {
            st = NATSHTTP_NOMEM;
        } else {
            if (ver && strcmp(ver, "2") == 0 && window >= 0 && call->c->window > 0) {
                call->tx_v2 = true;
                call->tx_allowed = window;
            }
            call->tx = TX_STREAM;
            call->last_tx = nh_now_ms();
            if (call->pending_end) {
                st = publish_end(call);
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
    const char *ver = nh_msg_header(msg, NH_HDR_VERSION);
    const char *reply = natsMsg_GetReply(msg);
    const char *inst = nh_msg_header(msg, NH_HDR_INSTANCE);
    if (inst)
        snprintf(call->instance, sizeof call->instance, "%s", inst);
    call->v2 = call->c->window > 0 && ver && strcmp(ver, "2") == 0 && reply && *reply &&
               strlen(reply) < sizeof call->srv_ctl;
    if (call->v2)
        snprintf(call->srv_ctl, sizeof call->srv_ctl, "%s", reply);
    int status = natshttp_head_status(call->resp);
    call->resp_no_body = call->is_head || status < 200 || status == 204 || status == 304;

    /* v1 framing: one message unless chunked or the whole would not fit. */
    bool chunked = false;
    if (!call->resp_no_body) {
        const char *te = nh_msg_header(msg, "Transfer-Encoding");
        int64_t size = (int64_t)strlen(natsMsg_GetSubject(msg)) +
                       (int64_t)(reply ? strlen(reply) : 0) + (int64_t)nh_wire_header_size(msg);
        /* size + Content-Length >= max payload, without overflow for a huge length */
        chunked = (te && strcmp(te, "chunked") == 0) ||
                  (call->resp_cl > 0 ? call->resp_cl : 0) >= call->max_payload - size;
    }
    call->deadline = 0;
    call->last_rx = nh_now_ms();
    int datalen = natsMsg_GetDataLength(msg);
    /* v1: a chunked body whose first message has no data is empty. v2 says
     * where a body ends explicitly. */
    bool single = !call->resp_no_body && (!chunked || (datalen == 0 && !call->v2));
    /* A single message is whole or broken before anything is passed on, so a
     * broken one can still become an error status. */
    if (single && call->resp_cl >= 0 && datalen != call->resp_cl) {
        NH_LOG_W(COMP, "call %" PRIu64 ": body of %d bytes, Content-Length %" PRId64, call->id,
                 datalen, call->resp_cl);
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_TRUNCATED);
        return;
    }
    /* The body's first bytes ride in the head: they may not overrun it either. */
    if (!single && !call->resp_no_body && call->resp_cl >= 0 && datalen > call->resp_cl) {
        NH_LOG_W(COMP, "call %" PRIu64 ": body longer than Content-Length %" PRId64, call->id,
                 call->resp_cl);
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_BAD_MESSAGE);
        return;
    }
    if (call->v2 && chunked) {
        call->credit = nh_credit_new(call->c->nc, call->c->window, NULL);
        if (!call->credit) {
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_NOMEM);
            return;
        }
    }
    if (call->cb.on_head)
        call->cb.on_head(call->ctx, call, call->resp);

    if (call->resp_no_body) {
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_OK);
    } else if (single) {
        deliver(call, msg);
        finish(call, NATSHTTP_OK);
    } else {
        call->rx = RX_BODY;
        if (datalen > 0)
            call->rx_seq = 1;   /* the head's data is piece 0 */
        deliver(call, msg);
    }
}

/* The sequence number a v2 body message carries in its reply subject. */
static int64_t msg_seq(const natshttp_call *call, natsMsg *msg)
{
    const char *reply = natsMsg_GetReply(msg);
    size_t n = strlen(call->srv_ctl);
    if (!reply || strncmp(reply, call->srv_ctl, n) != 0 || reply[n] != '.')
        return -1;
    return nh_parse_u63(reply + n + 1);
}

static void on_body_msg(natshttp_call *call, natsMsg *msg)
{
    call->last_rx = nh_now_ms();
    int len = natsMsg_GetDataLength(msg);
    if (!call->v2) {
        if (len == 0) {
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
    } else {
        int64_t seq = msg_seq(call, msg);
        const char *end = nh_msg_header(msg, NH_HDR_END);
        const char *abort = nh_msg_header(msg, NH_HDR_ABORT);
        if (abort) {
            NH_LOG_W(COMP, "call %" PRIu64 ": the server aborted the body: %s", call->id, abort);
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_TRUNCATED);
            return;
        }
        if (seq != call->rx_seq) {
            NH_LOG_W(COMP, "call %" PRIu64 ": body piece %" PRId64 " where %" PRId64
                     " was due (lost or repeated); aborted", call->id, seq, call->rx_seq);
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_TRUNCATED);
            return;
        }
        call->rx_seq++;
        if (end) {
            int64_t total = nh_parse_u63(end);
            bool whole = total == call->received && (call->resp_cl < 0 || total == call->resp_cl);
            if (!whole)   /* end points into msg: log before it is destroyed */
                NH_LOG_W(COMP, "call %" PRIu64 ": body of %" PRId64 " bytes, the server sent %s",
                         call->id, call->received, end);
            natsMsg_Destroy(msg);
            finish(call, whole ? NATSHTTP_OK : NATSHTTP_TRUNCATED);
            return;
        }
        if (len == 0) {
            NH_LOG_W(COMP, "call %" PRIu64 ": empty body piece without end; aborted", call->id);
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_BAD_MESSAGE);
            return;
        }
    }
    if (call->resp_cl >= 0 && call->received + len > call->resp_cl) {
        natsMsg_Destroy(msg);
        NH_LOG_W(COMP, "call %" PRIu64 ": body longer than Content-Length %" PRId64, call->id,
                 call->resp_cl);
        finish(call, NATSHTTP_BAD_MESSAGE);
        return;
    }
    deliver(call, msg);
}

/* A plain NATS service (the micro service API) answered with an error:
 * Nats-Service-Error-Code becomes the status (a code that is no HTTP status
 * becomes 502), Nats-Service-Error the text/plain body. */
static void on_service_error(natshttp_call *call, natsMsg *msg)
{
    const char *code = nh_msg_header(msg, "Nats-Service-Error-Code");
    const char *text = nh_msg_header(msg, "Nats-Service-Error");
    int status = 502;
    if (code && strlen(code) == 3 && code[0] >= '1' && code[0] <= '5' && code[1] >= '0' &&
        code[1] <= '9' && code[2] >= '0' && code[2] <= '9')
        status = atoi(code);
    char body[1024];
    int n = snprintf(body, sizeof body, "%s\n", text && *text ? text : "service error");
    if (n < 0 || (size_t)n >= sizeof body) {
        n = (int)sizeof body - 1;
        body[n - 1] = '\n';
    }
    char num[24];
    snprintf(num, sizeof num, "%d", n);
    natsMsg *data = NULL;
    natshttp_status st = natshttp_head_new(&call->resp, call->c->max_head);
    if (st == NATSHTTP_OK)
        st = natshttp_head_set_status(call->resp, status, NULL);
    if (st == NATSHTTP_OK)
        st = natshttp_head_add(call->resp, "Content-Type", "text/plain; charset=utf-8");
    if (st == NATSHTTP_OK)
        st = natshttp_head_add(call->resp, "Content-Length", num);
    if (st == NATSHTTP_OK && natsMsg_Create(&data, natsMsg_GetSubject(msg), NULL, body, n) != NATS_OK)
        st = NATSHTTP_NOMEM;
    NH_LOG_I(COMP, "call %" PRIu64 ": service error %s: %s", call->id, code ? code : "?",
             text ? text : "");
    natsMsg_Destroy(msg);
    if (st != NATSHTTP_OK) {
        natsMsg_Destroy(data);
        finish(call, st);
        return;
    }
    call->resp_cl = n;
    call->deadline = 0;
    call->resp_no_body = call->is_head;
    if (call->cb.on_head)
        call->cb.on_head(call->ctx, call, call->resp);
    natshttp_chunk *ch = call->resp_no_body || !call->cb.on_body ? NULL : nh_chunk_from_msg(data, NULL);
    if (ch) {
        call->received += n;
        call->cb.on_body(call->ctx, call, ch);
    } else {
        natsMsg_Destroy(data);
    }
    finish(call, NATSHTTP_OK);
}

static void on_msg_for_call(natshttp_call *call, natsMsg *msg)
{
    const char *credit = nh_msg_header(msg, NH_HDR_CREDIT);
    if (credit) {
        int64_t n = nh_parse_u63(credit);
        if (n < 0) {
            natsMsg_Destroy(msg);
            finish(call, NATSHTTP_BAD_MESSAGE);
        } else {
            on_credit(call, msg, n);
        }
        return;
    }
    if (call->rx == RX_BODY) {
        on_body_msg(call, msg);
        return;
    }
    if (natsMsg_IsNoResponders(msg)) {
        natsMsg_Destroy(msg);
        finish(call, NATSHTTP_NO_RESPONDERS);
        return;
    }
    bool has_head = nh_msg_header(msg, NH_HDR_STATUS_CODE) != NULL;
    if (!has_head && nh_msg_header(msg, "Nats-Service-Error-Code")) {
        on_service_error(call, msg);
        return;
    }
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
        } else if (call->rx == RX_WAIT && !dl && call->last_tx &&
                   now - call->last_tx > c->idle_ms) {
            why[n] = NATSHTTP_TIMEOUT;   /* the upload made no progress */
            expired[n++] = call;
        } else if (call->rx == RX_BODY && now - call->last_rx > c->idle_ms) {
            why[n] = NATSHTTP_IDLE;
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

static uint64_t reconnect_count(natsConnection *nc)
{
    uint64_t im, ib, om, ob, rc = 0;
    natsStatistics *st = NULL;
    if (natsStatistics_Create(&st) == NATS_OK && natsConnection_GetStats(nc, st) == NATS_OK)
        natsStatistics_GetCounts(st, &im, &ib, &om, &ob, &rc);
    natsStatistics_Destroy(st);
    return rc;
}

/* A call whose connection went away (down now, or re-established since the
 * call started) has lost messages in between: it ends with NATS, which the
 * gateway turns into 503 or a cut-off body, never a body with a hole. */
static void check_connection(natshttp_client *c)
{
    uint64_t reconnects = c->epoch;
    if (c->stats && natsConnection_GetStats(c->nc, c->stats) == NATS_OK) {
        uint64_t im, ib, om, ob;
        natsStatistics_GetCounts(c->stats, &im, &ib, &om, &ob, &reconnects);
    }
    bool down = natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED;
    if (!down && reconnects == c->epoch)
        return;
    c->epoch = reconnects;
    for (;;) {
        natshttp_call *lost = NULL;
        pthread_mutex_lock(&c->mu);
        for (size_t i = 0; i < c->calls.cap && !lost; i++) {
            natshttp_call *call = c->calls.ids[i] ? c->calls.slots[i] : NULL;
            if (call && (down || call->epoch < reconnects))
                lost = call;
        }
        pthread_mutex_unlock(&c->mu);
        if (!lost)
            break;
        NH_LOG_I(COMP, "call %" PRIu64 ": the NATS connection was lost", lost->id);
        finish(lost, NATSHTTP_NATS);
    }
}

/* A v2 message for a call that is gone: tell its sender to stop. */
static void stray(natshttp_client *c, natsMsg *msg)
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply && *reply && nh_msg_header(msg, NH_HDR_CREDIT) == NULL &&
        nh_msg_header(msg, NH_HDR_END) == NULL && nh_msg_header(msg, NH_HDR_ABORT) == NULL &&
        natsMsg_GetDataLength(msg) > 0) {
        /* Only body pieces: stop a sender that would otherwise fill our inbox. */
        nh_publish_control(c->nc, reply, NULL, NH_HDR_CANCEL, "gone");
    }
    natsMsg_Destroy(msg);
}

/* Does the refused publish to subject belong to call? Its first message
 * (while no answer came), or a piece, end or cancel sent to the server's
 * private subjects. */
static bool denied_matches(natshttp_call *call, const char *subject, bool *first)
{
    bool hit = false;
    pthread_mutex_lock(&call->mu);
    size_t n;
    if (call->first_sent && call->subject && call->rx == RX_WAIT &&
        strcmp(call->subject, subject) == 0) {
        hit = *first = true;
    } else if (call->chunk_subject && (n = strlen(call->chunk_subject)) > 0 &&
               strncmp(subject, call->chunk_subject, n) == 0 &&
               (subject[n] == 0 || subject[n] == '.')) {
        hit = true;
    } else if (call->srv_ctl[0] && (n = strlen(call->srv_ctl)) > 0 &&
               strncmp(subject, call->srv_ctl, n) == 0 && (subject[n] == 0 || subject[n] == '.')) {
        hit = true;
    }
    pthread_mutex_unlock(&call->mu);
    return hit;
}

/* nats-server answers a refused publish with -ERR and nothing else: without
 * this the call would wait for its timeout. nats-server processes one
 * connection's publishes in order, so of several calls that published to the
 * same subject, the oldest unanswered one is the refused one. */
static void on_denied(natshttp_client *c, const char *subject)
{
    natshttp_call *hit = NULL;
    pthread_mutex_lock(&c->mu);
    size_t n = 0, cap = c->calls.len;
    natshttp_call **all = cap ? malloc(cap * sizeof *all) : NULL;
    for (size_t i = 0; all && i < c->calls.cap && n < cap; i++)
        if (c->calls.ids[i])
            all[n++] = c->calls.slots[i];
    pthread_mutex_unlock(&c->mu);
    /* Calls are freed on this thread only: the pointers stay valid here. */
    for (size_t i = 0; i < n; i++) {
        bool first = false;
        if (denied_matches(all[i], subject, &first) && (!hit || !first || all[i]->id < hit->id)) {
            hit = all[i];
            if (!first)
                break;   /* a private subject names exactly one call */
        }
    }
    free(all);
    if (hit) {
        NH_LOG_W(COMP, "NATS refused the publish to %s (permissions): call %" PRIu64 " ends with 403",
                 subject, hit->id);
        finish(hit, NATSHTTP_PERMISSION);
    }
}

/* One item off the queue: a command or a message. False for CMD_STOP. */
static bool dispatch_item(natshttp_client *c, void *item)
{
    if (NH_IS_CMD(item)) {
        nh_cmd *cmd = NH_CMD_PTR(item);
        int type = cmd->type;
        uint64_t id = cmd->id;
        if (type == CMD_DENIED)
            on_denied(c, ((denied_cmd *)cmd)->subject);
        free(cmd);
        if (type == CMD_STOP)
            return false;
        if (type == CMD_DENIED)
            return true;
        pthread_mutex_lock(&c->mu);
        natshttp_call *call = nh_table_get(&c->calls, id);
        pthread_mutex_unlock(&c->mu);
        if (call)
            finish(call, NATSHTTP_CANCELLED);
        return true;
    }
    natsMsg *msg = item;
    uint64_t id = 0;
    int64_t seq = -1;
    natshttp_call *call = NULL;
    if (nh_parse_ids(natsMsg_GetSubject(msg), strlen(c->inbox), &id, &seq)) {
        pthread_mutex_lock(&c->mu);
        call = nh_table_get(&c->calls, id);
        pthread_mutex_unlock(&c->mu);
    }
    if (call)
        on_msg_for_call(call, msg);
    else
        stray(c, msg);
    return true;
}

static void *dispatch_main(void *arg)
{
    natshttp_client *c = arg;
    int64_t last_scan = nh_now_ms();
    bool run = true;
    while (run) {
        void *item = nh_queue_pop(&c->q, TICK_MS);
        pthread_mutex_lock(&c->dmu);
        if (item)
            run = dispatch_item(c, item);
        int64_t now = nh_now_ms();
        if (run && now - last_scan >= TICK_MS) {
            last_scan = now;
            check_connection(c);
            check_timeouts(c, now);
        }
        pthread_mutex_unlock(&c->dmu);
    }
    return NULL;
}

void nh_client_deliver(natshttp_client *c, natsMsg *msg)
{
    if (nh_queue_push(&c->q, msg) != 0)
        natsMsg_Destroy(msg);
}

void nh_client_pump(natshttp_client *c)
{
    void *item;
    pthread_mutex_lock(&c->dmu);
    while ((item = nh_queue_pop(&c->q, 0)) != NULL)
        dispatch_item(c, item);
    pthread_mutex_unlock(&c->dmu);
}

const char *nh_call_reply(const natshttp_call *call) { return call->reply; }

/* nats.c's delivery thread: the message is handled here, in order. */
static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    natshttp_client *c = closure;
    pthread_mutex_lock(&c->dmu);
    dispatch_item(c, msg);
    pthread_mutex_unlock(&c->dmu);
}

static void on_sub_complete(void *closure)
{
    natshttp_client *c = closure;
    pthread_mutex_lock(&c->done_mu);
    c->sub_done = true;
    pthread_cond_signal(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
}

/* ---- public ---------------------------------------------------------------------- */

static natshttp_status client_new(natshttp_client **out, natsConnection *nc,
                                  const natshttp_client_options *opts, bool own_thread)
{
    if (!out || !nc || !opts || !nh_prefix_valid(opts->subject))
        return NATSHTTP_INVALID;
    if (opts->protocol != 0 && opts->protocol != 1 && opts->protocol != 2)
        return NATSHTTP_INVALID;
    if (opts->layout != NATSHTTP_LAYOUT_NATIVE && opts->layout != NATSHTTP_LAYOUT_COMPAT)
        return NATSHTTP_INVALID;
    if (!nh_inbox_prefix_valid(opts->inbox_prefix))
        return NATSHTTP_INVALID;
    natshttp_client *c = calloc(1, sizeof *c);
    if (!c)
        return NATSHTTP_NOMEM;
    natshttp_status st = NATSHTTP_OK;
    char subj[80];

    c->nc = nc;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    c->idle_ms = opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : NH_DEFAULT_IDLE_MS;
    c->window = opts->protocol == 1 ? 0 : opts->window > 0 ? opts->window : NH_DEFAULT_WINDOW;
    c->max_head = opts->max_head ? opts->max_head : NATSHTTP_DEFAULT_MAX_HEAD;
    c->next_id = 1;
    nh_hooks_load(&c->hooks);
    if (natsStatistics_Create(&c->stats) != NATS_OK)
        c->stats = NULL;
    if (c->stats && natsConnection_GetStats(nc, c->stats) == NATS_OK) {
        uint64_t im, ib, om, ob, rc = 0;
        natsStatistics_GetCounts(c->stats, &im, &ib, &om, &ob, &rc);
        c->epoch = rc;
    }
    pthread_mutex_init(&c->dmu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->done_mu, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    c->prefix = strdup(opts->subject);
    c->route = (nh_route){c->prefix, opts->layout, opts->allow_dot_segments};
    if (!c->prefix || nh_queue_init(&c->q) != 0) {
        free(c->prefix);
        free(c);
        return NATSHTTP_NOMEM;
    }
    natsStatus ns = nh_make_inbox(c->inbox, sizeof c->inbox, opts->inbox_prefix);
    if (ns == NATS_OK) {
        snprintf(subj, sizeof subj, "%s.>", c->inbox);
        ns = natsConnection_Subscribe(&c->sub, nc, subj, on_nats_msg, c);
    }
    if (ns == NATS_OK)
        ns = natsSubscription_SetPendingLimits(c->sub, -1, -1);
    if (ns == NATS_OK)
        ns = natsSubscription_SetOnCompleteCB(c->sub, on_sub_complete, c);
    if (ns != NATS_OK)
        st = natshttp_status_from_nats(ns);
    if (st == NATSHTTP_OK && own_thread && pthread_create(&c->thread, NULL, dispatch_main, c) != 0)
        st = NATSHTTP_NOMEM;
    if (st != NATSHTTP_OK) {
        natshttp_client_free(c);
        return st;
    }
    c->thread_started = own_thread;
    *out = c;
    return NATSHTTP_OK;
}

natshttp_status natshttp_client_new(natshttp_client **out, natsConnection *nc,
                                    const natshttp_client_options *opts)
{
    return client_new(out, nc, opts, true);
}

natshttp_status nh_client_new_pumped(natshttp_client **out, natsConnection *nc,
                                     const natshttp_client_options *opts, nh_publish_fn first,
                                     void *ctx)
{
    natshttp_status st = client_new(out, nc, opts, false);
    if (st == NATSHTTP_OK) {
        (*out)->send_first = first;
        (*out)->send_ctx = ctx;
    }
    return st;
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
    for (size_t i = 0; i < c->calls.cap; i++) {
        if (c->calls.ids[i]) {
            finish(c->calls.slots[i], NATSHTTP_CANCELLED);
            i = (size_t)-1;   /* the table moved entries: rescan */
        }
    }
    nh_table_free(&c->calls);
    nh_queue_destroy(&c->q);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->dmu);
    pthread_mutex_destroy(&c->done_mu);
    pthread_cond_destroy(&c->done_cv);
    natsStatistics_Destroy(c->stats);
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
    /* While nats.c reconnects it would buffer the request and the call would
     * wait for its timeout: say at once that NATS is not there. */
    if (!c->send_first && natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED)
        return NATSHTTP_NATS;   /* (a pumped client, for the fuzzer, has no live connection) */

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

    pthread_mutex_lock(&c->mu);
    call->id = c->next_id++;
    pthread_mutex_unlock(&c->mu);
    call->epoch = reconnect_count(c->nc);
    snprintf(call->reply, sizeof call->reply, "%s.%" PRIu64, c->inbox, call->id);
    /* With a body, its framing depends on the size of the head: measure it
     * (the head must fit with room for body bytes). Without one, the first
     * message is all there is, and nats.c refuses it if it is too large. */
    int64_t head_size = 0;
    if (body_len != -1) {
        natsMsg *probe = NULL;
        st = nh_wire_request_msg(&probe, &c->route, req, call->reply, body_len == -2, c->window,
                                 NULL, 0);
        if (st == NATSHTTP_OK) {
            head_size = (int64_t)(strlen(natsMsg_GetSubject(probe)) + strlen(call->reply) +
                                  nh_wire_header_size(probe));
            call->subject = strdup(natsMsg_GetSubject(probe));
            natsMsg_Destroy(probe);
            if (head_size + NH_SUBJECT_ROOM > call->max_payload)
                st = NATSHTTP_HEAD_TOO_LARGE;
        }
        call->head_size = head_size;
    }
    if (st == NATSHTTP_OK && body && body_len >= 0 && body_len > call->max_payload - head_size)
        st = NATSHTTP_BODY_TOO_LARGE;   /* a body given here must fit one message */
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
        st = publish_first(call, false, body, body_len > 0 ? (size_t)body_len : 0, true);
    } else if (body_len >= 0 && body_len <= call->max_payload - head_size) {
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

void natshttp_client_async_error(natshttp_client *c, natsStatus err, const char *text)
{
    static const char marker[] = "Permissions Violation for Publish to \"";
    const char *p = c && err == NATS_NOT_PERMITTED && text ? strstr(text, marker) : NULL;
    if (!p)
        return;
    p += sizeof marker - 1;
    const char *end = strchr(p, '"');
    if (!end || end == p || (size_t)(end - p) >= NH_MAX_SUBJECT)
        return;
    size_t n = (size_t)(end - p);
    denied_cmd *cmd = malloc(sizeof *cmd + n + 1);
    if (!cmd)
        return;   /* the call then ends by its timeout */
    cmd->base.type = CMD_DENIED;
    cmd->base.id = 0;
    memcpy(cmd->subject, p, n);
    cmd->subject[n] = 0;
    if (nh_queue_push(&c->q, NH_CMD_TAG(&cmd->base)) != 0)
        free(cmd);
}

const char *natshttp_call_subject(const natshttp_call *call) { return call->subject; }

const char *natshttp_call_instance(const natshttp_call *call)
{
    return call->instance[0] ? call->instance : NULL;
}

void natshttp_call_cancel(natshttp_call *call)
{
    if (call)
        post_cmd(call->c, CMD_CANCEL, call->id);
}
