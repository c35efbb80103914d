/* flush.c - publishes on the wire at once when alone, batched under load.
 *
 * nats.c buffers every publish and its flusher thread writes the buffer
 * about 1 ms after the first one (natsOptions_SetSendAsap instead writes on
 * every publish: fast alone, many small writes under load). A flusher is
 * one thread per connection: the library kicks it after each publish
 * (nh_flush_kick); it calls natsConnection_FlushTimeout, which writes a PING
 * and everything buffered before it in place, then waits for the PONG.
 * Publishes made meanwhile set the flag again and go out together with the
 * next PING: none waiting 1 ms when alone. When publishes keep coming
 * during the round trip the connection is busy, and the flusher stands back
 * for 1 ms, leaving the batching to nats.c's own flusher. Measured in
 * docs/performance.md. */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define MAX_FLUSHERS 16
#define BUSY_PAUSE_US 1000   /* nats.c's flusher writes within 1 ms */
#define PONG_WAIT_MS 500   /* the PONG is only our pacing: a late one costs latency, not data */

struct natshttp_flusher {
    natsConnection *nc;
    pthread_cond_t cv;
    bool pending, quit;
    pthread_t thread;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;   /* the table and every flag */
static natshttp_flusher *reg[MAX_FLUSHERS];
static atomic_int reg_n;

static void *flusher_main(void *arg)
{
    natshttp_flusher *f = arg;
    pthread_mutex_lock(&reg_mu);
    while (!f->quit) {
        if (!f->pending) {
            pthread_cond_wait(&f->cv, &reg_mu);
            continue;
        }
        f->pending = false;
        pthread_mutex_unlock(&reg_mu);
        natsConnection_FlushTimeout(f->nc, PONG_WAIT_MS);
        pthread_mutex_lock(&reg_mu);
        if (f->pending && !f->quit) {
            /* Published again within one round trip: the connection is busy, and
             * nats.c's own flusher batches better than a PING per round trip.
             * Leave it the next BUSY_PAUSE_US; kicks meanwhile are dropped. */
            pthread_mutex_unlock(&reg_mu);
            struct timespec ts = {0, BUSY_PAUSE_US * 1000L};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&reg_mu);
            f->pending = false;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return NULL;
}

natshttp_status natshttp_flusher_new(natshttp_flusher **out, natsConnection *nc)
{
    natshttp_flusher *f = calloc(1, sizeof *f);
    if (!f)
        return NATSHTTP_NOMEM;
    f->nc = nc;
    pthread_cond_init(&f->cv, NULL);
    natshttp_status st = NATSHTTP_OK;
    pthread_mutex_lock(&reg_mu);
    int slot = -1;
    for (int i = 0; i < MAX_FLUSHERS && slot < 0; i++)
        if (!reg[i])
            slot = i;
    if (slot < 0)
        st = NATSHTTP_INVALID;
    else if (pthread_create(&f->thread, NULL, flusher_main, f) != 0)
        st = NATSHTTP_NOMEM;
    else {
        reg[slot] = f;
        atomic_fetch_add(&reg_n, 1);
    }
    pthread_mutex_unlock(&reg_mu);
    if (st != NATSHTTP_OK) {
        pthread_cond_destroy(&f->cv);
        free(f);
        return st;
    }
    *out = f;
    return NATSHTTP_OK;
}

void natshttp_flusher_free(natshttp_flusher *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_FLUSHERS; i++)
        if (reg[i] == f) {
            reg[i] = NULL;
            atomic_fetch_sub(&reg_n, 1);
        }
    f->quit = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&reg_mu);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cv);
    free(f);
}

void nh_flush_kick(natsConnection *nc)
{
    if (atomic_load_explicit(&reg_n, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < MAX_FLUSHERS; i++) {
        natshttp_flusher *f = reg[i];
        if (f && f->nc == nc && !f->pending) {
            f->pending = true;
            pthread_cond_signal(&f->cv);
        }
    }
    pthread_mutex_unlock(&reg_mu);
}
