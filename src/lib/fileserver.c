/* fileserver.c - `serve --dir`: natshttp_server requests answered from a
 * directory, on the server's receiving thread when the answer is small and
 * by a small fixed pool of worker threads otherwise.
 *
 * Every request but a PUT or one for a directory (a path ending in /, whose
 * listing may be large) is decided where it arrives (files.c: open, fstat,
 * the status and headers), and a body of at most INLINE_MAX bytes is sent
 * there too: reading a small file from the page cache costs less than
 * waking a worker. Any other body is a job on the workers' queue: a worker
 * sends it a few chunks at a time and puts the job back at the end of the
 * queue, so that one large download never holds a worker while small
 * requests wait. An upload (PUT below --writable) is a job from the start,
 * the same the other way: each body chunk is appended to its job, a turn
 * writes the chunks that have arrived, frees each once written (which is
 * what grants the client v2 credit for more), and the job waits off the
 * queue until the receiving side hands it more. Memory: one read buffer per
 * worker and one of INLINE_MAX; an upload holds at most the flow-control
 * window of chunks (v1 has no flow control: PUT_MAX_PENDING caps it).
 *
 * A job is reached from two sides: the worker that runs it, and the server's
 * callbacks, which find it through the txn's data pointer. That pointer is
 * read and cleared under f->mu and each side holds a reference, so a
 * callback never sees a job the worker has freed. */
#include "internal.h"
#include "files.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMP "serve"
#define STEPS_PER_TURN 4
#define INLINE_MAX (64 * 1024)   /* bodies up to this are sent without a worker */
/* Upload bytes received but not yet written, past which a (v1) upload is
 * refused: a v2 client never sends more than the window. */
#define PUT_MAX_PENDING (64 * 1024 * 1024)

/* A job waiting for flow-control credit is parked; on_writable puts it back. */
typedef enum job_state { JOB_RUNNING, JOB_PARKED, JOB_WOKEN } job_state;

typedef struct job {
    _Atomic int refs;          /* the worker side's, and callbacks' for their duration */
    natshttp_txn *txn;
    const natshttp_head *req;
    nh_files_reply reply;
    int64_t pos, end;
    bool started;
    bool put;                  /* an upload */
    pthread_mutex_t mu;
    job_state state;
    bool done;                 /* answered and finished: callbacks leave it alone */

    /* uploads, under mu */
    nh_upload *up;
    natshttp_chunk **ring;     /* chunks received, not yet written */
    size_t rcap, rhead, rlen;
    int64_t pending;           /* their bytes */
    bool queued;               /* on the queue or running: the dispatch side must not push it */
    bool body_ended, overflow;
    int64_t put_size;          /* bytes written, for the log */
    natshttp_status body_status;
} job;

