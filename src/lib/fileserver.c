/* fileserver.c - `serve --dir`: natshttp_server requests answered from a
 * directory by a small fixed pool of worker threads.
 *
 * The dispatch thread only queues each request; a worker decides the answer
 * (files.c), publishes the head, then sends the body a few chunks at a time
 * and puts the job back at the end of the queue, so that one large download
 * never holds a worker while small requests wait. Memory: one read buffer
 * per worker. */
#include "internal.h"
#include "files.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMP "serve"
#define STEPS_PER_TURN 4

/* A job waiting for flow-control credit is parked; on_writable puts it back. */
typedef enum job_state { JOB_RUNNING, JOB_PARKED, JOB_WOKEN } job_state;

typedef struct job {
    natshttp_txn *txn;
    const natshttp_head *req;
    nh_files_reply reply;
    int64_t pos, end;
    bool started;
    pthread_mutex_t mu;
    job_state state;
} job;

struct natshttp_files {
    natshttp_server *srv;
    nh_files *fs;
    nh_queue jobs;
    pthread_t *workers;
    int nworkers;
    size_t chunk_size;
};

static const char *get_header(void *cls, const char *name)
{
    return natshttp_head_get(cls, name);
}

static void add_header(void *cls, const char *name, const char *value)
{
    natshttp_head *h = cls;
    if (natshttp_head_add(h, name, value) != NATSHTTP_OK)
        NH_LOG_W(COMP, "dropped response header %s", name);
}

