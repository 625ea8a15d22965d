/* recovery.h - history replay: for one connection that asks for it
 * (since= / Last-Event-ID / subscribe with since), and for the whole node
 * after its subscriber link reconnects to Redis.
 *
 * A history read is issued only once the channel's SUBSCRIBE is confirmed,
 * so nothing published between the read and the subscription can fall into
 * a gap; live messages that arrive meanwhile are held and sent after the
 * history, minus what the history already delivered (per-subscription
 * last_id), so the seam has no gap and no duplicate. */
#ifndef PG_RECOVERY_H
#define PG_RECOVERY_H

#include <stdint.h>

#include "conn.h"

/* Replay history after since for channel on c (c must be subscribed to it).
 * Marks c RECOVERING until every read of its recovery is answered. 0 or -1
 * (out of memory; c is closed). */
int pg_recovery_add(pg_conn_t *c, const char *channel, uint64_t since);
/* c is going away: drop its recovery (replies still in flight are ignored). */
void pg_recovery_abandon(pg_conn_t *c);
/* Links or subscriptions changed: issue the reads that can go now. */
void pg_recovery_kick(void);
/* At exit, after the Redis links stopped: free what still waits. */
void pg_recovery_shutdown(void);
/* The subscriber reconnected: replay every channel from its last seen id. */
void pg_recovery_replay_all(void);

#endif
