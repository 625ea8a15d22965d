/* redis_link.h - one hiredis async connection on the node's uv loop, with a
 * state machine, AUTH/ROLE/SELECT, a setup timeout and reconnects with capped
 * exponential backoff and jitter. Two roles use it for data: the subscriber
 * (subscriber.c) and the command link (commands.c), since a subscribed
 * connection cannot publish or read history; sentinel.c uses one more to
 * hear of failovers.
 *
 * Each link has its own host and port. Where a data link connects comes
 * from a locator when one is registered (Sentinel: ask at every connect),
 * else from --redis-url; a located link must prove with ROLE that it talks
 * to a master before its role's setup runs, and again every second while it
 * is ready, so no link ever keeps writing to a replica. */
#ifndef PG_REDIS_LINK_H
#define PG_REDIS_LINK_H

#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "pg_backoff.h"

/* Ordered (nchan REDIS_NODE_*): "at least AUTH done" is state >= PG_LINK_ROLE. */
typedef enum pg_link_state {
    PG_LINK_FAILED = -1,
    PG_LINK_DISCONNECTED = 0,
    PG_LINK_LOCATING,          /* the locator is finding the address */
    PG_LINK_CONNECTING,
    PG_LINK_AUTH,
    PG_LINK_ROLE,              /* located links: is it a master? */
    PG_LINK_SELECT,
    PG_LINK_LOADING_FUNCTION,
    PG_LINK_SUBSCRIBING,
    PG_LINK_READY = 100
} pg_link_state_t;

typedef struct pg_link pg_link_t;

/* Find where l should connect, then call pg_link_located() exactly once
 * (possibly before returning), unless the cancel hook runs first. */
typedef void (*pg_link_locate_fn)(pg_link_t *l);
/* l stops or must ask again: never call pg_link_located() for the pending
 * locate. */
typedef void (*pg_link_cancel_fn)(pg_link_t *l);

struct pg_link {
    const char        *role;        /* "subscriber" or "commands", for logs */
    redisAsyncContext *ac;          /* NULL while disconnected; hiredis frees it */
    pg_link_state_t    state;
    pg_backoff_t       backoff;
    uv_timer_t         timer;       /* setup timeout, reconnect delay, ROLE re-check */
    int                select_db;   /* send SELECT (the subscriber does not need it) */
    unsigned           connects;    /* successful setups so far */
    int                stopped;     /* pg_link_stop() called: no reconnect */
    /* Role hooks. setup runs after AUTH/ROLE/SELECT and must end in
     * pg_link_ready() or pg_link_fail(); on_down runs once per lost link. */
    void             (*setup)(pg_link_t *l);
    void             (*on_ready)(pg_link_t *l);
    void             (*on_down)(pg_link_t *l);
    /* Optional, set before pg_link_init. NULL locate: the registered
     * default locator if any (which also makes the link check ROLE), else
     * --redis-url's host. NULL password: --redis-url's user and password. */
    pg_link_locate_fn  locate;
    pg_link_cancel_fn  cancel;
    const char        *user;
    const char        *password;
    int                aux;         /* not a data link: not in the redis metrics */
    /* Private to redis_link.c. */
    char               host[256];   /* where it connects or last connected */
    int                port;
    int                need_master; /* located by the default locator: check ROLE */
    int                hurry;       /* the next reconnect waits no backoff */
    unsigned           role_pending; /* ROLE re-checks sent and unanswered */
    pg_link_t         *next;        /* every initialised link */
};

/* The locator for every data link (those with no locate hook of their own):
 * sentinel.c registers one for redis+sentinel://. Call before the links start. */
void pg_link_set_locator(pg_link_locate_fn locate, pg_link_cancel_fn cancel);
/* The answer to a locate: connect l to host:port, or, with host NULL, log
 * why and retry after the backoff. */
void pg_link_located(pg_link_t *l, const char *host, int port, const char *why);
/* A Sentinel announced the master at host:port: every located link that is
 * connected anywhere else drops and asks again at once, and every located
 * link waiting out a backoff retries now. */
void pg_link_master_moved(const char *host, int port);
/* A hiredis context to host:port attached to the node's loop, for a
 * short-lived query (sentinel.c); the caller sets its callbacks and data.
 * NULL with a reason in err. */
redisAsyncContext *pg_link_connect_raw(const char *host, int port, char *err, size_t errlen);

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
    pg_log(lvl, "redis=%s:%d link=%s state=%s " fmt, (l)->host, \
           (l)->port, (l)->role, pg_link_state_name((l)->state), ##__VA_ARGS__)

#endif
