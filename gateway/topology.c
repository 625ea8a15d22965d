/* topology.c - CLUSTER SLOTS into a slot map. See topology.h. */
#include <stdio.h>
#include <string.h>

#include "topology.h"

/* CLUSTER SLOTS rather than CLUSTER SHARDS: both exist in Redis 7.0, but
 * SLOTS is what every cluster client reads, answers in one array per range
 * with the master first, and still works on the 6.x masters a mixed-version
 * cluster may hold during an upgrade. Its cost, one entry per range instead
 * of per shard, is nothing next to a refresh every few seconds. */

static int is_int(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER;
}

int pg_topology_parse_slots(const redisReply *reply, const char *asked_host,
                            pg_slot_map_t *m, char *err, size_t errlen)
{
    if (reply == NULL) {
        snprintf(err, errlen, "CLUSTER SLOTS: no reply");
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* the text is Redis' own ("ERR This instance has cluster support
         * disabled"), short, and says what is wrong; no secret can be in it */
        snprintf(err, errlen, "CLUSTER SLOTS: %.*s", (int)(reply->len > 200 ? 200 : reply->len),
                 reply->str);
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS: not an array");
        return -1;
    }
    /* Ranges never overlap, so a true reply has at most one per slot. More
     * is a broken or hostile server, and each entry may name a new address
     * that the map looks up among all the others: a few megabytes of
     * ranges held the loop for seconds and wrapped the map's 16-bit owner
     * indexes (test_topology). */
    if (reply->elements > PG_SLOT_COUNT) {
        snprintf(err, errlen, "CLUSTER SLOTS: %zu ranges, more than there are slots",
                 reply->elements);
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            !is_int(e->element[0]) || !is_int(e->element[1]) ||
            e->element[2] == NULL || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2) {
            snprintf(err, errlen, "CLUSTER SLOTS: entry %zu is not [first, last, [host, port, ...], ...]", i);
            return -1;
        }
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *host = e->element[2]->element[0];
        const redisReply *port = e->element[2]->element[1];
        if (lo < 0 || hi >= PG_SLOT_COUNT || lo > hi) {
            snprintf(err, errlen, "CLUSTER SLOTS: entry %zu has slots %lld-%lld", i, lo, hi);
            return -1;
        }
        if (!is_int(port) || port->integer < 1 || port->integer > 65535) {
            snprintf(err, errlen, "CLUSTER SLOTS: entry %zu has no valid port", i);
            return -1;
        }
        const char *h;
        if (host == NULL || host->type == REDIS_REPLY_NIL ||
            (host->type == REDIS_REPLY_STRING && host->len == 0)) {
            h = asked_host;
        } else if (host->type == REDIS_REPLY_STRING) {
            if (host->len == 1 && host->str[0] == '?')
                continue; /* unknown endpoint: the range stays unowned */
            if (strlen(host->str) != host->len) {
                snprintf(err, errlen, "CLUSTER SLOTS: entry %zu has a host with a NUL byte", i);
                return -1;
            }
            h = host->str;
        } else {
            snprintf(err, errlen, "CLUSTER SLOTS: entry %zu has no host string", i);
            return -1;
        }
        if (pg_slot_map_assign(m, (unsigned)lo, (unsigned)hi, h, (int)port->integer) < 0) {
            snprintf(err, errlen, "CLUSTER SLOTS: entry %zu: unusable host or out of memory", i);
            return -1;
        }
    }
    return 0;
}
