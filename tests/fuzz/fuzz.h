/* fuzz.h - what the fuzz targets share: a reader over the fuzz input, NATS
 * messages built from bytes the way nats.c builds them from the wire, and
 * the invariant check that aborts (so libFuzzer and the replay driver both
 * report it as a crash). */
#ifndef NH_FUZZ_H
#define NH_FUZZ_H

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                           \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Consumes the input front to back; reading past the end yields zeros/empty. */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

/* n bytes (fewer at the end of the input). */
static inline const uint8_t *fz_bytes(fz_in *in, size_t n, size_t *got)
{
    if (n > in->n)
        n = in->n;
    const uint8_t *p = in->p;
    in->p += n;
    in->n -= n;
    *got = n;
    return p;
}

/* Bytes up to (not including) the next '\n', which is consumed; the rest of
 * the input when there is none. */
static inline const uint8_t *fz_line(fz_in *in, size_t *len)
{
    const uint8_t *nl = in->n ? memchr(in->p, '\n', in->n) : NULL;
    size_t n = nl ? (size_t)(nl - in->p) : in->n;
    const uint8_t *p = fz_bytes(in, n, len);
    if (nl)
        fz_u8(in);
    return p;
}

/* NUL-terminated copy of n bytes (cut at the first NUL, as C strings are). */
static inline char *fz_str(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* How a message's header block is made. */
typedef enum fz_hdr_mode {
    FZ_HDR_RAW,     /* the bytes are the header block as on the wire, "NATS/1.0\r\n..." */
    FZ_HDR_LINES,   /* "Name: value" lines separated by '\n': framed as on the wire */
    FZ_HDR_ADD,     /* the same lines, each given to natsMsgHeader_Add */
    FZ_HDR_NONE,    /* no header block */
} fz_hdr_mode;

/* A message as nats.c hands one to a subscriber. Subject and reply lose the
 * bytes a NATS server never delivers in them (space, tab, CR, LF: they
 * separate the protocol's fields). NULL only when nats.c refuses the bytes. */
natsMsg *fz_msg(const char *subject, const char *reply, fz_hdr_mode mode, const uint8_t *hdr,
                size_t hlen, const uint8_t *data, size_t dlen);

#endif
