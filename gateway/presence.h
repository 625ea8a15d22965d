/* presence.h - who is connected, recorded in Redis (SPEC §8), and the join
 * and leave messages of --presence-topics.
 *
 * A connection has an entry in its own user:<id> channel and in every topic
 * it belongs to that matches --presence-topics (never broadcast, never a
 * user channel other than its own). Entries are written by the functions
 * presence_update / presence_beat / presence_reset of functions.lua, which
 * alone name the keys: every change of one loop iteration goes out in one
 * FCALL, and liveness is one heartbeat per node every --presence-ttl / 3,
 * never a write per connection (README "Presence" says why). In a Redis
 * Cluster every call is one channel's, routed to its shard: the changes
 * of an iteration go out as one call per channel, and liveness is one beat
 * per channel this node has entries in (README "Redis Cluster").
 *
 * The session calls join/leave exactly when a membership starts or ends;
 * the module keeps no per-membership state, only a count per channel and
 * the time each tracked connection first appeared. */
#ifndef PG_PRESENCE_H
#define PG_PRESENCE_H

#include "conn.h"

/* Start the per-iteration flush and the heartbeat timer. 0 or -1. */
int pg_presence_init(void);
/* The command link is (again) ready: heartbeat, drop whatever this node
 * had in Redis, write every entry it holds now. */
void pg_presence_link_ready(void);
/* c became a member of channel / stopped being one. No-ops for channels
 * without presence. */
void pg_presence_join(pg_conn_t *c, const char *channel);
void pg_presence_leave(pg_conn_t *c, const char *channel);
/* c is closing: leave every channel it is a member of (call before the hub
 * lets go of its memberships). */
void pg_presence_leave_all(pg_conn_t *c);
/* Shutdown: write what is pending, remove every entry of this node and
 * push it onto the socket before the link goes. Then stop the timers. */
void pg_presence_stop(void);
void pg_presence_free(void);

#endif
