/* status.c - the status enum's texts and its conversions at library boundaries. */
#include "internal.h"

static const char *const texts[] = {
#define X(name, http, text) text,
    NATSHTTP_STATUS_MAP(X)
#undef X
};

static const int https[] = {
#define X(name, http, text) http,
    NATSHTTP_STATUS_MAP(X)
#undef X
};

const char *natshttp_status_text(natshttp_status s)
{
    if ((unsigned)s >= NATSHTTP_STATUS_COUNT)
        return "unknown status";
    return texts[s];
}

int natshttp_status_http(natshttp_status s)
{
    if ((unsigned)s >= NATSHTTP_STATUS_COUNT)
        return 500;
    return https[s];
}

natshttp_status natshttp_status_from_nats(natsStatus s)
{
    switch (s) {
    case NATS_OK: return NATSHTTP_OK;
    case NATS_NO_MEMORY: return NATSHTTP_NOMEM;
    case NATS_TIMEOUT: return NATSHTTP_TIMEOUT;
    case NATS_NO_RESPONDERS: return NATSHTTP_NO_RESPONDERS;
    case NATS_NOT_PERMITTED: return NATSHTTP_PERMISSION;
    case NATS_MAX_PAYLOAD: return NATSHTTP_HEAD_TOO_LARGE;
    case NATS_INVALID_SUBJECT: return NATSHTTP_BAD_PATH;
    case NATS_INVALID_ARG: return NATSHTTP_INVALID;
    default: return NATSHTTP_NATS;
    }
}
