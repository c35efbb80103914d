/*
 * files: the static-file answerer behind `nats-http serve --dir DIR`.
 *
 * One job: given the method, the decoded path and a way to read request
 * headers, decide the whole HTTP answer (status, response headers, and where
 * the body bytes come from) for a file below one served root directory.
 * It never sends anything itself; the caller publishes the reply.
 *
 * Depends on nothing but C11, POSIX and Linux (openat2).
 *
 * Threads: an nh_files is read-only after nh_files_new (except
 * nh_files_set_fallback, a test knob), so nh_files_handle may run on any number
 * of threads at once on the same handle. nh_files_handle does blocking disk
 * work (open, fstat, readdir): call it from the disk pool, not the event loop.
 */
#ifndef NH_FILES_H
#define NH_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Decoded paths longer than this are answered 404 without touching the disk. */
#define NH_FILES_PATH_MAX 4095

/* A directory listing shows at most this many entries (then says it is cut). */
#define NH_FILES_LIST_MAX 20000

typedef struct nh_files nh_files; /* opaque: the served root */

/**
 * Opens DIR (O_PATH|O_DIRECTORY) and keeps its fd for the life of the handle.
 * `list` enables HTML directory listings for directories without index.html.
 * `dir` is copied (resolved with realpath, for the no-openat2 fallback).
 * Returns 0 and writes *out, or -errno (-EINVAL for NULL arguments; *out is
 * then untouched). Free with nh_files_free.
 */
int nh_files_new(nh_files **out, const char *dir, bool list);

/** Closes the root fd and frees the handle. NULL does nothing. */
void nh_files_free(nh_files *f);

/**
 * Test knob: when `on`, resolve paths with the realpath() containment check
 * instead of openat2(RESOLVE_BENEATH), as on kernels without openat2.
 * Not thread-safe against concurrent nh_files_handle on the same handle.
 */
void nh_files_set_fallback(nh_files *f, bool on);

/**
 * Request header lookup supplied by the caller: `name` is matched
 * case-insensitively; returns the value (NUL-terminated; surrounding
 * whitespace is tolerated) or NULL when absent. For a header sent on several
 * lines, returning the first line or the lines joined with ", " both work;
 * joined is better for If-None-Match, which is a list.
 * Called synchronously from nh_files_handle only; the returned string must
 * stay valid until nh_files_handle returns.
 */
typedef const char *(*nh_files_getter)(void *cls, const char *name);

/**
 * Response header sink: called once per header, in order, synchronously from
 * nh_files_handle. `name` and `value` are valid only during the call: copy
 * them. The module never joins values and never emits the same name twice.
 */
typedef void (*nh_files_adder)(void *cls, const char *name, const char *value);

/**
 * The answer to one request.
 *
 * Exactly one body source is set when !no_body: `fd` (send `length` bytes
 * starting at `offset`, e.g. with pread or sendfile) or `mem` (send
 * `mem_len` == `length` bytes). When no_body is true (HEAD, 304) both fd == -1
 * and mem == NULL; `length` is still the length a GET's 200 would have (for
 * HEAD the emitted Content-Length; for 304 metadata the caller may repeat).
 * Use pread or sendfile with an explicit offset (the fd position is
 * unspecified). The file may shrink while it is sent: a short read means the
 * body must be cut off (never padded). An empty file gives fd >= 0 with length 0.
 * The reply owns fd and mem: release with nh_files_reply_release, also when
 * the transfer is abandoned. Do not release a reply nh_files_handle never
 * filled (a zeroed struct has fd 0).
 */
typedef struct nh_files_reply {
    int status;      /* HTTP status */
    int fd;          /* file to send from, or -1 */
    int64_t offset;  /* first byte of the body in fd */
    int64_t length;  /* number of body bytes (the Content-Length value) */
    char *mem;       /* malloc'd in-memory body (error text, listing, redirect note) or NULL */
    size_t mem_len;
    bool no_body;    /* true for HEAD, 304: send the head only */
} nh_files_reply;

