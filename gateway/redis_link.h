/* redis_link.h - one hiredis async connection on the node's uv loop, with a
 * state machine, AUTH/SELECT, a setup timeout and reconnects with capped
 * exponential backoff and jitter. Two roles use it: the subscriber
 * (redis_sub.c) and the command link (redis_cmd.c), since a subscribed
 * connection cannot publish or read history. */
#ifndef PG_REDIS_LINK_H
#define PG_REDIS_LINK_H

#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "pg_backoff.h"

/* Ordered (nchan REDIS_NODE_*): "at least AUTH done" is state >= PG_LINK_SELECT. */
typedef enum pg_link_state {
    PG_LINK_FAILED = -1,
    PG_LINK_DISCONNECTED = 0,
    PG_LINK_CONNECTING,
    PG_LINK_AUTH,
    PG_LINK_SELECT,
    PG_LINK_LOADING_FUNCTION,
    PG_LINK_SUBSCRIBING,
    PG_LINK_READY = 100
} pg_link_state_t;

typedef struct pg_link pg_link_t;

struct pg_link {
    const char        *role;        /* "subscriber" or "commands", for logs */
    redisAsyncContext *ac;          /* NULL while disconnected; hiredis frees it */
    pg_link_state_t    state;
    pg_backoff_t       backoff;
    uv_timer_t         timer;       /* setup timeout, then reconnect delay */
    int                select_db;   /* send SELECT (the subscriber does not need it) */
    unsigned           connects;    /* successful setups so far */
    int                stopped;     /* pg_link_stop() called: no reconnect */
    /* Role hooks. setup runs after AUTH/SELECT and must end in
     * pg_link_ready() or pg_link_fail(); on_down runs once per lost link. */
    void             (*setup)(pg_link_t *l);
    void             (*on_ready)(pg_link_t *l);
    void             (*on_down)(pg_link_t *l);
};

/* Prepare l (role and hooks already set). Returns 0 or a uv error. */
int pg_link_init(pg_link_t *l);
/* Connect now (and keep reconnecting until pg_link_stop). */
void pg_link_start(pg_link_t *l);
/* If l waits out a reconnect delay, reconnect now: the other link just got
 * through, so Redis is back and the backoff would only keep it waiting. */
void pg_link_hurry(pg_link_t *l);
/* The role's setup finished: state READY, backoff reset, on_ready. */
void pg_link_ready(pg_link_t *l);
/* Drop the connection (logging why) and schedule a reconnect. Safe inside a
 * hiredis callback: hiredis defers the free until the callback returns. */
void pg_link_fail(pg_link_t *l, const char *why);
/* Close for good (shutdown): frees the context and closes the timer. */
void pg_link_stop(pg_link_t *l);
const char *pg_link_state_name(pg_link_state_t s);
/* For the reply to one of l's setup commands (what: "AUTH", "SELECT", ...):
 * 1 when it succeeded. An error reply is logged (Redis's text never holds
 * the password) and fails the link; NULL means the link is going down and
 * its disconnect callback handles it. Both return 0. */
int pg_link_reply_ok(pg_link_t *l, const redisReply *reply, const char *what);

#define link_log(lvl, l, fmt, ...) \
    pg_log(lvl, "redis=%s:%d link=%s state=%s " fmt, pg_node.cfg.redis.host, \
           pg_node.cfg.redis.port, (l)->role, pg_link_state_name((l)->state), ##__VA_ARGS__)

#endif
