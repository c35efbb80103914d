/* gateway.c - nats-http gateway: an HTTP listener in front of a NATS subject. */
#include "cli.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct gateway_cfg {
    cli_common common;
    const char *listen, *subject, *https_cert, *https_key, *metrics;
    long long timeout, threads, max_buffer, http_idle_timeout, max_connections, grace;
    long long max_body, max_inflight, max_connections_per_ip, http_head_timeout;
} gateway_cfg;

static const cli_opt gateway_opts[] = {
    {"listen", 'l', OPT_STR, "ADDR:PORT", "address to listen on; port 0 picks a free one", offsetof(gateway_cfg, listen), "127.0.0.1:8080"},
    {"subject", 's', OPT_STR, "SUBJECT", "subject prefix to forward requests to (required)", offsetof(gateway_cfg, subject), NULL},
    {"timeout", 't', OPT_INT, "SECONDS", "wait this long for the first response message, then 504", offsetof(gateway_cfg, timeout), "30"},
    {"threads", 0, OPT_INT, "N", "HTTP threads", offsetof(gateway_cfg, threads), "1"},
    {"max-buffer", 0, OPT_INT, "BYTES", "response bytes one request may hold for a slow client before it is aborted", offsetof(gateway_cfg, max_buffer), "67108864"},
    {"http-idle-timeout", 0, OPT_INT, "SECONDS", "close idle keep-alive HTTP connections after this long", offsetof(gateway_cfg, http_idle_timeout), "60"},
    {"http-head-timeout", 0, OPT_INT, "SECONDS", "a request head must be whole this long after the connection opened or the last request ended, or the connection is closed (trickling clients); 0 = --http-idle-timeout", offsetof(gateway_cfg, http_head_timeout), "0"},
    {"max-connections", 0, OPT_INT, "N", "concurrent HTTP connections", offsetof(gateway_cfg, max_connections), "1024"},
    {"max-connections-per-ip", 0, OPT_INT, "N", "concurrent HTTP connections from one client address; 0 = no limit", offsetof(gateway_cfg, max_connections_per_ip), "0"},
    {"max-body", 0, OPT_INT, "BYTES", "largest request body (else 413); 0 = no limit", offsetof(gateway_cfg, max_body), "0"},
    {"max-inflight", 0, OPT_INT, "N", "requests forwarded at once (more get 503 with Retry-After); 0 = no limit beyond --max-connections", offsetof(gateway_cfg, max_inflight), "0"},
    {"https-cert", 0, OPT_STR, "FILE", "serve HTTPS with this certificate (PEM, the chain after it), with --https-key", offsetof(gateway_cfg, https_cert), NULL},
    {"https-key", 0, OPT_STR, "FILE", "the HTTPS certificate's private key (PEM, unencrypted)", offsetof(gateway_cfg, https_key), NULL},
    {"grace", 0, OPT_INT, "SECONDS", "on SIGTERM/SIGINT stop accepting, let requests under way finish this long, then exit (a second signal exits at once)", offsetof(gateway_cfg, grace), "10"},
    {"metrics", 0, OPT_STR, "ADDR:PORT", "serve Prometheus metrics on http://ADDR:PORT/metrics (port 0 picks a free one)", offsetof(gateway_cfg, metrics), NULL},
    CLI_COMMON_OPTS(gateway_cfg),
};
#define NOPTS (sizeof gateway_opts / sizeof gateway_opts[0])

static void to_gateway(void *gw, natsStatus err, const char *text)
{
    natshttp_gateway_async_error(gw, err, text);
}

