/* pg_slot.c - Redis Cluster key slots and slot maps. See pg_slot.h. */
#include <stdlib.h>
#include <string.h>

#include "pg_slot.h"
#include "pg_util.h"

/* Bitwise rather than a 512-byte table: a node hashes a channel name once
 * when it first needs it (to pick the shard link), never per message, so
 * the table would buy nothing measurable and be one more thing to check. */
uint16_t pg_slot_crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned pg_slot_of_key(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        /* "{}" hashes the whole key, as Redis does: an empty tag would put
         * every such key in one slot by accident. */
        if (close != NULL && close > open + 1)
            return pg_slot_crc16(open + 1, (size_t)(close - open - 1)) % PG_SLOT_COUNT;
    }
    return pg_slot_crc16(key, len) % PG_SLOT_COUNT;
}

void pg_slot_map_init(pg_slot_map_t *m)
{
    memset(m, 0, sizeof(*m));
}

void pg_slot_map_free(pg_slot_map_t *m)
{
    if (m == NULL)
        return;
    free(m->shards);
    pg_slot_map_init(m);
}

/* The index of host:port in shards[], appending it when new; -1 on OOM. */
static int shard_index(pg_slot_map_t *m, const char *host, int port)
{
    for (size_t i = 0; i < m->nshards; i++)
        if (m->shards[i].port == port && strcmp(m->shards[i].host, host) == 0)
            return (int)i;
    /* owner[] keeps index + 1 in 16 bits: a 65536th address would wrap to
     * "no owner" or to another master's index */
    if (m->nshards >= UINT16_MAX)
        return -1;
    pg_hostport_t *n = pg_grow(m->shards, m->nshards, &m->cap, sizeof(*n), 4);
    if (n == NULL)
        return -1;
    m->shards = n;
    pg_hostport_t *s = &m->shards[m->nshards];
    memset(s, 0, sizeof(*s));
    memcpy(s->host, host, strlen(host) + 1);
    s->port = port;
    return (int)m->nshards++;
}

int pg_slot_map_assign(pg_slot_map_t *m, unsigned lo, unsigned hi,
                       const char *host, int port)
{
    size_t hl = host ? strlen(host) : 0;
    if (lo > hi || hi >= PG_SLOT_COUNT || hl == 0 ||
        hl >= sizeof(((pg_hostport_t *)0)->host) || port < 1 || port > 65535)
        return -1;
    int idx = shard_index(m, host, port);
    if (idx < 0)
        return -1;
    for (unsigned s = lo; s <= hi; s++) {
        if (m->owner[s] == 0)
            m->covered++;
        m->owner[s] = (uint16_t)(idx + 1);
    }
    return idx;
}

int pg_slot_map_shard(const pg_slot_map_t *m, unsigned slot)
{
    if (slot >= PG_SLOT_COUNT || m->owner[slot] == 0)
        return -1;
    return m->owner[slot] - 1;
}

const pg_hostport_t *pg_slot_map_owner(const pg_slot_map_t *m, unsigned slot)
{
    int i = pg_slot_map_shard(m, slot);
    return i < 0 ? NULL : &m->shards[i];
}

int pg_slot_map_complete(const pg_slot_map_t *m)
{
    return m->covered == PG_SLOT_COUNT;
}

/* Decimal digits text[0..len) into *out, at most max. 0 or -1. */
static int parse_uint(const char *text, size_t len, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(text[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

pg_slot_redirect_t pg_slot_parse_redirect(const char *err, size_t len,
                                          unsigned *slot, pg_hostport_t *to)
{
    pg_slot_redirect_t kind;
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = PG_SLOT_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = PG_SLOT_ASK;
        skip = 4;
    } else {
        return PG_SLOT_NOT_REDIRECT;
    }
    const char *p = err + skip, *end = err + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL)
        return PG_SLOT_NOT_REDIRECT;
    unsigned long s, port;
    if (parse_uint(p, (size_t)(sp - p), PG_SLOT_COUNT - 1, &s) < 0)
        return PG_SLOT_NOT_REDIRECT;
    /* host:port, split at the last ':' since an IPv6 host has colons */
    const char *h = sp + 1, *colon = NULL;
    for (const char *q = h; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL ||
        parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &port) < 0 || port == 0)
        return PG_SLOT_NOT_REDIRECT;
    const char *hend = colon;
    if (hend - h >= 2 && h[0] == '[' && hend[-1] == ']') {
        h++;
        hend--;
    }
    size_t hl = (size_t)(hend - h);
    if (hl >= sizeof(to->host) || memchr(h, ' ', hl) != NULL)
        return PG_SLOT_NOT_REDIRECT;
    memcpy(to->host, h, hl);
    to->host[hl] = '\0';
    to->port = (int)port;
    *slot = (unsigned)s;
    return kind;
}
