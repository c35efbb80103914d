/* chunk.c - body pieces handed to applications without copying the NATS message. */
#include "internal.h"

#include <stdlib.h>

natshttp_chunk *nh_chunk_from_msg(natsMsg *msg)
{
    natshttp_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->msg = msg;
    c->data = (const uint8_t *)natsMsg_GetData(msg);
    c->len = (size_t)natsMsg_GetDataLength(msg);
    return c;
}

const uint8_t *natshttp_chunk_data(const natshttp_chunk *c) { return c->data; }
size_t natshttp_chunk_len(const natshttp_chunk *c) { return c->len; }

void natshttp_chunk_free(natshttp_chunk *c)
{
    if (!c)
        return;
    natsMsg_Destroy(c->msg);
    free(c);
}
