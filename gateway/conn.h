/* conn.h - the transport of one client connection (WebSocket or SSE): its
 * bounded out-queue of shared messages, the one write path, close frames,
 * SSE response headers, and WebSocket message reassembly.
 *
 * The struct is also where the layers above keep their per-connection
 * state (subscriptions for the hub, the identity and token timer for the
 * session, the recovery): one allocation per connection, each group of
 * fields owned by the module named beside it. conn.c never calls up into
 * those modules.
 *
 * Lifetime: a WebSocket's struct lives inside the lws per-session data, an
 * SSE stream's on the heap (server.h says why); pg_conn_open() starts using
 * it and pg_conn_destroy() (after the session's own teardown, from the
 * CLOSED callbacks only) releases what the transport holds. Nothing else
 * ever frees a connection: code that wants one gone calls pg_conn_close(),
 * which only sets a flag and asks lws for a WRITEABLE callback, where the
 * close really happens (STYLE §4: never free during fan-out). */
#ifndef PG_CONN_H
#define PG_CONN_H

#include <stdint.h>
#include <stddef.h>
#include <libwebsockets.h>

#include "pg_jwt.h"
#include "pg_msg.h"
#include "pg_buf.h"
#include "pg_wheel.h"

struct pg_recovery;
struct pg_wsf;

#define PG_CONN_OPEN        (1u << 0)  /* pg_conn_open() done, destroy owed */
#define PG_CONN_CLOSE_ASAP  (1u << 1)  /* never enqueue again; close on next WRITEABLE */
#define PG_CONN_RECOVERING  (1u << 2)  /* recovery.c holds live messages until its replay ends */
#define PG_CONN_HDRS_SENT   (1u << 3)  /* SSE: response headers are out */
#define PG_CONN_DRAINING    (1u << 4)  /* close (close_code, or 1001) once the queue is empty */
#define PG_CONN_WANT_POLLOUT (1u << 5) /* WRITEABLE requested; no direct writes meanwhile */
#define PG_CONN_CLOSING     (1u << 6)  /* pg_conn_close_after_flush: queue nothing new */
#define PG_CONN_EXPIRY_WARNED (1u << 7) /* session: "expiring" sent for the current token */
#define PG_CONN_GAP_TOLD    (1u << 8)  /* recovery: within one pass, already sent the gap notice */
#define PG_CONN_OWN_READS   (1u << 9)  /* WS on a plain socket: conn.c reads its frames, not lws */
#define PG_CONN_LINGER      (1u << 10) /* OWN_READS: our Close is out and our side shut; reading out */
#define PG_CONN_ENDED       (1u << 11) /* session: over (the end hook ran); only the destroy is left */

typedef struct pg_conn {
    /* --- conn.c: the transport --- */
    struct lws      *wsi;
    int              transport;     /* PG_TR_WS or PG_TR_SSE */
    unsigned         flags;         /* PG_CONN_* */
    uint64_t         id;            /* node-unique, for logs */
    lws_dll2_t       node;          /* in the node's list of open connections */
    lws_dll2_t       dirty_node;    /* in the flush list while it has unsent messages */
    /* Out-queue: a ring of message references, oldest first. queued_bytes
     * is the sum of the transport view lengths in it; it never exceeds
     * --queue-limit-bytes (past it the connection is closed as slow). */
    pg_msg_t       **q;
    uint32_t         qhead, qlen, qcap;
    size_t           queued_bytes;
    pg_buf_t         rx;            /* WebSocket message being reassembled */
    struct pg_wsf   *wsf;           /* OWN_READS: frame reader state, NULL between frames */
    int              watched_fd;     /* socket in conn.c's fdwatch set (SSE hang-up, WS reads); 0 = none */
    pg_timer_t       keepalive;     /* every --ping-interval, phase spread at open */
    uint32_t         seen_tick;     /* WS: last pong or frame from the client */
    uint32_t         ping_tick;     /* WS: when the last ping was queued; 0 = none */
    uint16_t         close_code;    /* WebSocket close code for CLOSE_ASAP */
    char            *close_reason;  /* owned copy (orders carry their own text); NULL = none */

    /* --- hub.c --- */
    lws_dll2_owner_t members;       /* pg_member_t.conn_node: its channels */

    /* --- session.c --- */
    pg_identity_t    who;           /* sub NULL = anonymous; owned */
    pg_timer_t       life;          /* token lifetime: "expiring", then exp */
    uint64_t         cmd_window_ms; /* start of the command rate window */
    uint32_t         cmd_count;     /* commands seen in that window */

    /* --- recovery.c --- */
    struct pg_recovery *rec;        /* non-NULL while RECOVERING */
} pg_conn_t;

