/* server.c - the server role: requests from "<prefix>.>", responses to their
 * reply subjects.
 *
 * DESIGN. Two subscriptions: the request subject (in the queue group, when
 * one is set) and "<inbox>.>", this instance's private subject: the chunk
 * handshake hands the client "<inbox>.<id>", so every further message of
 * that request (body chunks; in v2 also credits and cancellation) reaches
 * this instance and no other, without a subscription per request. nats.c's
 * delivery threads (one per subscription) parse each message and run the
 * application's callbacks at once, holding the server's dispatch mutex
 * (dmu), so callbacks never run concurrently; the server's dispatch thread
 * takes dmu every TICK_MS to check timeouts.
 * Handing each message to a thread of our own would cost a wake-up per
 * message (docs/performance.md).
 *
 * A transaction (natshttp_txn) has two holders: the library, while the
 * request body is arriving or (v2) the response is under way, and the
 * application, until natshttp_txn_finish. The library's hold is membership
 * of the core's table, which the receiving side and finishing threads share
 * under the core's mutex. The core is reference-counted by the server and by
 * every txn, so a txn may outlive its server. The response side may be
 * driven from any thread, under the txn's own mutex. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMP "server"
#define TICK_MS 100
#define NH_ANNOUNCE_MS 250   /* an answer slower than this announces the control subject */

enum { CMD_STOP = 1 };

typedef enum resp_mode {
    R_NONE,      /* not answered yet */
    R_NOBODY,    /* head only: HEAD, 1xx, 204, 304 */
    R_SINGLE,    /* head and body in one message, body gathered first */
    R_CHUNKED,   /* head, pieces, end */
    R_DONE,
} resp_mode;

typedef struct nh_core {
    _Atomic int refs;
    pthread_mutex_t mu;
    nh_table active;          /* id -> txn the library holds */
    char instance[64];        /* natshttp_server_options.instance, or "" */
    _Atomic int unfinished;   /* txns the application has not finished: what a drain waits for */
} nh_core;

struct natshttp_txn {
    _Atomic int refs;
    nh_core *core;
    uint64_t id;
    natsConnection *nc;
    char *reply;             /* the client's subject for this request */
    char ctl[96];            /* our private subject for it: "<inbox>.<id>" */
    natshttp_head *req;
    char *raw_path, *path;
    size_t path_len;
    bool is_head, v2;
    void *app_data;

    /* library's hold, under core->mu */
    bool in_table, body_open, resp_over;

    /* request body, under dmu only */
    int64_t body_last, body_seq;
    _Atomic int64_t body_received;   /* read by the access log on any thread */
    char *subject;           /* the request's subject, for the access log */
    int64_t created;
    bool told_ctl;           /* the client knows our control subject */
    nh_credit *body_credit;

    /* response, under mu */
    pthread_mutex_t mu;
    resp_mode mode;
    natshttp_head *resp;
    int64_t resp_cl, sent, allowed, seq, last_progress;
    uint8_t *buf;
    size_t buf_len;
    size_t head_size;        /* of the head without data, by the peer's rule */
    bool head_sent, want_writable, cancelled;
    int64_t max_payload;
    const nh_hooks *hooks;
    natshttp_metrics *metrics;   /* counted once, when the application finishes */
    int64_t t0_us;
    bool counted;
};

struct natshttp_server {
    natsConnection *nc;
    nh_core *core;
    char *prefix;
    nh_route route;
    char inbox[64];
    size_t inbox_len;            /* strlen(inbox), for telling private messages apart */
    natsSubscription *req_sub, *body_sub;
    nh_queue q;                  /* commands for the dispatch thread */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t dmu;         /* held while receiving: a message or the timeout scan */
    uint64_t next_id;
    natshttp_server_callbacks cb;
    void *ctx;
    size_t max_head;
    int64_t idle_ms, window;
    nh_hooks hooks;
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    int subs_done;
    natshttp_metrics *metrics;
    bool req_drained;            /* natshttp_server_drain drained req_sub */
};

/* ---- transactions ------------------------------------------------------------ */

static void core_unref(nh_core *core)
{
    if (--core->refs > 0)
        return;
    nh_table_free(&core->active);
    pthread_mutex_destroy(&core->mu);
    free(core);
}

static void txn_unref(natshttp_txn *t)
{
    if (--t->refs > 0)
        return;
    if (t->body_credit) {
        nh_credit_close(t->body_credit);
        nh_credit_unref(t->body_credit);
    }
    natshttp_head_free(t->req);
    natshttp_head_free(t->resp);
    free(t->buf);
    free(t->reply);
    free(t->subject);
    free(t->raw_path);
    free(t->path);
    pthread_mutex_destroy(&t->mu);
    if (t->core)
        core_unref(t->core);
    free(t);
}

