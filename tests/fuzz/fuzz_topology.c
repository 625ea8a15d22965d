/* fuzz_topology - what a node makes of a Redis Cluster's replies, on
 * arbitrary RESP bytes: pg_topology_parse_slots() on every reply hiredis'
 * reader builds from them (as the cluster link hands CLUSTER SLOTS over),
 * and pg_slot_parse_redirect() on every error reply (as the router and the
 * shard links read MOVED / ASK).
 *
 * A broken or hostile Redis must not crash a node. A parse that succeeds
 * must give each slot the master of the last entry naming it (the host the
 * reply came from when the entry's host is empty or nil, no owner for "?"),
 * and count exactly the owned slots; a failure leaves a NUL-terminated
 * reason and a map that pg_slot_map_free() releases. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pg_slot.h"
#include "topology.h"

#define ASKED "10.9.8.7"

/* hiredis 0.14 allocates a multi-bulk's element array as soon as it reads
 * the count, before any element arrives; a count in the billions is a
 * failed calloc there, a libFuzzer malloc-limit report here, and nothing
 * about our parser. Such inputs are skipped. */
static int huge_count(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*')
            continue;
        unsigned long long v = 0;
        for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9'; j++)
            if ((v = v * 10 + (unsigned)(data[j] - '0')) > 100000)
                return 1;
    }
    return 0;
}

static int is_int(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER;
}

/* After a successful parse: the map against the reply, entry by entry,
 * later entries winning, as Redis' ranges never overlap but a hostile
 * reply's may. */
static void check_map(const redisReply *reply, const pg_slot_map_t *m)
{
    static const char *want_host[PG_SLOT_COUNT];
    static long long want_port[PG_SLOT_COUNT];
    memset(want_host, 0, sizeof want_host);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        /* the parse succeeded, so every entry has this shape */
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !is_int(e->element[0]) ||
            !is_int(e->element[1]) || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 || !is_int(e->element[2]->element[1]))
            abort();
        const redisReply *h = e->element[2]->element[0];
        const char *host = ASKED;
        if (h != NULL && h->type == REDIS_REPLY_STRING && h->len > 0) {
            if (h->len == 1 && h->str[0] == '?')
                continue; /* unknown: whatever an earlier entry said stays */
            host = h->str;
        }
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++) {
            if (s < 0 || s >= PG_SLOT_COUNT)
                abort();
            want_host[s] = host;
            want_port[s] = e->element[2]->element[1]->integer;
        }
    }
    unsigned owned = 0;
    for (unsigned s = 0; s < PG_SLOT_COUNT; s++) {
        const pg_hostport_t *o = pg_slot_map_owner(m, s);
        if (want_host[s] == NULL) {
            if (o != NULL)
                abort();
            continue;
        }
        owned++;
        if (o == NULL || o->port != want_port[s] || strcmp(o->host, want_host[s]) != 0)
            abort();
    }
    if (m->covered != owned || pg_slot_map_complete(m) != (owned == PG_SLOT_COUNT) ||
        m->nshards > reply->elements)
        abort();
}

static void check_redirect(const redisReply *r)
{
    unsigned slot;
    pg_hostport_t to;
    pg_slot_redirect_t kind = pg_slot_parse_redirect(r->str, r->len, &slot, &to);
    if (kind == PG_SLOT_NOT_REDIRECT)
        return;
    if ((kind != PG_SLOT_MOVED && kind != PG_SLOT_ASK) || slot >= PG_SLOT_COUNT ||
        to.port < 1 || to.port > 65535 || memchr(to.host, '\0', sizeof to.host) == NULL)
        abort();
}

static void check_reply(const redisReply *r)
{
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    memset(err, 'x', sizeof err);
    if (pg_topology_parse_slots(r, ASKED, &m, err, sizeof err) == 0)
        check_map(r, &m);
    else if (memchr(err, '\0', sizeof err) == NULL)
        abort();
    pg_slot_map_free(&m);
    if (r->type == REDIS_REPLY_ERROR)
        check_redirect(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (huge_count(data, size))
        return 0;
    redisReader *rd = redisReaderCreate();
    if (rd == NULL)
        abort();
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL)
                break;
            check_reply(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
