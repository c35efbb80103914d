/* queue.c - an unbounded-by-design FIFO of pointers: producers are nats.c's
 * delivery threads and the library's own calls, the consumer one dispatch
 * thread. What bounds it is the traffic the protocol lets in (see docs/design.md). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int nh_queue_init(nh_queue *q)
{
    q->cap = 64;
    q->head = q->len = 0;
    q->closed = false;
    q->items = malloc(q->cap * sizeof *q->items);
    if (!q->items)
        return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void nh_queue_destroy(nh_queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->items);
    q->items = NULL;
}

int nh_queue_push(nh_queue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    if (q->len == q->cap) {
        size_t cap = q->cap * 2;
        void **n = malloc(cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&q->mu);
            return -1;
        }
        for (size_t i = 0; i < q->len; i++)
            n[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = n;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->len) % q->cap] = item;
    q->len++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void *nh_queue_pop(nh_queue *q, int64_t timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        until = nh_deadline(CLOCK_MONOTONIC, timeout_ms);
    }
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    void *item = NULL;
    if (q->len > 0) {
        item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    pthread_mutex_unlock(&q->mu);
    return item;
}

void nh_queue_close(nh_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
