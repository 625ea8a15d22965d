/* conn.c - per-connection state, bounded out-queue, writes and teardown. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "conn.h"
#include "fdwatch.h"
#include "http.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"
#include "wsframe.h"

/* lws rewrites the bytes just before a payload (frame header); pg_msg
 * reserves PG_MSG_PRE of them for each view. */
_Static_assert(LWS_PRE <= PG_MSG_PRE, "PG_MSG_PRE must cover LWS_PRE");

static lws_dll2_owner_t open_conns[PG_TR_COUNT];   /* by transport */
static pg_msg_t        *keepalive_msg;              /* shared ping frame / ": ping" */
static lws_dll2_owner_t dirty;                      /* got messages this iteration */
static uv_prepare_t     flush_prep;
static void           (*message_hook)(pg_conn_t *c, const char *buf, size_t len);
static void           (*end_hook)(pg_conn_t *c);   /* pg_conn_set_end_hook */
static pg_fdwatch_t     watch = { .epfd = -1 };   /* SSE hang-ups, WebSocket reads */

static void want_pollout(pg_conn_t *c)
{
    c->flags |= PG_CONN_WANT_POLLOUT;
    lws_callback_on_writable(c->wsi);
}

#define COALESCE_MAX 65536   /* bytes gathered into one write */

static size_t view_len(const pg_conn_t *c, const pg_msg_t *m)
{
    return c->transport == PG_TR_WS ? m->json_len : m->sse_len;
}

/* The bytes m puts on c's wire: a complete pre-built WebSocket frame, or
 * SSE text. */
static const char *wire(const pg_conn_t *c, const pg_msg_t *m, size_t *len)
{
    if (c->transport == PG_TR_WS) {
        *len = m->ws_hdr_len + m->json_len;
        return m->json - m->ws_hdr_len;
    }
    *len = m->sse_len;
    return m->sse;
}

/* --- keepalive -------------------------------------------------------------
 * Driven by the node's timer wheel, not by lws: lws 4.1 keeps its ping
 * ("validity") timers in one sorted list and re-inserts a connection on
 * every ping and pong, a walk over every connection each time (issue #15
 * measured 23 us per connection per second at 18k, rising). Here each
 * connection has one wheel entry that fires once per --ping-interval: O(1)
 * per connection per interval, and an idle connection costs nothing in
 * between. The first firing is spread at random over the interval, so
 * connections that arrived together do not all ping in the same tick.
 *
 * A WebSocket client that has not answered the previous ping (no pong and
 * no frame since it was queued) when the next one is due is closed: that
 * is 2 intervals after it was last heard of, as with lws's policy before
 * (ping after one interval of silence, hang up after two). SSE clients
 * cannot answer; their hang-ups are seen by the hang-up watcher. */

static uint32_t tick32(void)
{
    return (uint32_t)pg_node_tick();
}

static uint64_t interval_ticks(void)
{
    return (uint64_t)pg_node.cfg.ping_interval * PG_TICKS_PER_SEC;
}

/* Keepalives are filed on a grid of whole seconds: the clock wakes once
 * for all the pings due in a step, and their pongs come back together, so
 * one read wake-up takes many. Where the pings are few the step widens, up
 * to KEEPALIVE_MAX_STEP s, so that a step still holds about
 * KEEPALIVE_BATCH of them: 1 000 connections at the default interval ping
 * 200 every 5 s, not 40 every second. On this VM a wake-up costs more than
 * the pings it serves at that size (issue #15: ~150 us each, against ~15 us
 * of kernel work per ping and pong), and it was what kept small nodes above
 * 1 us per connection per second. Due times are rounded down to the grid,
 * so a ping never comes later than its interval; a silent client is closed
 * between 2 intervals less a step and 2 intervals after its last word. */
#define KEEPALIVE_BATCH    200
#define KEEPALIVE_MAX_STEP 5

/* The grid point at or before tick (a tick after now), or the first one
 * after now when that is none. */