/* Lets go of the library's hold once nothing more can arrive for t. */
static void maybe_release(natshttp_txn *t)
{
    bool drop = false;
    pthread_mutex_lock(&t->core->mu);
    if (t->in_table && !t->body_open && (t->resp_over || !t->v2)) {
        nh_table_del(&t->core->active, t->id);
        t->in_table = false;
        drop = true;
    }
    pthread_mutex_unlock(&t->core->mu);
    if (drop)
        txn_unref(t);
}

/* The txn with this id, with a reference for the caller, or NULL. */
static natshttp_txn *lookup(nh_core *core, uint64_t id)
{
    pthread_mutex_lock(&core->mu);
    natshttp_txn *t = nh_table_get(&core->active, id);
    if (t)
        t->refs++;
    pthread_mutex_unlock(&core->mu);
    return t;
}

const char *natshttp_txn_path(const natshttp_txn *t, size_t *len)
{
    if (len)
        *len = t->path_len;
    return t->path;
}

const char *natshttp_txn_raw_path(const natshttp_txn *t) { return t->raw_path; }
void natshttp_txn_set_data(natshttp_txn *t, void *data) { t->app_data = data; }
void *natshttp_txn_data(const natshttp_txn *t) { return t->app_data; }
bool natshttp_txn_is_v2(const natshttp_txn *t) { return t->v2; }

size_t natshttp_txn_chunk_size(const natshttp_txn *t)
{
    int64_t room = t->max_payload - (int64_t)strlen(t->reply) - (int64_t)strlen(t->ctl) - 24 -
                   NH_SUBJECT_ROOM;
    return room < 1 ? 1 : (size_t)room;
}

/* v2 only: v1 peers see exactly the v1 head. */
static natshttp_status add_instance(natshttp_txn *t, natsMsg *m)
{
    if (!t->v2 || !t->core->instance[0])
        return NATSHTTP_OK;
    return natsMsgHeader_Set(m, NH_HDR_INSTANCE, t->core->instance) == NATS_OK ? NATSHTTP_OK
                                                                               : NATSHTTP_NOMEM;
}

/* Publishes the response head with data; t->mu held. */
static natshttp_status publish_head(natshttp_txn *t, const void *data, size_t len)
{
    natsMsg *m = NULL;
    natshttp_status st = nh_wire_response_msg(&m, t->reply, t->v2 ? t->ctl : NULL, t->resp,
                                              t->resp_cl, t->mode == R_CHUNKED, t->v2, data, len);
    if (st == NATSHTTP_OK)
        st = add_instance(t, m);
    if (st == NATSHTTP_OK) {
        natsStatus ns = natsConnection_PublishMsg(t->nc, m);
        if (ns != NATS_OK) {
            NH_LOG_W(COMP, "request %" PRIu64 ": publishing the response head failed: %s", t->id,
                     natsStatus_GetText(ns));
            st = natshttp_status_from_nats(ns);
        } else {
            nh_metrics_bytes(t->metrics, 0, len);
        }
    }
    natsMsg_Destroy(m);
    nh_flush_kick(t->nc);
    t->head_sent = true;
    if (len > 0)
        t->seq = 1;   /* the head's data is piece 0 */
    return st;
}

