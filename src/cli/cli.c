/* cli.c - option parsing from the tables, NATS connection set-up, signals. */
#include "cli.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

volatile sig_atomic_t cli_stop;

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nats-http %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'nats-http %s --help')\n", cmd);
    return 2;
}

static int set_value(const char *cmd, const cli_opt *o, void *cfg, const char *v)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)field = v;
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0 || n > 1LL << 40)
            return cli_usage_error(cmd, "--%s wants a non-negative number, not '%s'", o->name, v);
        *(long long *)field = n;
        return 0;
    }
    case OPT_LIST: {
        cli_list *l = (cli_list *)field;
        const char **items = realloc(l->items, (size_t)(l->n + 1) * sizeof *items);
        if (!items)
            return cli_usage_error(cmd, "out of memory");
        items[l->n++] = v;
        l->items = items;
        return 0;
    }
    case OPT_FLAG:
        *(int *)field = 1;
        return 0;
    }
    return 2;
}

int cli_parse(const char *cmd, const cli_opt *table, size_t n, void *cfg, int argc, char **argv,
              cli_list *rest)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].def && set_value(cmd, &table[i], cfg, table[i].def) != 0)
            return 2;
    rest->items = calloc((size_t)argc + 1, sizeof *rest->items);
    rest->n = 0;
    if (!rest->items)
        return cli_usage_error(cmd, "out of memory");
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        const cli_opt *o = NULL;
        const char *val = NULL;
        if (strcmp(arg, "--") == 0) {
            while (++a < argc)
                rest->items[rest->n++] = argv[a];
            break;
        }
        if (strncmp(arg, "--", 2) == 0) {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (size_t i = 0; i < n && !o; i++)
                if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0)
                    o = &table[i];
            if (!o)
                return cli_usage_error(cmd, "unknown option '%s'", arg);
            if (eq)
                val = eq + 1;
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            for (size_t i = 0; i < n && !o; i++)
                if (table[i].short_name == arg[1])
                    o = &table[i];
            if (!o)
                return cli_usage_error(cmd, "unknown option '%s'", arg);
        } else {
            rest->items[rest->n++] = arg;
            continue;
        }
        if (o->kind == OPT_FLAG) {
            if (val)
                return cli_usage_error(cmd, "--%s takes no value", o->name);
        } else if (!val) {
            if (a + 1 >= argc)
                return cli_usage_error(cmd, "--%s needs a value", o->name);
            val = argv[++a];
        }
        if (set_value(cmd, o, cfg, val) != 0)
            return 2;
    }
    return 0;
}

void cli_help(FILE *f, const char *cmd, const char *synopsis, const char *about,
              const cli_opt *table, size_t n)
{
    fprintf(f, "usage: nats-http %s %s\n\n%s\n\noptions:\n", cmd, synopsis, about);
    for (size_t i = 0; i < n; i++) {
        const cli_opt *o = &table[i];
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        fprintf(f, "  %-30s %s", left, o->help);
        if (o->def && o->kind != OPT_FLAG)
            fprintf(f, " [default: %s]", o->def);
        if (o->kind == OPT_LIST)
            fprintf(f, " (repeatable)");
        fputc('\n', f);
    }
}

static _Atomic bool closing;   /* our own Close: not worth a warning */
static natshttp_flusher *flusher;   /* the one connection's (see natshttp_flusher_new) */

static void on_disconnected(natsConnection *nc, void *closure)
{
    if (closing)
        return;
    natshttp_log(NATSHTTP_LOG_WARN, closure, "disconnected from NATS");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    natshttp_log(NATSHTTP_LOG_INFO, closure, "reconnected to NATS at %s", url);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    const char *text = NULL;
    natsConnection_GetLastError(nc, &text);
    natshttp_log(NATSHTTP_LOG_WARN, closure, "NATS: %s%s%s", natsStatus_GetText(err),
                 text ? ": " : "", text ? text : "");
}

natsConnection *cli_connect(const char *cmd, const cli_common *c)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (c->log_level && strcasecmp(c->log_level, levels[i]) == 0)
            natshttp_log_set_level((natshttp_log_level)i);

    const char *servers = c->server ? c->server : getenv("NATS_URL");
    if (!servers || !*servers)
        servers = "nats://127.0.0.1:4222";
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsStatus s = natsOptions_Create(&opts);
    char *list = strdup(servers);
    const char *urls[32];
    int nurls = 0;
    for (char *save = NULL, *tok = list ? strtok_r(list, ",", &save) : NULL; tok && nurls < 32;
         tok = strtok_r(NULL, ",", &save))
        urls[nurls++] = tok;
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, urls, nurls);
    if (s == NATS_OK && c->creds)
        s = natsOptions_SetUserCredentialsFromFiles(opts, c->creds, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, (void *)cmd);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, (void *)cmd);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, on_async_error, (void *)cmd);
    /* How publishes reach the socket; a benchmark knob (bench/run, docs/performance.md):
     * "kick" (default) a natshttp_flusher, "buffered" nats.c alone, "asap" SendAsap. */
    const char *flush = getenv("NATSHTTP_NATS_FLUSH");
    if (!flush || !*flush)
        flush = "kick";
    if (s == NATS_OK && strcmp(flush, "asap") == 0)
        s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    if (s == NATS_OK && strcmp(flush, "kick") == 0 &&
        natshttp_flusher_new(&flusher, nc) != NATSHTTP_OK)
        natshttp_log(NATSHTTP_LOG_WARN, cmd, "no flusher thread: publishes wait for nats.c's");
    if (s != NATS_OK)
        natshttp_log(NATSHTTP_LOG_ERROR, cmd, "cannot connect to NATS at %s: %s", servers,
                     natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    free(list);
    return s == NATS_OK ? nc : NULL;
}

void cli_disconnect(natsConnection *nc)
{
    if (!nc)
        return;
    natshttp_flusher_free(flusher);
    flusher = NULL;
    natsConnection_FlushTimeout(nc, 1000);
    closing = true;
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

int cli_check_common(const char *cmd, const cli_common *c)
{
    if (c->protocol != 1 && c->protocol != 2)
        return cli_usage_error(cmd, "--protocol is 1 or 2");
    if (c->window < 1024)
        return cli_usage_error(cmd, "--window must be at least 1024 bytes");
    if (c->idle_timeout < 1)
        return cli_usage_error(cmd, "--idle-timeout must be at least 1 second");
    return 0;
}

static void on_signal(int sig)
{
    if (cli_stop)
        _exit(128 + sig);   /* a second signal: stop at once */
    cli_stop = 1;
}

void cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void cli_wait_for_signal(void)
{
    while (!cli_stop)
        usleep(100 * 1000);
}
