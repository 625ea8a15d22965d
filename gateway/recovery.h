/* recovery.h - history replay, and every buffer that holds live messages
 * while one runs: for one connection that asks for it (since= /
 * Last-Event-ID / subscribe with since / a backend subscribe with since),
 * and for the whole node after its subscriber link reconnects to Redis.
 *
 * A history read is issued only once the channel's SUBSCRIBE is confirmed,
 * so nothing published between the read and the subscription can fall into
 * a gap; live messages that arrive meanwhile are held and sent after the
 * history, minus what the history already delivered (per-membership
 * last_id), so the seam has no gap and no duplicate.
 *
 * Every hold is bounded. A connection's recovery ends as incomplete (the
 * client is told {"type":"recovery","complete":false} and gets the live
 * stream) when it has not finished within --recovery-timeout or when what
 * it holds passes --queue-limit-bytes; the node-wide hold is released,
 * when its replay has not finished within the timeout or holds more than
 * NODE_HOLD_MAX_BYTES. Whenever the node's replay cannot deliver all that a
 * channel missed (history did not reach back, a read failed, time or room
 * ran out), every member of that channel gets the same notice as a
 * resuming client.
 *
 * Connections resuming the same channel share one read per loop iteration
 * (from the lowest since among them), and the result, kept with the live
 * messages that follow it, serves later resumers from memory for ~10 s
 * after its last use: a reconnect storm costs a few reads per channel, not
 * one per connection. */
#ifndef PG_RECOVERY_H
#define PG_RECOVERY_H

#include <stdint.h>

#include "conn.h"

/* Replay history after since for channel on c (c must be a member). Marks
 * c RECOVERING until every read of its recovery is answered or it times
 * out. 0, or -1 on out-of-memory (c is closed). */
int pg_recovery_add(pg_conn_t *c, const char *channel, uint64_t since);
/* on = 1: pg_recovery_add only records its read until pg_recovery_batch(0),
 * which starts them all. A connection resuming several channels adds them
 * inside one batch: a read served from a channel's window in memory would
 * otherwise finish the recovery, and deliver that channel's history, before
 * the next channel is even added, out of id order across channels (the one
 * cut a bare since / SSE id stands for on one Redis). */
void pg_recovery_batch(int on);
/* The hub's hold hook: m arrived live for c while c is RECOVERING. */
void pg_recovery_hold(pg_conn_t *c, pg_msg_t *m);
/* c is going away: drop its recovery (replies still in flight are ignored). */
void pg_recovery_abandon(pg_conn_t *c);
/* Links or subscriptions changed: issue the reads that can go now. */
void pg_recovery_kick(void);
/* Issue the history reads gathered since the last flush: one per channel,
 * from the lowest since asked (a reconnect storm's resumers of a channel
 * share it, and later ones are served from its result while it is in use).
 * Runs by itself at the end of each loop iteration that gathered some;
 * without a loop (tests) the caller runs it. */
void pg_recovery_flush(void);
/* The node no longer subscribes to channel: its kept history goes (what is
 * published meanwhile would be missing from it). */
void pg_recovery_forget(const char *channel);

/* A live message from the subscriber: to the hub, or held while the node
 * replays (in arrival order, which is id order on one Redis). */
void pg_recovery_dispatch(pg_msg_t *m);
/* The subscriber reconnected and is re-subscribing: hold live messages from
 * now until the replay has delivered what came before them (otherwise a
 * newer live message would go out first and the dedupe would then discard
 * the older replayed ones). */
void pg_recovery_hold_node(void);
/* The subscriber is ready again: replay every channel from its last id. */
void pg_recovery_replay_all(void);
/* Cluster mode: channel's subscription was lost (its slot moved, its
 * shard link dropped) and is confirmed again: replay it from its last id,
 * holding live messages until that is done, like replay_all for one
 * channel. Channels resynced while a replay runs join it. */
void pg_recovery_resync(const char *channel);
/* At exit, after the Redis links stopped: free what still waits. */
void pg_recovery_shutdown(void);

#endif