static uint64_t keepalive_slot(uint64_t tick)
{
    uint64_t n = pg_node.nconns > 0 ? pg_node.nconns : 1;
    uint64_t step = (uint64_t)KEEPALIVE_BATCH * (uint64_t)pg_node.cfg.ping_interval / n;
    if (step > KEEPALIVE_MAX_STEP)
        step = KEEPALIVE_MAX_STEP;
    if (step > (uint64_t)pg_node.cfg.ping_interval)
        step = (uint64_t)pg_node.cfg.ping_interval;
    if (step < 1)
        step = 1;
    step *= PG_TICKS_PER_SEC;
    uint64_t now = pg_node_tick(), due = tick / step * step;
    return due > now ? due : (now / step + 1) * step;
}

static int out_write(pg_conn_t *c, unsigned char *buf, size_t len);

/* With nothing queued and nothing left with lws, the ping's few bytes go
 * out at once: an idle connection then never allocates a queue array (it
 * would keep one for good) nor joins the flush list. Otherwise, or over
 * TLS, it queues behind what is there, like any message. */
static void send_keepalive(pg_conn_t *c)
{
    if (c->qlen == 0 && !(c->flags & PG_CONN_WANT_POLLOUT) && pg_node.cfg.tls_cert == NULL &&
        !lws_partial_buffered(c->wsi)) {
        size_t len;
        const char *v = wire(c, keepalive_msg, &len);
        if (out_write(c, (unsigned char *)v, len) < 0)
            pg_conn_close(c, 0, NULL);   /* the peer is gone: no close frame */
        return;
    }
    pg_conn_send(c, keepalive_msg);
}

static void keepalive_cb(pg_timer_t *t)
{
    pg_conn_t *c = lws_container_of(t, pg_conn_t, keepalive);
    uint32_t now = tick32();

    if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
        return;
    if (c->transport == PG_TR_WS) {
        if (c->ping_tick != 0 && (int32_t)(c->seen_tick - c->ping_tick) < 0) {
            conn_log(PG_LOG_DEBUG, c, "no pong for %u s: closing",
                     (unsigned)((now - c->seen_tick) / PG_TICKS_PER_SEC));
            pg_conn_close(c, 0, NULL);   /* the peer is gone: no close frame */
            return;
        }
        c->ping_tick = now ? now : 1;
    }
    if ((c->transport == PG_TR_WS || (c->flags & PG_CONN_HDRS_SENT)) && keepalive_msg != NULL)
        send_keepalive(c);
    pg_wheel_arm(&pg_node.wheel, &c->keepalive, keepalive_slot(pg_node_tick() + interval_ticks()));
}

void pg_conn_seen(pg_conn_t *c)
{
    c->seen_tick = tick32();
}

void pg_conn_open(pg_conn_t *c, struct lws *wsi, int transport)
{
    c->wsi = wsi;
    c->transport = transport;
    c->id = ++pg_node.next_conn_id;
    c->flags |= PG_CONN_OPEN;
    lws_dll2_add_tail(&c->node, &open_conns[transport]);
    pg_node.nconns++;
    pg_node.metrics.connections[transport]++;
    c->seen_tick = tick32();
    c->keepalive.cb = keepalive_cb;
    /* On the keepalive grid (keepalive_slot), spread over the interval's
     * steps, so 100 000 connections ping in 25 batches, not one. */
    pg_wheel_arm(&pg_node.wheel, &c->keepalive,
                 keepalive_slot(pg_node_tick() + 1 + (uint64_t)random() % interval_ticks()));
}

static void set_close(pg_conn_t *c, uint16_t code, const char *reason)
{
    c->close_code = code;
    /* a copy, allocated only for the close: 124 bytes in every connection
     * would cost more than all the other per-connection state added to it */
    if (reason == c->close_reason)
        return;
    free(c->close_reason);
    c->close_reason = reason != NULL && *reason ? strdup(reason) : NULL;
}

void pg_conn_close(pg_conn_t *c, uint16_t code, const char *reason)
{
    if (c->flags & PG_CONN_CLOSE_ASAP)
        return;
    c->flags |= PG_CONN_CLOSE_ASAP;
    set_close(c, code, reason);
    lws_callback_on_writable(c->wsi);
}

