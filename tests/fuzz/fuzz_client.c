/* fuzz_client.c - a whole sequence of response messages into a client call.
 *
 * A client made by nh_client_new_pumped runs its receiving state machine on
 * this thread (nh_client_pump), fed through nh_client_deliver exactly as its
 * subscription feeds it. Its connection is a real nats.c connection that
 * never connects (its server address refuses connections): what the client
 * publishes (the request, credits, cancels, upload pieces) is held in
 * nats.c's reconnect buffer and never sent. The connection is replaced
 * every CONN_USES inputs, and an input uploads at most MAX_UPLOAD bytes, so
 * that buffer never fills.
 *
 * Input: one config byte, then records until the input ends:
 *     kind u8 | a u8 | b u16 | hlen u8 | hlen header bytes | dlen u16 | data
 * kinds: head, body piece, end, abort, handshake, announcement, credit, no
 * responders, junk, and the application's side: write, end of body, cancel,
 * free held chunks. Templated fields come from a and b; the header bytes are
 * extra "Name: value" lines (junk: also the subject). See README.md.
 *
 * Invariants: on_end exactly once, nothing after it, on_head at most once and
 * before any body, body bytes never past Content-Length, none for HEAD, 1xx,
 * 204 and 304, and an OK end only with all of the announced body delivered;
 * no leak, no crash (the sanitizers). */
#include "fuzz.h"

#include <stdarg.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_USES 16
#define MAX_UPLOAD (1024 * 1024)   /* per input: CONN_USES of them fit the reconnect buffer */
#define MAX_RECORDS 128
#define PREFIX "demo.site"
static const nh_route ROUTE = {PREFIX, NATSHTTP_LAYOUT_NATIVE, false};   /* the client's default */
#define SRV_CTL "_INBOX.srv.77"

enum {
    K_HEAD, K_PIECE, K_END, K_ABORT, K_HANDSHAKE, K_ANNOUNCE, K_CREDIT, K_NORESP, K_JUNK,
    K_WRITE, K_END_BODY, K_CANCEL, K_FREE_HELD, K_COUNT
};

static natsConnection *conn;
static int conn_uses;
static int refuse_fd = -1;
static char refuse_url[64];

static void on_connected(natsConnection *nc, void *closure) { (void)nc, (void)closure; }

static void conn_drop(void)
{
    natsConnection_Destroy(conn);
    conn = NULL;
}

static natsConnection *conn_get(void)
{
    if (conn && conn_uses++ < CONN_USES)
        return conn;
    conn_drop();
    if (refuse_fd < 0) {
        /* A bound port nobody listens on: every connect is refused, and no other
         * process can take the port while we hold it. */
        struct sockaddr_in a = {0};
        socklen_t l = sizeof a;
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
        if (refuse_fd < 0 || bind(refuse_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(refuse_fd, (struct sockaddr *)&a, &l) != 0)
            abort();
        snprintf(refuse_url, sizeof refuse_url, "nats://127.0.0.1:%d", ntohs(a.sin_port));
        const char *lv = getenv("NATSHTTP_FUZZ_LOG");
        natshttp_log_set_level(lv ? (natshttp_log_level)atoi(lv) : NATSHTTP_LOG_ERROR);
    }
    natsOptions *o = NULL;
    if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, refuse_url) != NATS_OK ||
        natsOptions_SetRetryOnFailedConnect(o, true, on_connected, NULL) != NATS_OK ||
        natsOptions_SetMaxReconnect(o, -1) != NATS_OK ||
        /* Short: natsConnection_Destroy waits out the reconnect thread's pause
         * (nats.c 3.4.1 does not wake it), a refused connect costs little. */
        natsOptions_SetReconnectWait(o, 10) != NATS_OK ||
        natsOptions_SetReconnectJitter(o, 0, 0) != NATS_OK ||
        natsOptions_SetReconnectBufSize(o, 32 * 1024 * 1024) != NATS_OK)
        abort();
    natsStatus ns = natsConnection_Connect(&conn, o);
    natsOptions_Destroy(o);
    if (ns != NATS_NOT_YET_CONNECTED || !conn)
        abort();
    conn_uses = 1;
    return conn;
}

