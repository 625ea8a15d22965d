/* cluster.h - a node's sharded subscriptions over a Redis Cluster (SPEC
 * §10): the slot map, one pg_shard_t subscriber link per master that owns a
 * channel the node wants, and the repairs that keep every wanted channel
 * subscribed at its current owner through slot moves, failovers and lost
 * links.
 *
 * It works on Redis channel names as they are ("pushgate:{news}"); the
 * caller maps them to pushgate channels. Every repair is the same step:
 * read the slot map (CLUSTER SLOTS on a short-lived request link to a known
 * master or a seed), then reconcile: each wanted channel is SSUBSCRIBEd on
 * the link of its slot's owner, and un-subscribed where it no longer
 * belongs. A repair runs at start, at once after a MOVED or a pushed
 * sunsubscribe, after a backoff when a link or the map read fails, and every
 * refresh_ms. Single-threaded: the uv loop's thread. */
#ifndef PG_CLUSTER_H
#define PG_CLUSTER_H

#include <stddef.h>
#include <uv.h>

#include "pg_url.h"

typedef struct pg_cluster pg_cluster_t;

typedef struct pg_cluster_cbs {
    /* An smessage on a wanted channel (bytes borrowed for the call). */
    void (*message)(void *ud, const char *channel, size_t clen,
                    const char *payload, size_t plen);
    /* channel is subscribed (again). resync = 1 when it had been subscribed
     * before and the subscription was lost meanwhile (slot moved, link lost):
     * messages may have been missed, so replay its history from the last id
     * delivered on it. A first subscription has resync = 0. */
    void (*subscribed)(void *ud, const char *channel, size_t clen, int resync);
    /* ready = 1: the map covers every slot and every wanted channel is
     * subscribed; 0 when that stops being true. Called on changes only. */
    void (*ready)(void *ud, int ready);
} pg_cluster_cbs_t;

typedef struct pg_cluster_cfg {
    const pg_hostport_t *seeds;  /* copied; at least one */
    int          nseeds;
    const char  *user;           /* NULL: none */
    const char  *password;       /* NULL: no AUTH */
    unsigned     timeout_ms;     /* connect + AUTH, and a map read; 0 = 2000 */
    unsigned     refresh_ms;     /* periodic map read; 0 = 5000 */
    unsigned     backoff_base_ms; /* after a failure; 0 = 100 */
    unsigned     backoff_cap_ms;  /* 0 = 5000 */
    unsigned     probe_ms;        /* a link silent this long is sent a PING; 0 = 5000 */
    unsigned     probe_timeout_ms; /* unanswered this long, it is dropped; 0 = 5000 */
} pg_cluster_cfg_t;

/* A cluster subscriber with no channel yet; pg_cluster_start() begins the
 * first repair. Returns NULL on a bad argument or out of memory. */
pg_cluster_t *pg_cluster_new(uv_loop_t *loop, const pg_cluster_cfg_t *cfg,
                             const pg_cluster_cbs_t *cbs, void *ud);
/* Read the map and connect; returns 0 or -1. */
int pg_cluster_start(pg_cluster_t *c);
/* Want channel (SSUBSCRIBE at its owner as soon as that link is up).
 * Returns 0 (also when already wanted), or -1 on out of memory. */
int pg_cluster_subscribe(pg_cluster_t *c, const char *channel, size_t len);
/* Stop wanting channel. Returns 0, or -1 when it was not wanted. */
int pg_cluster_unsubscribe(pg_cluster_t *c, const char *channel, size_t len);
/* 1 when channel is wanted and its SSUBSCRIBE is confirmed at its owner:
 * from then on every message published on it reaches us. */
int pg_cluster_has(pg_cluster_t *c, const char *channel, size_t len);
/* Wanted channels, and how many master links are open. */
size_t pg_cluster_channels(const pg_cluster_t *c);
size_t pg_cluster_links(const pg_cluster_t *c);
/* The slot map of the last successful read, or NULL before the first.
 * Valid until control returns to the loop (a read may replace it). */
const struct pg_slot_map *pg_cluster_map(const pg_cluster_t *c);
/* Read the map again soon: a MOVED seen by someone else (the router). */
void pg_cluster_refresh(pg_cluster_t *c);
/* Map reads that succeeded so far (for tests and metrics). */
unsigned long pg_cluster_map_reads(const pg_cluster_t *c);
/* Close every link and free c once the loop has released its handles.
 * No callback after this. Safe inside a callback; NULL is a no-op. */
void pg_cluster_free(pg_cluster_t *c);

#endif
