/* redis_link.c - hiredis on the shared uv loop, and the link state machine. */
#include <stdlib.h>
#include <string.h>

#include "redis_link.h"
#include "node.h"
#include "pg_log.h"

#define SETUP_TIMEOUT_MS 5000   /* connect + AUTH + role setup must finish in this */
#define BACKOFF_BASE_MS  100
#define BACKOFF_CAP_MS   5000

/* --- hiredis event glue ------------------------------------------------
 * Our own adapter in the shape of hiredis adapters/ae.h rather than
 * adapters/libuv.h: the stock one returns silently on a poll error, so a
 * socket in error stays ready and the loop spins. Here an error is handed
 * to hiredis as a read, which sees the socket error and disconnects. */
typedef struct uvev {
    redisAsyncContext *ac;     /* NULL once hiredis cleaned up */
    uv_poll_t          poll;
    int                events;
} uvev_t;

static void uvev_cb(uv_poll_t *h, int status, int events)
{
    uvev_t *e = h->data;
    if (e->ac == NULL)
        return;
    if (status < 0 || (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac != NULL && status == 0 && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void uvev_update(uvev_t *e, int events)
{
    if (events == e->events)
        return;            /* idempotent, as adapters/ae.h */
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, uvev_cb);
    else
        uv_poll_stop(&e->poll);
}

static void uvev_add_read(void *p)  { uvev_t *e = p; uvev_update(e, e->events | UV_READABLE); }
static void uvev_del_read(void *p)  { uvev_t *e = p; uvev_update(e, e->events & ~UV_READABLE); }
static void uvev_add_write(void *p) { uvev_t *e = p; uvev_update(e, e->events | UV_WRITABLE); }
static void uvev_del_write(void *p) { uvev_t *e = p; uvev_update(e, e->events & ~UV_WRITABLE); }

static void uvev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void uvev_cleanup(void *p)
{
    uvev_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, uvev_closed);
}

static int uvev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data != NULL)
        return -1;
    uvev_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    if (uv_poll_init_socket(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.addRead = uvev_add_read;
    ac->ev.delRead = uvev_del_read;
    ac->ev.addWrite = uvev_add_write;
    ac->ev.delWrite = uvev_del_write;
    ac->ev.cleanup = uvev_cleanup;
    ac->ev.data = e;
    return 0;
}

/* --- state machine ------------------------------------------------------ */

const char *pg_link_state_name(pg_link_state_t s)
{
    switch (s) {
    case PG_LINK_FAILED:           return "failed";
    case PG_LINK_DISCONNECTED:     return "disconnected";
    case PG_LINK_CONNECTING:       return "connecting";
    case PG_LINK_AUTH:             return "auth";
    case PG_LINK_SELECT:           return "select";
    case PG_LINK_LOADING_FUNCTION: return "loading_function";
    case PG_LINK_SUBSCRIBING:      return "subscribing";
    case PG_LINK_READY:            return "ready";
    }
    return "?";
}

static void reconnect_cb(uv_timer_t *t);

static void schedule_reconnect(pg_link_t *l)
{
    if (l->stopped || pg_node.stopping)
        return;
    unsigned ms = pg_backoff_next(&l->backoff, pg_backoff_random, NULL);
    link_log(PG_LOG_INFO, l, "reconnecting in %u ms", ms);
    uv_timer_start(&l->timer, reconnect_cb, ms, 0);
}

/* The link is gone (whoever noticed): one place for the bookkeeping. */
static void link_down(pg_link_t *l, int was_connected)
{
    pg_link_state_t old = l->state;
    l->ac = NULL;
    l->state = PG_LINK_DISCONNECTED;
    uv_timer_stop(&l->timer);
    if (was_connected && old >= PG_LINK_AUTH && l->on_down)
        l->on_down(l);
    schedule_reconnect(l);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    pg_link_t *l = ac->data;
    if (l == NULL)
        return;
    /* "The context object is always freed after the disconnect callback
     * fired" (hiredis README): forget it, never free it ourselves. */
    if (status != REDIS_OK)
        link_log(PG_LOG_WARN, l, "connection lost: %s", ac->errstr);
    else
        link_log(PG_LOG_INFO, l, "disconnected");
    link_down(l, 1);
}

static void setup_timeout_cb(uv_timer_t *t)
{
    pg_link_fail(t->data, "setup timed out");
}

static void after_auth(pg_link_t *l);

int pg_link_reply_ok(pg_link_t *l, const redisReply *reply, const char *what)
{
    if (reply == NULL)
        return 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        link_log(PG_LOG_ERROR, l, "%s failed: %s", what, reply->str);
        pg_link_fail(l, what);
        return 0;
    }
    return 1;
}

