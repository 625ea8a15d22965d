/* subscriber.h - the broker's subscriber link: SUBSCRIBE only what the node
 * needs, batched once per loop iteration, and everything again after a
 * reconnect; the control channel and the liveness probe by PSUBSCRIBE.
 *
 * It calls nothing above the broker: what arrives goes out through the
 * hooks the node registers. */
#ifndef PG_SUBSCRIBER_H
#define PG_SUBSCRIBER_H

#include <stddef.h>
#include "pg_msg.h"

typedef struct pg_subscriber_hooks {
    void (*message)(pg_msg_t *m);                  /* a delivery (borrowed) */
    void (*order)(const char *payload, size_t len); /* on <prefix>_control */
    void (*subscribed)(void);                      /* some SUBSCRIBE confirmed */
    void (*connecting)(int reconnect);             /* a new connection's setup began */
    void (*ready)(int reconnect);                  /* every wanted channel subscribed */
    void (*down)(void);                            /* the link was lost */
    /* cluster mode: name's subscription was lost (slot moved, shard link
     * lost) and is back, so replay it from its last id; NULL: the orders'
     * channel came back, so orders may have been missed */
    void (*resync)(const char *name);
} pg_subscriber_hooks_t;

/* Start connecting; hooks are copied. 0 or -1. */
int pg_subscriber_start(const pg_subscriber_hooks_t *hooks);
void pg_subscriber_stop(void);
/* 1 when connected and every wanted channel is subscribed (for /readyz). */
int pg_subscriber_ready(void);
/* The hub wants (on=1) or no longer wants (on=0) channel name; the change
 * goes out with the next batch, before the loop sleeps. */
void pg_subscriber_want(const char *name, int on);
/* 1 when Redis confirmed the SUBSCRIBE of name on the current connection
 * and no UNSUBSCRIBE of it is in flight: whatever is published on name from
 * now on reaches the node. */
int pg_subscriber_has(const char *name);
/* A message Redis sent on channel chan (the pushgate name): counted, parsed
 * and handed to h->message, or dropped, counted and logged. Shared with the
 * cluster broker (cbroker.c), whose shard links read it their own way. */
void pg_subscriber_deliver(const pg_subscriber_hooks_t *h, const char *chan,
                           const char *payload, size_t len);

#endif
