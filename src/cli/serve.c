/* serve.c - nats-http serve: a directory behind a NATS subject. */
#include "cli.h"

#include <stdlib.h>

typedef struct serve_cfg {
    cli_common common;
    const char *subject, *group, *dir;
    int list;
    long long workers;
} serve_cfg;

static const cli_opt serve_opts[] = {
    {"subject", 's', OPT_STR, "SUBJECT", "subject prefix to serve (required)", offsetof(serve_cfg, subject), NULL},
    {"group", 'g', OPT_STR, "GROUP", "queue group shared by every instance serving the subject", offsetof(serve_cfg, group), NULL},
    {"dir", 'd', OPT_STR, "DIR", "directory to serve (required)", offsetof(serve_cfg, dir), NULL},
    {"list", 0, OPT_FLAG, NULL, "list directories that have no index.html", offsetof(serve_cfg, list), NULL},
    {"workers", 0, OPT_INT, "N", "threads reading files", offsetof(serve_cfg, workers), "2"},
    CLI_COMMON_OPTS(serve_cfg),
};
#define NOPTS (sizeof serve_opts / sizeof serve_opts[0])

int cmd_serve(int argc, char **argv)
{
    serve_cfg cfg = {0};
    cli_list rest = {0};
    int rc = cli_parse("serve", serve_opts, NOPTS, &cfg, argc, argv, &rest);
    if (rc == 0 && cfg.common.help) {
        cli_help(stdout, "serve", "--subject S --dir DIR [--group G] [OPTIONS]",
                 "Takes HTTP requests from the NATS subject S (every subject under S.>) and\n"
                 "answers them from DIR: GET and HEAD, conditional and range requests.",
                 serve_opts, NOPTS);
        goto out;
    }
    if (rc == 0 && !cfg.common.help)
        rc = cli_check_common("serve", &cfg.common);
    if (rc == 0 && rest.n > 0)
        rc = cli_usage_error("serve", "unexpected argument '%s'", rest.items[0]);
    if (rc == 0 && !cfg.subject)
        rc = cli_usage_error("serve", "--subject is required");
    if (rc == 0 && !cfg.dir)
        rc = cli_usage_error("serve", "--dir is required");
    if (rc != 0)
        goto out;

    cli_install_signals();
    natsConnection *nc = cli_connect("serve", &cfg.common);
    if (!nc) {
        rc = 1;
        goto out;
    }
    natshttp_files *files = NULL;
    natshttp_files_options fo = {
        .server = {.subject = cfg.subject,
                   .group = cfg.group,
                   .protocol = (int)cfg.common.protocol,
                   .window = cfg.common.window,
                   .idle_timeout_ms = cfg.common.idle_timeout * 1000},
        .dir = cfg.dir,
        .list = cfg.list,
        .workers = (int)cfg.workers,
    };
    natshttp_status st = natshttp_files_new(&files, nc, &fo);
    if (st != NATSHTTP_OK) {
        natshttp_log(NATSHTTP_LOG_ERROR, "serve", "cannot serve %s: %s", cfg.dir,
                     natshttp_status_text(st));
        rc = 1;
    } else {
        natshttp_log(NATSHTTP_LOG_INFO, "serve", "ready subject=%s group=%s dir=%s", cfg.subject,
                     cfg.group ? cfg.group : "-", cfg.dir);
        cli_wait_for_signal();
        natshttp_log(NATSHTTP_LOG_INFO, "serve", "stopping");
        natshttp_files_free(files);
    }
    cli_disconnect(nc);
out:
    free(rest.items);
    return rc;
}
