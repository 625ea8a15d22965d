/* topology.h - a Redis Cluster's slot map read from Redis (SPEC §10): the
 * CLUSTER SLOTS reply turned into a pg_slot_map_t. No loop and no link of
 * its own: whichever link asked hands the reply over, so it is unit-tested
 * with replies built by hiredis' reader. */
#ifndef PG_TOPOLOGY_H
#define PG_TOPOLOGY_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "pg_slot.h"

/* Fill m (initialised by the caller, normally empty) from a CLUSTER SLOTS
 * reply (RESP2: one array per slot range, [first, last, [master host, port,
 * id, ...], replicas...]). A master whose host is empty or nil is reached at
 * asked_host, the host the reply came from, as Redis 7 means it; a range
 * whose master's endpoint is "?" (unknown) is left without an owner, so the
 * caller sees pg_slot_map_complete() false and asks again later. Returns 0;
 * or -1 with a one-line reason in err (never reply bytes beyond a number)
 * when the reply is an error, has another shape, or memory runs out; m may
 * then hold part of the ranges and must be freed, not used. Borrows reply. */
int pg_topology_parse_slots(const redisReply *reply, const char *asked_host,
                            pg_slot_map_t *m, char *err, size_t errlen);

#endif
