/* request.c - nats-http request: one HTTP request to a nats+http:// URL. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct request_cfg {
    cli_common common;
    const char *method, *data, *output;
    cli_list headers;
    int include;
    long long timeout;
} request_cfg;

static const cli_opt request_opts[] = {
    {"request", 'X', OPT_STR, "METHOD", "request method (default GET, or POST with -d)", offsetof(request_cfg, method), NULL},
    {"header", 'H', OPT_LIST, "'NAME: VALUE'", "add a request header", offsetof(request_cfg, headers), NULL},
    {"data", 'd', OPT_STR, "TEXT|@FILE", "request body: the text itself, or the contents of FILE", offsetof(request_cfg, data), NULL},
    {"include", 'i', OPT_FLAG, NULL, "print the status line and response headers before the body", offsetof(request_cfg, include), NULL},
    {"output", 'o', OPT_STR, "FILE", "write the body to FILE instead of standard output", offsetof(request_cfg, output), NULL},
    {"timeout", 't', OPT_INT, "SECONDS", "wait this long for the first response message", offsetof(request_cfg, timeout), "30"},
    CLI_COMMON_OPTS(request_cfg),
};
#define NOPTS (sizeof request_opts / sizeof request_opts[0])

typedef struct req_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, writable;
    natshttp_status status;
    int http_status;
    bool include;
    FILE *out;
    bool write_failed;
} req_state;

static void on_head(void *ctx, natshttp_call *call, const natshttp_head *resp)
{
    req_state *s = ctx;
    s->http_status = natshttp_head_status(resp);
    if (!s->include)
        return;
    fprintf(s->out, "HTTP/1.1 %d %s\r\n", natshttp_head_status(resp), natshttp_head_reason(resp));
    for (size_t i = 0; i < natshttp_head_count(resp); i++) {
        const char *n, *v;
        natshttp_head_at(resp, i, &n, &v);
        fprintf(s->out, "%s: %s\r\n", n, v);
    }
    fprintf(s->out, "\r\n");
}

static void on_body(void *ctx, natshttp_call *call, natshttp_chunk *chunk)
{
    req_state *s = ctx;
    if (!s->write_failed &&
        fwrite(natshttp_chunk_data(chunk), 1, natshttp_chunk_len(chunk), s->out) !=
            natshttp_chunk_len(chunk))
        s->write_failed = true;
    natshttp_chunk_free(chunk);
}

static void on_writable(void *ctx, natshttp_call *call)
{
    req_state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->writable = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_end(void *ctx, natshttp_call *call, natshttp_status st)
{
    req_state *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->done = true;
    s->status = st;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Writes all of data, waiting for the call whenever it cannot take more. */
static natshttp_status write_all(natshttp_call *call, req_state *s, const char *data, size_t len)
{
    while (len > 0) {
        size_t taken = 0;
        pthread_mutex_lock(&s->mu);
        s->writable = false;
        pthread_mutex_unlock(&s->mu);
        natshttp_status st = natshttp_call_write(call, data, len, &taken);
        data += taken;
        len -= taken;
        if (st == NATSHTTP_AGAIN) {
            pthread_mutex_lock(&s->mu);
            while (!s->writable && !s->done)
                pthread_cond_wait(&s->cv, &s->mu);
            bool done = s->done;
            pthread_mutex_unlock(&s->mu);
            if (done)
                return NATSHTTP_CLOSED;
        } else if (st != NATSHTTP_OK) {
            return st;
        }
    }
    return NATSHTTP_OK;
}

static void to_client(void *client, natsStatus err, const char *text)
{
    natshttp_client_async_error(client, err, text);
}

