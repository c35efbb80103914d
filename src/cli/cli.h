/* cli.h - what the subcommands share: one option table per command (flags
 * and --help come from it), the NATS connection, signals. */
#ifndef NH_CLI_H
#define NH_CLI_H

#include "natshttp.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

typedef enum cli_kind { OPT_STR, OPT_INT, OPT_FLAG, OPT_LIST } cli_kind;

typedef struct cli_list {
    const char **items;
    int n;
} cli_list;

typedef struct cli_opt {
    const char *name;       /* long name, without "--" */
    char short_name;        /* 0 when none */
    cli_kind kind;
    const char *metavar;
    const char *help;
    size_t offset;          /* of the field in the command's config struct */
    const char *def;        /* default, applied before parsing; NULL for none */
} cli_opt;

/* Options every subcommand takes; each command's config struct starts with this. */
typedef struct cli_common {
    const char *server;
    const char *creds;
    const char *log_level;
    long long protocol, window, idle_timeout;
    int help;
} cli_common;

#define CLI_COMMON_OPTS(type)                                                                  \
    {"server", 0, OPT_STR, "URL[,URL...]", "NATS server(s) (default: $NATS_URL, else nats://127.0.0.1:4222)", \
     offsetof(type, common.server), NULL},                                                     \
    {"creds", 0, OPT_STR, "FILE", "NATS credentials file (JWT and NKey seed)",                \
     offsetof(type, common.creds), NULL},                                                      \
    {"log-level", 0, OPT_STR, "LEVEL", "error, warn, info or debug", offsetof(type, common.log_level), "info"}, \
    {"protocol", 0, OPT_INT, "1|2", "2 speaks v2 with peers that do (flow control, integrity, cancellation); 1 is exactly v1", \
     offsetof(type, common.protocol), "2"},                                                    \
    {"window", 0, OPT_INT, "BYTES", "v2 flow-control window per body", offsetof(type, common.window), "4194304"}, \
    {"idle-timeout", 0, OPT_INT, "SECONDS", "abort a body transfer that makes no progress this long", \
     offsetof(type, common.idle_timeout), "30"},                                               \
    {"help", 'h', OPT_FLAG, NULL, "show this help and exit", offsetof(type, common.help), NULL}

/* Parses argv into cfg per table. Positional arguments are returned in rest.
 * On a usage error prints one line to stderr and returns 2; else 0. */
int cli_parse(const char *cmd, const cli_opt *table, size_t n, void *cfg, int argc, char **argv,
              cli_list *rest);
void cli_help(FILE *f, const char *cmd, const char *synopsis, const char *about,
              const cli_opt *table, size_t n);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the common options; prints a usage error and returns 2 when wrong. */
int cli_check_common(const char *cmd, const cli_common *c);

/* Applies --log-level and connects to NATS; logs and returns NULL on failure. */
natsConnection *cli_connect(const char *cmd, const cli_common *c);
void cli_disconnect(natsConnection *nc);

/* Splits "ADDR:PORT" or "[V6]:PORT" in place; -1 when malformed. */
int cli_split_addr(char *s, const char **addr, unsigned *port);

/* --metrics ADDR:PORT: counters for nc, served on ADDR:PORT when spec is
 * non-NULL (the bound address is logged). Returns 0, or 1 after logging why not. */
int cli_metrics_start(const char *cmd, const char *spec, natsConnection *nc, natshttp_metrics **out);

/* SIGINT/SIGTERM set the flag; cli_wait_for_signal sleeps until then. A
 * second signal exits at once (status 128 + signal). */
void cli_install_signals(void);
void cli_wait_for_signal(void);
extern volatile sig_atomic_t cli_stop;

int cmd_serve(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_request(int argc, char **argv);

#endif