struct natshttp_files {
    natshttp_server *srv;
    nh_files *fs;
    nh_queue jobs;
    pthread_t *workers;
    int nworkers;
    size_t chunk_size;
    uint8_t inline_buf[INLINE_MAX];   /* answer_inline's; callbacks never run concurrently */
    pthread_mutex_t mu;        /* txn data pointers <-> jobs */
    _Atomic bool stopping;     /* natshttp_files_free: what cancels the txns now */
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

static void job_unref(job *j)
{
    if (--j->refs > 0)
        return;
    for (size_t i = 0; i < j->rlen; i++)
        natshttp_chunk_free(j->ring[(j->rhead + i) % j->rcap]);
    free(j->ring);
    nh_upload_abort(j->up);
    nh_files_reply_release(&j->reply);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* The job of txn with a reference for the caller, or NULL once it is over. */
static job *job_get(natshttp_files *f, natshttp_txn *txn)
{
    pthread_mutex_lock(&f->mu);
    job *j = natshttp_txn_data(txn);
    if (j)
        j->refs++;
    pthread_mutex_unlock(&f->mu);
    return j;
}

/* Worker side: the job is over. Finishes the txn and drops the worker's hold. */
static void job_done(natshttp_files *f, job *j, bool ok)
{
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&f->mu);
    natshttp_txn_set_data(j->txn, NULL);
    pthread_mutex_unlock(&f->mu);
    natshttp_txn_finish(j->txn, ok);
    job_unref(j);
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

/* One access line: errors at info, the rest (with the Range asked for) at debug. */
static void log_answer(job *j, int status, int64_t length)
{
    const char *method = natshttp_head_method(j->req);
    const char *range = natshttp_head_get(j->req, "Range");
    if (j->put)
        NH_LOG_I(COMP, "%s %s -> %d (%" PRId64 " bytes received)", method,
                 natshttp_txn_raw_path(j->txn), status, j->put_size);
    else if (status >= 400)
        NH_LOG_I(COMP, "%s %s -> %d (%" PRId64 " bytes)", method, natshttp_txn_raw_path(j->txn),
                 status, length);
    else
        NH_LOG_D(COMP, "%s %s -> %d (%" PRId64 " bytes)%s%s", method, natshttp_txn_raw_path(j->txn),
                 status, length, range ? " range=" : "", range ? range : "");
}

/* Sends the head of j->reply (headers already in resp); frees resp. */
static natshttp_status send_head(job *j, natshttp_head *resp)
{
    nh_files_reply *r = &j->reply;
    natshttp_head_set_status(resp, r->status, NULL);
    int64_t cl = r->mem ? (int64_t)r->mem_len : r->length;
    natshttp_status st = natshttp_txn_respond(j->txn, resp, cl);
    natshttp_head_free(resp);
    log_answer(j, r->status, cl);
    if (st != NATSHTTP_OK)
        NH_LOG_W(COMP, "responding to %s failed: %s", natshttp_txn_raw_path(j->txn),
                 natshttp_status_text(st));
    return st;
}

/* Answers with j->reply when it has no body or a short status text in
 * memory (far below any credit window), and ends the job. */
static void answer_small(natshttp_files *f, job *j, natshttp_head *resp)
{
    natshttp_status st = send_head(j, resp);
    if (st == NATSHTTP_OK && !j->reply.no_body && j->reply.mem)
        st = natshttp_txn_write(j->txn, j->reply.mem, j->reply.mem_len, NULL);
    job_done(f, j, st == NATSHTTP_OK);
}

/* A plain answer with this status (uploads). */
static void answer_status(natshttp_files *f, job *j, int status)
{
    natshttp_head *resp = NULL;
    nh_files_reply_release(&j->reply);
    if (natshttp_head_new(&resp, 0) != NATSHTTP_OK ||
        nh_files_status_reply(status, add_header, resp, &j->reply) != 0) {
        natshttp_head_free(resp);
        job_done(f, j, false);
        return;
    }
    answer_small(f, j, resp);
}

/* Decides the answer and sends its head; false when the job is over. */
static bool start(natshttp_files *f, job *j)
{
    size_t plen = 0;
    const char *path = natshttp_txn_path(j->txn, &plen);
    natshttp_head *resp = NULL;
    if (natshttp_head_new(&resp, 0) != NATSHTTP_OK) {
        job_done(f, j, false);
        return false;
    }
    int rc = nh_files_handle(f->fs, natshttp_head_method(j->req), path, plen,
                             natshttp_txn_raw_path(j->txn), get_header, (void *)j->req,
                             add_header, resp, &j->reply);
    if (rc != 0) {
        natshttp_head_free(resp);
        job_done(f, j, false);
        return false;
    }
    nh_files_reply *r = &j->reply;
    int64_t length = r->mem ? (int64_t)r->mem_len : r->length;
    if (r->no_body || (!r->mem && r->fd < 0) || length == 0) {
        answer_small(f, j, resp);
        return false;
    }
    if (send_head(j, resp) != NATSHTTP_OK) {
        job_done(f, j, false);
        return false;
    }
    j->pos = r->mem ? 0 : r->offset;
    j->end = j->pos + length;
    j->started = true;
    return true;
}

/* Sends up to STEPS_PER_TURN chunks of the file, or of the body in memory
 * (a listing); false when the job is over. */
static bool step(natshttp_files *f, job *j, uint8_t *buf)
{
    size_t chunk = natshttp_txn_chunk_size(j->txn);
    if (chunk > f->chunk_size)
        chunk = f->chunk_size;
    for (int i = 0; i < STEPS_PER_TURN && j->pos < j->end; i++) {
        size_t want = (size_t)(j->end - j->pos) < chunk ? (size_t)(j->end - j->pos) : chunk;
        ssize_t n = (ssize_t)want;
        if (j->reply.mem)
            buf = (uint8_t *)j->reply.mem + j->pos;
        else
            n = pread(j->reply.fd, buf, want, j->pos);
        if (n <= 0) {
            NH_LOG_E(COMP, "reading %s failed at %lld: %s", natshttp_txn_raw_path(j->txn),
                     (long long)j->pos, n < 0 ? strerror(errno) : "file shrank");
            job_done(f, j, false);
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
            job_done(f, j, false);
            return false;
        }
        if (st != NATSHTTP_OK) {
            NH_LOG_W(COMP, "sending %s failed: %s", natshttp_txn_raw_path(j->txn),
                     natshttp_status_text(st));
            job_done(f, j, false);
            return false;
        }
    }
    if (j->pos >= j->end) {
        job_done(f, j, true);
        return false;
    }
    return true;
}

/* ---- uploads ---------------------------------------------------------------- */

/* Appends a chunk to j's ring; j->mu held. False when out of memory. */
static bool ring_push(job *j, natshttp_chunk *c)
{
    if (j->rlen == j->rcap) {
        size_t cap = j->rcap ? j->rcap * 2 : 8;
        natshttp_chunk **n = malloc(cap * sizeof *n);
        if (!n)
            return false;
        for (size_t i = 0; i < j->rlen; i++)
            n[i] = j->ring[(j->rhead + i) % j->rcap];
        free(j->ring);
        j->ring = n;
        j->rcap = cap;
        j->rhead = 0;
    }
    j->ring[(j->rhead + j->rlen) % j->rcap] = c;
    j->rlen++;
    j->pending += (int64_t)natshttp_chunk_len(c);
    return true;
}

/* j->mu held. */
static natshttp_chunk *ring_pop(job *j)
{
    if (j->rlen == 0)
        return NULL;
    natshttp_chunk *c = j->ring[j->rhead];
    j->rhead = (j->rhead + 1) % j->rcap;
    j->rlen--;
    j->pending -= (int64_t)natshttp_chunk_len(c);
    return c;
}

/* Frees every chunk waiting in j's ring (they will not be written). */
static void ring_drop(job *j)
{
    pthread_mutex_lock(&j->mu);
    natshttp_chunk *c;
    while ((c = ring_pop(j)) != NULL)
        natshttp_chunk_free(c);
    pthread_mutex_unlock(&j->mu);
}

/* Creates the temporary file, or answers the refusal; false when the job is over. */
static bool put_start(natshttp_files *f, job *j)
{
    size_t plen = 0;
    const char *path = natshttp_txn_path(j->txn, &plen);
    natshttp_head *resp = NULL;
    int rc = natshttp_head_new(&resp, 0) == NATSHTTP_OK ? 0 : -ENOMEM;
    if (rc == 0)
        rc = nh_files_put_begin(f->fs, path, plen, add_header, resp, &j->reply, &j->up);
    if (rc != 0) {
        natshttp_head_free(resp);
        ring_drop(j);
        answer_status(f, j, 500);
        return false;
    }
    j->started = true;
    if (!j->up) {
        ring_drop(j);   /* the body is not wanted: free it as it comes */
        answer_small(f, j, resp);
        return false;
    }
    natshttp_head_free(resp);
    return true;
}

/* The body is over: keep the file or throw it away, and answer. */
static void put_finish(natshttp_files *f, job *j, natshttp_status body, int write_err)
{
    nh_upload *up = j->up;
    j->up = NULL;
    const char *path = natshttp_txn_raw_path(j->txn);
    int64_t size = nh_upload_size(up);
    j->put_size = size;
    int64_t cl = -1;
    if (body == NATSHTTP_OK && write_err == 0 &&
        natshttp_head_content_length(j->req, &cl) == NATSHTTP_OK && cl >= 0 && cl != size) {
        NH_LOG_W(COMP, "PUT %s: %" PRId64 " bytes arrived, Content-Length said %" PRId64
                 "; discarded", path, size, cl);
        body = NATSHTTP_TRUNCATED;
    }
    if (write_err != 0) {
        NH_LOG_E(COMP, "PUT %s: writing failed after %" PRId64 " bytes: %s; discarded", path, size,
                 strerror(write_err));
        nh_upload_abort(up);
        answer_status(f, j, nh_files_put_errno_status(write_err));
    } else if (body == NATSHTTP_OVERRUN || body == NATSHTTP_NOMEM) {
        if (body == NATSHTTP_OVERRUN)
            NH_LOG_W(COMP, "PUT %s: more than %d bytes waiting for the disk (a v1 client has no "
                     "flow control); discarded", path, PUT_MAX_PENDING);
        else
            NH_LOG_E(COMP, "PUT %s: out of memory; discarded", path);
        nh_upload_abort(up);
        answer_status(f, j, 503);
    } else if (body == NATSHTTP_CANCELLED) {
        NH_LOG_I(COMP, "PUT %s: %s after %" PRId64 " bytes; discarded", path,
                 f->stopping ? "the server is stopping" : "the client went away", size);
        nh_upload_abort(up);
        job_done(f, j, false);
    } else if (body != NATSHTTP_OK) {
        NH_LOG_W(COMP, "PUT %s: the body broke off after %" PRId64 " bytes (%s); discarded", path,
                 size, natshttp_status_text(body));
        nh_upload_abort(up);
        answer_status(f, j, 400);
    } else {
        bool created = false;
        int rc = nh_upload_commit(up, &created);
        if (rc != 0) {
            NH_LOG_E(COMP, "PUT %s: keeping the file failed: %s; discarded", path, strerror(-rc));
            answer_status(f, j, nh_files_put_errno_status(-rc));
        } else {
            answer_status(f, j, created ? 201 : 204);
        }
    }
}

/* Writes what has arrived; false when the job is over or waits for more. */
static bool put_step(natshttp_files *f, job *j)
{
    if (!j->started && !put_start(f, j))
        return false;
    int err = 0;
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < STEPS_PER_TURN && !err && !j->overflow; i++) {
        natshttp_chunk *c = ring_pop(j);
        if (!c)
            break;
        pthread_mutex_unlock(&j->mu);
        err = -nh_upload_write(j->up, natshttp_chunk_data(c), natshttp_chunk_len(c));
        natshttp_chunk_free(c);   /* written: the client may send as much again */
        pthread_mutex_lock(&j->mu);
    }
    /* A broken body (client gone, aborted, stalled) ends it at once: what is
     * still queued would only be thrown away after writing. */
    bool broken = err || j->overflow || (j->body_ended && j->body_status != NATSHTTP_OK);
    bool over = broken || (j->body_ended && j->rlen == 0);
    bool more = !over && j->rlen > 0;
    if (!over && !more)
        j->queued = false;   /* the dispatch side queues it again when a chunk comes */
    natshttp_status body = j->overflow ? NATSHTTP_OVERRUN : j->body_status;
    pthread_mutex_unlock(&j->mu);
    if (over) {
        if (broken)
            ring_drop(j);
        put_finish(f, j, body, err);
    }
    return more;
}

/* ---- threads ---------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    natshttp_files *f = arg;
    uint8_t *buf = malloc(f->chunk_size);
    for (;;) {
        job *j = nh_queue_pop(&f->jobs, -1);
        if (!j)
            break;   /* closed */
        bool more;
        if (j->put)
            more = put_step(f, j);
        else if (!buf)
            more = false, job_done(f, j, false);
        else
            more = j->started ? step(f, j, buf) : start(f, j);
        if (more && nh_queue_push(&f->jobs, j) != 0) {
            if (j->put)
                put_finish(f, j, NATSHTTP_NOMEM, 0);
            else
                job_done(f, j, false);
        }
    }
    free(buf);
    return NULL;
}

