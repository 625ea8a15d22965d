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
static pg_hangup_cb hung_up;

static void ready_cb(uv_poll_t *h, int status, int events)
{
    struct epoll_event ev[64];
    (void)h;
    (void)status;
    (void)events;
    int n;
    do {
        n = epoll_wait(epfd, ev, 64, 0);
        for (int i = 0; i < n; i++)
            hung_up(ev[i].data.ptr);
    } while (n == 64);
}

int pg_hangup_init(pg_hangup_cb cb)
{
    hung_up = cb;
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

int pg_hangup_watch(int fd, void *arg)
{
    if (epfd < 0 || fd < 0)
        return -1;
    struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET, .data.ptr = arg };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -1;
}

void pg_hangup_forget(int fd)
{
    if (fd > 0 && epfd >= 0)
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}
