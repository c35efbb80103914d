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
    const char *config;
    const char *server;
    const char *creds, *nkey, *user, *password, *token;
    const char *tls_ca, *tls_cert, *tls_key;
    const char *log_level, *log_file;
    long long protocol, window, idle_timeout, max_head;
    const char *layout;
    const char *inbox_prefix;
    int allow_dot_segments;
    int help;
    natshttp_layout layout_value;   /* from --layout, set by cli_check_common */
} cli_common;

#define CLI_COMMON_OPTS(type)                                                                  \
    {"server", 0, OPT_STR, "URL[,URL...]", "NATS server(s) (default: $NATS_URL, else nats://127.0.0.1:4222)", \
     offsetof(type, common.server), NULL},                                                     \
    {"creds", 0, OPT_STR, "FILE", "NATS credentials file (JWT and NKey seed)",                \
     offsetof(type, common.creds), NULL},                                                      \
    {"nkey", 0, OPT_STR, "SEED_FILE", "NATS NKey authentication: file holding the user's seed (SU...)", \
     offsetof(type, common.nkey), NULL},                                                       \
    {"user", 0, OPT_STR, "NAME", "NATS user name (with --password)", offsetof(type, common.user), NULL}, \
    {"password", 0, OPT_STR, "PASSWORD", "NATS password (better in --config than on the command line)", \
     offsetof(type, common.password), NULL},                                                   \
    {"token", 0, OPT_STR, "TOKEN", "NATS authentication token", offsetof(type, common.token), NULL}, \
    {"tls-ca", 0, OPT_STR, "FILE", "TLS to NATS: CA certificates (PEM) that sign the server's certificate", \
     offsetof(type, common.tls_ca), NULL},                                                     \
    {"tls-cert", 0, OPT_STR, "FILE", "TLS to NATS: client certificate (PEM), for mutual TLS (with --tls-key)", \
     offsetof(type, common.tls_cert), NULL},                                                   \
    {"tls-key", 0, OPT_STR, "FILE", "TLS to NATS: the client certificate's private key (PEM)", \
     offsetof(type, common.tls_key), NULL},                                                    \
    {"log-level", 0, OPT_STR, "LEVEL", "error, warn, info or debug", offsetof(type, common.log_level), "info"}, \
    {"log-file", 0, OPT_STR, "FILE", "append log lines to FILE instead of stderr; SIGHUP reopens it", \
     offsetof(type, common.log_file), NULL},                                                   \
    {"config", 0, OPT_STR, "FILE", "read options from FILE ('name value' lines; the command line wins)", \
     offsetof(type, common.config), NULL},                                                     \
    {"protocol", 0, OPT_INT, "1|2", "2 speaks v2 with peers that do (flow control, integrity, cancellation); 1 is exactly v1", \
     offsetof(type, common.protocol), "2"},                                                    \
    {"window", 0, OPT_INT, "BYTES", "v2 flow-control window per body", offsetof(type, common.window), "4194304"}, \
    {"max-head", 0, OPT_INT, "BYTES", "largest request or response head (request line or status, and header fields): 431 for a larger request head, 502 for a larger response head; the gateway holds 3 x BYTES per keep-alive connection", \
     offsetof(type, common.max_head), "32768"},                                                \
    {"idle-timeout", 0, OPT_INT, "SECONDS", "abort a body transfer that makes no progress this long", \
     offsetof(type, common.idle_timeout), "30"},                                               \
    {"layout", 0, OPT_STR, "native|compat", "request subjects: native <subject>.<METHOD>.<segments> (grantable by NATS permissions), or compat v1 <subject>.<path>.<METHOD> for Go peers", \
     offsetof(type, common.layout), "native"},                                                 \
    {"inbox-prefix", 0, OPT_STR, "SUBJECT", "private reply subjects under SUBJECT.> (default _INBOX); one per NATS user, so no user may subscribe to another's responses", \
     offsetof(type, common.inbox_prefix), NULL},                                               \
    {"allow-dot-segments", 0, OPT_FLAG, NULL, "pass paths with . or .. segments (default: 400; they could leave the folder a permission names)", \
     offsetof(type, common.allow_dot_segments), NULL},                                         \
    {"help", 'h', OPT_FLAG, NULL, "show this help and exit", offsetof(type, common.help), NULL}

/* Parses argv into cfg per table. Positional arguments are returned in rest.
 * Values come, lowest first, from the table's defaults, the file named by
 * --config (see docs/cli.md), then the command line. On a usage error prints
 * one line to stderr and returns 2; else 0. */
int cli_parse(const char *cmd, const cli_opt *table, size_t n, void *cfg, int argc, char **argv,
              cli_list *rest);
void cli_help(FILE *f, const char *cmd, const char *synopsis, const char *about,
              const cli_opt *table, size_t n);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the common options; prints a usage error and returns 2 when wrong. */
int cli_check_common(const char *cmd, cli_common *c);

/* Applies --log-level and --log-file, and connects to NATS with the security
 * options; logs one line and returns NULL on failure. */
natsConnection *cli_connect(const char *cmd, const cli_common *c);
void cli_disconnect(natsConnection *nc);

/* Asynchronous NATS errors (a permission violation, say) go to fn as well as
 * to the log; fn runs on nats.c's callback thread. NULL stops them. */
typedef void (*cli_error_sink)(void *arg, natsStatus err, const char *text);
void cli_set_async_error_sink(cli_error_sink fn, void *arg);

/* Splits "ADDR:PORT" or "[V6]:PORT" in place; -1 when malformed. */
int cli_split_addr(char *s, const char **addr, unsigned *port);

/* --metrics ADDR:PORT: counters for nc, served on ADDR:PORT when spec is
 * non-NULL (the bound address is logged). Returns 0, or 1 after logging why not. */
int cli_metrics_start(const char *cmd, const char *spec, natsConnection *nc, natshttp_metrics **out);

/* SIGINT/SIGTERM set the flag; cli_wait_for_signal sleeps until then. A
 * second signal exits at once (status 128 + signal). SIGHUP sets cli_hup;
 * cli_wait_for_signal then reopens --log-file. */
void cli_install_signals(void);
void cli_wait_for_signal(void);
extern volatile sig_atomic_t cli_stop;
extern volatile sig_atomic_t cli_hup;

/* Reopens the --log-file (after logrotate moved it); 0 or -1. Not from a
 * signal handler. */
int cli_log_reopen(void);
/* Frees what cli_parse kept for the process (the --config file's text). */
void cli_cleanup(void);

/* Reads a whole file (for certificates); NULL and a log line on failure.
 * The caller frees. */
char *cli_read_file(const char *cmd, const char *what, const char *path);

/* The NKey public key ("U...", 57 bytes with NUL) of the user seed in the
 * file at path; 0, or -1 with a reason in err. */
int cli_nkey_public(const char *path, char *pub, size_t cap, char *err, size_t errcap);

int cmd_serve(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_request(int argc, char **argv);

#endif
