/* node.h - the one gateway node of this process: configuration, the shared
 * uv loop, the lws context, metrics, the timer wheel and the draining flag;
 * and node.c, the wiring that registers every layer's hooks (README "How a
 * node works").
 *
 * A process is one node and one thread (README "Architecture"), so the node
 * is a single global, as redis has `server`: lws callbacks and hiredis
 * callbacks carry no pointer we could route it through cheaply. */
#ifndef PG_NODE_H
#define PG_NODE_H

#include <stdint.h>
#include <uv.h>

#include "pg_opt.h"
#include "pg_metrics.h"
#include "pg_keys.h"
#include "pg_wheel.h"

/* The timer wheel's tick: 100 ms of CLOCK_MONOTONIC. */
#define PG_TICKS_PER_SEC 10

struct lws_context;
struct lws_vhost;

typedef struct pg_node {
    pg_config_t          cfg;
    uv_loop_t           *loop;
    struct lws_context  *lws;
    struct lws_vhost    *vhost;
    pg_metrics_t         metrics;
    pg_keys_t           *keys;         /* JWT and API keys; replaced whole on SIGHUP */
    char                 fn_prefix[72];   /* the prefix as an identifier: non-alnum -> '_' */
    char                 fn_publish[96];  /* fn_prefix + "publish" */
    char                 fn_history[96];
    char                 fn_disconnect[96];
    char                 fn_subscribe[96];
    char                 fn_unsubscribe[96];
    pg_wheel_t           wheel;        /* per-connection deadlines (pg_wheel.h) */
    unsigned             worker;       /* --workers: this worker's index, 1..nworkers */
    unsigned             nworkers;     /* 0: a single process, no supervisor */
    struct pg_worker_slot *slots;      /* the workers' shared memory (workers.h) */
    long                 max_connections;
    int64_t              nconns;       /* WS + SSE connections held */
    uint64_t             next_conn_id;
    uint64_t             max_id_seen;  /* highest history id seen on any channel */
    int64_t              redis_clock_offset_ms; /* Redis TIME minus our wall clock */
    int                  draining;     /* SIGTERM seen: /readyz 503, no new conns */
    int                  stopping;     /* the loop is being torn down */
} pg_node_t;

extern pg_node_t pg_node;

/* The current tick of pg_node.wheel's clock. In tick.c, at the bottom with
 * this header, since every layer reads it (unit tests bring their own). */
uint64_t pg_node_tick(void);
/* The first whole-second tick at or after tick. Periodic timers (keepalive,
 * the subscriber's probe, the head-reader sweep) are filed there, so an idle
 * node wakes once a second for all of them, not once for each. */
uint64_t pg_node_second(uint64_t tick);
/* Wire the layers together and start them: the hub, the HTTP server, the
 * Redis links, the wheel's clock. 0, or -1 (logged). */
int pg_node_start(void);
/* Stop the Redis links, the clock and the server (first half of the lws
 * shutdown); pg_node_free after the loop ran dry. */
void pg_node_stop(void);
void pg_node_free(void);
/* SIGHUP: load every key again; swap the keyring in only when the load
 * succeeded (a failed reload keeps every old key and logs why). */
void pg_node_reload_keys(void);
/* /readyz: subscribed to everything, able to publish, not draining; with
 * --workers, every worker. */
int pg_node_ready(void);
/* The same for this process alone. */
int pg_node_ready_here(void);

#endif
