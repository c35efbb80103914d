/* chunk.c - body pieces handed to applications without copying the NATS
 * message; freeing one grants flow-control credit for it (flow.c). */
#include "internal.h"

#include <stdlib.h>

natshttp_chunk *nh_chunk_from_msg(natsMsg *msg, nh_credit *credit)
{
    natshttp_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->msg = msg;
    c->data = (const uint8_t *)natsMsg_GetData(msg);
    c->len = (size_t)natsMsg_GetDataLength(msg);
    c->credit = credit ? nh_credit_ref(credit) : NULL;
    return c;
}

const uint8_t *natshttp_chunk_data(const natshttp_chunk *c) { return c->data; }
size_t natshttp_chunk_len(const natshttp_chunk *c) { return c->len; }

void natshttp_chunk_free(natshttp_chunk *c)
{
    if (!c)
        return;
    if (c->credit) {
        nh_credit_consumed(c->credit, c->len, natsMsg_GetReply(c->msg));
        nh_credit_unref(c->credit);
    }
    natsMsg_Destroy(c->msg);
    free(c);
}
