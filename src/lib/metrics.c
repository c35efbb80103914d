/* metrics.c - request counters and their Prometheus text endpoint.
 *
 * DESIGN. Counting is lock-free: every counter is an atomic, bumped by
 * whichever thread ends a request (the gateway's libmicrohttpd threads,
 * serve's dispatch and worker threads). Rendering reads them one by one, so
 * a scrape may see one request's status without its bytes; Prometheus
 * counters tolerate that. The endpoint is a libmicrohttpd daemon of its own
 * with one internal polling thread, apart from the gateway's daemon, so a
 * busy gateway cannot starve a scrape and serve needs no HTTP listener of
 * its own otherwise. */
#include "internal.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMP "metrics"
#define NH_MAX_CODE 600
#define NH_RENDER_CAP (256 * 1024)

/* Upper bounds of the duration histogram, in microseconds. */
static const int64_t bucket_us[] = {5000,    10000,   25000,   50000,    100000,   250000,
                                    500000,  1000000, 2500000, 5000000,  10000000, 30000000,
                                    60000000, 300000000};
#define NBUCKETS (sizeof bucket_us / sizeof bucket_us[0])

struct natshttp_metrics {
    natsConnection *nc;
    struct MHD_Daemon *mhd;
    uint16_t port;
    _Atomic uint64_t codes[NH_MAX_CODE];   /* index 0: no status was sent */
    _Atomic uint64_t bytes_in, bytes_out, aborted, errors;
    _Atomic int64_t in_flight;
    _Atomic uint64_t buckets[NBUCKETS];    /* not cumulative; summed when rendered */
    _Atomic uint64_t count, sum_us;
    _Atomic int last_error;                /* status, or -status when aborted */
};

int64_t nh_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void nh_metrics_begin(natshttp_metrics *m)
{
    if (m)
        m->in_flight++;
}

void nh_metrics_bytes(natshttp_metrics *m, uint64_t bytes_in, uint64_t bytes_out)
{
    if (!m)
        return;
    if (bytes_in)
        m->bytes_in += bytes_in;
    if (bytes_out)
        m->bytes_out += bytes_out;
}

void nh_metrics_end(natshttp_metrics *m, int status, int64_t duration_us, bool aborted)
{
    if (!m)
        return;
    m->in_flight--;
    m->codes[status >= 100 && status < NH_MAX_CODE ? status : 0]++;
    if (aborted)
        m->aborted++;
    if (aborted || status >= 500 || status < 100) {
        m->errors++;
        m->last_error = aborted ? -status : status;
    }
    if (duration_us < 0)
        duration_us = 0;
    size_t b = 0;
    while (b < NBUCKETS && duration_us > bucket_us[b])
        b++;
    if (b < NBUCKETS)
        m->buckets[b]++;
    m->count++;
    m->sum_us += (uint64_t)duration_us;
}

void nh_metrics_totals_get(natshttp_metrics *m, nh_metrics_totals *out)
{
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    out->requests = m->count;
    out->errors = m->errors;
    out->duration_us = m->sum_us;
    int le = m->last_error;
    out->last_error_status = le < 0 ? -le : le;
    out->last_error_aborted = le < 0;
}

/* A bounded text buffer: appends fail (and stick) past NH_RENDER_CAP. */
typedef struct tbuf {
    char *p;
    size_t len, cap;
    bool failed;
} tbuf;

static void tb_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
        } else if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        } else {
            size_t want = b->cap * 2 > b->len + (size_t)n + 1 ? b->cap * 2 : b->len + (size_t)n + 1;
            char *np = want <= NH_RENDER_CAP ? realloc(b->p, want) : NULL;
            if (!np) {
                b->failed = true;
            } else {
                b->p = np;
                b->cap = want;
            }
        }
    }
}

