/* server.h - the one HTTP port: lws context and vhost on the node's uv
 * loop, the protocol callback, HTTP routes, WebSocket and SSE sessions. */
#ifndef PG_SERVER_H
#define PG_SERVER_H

#include <stddef.h>
#include <libwebsockets.h>

#include "conn.h"
#include "http.h"

enum { PG_PSS_NONE = 0, PG_PSS_HTTP, PG_PSS_WS, PG_PSS_SSE };

/* The lws per-session data of the one protocol.
 *
 * An SSE stream's pg_conn_t is NOT in here: the stream tells lws its HTTP
 * transaction is complete (see pg_conn_sse_begin), and lws then rebinds the
 * protocol, which frees and re-zeroes this struct. SSE connections are
 * heap-allocated and found through lws_get_opaque_user_data(wsi). */
typedef struct pg_pss {
    int       kind;                /* PG_PSS_* */
    pg_conn_t conn;                /* WebSocket */
    pg_http_t http;                /* plain HTTP */
} pg_pss_t;

/* Create the lws context on pg_node.loop and listen. 0 or -1 (logged). */
int pg_server_start(void);
/* First half of the lws shutdown with a foreign loop: starts closing. */
void pg_server_stop(void);
/* After uv_run has returned: the second lws_context_destroy. */
void pg_server_destroy(void);

/* Begin draining: every connection flushes and closes (WS 1001, SSE after a
 * retry: hint). */
void pg_server_drain(void);

#endif
