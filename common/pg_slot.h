/* pg_slot.h - Redis Cluster's key space (SPEC §10): the CRC16 of a key or of
 * its hash tag picks one of 16384 slots, and a slot map says which master
 * owns each slot. Also the MOVED / ASK redirections that correct a map.
 * Pure C: no loop, no hiredis; the CLUSTER SLOTS reply is turned into
 * pg_slot_map_assign() calls by the gateway's cluster link. */
#ifndef PG_SLOT_H
#define PG_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "pg_url.h"

#define PG_SLOT_COUNT 16384

/* CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection), the
 * checksum Redis Cluster hashes keys with: "123456789" gives 0x31C3. */
uint16_t pg_slot_crc16(const void *buf, size_t len);

/* The slot of key[0..len): the CRC16 of the part between the first '{' and
 * the first '}' after it when that part is not empty, else of the whole
 * key; modulo 16384. Channel names hash the same way (SSUBSCRIBE). */
unsigned pg_slot_of_key(const char *key, size_t len);

/* Which master owns each slot. A plain value the caller owns: build a fresh
 * one from each CLUSTER SLOTS reply and swap it in, rather than patching the
 * live one, so a half-read reply never leaves a half-updated map. */
typedef struct pg_slot_map {
    uint16_t       owner[PG_SLOT_COUNT]; /* index + 1 into shards[]; 0 = no owner */
    pg_hostport_t *shards;   /* distinct master addresses, in order first seen */
    size_t         nshards;
    size_t         cap;      /* allocated entries of shards[] */
    unsigned       covered;  /* slots with an owner; PG_SLOT_COUNT = complete */
} pg_slot_map_t;

/* An empty map (no slot owned). */
void pg_slot_map_init(pg_slot_map_t *m);
/* Release what the map holds and leave it empty; NULL is a no-op. */
void pg_slot_map_free(pg_slot_map_t *m);
/* Give slots lo..hi (inclusive) to the master host:port, replacing any
 * earlier owner of those slots. Returns the master's index in shards[] (one
 * entry per distinct address), or -1 with the map unchanged when the range
 * is not within 0..16383 with lo <= hi, the host is empty or longer than
 * pg_hostport_t holds, the port is not 1..65535, the address would be a
 * 65536th one (owner[] keeps its index in 16 bits), or memory runs out. */
int pg_slot_map_assign(pg_slot_map_t *m, unsigned lo, unsigned hi,
                       const char *host, int port);
/* The master owning slot, or NULL when none does (or slot >= 16384). The
 * pointer stays valid until the next assign or free of m. */
const pg_hostport_t *pg_slot_map_owner(const pg_slot_map_t *m, unsigned slot);
/* The index in shards[] of slot's owner, or -1 when none. */
int pg_slot_map_shard(const pg_slot_map_t *m, unsigned slot);
/* 1 when every slot has an owner (Redis' cluster_state:ok needs it by
 * default), else 0. */
int pg_slot_map_complete(const pg_slot_map_t *m);

typedef enum pg_slot_redirect {
    PG_SLOT_NOT_REDIRECT = 0,
    PG_SLOT_MOVED,   /* the slot lives at `to` now: fix the map */
    PG_SLOT_ASK      /* this one command only: send ASKING, then it, to `to` */
} pg_slot_redirect_t;

/* Read an error reply's text ("MOVED 3999 127.0.0.1:6381", "ASK 3999
 * [::1]:6381" or "ASK 3999 ::1:6381"): the slot and where to go. Redis 7
 * may leave the host out (":6381") when it only knows the node by the
 * address it was reached at; to->host is then "" and means that host.
 * Returns PG_SLOT_NOT_REDIRECT, touching nothing, for any other text or a
 * malformed redirection. */
pg_slot_redirect_t pg_slot_parse_redirect(const char *err, size_t len,
                                          unsigned *slot, pg_hostport_t *to);

#endif
