/* commands.h - the broker's command link: loads the function library at
 * every (re)connect, publishes with history (FCALL), reads history, calls
 * the control functions and reads the revocations. It calls nothing above
 * the broker: readiness goes out through a hook.
 *
 * Every function here that takes a callback: if it returns an error, the
 * callback is never called; otherwise it is called exactly once (also when
 * the link drops before the reply, with ok = 0). */
#ifndef PG_COMMANDS_H
#define PG_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

#include "pg_msg.h"

/* Start connecting; ready (may be NULL) runs after every successful setup. */
int pg_commands_start(void (*ready)(void));
void pg_commands_stop(void);
int pg_commands_ready(void);
/* Redis answered on the other link: reconnect now if waiting to. */
void pg_commands_hurry(void);

/* The function library with this node's prefix, sizes and limits filled
 * in. Returns a malloc'd NUL-terminated string (caller frees) or NULL. */
char *pg_commands_render_library(size_t *len);

/* FCALL <prefix>publish 0 channel payload. cb gets ok=1 and the id, or ok=0
 * and a reason (a static string or Redis's error text, valid during cb). */
typedef void (*pg_publish_cb)(void *arg, int ok, uint64_t id, const char *err);
int pg_commands_publish(const char *channel, const char *payload, size_t len,
                   pg_publish_cb cb, void *arg);
/* Hand the publish function's reply to cb as pg_commands_publish does;
 * reply NULL: the call was lost, for the reason lost (NULL: "redis
 * connection lost"). Shared with the cluster broker's routed call. */
struct redisReply;
void pg_commands_publish_reply(const struct redisReply *reply, const char *lost,
                               pg_publish_cb cb, void *arg);

/* FCALL_RO <prefix>history 0 channel since. cb gets the entries with id >
 * since in id order (borrowed: take a ref to keep one) and whether history
 * reached back that far. */
typedef void (*pg_history_cb)(void *arg, int ok, int complete, pg_msg_t **msgs, size_t n);
int pg_commands_history(const char *channel, uint64_t since, pg_history_cb cb, void *arg);
/* Hand the history function's reply (NULL: the link dropped) to cb as
 * pg_commands_history does: shared with the cluster broker's routed read. */
void pg_commands_history_reply(const char *channel, const struct redisReply *reply,
                               pg_history_cb cb, void *arg);

/* Learn Redis's clock from a TIME reply (pg_node.redis_clock_offset_ms);
 * any other reply leaves it as it was. Shared with the cluster broker. */
void pg_commands_time_reply(const struct redisReply *reply);

/* PUBLISH <prefix>channel payload (no history): the liveness probe. */
typedef void (*pg_raw_cb)(void *arg, int ok);
int pg_commands_raw_publish(const char *channel, const char *payload, size_t len,
                       pg_raw_cb cb, void *arg);

/* FCALL fn 0 argv[0..argc): for the control functions. cb gets ok=1 and
 * the integer reply, or ok=0 and an error text (Redis's, or "redis
 * connection lost"; valid during cb). */
typedef void (*pg_fcall_int_cb)(void *arg, int ok, long long value, const char *err);
int pg_commands_fcall_int(const char *fn, int argc, const char **argv, const size_t *lens,
                          pg_fcall_int_cb cb, void *arg);
/* The same for an integer reply (lost as for pg_commands_publish_reply). */
void pg_commands_int_reply(const struct redisReply *reply, const char *lost,
                           pg_fcall_int_cb cb, void *arg);

/* HGETALL of a hash under the prefix (key without it): cb gets the field
 * and value strings (borrowed) in pairs, n pairs, or ok=0. */
typedef void (*pg_hash_cb)(void *arg, int ok, const char **fields, const char **values, size_t n);
int pg_commands_hgetall(const char *key, pg_hash_cb cb, void *arg);
/* Hand an HGETALL reply (NULL: lost) to cb as pg_commands_hgetall does;
 * shared with the cluster broker. */
void pg_commands_hash_reply(const struct redisReply *reply, pg_hash_cb cb, void *arg);

/* Any command on the command link, pipelined behind what is queued (the
 * presence and events services batch their writes per loop iteration with
 * it). cb may be NULL; otherwise it gets the reply (borrowed: valid during
 * cb), or NULL when the link dropped before it. Returns -1 (cb never called)
 * when the link is not ready. */
typedef void (*pg_reply_cb)(void *arg, const struct redisReply *reply);
int pg_commands_argv(int argc, const char **argv, const size_t *lens, pg_reply_cb cb, void *arg);
/* The same, routed by key (the full Redis name of the key argv writes) in
 * a Redis Cluster; on one Redis the key is ignored and argv goes out
 * exactly as with pg_commands_argv. */
int pg_commands_keyed_argv(const char *key, size_t keylen, int argc, const char **argv,
                           const size_t *lens, pg_reply_cb cb, void *arg);
/* Shutdown only: write what is queued on the command link now, waiting up
 * to timeout_ms for the socket, so that a stopping node's last writes (its
 * presence removed) are not dropped with the link. Replies are not read. */
void pg_commands_flush_sync(int timeout_ms);

#endif
