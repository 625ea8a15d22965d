/* fdwatch.h - a private epoll set of sockets, edge-triggered on input and
 * hang-up, whose one descriptor sits in the uv loop.
 *
 * Why not a uv_poll_t per socket: lws already polls these sockets (or will,
 * once adopted), and libuv refuses a second watcher on one descriptor. And
 * why at all:
 * - conn.c: once an HTTP/1.1 response is under way lws 4.1 stops reading
 *   the socket, so when an SSE client hangs up its socket stays readable,
 *   lws never notices, and the loop spins at full CPU (lws_http_mark_sse is
 *   HTTP/2 only; lws_http_transaction_completed makes lws read again but
 *   frees the session data and stops WRITEABLE callbacks; rx flow control
 *   off stops them too). The same set carries the WebSocket sockets whose
 *   frames conn.c reads itself.
 * - relay.c: a plain connection's request heads are read here before lws
 *   parses them, and a kept-alive one is relayed (its socket and the node's
 *   end of a socketpair, both here, output too while one is full).
 * A ready socket costs one wake-up and exactly that socket's callback, with
 * no sweep over all connections. */
#ifndef PG_FDWATCH_H
#define PG_FDWATCH_H

#include <uv.h>

/* Called once per socket that became readable or hung up, with the arg it
 * was watched with; the socket is still in the set (forget it). hup is 1
 * when the peer hung up or the socket failed: then read it to the end,
 * since no further edge comes. Otherwise a read shorter than asked for
 * means the socket is drained (the next input is a new edge), which saves
 * the read that would only say EAGAIN. */
typedef void (*pg_fdwatch_cb)(void *arg, int hup);

typedef struct pg_fdwatch {
    int           epfd;      /* -1 while not started */
    uv_poll_t     watcher;
    pg_fdwatch_cb cb;
    void         *batch;     /* private: the events being dispatched */
    int           batch_at, batch_n;
} pg_fdwatch_t;

/* 0, or -1 when epoll is unavailable (logged). */
int pg_fdwatch_init(pg_fdwatch_t *w, pg_fdwatch_cb cb);
/* Close the set (asynchronously: w must outlive the loop iteration). */
void pg_fdwatch_stop(pg_fdwatch_t *w);
/* Watch fd; 0 or -1. pg_fdwatch_forget(w, fd) before it closes. */
int pg_fdwatch_add(pg_fdwatch_t *w, int fd, void *arg);
void pg_fdwatch_forget(pg_fdwatch_t *w, int fd);
/* Also call back when fd, watched with arg, can take output (on = 1), or
 * no longer (on = 0): for a writer whose socket was full. 0 or -1. */
int pg_fdwatch_want_out(pg_fdwatch_t *w, int fd, void *arg, int on);
/* No callback with arg for the events already taken from the kernel: for
 * an arg watching several sockets, freed in the callback of one of them. */
void pg_fdwatch_cancel(pg_fdwatch_t *w, const void *arg);

#endif