/* A GET or HEAD whose answer fits in INLINE_MAX bytes is answered right
 * here, on the receiving thread: a file in the page cache costs less to read
 * than a worker's wake-up (docs/performance.md). Larger bodies go to the
 * workers after the first turn. False when the job is over. */
static bool answer_inline(natshttp_files *f, job *j)
{
    size_t plen = 0;
    const char *path = natshttp_txn_path(j->txn, &plen);
    if (plen > 0 && path[plen - 1] == '/')
        return true;   /* a directory: its listing may be large to build and to send */
    if (!start(f, j))
        return false;
    if (j->end - j->pos > INLINE_MAX)
        return true;
    return step(f, j, f->inline_buf);
}

static void on_request(void *ctx, natshttp_txn *txn, const natshttp_head *req)
{
    natshttp_files *f = ctx;
    job *j = calloc(1, sizeof *j);
    if (!j) {
        natshttp_txn_finish(txn, false);
        return;
    }
    j->refs = 1;   /* the worker side's */
    j->txn = txn;
    j->req = req;
    j->reply.fd = -1;
    j->put = strcmp(natshttp_head_method(req), "PUT") == 0;
    j->queued = true;
    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_lock(&f->mu);
    natshttp_txn_set_data(txn, j);
    pthread_mutex_unlock(&f->mu);
    if (!j->put && !answer_inline(f, j))
        return;
    if (nh_queue_push(&f->jobs, j) != 0) {
        if (j->put)
            put_finish(f, j, NATSHTTP_NOMEM, 0);
        else
            job_done(f, j, false);
    }
}