void pg_conn_close_after_flush(pg_conn_t *c, uint16_t code, const char *reason)
{
    if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
        return;
    c->flags |= PG_CONN_DRAINING | PG_CONN_CLOSING;
    set_close(c, code, reason);
    lws_callback_on_writable(c->wsi);
}

int pg_conn_send(pg_conn_t *c, pg_msg_t *m)
{
    if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
        return -1;
    size_t len = view_len(c, m);
    if (c->queued_bytes + len > pg_node.cfg.queue_limit_bytes) {
        /* redis obuf limits: the slow client alone pays; the fan-out goes on. */
        pg_node.metrics.slow_consumer_disconnects_total++;
        conn_log(PG_LOG_INFO, c, "slow consumer: %zu bytes queued, closing",
                 c->queued_bytes);
        pg_conn_close(c, 1008, "slow consumer");
        return -1;
    }
    if (c->qlen == c->qcap) {
        uint32_t ncap = c->qcap ? c->qcap * 2 : 4;
        pg_msg_t **n = malloc(ncap * sizeof(*n));
        if (n == NULL) {
            pg_conn_close(c, 1011, "out of memory");
            return -1;
        }
        /* unroll the ring into the new array, oldest first */
        for (uint32_t i = 0; i < c->qlen; i++)
            n[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = n;
        c->qhead = 0;
        c->qcap = ncap;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = pg_msg_ref(m);
    c->qlen++;
    c->queued_bytes += len;
    if (c->qlen == 1 && !(c->flags & PG_CONN_WANT_POLLOUT) && c->dirty_node.owner == NULL)
        lws_dll2_add_tail(&c->dirty_node, &dirty);   /* written before the loop sleeps */
    return 0;
}

int pg_conn_send_control(pg_conn_t *c, const char *json, size_t len, const char *sse_event)
{
    pg_msg_t *m = pg_msg_control(json, len, sse_event);
    if (m == NULL) {
        pg_conn_close(c, 1011, "out of memory");
        return -1;
    }
    int rc = pg_conn_send(c, m);
    pg_msg_unref(&m);
    return rc;
}

static pg_msg_t *queue_pop(pg_conn_t *c)
{
    pg_msg_t *m = c->q[c->qhead];
    c->q[c->qhead] = NULL;
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->queued_bytes -= view_len(c, m);
    return m;
}

static void count_delivery(pg_conn_t *c, const pg_msg_t *m, uint64_t now)
{
    if (m->channel == NULL)
        return;   /* control frames are not deliveries */
    pg_node.metrics.deliveries_total[c->transport]++;
    pg_metrics_latency(&pg_node.metrics, now - m->recv_ns);
}

int pg_conn_sse_begin(pg_conn_t *c)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                  *end = buf + sizeof(buf) - 1;
    struct lws *wsi = c->wsi;

    if (lws_add_http_header_status(wsi, HTTP_STATUS_OK, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                (const unsigned char *)"text/event-stream", 17, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                (const unsigned char *)"no-cache", 8, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-accel-buffering:",
                (const unsigned char *)"no", 2, &p, end) ||
        pg_http_cors_headers(wsi, &p, end) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    if (lws_write(wsi, start, (size_t)lws_ptr_diff(p, start), LWS_WRITE_HTTP_HEADERS) < 0)
        return -1;
    c->flags |= PG_CONN_HDRS_SENT;
    /* The stream is long-lived: give the request's header table back to
     * lws's small pool now, or a few dozen streams would exhaust it. (Not
     * lws_rx_flow_control(wsi, 0) against the hang-up spin described in
     * server.c: with rx flow off lws 4.1 stops WRITEABLE callbacks too.) */
    lws_http_headers_detach(wsi);
    /* lws armed PENDING_TIMEOUT_HTTP_CONTENT (timeout_secs) when it handed us
     * the request; a stream is meant to outlive it, or every SSE client is
     * cut off after 10 s, busy or not */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    int fd = (int)lws_get_socket_fd(wsi);
    if (pg_fdwatch_add(&watch, fd, c) == 0)
        c->watched_fd = fd;
    return 0;
}

/* The peer is gone (EOF or a socket error), or an SSE client said more
 * than its request, which ends its stream too: out of the watch set, and
 * closed from a WRITEABLE callback like any other close (lws asks for
 * POLLOUT, and such a socket is writable or in error at once). Not
 * lws_set_timeout(LWS_TO_KILL_ASYNC): that only takes effect when lws next
 * services this thread, and a node with nothing else to do then kept the
 * dead connection until its next ping (a burst of clients closing right
 * after their handshake stayed open for seconds). */
static void peer_gone(pg_conn_t *c)
{
    conn_log(PG_LOG_DEBUG, c, "peer hung up");
    pg_fdwatch_forget(&watch, c->watched_fd);
    c->watched_fd = 0;
    if (c->flags & PG_CONN_LINGER) {
        /* the FIN the linger read out for (ws_close): the close is done
         * now, not at the 2 s timeout, which also held every drain up */
        lws_callback_on_writable(c->wsi);
        return;
    }
    pg_conn_close(c, 0, NULL);
}

/* End a connection from its WRITEABLE callback. For WebSocket the close
 * frame is written here, as raw bytes: lws 4.1 drops the connection without
 * one when a WRITEABLE callback returns -1, even after lws_close_reason(),
 * and the client would only see 1006. Returns -1 (close now). */
static int ws_close(pg_conn_t *c, uint16_t code, const char *reason)
{
    if (c->transport == PG_TR_WS && code != 0) {   /* 0: the socket failed, say nothing */
        unsigned char buf[LWS_PRE + 127], *f = buf + LWS_PRE;
        size_t rlen = reason ? strlen(reason) : 0;
        if (rlen > 123)
            rlen = 123;
        f[0] = 0x88;                       /* FIN | close */
        f[1] = (unsigned char)(2 + rlen);  /* unmasked, server to client */
        f[2] = (unsigned char)(code >> 8);
        f[3] = (unsigned char)(code & 0xff);
        if (rlen)
            memcpy(f + 4, reason, rlen);
        lws_write(c->wsi, f, 4 + rlen, LWS_WRITE_RAW);
    }
    /* our Close is out: nothing may follow it, a keepalive Ping included,
     * should lws keep the socket a moment longer (§5.5.1) */
    c->flags |= PG_CONN_CLOSE_ASAP;
    pg_wheel_cancel(&pg_node.wheel, &c->keepalive);
    if ((c->flags & PG_CONN_OWN_READS) && c->watched_fd > 0 && code != 0) {
        /* §7.1.1: the server closes TCP first. Our side is shut now (the
         * client reads its FIN right after the Close), but the socket is
         * read out until the client closes too, 2 s at most: closing it
         * with unread bytes would reset it, and a reset can destroy the
         * Close frame before the client has read it. */
        shutdown(c->watched_fd, SHUT_WR);
        c->flags |= PG_CONN_LINGER;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
        if (end_hook != NULL)
            end_hook(c);
        return 0;
    }
    return -1;
}

/* Write len bytes at buf. A plain socket gets one send(2), the common case
 * (lws_write would cost the same send plus, outside WRITEABLE, a poll(2) in
 * lws_send_pipe_choked to re-arm its back-to-back write check). Only a short
 * send hands the rest to lws, which keeps it in its buflist and writes it
 * before anything else on this connection, so nothing can interleave; the
 * rest is copied first, because lws may use the bytes in front of what it
 * is given and buf can be a message other connections still share. TLS
 * always goes through lws. -1 on a write error. */
static int out_write(pg_conn_t *c, unsigned char *buf, size_t len)
{
    if (pg_node.cfg.tls_cert != NULL)
        return lws_write(c->wsi, buf, len, LWS_WRITE_RAW) < 0 ? -1 : 0;
    int fd = (int)lws_get_socket_fd(c->wsi);
    ssize_t n = fd < 0 ? -1 : send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        n = 0;
    }
    size_t rest = len - (size_t)n;
    unsigned char *copy = malloc(LWS_PRE + rest);
    if (copy == NULL)
        return -1;
    memcpy(copy + LWS_PRE, buf + n, rest);
    /* re-arms lws's back-to-back write check; whether the socket is full
     * does not matter: lws buffers what it cannot send */
    int choked = lws_send_pipe_choked(c->wsi);
    (void)choked;
    int rc = lws_write(c->wsi, copy + LWS_PRE, rest, LWS_WRITE_RAW) < 0 ? -1 : 0;
    free(copy);
    return rc;
}

/* Write what is queued, coalesced: each message's WS view is a complete
 * pre-built frame (pg_msg.h) and its SSE view is plain text, so frames are
 * concatenated (up to COALESCE_MAX) and written raw with one out_write: one
 * syscall for a burst instead of one per message. Returns -1 on a write
 * error, else 0; messages past COALESCE_MAX stay queued. */
static int write_queue(pg_conn_t *c)
{
    /* one thread writes, one write at a time: a static scratch is safe */
    static unsigned char scratch[LWS_PRE + COALESCE_MAX];
    unsigned char *out = scratch + LWS_PRE;
    size_t len = 0;
    uint64_t now = pg_mono_ns();

    while (c->qlen) {
        pg_msg_t *m = c->q[c->qhead];
        size_t vlen;
        const char *v = wire(c, m, &vlen);
        if (len + vlen > COALESCE_MAX) {
            if (len > 0)
                break;              /* send what we have; the rest next time */
            /* one message bigger than the scratch: send it from its own
             * buffer, whose PG_MSG_PRE headroom lws may use */
            m = queue_pop(c);
            int rc = out_write(c, (unsigned char *)v, vlen);
            count_delivery(c, m, now);
            pg_msg_unref(&m);
            return rc;
        }
        memcpy(out + len, v, vlen);
        len += vlen;
        m = queue_pop(c);
        count_delivery(c, m, now);
        pg_msg_unref(&m);
    }
    return out_write(c, out, len);
}

int pg_conn_writeable(pg_conn_t *c)
{
    c->flags &= ~PG_CONN_WANT_POLLOUT;
    if (c->flags & PG_CONN_LINGER)   /* everything is said: waiting for the client's FIN */
        return c->watched_fd > 0 ? 0 : -1;
    if (c->flags & PG_CONN_CLOSE_ASAP)
        return ws_close(c, c->close_code, c->close_reason);
    if (c->qlen == 0) {
        if (c->flags & PG_CONN_DRAINING)
            return c->close_code ? ws_close(c, c->close_code, c->close_reason)
                                 : ws_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "going away");
        return 0;
    }
    if (write_queue(c) < 0)
        return -1;
    if (c->qlen || (c->flags & PG_CONN_DRAINING))
        want_pollout(c);
    return 0;
}

