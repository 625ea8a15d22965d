/* hangup.c - a private epoll set for SSE hang-ups. See hangup.h. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "hangup.h"
#include "node.h"
#include "pg_log.h"

static int       epfd = -1;
static uv_poll_t epoll_watcher;

static void ready_cb(uv_poll_t *h, int status, int events)
{
    struct epoll_event ev[64];
    (void)h;
    (void)status;
    (void)events;
    int n;
    do {
        n = epoll_wait(epfd, ev, 64, 0);
        for (int i = 0; i < n; i++) {
            pg_conn_t *c = ev[i].data.ptr;
            /* An SSE client has nothing more to say after its request:
             * EOF, an error or stray bytes all end the stream. */
            conn_log(PG_LOG_DEBUG, c, "peer hung up");
            pg_hangup_forget(c);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        }
    } while (n == 64);
}

int pg_hangup_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0 || uv_poll_init(pg_node.loop, &epoll_watcher, epfd) != 0) {
        pg_log(PG_LOG_ERROR, "epoll_create1: %s", strerror(errno));
        if (epfd >= 0)
            close(epfd);
        epfd = -1;
        return -1;
    }
    uv_poll_start(&epoll_watcher, UV_READABLE, ready_cb);
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    (void)h;
    close(epfd);
    epfd = -1;
}

void pg_hangup_stop(void)
{
    if (epfd < 0)
        return;
    uv_poll_stop(&epoll_watcher);
    uv_close((uv_handle_t *)&epoll_watcher, closed_cb);
}

void pg_hangup_watch(pg_conn_t *c)
{
    int fd = (int)lws_get_socket_fd(c->wsi);
    if (epfd < 0 || fd < 0)
        return;
    struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET, .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        c->hangup_fd = fd;
}

void pg_hangup_forget(pg_conn_t *c)
{
    if (c->hangup_fd <= 0 || epfd < 0)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->hangup_fd, NULL);
    c->hangup_fd = 0;
}
