/* relay.h - a plain (non-TLS) connection's requests, every one of them
 * read and checked by the node (httphead.h) before lws parses it.
 *
 * A new connection's first request head is peeked until whole and checked;
 * a bad one is answered and the connection closed. Then:
 * - a WebSocket upgrade, an SSE stream, or a request after which the
 *   connection closes: lws gets the client's socket with the canonical head
 *   (or, with a body, the socket as it is), and the node is done with it;
 * - any other request (the connection stays open after it): lws gets one
 *   end of a socketpair instead, and the relay keeps the client's socket. It
 *   writes each checked, canonical head into the pair, then the body
 *   (Content-Length bytes exactly, or a chunked body decoded by httpchunk.h
 *   and given a Content-Length, since lws 4.1 reads no chunked body), and
 *   copies lws's answers back to the client, never reading past the request
 *   at hand. A later WebSocket upgrade or SSE stream waits until lws has
 *   answered every earlier request, then the client's socket goes to lws with
 *   its head, as on a first request, and the relay ends.
 *
 * Why: lws 4.1 reads the second and later requests of a kept-alive
 * connection from the socket itself, with its lax parser (a bare CR ends a
 * field value and the rest of the line is skipped without trace), and
 * behind a pooling proxy that is where another client's request lands.
 * README "How a node works" says what else was turned down and what it
 * costs. */
#ifndef PG_RELAY_H
#define PG_RELAY_H

/* Start reading plain connections' heads: 0, or -1 (logged) when it cannot
 * (lws then reads them unchecked). */
int pg_relay_start(void);
/* End every connection still here and stop. Idempotent. */
void pg_relay_stop(void);
/* Take a newly accepted plain socket (non-blocking). 0, or -1 when not
 * started: the caller gives fd to lws itself. */
int pg_relay_take(int fd);

#endif