int cmd_gateway(int argc, char **argv)
{
    gateway_cfg cfg = {0};
    cli_list rest = {0};
    char *listen = NULL, *cert = NULL, *key = NULL;
    const char *addr = NULL;
    unsigned port = 0;
    int rc = cli_parse("gateway", gateway_opts, NOPTS, &cfg, argc, argv, &rest);
    if (rc == 0 && cfg.common.help) {
        cli_help(stdout, "gateway", "--subject S [--listen ADDR:PORT] [OPTIONS]",
                 "Listens for HTTP/1.1 and forwards every request to the NATS subject S,\n"
                 "streaming request and response bodies.",
                 gateway_opts, NOPTS);
        goto out;
    }
    if (rc == 0 && !cfg.common.help)
        rc = cli_check_common("gateway", &cfg.common);
    if (rc == 0 && rest.n > 0)
        rc = cli_usage_error("gateway", "unexpected argument '%s'", rest.items[0]);
    if (rc == 0 && !cfg.subject)
        rc = cli_usage_error("gateway", "--subject is required");
    if (rc == 0 && !natshttp_subject_valid(cfg.subject))
        rc = cli_usage_error("gateway", "--subject '%s' is not a literal NATS subject", cfg.subject);
    if (rc == 0 && (cfg.max_body < 0 || cfg.max_inflight < 0 || cfg.max_connections_per_ip < 0 ||
                    cfg.max_inflight > UINT_MAX || cfg.max_connections_per_ip > UINT_MAX))
        rc = cli_usage_error("gateway", "--max-body, --max-inflight and --max-connections-per-ip "
                                        "take a number from 0 (no limit) up");
    if (rc == 0 && !cfg.https_cert != !cfg.https_key)
        rc = cli_usage_error("gateway", "--https-cert and --https-key go together");
    if (rc == 0 && cfg.https_cert && !natshttp_gateway_https_supported()) {
        fprintf(stderr, "nats-http gateway: this libmicrohttpd has no TLS support: --https-cert cannot work\n");
        rc = 1;
    }
    if (rc == 0 && cfg.https_cert) {
        cert = cli_read_file("gateway", "--https-cert", cfg.https_cert);
        key = cert ? cli_read_file("gateway", "--https-key", cfg.https_key) : NULL;
        if (!cert || !key)
            rc = 1;
    }
    if (rc == 0) {
        listen = strdup(cfg.listen);
        if (!listen || cli_split_addr(listen, &addr, &port) != 0)
            rc = cli_usage_error("gateway", "--listen wants ADDR:PORT, not '%s'", cfg.listen);
    }
    if (rc == 0) {
        /* Say so before connecting to NATS, not after. */
        unsigned char ip[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, addr, ip) != 1 && inet_pton(AF_INET6, addr, ip) != 1)
            rc = cli_usage_error("gateway", "--listen wants an IP address (IPv4, or IPv6 in []), not '%s'",
                                 addr);
    }
    if (rc != 0)
        goto out;

    cli_install_signals();
    natsConnection *nc = cli_connect("gateway", &cfg.common);
    if (!nc) {
        rc = 1;
        goto out;
    }
    natshttp_gateway *gw = NULL;
    natshttp_metrics *metrics = NULL;
    if (cli_metrics_start("gateway", cfg.metrics, nc, &metrics) != 0) {
        cli_disconnect(nc);
        rc = 1;
        goto out;
    }
    natshttp_gateway_options go = {
        .client = {.subject = cfg.subject,
                   .timeout_ms = cfg.timeout * 1000,
                   .protocol = (int)cfg.common.protocol,
                   .window = cfg.common.window,
                   .max_head = (size_t)cfg.common.max_head,
                   .idle_timeout_ms = cfg.common.idle_timeout * 1000,
                   .layout = cfg.common.layout_value,
                   .inbox_prefix = cfg.common.inbox_prefix,
                   .allow_dot_segments = cfg.common.allow_dot_segments != 0},
        .listen_addr = addr,
        .listen_port = (uint16_t)port,
        .threads = (int)cfg.threads,
        .max_buffer = (size_t)cfg.max_buffer,
        .idle_timeout_s = (unsigned)cfg.http_idle_timeout,
        .head_timeout_s = (unsigned)cfg.http_head_timeout,
        .max_connections = (unsigned)cfg.max_connections,
        .max_connections_per_ip = (unsigned)cfg.max_connections_per_ip,
        .max_body = cfg.max_body,
        .max_inflight = (unsigned)cfg.max_inflight,
        .https_cert = cert,
        .https_key = key,
        .metrics = metrics,
    };
    natshttp_status st = natshttp_gateway_new(&gw, nc, &go);
    if (key)
        memset(key, 0, strlen(key));   /* the gateway keeps its own copy */
    if (st != NATSHTTP_OK) {
        natshttp_log(NATSHTTP_LOG_ERROR, "gateway", "cannot start: %s", natshttp_status_text(st));
        rc = 1;
    } else {
        bool v6 = strchr(addr, ':') != NULL;
        cli_set_async_error_sink(to_gateway, gw);
        natshttp_log(NATSHTTP_LOG_INFO, "gateway", "ready listening on http%s://%s%s%s:%u subject=%s",
                     cert ? "s" : "", v6 ? "[" : "", addr, v6 ? "]" : "", natshttp_gateway_port(gw),
                     cfg.subject);
        cli_wait_for_signal();
        natshttp_log(NATSHTTP_LOG_INFO, "gateway", "stopping: no new connections, %lld s for requests under way",
                     cfg.grace);
        if (natshttp_gateway_drain(gw, cfg.grace * 1000) == NATSHTTP_OK)
            natshttp_log(NATSHTTP_LOG_INFO, "gateway", "drained");
        cli_set_async_error_sink(NULL, NULL);
        natshttp_gateway_free(gw);
    }
    cli_disconnect(nc);
    natshttp_metrics_free(metrics);
out:
    if (key)
        memset(key, 0, strlen(key));
    free(key);
    free(cert);
    free(listen);
    free(rest.items);
    return rc;
}
