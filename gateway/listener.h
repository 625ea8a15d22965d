/* listener.h - the listening socket, owned by pushgate rather than lws.
 *
 * lws 4.1 cannot share a port between processes (its ALLOW_LISTEN_SHARE
 * does not set SO_REUSEPORT for a single-threaded context) and cannot stop
 * accepting while its connections drain. So the node binds the port itself
 * (SO_REUSEPORT with --reuse-port), accepts on the uv loop, and hands each
 * connection to lws with lws_adopt_descriptor_vhost(); lws itself listens
 * on nothing (CONTEXT_PORT_NO_LISTEN_SERVER).
 *
 * A plain socket goes to relay.h first, which reads and checks every
 * request head (httphead.h) before lws parses it. */
#ifndef PG_LISTENER_H
#define PG_LISTENER_H

/* Bind and listen on --listen. 0, or -1 with the reason logged. */
int pg_listener_start(void);
/* Stop accepting and close the socket (drain, shutdown); once the node is
 * stopping, also end the connections relay.h still holds. Idempotent. */
void pg_listener_stop(void);

#endif
