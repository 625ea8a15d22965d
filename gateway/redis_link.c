/* redis_link.c - hiredis on the shared uv loop, and the link state machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_link.h"
#include "node.h"
#include "pg_log.h"

#define SETUP_TIMEOUT_MS 5000   /* connect + AUTH + role setup must finish in this */
#define BACKOFF_BASE_MS  100
#define BACKOFF_CAP_MS   5000
/* A ready located link asks ROLE this often, and drops when ROLE has gone
 * unanswered this many times: a master demoted without closing its
 * connections (a healed partition, a manual REPLICAOF) refuses every write
 * with READONLY, and the sooner the link notices, the fewer publishes fail. */
#define ROLE_RECHECK_MS  1000
#define ROLE_MAX_PENDING 3

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

/* --- state machine ------------------------------------------------------
 *
 *   DISCONNECTED -> LOCATING (only with a locator; it answers through
 *   pg_link_located) -> CONNECTING -> AUTH -> ROLE (located links: master
 *   or drop) -> SELECT (db != 0) -> the role's setup (LOADING_FUNCTION,
 *   SUBSCRIBING) -> READY (located links re-check ROLE every second).
 *
 * Every failure on the way, and every loss, goes through link_down: back
 * to DISCONNECTED and a reconnect after the backoff, or at once when the
 * master moved (hurry). */

static pg_link_t        *links;          /* every initialised link */
static pg_link_locate_fn default_locate;
static pg_link_cancel_fn default_cancel;

const char *pg_link_state_name(pg_link_state_t s)
{
    switch (s) {
    case PG_LINK_FAILED:           return "failed";
    case PG_LINK_DISCONNECTED:     return "disconnected";
    case PG_LINK_LOCATING:         return "locating";
    case PG_LINK_CONNECTING:       return "connecting";
    case PG_LINK_AUTH:             return "auth";
    case PG_LINK_ROLE:             return "role";
    case PG_LINK_SELECT:           return "select";
    case PG_LINK_LOADING_FUNCTION: return "loading_function";
    case PG_LINK_SUBSCRIBING:      return "subscribing";
    case PG_LINK_READY:            return "ready";
    }
    return "?";
}

void pg_link_set_locator(pg_link_locate_fn locate, pg_link_cancel_fn cancel)
{
    default_locate = locate;
    default_cancel = cancel;
}

static pg_link_locate_fn locator_of(const pg_link_t *l)
{
    return l->locate ? l->locate : default_locate;
}

static void cancel_locate(pg_link_t *l)
{
    if (l->state != PG_LINK_LOCATING)
        return;
    pg_link_cancel_fn cancel = l->locate ? l->cancel : default_cancel;
    if (cancel)
        cancel(l);
    l->state = PG_LINK_DISCONNECTED;
}

static void reconnect_cb(uv_timer_t *t);

static void schedule_reconnect(pg_link_t *l)
{
    if (l->stopped || pg_node.stopping)
        return;
    unsigned ms = 0;
    if (l->hurry) {
        /* the master moved: the old address's backoff says nothing */
        l->hurry = 0;
        pg_backoff_reset(&l->backoff);
    } else {
        ms = pg_backoff_next(&l->backoff, pg_backoff_random, NULL);
    }
    link_log(PG_LOG_INFO, l, "reconnecting in %u ms", ms);
    uv_timer_start(&l->timer, reconnect_cb, ms, 0);
}

/* The link is gone (whoever noticed): one place for the bookkeeping. */
static void link_down(pg_link_t *l, int was_connected)
{
    pg_link_state_t old = l->state;
    l->ac = NULL;
    l->state = PG_LINK_DISCONNECTED;
    l->role_pending = 0;
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

static void after_role(pg_link_t *l)
{
    if (l->select_db && pg_node.cfg.redis.db != 0) {
        l->state = PG_LINK_SELECT;
        redisAsyncCommand(l->ac, select_cb, l, "SELECT %d", pg_node.cfg.redis.db);
        return;
    }
    l->setup(l);
}

/* ROLE's first element: "master", "slave" or "sentinel". 1 for master; 0
 * with the role in what (a static or borrowed string) otherwise. */
static int is_master(const redisReply *reply, const char **what)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        *what = reply->str;
        return 0;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        *what = "an unexpected ROLE reply";
        return 0;
    }
    *what = reply->element[0]->str;
    return strcmp(*what, "master") == 0;
}

/* A master elsewhere was just confirmed: a located link still connected to
 * another address talks to a demoted master or an old address, even if
 * that server has not told it yet (a subscriber cannot ask ROLE). */
static void others_follow(pg_link_t *l)
{
    for (pg_link_t *o = links; o != NULL; o = o->next) {
        if (o == l || !o->need_master)
            continue;
        if (o->ac == NULL) {
            pg_link_hurry(o);   /* waiting out a backoff: the master is up */
            continue;
        }
        if (o->port == l->port && strcmp(o->host, l->host) == 0)
            continue;
        link_log(PG_LOG_WARN, o, "the master is at %s:%d now", l->host, l->port);
        o->hurry = 1;
        pg_link_fail(o, "not connected to the master");
    }
}

static void role_cb(redisAsyncContext *ac, void *r, void *priv)
{
    pg_link_t *l = priv;
    const char *what;
    (void)ac;
    if (r == NULL)
        return;
    if (!is_master(r, &what)) {
        /* Never write to a replica (SPEC §10): ask the locator again; the
         * Sentinels may not have finished the failover yet, so back off. */
        link_log(PG_LOG_WARN, l, "not a master (ROLE says %s)", what);
        pg_link_fail(l, "not a master");
        return;
    }
    after_role(l);
}

