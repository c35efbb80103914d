/* echo_responder.c - a NATS-side test server built on libnatshttp: answers
 * every request with what it received, as JSON: method, paths, query, header
 * fields in order, and the body's length and SHA-256. Usage:
 *   echo_responder NATS_URL SUBJECT [GROUP]
 * Prints "ready" on stderr once subscribed. */
#include "natshttp.h"

#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct echo {
    EVP_MD_CTX *md;
    uint64_t len;
    const natshttp_head *req;
} echo;

static volatile sig_atomic_t stop;
static const char *instance = "echo";

static void on_signal(int sig) { stop = 1; }

/* Appends s as a JSON string. */
static void json_str(char **buf, size_t *len, size_t *cap, const char *s)
{
    for (;;) {
        if (*len + 8 > *cap) {
            *cap = *cap * 2 + 64;
            *buf = realloc(*buf, *cap);
        }
        if (!*s)
            break;
        unsigned char c = (unsigned char)*s++;
        if (c == '"' || c == '\\') {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = (char)c;
        } else if (c < 0x20) {
            *len += (size_t)sprintf(*buf + *len, "\\u%04x", c);
        } else {
            (*buf)[(*len)++] = (char)c;
        }
    }
}

static void put(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

/* Requests interleave on the dispatch thread, so state is keyed by txn. */
typedef struct slot {
    natshttp_txn *txn;
    echo *e;
    struct slot *next;
} slot;
static slot *slots;

static echo *find(natshttp_txn *txn)
{
    for (slot *s = slots; s; s = s->next)
        if (s->txn == txn)
            return s->e;
    return NULL;
}

static void on_request(void *ctx, natshttp_txn *txn, const natshttp_head *req)
{
    echo *e = calloc(1, sizeof *e);
    e->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(e->md, EVP_sha256(), NULL);
    e->req = req;
    slot *s = malloc(sizeof *s);
    s->txn = txn;
    s->e = e;
    s->next = slots;
    slots = s;
}

static void on_body(void *ctx, natshttp_txn *txn, natshttp_chunk *chunk)
{
    echo *e = find(txn);
    if (e) {
        EVP_DigestUpdate(e->md, natshttp_chunk_data(chunk), natshttp_chunk_len(chunk));
        e->len += natshttp_chunk_len(chunk);
    }
    natshttp_chunk_free(chunk);
}

static void on_body_end(void *ctx, natshttp_txn *txn, natshttp_status st)
{
    slot **pp = &slots, *s;
    while ((s = *pp) && s->txn != txn)
        pp = &s->next;
    if (!s)
        return;
    *pp = s->next;
    echo *e = s->e;
    free(s);

    unsigned char dig[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(e->md, dig, &dl);
    char hex[65];
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", dig[i]);

    size_t plen;
    char *buf = NULL, num[64];
    size_t len = 0, cap = 0;
    put(&buf, &len, &cap, "{\"method\":\"");
    json_str(&buf, &len, &cap, natshttp_head_method(e->req));
    put(&buf, &len, &cap, "\",\"raw_path\":\"");
    json_str(&buf, &len, &cap, natshttp_txn_raw_path(txn));
    put(&buf, &len, &cap, "\",\"path\":\"");
    json_str(&buf, &len, &cap, natshttp_txn_path(txn, &plen));
    put(&buf, &len, &cap, "\",\"query\":\"");
    json_str(&buf, &len, &cap, natshttp_head_query(e->req));
    put(&buf, &len, &cap, "\",\"instance\":\"");
    json_str(&buf, &len, &cap, instance);
    put(&buf, &len, &cap, "\",\"headers\":[");
    for (size_t i = 0; i < natshttp_head_count(e->req); i++) {
        const char *n, *v;
        natshttp_head_at(e->req, i, &n, &v);
        put(&buf, &len, &cap, i ? ",[\"" : "[\"");
        json_str(&buf, &len, &cap, n);
        put(&buf, &len, &cap, "\",\"");
        json_str(&buf, &len, &cap, v);
        put(&buf, &len, &cap, "\"]");
    }
    snprintf(num, sizeof num, "],\"length\":%llu,\"sha256\":\"", (unsigned long long)e->len);
    put(&buf, &len, &cap, num);
    put(&buf, &len, &cap, hex);
    put(&buf, &len, &cap, st == NATSHTTP_OK ? "\",\"complete\":true}\n" : "\",\"complete\":false}\n");

    natshttp_head *h = NULL;
    natshttp_head_new(&h, 0);
    natshttp_head_set_status(h, 200, NULL);
    natshttp_head_add(h, "Content-Type", "application/json");
    natshttp_head_add(h, "X-Body-Sha256", hex);
    snprintf(num, sizeof num, "%llu", (unsigned long long)e->len);
    natshttp_head_add(h, "X-Body-Length", num);
    natshttp_txn_respond(txn, h, (int64_t)len);
    natshttp_txn_write(txn, buf, len, NULL);
    natshttp_txn_finish(txn, true);
    natshttp_head_free(h);
    free(buf);
    EVP_MD_CTX_free(e->md);
    free(e);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: echo_responder NATS_URL SUBJECT [GROUP [INSTANCE]]\n"
                "  ECHO_LAYOUT=compat in the environment takes v1 subjects;\n"
                "  ECHO_INBOX_PREFIX=P puts its private subjects under P.>\n");
        return 2;
    }
    if (argc > 4)
        instance = argv[4];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK) {
        fprintf(stderr, "echo_responder: cannot connect to %s\n", argv[1]);
        return 1;
    }
    natshttp_server *srv = NULL;
    const char *layout = getenv("ECHO_LAYOUT");
    natshttp_server_options so = {
        .subject = argv[2],
        .group = argc > 3 && *argv[3] ? argv[3] : NULL,
        .layout = layout && strcmp(layout, "compat") == 0 ? NATSHTTP_LAYOUT_COMPAT
                                                          : NATSHTTP_LAYOUT_NATIVE,
        .inbox_prefix = getenv("ECHO_INBOX_PREFIX"),
    };
    natshttp_server_callbacks cb = {.on_request = on_request, .on_body = on_body, .on_body_end = on_body_end};
    if (natshttp_server_new(&srv, nc, &so, &cb, NULL) != NATSHTTP_OK) {
        fprintf(stderr, "echo_responder: cannot subscribe\n");
        return 1;
    }
    natshttp_log(NATSHTTP_LOG_INFO, "echo", "ready subject=%s", argv[2]);
    while (!stop)
        usleep(50 * 1000);
    natshttp_server_free(srv);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(2000);
    return 0;
}
