/* auth.h - who is connecting and what may they read: the token, the Origin
 * check and the channel rules of SPEC §2, read from a request's headers.
 * The session decides what to do with the answer. */
#ifndef PG_AUTH_H
#define PG_AUTH_H

#include <stdint.h>
#include <stddef.h>
#include <libwebsockets.h>

#include "pg_jwt.h"
#include "pg_since.h"
#include "pg_util.h"

/* The longest since= / Last-Event-ID accepted, in bytes: a position list of
 * every channel a connection can have with typical names fits, and it stays
 * well inside the 8000-byte request head. A longer one is refused (400),
 * never cut: a cut list would silently start channels live. The node's
 * own SSE ids are written within it (pg_since.h). */
#define PG_AUTH_SINCE_MAX PG_SINCE_MAX_BYTES

typedef struct pg_auth_result {
    pg_identity_t who;        /* owned; sub NULL = anonymous */
    pg_strlist_t  channels;   /* requested channels, each valid and allowed */
    int           has_since;
    pg_since_t    since;      /* since= or (SSE) Last-Event-ID; owned */
} pg_auth_result_t;

/* Check a /ws or /sse request: Origin, token, channels=, since=. Returns 0
 * with res filled (caller frees with pg_auth_result_free), or the HTTP
 * status to refuse with (400, 401 or 403) and a message in err. */
int pg_auth_request(struct lws *wsi, int is_sse, pg_auth_result_t *res, char *err, size_t errlen);
void pg_auth_result_free(pg_auth_result_t *res);


/* 1 if who may read channel (valid name): broadcast always; user:<id> only
 * as that user; a topic when public or in the token's channels claim. */
int pg_auth_may_read(const pg_identity_t *who, const char *channel);

#endif
