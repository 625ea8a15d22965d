/* session.h - one place for a connection's life (SPEC §4, §7): who may
 * connect (auth, revocations, the per-user limit), the implicit channels,
 * the client's commands, token lifetime (expiring, refresh, exp), the
 * backend's orders, and the close codes 4000 / 4001 / 4003 / 4029.
 *
 * The transport (conn.c) moves bytes; the hub, the recovery and the control
 * service each keep their own part of a connection; the session is the
 * only module that decides what happens to one. */
#ifndef PG_SESSION_H
#define PG_SESSION_H

#include <stddef.h>
#include <libwebsockets.h>

#include "conn.h"
#include "http.h"
#include "pg_order.h"

/* The WebSocket filter callback: 0 lets the upgrade go ahead; otherwise it
 * was refused with an HTTP answer and -1 is returned for lws to drop it. */
int pg_session_ws_filter(struct lws *wsi);
/* The WebSocket is established; c (zeroed, in the per-session data) is
 * opened for it. */
void pg_session_ws_open(pg_conn_t *c, struct lws *wsi);
/* GET /sse: a stream begins (returns a new heap connection, which the
 * caller attaches to wsi and frees after pg_session_closed), or the
 * request is refused with an answer queued in h (returns NULL). *fatal is
 * set when the stream's headers could not be written (close the wsi). */
pg_conn_t *pg_session_sse_open(struct lws *wsi, pg_http_t *h, int *fatal);
/* A whole WebSocket text message from the client: one command. The caller
 * hands over none from a closing connection (server.c drops them before
 * reassembly). */
void pg_session_message(pg_conn_t *c, const char *buf, size_t len);
/* The connection is over for everyone but lws (conn.c's end hook: our Close
 * is out, the socket lingers): channels, presence, events, recovery and
 * timers let go of it now. Idempotent. */
void pg_session_ended(pg_conn_t *c);
/* The connection closed: every layer lets go of it (then the transport). */
void pg_session_closed(pg_conn_t *c);

/* A backend order (control.c's hook): act on this node's connections of
 * the order's user. */
void pg_session_apply(const pg_order_t *o);
/* The revocations were reloaded: close what they now refuse (orders may
 * have been missed while Redis was unreachable). */
void pg_session_recheck_revocations(void);

#endif