/* Before the loop sleeps, write to every connection that got messages in
 * this iteration, straight away, instead of asking lws for POLLOUT: that
 * would cost two epoll_ctl calls and a wake-up per delivery. (Redis does
 * the same with its clients_pending_write list.) Only while lws still holds
 * part of an earlier write do we wait for WRITEABLE (see out_write). */
static void flush_one(pg_conn_t *c)
{
    if (c->qlen == 0 || (c->flags & (PG_CONN_WANT_POLLOUT | PG_CONN_CLOSE_ASAP)))
        return;
    /* Wait for WRITEABLE while lws still holds part of an earlier write.
     * Over TLS, lws writes and must re-arm its back-to-back check (and it
     * also polls whether the socket takes more). */
    if (pg_node.cfg.tls_cert != NULL ? lws_send_pipe_choked(c->wsi)
                                     : lws_partial_buffered(c->wsi)) {
        want_pollout(c);
        return;
    }
    if (write_queue(c) < 0)
        pg_conn_close(c, 0, NULL);   /* the peer is gone: no close frame */
    else if (c->qlen || (c->flags & PG_CONN_DRAINING))
        want_pollout(c);
}

static void flush_cb(uv_prepare_t *h)
{
    (void)h;
    struct lws_dll2 *d;
    while ((d = lws_dll2_get_head(&dirty)) != NULL) {
        pg_conn_t *c = lws_container_of(d, pg_conn_t, dirty_node);
        lws_dll2_remove(d);
        flush_one(c);
    }
}

