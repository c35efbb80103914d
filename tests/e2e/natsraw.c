/* natsraw.c - a raw NATS peer for tests, on nats.c directly (not on
 * libnatshttp), to send what our own parts never would.
 *
 *   natsraw request URL SUBJECT [-H 'K: V']... [-d DATA] [-t MS] [-i INBOX_PREFIX]
 *       publishes one message with a fresh inbox (under INBOX_PREFIX, default
 *       _INBOX) as reply and prints every
 *       message that arrives on the inbox within -t ms (default 2000):
 *       "MSG <subject> reply=<reply> status=<status>", then "H <key>: <value>"
 *       lines, then "DATA <len>" and the data, then a blank line.
 *   natsraw reply URL SUBJECT [-H 'K: V']... [-d DATA] [-n COUNT] [--no-headers]
 *       answers each request on SUBJECT (a wildcard is fine) with one message
 *       carrying the given headers and data, up to COUNT (default forever).
 *       Prints "ready" on stderr once subscribed.
 *   natsraw listen URL SUBJECT [-t MS]
 *       prints every message on SUBJECT for -t ms.
 */
#include <nats/nats.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *hdr_k[64], *hdr_v[64];
static int nhdr;
static const char *data = "";
static int count = -1, answered;
static volatile sig_atomic_t stop;

static void print_msg(natsMsg *m)
{
    const char *st = NULL;
    natsMsgHeader_Get(m, "Status", &st);
    printf("MSG %s reply=%s status=%s\n", natsMsg_GetSubject(m),
           natsMsg_GetReply(m) ? natsMsg_GetReply(m) : "", st ? st : "");
    const char **keys = NULL;
    int nk = 0;
    if (natsMsgHeader_Keys(m, &keys, &nk) == NATS_OK) {
        for (int i = 0; i < nk; i++) {
            const char **vals = NULL;
            int nv = 0;
            natsMsgHeader_Values(m, keys[i], &vals, &nv);
            for (int j = 0; j < nv; j++)
                printf("H %s: %s\n", keys[i], vals[j]);
            free((void *)vals);
        }
        free((void *)keys);
    }
    printf("DATA %d\n", natsMsg_GetDataLength(m));
    fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), stdout);
    printf("\n\n");
    fflush(stdout);
}

static natsMsg *make(const char *subj, const char *reply)
{
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, reply, data, (int)strlen(data)) != NATS_OK)
        return NULL;
    for (int i = 0; i < nhdr; i++)
        natsMsgHeader_Add(m, hdr_k[i], hdr_v[i]);
    return m;
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *cls)
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply && *reply) {
        natsMsg *m = make(reply, NULL);
        if (m) {
            natsConnection_PublishMsg(nc, m);
            natsMsg_Destroy(m);
        }
    }
    natsMsg_Destroy(msg);
    if (count > 0 && ++answered >= count)
        stop = 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: natsraw request|reply|listen URL SUBJECT [options]\n");
        return 2;
    }
    const char *mode = argv[1], *url = argv[2], *subject = argv[3];
    int timeout = 2000;
    const char *inbox_prefix = NULL;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "-H") == 0 && i + 1 < argc && nhdr < 64) {
            char *h = strdup(argv[++i]);
            char *c = strchr(h, ':');
            if (!c)
                return 2;
            *c++ = 0;
            while (*c == ' ')
                c++;
            hdr_k[nhdr] = h;
            hdr_v[nhdr++] = c;
        } else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            data = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            timeout = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc) {
            inbox_prefix = argv[++i];
        } else {
            fprintf(stderr, "natsraw: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s != NATS_OK) {
        fprintf(stderr, "natsraw: connect: %s\n", natsStatus_GetText(s));
        return 1;
    }
    int rc = 0;
    if (strcmp(mode, "request") == 0 || strcmp(mode, "listen") == 0) {
        natsSubscription *sub = NULL;
        char inbox[128];
        natsInbox *ib = NULL;
        natsInbox_Create(&ib);
        if (inbox_prefix)   /* "<prefix>.<nuid>": for users who may subscribe to that only */
            snprintf(inbox, sizeof inbox, "%s.%s", inbox_prefix, strrchr((const char *)ib, '.') + 1);
        else
            snprintf(inbox, sizeof inbox, "%s", (const char *)ib);
        natsInbox_Destroy(ib);
        bool req = strcmp(mode, "request") == 0;
        s = natsConnection_SubscribeSync(&sub, nc, req ? inbox : subject);
        if (s == NATS_OK)
            s = natsConnection_Flush(nc);
        if (s == NATS_OK && req) {
            natsMsg *m = make(subject, inbox);
            s = m ? natsConnection_PublishMsg(nc, m) : NATS_NO_MEMORY;
            natsMsg_Destroy(m);
        } else if (s == NATS_OK) {
            fprintf(stderr, "ready\n");
        }
        int64_t until = nats_Now() + timeout;
        while (s == NATS_OK && nats_Now() < until) {
            natsMsg *m = NULL;
            if (natsSubscription_NextMsg(&m, sub, until - nats_Now() > 0 ? until - nats_Now() : 1) !=
                NATS_OK)
                break;
            print_msg(m);
            natsMsg_Destroy(m);
        }
        if (s != NATS_OK) {
            fprintf(stderr, "natsraw: %s\n", natsStatus_GetText(s));
            rc = 1;
        }
        natsSubscription_Destroy(sub);
    } else if (strcmp(mode, "reply") == 0) {
        natsSubscription *sub = NULL;
        s = natsConnection_Subscribe(&sub, nc, subject, on_request, NULL);
        if (s == NATS_OK)
            s = natsConnection_Flush(nc);
        if (s != NATS_OK) {
            fprintf(stderr, "natsraw: %s\n", natsStatus_GetText(s));
            return 1;
        }
        fprintf(stderr, "ready\n");
        while (!stop)
            usleep(20000);
        natsConnection_Flush(nc);
        natsSubscription_Destroy(sub);
    } else {
        fprintf(stderr, "natsraw: unknown mode %s\n", mode);
        rc = 2;
    }
    natsConnection_Destroy(nc);
    nats_CloseAndWait(1000);
    return rc;
}
