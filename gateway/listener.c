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
#include "relay.h"
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

/* TLS: lws reads the head (it must decrypt it), so no pre-check; also a
 * plain socket when the relay could not start. */
static void adopt_tls(int fd)
{
    lws_sock_file_fd_type sock;
    sock.sockfd = fd;
    /* on failure lws closes fd itself */
    if (lws_adopt_descriptor_vhost(pg_node.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                   LWS_ADOPT_ALLOW_SSL, sock, NULL, NULL) == NULL)
        pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
}

static void adopt(int fd)
{
    set_nodelay(fd);
    /* a plain socket's requests are read by the node first (relay.h) */
    if (pg_node.cfg.tls_cert != NULL || pg_relay_take(fd) != 0)
        adopt_tls(fd);
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
    if (pg_node.cfg.tls_cert == NULL && pg_relay_start() != 0)
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
    /* A draining worker stops accepting at once (main.c) but lets the
     * connections it relays finish their requests: they end with the node. */
    if (pg_node.stopping)
        pg_relay_stop();
    if (!watching)
        return;
    watching = 0;
    uv_poll_stop(&watcher);
    uv_close((uv_handle_t *)&watcher, closed_cb);
    if (spare_fd >= 0)
        close(spare_fd);
    spare_fd = -1;
}
