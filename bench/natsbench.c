/* natsbench.c - the raw NATS baselines of bench/run, on nats.c alone.
 *
 *   natsbench reply   URL SUBJECT SIZE [FLUSH]
 *       answers every message on SUBJECT with SIZE bytes; prints "ready";
 *       runs until SIGTERM/SIGINT.
 *   natsbench request URL SUBJECT CONC SECONDS [FLUSH]
 *       keeps CONC requests (100 bytes each) in flight on one connection for
 *       SECONDS (after a 0.5 s warm-up), each reply's arrival publishing the
 *       next request; prints "requests N rate R p50_us P p99_us Q bytes B".
 *   natsbench stream  URL SUBJECT BYTES CHUNK WINDOW [FLUSH]
 *       publishes BYTES in CHUNK-byte messages from one connection to a
 *       subscriber on a second one, never more than WINDOW bytes unacknowledged
 *       (the subscriber acknowledges every WINDOW/4 bytes, as natshttp v2 grants
 *       credit), so nothing can be lost; checks the count and prints
 *       "bytes B seconds T mibs M".
 *
 * FLUSH is how publishes reach the socket: "buffered" (nats.c's default: a
 * flusher thread, about 1 ms later), "asap" (natsOptions_SetSendAsap: a
 * write per publish) or "kick" (buffered, and a thread of ours flushes with
 * natsConnection_FlushTimeout after each reply or request: see kicker).
 *
 * Shape of `request`: publish with a reply subject and take replies on one
 * wildcard inbox subscription, as natshttp's client does, rather than
 * natsConnection_Request (which flushes at once and blocks a thread per
 * request).
 */
#include <nats/nats.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int die(const char *what, natsStatus s)
{
    fprintf(stderr, "natsbench: %s: %s\n", what, natsStatus_GetText(s));
    return 1;
}

/* "kick": buffered, plus a thread that flushes the buffer at once whenever a
 * publisher has finished a unit of work (natsConnection_FlushTimeout writes
 * a PING and everything buffered before it in place, then waits for the
 * PONG; publishes that arrive meanwhile go out with the next round). */
typedef struct kicker {
    natsConnection *nc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, quit;
    pthread_t th;
} kicker;

static void *kicker_main(void *arg)
{
    kicker *k = arg;
    pthread_mutex_lock(&k->mu);
    while (!k->quit) {
        if (!k->pending) {
            pthread_cond_wait(&k->cv, &k->mu);
            continue;
        }
        k->pending = 0;
        pthread_mutex_unlock(&k->mu);
        natsConnection_FlushTimeout(k->nc, 1000);
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

static kicker *kicker_new(natsConnection *nc, const char *flush)
{
    if (!flush || strcmp(flush, "kick") != 0)
        return NULL;
    kicker *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->nc = nc;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    pthread_create(&k->th, NULL, kicker_main, k);
    return k;
}

static void kick(kicker *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    if (!k->pending) {
        k->pending = 1;
        pthread_cond_signal(&k->cv);
    }
    pthread_mutex_unlock(&k->mu);
}

static void kicker_free(kicker *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->quit = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->th, NULL);
    free(k);
}

static natsStatus connect_to(natsConnection **nc, const char *url, const char *flush)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK && flush && strcmp(flush, "asap") == 0)
        s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    return s;
}

/* ---- reply */

typedef struct replier {
    natsConnection *nc;
    kicker *k;
    char *payload;
    int size;
} replier;

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    replier *r = closure;
    const char *reply = natsMsg_GetReply(m);
    if (reply)
        natsConnection_Publish(r->nc, reply, r->payload, r->size);
    natsMsg_Destroy(m);
    kick(r->k);
}

static int cmd_reply(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    replier r = {.size = atoi(argv[2])};
    natsSubscription *sub = NULL;
    r.payload = malloc((size_t)r.size + 1);
    if (!r.payload)
        return 1;
    memset(r.payload, 'r', (size_t)r.size);
    natsStatus s = connect_to(&r.nc, argv[0], argc > 3 ? argv[3] : NULL);
    if (s == NATS_OK)
        r.k = kicker_new(r.nc, argc > 3 ? argv[3] : NULL);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&sub, r.nc, argv[1], on_request, &r);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_Flush(r.nc);
    if (s != NATS_OK)
        return die("reply", s);
    fprintf(stderr, "natsbench reply: ready subject=%s size=%d\n", argv[1], r.size);
    while (!stop)
        usleep(50 * 1000);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    kicker_free(r.k);
    natsConnection_Destroy(r.nc);
    free(r.payload);
    return 0;
}

