/* listener.c - accept connections and give them to lws. See listener.h. */
#define _GNU_SOURCE   /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libwebsockets.h>

#include "listener.h"
#include "fdwatch.h"
#include "http.h"
#include "httphead.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

#define ACCEPT_BATCH 64   /* accepts per wake-up, so a SYN flood cannot starve the loop */

static int       lfd = -1;
static int       spare_fd = -1;   /* kept open to shed a connection at EMFILE */
static uv_poll_t watcher;
static int       watching;

static void set_nodelay(int fd)
{
    /* lws sets TCP_NODELAY only on sockets it accepts itself. Without it a
     * small write that follows one not yet acknowledged waits for the
     * peer's delayed ACK: every POST /api/publish on a kept-alive
     * connection took 44 ms (headers and body are two writes), and a
     * frame sent right after another could wait as long. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* TLS: lws reads the head (it must decrypt it), so no pre-check. */
static void adopt_tls(int fd)
{
    lws_sock_file_fd_type sock;
    sock.sockfd = fd;
    /* on failure lws closes fd itself */
    if (lws_adopt_descriptor_vhost(pg_node.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                   LWS_ADOPT_ALLOW_SSL, sock, NULL, NULL) == NULL)
        pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
}

/* --- the first request head ------------------------------------------------
 * On a plain socket the node reads the request head itself, checks it
 * (httphead.h says what and why), answers a bad one and closes, and hands
 * a good one to lws.
 *
 * The head is peeked, not read, until it is whole; the sockets wait in a
 * private edge-triggered epoll set (fdwatch.h), so a head arriving in
 * pieces costs one wake-up per piece and the socket never enters the uv
 * loop before lws takes it. Then:
 * - a request without a body: its head is read off the socket and lws gets
 *   the canonical copy (lws_adopt_socket_vhost_readbuf); what follows (a
 *   frame right behind a handshake, a pipelined request) stays in the
 *   socket for lws;
 * - a request with a body: lws reads the head itself, as checked, because
 *   lws 4.1 consumes a handed-over head a second time as the body
 *   (lws_http_action's buflist loop) and spins on BODY_COMPLETION. */

#define HEAD_TIMEOUT_MS   10000   /* as lws's timeout_secs for a head */
#define LINGER_MS          2000   /* reading out a refused request */

enum { HS_READING, HS_LINGER };

typedef struct head_reader {
    lws_dll2_t  node;           /* in readers, oldest first */
    int         fd;
    int         state;          /* HS_* */
    uint64_t    since_ms;
    size_t      seen;           /* bytes peeked so far */
    char        buf[PG_HEAD_MAX + 64];
} head_reader_t;

static lws_dll2_owner_t readers;
static pg_timer_t       reader_timer;   /* armed while there are readers */
static pg_fdwatch_t     heads = { .epfd = -1 };

/* Done with r: hand its socket to lws (canon != NULL, or adopt_raw), or
 * close it. */
static void reader_end(head_reader_t *r, const pg_buf_t *canon, int adopt_raw)
{
    int fd = r->fd;
    pg_fdwatch_forget(&heads, fd);
    lws_dll2_remove(&r->node);
    free(r);
    if (canon != NULL) {
        /* on failure lws closes fd itself */
        if (lws_adopt_socket_vhost_readbuf(pg_node.vhost, fd, canon->data, canon->len) == NULL)
            pg_log(PG_LOG_DEBUG, "a connection closed during its first request");
    } else if (adopt_raw) {
        lws_sock_file_fd_type sock;
        sock.sockfd = fd;
        if (lws_adopt_descriptor_vhost(pg_node.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, sock,
                                       NULL, NULL) == NULL)
            pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
    } else
        close(fd);
}

static void refuse(head_reader_t *r, const pg_head_t *h)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_http_refusal(&b, h->status, h->why, h->is_head,
                    h->ws_version ? "sec-websocket-version: 13\r\nupgrade: websocket\r\n" : NULL);
    /* one small answer on a fresh socket: it fits the send buffer */
    if (b.len)
        (void)!send(r->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    pg_buf_free(&b);
    /* Not close() at once: with the rest of the request unread the kernel
     * would reset the connection and the client could lose the answer. End
     * our side, read out what comes for a moment, then close. */
    shutdown(r->fd, SHUT_WR);
    r->state = HS_LINGER;
    r->since_ms = pg_mono_ms();
    lws_dll2_remove(&r->node);
    lws_dll2_add_tail(&r->node, &readers);
}

/* fdwatch's callback: r's socket has input or hung up. */
static void reader_event(void *arg, int hup)
{
    (void)hup;   /* the head is peeked whole each time: nothing to save */
    head_reader_t *r = arg;
    if (r->state == HS_LINGER) {
        char sink[4096];
        ssize_t n;
        while ((n = recv(r->fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
            ;
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            reader_end(r, NULL, 0);
        return;
    }
    ssize_t n = recv(r->fd, r->buf, sizeof(r->buf), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        reader_end(r, NULL, 0);   /* gone before its request was whole */
        return;
    }
    if (n < 0)
        return;
    /* The head is peeked again whole at each wake-up; it is parsed again
     * only when a line has ended since (or it reached the limit), so a head
     * trickling in byte by byte costs one parse per line, not per byte. */
    size_t seen = r->seen;
    r->seen = (size_t)n;
    if ((size_t)n < PG_HEAD_MAX && (size_t)n > seen &&
        memchr(r->buf + seen, '\n', (size_t)n - seen) == NULL)
        return;
    pg_head_t h;
    pg_buf_t canon = PG_BUF_INIT;
    int rc = pg_head_check(r->buf, (size_t)n, &h, &canon);
    if (rc == PG_AGAIN)
        return;   /* edge-triggered: back when more has come */
    if (rc == PG_ERR) {
        reader_end(r, NULL, 0);
        return;
    }
    if (h.status != 0) {
        /* not counted in connections_rejected_total: that one is 503s
         * past --max-connections only */
        pg_log(PG_LOG_DEBUG, "refused a request head: %d %s", h.status, h.why);
        refuse(r, &h);
        return;
    }
    if (h.expect_continue && h.content_length > 0) {
        /* RFC 9110 §10.1.1: the client may wait for this before its body */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)!send(r->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (h.has_body) {
        pg_buf_free(&canon);
        reader_end(r, NULL, 1);
        return;
    }
    /* the head was peeked whole: reading it cannot come up short */
    if (recv(r->fd, r->buf, h.consumed, MSG_DONTWAIT) != (ssize_t)h.consumed) {
        pg_buf_free(&canon);
        reader_end(r, NULL, 0);
        return;
    }
    reader_end(r, &canon, 0);
    pg_buf_free(&canon);
}


/* Once a second while heads are being read: drop heads that did not come
 * whole in time (slowloris), and refused connections that did not go away.
 * On the node's wheel, on whole seconds: a node with none does not wake
 * for it, and one with some wakes for it with its keepalives. */
static void reader_sweep(pg_timer_t *t)
{
    uint64_t now = pg_mono_ms();
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&readers)) {
        head_reader_t *r = lws_container_of(d, head_reader_t, node);
        if (now - r->since_ms >= (r->state == HS_LINGER ? LINGER_MS : HEAD_TIMEOUT_MS))
            reader_end(r, NULL, 0);
    } lws_end_foreach_dll_safe(d, d1);
    if (readers.count > 0)
        pg_wheel_arm(&pg_node.wheel, t, pg_node_second(pg_node_tick() + 1));
}

static void adopt(int fd)
{
    set_nodelay(fd);
    if (pg_node.cfg.tls_cert != NULL || heads.epfd < 0) {
        adopt_tls(fd);
        return;
    }
    head_reader_t *r = malloc(sizeof(*r));
    if (r == NULL || pg_fdwatch_add(&heads, fd, r) != 0) {
        free(r);
        close(fd);
        pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
        return;
    }
    r->fd = fd;
    r->seen = 0;
    r->state = HS_READING;
    r->since_ms = pg_mono_ms();
    memset(&r->node, 0, sizeof(r->node));
    lws_dll2_add_tail(&r->node, &readers);
    if (!pg_timer_armed(&reader_timer))
        pg_wheel_arm(&pg_node.wheel, &reader_timer, pg_node_second(pg_node_tick() + 1));
}

static int readers_start(void)
{
    if (pg_fdwatch_init(&heads, reader_event) != 0)
        return -1;
    reader_timer.cb = reader_sweep;
    return 0;
}

static void readers_stop(void)
{
    /* heads still being read: their connections end with the node */
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&readers)) {
        reader_end(lws_container_of(d, head_reader_t, node), NULL, 0);
    } lws_end_foreach_dll_safe(d, d1);
    pg_wheel_cancel(&pg_node.wheel, &reader_timer);
    pg_fdwatch_stop(&heads);
}

static void accept_cb(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            adopt(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
            /* Out of descriptors: the pending connection would make the
             * listener readable forever. Free the spare, accept it, close
             * it at once (the client sees a reset, not a hang), and take
             * the spare back (the libuv EMFILE trick). */
            close(spare_fd);
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                close(c);
            spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            pg_node.metrics.connections_rejected_total++;
            pg_log(PG_LOG_WARN, "out of file descriptors: refused a connection");
            continue;
        }
        break;   /* EAGAIN, or an error the next wake-up will see again */
    }
}