/**
 * Decides the whole answer to one request.
 *
 * `method` is the request method, compared case-sensitively ("GET", "HEAD";
 * anything else is 405). `path`/`path_len` is the URL path ALREADY
 * percent-decoded exactly once by the caller; it may hold any byte and is not
 * NUL-terminated; it is never decoded again (a literal "%2e%2e" is a name).
 * `raw_path` is the same path as the client sent it (still encoded,
 * NUL-terminated, no query); it is used only for the Location of the
 * slash-appending redirect, and may be NULL (the Location is then encoded
 * from `path`). `get` may be NULL (no request headers); `add` may be NULL
 * (headers dropped).
 *
 * Containment: "." and ".." segments are a 400; the file is opened with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) below the root fd, so a
 * symlink is followed only while it stays inside DIR, and absolute symlinks
 * are refused even when they point inside (404; the realpath() fallback
 * accepts those). Only regular files are sent.
 *
 * Returns 0 and fills *out for every HTTP outcome, errors included.
 * Returns -ENOMEM when an allocation fails: then no header has been added and
 * *out is an empty reply (fd -1, mem NULL) that is still safe to release;
 * the caller answers 500 itself. Returns -EINVAL for a NULL f, method or out
 * (or NULL path with path_len > 0); *out, if given, is then an empty reply.
 * Statuses: 200, 206, 301, 304, 400, 403, 404, 405, 416, and 500 for
 * unexpected system errors (EMFILE, EIO, ...). A 405 lists "GET, HEAD, PUT"
 * in Allow when the path is writable (nh_files_set_writable), else "GET, HEAD".
 */
int nh_files_handle(const nh_files *f, const char *method, const char *path, size_t path_len,
                    const char *raw_path, nh_files_getter get, void *get_cls, nh_files_adder add,
                    void *add_cls, nh_files_reply *out);

/** Closes fd and frees mem, leaving an empty reply; safe to call twice. NULL ok. */
void nh_files_reply_release(nh_files_reply *r);

/**
 * Content-Type for a file name or path (only the part after the last '/' is
 * looked at), by case-insensitive extension; the exact name "nix-cache-info"
 * has its own type. Unknown -> "application/octet-stream". Returns a static
 * string. `name` need not be NUL-terminated.
 */
const char *nh_files_mime(const char *name, size_t len);

/** HTTP status for an errno from opening a path: 404, 403 or 500. */
int nh_files_errno_status(int err);

/**
 * Writes `t` as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 chars +
 * NUL) into out. Returns 0, or -1 if the year is outside 0..9999 (out then
 * holds an empty string).
 */
int nh_http_date_format(char out[30], time_t t);

/**
 * Parses an HTTP date: IMF-fixdate, RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT",
 * two-digit year read per RFC 9110: never more than 50 years in the future)
 * or asctime ("Sun Nov  6 08:49:37 1994"). Strict: no trailing bytes.
 * Returns 0 and writes *out, or -1.
 */
int nh_http_date_parse(const char *s, time_t *out);

/**
 * Interprets a Range header value against a body of `size` bytes.
 * Returns 1: serve [*start, *start + *len) (206);
 *         0: ignore the header and serve the full body (NULL, malformed,
 *            multi-range, a unit other than "bytes");
 *        -1: unsatisfiable (416).
 * *start and *len are written only when 1 is returned.
 */
int nh_range_parse(const char *value, int64_t size, int64_t *start, int64_t *len);

/* ---- uploads: PUT below a writable prefix (serve --dir --writable) ----
 *
 * A PUT writes a temporary file beside its target (O_EXCL, an unpredictable
 * name starting with NH_UPLOAD_TMP_PREFIX, hidden from listings), then
 * fsyncs it, renames it over the target and fsyncs the directory, so that a
 * reader sees the old file or the whole new one, never a part. Missing parent
 * directories are created on the way, each one opened beneath the root like
 * a GET's path (openat2 RESOLVE_BENEATH), so a symlink never leads a write
 * out of DIR. An upload that does not complete is aborted: the temporary file
 * is removed and the target is untouched. All of it is blocking disk work:
 * call it from the disk pool. */