/* The pre-sleep flush of connections with new messages (see conn.c). */
int pg_conn_init(void);
void pg_conn_shutdown(void);

/* Start using c (zeroed) for wsi: give it an id, count it, start its
 * keepalive. */
void pg_conn_open(pg_conn_t *c, struct lws *wsi, int transport);
/* The client showed it is alive (a pong, or any frame). */
void pg_conn_seen(pg_conn_t *c);
/* SSE: send the response headers and release the request's header table.
 * Call once, from LWS_CALLBACK_HTTP, after the request was read. -1 on error. */
int pg_conn_sse_begin(pg_conn_t *c);
/* Queue one reference to m for c (takes its own ref). Past the queue limit c
 * is marked slow and closed on its next WRITEABLE; the message is not queued.
 * Never frees c. Returns 0, or -1 if c is closing. */
int pg_conn_send(pg_conn_t *c, pg_msg_t *m);
/* Queue a small control frame built from json (sse_event as pg_msg_control). */
int pg_conn_send_control(pg_conn_t *c, const char *json, size_t len, const char *sse_event);
/* Ask for c to be closed with a WebSocket close code (SSE: stream ends),
 * dropping whatever is still queued (a slow consumer). */
void pg_conn_close(pg_conn_t *c, uint16_t code, const char *reason);
/* The same after what is already queued has been written (an error frame
 * that explains the close); nothing new is queued meanwhile. */
void pg_conn_close_after_flush(pg_conn_t *c, uint16_t code, const char *reason);
/* The WRITEABLE callback: write what is queued. Returns -1 when lws must
 * close the connection, else 0. */
int pg_conn_writeable(pg_conn_t *c);
/* Release what the transport holds. Idempotent; only from the CLOSED
 * callbacks, after the layers above released their fields. */
void pg_conn_destroy(pg_conn_t *c);
/* A piece of a WebSocket message arrived (LWS_CALLBACK_RECEIVE). Returns
 * PG_OK with the whole text message in c->rx (the caller handles it, then
 * pg_buf_reset(&c->rx)), PG_AGAIN when more is to come, or PG_ERR when lws
 * must close (a binary frame: 1003; over --max-message-bytes: 1009; the
 * close reason is already set). */
int pg_conn_ws_receive(pg_conn_t *c, const void *in, size_t len);

/* WebSocket on a plain socket: read its frames here (wsframe.h) instead of
 * in lws, whose frame parser lets through what RFC 6455 forbids. Call from
 * ESTABLISHED; lws keeps the write side. Each whole text message goes to
 * the hook set with pg_conn_set_message_hook; Pings are answered, a Close
 * answered and the connection closed, a violation fails it with its code. */
void pg_conn_ws_own_reads(pg_conn_t *c);
void pg_conn_set_message_hook(void (*cb)(pg_conn_t *c, const char *buf, size_t len));
/* Called when a WebSocket is over for its session although lws keeps the
 * socket a moment (our Close is out, the socket is read out until the
 * client's FIN): the client already sees it closed, so its channels,
 * presence and events must not wait for lws to let go. */
void pg_conn_set_end_hook(void (*cb)(pg_conn_t *c));

/* Visit the open connections of one transport (PG_TR_*), or all with -1.
 * cb may close (flag) the connection it is given, nothing more. */
typedef void (*pg_conn_iter_cb)(pg_conn_t *c, void *arg);
void pg_conn_foreach(int transport, pg_conn_iter_cb cb, void *arg);
size_t pg_conn_count(void);

#define conn_log(lvl, c, fmt, ...) \
    pg_log(lvl, "conn=%llu %s " fmt, (unsigned long long)(c)->id, \
           (c)->transport == 0 ? "ws" : "sse", ##__VA_ARGS__)

#endif