static void after_auth(pg_link_t *l)
{
    if (l->need_master) {
        l->state = PG_LINK_ROLE;
        redisAsyncCommand(l->ac, role_cb, l, "ROLE");
        return;
    }
    after_role(l);
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
    const char *user = l->password ? l->user : u->user;
    const char *password = l->password ? l->password : u->password;
    l->state = PG_LINK_AUTH;
    if (password[0]) {
        if (user != NULL && user[0])
            redisAsyncCommand(ac, auth_cb, l, "AUTH %s %s", user, password);
        else
            redisAsyncCommand(ac, auth_cb, l, "AUTH %s", password);
        return;
    }
    after_auth(l);   /* nothing to send; counts as authenticated */
}

redisAsyncContext *pg_link_connect_raw(const char *host, int port, char *err, size_t errlen)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (ac == NULL || ac->err) {
        snprintf(err, errlen, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    if (uvev_attach(ac, pg_node.loop) != 0) {
        snprintf(err, errlen, "cannot watch the socket");
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

static void link_connect(pg_link_t *l)
{
    pg_link_locate_fn locate = locator_of(l);
    if (locate != NULL) {
        l->state = PG_LINK_LOCATING;
        locate(l);    /* may answer through pg_link_located at once */
        return;
    }
    pg_link_located(l, pg_node.cfg.redis.host, pg_node.cfg.redis.port, NULL);
}

void pg_link_located(pg_link_t *l, const char *host, int port, const char *why)
{
    if (host == NULL) {
        l->state = PG_LINK_DISCONNECTED;
        link_log(PG_LOG_WARN, l, "no address to connect to: %s", why ? why : "?");
        schedule_reconnect(l);
        return;
    }
    if (host != l->host)
        snprintf(l->host, sizeof l->host, "%s", host);
    l->port = port;
    char err[128];
    redisAsyncContext *ac = pg_link_connect_raw(l->host, l->port, err, sizeof err);
    if (ac == NULL) {
        l->state = PG_LINK_DISCONNECTED;
        link_log(PG_LOG_WARN, l, "connect failed: %s", err);
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
    if (l->connects > 0 && !l->aux)
        pg_node.metrics.redis_reconnects_total++;
    link_connect(l);
}

int pg_link_init(pg_link_t *l)
{
    pg_backoff_init(&l->backoff, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
    l->state = PG_LINK_DISCONNECTED;
    l->need_master = l->locate == NULL && default_locate != NULL;
    snprintf(l->host, sizeof l->host, "%s", pg_node.cfg.redis.host);
    l->port = pg_node.cfg.redis.port;
    int rc = uv_timer_init(pg_node.loop, &l->timer);
    l->timer.data = l;
    if (rc == 0) {
        l->next = links;
        links = l;
    }
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

void pg_link_master_moved(const char *host, int port)
{
    for (pg_link_t *l = links; l != NULL; l = l->next) {
        if (!l->need_master || l->stopped)
            continue;
        if (l->state == PG_LINK_LOCATING) {
            /* its answer may predate the switch: ask again */
            cancel_locate(l);
            link_connect(l);
        } else if (l->ac == NULL) {
            pg_link_hurry(l);
        } else if (l->port != port || strcmp(l->host, host) != 0) {
            l->hurry = 1;
            pg_link_fail(l, "the Sentinels moved the master");
        }
    }
}

static void recheck_cb(redisAsyncContext *ac, void *r, void *priv)
{
    pg_link_t *l = priv;
    const char *what;
    (void)ac;
    if (r == NULL)
        return;
    l->role_pending = 0;
    if (!is_master(r, &what)) {
        link_log(PG_LOG_WARN, l, "demoted (ROLE says %s)", what);
        l->hurry = 1;
        pg_link_fail(l, "the master was demoted");
    }
}

static void recheck_tick(uv_timer_t *t)
{
    pg_link_t *l = t->data;
    if (l->ac == NULL || l->state != PG_LINK_READY)
        return;
    /* A subscribed connection may not send ROLE: the subscriber is checked
     * by others_follow() and by its liveness probe instead. */
    if (l->ac->c.flags & REDIS_SUBSCRIBED) {
        uv_timer_stop(t);
        return;
    }
    if (l->role_pending >= ROLE_MAX_PENDING) {
        pg_link_fail(l, "ROLE unanswered");
        return;
    }
    l->role_pending++;
    redisAsyncCommand(l->ac, recheck_cb, l, "ROLE");
}

void pg_link_ready(pg_link_t *l)
{
    uv_timer_stop(&l->timer);
    l->state = PG_LINK_READY;
    l->connects++;
    l->role_pending = 0;
    pg_backoff_reset(&l->backoff);
    link_log(PG_LOG_INFO, l, "ready");
    if (l->need_master) {
        uv_timer_start(&l->timer, recheck_tick, ROLE_RECHECK_MS, ROLE_RECHECK_MS);
        others_follow(l);
    }
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
    cancel_locate(l);
    if (l->ac != NULL) {
        redisAsyncContext *ac = l->ac;
        ac->data = NULL;     /* no callbacks into a link being torn down */
        l->ac = NULL;
        redisAsyncFree(ac);
    }
    l->state = PG_LINK_DISCONNECTED;
    for (pg_link_t **pp = &links; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&l->timer, NULL);
}