#define NH_UPLOAD_TMP_PREFIX ".natshttp-put-"

typedef struct nh_upload nh_upload; /* one upload under way */

/**
 * Makes the paths below `prefix` writable by PUT; NULL (the default) makes
 * nothing writable. The prefix is a decoded URL path starting with '/': "/"
 * is everything, "/up/" (or "/up") everything below the directory up.
 * Returns 0, or -EINVAL for a prefix that is not a clean absolute path
 * ("." or ".." segments, NUL, no leading '/'), -ENOMEM. Not thread-safe
 * against concurrent use of f: call it right after nh_files_new.
 */
int nh_files_set_writable(nh_files *f, const char *prefix);

/**
 * The pure PUT decision: may `path` (decoded once, like nh_files_handle's)
 * be written under `prefix` (as for nh_files_set_writable; NULL: nothing)?
 * Returns 0 and *rel, the target relative to the root (malloc'd, empty
 * segments folded: "nar/x.nar"), or an HTTP status: 400 (no leading '/', NUL,
 * "." or ".." segment), 404 (longer than NH_FILES_PATH_MAX), 405 (outside
 * the prefix, the prefix directory itself, or no prefix), 409 (a directory:
 * ends in '/'); or -ENOMEM, -EINVAL (NULL rel, a malformed prefix).
 */
int nh_files_put_path(const char *prefix, const char *path, size_t path_len, char **rel);

/** HTTP status for an errno from preparing or writing an upload: 403 (permission,
 * read-only, a symlink leading out), 409 (a parent is a file, the target is a
 * directory), 404, 507 (no space), else 500. */
int nh_files_put_errno_status(int err);

/**
 * Starts a PUT of `path`: decides with the writable prefix of f, creates the
 * missing parents and the temporary file. On 0, either *up is the upload
 * (out is an empty reply) or *up is NULL and out is the error answer (405
 * with "Allow: GET, HEAD", 400, 403, 404, 409, 507, 500; headers through add).
 * Returns -ENOMEM (nothing added, out empty, *up NULL) or -EINVAL.
 */
int nh_files_put_begin(const nh_files *f, const char *path, size_t path_len, nh_files_adder add,
                       void *add_cls, nh_files_reply *out, nh_upload **up);

/** Opens an upload of rel (relative to the root, as nh_files_put_path gives
 * it) without the prefix check. Returns 0 and *out, or -errno. */
int nh_upload_open(const nh_files *f, const char *rel, nh_upload **out);
/** Appends len bytes to the temporary file: 0, or -errno (the upload is then
 * still to be aborted). */
int nh_upload_write(nh_upload *u, const void *data, size_t len);
/** Bytes written so far. */
int64_t nh_upload_size(const nh_upload *u);
/** fsync, rename over the target, fsync the directory; frees u whatever the
 * outcome. Returns 0 with *created (true when no file had the name), or
 * -errno (the temporary file is removed). */
int nh_upload_commit(nh_upload *u, bool *created);
/** Removes the temporary file and frees u. NULL does nothing. */
void nh_upload_abort(nh_upload *u);

/**
 * A plain answer with this status: "201 Created\n" as text/plain and its
 * Content-Length through add, or for 204 and 304 no body and no header.
 * Returns 0, -ENOMEM (out empty), -EINVAL.
 */
int nh_files_status_reply(int status, nh_files_adder add, void *add_cls, nh_files_reply *out);

/**
 * Test knob: make the n-th allocation from now (on this thread) fail;
 * 0 turns failures off. Used by the allocation-failure torture test.
 */
void nh_files_test_fail_alloc(long n);

#endif /* NH_FILES_H */
