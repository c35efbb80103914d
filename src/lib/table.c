/* table.c - open-addressing map from request ids to per-request state. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)(id & (cap - 1));
}

static int grow(nh_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    void **slots = calloc(cap, sizeof *slots);
    uint64_t *ids = calloc(cap, sizeof *ids);
    if (!slots || !ids) {
        free(slots);
        free(ids);
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->ids[i])
            continue;
        size_t j = slot_of(t->ids[i], cap);
        while (ids[j])
            j = (j + 1) & (cap - 1);
        ids[j] = t->ids[i];
        slots[j] = t->slots[i];
    }
    free(t->slots);
    free(t->ids);
    t->slots = slots;
    t->ids = ids;
    t->cap = cap;
    return 0;
}

int nh_table_put(nh_table *t, uint64_t id, void *obj)
{
    if ((t->len + 1) * 2 > t->cap && grow(t) != 0)
        return -1;
    size_t j = slot_of(id, t->cap);
    while (t->ids[j] && t->ids[j] != id)
        j = (j + 1) & (t->cap - 1);
    if (!t->ids[j])
        t->len++;
    t->ids[j] = id;
    t->slots[j] = obj;
    return 0;
}

void *nh_table_get(const nh_table *t, uint64_t id)
{
    if (!t->cap || !id)
        return NULL;
    for (size_t j = slot_of(id, t->cap); t->ids[j]; j = (j + 1) & (t->cap - 1))
        if (t->ids[j] == id)
            return t->slots[j];
    return NULL;
}

void *nh_table_del(nh_table *t, uint64_t id)
{
    if (!t->cap || !id)
        return NULL;
    size_t j = slot_of(id, t->cap);
    while (t->ids[j] && t->ids[j] != id)
        j = (j + 1) & (t->cap - 1);
    if (!t->ids[j])
        return NULL;
    void *obj = t->slots[j];
    t->ids[j] = 0;
    t->slots[j] = NULL;
    t->len--;
    /* Re-insert the rest of the cluster so lookups keep finding them. */
    for (size_t k = (j + 1) & (t->cap - 1); t->ids[k]; k = (k + 1) & (t->cap - 1)) {
        uint64_t id2 = t->ids[k];
        void *o2 = t->slots[k];
        t->ids[k] = 0;
        t->slots[k] = NULL;
        size_t m = slot_of(id2, t->cap);
        while (t->ids[m])
            m = (m + 1) & (t->cap - 1);
        t->ids[m] = id2;
        t->slots[m] = o2;
    }
    return obj;
}

void nh_table_free(nh_table *t)
{
    free(t->slots);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

bool nh_parse_ids(const char *subject, size_t base_len, uint64_t *id, int64_t *seq)
{
    if (strlen(subject) <= base_len + 1 || subject[base_len] != '.')
        return false;
    const char *p = subject + base_len + 1;
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 19) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        digits++;
    }
    if (!digits || (*p && *p != '.'))
        return false;
    *id = v;
    *seq = -1;
    if (*p == '.') {
        p++;
        int64_t s = 0;
        digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 18) {
            s = s * 10 + (*p++ - '0');
            digits++;
        }
        if (!digits || *p)
            return false;
        *seq = s;
    }
    return true;
}
