/* serve.c - nats-http serve: a directory, or an upstream HTTP server, behind a NATS subject. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct serve_cfg {
    cli_common common;
    const char *subject, *group, *dir, *upstream, *upstream_host, *name, *writable;
    const char *metrics, *service_name;
    int list;
    long long workers, upstream_timeout, upstream_max_conns, grace;
} serve_cfg;

static const cli_opt serve_opts[] = {
    {"subject", 's', OPT_STR, "SUBJECT", "subject prefix to serve (required)", offsetof(serve_cfg, subject), NULL},
    {"group", 'g', OPT_STR, "GROUP", "queue group shared by every instance serving the subject", offsetof(serve_cfg, group), NULL},
    {"name", 0, OPT_STR, "NAME", "this instance's name in access logs, told to v2 gateways (default: HOST:PID)", offsetof(serve_cfg, name), NULL},
    {"dir", 'd', OPT_STR, "DIR", "directory to serve (this or --upstream)", offsetof(serve_cfg, dir), NULL},
    {"list", 0, OPT_FLAG, NULL, "list directories that have no index.html", offsetof(serve_cfg, list), NULL},
    {"workers", 0, OPT_INT, "N", "threads sending files over 64 KiB and writing uploads", offsetof(serve_cfg, workers), "2"},
    {"writable", 0, OPT_STR, "PREFIX", "accept PUT below this URL path prefix (/ for everything), written atomically (default: read-only)", offsetof(serve_cfg, writable), NULL},
    {"upstream", 'u', OPT_STR, "URL", "forward every request to this HTTP server, http://HOST[:PORT][/base] (this or --dir)", offsetof(serve_cfg, upstream), NULL},
    {"upstream-host", 0, OPT_STR, "HOST", "Host header the upstream sees (default: the client's)", offsetof(serve_cfg, upstream_host), NULL},
    {"upstream-timeout", 0, OPT_INT, "SECONDS", "no response head from the upstream in this long: 504 (also the longest a body may stall)", offsetof(serve_cfg, upstream_timeout), "30"},
    {"upstream-max-conns", 0, OPT_INT, "N", "connections to the upstream, kept alive and reused", offsetof(serve_cfg, upstream_max_conns), "16"},
    {"grace", 0, OPT_INT, "SECONDS", "on SIGTERM/SIGINT stop taking requests, let those under way finish this long, then exit (a second signal exits at once)", offsetof(serve_cfg, grace), "10"},
    {"metrics", 0, OPT_STR, "ADDR:PORT", "serve Prometheus metrics on http://ADDR:PORT/metrics (port 0 picks a free one)", offsetof(serve_cfg, metrics), NULL},
    {"service-name", 0, OPT_STR, "NAME", "name in the NATS service API ($SRV.PING/INFO/STATS); empty: do not answer it", offsetof(serve_cfg, service_name), "natshttp"},
    CLI_COMMON_OPTS(serve_cfg),
};
#define NOPTS (sizeof serve_opts / sizeof serve_opts[0])

int cmd_serve(int argc, char **argv)
{
    serve_cfg cfg = {0};
    cli_list rest = {0};
    int rc = cli_parse("serve", serve_opts, NOPTS, &cfg, argc, argv, &rest);
    if (rc == 0 && cfg.common.help) {
        cli_help(stdout, "serve", "--subject S (--dir DIR [--writable PREFIX] | --upstream URL) [--group G] [OPTIONS]",
                 "Takes HTTP requests from the NATS subject S (every subject under S.>) and\n"
                 "answers them from DIR (GET and HEAD, conditional and range requests; PUT\n"
                 "below --writable), or forwards them to the HTTP server at URL, streaming\n"
                 "both ways.",
                 serve_opts, NOPTS);
        goto out;
    }
    if (rc == 0 && !cfg.common.help)
        rc = cli_check_common("serve", &cfg.common);
    if (rc == 0 && rest.n > 0)
        rc = cli_usage_error("serve", "unexpected argument '%s'", rest.items[0]);
    if (rc == 0 && !cfg.subject)
        rc = cli_usage_error("serve", "--subject is required");
    if (rc == 0 && !natshttp_subject_valid(cfg.subject))
        rc = cli_usage_error("serve", "--subject '%s' is not a literal NATS subject", cfg.subject);
    if (rc == 0 && cfg.name && (strlen(cfg.name) > 63 || strpbrk(cfg.name, " \t") || !*cfg.name))
        rc = cli_usage_error("serve", "--name wants 1 to 63 characters without spaces");
    if (rc == 0 && !cfg.dir == !cfg.upstream)
        rc = cli_usage_error("serve", "exactly one of --dir and --upstream is required");
    if (rc == 0 && cfg.writable && !cfg.dir)
        rc = cli_usage_error("serve", "--writable goes with --dir");
    if (rc == 0 && cfg.writable && cfg.writable[0] != '/')
        rc = cli_usage_error("serve", "--writable wants a URL path prefix starting with '/', not '%s'",
                             cfg.writable);
    if (rc == 0 && cfg.upstream && cfg.upstream_timeout == 0)
        rc = cli_usage_error("serve", "--upstream-timeout must be at least 1");
    if (rc == 0 && cfg.upstream && (cfg.upstream_max_conns == 0 || cfg.upstream_max_conns > 65536))
        rc = cli_usage_error("serve", "--upstream-max-conns wants 1 to 65536");
    if (rc == 0 && cfg.service_name && *cfg.service_name &&
        strspn(cfg.service_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
            strlen(cfg.service_name))
        rc = cli_usage_error("serve", "--service-name wants letters, digits, '-' and '_' only");
    if (rc != 0)
        goto out;

    cli_install_signals();
    natsConnection *nc = cli_connect("serve", &cfg.common);
    if (!nc) {
        rc = 1;
        goto out;
    }
    char name[64];
    if (cfg.name) {
        snprintf(name, sizeof name, "%s", cfg.name);
    } else {
        char host[48] = "localhost";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(name, sizeof name, "%s:%ld", host, (long)getpid());
    }
    natshttp_metrics *metrics = NULL;
    natshttp_service *svc = NULL;
    if (cli_metrics_start("serve", cfg.metrics, nc, &metrics) != 0) {
        cli_disconnect(nc);
        rc = 1;
        goto out;
    }
    natshttp_server_options so = {.metrics = metrics,
                                  .subject = cfg.subject,
                                  .instance = name,
                                  .group = cfg.group,
                                  .protocol = (int)cfg.common.protocol,
                                  .window = cfg.common.window,
                                  .max_head = (size_t)cfg.common.max_head,
                                  .idle_timeout_ms = cfg.common.idle_timeout * 1000,
                   .layout = cfg.common.layout_value,
                   .inbox_prefix = cfg.common.inbox_prefix,
                   .allow_dot_segments = cfg.common.allow_dot_segments != 0};
    natshttp_files *files = NULL;
    natshttp_upstream *up = NULL;
    natshttp_status st;
    if (cfg.upstream) {
        natshttp_upstream_options uo = {
            .server = so,
            .url = cfg.upstream,
            .host = cfg.upstream_host,
            .timeout_ms = cfg.upstream_timeout * 1000,
            .max_conns = (int)cfg.upstream_max_conns,
        };
        st = natshttp_upstream_new(&up, nc, &uo);
    } else {
        natshttp_files_options fo = {
            .server = so,
            .dir = cfg.dir,
            .list = cfg.list,
            .workers = (int)cfg.workers,
            .writable = cfg.writable,
        };
        st = natshttp_files_new(&files, nc, &fo);
    }
    const char *what = cfg.upstream ? cfg.upstream : cfg.dir;
    char endpoint[1024];
    snprintf(endpoint, sizeof endpoint, "%s.>", cfg.subject);
    const char *meta[] = {"mode", cfg.upstream ? "upstream" : "dir", "subject", cfg.subject, NULL};
    if (st == NATSHTTP_OK && cfg.service_name && *cfg.service_name) {
        natshttp_service_options sv = {.name = cfg.service_name,
                                       .description = "HTTP over NATS (nats-http serve)",
                                       .subject = endpoint,
                                       .queue_group = cfg.group,
                                       .metadata = meta,
                                       .metrics = metrics};
        st = natshttp_service_new(&svc, nc, &sv);
        if (st == NATSHTTP_OK)
            natshttp_log(NATSHTTP_LOG_INFO, "serve", "service %s id %s on $SRV", cfg.service_name,
                         natshttp_service_id(svc));
    }
    if (st != NATSHTTP_OK) {
        natshttp_log(NATSHTTP_LOG_ERROR, "serve", "cannot serve %s: %s", what,
                     natshttp_status_text(st));
        rc = 1;
    } else {
        natshttp_log(NATSHTTP_LOG_INFO, "serve", "ready subject=%s group=%s %s=%s name=%s%s%s",
                     cfg.subject, cfg.group ? cfg.group : "-", cfg.upstream ? "upstream" : "dir",
                     what, name, cfg.writable ? " writable=" : "", cfg.writable ? cfg.writable : "");
        cli_wait_for_signal();
        natshttp_log(NATSHTTP_LOG_INFO, "serve", "stopping: no new requests, %lld s for those under way",
                     cfg.grace);
        natshttp_status ds = up ? natshttp_upstream_drain(up, cfg.grace * 1000)
                                : natshttp_files_drain(files, cfg.grace * 1000);
        if (ds == NATSHTTP_OK)
            natshttp_log(NATSHTTP_LOG_INFO, "serve", "drained");
    }
    natshttp_service_free(svc);
    natshttp_upstream_free(up);
    natshttp_files_free(files);
    cli_disconnect(nc);
    natshttp_metrics_free(metrics);
out:
    free(rest.items);
    return rc;
}