/* Where the first message of the request goes: a server reads it back. */
static natsStatus first_out(void *ctx, natsMsg *m)
{
    natshttp_head *req = NULL;
    char *raw = NULL, *dec = NULL;
    size_t dl = 0;
    natshttp_head_new(&req, 0);
    FUZZ_CHECK(nh_wire_parse_request(m, &ROUTE, req, &raw, &dec, &dl) == NATSHTTP_OK);
    FUZZ_CHECK(strcmp(dec, "/a/b c") == 0 && strcmp(raw, "/a/b%20c") == 0);
    free(raw);
    free(dec);
    natshttp_head_free(req);
    return NATS_OK;
}

typedef struct state {
    natshttp_call *call;     /* NULL once on_end ran */
    int ends, heads;
    natshttp_status end_status;
    int64_t body, resp_cl;
    int resp_status;
    bool is_head, keep;
    natshttp_chunk **held;
    size_t nheld, capheld;
} state;

static void cb_head(void *ctx, natshttp_call *call, const natshttp_head *resp)
{
    state *s = ctx;
    FUZZ_CHECK(s->ends == 0 && s->heads == 0 && call == s->call);
    s->heads++;
    s->resp_status = natshttp_head_status(resp);
    FUZZ_CHECK(s->resp_status >= 100 && s->resp_status <= 999);
    FUZZ_CHECK(natshttp_head_content_length(resp, &s->resp_cl) == NATSHTTP_OK);
    for (size_t i = 0; i < natshttp_head_count(resp); i++) {
        const char *n, *v;
        natshttp_head_at(resp, i, &n, &v);
        FUZZ_CHECK(!nh_is_wire_header(n));
    }
}

static bool no_body(const state *s)
{
    return s->is_head || s->resp_status < 200 || s->resp_status == 204 || s->resp_status == 304;
}

static void cb_body(void *ctx, natshttp_call *call, natshttp_chunk *ch)
{
    state *s = ctx;
    FUZZ_CHECK(s->ends == 0 && s->heads == 1 && call == s->call);
    FUZZ_CHECK(!no_body(s));
    size_t n = natshttp_chunk_len(ch);
    FUZZ_CHECK(n > 0 && natshttp_chunk_data(ch) != NULL);
    s->body += (int64_t)n;
    FUZZ_CHECK(s->resp_cl < 0 || s->body <= s->resp_cl);
    if (!s->keep) {
        natshttp_chunk_free(ch);
        return;
    }
    if (s->nheld == s->capheld) {
        s->capheld = s->capheld ? s->capheld * 2 : 8;
        s->held = realloc(s->held, s->capheld * sizeof *s->held);
        if (!s->held)
            abort();
    }
    s->held[s->nheld++] = ch;
}

static void cb_writable(void *ctx, natshttp_call *call)
{
    state *s = ctx;
    FUZZ_CHECK(s->ends == 0 && call == s->call);
}

static void cb_end(void *ctx, natshttp_call *call, natshttp_status st)
{
    state *s = ctx;
    FUZZ_CHECK(s->ends == 0 && call == s->call);
    s->ends++;
    s->end_status = st;
    s->call = NULL;
    if (st == NATSHTTP_OK) {
        FUZZ_CHECK(s->heads == 1);
        if (no_body(s))
            FUZZ_CHECK(s->body == 0);
        else if (s->resp_cl >= 0)
            FUZZ_CHECK(s->body == s->resp_cl);
    }
}

static void free_held(state *s)
{
    for (size_t i = 0; i < s->nheld; i++)
        natshttp_chunk_free(s->held[i]);
    s->nheld = 0;
}

static const char *const statuses[16] = {"200", "204", "304", "100", "404", "500", "206", "301",
                                         "199", "999", "099", "20",  "2000", "abc", "",   "101"};

/* Appends to a text buffer. */
typedef struct tbuf {
    char b[512];
    size_t n;
} tbuf;