/* --- WebSocket reads on a plain socket ---------------------------------------
 * lws keeps the write side and the close; the read side is here, through
 * wsframe.c (wsframe.h says why). The socket sits in the hang-up watcher's
 * edge-triggered epoll set, so it is read until EAGAIN on each wake-up, and
 * lws's own POLLIN is off (rx flow control: lws then ignores the socket's
 * input and still gives WRITEABLE). */

/* A small frame of ours (a Pong) now, between whole frames: after what lws
 * still holds of an earlier write, else straight out. */
static void ctl_write(pg_conn_t *c, const unsigned char *frame, size_t len)
{
    unsigned char buf[LWS_PRE + 2 + 125];
    memcpy(buf + LWS_PRE, frame, len);
    int rc = lws_partial_buffered(c->wsi)
                 ? (lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_RAW) < 0 ? -1 : 0)
                 : out_write(c, buf + LWS_PRE, len);
    if (rc < 0)
        pg_conn_close(c, 0, NULL);   /* the peer is gone: no close frame */
}

static int ws_event(void *arg, int type, const uint8_t *p, size_t n, int fin, uint16_t code)
{
    pg_conn_t *c = arg;
    switch (type) {
    case PG_WSF_TEXT:
        if (n > 0 && pg_buf_append(&c->rx, p, n) < 0) {
            pg_conn_close(c, 1011, "out of memory");
            return 1;
        }
        if (!fin)
            return 0;
        if (message_hook != NULL)
            message_hook(c, c->rx.data != NULL ? c->rx.data : "", c->rx.len);
        pg_buf_reset(&c->rx);
        return (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING)) != 0;
    case PG_WSF_PING: {
        unsigned char f[2 + 125];
        f[0] = 0x8a;                 /* FIN | pong, §5.5.3: the Ping's data */
        f[1] = (unsigned char)n;
        if (n)
            memcpy(f + 2, p, n);
        ctl_write(c, f, 2 + n);
        return 0;
    }
    case PG_WSF_PONG:
        return 0;
    case PG_WSF_CLOSE: {
        /* §5.5.1: answer with a Close (its code and reason echoed) after
         * what is already queued, then close. The reason (UTF-8, checked by
         * the reader; 123 bytes at most) also goes into the disconnect
         * event (SPEC §9). */
        char reason[124];
        size_t rlen = n > 2 ? n - 2 : 0;
        if (rlen > 123)
            rlen = 123;
        if (rlen > 0)
            memcpy(reason, p + 2, rlen);
        reason[rlen] = '\0';
        pg_conn_close_after_flush(c, code, reason);
        return 1;
    }
    }
    return 0;
}

