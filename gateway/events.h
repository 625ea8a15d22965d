/* events.h - the events stream for backends (SPEC §9): with --events on,
 * one XADD to <prefix>events (MAXLEN ~ --events-max-len) per connect,
 * disconnect, subscribe, unsubscribe and client message, pipelined on the
 * command link with everything else of the loop iteration; and the
 * WebSocket "send" command, answered "sent" only once Redis has replied
 * with the entry's id.
 *
 * connect/disconnect/subscribe/unsubscribe are best effort: with the link
 * down they are dropped (a node that dies writes none; presence expiry
 * covers that). A "send" is never acknowledged unless stored. */
#ifndef PG_EVENTS_H
#define PG_EVENTS_H

#include <stddef.h>
#include "conn.h"

void pg_events_connect(pg_conn_t *c);
/* code/reason: how it closed (reason may be NULL). */
void pg_events_disconnect(pg_conn_t *c, unsigned code, const char *reason);
/* on = 1 subscribe, 0 unsubscribe. */
void pg_events_subscribe(pg_conn_t *c, const char *channel, int on);
/* A client frame the command parser did not know. Returns 1 when it was a
 * "send" (answered now or when Redis replies), 0 when it was not. */
int pg_events_send(pg_conn_t *c, const char *buf, size_t len);
/* c is going: forget it (replies still in flight find no one to answer). */
void pg_events_closed(pg_conn_t *c);
void pg_events_free(void);

#endif