int pg_listener_start(void)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", pg_node.cfg.listen_port);
    int rc = getaddrinfo(pg_node.cfg.listen_host, port, &hints, &res);
    if (rc != 0) {
        pg_log(PG_LOG_ERROR, "cannot listen on %s: %s", pg_node.cfg.listen, gai_strerror(rc));
        return -1;
    }
    lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (pg_node.cfg.reuse_port &&
         setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(lfd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(lfd, SOMAXCONN) != 0) {
        pg_log(PG_LOG_ERROR, "cannot listen on %s: %s%s", pg_node.cfg.listen, strerror(errno),
               errno == EADDRINUSE && !pg_node.cfg.reuse_port
                   ? " (another process has the port; --reuse-port shares it between nodes)" : "");
        freeaddrinfo(res);
        if (lfd >= 0)
            close(lfd);
        lfd = -1;
        return -1;
    }
    freeaddrinfo(res);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (uv_poll_init_socket(pg_node.loop, &watcher, lfd) != 0) {
        close(lfd);
        lfd = -1;
        return -1;
    }
    uv_poll_start(&watcher, UV_READABLE, accept_cb);
    watching = 1;
    if (pg_node.cfg.tls_cert == NULL && readers_start() != 0)
        pg_log(PG_LOG_WARN, "request heads go to lws unchecked");   /* fdwatch logged why */
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
    close(lfd);
    lfd = -1;
}

void pg_listener_stop(void)
{
    if (!watching)
        return;
    watching = 0;
    uv_poll_stop(&watcher);
    uv_close((uv_handle_t *)&watcher, closed_cb);
    readers_stop();
    if (spare_fd >= 0)
        close(spare_fd);
    spare_fd = -1;
}
