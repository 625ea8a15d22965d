/* fdwatch.c - a private epoll set in the uv loop. See fdwatch.h. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "fdwatch.h"
#include "node.h"
#include "pg_log.h"

static void ready_cb(uv_poll_t *h, int status, int events)
{
    pg_fdwatch_t *w = h->data;
    struct epoll_event ev[64];
    (void)status;
    (void)events;
    int n;
    do {
        n = epoll_wait(w->epfd, ev, 64, 0);
        w->batch = ev;
        w->batch_n = n;
        for (int i = 0; i < n; i++) {
            w->batch_at = i;
            if (ev[i].data.ptr != NULL)   /* else cancelled (pg_fdwatch_cancel) */
                w->cb(ev[i].data.ptr, (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        }
        w->batch = NULL;
    } while (n == 64);
}

void pg_fdwatch_cancel(pg_fdwatch_t *w, const void *arg)
{
    struct epoll_event *ev = w->batch;
    if (ev == NULL)
        return;
    for (int i = w->batch_at + 1; i < w->batch_n; i++)
        if (ev[i].data.ptr == arg)
            ev[i].data.ptr = NULL;
}

int pg_fdwatch_want_out(pg_fdwatch_t *w, int fd, void *arg, int on)
{
    if (w->epfd < 0 || fd < 0)
        return -1;
    struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET | (on ? EPOLLOUT : 0),
                              .data.ptr = arg };
    return epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
}

int pg_fdwatch_init(pg_fdwatch_t *w, pg_fdwatch_cb cb)
{
    w->cb = cb;
    w->batch = NULL;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0 || uv_poll_init(pg_node.loop, &w->watcher, w->epfd) != 0) {
        pg_log(PG_LOG_ERROR, "epoll_create1: %s", strerror(errno));
        if (w->epfd >= 0)
            close(w->epfd);
        w->epfd = -1;
        return -1;
    }
    w->watcher.data = w;
    uv_poll_start(&w->watcher, UV_READABLE, ready_cb);
    return 0;
}

static void closed_cb(uv_handle_t *h)
{
    pg_fdwatch_t *w = h->data;
    close(w->epfd);
    w->epfd = -1;
}

void pg_fdwatch_stop(pg_fdwatch_t *w)
{
    if (w->epfd < 0)
        return;
    uv_poll_stop(&w->watcher);
    uv_close((uv_handle_t *)&w->watcher, closed_cb);
}

int pg_fdwatch_add(pg_fdwatch_t *w, int fd, void *arg)
{
    if (w->epfd < 0 || fd < 0)
        return -1;
    struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET, .data.ptr = arg };
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -1;
}

void pg_fdwatch_forget(pg_fdwatch_t *w, int fd)
{
    if (fd > 0 && w->epfd >= 0)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
}
