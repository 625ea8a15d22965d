/* api.h - the HTTP API (SPEC §3, §7): POST /api/publish, /api/disconnect,
 * /api/subscribe and /api/unsubscribe, GET /api/presence and /api/presence/stats. API key, body checks, the Redis
 * function calls, one answer when Redis has replied. */
#ifndef PG_API_H
#define PG_API_H

#include <libwebsockets.h>
#include "http.h"

/* The route's static name when path is an API endpoint, else NULL. */
const char *pg_api_route(const char *path);
/* The request line and headers of a POST to route are in: check the key,
 * Origin and Content-Length. Returns 0 to read the body, or 1 when an
 * answer was already queued in h. */
int pg_api_begin(struct lws *wsi, pg_http_t *h, const char *route);
/* 1 when route is read with GET (the presence queries), 0 for POST. */
int pg_api_is_get(const char *route);
/* A GET of such a route: check the key, call Redis, answer when it replies. */
void pg_api_get(struct lws *wsi, pg_http_t *h, const char *route);
/* A piece of the body. */
void pg_api_body(pg_http_t *h, const void *in, size_t len);
/* The whole body is in: parse, call Redis, answer (now or when it replies). */
void pg_api_complete(struct lws *wsi, pg_http_t *h);
/* The HTTP connection closed: forget wsi; replies still in flight are
 * dropped. Registered with pg_http_set_abandon. */
void pg_api_abandon(pg_http_t *h);

#endif