static void on_writable(void *ctx, natshttp_txn *txn)
{
    natshttp_files *f = ctx;
    job *j = job_get(f, txn);
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    bool requeue = !j->put && !j->done && j->state == JOB_PARKED;
    if (!j->put && !j->done)
        j->state = requeue ? JOB_RUNNING : JOB_WOKEN;
    pthread_mutex_unlock(&j->mu);
    if (requeue && nh_queue_push(&f->jobs, j) != 0)
        job_done(f, j, false);
    job_unref(j);
}

/* Hands an upload job that waits back to the workers; j->mu held. True
 * when the caller must push it. */
static bool wake_put(job *j)
{
    if (j->queued || j->done || !j->started)
        return false;
    j->queued = true;
    return true;
}

static void on_body(void *ctx, natshttp_txn *txn, natshttp_chunk *chunk)
{
    natshttp_files *f = ctx;
    job *j = job_get(f, txn);
    bool push = false;
    if (j) {
        pthread_mutex_lock(&j->mu);
        if (j->put && !j->done && !j->overflow && !j->body_ended) {
            if (j->pending + (int64_t)natshttp_chunk_len(chunk) > PUT_MAX_PENDING)
                j->overflow = true;
            else if (ring_push(j, chunk))
                chunk = NULL;
            else
                j->overflow = true;
            push = wake_put(j);
        }
        pthread_mutex_unlock(&j->mu);
    }
    natshttp_chunk_free(chunk);   /* not an upload, or not wanted: dropped */
    if (push && nh_queue_push(&f->jobs, j) != 0)
        put_finish(f, j, NATSHTTP_NOMEM, 0);
    if (j)
        job_unref(j);
}

