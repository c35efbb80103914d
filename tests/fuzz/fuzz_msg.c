/* fuzz_msg.c - NATS messages from fuzz bytes (see fuzz.h). */
#include "fuzz.h"

/* nats.c's own constructor for a received message (src/msg.h of nats.c 3.x,
 * exported by libnats): buf holds the header block (hdr_len bytes) followed
 * by the payload. This is what the connection calls for every HMSG/MSG, so a
 * header block given here is parsed by the same code as one from a server. */
natsStatus natsMsg_create(natsMsg **newMsg, const char *subject, int subjLen, const char *reply,
                          int replyLen, const char *buf, int bufLen, int hdrLen);

static char *wire_token(const char *s)
{
    if (!s)
        return NULL;
    char *t = strdup(s);
    if (!t)
        abort();
    for (char *p = t; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            *p = '_';
    return t;
}

natsMsg *fz_msg(const char *subject, const char *reply, fz_hdr_mode mode, const uint8_t *hdr,
                size_t hlen, const uint8_t *data, size_t dlen)
{
    static bool opened;
    if (!opened && nats_Open(-1) != NATS_OK)   /* what natsMsg_Destroy needs */
        abort();
    opened = true;
    char *subj = wire_token(subject), *rep = wire_token(reply);
    natsMsg *m = NULL;
    char *buf = NULL;
    size_t blen = 0, hdr_len = 0;

    if (mode == FZ_HDR_RAW) {
        hdr_len = hlen;
    } else if (mode == FZ_HDR_LINES) {
        hdr_len = strlen("NATS/1.0\r\n") + 2 * hlen + 2 + 2;   /* every '\n' may become CRLF */
    }
    buf = malloc(hdr_len + dlen + 1);
    if (!buf)
        abort();
    if (mode == FZ_HDR_RAW) {
        if (hlen)
            memcpy(buf, hdr, hlen);
        blen = hlen;
    } else if (mode == FZ_HDR_LINES) {
        blen = (size_t)sprintf(buf, "NATS/1.0\r\n");
        for (size_t i = 0; i < hlen; i++) {
            if (hdr[i] == '\n') {
                buf[blen++] = '\r';
                buf[blen++] = '\n';
            } else {
                buf[blen++] = (char)hdr[i];
            }
        }
        if (hlen && hdr[hlen - 1] != '\n') {
            buf[blen++] = '\r';
            buf[blen++] = '\n';
        }
        buf[blen++] = '\r';
        buf[blen++] = '\n';
    }
    hdr_len = blen;
    if (dlen)
        memcpy(buf + blen, data, dlen);
    blen += dlen;

    natsStatus ns = natsMsg_create(&m, subj, (int)strlen(subj), rep, rep ? (int)strlen(rep) : 0,
                                   buf, (int)blen, mode == FZ_HDR_RAW || mode == FZ_HDR_LINES ?
                                   (int)hdr_len : 0);
    if (ns != NATS_OK)
        m = NULL;
    if (m && mode == FZ_HDR_ADD) {
        size_t i = 0;
        while (i < hlen) {
            const uint8_t *nl = memchr(hdr + i, '\n', hlen - i);
            size_t end = nl ? (size_t)(nl - hdr) : hlen;
            char *line = fz_str(hdr + i, end - i);
            char *colon = strchr(line, ':');
            if (colon) {
                *colon = 0;
                const char *v = colon + 1;
                while (*v == ' ')
                    v++;
                natsMsgHeader_Add(m, line, v);   /* nats.c may refuse a name: fine */
            }
            free(line);
            i = end + 1;
        }
    }
    free(buf);
    free(subj);
    free(rep);
    return m;
}
