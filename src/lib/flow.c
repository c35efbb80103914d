/* flow.c - the receiving half of v2 flow control: credit granted as the
 * consumer frees body chunks (docs/protocol.md, section 8).
 *
 * A credit sink belongs to one body being received. Every chunk of that body
 * holds a reference; natshttp_chunk_free reports the chunk's bytes here, and
 * once enough have been consumed a Natshttp-Credit message goes back to the
 * sender, addressed to the reply subject of the chunk just consumed (so that
 * a sender's permissions need only allow responses). It runs on whatever
 * thread frees the chunk. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nh_credit {
    _Atomic int refs;
    pthread_mutex_t mu;
    natsConnection *nc;
    char *ctl_reply;          /* reply subject credit messages carry, or NULL */
    int64_t pending, threshold;
    bool closed;
};

nh_credit *nh_credit_new(natsConnection *nc, int64_t window, const char *ctl_reply)
{
    nh_credit *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ctl_reply = ctl_reply ? strdup(ctl_reply) : NULL;
    if (ctl_reply && !c->ctl_reply) {
        free(c);
        return NULL;
    }
    c->refs = 1;
    c->nc = nc;
    /* Grant in quarters of the window: few credit messages, and the sender
     * never waits while three quarters are still on their way. */
    c->threshold = window / 4 > 0 ? window / 4 : 1;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

nh_credit *nh_credit_ref(nh_credit *c)
{
    c->refs++;
    return c;
}

void nh_credit_unref(nh_credit *c)
{
    if (!c || --c->refs > 0)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c->ctl_reply);
    free(c);
}

void nh_credit_close(nh_credit *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_mutex_unlock(&c->mu);
}

natshttp_status nh_publish_control(natsConnection *nc, const char *subject, const char *reply,
                                   const char *key, const char *value)
{
    natsMsg *m = NULL;
    natsStatus ns = natsMsg_Create(&m, subject, reply, NULL, 0);
    if (ns == NATS_OK)
        ns = natsMsgHeader_Set(m, key, value);
    if (ns == NATS_OK)
        ns = natsConnection_PublishMsg(nc, m);
    natsMsg_Destroy(m);
    nh_flush_kick(nc);
    return natshttp_status_from_nats(ns);
}

void nh_credit_consumed(nh_credit *c, size_t n, const char *target)
{
    char num[24];
    int64_t grant = 0;
    pthread_mutex_lock(&c->mu);
    c->pending += (int64_t)n;
    if (!c->closed && target && *target && c->pending >= c->threshold) {
        grant = c->pending;
        c->pending = 0;
        snprintf(num, sizeof num, "%lld", (long long)grant);
        /* Published under the lock: credits for one body leave in order. */
        nh_publish_control(c->nc, target, c->ctl_reply, NH_HDR_CREDIT, num);
    }
    pthread_mutex_unlock(&c->mu);
}

void nh_hooks_load(nh_hooks *h)
{
    h->drop_seq = h->dup_seq = -1;
#ifdef NATSHTTP_TEST_HOOKS
    const char *d = getenv("NATSHTTP_TEST_DROP_SEQ");
    const char *u = getenv("NATSHTTP_TEST_DUP_SEQ");
    h->drop_seq = d ? nh_parse_u63(d) : -1;
    h->dup_seq = u ? nh_parse_u63(u) : -1;
    if (h->drop_seq >= 0 || h->dup_seq >= 0)
        NH_LOG_W("hooks", "test hooks active: drop piece %lld, repeat piece %lld",
                 (long long)h->drop_seq, (long long)h->dup_seq);
#endif
}
