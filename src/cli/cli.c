/* cli.c - option parsing from the tables (command line and --config file),
 * the log file, NATS connection set-up with its security options, signals. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

volatile sig_atomic_t cli_stop;
volatile sig_atomic_t cli_hup;

static char *config_text;      /* the --config file; values point into it */
static const char *log_path;   /* --log-file, for the reopen on SIGHUP */

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

/* One pass over argv. */
static int parse_argv(const char *cmd, const cli_opt *table, size_t n, void *cfg, int argc,
                      char **argv, cli_list *rest)
{
    rest->n = 0;
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

/* Every field back to zero, then the defaults. */
static int reset_defaults(const char *cmd, const cli_opt *table, size_t n, void *cfg)
{
    for (size_t i = 0; i < n; i++) {
        char *field = (char *)cfg + table[i].offset;
        switch (table[i].kind) {
        case OPT_STR: *(const char **)field = NULL; break;
        case OPT_INT: *(long long *)field = 0; break;
        case OPT_FLAG: *(int *)field = 0; break;
        case OPT_LIST:
            free(((cli_list *)field)->items);
            *(cli_list *)field = (cli_list){0};
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (table[i].def && set_value(cmd, &table[i], cfg, table[i].def) != 0)
            return 2;
    return 0;
}

char *cli_read_file(const char *cmd, const char *what, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = f != NULL;
    while (ok) {
        if (cap - len < 4096) {
            if (cap > (16u << 20)) {   /* no certificate or config file is that big */
                errno = EFBIG;
                ok = false;
                break;
            }
            char *nb = realloc(buf, cap = cap ? 2 * cap : 8192);
            if (!nb) {
                ok = false;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            ok = !ferror(f);
            break;
        }
    }
    int err = errno;
    if (f)
        fclose(f);
    if (!ok) {
        fprintf(stderr, "nats-http %s: cannot read %s %s: %s\n", cmd, what, path, strerror(err));
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

static bool parse_bool(const char *v, int *out)
{
    if (!*v || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
        !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = 0;
    else
        return false;
    return true;
}

/* "name value" or "name = value" per line; '#' starts a comment line; a value
 * may be put in double quotes (to keep spaces at its ends). */
static int apply_config(const char *cmd, const cli_opt *table, size_t n, void *cfg,
                        const char *path)
{
    free(config_text);
    config_text = cli_read_file(cmd, "--config", path);
    if (!config_text)
        return 2;
    int lineno = 0;
    for (char *line = config_text, *next; line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        size_t len = strlen(line);
        while (len && isspace((unsigned char)line[len - 1]))
            line[--len] = 0;
        while (isspace((unsigned char)*line))
            line++;
        if (!*line || *line == '#')
            continue;
        char *name = line;
        while (*line && !isspace((unsigned char)*line) && *line != '=')
            line++;
        char *name_end = line;
        while (isspace((unsigned char)*line))
            line++;
        if (*line == '=')
            line++;
        while (isspace((unsigned char)*line))
            line++;
        *name_end = 0;
        char *val = line;
        len = strlen(val);
        if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
            val[len - 1] = 0;
            val++;
        }
        const cli_opt *o = NULL;
        for (size_t i = 0; i < n && !o; i++)
            if (strcmp(table[i].name, name) == 0)
                o = &table[i];
        if (!o || strcmp(name, "config") == 0 || strcmp(name, "help") == 0)
            return cli_usage_error(cmd, "%s:%d: unknown option '%s'", path, lineno, name);
        if (o->kind == OPT_FLAG) {
            int b;
            if (!parse_bool(val, &b))
                return cli_usage_error(cmd, "%s:%d: %s wants true or false, not '%s'", path,
                                       lineno, name, val);
            *(int *)((char *)cfg + o->offset) = b;
            continue;
        }
        if (!*val)
            return cli_usage_error(cmd, "%s:%d: %s needs a value", path, lineno, name);
        if (set_value(cmd, o, cfg, val) != 0)
            return 2;
    }
    return 0;
}

int cli_parse(const char *cmd, const cli_opt *table, size_t n, void *cfg, int argc, char **argv,
              cli_list *rest)
{
    rest->items = calloc((size_t)argc + 1, sizeof *rest->items);
    rest->n = 0;
    if (!rest->items)
        return cli_usage_error(cmd, "out of memory");
    int rc = reset_defaults(cmd, table, n, cfg);
    if (rc == 0)
        rc = parse_argv(cmd, table, n, cfg, argc, argv, rest);
    /* Every config struct starts with cli_common. With a file: start over,
     * defaults, then the file, then the command line again on top. */
    const char *config = ((const cli_common *)cfg)->config;
    if (rc == 0 && config && !((const cli_common *)cfg)->help) {
        rc = reset_defaults(cmd, table, n, cfg);
        if (rc == 0)
            rc = apply_config(cmd, table, n, cfg, config);
        if (rc == 0)
            rc = parse_argv(cmd, table, n, cfg, argc, argv, rest);
    }
    return rc;
}

void cli_cleanup(void)
{
    free(config_text);
    config_text = NULL;
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
    fprintf(f, "\nEvery option can also be a line 'name value' of the --config file (see\n"
               "docs/cli.md); the command line wins over the file, the file over $NATS_URL.\n");
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

static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static cli_error_sink sink_fn;
static void *sink_arg;

void cli_set_async_error_sink(cli_error_sink fn, void *arg)
{
    pthread_mutex_lock(&sink_mu);
    sink_fn = fn;
    sink_arg = arg;
    pthread_mutex_unlock(&sink_mu);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    const char *text = NULL;
    natsConnection_GetLastError(nc, &text);
    natshttp_log(NATSHTTP_LOG_WARN, closure, "NATS: %s%s%s", natsStatus_GetText(err),
                 text ? ": " : "", text ? text : "");
    pthread_mutex_lock(&sink_mu);
    if (sink_fn)
        sink_fn(sink_arg, err, text);
    pthread_mutex_unlock(&sink_mu);
}

int cli_log_reopen(void)
{
    if (!log_path)
        return 0;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    /* dup2 swaps the file under fd 2 in one step: a line written by another
     * thread meanwhile goes whole to the old file or the new one. */
    int rc = dup2(fd, STDERR_FILENO) < 0 ? -1 : 0;
    close(fd);
    return rc;
}

static int open_log(const char *cmd, const cli_common *c)
{
    if (!c->log_file)
        return 0;
    log_path = c->log_file;
    if (cli_log_reopen() != 0) {
        fprintf(stderr, "nats-http %s: cannot open --log-file %s: %s\n", cmd, c->log_file,
                strerror(errno));
        log_path = NULL;
        return -1;
    }
    return 0;
}

/* A file option must name a readable file: say which one is wrong before
 * nats.c reports it less clearly. */
static bool readable(const char *cmd, const char *opt, const char *path)
{
    if (!path || access(path, R_OK) == 0)
        return true;
    natshttp_log(NATSHTTP_LOG_ERROR, cmd, "cannot read --%s %s: %s", opt, path, strerror(errno));
    return false;
}

natsConnection *cli_connect(const char *cmd, const cli_common *c)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (c->log_level && strcasecmp(c->log_level, levels[i]) == 0)
            natshttp_log_set_level((natshttp_log_level)i);
    if (open_log(cmd, c) != 0)
        return NULL;
    if (!readable(cmd, "creds", c->creds) || !readable(cmd, "nkey", c->nkey) ||
        !readable(cmd, "tls-ca", c->tls_ca) || !readable(cmd, "tls-cert", c->tls_cert) ||
        !readable(cmd, "tls-key", c->tls_key))
        return NULL;
    char nkey_pub[64] = "";
    if (c->nkey) {
        char err[128];
        if (cli_nkey_public(c->nkey, nkey_pub, sizeof nkey_pub, err, sizeof err) != 0) {
            natshttp_log(NATSHTTP_LOG_ERROR, cmd, "--nkey %s: %s", c->nkey, err);
            return NULL;
        }
    }

    const char *servers = c->server ? c->server : getenv("NATS_URL");
    if (!servers || !*servers)
        servers = "nats://127.0.0.1:4222";
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsStatus s = natsOptions_Create(&opts);
    char *list = strdup(servers);
    const char *urls[32];
    int nurls = 0;
    for (char *save = NULL, *tok = list ? strtok_r(list, ", ", &save) : NULL; tok && nurls < 32;
         tok = strtok_r(NULL, ", ", &save))
        urls[nurls++] = tok;
    const char *step = "options";
    if (s == NATS_OK && nurls == 0)
        s = NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, urls, nurls);
    if (s == NATS_OK && c->creds && (step = "--creds"))
        s = natsOptions_SetUserCredentialsFromFiles(opts, c->creds, NULL);
    if (s == NATS_OK && c->nkey && (step = "--nkey"))
        s = natsOptions_SetNKeyFromSeed(opts, nkey_pub, c->nkey);
    if (s == NATS_OK && c->user && (step = "--user"))
        s = natsOptions_SetUserInfo(opts, c->user, c->password ? c->password : "");
    if (s == NATS_OK && c->token && (step = "--token"))
        s = natsOptions_SetToken(opts, c->token);
    if (s == NATS_OK && (c->tls_ca || c->tls_cert) && (step = "TLS"))
        s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK && c->tls_ca && (step = "--tls-ca"))
        s = natsOptions_LoadCATrustedCertificates(opts, c->tls_ca);
    if (s == NATS_OK && c->tls_cert && (step = "--tls-cert/--tls-key"))
        s = natsOptions_LoadCertificatesChain(opts, c->tls_cert, c->tls_key);
    if (s == NATS_OK && (step = "options"))
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    /* Up to 100 ms of jitter so that a cluster's clients do not all come back at once. */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(opts, 100, 100);
    /* A server that vanishes without closing the socket is noticed within ~20 s. */
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(opts, 10000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(opts, 2);
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
    /* With --creds or --nkey, nats.c before nats-io/nats.c#705 (3.4.1 here)
     * leaves "sig" out of CONNECT when the signature of the server's nonce
     * starts with a zero byte (its base64 encoder takes that for an empty
     * string): the server says "Authorization Violation" to 1 connection in
     * 256. Every connection gets a new nonce, so try again a few times; wrong
     * credentials still fail, four times as fast. */
    if (s == NATS_OK && (step = NULL) == NULL) {
        int tries = c->creds || c->nkey ? 4 : 1;
        while ((s = natsConnection_Connect(&nc, opts)) == NATS_CONNECTION_AUTH_FAILED &&
               --tries > 0)
            natshttp_log(NATSHTTP_LOG_DEBUG, cmd, "NATS refused the signed CONNECT; trying again");
    }
    if (s == NATS_OK && strcmp(flush, "kick") == 0 &&
        natshttp_flusher_new(&flusher, nc) != NATSHTTP_OK)
        natshttp_log(NATSHTTP_LOG_WARN, cmd, "no flusher thread: publishes wait for nats.c's");
    if (s != NATS_OK) {
        /* nats.c's own text says what failed (a TLS handshake, an authorization
         * violation); keep it to one line. */
        char why[256] = "";
        const char *last = nats_GetLastError(NULL);
        if (last && *last)
            snprintf(why, sizeof why, ": %s", last);
        for (char *p = why; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        if (step)
            natshttp_log(NATSHTTP_LOG_ERROR, cmd, "bad %s: %s%s", step, natsStatus_GetText(s), why);
        else
            natshttp_log(NATSHTTP_LOG_ERROR, cmd, "cannot connect to NATS at %s: %s%s%s", servers,
                         natsStatus_GetText(s), why,
                         s == NATS_PROTOCOL_ERROR && c->tls_ca && !c->tls_cert
                             ? " (does the server want a client certificate? --tls-cert, --tls-key)"
                             : "");
    }
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
    if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(nc, 1000);
    closing = true;
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

int cli_check_common(const char *cmd, cli_common *c)
{
    if (c->protocol != 1 && c->protocol != 2)
        return cli_usage_error(cmd, "--protocol is 1 or 2");
    if (c->window < 1024)
        return cli_usage_error(cmd, "--window must be at least 1024 bytes");
    if (c->max_head < 4096 || c->max_head > 256 * 1024)
        return cli_usage_error(cmd, "--max-head must be 4096 to 262144 bytes");
    if (c->idle_timeout < 1)
        return cli_usage_error(cmd, "--idle-timeout must be at least 1 second");
    if (c->inbox_prefix && (!natshttp_subject_valid(c->inbox_prefix) || strlen(c->inbox_prefix) > 32))
        return cli_usage_error(cmd, "--inbox-prefix must be a literal NATS subject of at most 32 bytes");
    if (c->layout && strcmp(c->layout, "native") == 0)
        c->layout_value = NATSHTTP_LAYOUT_NATIVE;
    else if (c->layout && strcmp(c->layout, "compat") == 0)
        c->layout_value = NATSHTTP_LAYOUT_COMPAT;
    else
        return cli_usage_error(cmd, "--layout is native or compat");
    if (c->log_level && strcasecmp(c->log_level, "error") && strcasecmp(c->log_level, "warn") &&
        strcasecmp(c->log_level, "info") && strcasecmp(c->log_level, "debug"))
        return cli_usage_error(cmd, "--log-level is error, warn, info or debug");
    if ((c->creds != NULL) + (c->nkey != NULL) + (c->user != NULL) + (c->token != NULL) > 1)
        return cli_usage_error(cmd, "use one of --creds, --nkey, --user and --token");
    if (c->password && !c->user)
        return cli_usage_error(cmd, "--password needs --user");
    if (!c->tls_cert != !c->tls_key)
        return cli_usage_error(cmd, "--tls-cert and --tls-key go together");
    return 0;
}

static void on_hup(int sig)
{
    cli_hup = 1;   /* the reopen happens in cli_wait_for_signal, not here */
}

int cli_split_addr(char *s, const char **addr, unsigned *port)
{
    char *colon = strrchr(s, ':');
    if (!colon)
        return -1;
    *colon = 0;
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (*end || colon[1] == 0 || p > 65535)
        return -1;
    if (s[0] == '[') {
        size_t n = strlen(s);
        if (n < 2 || s[n - 1] != ']')
            return -1;
        s[n - 1] = 0;
        s++;
    }
    *addr = s;
    *port = (unsigned)p;
    return 0;
}

int cli_metrics_start(const char *cmd, const char *spec, natsConnection *nc, natshttp_metrics **out)
{
    natshttp_metrics *m = NULL;
    natshttp_status st = natshttp_metrics_new(&m, nc);
    if (st == NATSHTTP_OK && spec) {
        char *copy = strdup(spec);
        const char *addr = NULL;
        unsigned port = 0;
        if (!copy || cli_split_addr(copy, &addr, &port) != 0) {
            natshttp_log(NATSHTTP_LOG_ERROR, cmd, "--metrics wants ADDR:PORT, not '%s'", spec);
            st = NATSHTTP_INVALID;
        } else {
            st = natshttp_metrics_listen(m, addr, (uint16_t)port);
            bool v6 = strchr(addr, ':') != NULL;
            if (st == NATSHTTP_OK)
                natshttp_log(NATSHTTP_LOG_INFO, cmd, "metrics on http://%s%s%s:%u/metrics",
                             v6 ? "[" : "", addr, v6 ? "]" : "", natshttp_metrics_port(m));
        }
        free(copy);
    }
    if (st != NATSHTTP_OK) {
        natshttp_metrics_free(m);
        return 1;
    }
    *out = m;
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
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void cli_wait_for_signal(void)
{
    while (!cli_stop) {
        usleep(100 * 1000);
        if (cli_hup) {
            cli_hup = 0;
            if (cli_log_reopen() != 0)
                natshttp_log(NATSHTTP_LOG_ERROR, "log", "cannot reopen %s: %s", log_path,
                             strerror(errno));
            else if (log_path)
                natshttp_log(NATSHTTP_LOG_INFO, "log", "reopened %s", log_path);
        }
    }
}
