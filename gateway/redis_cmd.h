/* redis_cmd.h - the command link: loads the function library at every
 * (re)connect, publishes with history (FCALL) and reads history.
 *
 * Every function here that takes a callback: if it returns an error, the
 * callback is never called; otherwise it is called exactly once (also when
 * the link drops before the reply, with ok = 0). */
#ifndef PG_REDIS_CMD_H
#define PG_REDIS_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "pg_msg.h"

int pg_rcmd_start(void);
void pg_rcmd_stop(void);
int pg_rcmd_ready(void);
/* Redis answered on the other link: reconnect now if waiting to. */
void pg_rcmd_hurry(void);

/* The function library with this node's prefix, sizes and limits filled
 * in. Returns a malloc'd NUL-terminated string (caller frees) or NULL. */
char *pg_rcmd_render_library(size_t *len);

/* FCALL <prefix>publish 0 channel payload. cb gets ok=1 and the id, or ok=0
 * and a reason (a static string or Redis's error text, valid during cb). */
typedef void (*pg_publish_cb)(void *arg, int ok, uint64_t id, const char *err);
int pg_rcmd_publish(const char *channel, const char *payload, size_t len,
                   pg_publish_cb cb, void *arg);

/* FCALL_RO <prefix>history 0 channel since. cb gets the entries with id >
 * since in id order (borrowed: take a ref to keep one) and whether history
 * reached back that far. */
typedef void (*pg_history_cb)(void *arg, int ok, int complete, pg_msg_t **msgs, size_t n);
int pg_rcmd_history(const char *channel, uint64_t since, pg_history_cb cb, void *arg);

/* PUBLISH <prefix>channel payload (no history): the liveness probe. */
typedef void (*pg_raw_cb)(void *arg, int ok);
int pg_rcmd_raw_publish(const char *channel, const char *payload, size_t len,
                       pg_raw_cb cb, void *arg);

#endif
