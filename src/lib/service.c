/* service.c - the NATS service API ("micro", ADR-32): $SRV.PING, $SRV.INFO
 * and $SRV.STATS answered with io.nats.micro.v1 JSON documents.
 *
 * DESIGN. One subscription on "$SRV.>" (so one nats.c delivery thread),
 * filtered here: "$SRV.<VERB>", "$SRV.<VERB>.<name>" and
 * "$SRV.<VERB>.<name>.<id>" are ours when name and id match; anything else
 * under $SRV (another service's name or id) is ignored. The callback runs
 * on the delivery thread and answers at once; STATS reads the atomic
 * counters of the metrics object, so it takes no lock. */
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMP "service"
#define SVC_DOC_MAX 8192

struct natshttp_service {
    natsConnection *nc;
    natsSubscription *sub;
    char *name, *version, *description, *subject, *group;
    char **meta;      /* key, value, ..., NULL */
    char id[32];
    char started[80]; /* RFC 3339, UTC */
    natshttp_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;        /* the subscription's last callback has run */
    bool sub_cb_set;
};

static void on_complete(void *closure)
{
    natshttp_service *s = closure;
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool name_valid(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/* Appends s as a JSON string; false when it does not fit. */
static bool json_str(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = *len;
    if (n + 2 > cap)
        return false;
    buf[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t k;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            k = 2;
        } else if (*p < 0x20) {
            k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else {
            esc[0] = (char)*p;
            k = 1;
        }
        if (n + k + 1 > cap)
            return false;
        memcpy(buf + n, esc, k);
        n += k;
    }
    buf[n++] = '"';
    buf[n] = 0;
    *len = n;
    return true;
}

static bool json_raw(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool json_raw(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len)
        return false;
    *len += (size_t)k;
    return true;
}

/* "name", "id", "version", "metadata": what every response starts with. */
static bool identity(const natshttp_service *s, const char *type, char *b, size_t cap, size_t *n)
{
    bool ok = json_raw(b, cap, n, "{\"type\":") && json_str(b, cap, n, type) &&
              json_raw(b, cap, n, ",\"name\":") && json_str(b, cap, n, s->name) &&
              json_raw(b, cap, n, ",\"id\":") && json_str(b, cap, n, s->id) &&
              json_raw(b, cap, n, ",\"version\":") && json_str(b, cap, n, s->version) &&
              json_raw(b, cap, n, ",\"metadata\":{");
    for (size_t i = 0; ok && s->meta[i] && s->meta[i + 1]; i += 2)
        ok = (i == 0 || json_raw(b, cap, n, ",")) && json_str(b, cap, n, s->meta[i]) &&
             json_raw(b, cap, n, ":") && json_str(b, cap, n, s->meta[i + 1]);
    return ok && json_raw(b, cap, n, "}");
}

static bool endpoint_head(const natshttp_service *s, char *b, size_t cap, size_t *n)
{
    return json_raw(b, cap, n, "{\"name\":\"http\",\"subject\":") &&
           json_str(b, cap, n, s->subject) && json_raw(b, cap, n, ",\"queue_group\":") &&
           json_str(b, cap, n, s->group);
}

static bool render(const natshttp_service *s, const char *verb, char *b, size_t cap, size_t *n)
{
    if (strcmp(verb, "PING") == 0)
        return identity(s, "io.nats.micro.v1.ping_response", b, cap, n) && json_raw(b, cap, n, "}");
    if (strcmp(verb, "INFO") == 0)
        return identity(s, "io.nats.micro.v1.info_response", b, cap, n) &&
               json_raw(b, cap, n, ",\"description\":") && json_str(b, cap, n, s->description) &&
               json_raw(b, cap, n, ",\"endpoints\":[") && endpoint_head(s, b, cap, n) &&
               json_raw(b, cap, n, ",\"metadata\":null}]}");
    /* STATS */
    nh_metrics_totals t;
    nh_metrics_totals_get(s->metrics, &t);
    char last[64] = "";
    if (t.last_error_aborted)
        snprintf(last, sizeof last, "response aborted (status %d)", t.last_error_status);
    else if (t.last_error_status)
        snprintf(last, sizeof last, "status %d", t.last_error_status);
    else if (t.errors)
        snprintf(last, sizeof last, "no response");
    uint64_t ns = t.duration_us * 1000;
    uint64_t avg = t.requests ? ns / t.requests : 0;
    return identity(s, "io.nats.micro.v1.stats_response", b, cap, n) &&
           json_raw(b, cap, n, ",\"started\":") && json_str(b, cap, n, s->started) &&
           json_raw(b, cap, n, ",\"endpoints\":[") && endpoint_head(s, b, cap, n) &&
           json_raw(b, cap, n,
                    ",\"num_requests\":%" PRIu64 ",\"num_errors\":%" PRIu64 ",\"last_error\":",
                    t.requests, t.errors) &&
           json_str(b, cap, n, last) &&
           json_raw(b, cap, n,
                    ",\"processing_time\":%" PRIu64 ",\"average_processing_time\":%" PRIu64 "}]}",
                    ns, avg);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    natshttp_service *s = closure;
    const char *reply = natsMsg_GetReply(msg);
    char subj[256];
    snprintf(subj, sizeof subj, "%s", natsMsg_GetSubject(msg));
    /* $SRV.<VERB>[.<name>[.<id>]] */
    char *save = NULL;
    char *tok[5] = {0};
    int ntok = 0;
    for (char *t = strtok_r(subj, ".", &save); t && ntok < 5; t = strtok_r(NULL, ".", &save))
        tok[ntok++] = t;
    bool ours = reply && *reply && ntok >= 2 && ntok <= 4 &&
                (strcmp(tok[1], "PING") == 0 || strcmp(tok[1], "INFO") == 0 ||
                 strcmp(tok[1], "STATS") == 0) &&
                (ntok < 3 || strcmp(tok[2], s->name) == 0) && (ntok < 4 || strcmp(tok[3], s->id) == 0);
    if (ours) {
        char *doc = malloc(SVC_DOC_MAX);
        size_t n = 0;
        if (doc && render(s, tok[1], doc, SVC_DOC_MAX, &n)) {
            natsStatus ns = natsConnection_Publish(nc, reply, doc, (int)n);
            if (ns != NATS_OK)
                NH_LOG_W(COMP, "answering %s failed: %s", natsMsg_GetSubject(msg),
                         natsStatus_GetText(ns));
        } else {
            NH_LOG_W(COMP, "cannot render the answer to %s", natsMsg_GetSubject(msg));
        }
        free(doc);
    }
    natsMsg_Destroy(msg);
}

void natshttp_service_free(natshttp_service *s)
{
    if (!s)
        return;
    if (s->sub) {
        /* Wait out a callback that may be running: it uses s. */
        bool wait = s->sub_cb_set && natsSubscription_Unsubscribe(s->sub) == NATS_OK;
        pthread_mutex_lock(&s->mu);
        while (wait && !s->done)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        natsSubscription_Destroy(s->sub);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    if (s->meta)
        for (size_t i = 0; s->meta[i]; i++)
            free(s->meta[i]);
    free(s->meta);
    free(s->name);
    free(s->version);
    free(s->description);
    free(s->subject);
    free(s->group);
    free(s);
}

natshttp_status natshttp_service_new(natshttp_service **out, natsConnection *nc,
                                     const natshttp_service_options *opts)
{
    if (!out || !nc || !opts || !name_valid(opts->name) || !opts->subject)
        return NATSHTTP_INVALID;
    natshttp_service *s = calloc(1, sizeof *s);
    if (!s)
        return NATSHTTP_NOMEM;
    s->nc = nc;
    s->metrics = opts->metrics;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    size_t nmeta = 0;
    while (opts->metadata && opts->metadata[nmeta])
        nmeta++;
    nmeta &= ~(size_t)1;
    s->meta = calloc(nmeta + 1, sizeof *s->meta);
    s->name = strdup(opts->name);
    s->version = strdup(opts->version ? opts->version : NATSHTTP_VERSION);
    s->description = strdup(opts->description ? opts->description : "");
    s->subject = strdup(opts->subject);
    s->group = strdup(opts->queue_group ? opts->queue_group : "");
    bool ok = s->meta && s->name && s->version && s->description && s->subject && s->group;
    for (size_t i = 0; ok && i < nmeta; i++)
        ok = (s->meta[i] = strdup(opts->metadata[i])) != NULL;
    if (!ok) {
        natshttp_service_free(s);
        return NATSHTTP_NOMEM;
    }
    /* The id: a NUID, as the Go implementation uses, taken from a fresh inbox name. */
    natsInbox *inbox = NULL;
    natsStatus ns = natsInbox_Create(&inbox);
    if (ns == NATS_OK) {
        const char *dot = strrchr((const char *)inbox, '.');
        snprintf(s->id, sizeof s->id, "%s", dot ? dot + 1 : (const char *)inbox);
        natsInbox_Destroy(inbox);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(s->started, sizeof s->started, "%s.%06ldZ", day, ts.tv_nsec / 1000);
    if (ns == NATS_OK)
        ns = natsConnection_Subscribe(&s->sub, nc, "$SRV.>", on_msg, s);
    if (ns == NATS_OK)
        ns = natsSubscription_SetOnCompleteCB(s->sub, on_complete, s);
    if (ns == NATS_OK) {
        s->sub_cb_set = true;
        ns = natsConnection_Flush(nc);
    }
    if (ns != NATS_OK) {
        NH_LOG_E(COMP, "subscribing to $SRV.> failed: %s", natsStatus_GetText(ns));
        natshttp_service_free(s);
        return natshttp_status_from_nats(ns);
    }
    *out = s;
    return NATSHTTP_OK;
}

const char *natshttp_service_id(const natshttp_service *s) { return s->id; }