/* ---- request */

#define MAX_SAMPLES (16 * 1024 * 1024)

typedef struct requester {
    natsConnection *nc;
    kicker *k;
    const char *subject;
    char inbox[128];
    int conc;
    int64_t *sent_at;      /* per slot */
    int64_t *lat;          /* samples, ns */
    size_t nlat;
    int64_t measure_from, measure_until;
    uint64_t bytes;
    volatile int running;
    pthread_mutex_t mu;
    char body[100];
} requester;

static void send_slot(requester *q, int slot)
{
    char reply[160];
    snprintf(reply, sizeof reply, "%s.%d", q->inbox, slot);
    q->sent_at[slot] = now_ns();
    natsConnection_PublishRequest(q->nc, q->subject, reply, q->body, (int)sizeof q->body);
    kick(q->k);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    requester *q = closure;
    const char *subj = natsMsg_GetSubject(m);
    const char *dot = strrchr(subj, '.');
    int slot = dot ? atoi(dot + 1) : -1;
    if (slot >= 0 && slot < q->conc) {
        int64_t t = now_ns();
        pthread_mutex_lock(&q->mu);
        if (t >= q->measure_from && t < q->measure_until && q->nlat < MAX_SAMPLES) {
            q->lat[q->nlat++] = t - q->sent_at[slot];
            q->bytes += (uint64_t)natsMsg_GetDataLength(m);
        }
        pthread_mutex_unlock(&q->mu);
        if (q->running)
            send_slot(q, slot);
    }
    natsMsg_Destroy(m);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_request(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    requester q = {.subject = argv[1], .conc = atoi(argv[2]), .running = 1};
    double seconds = atof(argv[3]);
    natsSubscription *sub = NULL;
    pthread_mutex_init(&q.mu, NULL);
    memset(q.body, 'q', sizeof q.body);
    q.sent_at = calloc((size_t)q.conc, sizeof *q.sent_at);
    q.lat = malloc(MAX_SAMPLES * sizeof *q.lat);
    if (!q.sent_at || !q.lat || q.conc < 1)
        return 1;
    natsStatus s = connect_to(&q.nc, argv[0], argc > 4 ? argv[4] : NULL);
    if (s == NATS_OK)
        q.k = kicker_new(q.nc, argc > 4 ? argv[4] : NULL);
    char sub_subj[160];
    natsInbox *ib = NULL;
    if (s == NATS_OK)
        s = natsInbox_Create(&ib);
    if (s == NATS_OK) {
        snprintf(q.inbox, sizeof q.inbox, "%s", (const char *)ib);
        snprintf(sub_subj, sizeof sub_subj, "%s.*", q.inbox);
        s = natsConnection_Subscribe(&sub, q.nc, sub_subj, on_reply, &q);
    }
    natsInbox_Destroy(ib);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_Flush(q.nc);
    if (s != NATS_OK)
        return die("request", s);
    int64_t t0 = now_ns();
    q.measure_from = t0 + 500 * 1000000LL;
    q.measure_until = q.measure_from + (int64_t)(seconds * 1e9);
    for (int i = 0; i < q.conc; i++)
        send_slot(&q, i);
    while (now_ns() < q.measure_until && !stop)
        usleep(10 * 1000);
    q.running = 0;
    usleep(200 * 1000);
    pthread_mutex_lock(&q.mu);
    size_t n = q.nlat;
    pthread_mutex_unlock(&q.mu);
    qsort(q.lat, n, sizeof *q.lat, cmp_i64);
    double p50 = n ? (double)q.lat[n / 2] / 1e3 : 0, p99 = n ? (double)q.lat[n * 99 / 100] / 1e3 : 0;
    printf("requests %zu rate %.1f p50_us %.1f p99_us %.1f bytes %" PRIu64 "\n", n,
           (double)n / seconds, p50, p99, q.bytes);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    kicker_free(q.k);
    natsConnection_Destroy(q.nc);
    free(q.sent_at);
    free(q.lat);
    return n ? 0 : 1;
}

/* ---- stream */

typedef struct streamer {
    natsConnection *pub, *sub;
    char ack_subj[160];
    int64_t window;
    int64_t received, acked_sent;   /* subscriber side (delivery thread only) */
    int64_t msgs;
    int64_t acked;                   /* publisher side, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} streamer;

static void on_chunk(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    streamer *st = closure;
    int len = natsMsg_GetDataLength(m);
    st->received += len;
    st->msgs++;
    natsMsg_Destroy(m);
    if (st->received - st->acked_sent >= st->window / 4 || len == 0) {
        char n[32];
        int nlen = snprintf(n, sizeof n, "%" PRId64, st->received);
        st->acked_sent = st->received;
        natsConnection_Publish(st->sub, st->ack_subj, n, nlen);
    }
}

static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    streamer *st = closure;
    char n[32] = "";
    int len = natsMsg_GetDataLength(m);
    if (len > 0 && len < (int)sizeof n)
        memcpy(n, natsMsg_GetData(m), (size_t)len);
    natsMsg_Destroy(m);
    pthread_mutex_lock(&st->mu);
    st->acked = strtoll(n, NULL, 10);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static int cmd_stream(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    streamer st = {.window = atoll(argv[4])};
    int64_t total = atoll(argv[2]), chunk = atoll(argv[3]);
    const char *flush = argc > 5 ? argv[5] : NULL;
    natsSubscription *dsub = NULL, *asub = NULL;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    snprintf(st.ack_subj, sizeof st.ack_subj, "%s.ack", argv[1]);
    char *buf = calloc(1, (size_t)chunk);
    if (!buf || chunk < 1 || st.window < chunk)
        return 2;
    natsStatus s = connect_to(&st.pub, argv[0], flush);
    if (s == NATS_OK)
        s = connect_to(&st.sub, argv[0], flush);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&dsub, st.sub, argv[1], on_chunk, &st);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(dsub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&asub, st.pub, st.ack_subj, on_ack, &st);
    if (s == NATS_OK)
        s = natsConnection_Flush(st.sub);
    if (s == NATS_OK)
        s = natsConnection_Flush(st.pub);
    if (s != NATS_OK)
        return die("stream", s);
    int64_t t0 = now_ns(), sent = 0;
    while (s == NATS_OK && sent < total && !stop) {
        int64_t n = total - sent < chunk ? total - sent : chunk;
        pthread_mutex_lock(&st.mu);
        while (sent + n - st.acked > st.window && !stop)
            pthread_cond_wait(&st.cv, &st.mu);
        pthread_mutex_unlock(&st.mu);
        s = natsConnection_Publish(st.pub, argv[1], buf, (int)n);
        sent += n;
    }
    if (s == NATS_OK)
        s = natsConnection_Publish(st.pub, argv[1], NULL, 0);   /* the end: acked at once */
    pthread_mutex_lock(&st.mu);
    while (s == NATS_OK && st.acked < total && !stop)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    double secs = (double)(now_ns() - t0) / 1e9;
    int64_t dropped = 0;
    natsSubscription_GetDropped(dsub, &dropped);
    if (s != NATS_OK || st.received != total || dropped)
        fprintf(stderr, "natsbench stream: received %" PRId64 " of %" PRId64 ", %" PRId64
                " dropped: %s\n", st.received, total, dropped, natsStatus_GetText(s));
    else
        printf("bytes %" PRId64 " seconds %.3f mibs %.1f msgs %" PRId64 "\n", total, secs,
               (double)total / 1048576.0 / secs, st.msgs);
    natsSubscription_Destroy(dsub);
    natsSubscription_Destroy(asub);
    natsConnection_Destroy(st.pub);
    natsConnection_Destroy(st.sub);
    free(buf);
    return st.received == total && !dropped ? 0 : 1;
}

int main(int argc, char **argv)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "reply") == 0)
        rc = cmd_reply(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "request") == 0)
        rc = cmd_request(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "stream") == 0)
        rc = cmd_stream(argc - 2, argv + 2);
    if (rc == 2)
        fprintf(stderr, "usage: natsbench reply URL SUBJECT SIZE [buffered|asap|kick]\n"
                        "       natsbench request URL SUBJECT CONC SECONDS [buffered|asap|kick]\n"
                        "       natsbench stream URL SUBJECT BYTES CHUNK WINDOW [buffered|asap|kick]\n");
    nats_Close();
    return rc;
}
