/* api.h - POST /api/publish (SPEC §3): API key, body checks, FCALL per
 * channel, one answer when every id is back. */
#ifndef PG_API_H
#define PG_API_H

#include <libwebsockets.h>
#include "server.h"

/* The request line and headers are in: check method-independent things
 * (key, Content-Length). Returns 0 to read the body, or 1 when an answer was
 * already queued in h. */
int pg_api_begin(struct lws *wsi, pg_http_t *h);
/* A piece of the body. */
void pg_api_body(pg_http_t *h, const void *in, size_t len);
/* The whole body is in: parse, publish, answer (now or when Redis replies). */
void pg_api_complete(struct lws *wsi, pg_http_t *h);
/* The HTTP connection closed: forget wsi; replies still in flight are dropped. */
void pg_api_abandon(pg_http_t *h);

#endif
