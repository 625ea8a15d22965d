/* hangup.h - notice SSE clients that hang up.
 *
 * Once an HTTP/1.1 response is under way lws 4.1 stops reading the socket,
 * so when an SSE client hangs up its socket stays readable, lws never
 * notices, and the loop spins at full CPU. (lws_http_mark_sse is HTTP/2
 * only; lws_http_transaction_completed makes lws read again but frees the
 * session data and stops WRITEABLE callbacks; rx flow control off stops
 * them too.) So every SSE socket is also put in a private epoll set,
 * edge-triggered on EPOLLRDHUP/EPOLLIN, whose one descriptor sits in the
 * uv loop: a hang-up costs one wake-up and closes exactly that stream,
 * with no sweep over all connections.
 *
 * The same set carries the WebSocket sockets whose frames conn.c reads
 * itself (conn.c's callback tells the two apart). */
#ifndef PG_HANGUP_H
#define PG_HANGUP_H

/* Called once per socket that became readable or hung up, with the arg it
 * was watched with; the socket is still in the set (forget it). */
typedef void (*pg_hangup_cb)(void *arg);

/* 0, or -1 when epoll is unavailable (logged; hang-ups then go unnoticed
 * until a write fails). */
int pg_hangup_init(pg_hangup_cb cb);
void pg_hangup_stop(void);
/* Watch fd for a hang-up; 0 or -1. pg_hangup_forget(fd) before it closes. */
int pg_hangup_watch(int fd, void *arg);
void pg_hangup_forget(int fd);

#endif