static void job_done(job *j, bool ok)
{
    natshttp_txn_set_data(j->txn, NULL);
    natshttp_txn_finish(j->txn, ok);
    nh_files_reply_release(&j->reply);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* After AGAIN: park, unless the wake-up came first. True when parked. */
static bool park(job *j)
{
    pthread_mutex_lock(&j->mu);
    bool parked = j->state == JOB_RUNNING;
    j->state = parked ? JOB_PARKED : JOB_RUNNING;
    pthread_mutex_unlock(&j->mu);
    return parked;
}

/* Decides the answer and sends its head; false when the job is over. */
static bool start(natshttp_files *f, job *j)
{
    size_t plen = 0;
    const char *path = natshttp_txn_path(j->txn, &plen);
    natshttp_head *resp = NULL;
    if (natshttp_head_new(&resp, 0) != NATSHTTP_OK) {
        job_done(j, false);
        return false;
    }
    int rc = nh_files_handle(f->fs, natshttp_head_method(j->req), path, plen,
                             natshttp_txn_raw_path(j->txn), get_header, (void *)j->req,
                             add_header, resp, &j->reply);
    if (rc != 0) {
        natshttp_head_free(resp);
        job_done(j, false);
        return false;
    }
    nh_files_reply *r = &j->reply;
    natshttp_head_set_status(resp, r->status, NULL);
    int64_t cl = r->mem ? (int64_t)r->mem_len : r->length;
    natshttp_status st = natshttp_txn_respond(j->txn, resp, cl);
    natshttp_head_free(resp);
    if (r->status >= 400)
        NH_LOG_I(COMP, "%s %s -> %d", natshttp_head_method(j->req), natshttp_txn_raw_path(j->txn),
                 r->status);
    if (st != NATSHTTP_OK) {
        NH_LOG_W(COMP, "responding to %s failed: %s", natshttp_txn_raw_path(j->txn),
                 natshttp_status_text(st));
        job_done(j, false);
        return false;
    }
    if (r->no_body) {
        job_done(j, true);
        return false;
    }
    if (r->mem) {
        st = natshttp_txn_write(j->txn, r->mem, r->mem_len, NULL);
        job_done(j, st == NATSHTTP_OK);
        return false;
    }
    if (r->fd < 0 || r->length == 0) {
        job_done(j, true);
        return false;
    }
    j->pos = r->offset;
    j->end = r->offset + r->length;
    j->started = true;
    return true;
}

/* Sends up to STEPS_PER_TURN chunks; false when the job is over. */
static bool step(natshttp_files *f, job *j, uint8_t *buf)
{
    size_t chunk = natshttp_txn_chunk_size(j->txn);
    if (chunk > f->chunk_size)
        chunk = f->chunk_size;
    for (int i = 0; i < STEPS_PER_TURN && j->pos < j->end; i++) {
        size_t want = (size_t)(j->end - j->pos) < chunk ? (size_t)(j->end - j->pos) : chunk;
        ssize_t n = pread(j->reply.fd, buf, want, j->pos);
        if (n <= 0) {
            NH_LOG_E(COMP, "reading %s failed at %lld: %s", natshttp_txn_raw_path(j->txn),
                     (long long)j->pos, n < 0 ? strerror(errno) : "file shrank");
            job_done(j, false);
            return false;
        }
        size_t taken = 0;
        natshttp_status st = natshttp_txn_write(j->txn, buf, (size_t)n, &taken);
        j->pos += (int64_t)taken;
        if (st == NATSHTTP_AGAIN)
            return !park(j);   /* the rest is read again when credit comes */
        if (st == NATSHTTP_CANCELLED) {
            NH_LOG_D(COMP, "%s: the client went away at %lld", natshttp_txn_raw_path(j->txn),
                     (long long)j->pos);
            job_done(j, false);
            return false;
        }
        if (st != NATSHTTP_OK) {
            NH_LOG_W(COMP, "sending %s failed: %s", natshttp_txn_raw_path(j->txn),
                     natshttp_status_text(st));
            job_done(j, false);
            return false;
        }
    }
    if (j->pos >= j->end) {
        job_done(j, true);
        return false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    natshttp_files *f = arg;
    uint8_t *buf = malloc(f->chunk_size);
    for (;;) {
        job *j = nh_queue_pop(&f->jobs, -1);
        if (!j)
            break;   /* closed */
        if (!buf) {
            job_done(j, false);
            continue;
        }
        bool more = j->started ? step(f, j, buf) : start(f, j);
        if (more && nh_queue_push(&f->jobs, j) != 0)
            job_done(j, false);
    }
    free(buf);
    return NULL;
}

static void on_request(void *ctx, natshttp_txn *txn, const natshttp_head *req)
{
    natshttp_files *f = ctx;
    job *j = calloc(1, sizeof *j);
    if (!j) {
        natshttp_txn_finish(txn, false);
        return;
    }
    j->txn = txn;
    j->req = req;
    j->reply.fd = -1;
    pthread_mutex_init(&j->mu, NULL);
    natshttp_txn_set_data(txn, j);
    if (nh_queue_push(&f->jobs, j) != 0) {
        free(j);
        natshttp_txn_finish(txn, false);
    }
}

static void on_writable(void *ctx, natshttp_txn *txn)
{
    natshttp_files *f = ctx;
    job *j = natshttp_txn_data(txn);
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    bool requeue = j->state == JOB_PARKED;
    j->state = requeue ? JOB_RUNNING : JOB_WOKEN;
    pthread_mutex_unlock(&j->mu);
    if (requeue && nh_queue_push(&f->jobs, j) != 0)
        job_done(j, false);
}

static void on_body(void *ctx, natshttp_txn *txn, natshttp_chunk *chunk)
{
    natshttp_chunk_free(chunk);   /* a file server takes no bodies */
}

natshttp_status natshttp_files_new(natshttp_files **out, natsConnection *nc,
                                   const natshttp_files_options *opts)
{
    if (!out || !nc || !opts || !opts->dir)
        return NATSHTTP_INVALID;
    natshttp_files *f = calloc(1, sizeof *f);
    if (!f)
        return NATSHTTP_NOMEM;
    natshttp_status st = NATSHTTP_OK;
    int rc = nh_files_new(&f->fs, opts->dir, opts->list);
    if (rc != 0) {
        NH_LOG_E(COMP, "cannot open %s: %s", opts->dir, strerror(-rc));
        free(f);
        return NATSHTTP_IO;
    }
    f->nworkers = opts->workers > 0 ? opts->workers : 2;
    f->chunk_size = opts->chunk_size ? opts->chunk_size : (size_t)natsConnection_GetMaxPayload(nc);
    if (f->chunk_size == 0 || f->chunk_size > 64u * 1024 * 1024)
        f->chunk_size = 1024 * 1024;
    if (nh_queue_init(&f->jobs) != 0) {
        nh_files_free(f->fs);
        free(f);
        return NATSHTTP_NOMEM;
    }
    f->workers = calloc((size_t)f->nworkers, sizeof *f->workers);
    int started = 0;
    for (; f->workers && started < f->nworkers; started++)
        if (pthread_create(&f->workers[started], NULL, worker_main, f) != 0)
            break;
    if (started < f->nworkers)
        st = NATSHTTP_NOMEM;
    if (st == NATSHTTP_OK) {
        natshttp_server_callbacks cb = {
            .on_request = on_request, .on_body = on_body, .on_writable = on_writable};
        st = natshttp_server_new(&f->srv, nc, &opts->server, &cb, f);
    }
    if (st != NATSHTTP_OK) {
        f->nworkers = started;
        natshttp_files_free(f);
        return st;
    }
    *out = f;
    return NATSHTTP_OK;
}

void natshttp_files_free(natshttp_files *f)
{
    if (!f)
        return;
    natshttp_server_free(f->srv);   /* no new jobs after this */
    nh_queue_close(&f->jobs);
    for (int i = 0; i < f->nworkers; i++)
        pthread_join(f->workers[i], NULL);
    job *j;
    while ((j = nh_queue_pop(&f->jobs, 0)) != NULL)
        job_done(j, false);
    free(f->workers);
    nh_queue_destroy(&f->jobs);
    nh_files_free(f->fs);
    free(f);
}

natshttp_status natshttp_files_drain(natshttp_files *f, int64_t timeout_ms)
{
    return f ? natshttp_server_drain(f->srv, timeout_ms) : NATSHTTP_INVALID;
}
