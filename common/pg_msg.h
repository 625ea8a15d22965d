/* pg_msg.h - a published message, decoded once and encoded once per
 * transport, shared by every recipient on the node (SPEC §4, STYLE §3).
 *
 * Layout: one allocation holds the struct, the channel name and two views,
 * each preceded by PG_MSG_PRE writable bytes:
 *   [PRE][json ...\0]   WebSocket view; a server text-frame header for
 *                       json_len is pre-written at json - ws_hdr_len, so a
 *                       writer may send (json - ws_hdr_len, ws_hdr_len +
 *                       json_len) as one complete frame.
 *   [PRE][sse  ...\0]   SSE view: "id: ..\nevent: ..\ndata: <json>\n\n".
 * libwebsockets rewrites the bytes just before the payload it is given; it
 * always writes the same header for the same length, and only one thread
 * ever writes, so sharing is safe. Immutable once constructed. */
#ifndef PG_MSG_H
#define PG_MSG_H

#include <stddef.h>
#include <stdint.h>

#define PG_MSG_PRE 32   /* >= LWS_PRE; the gateway static-asserts it */

typedef struct pg_msg {
    unsigned  refs;        /* freed when it drops to 0 */
    uint64_t  id;          /* history id; 0 = live-only message */
    char     *channel;     /* NUL-terminated valid name; NULL for control frames */
    uint64_t  recv_ns;     /* pg_mono_ns() when built: latency histogram */
    char     *json;        /* delivery object (or control JSON), NUL-terminated */
    size_t    json_len;
    size_t    ws_hdr_len;  /* 2, 4 or 10: frame header at json - ws_hdr_len */
    char     *sse;         /* SSE event text, NUL-terminated */
    size_t    sse_len;
} pg_msg_t;

enum { PG_MSG_E_TOO_BIG = 1, PG_MSG_E_NOMEM = 2 };

/* Build a message from a payload that arrived on channel (NUL-terminated,
 * already valid), following SPEC §3:
 * - len > max_bytes: NULL, *err = PG_MSG_E_TOO_BIG (never delivered in part);
 * - a JSON object with a "data" member is an envelope: data, optional string
 *   "event" (a non-string event is ignored), optional "id" (string of 1..19
 *   digits, or a positive integer; anything else is ignored);
 * - any other payload is the data itself: that JSON value if the whole
 *   payload parses as JSON (valid UTF-8 required), else the payload as a
 *   JSON string (invalid UTF-8 replaced by U+FFFD).
 * The delivery object is {"channel":..,"event":..,"id":"<digits>","data":..}
 * with event and id only when present, data serialized compactly with '/'
 * unescaped. Caller owns the one reference returned. */
pg_msg_t *pg_msg_from_payload(const char *channel, const char *payload, size_t len,
                              size_t max_bytes, int *err);

/* A control frame for one connection (pong, subscribed, error, recovery...):
 * json (len bytes, sent as is) becomes the WS view; the SSE view is
 * "event: <sse_event>\n" (omitted when NULL) + "data: <json>\n\n".
 * Returns NULL on out-of-memory. Caller owns the one reference. */
pg_msg_t *pg_msg_control(const char *json, size_t len, const char *sse_event);

/* A message whose SSE view is raw text (e.g. ": ping\n\n" or "retry: 1000\n\n");
 * its WS view is empty (json_len 0). NULL on out-of-memory. */
pg_msg_t *pg_msg_sse_raw(const char *text, size_t len);

/* The keepalive: its WS view is a ping frame carrying "pg" (written raw,
 * like every frame), its SSE view the comment ": ping\n\n". Control-like:
 * no channel, so it is not counted as a delivery. NULL on out-of-memory. */
pg_msg_t *pg_msg_keepalive(void);

/* m (a message with an SSE `id:` line, m->id != 0) for one SSE connection,
 * its `id:` line carrying id[0..idlen) in place of the message id: a
 * cluster node's position list (hub.c). The same channel, id and
 * receive time, so it counts as the same delivery; the SSE view is copied
 * after the id line, the WS view is empty. NULL on out-of-memory. Caller
 * owns the one reference. */
pg_msg_t *pg_msg_sse_with_id(const pg_msg_t *m, const char *id, size_t idlen);

/* Take another reference; returns m. */
pg_msg_t *pg_msg_ref(pg_msg_t *m);
/* Drop the reference in *mp and set *mp = NULL; frees at 0. NULL-safe
 * (*mp == NULL is a no-op). Underflow is a bug and asserts. */
void pg_msg_unref(pg_msg_t **mp);

#endif
