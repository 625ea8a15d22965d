/* node.h - the one gateway node of this process: configuration, the shared
 * uv loop, the lws context, metrics and the draining flag.
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
#include "pg_jwt.h"

struct lws_context;
struct lws_vhost;

typedef struct pg_node {
    pg_config_t          cfg;
    uv_loop_t           *loop;
    struct lws_context  *lws;
    struct lws_vhost    *vhost;
    pg_metrics_t         metrics;
    pg_jwt_keys_t       *jwt;          /* NULL when no key is configured */
    char                 fn_prefix[72];   /* the prefix as an identifier: non-alnum -> '_' */
    char                 fn_publish[96];  /* fn_prefix + "publish" */
    char                 fn_history[96];
    long                 max_connections;
    int64_t              nconns;       /* WS + SSE connections held */
    uint64_t             next_conn_id;
    uint64_t             max_id_seen;  /* highest history id seen on any channel */
    int64_t              redis_clock_offset_ms; /* Redis TIME minus our wall clock */
    int                  draining;     /* SIGTERM seen: /readyz 503, no new conns */
    int                  stopping;     /* the loop is being torn down */
} pg_node_t;

extern pg_node_t pg_node;

#endif
