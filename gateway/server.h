/* server.h - the one HTTP port: lws context and vhost on the node's uv
 * loop, the protocol callback, HTTP routes, WebSocket and SSE sessions. */
#ifndef PG_SERVER_H
#define PG_SERVER_H

#include <stddef.h>
#include <libwebsockets.h>

#include "conn.h"

struct pg_api_req;

enum { PG_PSS_NONE = 0, PG_PSS_HTTP, PG_PSS_WS, PG_PSS_SSE };

/* A plain HTTP exchange: the answer waiting for HTTP_WRITEABLE, and the
 * request body of /api/publish. */
typedef struct pg_http {
    int                status;     /* 0 = no answer yet */
    const char        *ctype;      /* static */
    char              *body;       /* owned (malloc) unless body_static */
    size_t             body_len;
    int                body_static;
    const char        *allow;      /* Allow header for 405, static */
    char              *cors;       /* headers for an allowed foreign Origin; owned */
    size_t             cors_len;
    char              *req;        /* request body being read; owned */
    size_t             req_len;
    int                too_big;    /* body passed --max-message-bytes */
    int                close_after; /* answered before the body was read */
    struct pg_api_req *api;        /* publish in flight; see api.c */
} pg_http_t;

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

/* Answer an HTTP request later from HTTP_WRITEABLE. body is copied. */
void pg_http_answer(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                    const char *body, size_t len);
/* Same with {"error":"<msg>"}. */
void pg_http_error(struct lws *wsi, pg_http_t *h, int status, const char *msg);

/* Begin draining: every connection flushes and closes (WS 1001, SSE after a
 * retry: hint). */
void pg_server_drain(void);

#endif
