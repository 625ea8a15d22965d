/* hub.h - the channel registry and its two-way index (redis pubsub.c): each
 * connection lists its memberships, each channel lists its members, and a
 * message is fanned out once to every member, with a duplicate check.
 *
 * The hub's table holds weak entries: a channel exists while it has a
 * member (broadcast always). Its 0->1 and 1->0 transitions are told to the
 * hook channel_wanted, which the node wires to the Redis subscriber; a
 * connection whose recovery runs gets its live messages through the hook
 * hold instead (recovery.c owns those buffers). The hub calls nothing above
 * it. */
#ifndef PG_HUB_H
#define PG_HUB_H

#include <stdint.h>
#include <libwebsockets.h>
#include <uthash.h>

#include "pg_chan.h"
#include "pg_msg.h"
#include "conn.h"

typedef struct pg_channel {
    UT_hash_handle    hh;
    char             *name;      /* owned, valid channel name */
    lws_dll2_owner_t  members;   /* pg_member_t.chan_node */
    uint64_t          last_id;   /* replay point: highest history id seen live, or
                                  * at creation an id just below any message
                                  * published after it (pg_hub_id_floor) */
    int               pinned;    /* broadcast: never freed */
} pg_channel_t;

/* One connection's membership of one channel. */
typedef struct pg_member {
    lws_dll2_t        conn_node; /* in conn->members */
    lws_dll2_t        chan_node; /* in chan->members */
    pg_conn_t        *conn;
    pg_channel_t     *chan;
    uint64_t          last_id;   /* highest id delivered here: no duplicate at seams */
    uint64_t          start_id;  /* the channel's last_id when this membership began:
                                  * its position until it delivers (cluster SSE id) */
    unsigned          granted;   /* joined by a backend order: kept across token refresh */
} pg_member_t;

typedef struct pg_hub_hooks {
    /* A channel got its first member (on = 1) or lost its last (on = 0). */
    void (*channel_wanted)(const char *name, int on);
    /* m is for c while c is PG_CONN_RECOVERING: keep it (takes a ref). */
    void (*hold)(pg_conn_t *c, pg_msg_t *m);
} pg_hub_hooks_t;

/* An id lower than that of any message published from now on: the
 * highest id seen so far, or Redis's clock (estimated at the command link's
 * connect) times 1000, less a margin. A new channel starts its replay
 * point here, so a message it misses during a Redis outage before it ever
 * saw one is still replayed. */
uint64_t pg_hub_id_floor(void);

/* Create the table with broadcast pinned. hooks are copied. 0 or -1. */
int pg_hub_init(const pg_hub_hooks_t *hooks);
void pg_hub_free(void);

/* Make c a member of name (valid; the caller checked it is allowed).
 * Idempotent: returns the existing membership when there is one. NULL on
 * out-of-memory. */
pg_member_t *pg_hub_join(pg_conn_t *c, const char *name);
/* End c's membership of name. 0, or -1 if c was not a member. */
int pg_hub_leave(pg_conn_t *c, const char *name);
void pg_hub_leave_member(pg_member_t *mb);
/* End every membership of c (teardown). */
void pg_hub_leave_all(pg_conn_t *c);
pg_member_t *pg_hub_member(pg_conn_t *c, const char *name);
pg_channel_t *pg_hub_find(const char *name);

/* The one fan-out: m (live or replayed) goes to every member of
 * m->channel, and the channel's and the node's highest ids advance. Takes
 * no ownership: the caller keeps its reference. */
void pg_hub_publish(pg_msg_t *m);
/* Deliver m to one membership if it is new there (id 0 = always), and
 * advance the membership's last_id; to the hold hook while recovering. In
 * cluster mode an SSE connection gets m with its own `id:` line: its
 * position list as of m (pg_since_write), built here, at queueing time. */
void pg_hub_deliver(pg_member_t *mb, pg_msg_t *m);

/* Visit every channel, or every member of one channel. cb may not join or
 * leave; it may close (flag) connections. */
typedef void (*pg_hub_iter_cb)(pg_channel_t *ch, void *arg);
void pg_hub_foreach(pg_hub_iter_cb cb, void *arg);
typedef void (*pg_hub_member_cb)(pg_member_t *mb, void *arg);
void pg_hub_foreach_member(const char *name, pg_hub_member_cb cb, void *arg);
size_t pg_hub_count(void);

#endif
