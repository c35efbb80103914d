/* main.c - nats-http: dispatches to the subcommands. */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: nats-http COMMAND [OPTIONS]\n\n"
               "HTTP/1.1 carried over NATS.\n\n"
               "commands:\n"
               "  serve     answer HTTP requests arriving on a NATS subject, from a directory\n"
               "            (--dir) or an upstream HTTP server (--upstream)\n"
               "  gateway   an HTTP listener that forwards every request to a NATS subject\n"
               "  request   send one request to a nats+http:// URL, like curl\n\n"
               "'nats-http COMMAND --help' describes each; 'nats-http --version' prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(argc - 2, argv + 2);
    else if (strcmp(cmd, "gateway") == 0)
        rc = cmd_gateway(argc - 2, argv + 2);
    else if (strcmp(cmd, "request") == 0)
        rc = cmd_request(argc - 2, argv + 2);
    else if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("nats-http %s (nats.c %s)\n", NATSHTTP_VERSION, nats_GetVersion());
        return 0;
    } else if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    } else {
        fprintf(stderr, "nats-http: unknown command '%s' (see 'nats-http --help')\n", cmd);
        return 2;
    }
    /* Release nats.c's global state so leak checkers see only real leaks. */
    nats_CloseAndWait(2000);
    cli_cleanup();
    return rc;
}
