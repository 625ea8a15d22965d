/* auth.h - who is connecting and what may they read: the token, the Origin
 * allow-list and the channel rules of SPEC §2, read from lws headers. */
#ifndef PG_AUTH_H
#define PG_AUTH_H

#include <stdint.h>
#include <stddef.h>
#include <libwebsockets.h>

#include "pg_jwt.h"
#include "pg_util.h"

typedef struct pg_auth_result {
    pg_identity_t who;        /* owned; sub NULL = anonymous */
    pg_strlist_t  channels;   /* requested channels, each valid and allowed */
    int           has_since;
    uint64_t      since;      /* since= or (SSE) Last-Event-ID */
} pg_auth_result_t;

/* Check a /ws or /sse request: Origin, token, channels=, since=. Returns 0
 * with res filled (caller frees with pg_auth_result_free), or the HTTP
 * status to refuse with (400, 401 or 403) and a message in err. */
int pg_auth_request(struct lws *wsi, int is_sse, pg_auth_result_t *res, char *err, size_t errlen);
void pg_auth_result_free(pg_auth_result_t *res);

/* 1 if the Origin header of wsi is allowed (SPEC §1), else 0. */
int pg_auth_origin_ok(struct lws *wsi);
/* CORS: when the request carries an Origin that --allowed-origins admits,
 * add Access-Control-Allow-Origin (that origin), -Allow-Credentials and
 * Vary: Origin to the response headers being built in [*p, end). Browsers
 * need them to read an EventSource stream or an API answer from another
 * origin; WebSocket does not use CORS. Returns 0, or -1 if out of room. */
int pg_auth_cors_headers(struct lws *wsi, unsigned char **p, unsigned char *end);

/* 1 if who may read channel (valid name): broadcast always; user:<id> only
 * as that user; a topic when public or in the token's channels claim. */
int pg_auth_may_read(const pg_identity_t *who, const char *channel);

/* Copy header tok of wsi into buf (NUL-terminated). Returns its length, or
 * -1 when absent or longer than the buffer. */
int pg_auth_header(struct lws *wsi, enum lws_token_indexes tok, char *buf, size_t len);

#endif