static const char *fail_reason(uint16_t code)
{
    switch (code) {
    case 1003: return "binary frames are not accepted";
    case 1007: return "invalid UTF-8";
    case 1009: return "message too big";
    default:   return "protocol error";
    }
}

/* Run n bytes read from c through its frame reader (which unmasks them
 * in place). */
static void ws_feed(pg_conn_t *c, uint8_t *in, size_t n)
{
    if (c->wsf == NULL && (c->wsf = calloc(1, sizeof(*c->wsf))) == NULL) {
        pg_conn_close(c, 1011, "out of memory");
        return;
    }
    uint16_t code = pg_wsf_feed(c->wsf, in, n, pg_node.cfg.max_message_bytes, ws_event, c);
    if (code != 0) {
        /* §7.1.7: what came before is answered, then the Close */
        conn_log(PG_LOG_DEBUG, c, "failing the connection: %u %s", code, fail_reason(code));
        pg_conn_close_after_flush(c, code, fail_reason(code));
    }
    if (pg_wsf_idle(c->wsf)) {
        /* an idle connection keeps no reader state */
        free(c->wsf);
        c->wsf = NULL;
    }
}

static void ws_readable(pg_conn_t *c, int hup)
{
    /* one thread reads, one connection at a time: a static buffer is safe */
    static uint8_t in[16384];
    for (;;) {
        ssize_t n = recv(c->watched_fd, in, sizeof(in), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            peer_gone(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        pg_conn_seen(c);
        /* closing: what else it sends is read and ignored */
        if (!(c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING)))
            ws_feed(c, in, (size_t)n);
        if ((size_t)n < sizeof(in) && !hup)
            return;   /* drained: more input is a new edge (fdwatch.h) */
    }
}


void pg_conn_set_message_hook(void (*cb)(pg_conn_t *c, const char *buf, size_t len))
{
    message_hook = cb;
}

void pg_conn_set_end_hook(void (*cb)(pg_conn_t *c))
{
    end_hook = cb;
}

void pg_conn_ws_own_reads(pg_conn_t *c)
{
    int fd = (int)lws_get_socket_fd(c->wsi);
    if (fd < 0 || pg_fdwatch_add(&watch, fd, c) != 0)
        return;   /* lws goes on reading: its parser, not ours */
    c->watched_fd = fd;
    c->flags |= PG_CONN_OWN_READS;
    lws_rx_flow_control(c->wsi, 0);
}

/* The watcher's callback: a WebSocket we read has input, or an SSE stream
 * hung up. */
static void readable(void *arg, int hup)
{
    pg_conn_t *c = arg;
    if (c->flags & PG_CONN_OWN_READS)
        ws_readable(c, hup);
    else
        peer_gone(c);
}

int pg_conn_init(void)
{
    pg_fdwatch_init(&watch, readable);
    if ((keepalive_msg = pg_msg_keepalive()) == NULL)
        return -1;
    if (uv_prepare_init(pg_node.loop, &flush_prep) != 0)
        return -1;
    return uv_prepare_start(&flush_prep, flush_cb);
}

void pg_conn_shutdown(void)
{
    pg_fdwatch_stop(&watch);
    pg_msg_unref(&keepalive_msg);
    uv_prepare_stop(&flush_prep);
    uv_close((uv_handle_t *)&flush_prep, NULL);
}

void pg_conn_destroy(pg_conn_t *c)
{
    if (!(c->flags & PG_CONN_OPEN))
        return;
    c->flags &= ~PG_CONN_OPEN;
    conn_log(PG_LOG_DEBUG, c, "closed");
    /* reverse order of acquisition */
    pg_wheel_cancel(&pg_node.wheel, &c->keepalive);
    lws_dll2_remove(&c->dirty_node);
    pg_fdwatch_forget(&watch, c->watched_fd);
    c->watched_fd = 0;
    while (c->qlen) {
        pg_msg_t *m = queue_pop(c);
        pg_msg_unref(&m);
    }
    free(c->q);
    c->q = NULL;
    c->qcap = 0;
    pg_buf_free(&c->rx);
    free(c->wsf);
    c->wsf = NULL;
    free(c->close_reason);
    c->close_reason = NULL;
    pg_node.metrics.connections[c->transport]--;
    pg_node.nconns--;
    lws_dll2_remove(&c->node);
    c->wsi = NULL;
}

void pg_conn_foreach(int transport, pg_conn_iter_cb cb, void *arg)
{
    for (int tr = 0; tr < PG_TR_COUNT; tr++) {
        if (transport >= 0 && tr != transport)
            continue;
        lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&open_conns[tr])) {
            cb(lws_container_of(d, pg_conn_t, node), arg);
        } lws_end_foreach_dll_safe(d, d1);
    }
}

size_t pg_conn_count(void)
{
    return open_conns[PG_TR_WS].count + open_conns[PG_TR_SSE].count;
}

int pg_conn_ws_receive(pg_conn_t *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    size_t max = pg_node.cfg.max_message_bytes;

    /* lws sends the Close for these and waits for the client's: no
     * keepalive Ping may follow it meanwhile (CLOSE_ASAP stops it) */
    if (lws_frame_is_binary(wsi)) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         (unsigned char *)"binary frames are not accepted", 30);
        c->flags |= PG_CONN_CLOSE_ASAP;
        return PG_ERR;
    }
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (c->rx.len + len + remaining > max) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message too big", 15);
        c->flags |= PG_CONN_CLOSE_ASAP;
        return PG_ERR;
    }
    if (pg_buf_append(&c->rx, in, len) < 0)
        return PG_ERR;
    if (!lws_is_final_fragment(wsi) || remaining != 0)
        return PG_AGAIN;
    return PG_OK;
}
