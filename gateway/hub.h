/* hub.h - the channel registry and its two-way index (redis pubsub.c): each
 * connection lists its subscriptions, each channel lists its subscribers.
 *
 * The hub's table holds weak entries: a channel exists while it has a
 * subscriber (broadcast always), and its 0->1 and 1->0 transitions tell the
 * Redis subscriber link what to SUBSCRIBE and UNSUBSCRIBE, in batches. */
#ifndef PG_HUB_H
#define PG_HUB_H

#include <stdint.h>
#include <libwebsockets.h>
#include <uthash.h>

#include "pg_chan.h"
#include "pg_msg.h"
#include "conn.h"

typedef struct pg_chan_entry {
    UT_hash_handle    hh;
    char             *name;      /* owned, valid channel name */
    lws_dll2_owner_t  subs;      /* pg_sub_t.chan_node */
    uint64_t          last_id;   /* replay point: highest history id seen live, or
                                  * at creation an id just below any message
                                  * published after it (pg_hub_id_floor) */
    int               pinned;    /* broadcast: never freed */
} pg_chan_entry_t;

typedef struct pg_sub {
    lws_dll2_t        conn_node; /* in conn->subs */
    lws_dll2_t        chan_node; /* in chan->subs */
    pg_conn_t        *conn;
    pg_chan_entry_t  *chan;
    uint64_t          last_id;   /* highest id delivered here: no duplicate at seams */
} pg_sub_t;

/* An id lower than that of any message published from now on: the
 * highest id seen so far, or Redis's clock (estimated at the command link's
 * connect) times 1000, less a margin. A new channel starts its replay
 * point here, so a message it misses during a Redis outage before it ever
 * saw one is still replayed. */
uint64_t pg_hub_id_floor(void);

/* Create the table with broadcast pinned. 0 or -1 (out of memory). */
int pg_hub_init(void);
void pg_hub_free(void);

/* Subscribe c to name (valid, already allowed). Idempotent: returns the
 * existing subscription when there is one. NULL on out-of-memory. */
pg_sub_t *pg_hub_join(pg_conn_t *c, const char *name);
/* Unsubscribe c from name. Returns 0, or -1 if c was not subscribed. */
int pg_hub_leave(pg_conn_t *c, const char *name);
/* Drop every subscription of c (teardown). */
void pg_hub_leave_all(pg_conn_t *c);
pg_sub_t *pg_hub_sub_of(pg_conn_t *c, const char *name);
pg_chan_entry_t *pg_hub_find(const char *name);

/* A message arrived from Redis: deliver to every subscriber of m->channel
 * (unless the node is holding live messages for a replay). Takes no
 * ownership: the caller keeps its reference. */
void pg_hub_dispatch(pg_msg_t *m);
/* Deliver m to one subscription if it is new there (id 0 = always), and
 * advance the subscription's last_id. Honours PG_CONN_RECOVERING. */
void pg_hub_deliver(pg_sub_t *s, pg_msg_t *m);

/* While holding, dispatched messages are kept (in order) instead of
 * delivered; release delivers them. Used while replaying history after a
 * Redis reconnect, so replayed and live messages reach clients in id order. */
void pg_hub_hold(void);
void pg_hub_release(void);

/* Visit every channel (replay after reconnect). */
typedef void (*pg_hub_iter_cb)(pg_chan_entry_t *ch, void *arg);
void pg_hub_foreach(pg_hub_iter_cb cb, void *arg);
size_t pg_hub_count(void);

#endif