int cmd_request(int argc, char **argv)
{
    request_cfg cfg = {0};
    cli_list rest = {0};
    natshttp_head *head = NULL;
    natsConnection *nc = NULL;
    natshttp_client *client = NULL;
    char *subject = NULL, *path = NULL;
    int fd = -1;
    req_state s = {.out = stdout};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);

    int rc = cli_parse("request", request_opts, NOPTS, &cfg, argc, argv, &rest);
    if (rc == 0 && cfg.common.help) {
        cli_help(stdout, "request", "[-X METHOD] [-H 'N: V']... [-d TEXT|@FILE] [-i] [-o FILE] nats+http://SUBJECT/PATH[?QUERY]",
                 "Sends one HTTP request over NATS and prints the response body. Exits 0 only\n"
                 "for a complete 2xx or 3xx response; 22 for an HTTP error status, 18 for a\n"
                 "body that broke off, 1 for any other failure.",
                 request_opts, NOPTS);
        goto out;
    }
    if (rc == 0)
        rc = cli_check_common("request", &cfg.common);
    if (rc == 0 && rest.n != 1)
        rc = cli_usage_error("request", rest.n ? "one URL expected" : "a nats+http:// URL is required");
    const char *url = rc == 0 ? rest.items[0] : "";
    static const char scheme[] = "nats+http://";
    if (rc == 0 && strncmp(url, scheme, sizeof scheme - 1) != 0)
        rc = cli_usage_error("request", "URL must start with %s", scheme);
    if (rc != 0)
        goto out;

    /* nats+http://SUBJECT/path?query */
    const char *host = url + sizeof scheme - 1;
    size_t hlen = strcspn(host, "/?#");
    const char *rest_of = host + hlen;
    size_t plen = strcspn(rest_of, "?#");
    const char *query = rest_of[plen] == '?' ? rest_of + plen + 1 : "";
    size_t qlen = strcspn(query, "#");
    subject = strndup(host, hlen);
    path = malloc(plen + 2 + qlen + 1);
    if (!subject || !path || hlen == 0) {
        rc = cli_usage_error("request", "URL has no subject: '%s'", url);
        goto out;
    }
    if (strpbrk(subject, "@:")) {
        rc = cli_usage_error("request", "'%s': a nats+http URL names a subject, not a user or port "
                             "(the server is --server)", subject);
        goto out;
    }
    if (!natshttp_subject_valid(subject)) {
        rc = cli_usage_error("request", "'%s' is not a literal NATS subject (no user, port or wildcard)",
                             subject);
        goto out;
    }
    if (plen == 0)
        strcpy(path, "/");
    else
        memcpy(path, rest_of, plen), path[plen] = 0;
    char *q = path + strlen(path) + 1;
    memcpy(q, query, qlen);
    q[qlen] = 0;

    const char *method = cfg.method ? cfg.method : cfg.data ? "POST" : "GET";
    natshttp_status st = natshttp_head_new(&head, 0);
    if (st == NATSHTTP_OK)
        st = natshttp_head_set_request(head, method, path, q);
    for (int i = 0; st == NATSHTTP_OK && i < cfg.headers.n; i++) {
        const char *h = cfg.headers.items[i];
        const char *colon = strchr(h, ':');
        if (!colon) {
            rc = cli_usage_error("request", "header '%s' has no ':'", h);
            goto out;
        }
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        st = natshttp_head_addn(head, h, (size_t)(colon - h), v, strlen(v));
        if (st != NATSHTTP_OK) {
            rc = cli_usage_error("request", "bad header '%s'", h);
            goto out;
        }
    }
    if (!natshttp_method_valid(method)) {
        rc = cli_usage_error("request", "method '%s' cannot be carried over NATS", method);
        goto out;
    }

    int64_t body_len = -1;
    if (cfg.data && cfg.data[0] == '@') {
        struct stat sb;
        fd = open(cfg.data + 1, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0) {
            fprintf(stderr, "nats-http request: cannot read %s: %s\n", cfg.data + 1, strerror(errno));
            rc = 2;
            goto out;
        }
        body_len = S_ISREG(sb.st_mode) ? sb.st_size : -2;
    } else if (cfg.data) {
        body_len = (int64_t)strlen(cfg.data);
    }
    if (body_len >= 0) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)body_len);
        natshttp_head_remove(head, "Content-Length");
        natshttp_head_add(head, "Content-Length", num);
    }
    if (cfg.output) {
        s.out = fopen(cfg.output, "wb");
        if (!s.out) {
            fprintf(stderr, "nats-http request: cannot write %s: %s\n", cfg.output, strerror(errno));
            s.out = stdout;
            rc = 2;
            goto out;
        }
    }
    s.include = cfg.include;

    nc = cli_connect("request", &cfg.common);
    if (!nc) {
        rc = 1;
        goto out;
    }
    natshttp_client_options co = {.subject = subject,
                                  .timeout_ms = cfg.timeout * 1000,
                                  .protocol = (int)cfg.common.protocol,
                                  .window = cfg.common.window,
                                  .max_head = (size_t)cfg.common.max_head,
                                  .idle_timeout_ms = cfg.common.idle_timeout * 1000,
                   .layout = cfg.common.layout_value,
                   .inbox_prefix = cfg.common.inbox_prefix,
                   .allow_dot_segments = cfg.common.allow_dot_segments != 0};
    st = natshttp_client_new(&client, nc, &co);
    if (st == NATSHTTP_OK)
        cli_set_async_error_sink(to_client, client);
    natshttp_call *call = NULL;
    natshttp_call_callbacks cb = {on_head, on_body, on_writable, on_end};
    if (st == NATSHTTP_OK)
        st = natshttp_call_start(&call, client, head, body_len == 0 ? -1 : body_len, NULL, &cb, &s);
    if (st == NATSHTTP_OK && body_len != -1 && body_len != 0) {
        if (fd >= 0) {
            char *buf = malloc(256 * 1024);
            ssize_t n = 0;
            while (st == NATSHTTP_OK && buf && (n = read(fd, buf, 256 * 1024)) > 0)
                st = write_all(call, &s, buf, (size_t)n);
            if (n < 0 || !buf)
                st = NATSHTTP_IO;
            free(buf);
        } else {
            st = write_all(call, &s, cfg.data, strlen(cfg.data));
        }
        if (st == NATSHTTP_OK)
            st = natshttp_call_end_body(call);
        if (st != NATSHTTP_OK && st != NATSHTTP_CLOSED)
            natshttp_call_cancel(call);
    }
    if (call) {
        pthread_mutex_lock(&s.mu);
        while (!s.done)
            pthread_cond_wait(&s.cv, &s.mu);
        pthread_mutex_unlock(&s.mu);
        if (st == NATSHTTP_OK || st == NATSHTTP_CLOSED)
            st = s.status;
    }
    fflush(s.out);
    if (st != NATSHTTP_OK) {
        fprintf(stderr, "nats-http request: %s\n", natshttp_status_text(st));
        /* after the head, any failure (cut off, idle, NATS lost) is a body that broke off */
        rc = st == NATSHTTP_TRUNCATED || s.http_status > 0 ? 18 : 1;
    } else if (s.write_failed) {
        fprintf(stderr, "nats-http request: writing the body failed\n");
        rc = 1;
    } else if (s.http_status >= 400) {
        rc = 22;
    }
out:
    cli_set_async_error_sink(NULL, NULL);
    natshttp_client_free(client);
    cli_disconnect(nc);
    natshttp_head_free(head);
    if (fd >= 0)
        close(fd);
    if (s.out && s.out != stdout)
        fclose(s.out);
    free(subject);
    free(path);
    free(cfg.headers.items);
    free(rest.items);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return rc;
}