static void on_body_end(void *ctx, natshttp_txn *txn, natshttp_status status)
{
    natshttp_files *f = ctx;
    job *j = job_get(f, txn);
    if (!j)
        return;
    bool push = false;
    pthread_mutex_lock(&j->mu);
    if (j->put && !j->body_ended) {
        j->body_ended = true;
        j->body_status = status;
        push = wake_put(j);
    }
    pthread_mutex_unlock(&j->mu);
    if (push && nh_queue_push(&f->jobs, j) != 0)
        put_finish(f, j, NATSHTTP_NOMEM, 0);
    job_unref(j);
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
    rc = nh_files_set_writable(f->fs, opts->writable);
    if (rc != 0) {
        NH_LOG_E(COMP, "cannot make %s writable: %s", opts->writable ? opts->writable : "-",
                 rc == -EINVAL ? "not a clean absolute path" : strerror(-rc));
        nh_files_free(f->fs);
        free(f);
        return rc == -EINVAL ? NATSHTTP_INVALID : NATSHTTP_NOMEM;
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
    pthread_mutex_init(&f->mu, NULL);
    f->workers = calloc((size_t)f->nworkers, sizeof *f->workers);
    int started = 0;
    for (; f->workers && started < f->nworkers; started++)
        if (pthread_create(&f->workers[started], NULL, worker_main, f) != 0)
            break;
    if (started < f->nworkers)
        st = NATSHTTP_NOMEM;
    if (st == NATSHTTP_OK) {
        natshttp_server_callbacks cb = {.on_request = on_request,
                                        .on_body = on_body,
                                        .on_body_end = on_body_end,
                                        .on_writable = on_writable};
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
    /* No new jobs after this; the txns still held get their body ended and
     * their writer woken (CANCELLED), which puts every waiting job back on
     * the queue, where the workers finish it. */
    f->stopping = true;
    natshttp_server_free(f->srv);
    nh_queue_close(&f->jobs);
    for (int i = 0; i < f->nworkers; i++)
        pthread_join(f->workers[i], NULL);
    job *j;
    while ((j = nh_queue_pop(&f->jobs, 0)) != NULL) {
        if (j->put)
            put_finish(f, j, NATSHTTP_CANCELLED, 0);
        else
            job_done(f, j, false);
    }
    free(f->workers);
    nh_queue_destroy(&f->jobs);
    pthread_mutex_destroy(&f->mu);
    nh_files_free(f->fs);
    free(f);
}

natshttp_status natshttp_files_drain(natshttp_files *f, int64_t timeout_ms)
{
    return f ? natshttp_server_drain(f->srv, timeout_ms) : NATSHTTP_INVALID;
}
