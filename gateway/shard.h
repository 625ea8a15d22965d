/* shard.h - one sharded pub/sub connection to one Redis Cluster master
 * (SPEC §10): SSUBSCRIBE / SUNSUBSCRIBE, and the smessage, ssubscribe and
 * sunsubscribe pushes that come back, including the sunsubscribe Redis
 * pushes on its own when a slot leaves the shard.
 *
 * Why not pg_link_t: Debian's hiredis 0.14 async API only knows
 * (P)SUBSCRIBE and asserts on an ssubscribe or smessage reply, so this
 * link drives a non-blocking redisContext and its reader on a uv_poll_t of
 * its own, as redis_link.c's adapter does for the async API.
 *
 * It connects once per pg_shard_connect(): reconnecting, backoff, choosing
 * the master and re-subscribing are the caller's (the cluster subscriber
 * that owns one link per shard and the slot map), which learns of every
 * loss through the down callback. Single-threaded: the uv loop's thread. */
#ifndef PG_SHARD_H
#define PG_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct pg_shard pg_shard_t;
struct redisReply;

typedef enum pg_shard_state {
    PG_SHARD_DOWN = 0,        /* not connected (new, or after down) */
    PG_SHARD_CONNECTING,      /* TCP connect in progress */
    PG_SHARD_AUTH,            /* AUTH sent, no answer yet */
    PG_SHARD_READY = 100      /* may SSUBSCRIBE */
} pg_shard_state_t;

/* The caller's hooks. Channel and payload bytes are borrowed for the call.
 * Any hook may call pg_shard_free() or, from down, pg_shard_connect(). */
typedef struct pg_shard_cbs {
    /* Connected (and authenticated): subscribe now. */
    void (*up)(pg_shard_t *s, void *ud);
    /* Connecting failed or the connection was lost, with why (never a
     * password). Every subscription is gone with it. Once per connect. */
    void (*down)(pg_shard_t *s, void *ud, const char *why);
    /* An smessage on channel. */
    void (*message)(pg_shard_t *s, void *ud, const char *channel, size_t clen,
                    const char *payload, size_t plen);
    /* Redis confirmed an SSUBSCRIBE of channel. */
    void (*subscribed)(pg_shard_t *s, void *ud, const char *channel, size_t clen);
    /* channel is no longer subscribed: asked = 1 answers our SUNSUBSCRIBE,
     * asked = 0 is Redis dropping it because its slot left this shard (a
     * resharding or failover): subscribe it again at the new owner and
     * replay its history. asked is exact while every SUNSUBSCRIBE is
     * answered with sunsubscribe; one answered with an error stays pending,
     * and a later push of that channel is then taken for its answer, so a
     * caller that can should judge by its own state (cluster.c does). */
    void (*unsubscribed)(pg_shard_t *s, void *ud, const char *channel, size_t clen,
                         int asked);
    /* An error reply to one of our commands, in order of sending: a MOVED
     * for an SSUBSCRIBE of a slot this master does not own, a CROSSSLOT...
     * (pg_slot_parse_redirect reads a MOVED). */
    void (*error)(pg_shard_t *s, void *ud, const char *text, size_t len);
} pg_shard_cbs_t;

/* A link to host:port, not connected yet. user and password may be NULL
 * (no AUTH) and are copied. cbs is copied too; up, down and message are
 * required. Returns NULL on a bad argument or out of memory. */
pg_shard_t *pg_shard_new(uv_loop_t *loop, const char *host, int port,
                         const char *user, const char *password,
                         const pg_shard_cbs_t *cbs, void *ud);
/* Start connecting (and AUTH when a password is set). Returns 0, and then
 * either up or down is called later, exactly once for this connect; or -1
 * when not in PG_SHARD_DOWN or the connect could not even start, with no
 * callback. timeout_ms bounds connect + AUTH. The host is resolved with a
 * blocking getaddrinfo(), so pass an address, as CLUSTER SLOTS gives. */
int pg_shard_connect(pg_shard_t *s, unsigned timeout_ms);
/* The answer to pg_shard_request(): reply is borrowed for the call, NULL
 * when the connection went down first. */
typedef void (*pg_shard_reply_cb)(pg_shard_t *s, void *arg, const struct redisReply *reply);
/* Send one ordinary command (argv as hiredis' redisAppendCommandArgv) on a
 * link used for requests only (CLUSTER SLOTS, FCALL): cb is called exactly
 * once with its reply, also an error reply, or with NULL when the
 * connection goes down first; requests are pipelined and answered in order.
 * Returns 0, or -1 with no callback when not READY, this connection has
 * sent an SSUBSCRIBE (a subscribed connection's replies are pushes), or out
 * of memory. */
int pg_shard_request(pg_shard_t *s, pg_shard_reply_cb cb, void *arg,
                     int argc, const char **argv, const size_t *argvlen);
/* Queue SSUBSCRIBE / SUNSUBSCRIBE of one channel; batched with everything
 * else queued in this loop iteration into one write. One channel per
 * command: channels of one SSUBSCRIBE must share a slot, not just a shard.
 * Returns 0, or -1 when not READY, a request is unanswered, the name is
 * empty, or out of memory. */
int pg_shard_ssubscribe(pg_shard_t *s, const char *channel, size_t len);
int pg_shard_sunsubscribe(pg_shard_t *s, const char *channel, size_t len);
/* Queue a PING (liveness: a subscribed connection answers it with a
 * "pong" push, which, like any byte read, moves pg_shard_rx_ms). Returns 0,
 * or -1 when not READY or a request is unanswered. */
int pg_shard_ping(pg_shard_t *s);
/* The loop time (uv_now) of the last read that brought bytes, or of the
 * connect: how long this link has been silent. */
uint64_t pg_shard_rx_ms(const pg_shard_t *s);
pg_shard_state_t pg_shard_state(const pg_shard_t *s);
/* host and port of the link, for logs and for the slot map. */
const char *pg_shard_host(const pg_shard_t *s);
int pg_shard_port(const pg_shard_t *s);
/* Close the connection without calling down or an outstanding request's
 * callback, and free the link once the loop has released its handles. Safe
 * inside any hook; NULL is a no-op. */
void pg_shard_free(pg_shard_t *s);

#endif