char *natshttp_metrics_render(natshttp_metrics *m)
{
    if (!m)
        return NULL;
    tbuf b = {malloc(8192), 0, 8192, false};
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    tb_printf(&b, "# HELP natshttp_requests_total Requests ended, by the HTTP status answered "
                  "(code 0: none was sent).\n# TYPE natshttp_requests_total counter\n");
    for (int c = 0; c < NH_MAX_CODE; c++) {
        uint64_t n = m->codes[c];
        if (n)
            tb_printf(&b, "natshttp_requests_total{code=\"%d\"} %" PRIu64 "\n", c, n);
    }
    tb_printf(&b, "# HELP natshttp_request_body_bytes_total Request body bytes received.\n"
                  "# TYPE natshttp_request_body_bytes_total counter\n"
                  "natshttp_request_body_bytes_total %" PRIu64 "\n", (uint64_t)m->bytes_in);
    tb_printf(&b, "# HELP natshttp_response_body_bytes_total Response body bytes sent.\n"
                  "# TYPE natshttp_response_body_bytes_total counter\n"
                  "natshttp_response_body_bytes_total %" PRIu64 "\n", (uint64_t)m->bytes_out);
    tb_printf(&b, "# HELP natshttp_requests_in_flight Requests under way.\n"
                  "# TYPE natshttp_requests_in_flight gauge\n"
                  "natshttp_requests_in_flight %" PRId64 "\n", (int64_t)m->in_flight);
    tb_printf(&b, "# HELP natshttp_transfers_aborted_total Responses whose body broke off.\n"
                  "# TYPE natshttp_transfers_aborted_total counter\n"
                  "natshttp_transfers_aborted_total %" PRIu64 "\n", (uint64_t)m->aborted);
    tb_printf(&b, "# HELP natshttp_request_duration_seconds Time from request to the end of "
                  "its response.\n# TYPE natshttp_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += m->buckets[i];
        tb_printf(&b, "natshttp_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                  (double)bucket_us[i] / 1e6, cum);
    }
    uint64_t count = m->count;
    tb_printf(&b, "natshttp_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", count);
    tb_printf(&b, "natshttp_request_duration_seconds_sum %.6f\n", (double)m->sum_us / 1e6);
    tb_printf(&b, "natshttp_request_duration_seconds_count %" PRIu64 "\n", count);
    uint64_t reconnects = 0;
    natsStatistics *stats = NULL;
    if (m->nc && natsStatistics_Create(&stats) == NATS_OK) {
        if (natsConnection_GetStats(m->nc, stats) == NATS_OK)
        {
            uint64_t im, ib, om, ob;
            natsStatistics_GetCounts(stats, &im, &ib, &om, &ob, &reconnects);
        }
        natsStatistics_Destroy(stats);
    }
    int connected = m->nc && natsConnection_Status(m->nc) == NATS_CONN_STATUS_CONNECTED;
    tb_printf(&b, "# HELP natshttp_nats_reconnects_total Times the NATS connection was "
                  "re-established.\n# TYPE natshttp_nats_reconnects_total counter\n"
                  "natshttp_nats_reconnects_total %" PRIu64 "\n", reconnects);
    tb_printf(&b, "# HELP natshttp_nats_connected 1 while connected to a NATS server.\n"
                  "# TYPE natshttp_nats_connected gauge\nnatshttp_nats_connected %d\n", connected);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
                              char *body, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_scrape(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **req_cls)
{
    natshttp_metrics *m = cls;
    if (!*req_cls) {          /* first call: the head only */
        *req_cls = m;
        return MHD_YES;
    }
    if (*upload_size) {       /* a body is not wanted: drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer(conn, 405, "text/plain", "only GET\n", MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/metrics") != 0)
        return answer(conn, 404, "text/plain", "metrics are at /metrics\n", MHD_RESPMEM_PERSISTENT);
    char *text = natshttp_metrics_render(m);
    if (!text)
        return answer(conn, 500, "text/plain", "out of memory\n", MHD_RESPMEM_PERSISTENT);
    return answer(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                  MHD_RESPMEM_MUST_FREE);
}

natshttp_status natshttp_metrics_new(natshttp_metrics **out, natsConnection *nc)
{
    if (!out)
        return NATSHTTP_INVALID;
    natshttp_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NATSHTTP_NOMEM;
    m->nc = nc;
    *out = m;
    return NATSHTTP_OK;
}

natshttp_status natshttp_metrics_listen(natshttp_metrics *m, const char *addr, uint16_t port)
{
    if (!m || m->mhd)
        return NATSHTTP_INVALID;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (!addr)
        addr = "127.0.0.1";
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        flags |= MHD_USE_IPv6;
    } else {
        NH_LOG_E(COMP, "metrics address %s is not an IP address", addr);
        return NATSHTTP_INVALID;
    }
    m->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_scrape, m, MHD_OPTION_SOCK_ADDR, &ss,
                              MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
                              10u, MHD_OPTION_END);
    if (!m->mhd) {
        NH_LOG_E(COMP, "cannot listen on %s:%u", addr, (unsigned)port);
        return NATSHTTP_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : port;
    return NATSHTTP_OK;
}

uint16_t natshttp_metrics_port(const natshttp_metrics *m) { return m ? m->port : 0; }

void natshttp_metrics_free(natshttp_metrics *m)
{
    if (!m)
        return;
    if (m->mhd)
        MHD_stop_daemon(m->mhd);
    free(m);
}