/* Size of the head as the peer's framing rule counts it (subject, reply, headers). */
static size_t head_wire_size(natshttp_txn *t)
{
    natsMsg *m = NULL;
    size_t size = 0;
    if (nh_wire_response_msg(&m, t->reply, t->v2 ? t->ctl : NULL, t->resp, t->resp_cl,
                             t->resp_cl < 0, t->v2, NULL, 0) == NATSHTTP_OK &&
        add_instance(t, m) == NATSHTTP_OK) {
        size = nh_wire_header_size(m) + strlen(t->reply) + (t->v2 ? strlen(t->ctl) : 0);
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
        return t->cancelled ? NATSHTTP_CANCELLED : NATSHTTP_INVALID;
    }
    st = nh_head_clone(&t->resp, resp);
    if (st != NATSHTTP_OK) {
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    int status = natshttp_head_status(resp);
    t->resp_cl = cl;
    t->last_progress = nh_now_ms();
    if (t->is_head || status < 200 || status == 204 || status == 304) {
        if (status == 204 || status < 200)
            t->resp_cl = -1;
        t->mode = R_NOBODY;
        st = publish_head(t, NULL, 0);
    } else if (cl == 0) {
        t->mode = R_SINGLE;
        st = publish_head(t, NULL, 0);
    } else {
        t->head_size = head_wire_size(t);   /* measured once: the head is fixed now */
        /* The client's rule exactly (wire-v1 "Response"): one message when
         * subject, reply and headers plus Content-Length stay below max payload. */
        if (cl > 0 && cl < t->max_payload - (int64_t)t->head_size) {
            t->mode = R_SINGLE;
            t->buf = malloc((size_t)cl);
            if (!t->buf)
                st = NATSHTTP_NOMEM;
        } else {
            t->mode = R_CHUNKED;
            if ((int64_t)t->head_size + NH_SUBJECT_ROOM >= t->max_payload)
                st = NATSHTTP_HEAD_TOO_LARGE;
            else if (t->v2)
                st = publish_head(t, NULL, 0);   /* v2 ends bodies explicitly: the head need not wait */
        }
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

/* One body piece after the head; t->mu held. */
static natshttp_status publish_piece(natshttp_txn *t, const void *data, size_t n)
{
    natsStatus ns;
    if (t->v2) {
        char reply[128];
        snprintf(reply, sizeof reply, "%s.%" PRId64, t->ctl, t->seq);
        if (t->seq == t->hooks->drop_seq)
            ns = NATS_OK;
        else
            ns = natsConnection_PublishRequest(t->nc, t->reply, reply, data, (int)n);
        if (ns == NATS_OK && t->seq == t->hooks->dup_seq)
            ns = natsConnection_PublishRequest(t->nc, t->reply, reply, data, (int)n);
    } else {
        ns = natsConnection_Publish(t->nc, t->reply, data, (int)n);
    }
    nh_flush_kick(t->nc);
    t->seq++;
    if (ns == NATS_OK)
        nh_metrics_bytes(t->metrics, 0, n);
    return natshttp_status_from_nats(ns);
}

natshttp_status natshttp_txn_write(natshttp_txn *t, const void *data, size_t len, size_t *taken)
{
    natshttp_status st = NATSHTTP_OK;
    const uint8_t *p = data;
    size_t done = 0;
    pthread_mutex_lock(&t->mu);
    if (len == 0) {
        /* Nothing to send (an empty piece would end a v1 body); this is how
         * a writer asks whether the client is still there. */
        st = t->cancelled ? NATSHTTP_CANCELLED : NATSHTTP_OK;
        goto out;
    }
    if (t->cancelled) {
        st = NATSHTTP_CANCELLED;
        goto out;
    }
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
            if (!t->head_sent)
                room = room > t->head_size + 1 ? room - t->head_size : 1;
            size_t n = len - done < room ? len - done : room;
            if (t->v2) {
                int64_t avail = t->allowed - t->sent;
                if (avail <= 0) {
                    t->want_writable = true;
                    st = NATSHTTP_AGAIN;
                    break;
                }
                if ((int64_t)n > avail)
                    n = (size_t)avail;
            }
            st = t->head_sent ? publish_piece(t, p + done, n) : publish_head(t, p + done, n);
            if (st == NATSHTTP_OK) {
                t->sent += (int64_t)n;
                done += n;
                t->last_progress = nh_now_ms();
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

/* Ends a v2 body: t->mu held. */
static void publish_v2_end(natshttp_txn *t, const char *key, const char *value)
{
    char reply[128];
    snprintf(reply, sizeof reply, "%s.%" PRId64, t->ctl, t->seq);
    nh_publish_control(t->nc, t->reply, reply, key, value);
}

/* One line per request (docs/cli.md, "Access log"). The client address is
 * the last X-Forwarded-For entry (the gateway's view of its client), if any. */
static void access_log(natshttp_txn *t, int status, int64_t sent, bool ok, bool cancelled)
{
    if (!nh_log_enabled(NATSHTTP_LOG_INFO))
        return;
    char client[64] = "-";
    const char *xff = NULL;
    for (long i = natshttp_head_find(t->req, "X-Forwarded-For", 0); i >= 0;
         i = natshttp_head_find(t->req, "X-Forwarded-For", (size_t)i + 1)) {
        const char *n;
        natshttp_head_at(t->req, (size_t)i, &n, &xff);
    }
    if (xff) {
        const char *last = strrchr(xff, ',');
        last = last ? last + 1 : xff;
        while (*last == ' ')
            last++;
        if (*last)
            snprintf(client, sizeof client, "%s", last);
    }
    const char *q = natshttp_head_query(t->req);
    char target[1024], ct[64], tg[1024], sj[512], in[96], st[8];
    snprintf(target, sizeof target, "%s%s%s", t->raw_path, q && *q ? "?" : "", q && *q ? q : "");
    snprintf(st, sizeof st, "%d", status);
    NH_LOG_I(COMP, "access client=%s method=%s target=%s status=%s in=%" PRId64 " out=%" PRId64
                   " dur_ms=%" PRId64 " subject=%s instance=%s proto=%d%s",
             nh_logfmt(ct, sizeof ct, client), natshttp_head_method(t->req),
             nh_logfmt(tg, sizeof tg, target), status ? st : "-",
             (int64_t)t->body_received, sent, nh_now_ms() - t->created,
             nh_logfmt(sj, sizeof sj, t->subject ? t->subject : "-"),
             nh_logfmt(in, sizeof in, t->core->instance[0] ? t->core->instance : "-"),
             t->v2 ? 2 : 1, cancelled ? " end=cancelled" : !ok ? " end=aborted" : "");
}

void natshttp_txn_finish(natshttp_txn *t, bool ok)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    bool was_none = t->mode == R_NONE && !t->cancelled;   /* an error answer follows */
    if (t->cancelled) {
        /* the client is gone (or told to be): nothing more to send */
    } else if (t->mode == R_NONE) {
        publish_error(t, ok ? 500 : 502, ok ? "the server sent no response\n"
                                            : "the server failed before responding\n");
    } else if (t->mode == R_SINGLE && !t->head_sent) {
        /* Short of Content-Length: the peer sees the mismatch and fails it. */
        publish_head(t, t->buf, t->buf_len);
    } else if (t->mode == R_CHUNKED && t->v2) {
        char num[24];
        snprintf(num, sizeof num, "%" PRId64, t->sent);
        if (ok && (t->resp_cl < 0 || t->sent == t->resp_cl))
            publish_v2_end(t, NH_HDR_END, num);
        else
            publish_v2_end(t, NH_HDR_ABORT, "the server failed mid-body");
    } else if (t->mode == R_CHUNKED && !t->head_sent) {
        if (ok || t->resp_cl > 0)
            publish_head(t, NULL, 0);   /* empty body, or visibly short of its length */
        else
            publish_error(t, 502, "the server failed before the body\n");
    } else if (t->mode == R_CHUNKED) {
        if (ok && (t->resp_cl < 0 || t->sent == t->resp_cl)) {
            natsConnection_Publish(t->nc, t->reply, NULL, 0);
            nh_flush_kick(t->nc);
        } else {
            /* v1 has no abort message: the client sees the body stop (and a
             * length mismatch when it knows the length). */
            NH_LOG_I(COMP, "request %" PRIu64 ": response aborted after %" PRId64 " bytes", t->id,
                     t->sent);
        }
    }
    int status = t->resp ? natshttp_head_status(t->resp) : t->cancelled ? 499 : 0;
    int64_t sent = was_none && t->resp_cl > 0 ? t->resp_cl : t->sent;
    bool cancelled = t->cancelled;
    if (!t->counted && t->metrics) {
        t->counted = true;
        int mstatus = t->resp ? natshttp_head_status(t->resp) : 0;
        if (t->cancelled && !t->head_sent)
            mstatus = 499;   /* the client left before an answer */
        bool aborted = t->head_sent && t->mode != R_NOBODY &&
                       (!ok || t->cancelled || (t->resp_cl >= 0 && t->sent != t->resp_cl));
        nh_metrics_end(t->metrics, mstatus, nh_now_us() - t->t0_us, aborted);
    }
    t->mode = R_DONE;
    pthread_mutex_unlock(&t->mu);
    access_log(t, status, sent, ok, cancelled);
    t->core->unfinished--;
    pthread_mutex_lock(&t->core->mu);
    t->resp_over = true;
    pthread_mutex_unlock(&t->core->mu);
    maybe_release(t);
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

/* ---- receiving side (under dmu) -------------------------------------------------------- */

static void body_end(natshttp_server *s, natshttp_txn *t, natshttp_status st)
{
    pthread_mutex_lock(&t->core->mu);
    bool was_open = t->body_open;
    t->body_open = false;
    pthread_mutex_unlock(&t->core->mu);
    if (!was_open)
        return;
    if (t->body_credit)
        nh_credit_close(t->body_credit);
    if (s->cb.on_body_end)
        s->cb.on_body_end(s->ctx, t, st);
    maybe_release(t);
}

static void body_piece(natshttp_server *s, natshttp_txn *t, natsMsg *msg, nh_credit *credit)
{
    int len = natsMsg_GetDataLength(msg);
    t->body_received += len;
    nh_metrics_bytes(s->metrics, (uint64_t)len, 0);
    if (len == 0 || !s->cb.on_body) {
        if (credit && len > 0)
            nh_credit_consumed(credit, (size_t)len, natsMsg_GetReply(msg));
        natsMsg_Destroy(msg);
        return;
    }
    natshttp_chunk *ch = nh_chunk_from_msg(msg, credit);
    if (!ch) {
        natsMsg_Destroy(msg);
        return;
    }
    s->cb.on_body(s->ctx, t, ch);
}

/* Tells a parked writer to look again (more credit, or cancelled). */
static void wake_writer(natshttp_server *s, natshttp_txn *t)
{
    pthread_mutex_lock(&t->mu);
    bool wake = t->want_writable;
    t->want_writable = false;
    pthread_mutex_unlock(&t->mu);
    if (wake && s->cb.on_writable)
        s->cb.on_writable(s->ctx, t);
}

static void cancel_txn(natshttp_server *s, natshttp_txn *t, const char *why)
{
    pthread_mutex_lock(&t->mu);
    bool first = !t->cancelled;
    t->cancelled = true;
    if (t->mode != R_DONE) {
        t->want_writable = true;   /* whoever waits must learn it */
    }
    pthread_mutex_unlock(&t->mu);
    if (first)
        NH_LOG_D(COMP, "request %" PRIu64 ": cancelled (%s)", t->id, why);
    body_end(s, t, NATSHTTP_CANCELLED);
    wake_writer(s, t);
    maybe_release(t);
}

static void handshake(natshttp_server *s, natsMsg *msg, natshttp_txn *t)
{
    char subj[96];
    if (!t) {
        /* a v1 client waits for it; id 0 drops whatever follows */
        snprintf(subj, sizeof subj, "%s.0", s->inbox);
        natsConnection_PublishRequest(s->nc, natsMsg_GetReply(msg), subj, NULL, 0);
        nh_flush_kick(s->nc);
        return;
    }
    if (!t->v2) {
        natsConnection_PublishRequest(s->nc, natsMsg_GetReply(msg), t->ctl, NULL, 0);
        nh_flush_kick(s->nc);
        return;
    }
    natsMsg *m = NULL;
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, s->window);
    natsStatus ns = natsMsg_Create(&m, natsMsg_GetReply(msg), t->ctl, NULL, 0);
    if (ns == NATS_OK)
        ns = natsMsgHeader_Set(m, NH_HDR_VERSION, "2");
    if (ns == NATS_OK)
        ns = natsMsgHeader_Set(m, NH_HDR_WINDOW, num);
    if (ns == NATS_OK)
        natsConnection_PublishMsg(s->nc, m);
    natsMsg_Destroy(m);
    nh_flush_kick(s->nc);
}

/* Answers a request that could not be parsed, straight from the receiving side. */
static void reject(natshttp_server *s, natsMsg *msg, natshttp_status why)
{
    const char *reply = natsMsg_GetReply(msg);
    int status = natshttp_status_http(why);
    if (why == NATSHTTP_BAD_MESSAGE || why == NATSHTTP_INVALID)
        status = 400;
    NH_LOG_W(COMP, "rejected request on %s: %s (%d)", natsMsg_GetSubject(msg),
             natshttp_status_text(why), status);
    nh_metrics_begin(s->metrics);
    nh_metrics_end(s->metrics, status, 0, false);
    if (!reply || !*reply)
        return;
    bool chunked = false;
    if (nh_wire_request_is_chunked(msg, natsConnection_GetMaxPayload(s->nc), &chunked) ==
            NATSHTTP_OK &&
        chunked)
        handshake(s, msg, NULL);
    natshttp_txn tmp = {.nc = s->nc, .reply = (char *)reply, .mode = R_NONE, .metrics = s->metrics};
    tmp.max_payload = natsConnection_GetMaxPayload(s->nc);
    char text[160];
    snprintf(text, sizeof text, "natshttp: %s\n", natshttp_status_text(why));
    publish_error(&tmp, status, text);
    natshttp_head_free(tmp.resp);
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
        t->refs = 2;   /* the application's and the receiving side's */
        t->core = s->core;
        s->core->refs++;
        t->nc = s->nc;
        t->id = ++s->next_id;
        t->resp_cl = -1;
        t->created = nh_now_ms();
        t->hooks = &s->hooks;
        t->max_payload = natsConnection_GetMaxPayload(s->nc);
        snprintf(t->ctl, sizeof t->ctl, "%s.%" PRIu64, s->inbox, t->id);
        t->reply = strdup(reply);
        t->subject = strdup(natsMsg_GetSubject(msg));
        st = t->reply && t->subject ? nh_wire_parse_request(msg, &s->route, t->req, &t->raw_path,
                                                            &t->path, &t->path_len)
                                    : NATSHTTP_NOMEM;
    }
    bool chunked = false;
    if (st == NATSHTTP_OK)
        st = nh_wire_request_is_chunked(msg, t->max_payload, &chunked);
    if (st != NATSHTTP_OK) {
        reject(s, msg, st);
        natsMsg_Destroy(msg);
        if (t && t->req) {
            t->refs = 1;
            txn_unref(t);
        } else if (t) {
            free(t);
        }
        return;
    }
    t->is_head = strcmp(natshttp_head_method(t->req), "HEAD") == 0;
    t->metrics = s->metrics;
    t->t0_us = nh_now_us();
    s->core->unfinished++;
    nh_metrics_begin(s->metrics);
    if (s->window > 0) {
        const char *ver = nh_msg_header(msg, NH_HDR_VERSION);
        int64_t w = nh_parse_u63(nh_msg_header(msg, NH_HDR_WINDOW));
        t->v2 = ver && strcmp(ver, "2") == 0 && w > 0;
        t->allowed = w;
    }
    NH_LOG_D(COMP, "request %" PRIu64 ": %s %s%s", t->id, natshttp_head_method(t->req),
             t->raw_path, t->v2 ? " (v2)" : "");

    int first_len = natsMsg_GetDataLength(msg);
    /* v1: a chunked body whose first message has no data is empty; v2 ends it explicitly. */
    bool more = chunked && (first_len > 0 || t->v2);
    t->body_open = true;
    t->body_last = nh_now_ms();
    t->body_seq = first_len > 0 ? 1 : 0;
    t->body_received = 0;
    if (more && t->v2) {
        t->body_credit = nh_credit_new(s->nc, s->window, t->ctl);
        if (!t->body_credit)
            more = false;
    }
    if (more || t->v2) {
        pthread_mutex_lock(&s->core->mu);
        if (nh_table_put(&s->core->active, t->id, t) == 0) {
            t->in_table = true;
            t->refs++;
        } else {
            more = false;
        }
        pthread_mutex_unlock(&s->core->mu);
    }
    if (chunked) {
        handshake(s, msg, t);
        t->told_ctl = true;
    }
    if (s->cb.on_request)
        s->cb.on_request(s->ctx, t, t->req);
    else
        natshttp_txn_reply(t, 501, "text/plain", "no handler\n", 11);
    body_piece(s, t, msg, NULL);   /* the first message's data is not under credit */
    if (!more)
        body_end(s, t, NATSHTTP_OK);
    txn_unref(t);   /* the receiving side's */
}

/* A message on our private subject: a body piece, a credit or a cancel. */
static void on_private_msg(natshttp_server *s, natsMsg *msg)
{
    uint64_t id = 0;
    int64_t seq = -1;
    natshttp_txn *t = NULL;
    if (nh_parse_ids(natsMsg_GetSubject(msg), strlen(s->inbox), &id, &seq))
        t = lookup(s->core, id);
    if (!t) {
        natsMsg_Destroy(msg);
        return;
    }
    const char *credit = nh_msg_header(msg, NH_HDR_CREDIT);
    const char *cancel = nh_msg_header(msg, NH_HDR_CANCEL);
    if (cancel) {
        cancel_txn(s, t, cancel);
    } else if (credit) {
        int64_t n = nh_parse_u63(credit);
        pthread_mutex_lock(&t->mu);
        if (n > 0)   /* any u63 a peer sends: saturate instead of overflowing */
            t->allowed = t->allowed > INT64_MAX - n ? INT64_MAX : t->allowed + n;
        t->last_progress = nh_now_ms();
        pthread_mutex_unlock(&t->mu);
        wake_writer(s, t);
    } else if (t->body_open) {
        t->body_last = nh_now_ms();
        int len = natsMsg_GetDataLength(msg);
        if (!t->v2) {
            if (len == 0) {
                body_end(s, t, NATSHTTP_OK);
            } else {
                body_piece(s, t, msg, NULL);
                msg = NULL;
            }
        } else {
            /* the piece's number rides in its reply: "<client inbox>.<id>.<seq>" */
            const char *reply = natsMsg_GetReply(msg);
            const char *dot = reply ? strrchr(reply, '.') : NULL;
            int64_t pseq = dot ? nh_parse_u63(dot + 1) : -1;
            const char *end = nh_msg_header(msg, NH_HDR_END);
            if (pseq != t->body_seq) {
                NH_LOG_W(COMP, "request %" PRIu64 ": body piece %" PRId64 " where %" PRId64
                         " was due (lost or repeated); aborted", t->id, pseq, t->body_seq);
                body_end(s, t, NATSHTTP_TRUNCATED);
            } else if (end) {
                int64_t total = nh_parse_u63(end);
                int64_t first = t->body_received;   /* all counted, the first included */
                if (total != first) {
                    NH_LOG_W(COMP, "request %" PRIu64 ": body of %" PRId64 " bytes, the client sent %s",
                             t->id, first, end);
                    body_end(s, t, NATSHTTP_TRUNCATED);
                } else {
                    body_end(s, t, NATSHTTP_OK);
                }
            } else if (len == 0) {
                body_end(s, t, NATSHTTP_BAD_MESSAGE);
            } else {
                t->body_seq++;
                body_piece(s, t, msg, t->body_credit);
                msg = NULL;
            }
        }
    }
    if (msg)
        natsMsg_Destroy(msg);
    txn_unref(t);
}

static void check_timeouts(natshttp_server *s, int64_t now)
{
    natshttp_txn *list[64];
    size_t n = 0;
    pthread_mutex_lock(&s->core->mu);
    for (size_t i = 0; i < s->core->active.cap && n < 64; i++) {
        natshttp_txn *t = s->core->active.ids[i] ? s->core->active.slots[i] : NULL;
        if (!t)
            continue;
        if (t->v2 && !t->told_ctl && now - t->created > NH_ANNOUNCE_MS) {
            /* A slow answer: tell the client where a cancel goes (protocol.md 8.5). */
            t->told_ctl = true;
            pthread_mutex_lock(&t->mu);
            bool unanswered = t->mode == R_NONE && !t->cancelled;
            pthread_mutex_unlock(&t->mu);
            if (unanswered)
                nh_publish_control(s->nc, t->reply, t->ctl, NH_HDR_VERSION, "2");
        }
        bool stalled_body = t->body_open && now - t->body_last > s->idle_ms;
        bool stalled_resp = t->v2 && !t->resp_over && t->want_writable &&
                            now - t->last_progress > s->idle_ms;
        if (stalled_body || stalled_resp) {
            t->refs++;
            list[n++] = t;
        }
    }
    pthread_mutex_unlock(&s->core->mu);
    for (size_t i = 0; i < n; i++) {
        natshttp_txn *t = list[i];
        if (t->body_open) {
            NH_LOG_W(COMP, "request %" PRIu64 ": request body stalled; aborted", t->id);
            body_end(s, t, NATSHTTP_TRUNCATED);
        } else {
            NH_LOG_W(COMP, "request %" PRIu64 ": the client took nothing for %" PRId64
                     " ms; aborted", t->id, s->idle_ms);
            pthread_mutex_lock(&t->mu);
            if (t->head_sent)
                publish_v2_end(t, NH_HDR_ABORT, "idle");
            pthread_mutex_unlock(&t->mu);
            cancel_txn(s, t, "idle");
        }
        txn_unref(t);
    }
}

static void *dispatch_main(void *arg)
{
    natshttp_server *s = arg;
    int64_t last_scan = nh_now_ms();
    for (;;) {
        void *item = nh_queue_pop(&s->q, TICK_MS);
        if (item) {
            free(NH_CMD_PTR(item));
            break;   /* CMD_STOP, the only command */
        }
        int64_t now = nh_now_ms();
        if (now - last_scan >= TICK_MS) {
            last_scan = now;
            pthread_mutex_lock(&s->dmu);
            check_timeouts(s, now);
            pthread_mutex_unlock(&s->dmu);
        }
    }
    return NULL;
}

/* nats.c's delivery thread of either subscription: the message is handled here. */
static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    natshttp_server *s = closure;
    const char *subj = natsMsg_GetSubject(msg);
    pthread_mutex_lock(&s->dmu);
    if (strncmp(subj, s->inbox, s->inbox_len) == 0 && subj[s->inbox_len] == '.')
        on_private_msg(s, msg);
    else
        on_request(s, msg);
    pthread_mutex_unlock(&s->dmu);
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
    if (!out || !nc || !opts || !nh_prefix_valid(opts->subject) || !cb)
        return NATSHTTP_INVALID;
    if (opts->protocol != 0 && opts->protocol != 1 && opts->protocol != 2)
        return NATSHTTP_INVALID;
    if (opts->layout != NATSHTTP_LAYOUT_NATIVE && opts->layout != NATSHTTP_LAYOUT_COMPAT)
        return NATSHTTP_INVALID;
    if (!nh_inbox_prefix_valid(opts->inbox_prefix))
        return NATSHTTP_INVALID;
    natshttp_server *s = calloc(1, sizeof *s);
    if (!s)
        return NATSHTTP_NOMEM;
    s->core = calloc(1, sizeof *s->core);
    if (!s->core) {
        free(s);
        return NATSHTTP_NOMEM;
    }
    s->core->refs = 1;
    pthread_mutex_init(&s->core->mu, NULL);
    if (opts->instance) {
        bool ok = strlen(opts->instance) < sizeof s->core->instance && *opts->instance;
        for (const char *p = opts->instance; ok && *p; p++)
            ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
        if (!ok) {
            NH_LOG_E(COMP, "instance name must be 1 to 63 printable characters without spaces");
            core_unref(s->core);
            free(s);
            return NATSHTTP_INVALID;
        }
        snprintf(s->core->instance, sizeof s->core->instance, "%s", opts->instance);
    }
    s->nc = nc;
    s->cb = *cb;
    s->ctx = ctx;
    s->metrics = opts->metrics;
    s->max_head = opts->max_head ? opts->max_head : NATSHTTP_DEFAULT_MAX_HEAD;
    s->idle_ms = opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : NH_DEFAULT_IDLE_MS;
    s->window = opts->protocol == 1 ? 0 : opts->window > 0 ? opts->window : NH_DEFAULT_WINDOW;
    nh_hooks_load(&s->hooks);
    pthread_mutex_init(&s->dmu, NULL);
    pthread_mutex_init(&s->done_mu, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    s->prefix = strdup(opts->subject);
    s->route = (nh_route){s->prefix, opts->layout, opts->allow_dot_segments};
    if (!s->prefix || nh_queue_init(&s->q) != 0) {
        free(s->prefix);
        core_unref(s->core);
        free(s);
        return NATSHTTP_NOMEM;
    }

    char subj[NH_MAX_SUBJECT];
    natsStatus ns = nh_make_inbox(s->inbox, sizeof s->inbox, opts->inbox_prefix);
    s->inbox_len = strlen(s->inbox);
    if (ns == NATS_OK) {
        snprintf(subj, sizeof subj, "%s.>", s->inbox);
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
    if (s->req_drained)
        expect++;   /* the drain's completion; a draining subscription is not unsubscribed again */
    else if (s->req_sub && natsSubscription_Unsubscribe(s->req_sub) == NATS_OK)
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
        if (cmd)
            cmd->type = CMD_STOP;
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
    /* Nothing will arrive for the txns still held: end their bodies and
     * wake their writers, who then see CANCELLED. */
    for (;;) {
        natshttp_txn *t = NULL;
        pthread_mutex_lock(&s->core->mu);
        for (size_t i = 0; i < s->core->active.cap && !t; i++)
            if (s->core->active.ids[i]) {
                t = s->core->active.slots[i];
                t->refs++;
            }
        pthread_mutex_unlock(&s->core->mu);
        if (!t)
            break;
        /* The client must hear it: an answer if there was none, an abort if
         * a v2 body was under way (a v1 body can only stop). */
        pthread_mutex_lock(&t->mu);
        if (!t->cancelled && t->mode == R_NONE) {
            publish_error(t, 503, "natshttp: the server is stopping\n");
            t->mode = R_DONE;
        } else if (!t->cancelled && t->mode == R_CHUNKED && t->v2 && t->head_sent) {
            publish_v2_end(t, NH_HDR_ABORT, "server stopping");
        }
        pthread_mutex_unlock(&t->mu);
        cancel_txn(s, t, "server stopping");
        pthread_mutex_lock(&s->core->mu);
        if (t->in_table) {
            nh_table_del(&s->core->active, t->id);
            t->in_table = false;
            t->refs--;   /* the library's hold, dropped below with ours */
        }
        pthread_mutex_unlock(&s->core->mu);
        txn_unref(t);
    }
    nh_queue_destroy(&s->q);
    pthread_mutex_destroy(&s->dmu);
    pthread_mutex_destroy(&s->done_mu);
    pthread_cond_destroy(&s->done_cv);
    free(s->prefix);
    core_unref(s->core);
    free(s);
}

natshttp_status natshttp_server_drain(natshttp_server *s, int64_t timeout_ms)
{
    if (!s)
        return NATSHTTP_INVALID;
    int64_t until = nh_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    bool done = false;
    /* Disconnected, the drain could only time out (nats.c waits for the
     * server's acknowledgement): natshttp_server_free unsubscribes instead. */
    bool connected = natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED;
    if (s->req_sub && !s->req_drained && connected &&
        natsSubscription_DrainTimeout(s->req_sub, timeout_ms > 1000 ? timeout_ms : 1000) == NATS_OK) {
        s->req_drained = true;
        /* Every request NATS delivered has become a txn once the drain completes. */
        pthread_mutex_lock(&s->done_mu);
        while (s->subs_done < 1 && nh_now_ms() < until &&
               natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED) {
            struct timespec ts = nh_deadline(CLOCK_REALTIME, 20);
            pthread_cond_timedwait(&s->done_cv, &s->done_mu, &ts);
        }
        pthread_mutex_unlock(&s->done_mu);
    }
    for (;;) {
        /* A txn whose response is over may still wait for the rest of a
         * request body nobody reads (an upload refused early): not waited for. */
        done = s->core->unfinished == 0;
        if (done || nh_now_ms() >= until)
            break;
        if (natsConnection_Status(s->nc) != NATS_CONN_STATUS_CONNECTED) {
            /* Nothing under way can reach its client now: do not wait for it. */
            NH_LOG_W(COMP, "not connected to NATS: not waiting for the requests under way");
            break;
        }
        usleep(20 * 1000);
    }
    if (!done && s->core->unfinished > 0)
        NH_LOG_W(COMP, "%d request(s) still under way; aborting them", (int)s->core->unfinished);
    return done ? NATSHTTP_OK : NATSHTTP_TIMEOUT;
}
