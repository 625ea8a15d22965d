/* router.h - commands routed to the master that owns their key in a Redis
 * Cluster (SPEC §10): the one-key FCALLs of POST /api/publish, history reads
 * and control orders. One request link per master, opened on first use,
 * which loads the function library (FUNCTION LOAD REPLACE) every time it
 * connects, before any call it carries; a MOVED is followed at once to the
 * named master (and the slot map read again), an ASK with ASKING, a few
 * times at most. The slot map is the cluster subscriber's (cluster.h): one
 * map per node. Single-threaded: the uv loop's thread. */
#ifndef PG_ROUTER_H
#define PG_ROUTER_H

#include <stddef.h>
#include <uv.h>

#include "cluster.h"

typedef struct pg_router pg_router_t;
struct redisReply;

/* The outcome of one call: Redis' reply (borrowed for the call; may be an
 * error reply, never a MOVED or ASK unless redirections ran out), or NULL
 * and err when there is none: the link was lost before the answer, so the
 * command may or may not have run (a publisher must treat that as "not
 * published" and may retry, as after any Redis error), or the router was
 * freed. */
typedef void (*pg_router_cb)(void *arg, const struct redisReply *reply, const char *err);

typedef struct pg_router_cfg {
    const char *user;          /* NULL: none */
    const char *password;      /* NULL: no AUTH */
    unsigned    timeout_ms;    /* connect + AUTH; 0 = 2000 */
    const char *library;       /* loaded on every master at connect; NULL: none */
    size_t      library_len;
    /* Called each time the last master of the map without the library has
     * loaded it (pg_router_loaded turned 1); NULL: not told. */
    void      (*all_loaded)(void *ud);
    void       *ud;
} pg_router_cfg_t;

/* A router over the masters that map's slot map names. map must outlive
 * the router. Copies cfg's strings. NULL on a bad argument or OOM. */
pg_router_t *pg_router_new(uv_loop_t *loop, pg_cluster_t *map, const pg_router_cfg_t *cfg);
/* Run argv (copied) on the master owning key's slot; cb is then called
 * exactly once, never before this returns. Returns 0; or -1 with no
 * callback when no master owns the slot yet (no map, or a hole in it) or
 * out of memory. */
int pg_router_call(pg_router_t *r, const char *key, size_t keylen, int argc,
                   const char **argv, const size_t *argvlen, pg_router_cb cb, void *arg);
/* 1 when every master of the slot map has a link up that has loaded the
 * library: a backend's FCALL then finds it on whichever master it routes
 * to (SPEC §10). Opens the links still missing, so a 0 is followed by
 * cfg.all_loaded once they have loaded it. */
int pg_router_loaded(pg_router_t *r);
/* Calls waiting or in flight right now. */
size_t pg_router_pending(const pg_router_t *r);
/* Close every link; every call not answered yet gets its callback with
 * NULL and "router closed" before this returns. NULL is a no-op; not from
 * inside a router callback. */
void pg_router_free(pg_router_t *r);

#endif