static void tput(tbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tput(tbuf *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(t->b + t->n, sizeof t->b - t->n, fmt, ap);
    va_end(ap);
    if (m > 0)
        t->n += (size_t)m < sizeof t->b - t->n ? (size_t)m : sizeof t->b - t->n - 1;
}

static void put_msg(natshttp_client *c, const char *subject, const char *reply, fz_hdr_mode mode,
                 const tbuf *tmpl, const uint8_t *extra, size_t elen, const uint8_t *data,
                 size_t dlen)
{
    uint8_t hdr[sizeof tmpl->b + 256];
    size_t hl = 0;
    if (tmpl) {
        memcpy(hdr, tmpl->b, tmpl->n);
        hl = tmpl->n;
    }
    if (elen)
        memcpy(hdr + hl, extra, elen);
    hl += elen;
    natsMsg *m = fz_msg(subject, reply, mode, hdr, hl, data, dlen);
    if (m)
        nh_client_deliver(c, m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t zeros[UINT16_MAX];
    fz_in in = {data, size};
    uint8_t cfg = fz_u8(&in);
    int req_kind = (cfg >> 1) & 7;
    int64_t window = (int64_t)16 << (3 * (cfg >> 5));

    natshttp_client_options opts = {0};
    opts.subject = PREFIX;
    opts.timeout_ms = opts.idle_timeout_ms = 3600 * 1000;
    opts.protocol = cfg & 1 ? 1 : 2;
    opts.window = window;
    opts.max_head = 2048;

    natshttp_head *req = NULL;
    natshttp_head_new(&req, 0);
    static const char *const methods[8] = {"GET", "HEAD", "PUT", "PUT",
                                           "PUT", "POST", "DELETE", "GET"};
    static const int64_t body_lens[8] = {-1, -1, -2, 3 * 1024 * 1024, 16, 8, -1, -1};
    natshttp_head_set_request(req, methods[req_kind], "/a/b%20c", req_kind == 7 ? "q=1" : "");
    natshttp_head_add(req, "Accept", "*/*");
    if (body_lens[req_kind] >= 0) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)body_lens[req_kind]);
        natshttp_head_add(req, "Content-Length", num);
    }

    state s = {0};
    s.is_head = req_kind == 1;
    s.keep = cfg & 16;
    s.resp_cl = -1;
    natshttp_call_callbacks cb = {cb_head, cb_body, cb_writable, cb_end};
    natshttp_client *c = NULL;
    natshttp_status st = NATSHTTP_NATS;
    for (int attempt = 0; attempt < 2 && st == NATSHTTP_NATS; attempt++) {
        if (attempt)
            conn_drop();   /* its reconnect buffer is full: take a fresh one */
        natshttp_client_free(c);
        c = NULL;
        FUZZ_CHECK(nh_client_new_pumped(&c, conn_get(), &opts, first_out, NULL) == NATSHTTP_OK);
        st = natshttp_call_start(&s.call, c, req, body_lens[req_kind],
                                 req_kind == 5 ? "12345678" : NULL, &cb, &s);
    }
    natshttp_head_free(req);
    FUZZ_CHECK(st == NATSHTTP_OK);

    const char *inbox_reply = nh_call_reply(s.call);
    char reply[128], inbox[128];
    snprintf(reply, sizeof reply, "%s", inbox_reply);
    snprintf(inbox, sizeof inbox, "%.*s", (int)(strrchr(reply, '.') - reply), reply);
    int64_t next_seq = 0, sent = 0;
    size_t uploaded = 0;

    for (int r = 0; r < MAX_RECORDS && in.n > 0; r++) {
        int kind = fz_u8(&in) % K_COUNT;
        uint8_t a = fz_u8(&in);
        uint16_t b = fz_u16(&in);
        size_t hl, dl;
        const uint8_t *hp = fz_bytes(&in, fz_u8(&in), &hl);
        const uint8_t *dp = fz_bytes(&in, fz_u16(&in), &dl);
        if (getenv("NATSHTTP_FUZZ_TRACE"))
            fprintf(stderr, "record %d: kind %d a=0x%02x b=%u hdr %zu data %zu\n", r, kind, a, b,
                    hl, dl);
        tbuf t = {.n = 0};
        char subj[256], rep[256];
        int64_t seq = next_seq + (int8_t)a;
        snprintf(rep, sizeof rep, "%s.%lld", SRV_CTL, (long long)seq);

        switch (kind) {
        case K_HEAD:
            tput(&t, "X-Status-Code: %s\nX-Status: Fuzz\n", statuses[a >> 4]);
            if (a & 1)
                tput(&t, "Natshttp-Version: 2\n");
            if (a & 4)
                tput(&t, "Content-Length: %u\n", b);
            if (a & 8)
                tput(&t, "Transfer-Encoding: chunked\n");
            put_msg(c, reply, a & 2 ? SRV_CTL : NULL, FZ_HDR_LINES, &t, hp, hl, dp, dl);
            next_seq = dl > 0;
            sent = (int64_t)dl;
            break;
        case K_PIECE:
            put_msg(c, reply, b & 1 ? NULL : rep, FZ_HDR_LINES, NULL, hp, hl, dp, dl);
            if (a == 0) {
                next_seq++;
                sent += (int64_t)dl;
            }
            break;
        case K_END:
            tput(&t, "Natshttp-End: %lld\n", (long long)(sent + (int16_t)b));
            put_msg(c, reply, rep, FZ_HDR_LINES, &t, hp, hl, dp, dl);
            break;
        case K_ABORT:
            tput(&t, "Natshttp-Abort: %s\n", b & 1 ? "" : "upstream failed");
            put_msg(c, reply, rep, FZ_HDR_LINES, &t, hp, hl, dp, dl);
            break;
        case K_HANDSHAKE:
            if (a & 1)
                tput(&t, "Natshttp-Version: 2\n");
            if (a & 2)
                tput(&t, "Natshttp-Window: %u\n", (unsigned)b * 16);
            snprintf(subj, sizeof subj, "_INBOX.srv.chunks.%u", b);
            put_msg(c, reply, a & 4 ? SRV_CTL : subj, FZ_HDR_LINES, &t, hp, hl, dp, dl);
            break;
        case K_ANNOUNCE:
            tput(&t, "Natshttp-Version: 2\n");
            put_msg(c, reply, SRV_CTL, FZ_HDR_LINES, &t, hp, hl, NULL, 0);
            break;
        case K_CREDIT:
            tput(&t, "Natshttp-Credit: %u\n", (unsigned)b * (a & 0x80 ? 1024u : 1u));
            snprintf(subj, sizeof subj, "%s.%d", reply, a & 0x7f);
            put_msg(c, a & 0x40 ? reply : subj, NULL, FZ_HDR_LINES, &t, hp, hl, dp, dl);
            break;
        case K_NORESP: {
            static const uint8_t nr[] = "NATS/1.0 503\r\n\r\n";
            put_msg(c, reply, NULL, FZ_HDR_RAW, NULL, nr, sizeof nr - 1, NULL, 0);
            break;
        }
        case K_JUNK: {
            /* the first header line is (part of) the subject; the rest the header block */
            const uint8_t *nl = memchr(hp, '\n', hl);
            size_t first = nl ? (size_t)(nl - hp) : hl;
            char *line = fz_str(hp, first);
            if ((a & 3) == 0)
                snprintf(subj, sizeof subj, "%s%s", reply, line);
            else if ((a & 3) == 1)
                snprintf(subj, sizeof subj, "%s.%s", inbox, line);
            else if ((a & 3) == 2)
                snprintf(subj, sizeof subj, "%s", line);
            else
                snprintf(subj, sizeof subj, "%s", reply);
            const char *jr = a & 4 ? SRV_CTL : a & 8 ? line : NULL;
            size_t rest = nl ? hl - first - 1 : 0;
            put_msg(c, subj, jr, (fz_hdr_mode)((a >> 4) & 3), NULL, nl ? nl + 1 : hp, rest, dp, dl);
            free(line);
            break;
        }
        case K_WRITE:
            if (s.call && body_lens[req_kind] != -1 && uploaded + b <= MAX_UPLOAD) {
                size_t taken = 0;
                size_t n = b;   /* zeros holds any u16 */
                (void)natshttp_call_write(s.call, zeros, n, &taken);
                FUZZ_CHECK(taken <= n);
                uploaded += taken;
            }
            break;
        case K_END_BODY:
            if (s.call)
                (void)natshttp_call_end_body(s.call);
            break;
        case K_CANCEL:
            if (s.call)
                natshttp_call_cancel(s.call);
            break;
        case K_FREE_HELD:
            free_held(&s);
            break;
        }
        nh_client_pump(c);
    }

    natshttp_client_free(c);
    FUZZ_CHECK(s.ends == 1 && s.call == NULL);
    free_held(&s);   /* chunks may outlive their call and client */
    free(s.held);
    return 0;
}