static void select_cb(redisAsyncContext *ac, void *r, void *priv)
{
    pg_link_t *l = priv;
    (void)ac;
    if (pg_link_reply_ok(l, r, "SELECT"))
        l->setup(l);
}

static void after_auth(pg_link_t *l)
{
    if (l->select_db && pg_node.cfg.redis.db != 0) {
        l->state = PG_LINK_SELECT;
        redisAsyncCommand(l->ac, select_cb, l, "SELECT %d", pg_node.cfg.redis.db);
        return;
    }
    l->setup(l);
}

static void auth_cb(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    if (pg_link_reply_ok(priv, r, "AUTH"))
        after_auth(priv);
}

static void connect_cb(const redisAsyncContext *cac, int status)
{
    pg_link_t *l = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (l == NULL)
        return;           /* link stopped while connecting */
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback; no disconnect_cb */
        link_log(PG_LOG_WARN, l, "connect failed: %s", cac->errstr);
        link_down(l, 0);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    link_log(PG_LOG_DEBUG, l, "connected");
    const pg_url_t *u = &pg_node.cfg.redis;
    if (u->password[0]) {
        l->state = PG_LINK_AUTH;
        if (u->user[0])
            redisAsyncCommand(ac, auth_cb, l, "AUTH %s %s", u->user, u->password);
        else
            redisAsyncCommand(ac, auth_cb, l, "AUTH %s", u->password);
        return;
    }
    l->state = PG_LINK_AUTH;   /* nothing to send; counts as authenticated */
    after_auth(l);
}

static void link_connect(pg_link_t *l)
{
    const pg_url_t *u = &pg_node.cfg.redis;
    redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
    if (ac == NULL || ac->err) {
        link_log(PG_LOG_WARN, l, "connect failed: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    if (uvev_attach(ac, pg_node.loop) != 0) {
        redisAsyncFree(ac);
        schedule_reconnect(l);
        return;
    }
    ac->data = l;
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    l->ac = ac;
    l->state = PG_LINK_CONNECTING;
    uv_timer_start(&l->timer, setup_timeout_cb, SETUP_TIMEOUT_MS, 0);
}

static void reconnect_cb(uv_timer_t *t)
{
    pg_link_t *l = t->data;
    if (l->connects > 0)
        pg_node.metrics.redis_reconnects_total++;
    link_connect(l);
}

int pg_link_init(pg_link_t *l)
{
    pg_backoff_init(&l->backoff, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
    l->state = PG_LINK_DISCONNECTED;
    int rc = uv_timer_init(pg_node.loop, &l->timer);
    l->timer.data = l;
    return rc;
}

void pg_link_start(pg_link_t *l)
{
    link_connect(l);
}

void pg_link_hurry(pg_link_t *l)
{
    if (l->stopped || l->ac != NULL || l->state != PG_LINK_DISCONNECTED)
        return;
    pg_backoff_reset(&l->backoff);
    uv_timer_start(&l->timer, reconnect_cb, 0, 0);
}

void pg_link_ready(pg_link_t *l)
{
    uv_timer_stop(&l->timer);
    l->state = PG_LINK_READY;
    l->connects++;
    pg_backoff_reset(&l->backoff);
    link_log(PG_LOG_INFO, l, "ready");
    if (l->on_ready)
        l->on_ready(l);
}

void pg_link_fail(pg_link_t *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    link_log(PG_LOG_WARN, l, "dropping connection: %s", why);
    if (ac == NULL)
        return;
    /* If the socket was connected, hiredis calls disconnect_cb (now, or when
     * the current callback returns); if not, nothing will, so do it here. */
    int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    redisAsyncFree(ac);
    if (!connected && l->ac == ac)
        link_down(l, 0);
}

void pg_link_stop(pg_link_t *l)
{
    l->stopped = 1;
    uv_timer_stop(&l->timer);
    if (l->ac != NULL) {
        redisAsyncContext *ac = l->ac;
        ac->data = NULL;     /* no callbacks into a link being torn down */
        l->ac = NULL;
        redisAsyncFree(ac);
    }
    l->state = PG_LINK_DISCONNECTED;
    uv_close((uv_handle_t *)&l->timer, NULL);
}
