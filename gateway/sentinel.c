/* sentinel.c - master discovery through Sentinel. See sentinel.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sentinel.h"
#include "redis_link.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

/* One Sentinel gets this long to connect and answer before the next is
 * asked: loopback or LAN answers take a millisecond, and a failover must be
 * followed within 2 s (SPEC §10) even with one Sentinel frozen. */
#define QUERY_TIMEOUT_MS 700
#define SWEEP_MS         100
/* How long the links keep to a replica being promoted without hearing
 * +switch-master or an abort (a watch link lost meanwhile): longer than a
 * promotion takes, short enough that a missed abort heals on its own. */
#define PROMOTE_MAX_MS   15000

/* One locate in progress for one data link: Sentinels are asked one at a
 * time, each over its own short-lived connection. */
typedef struct query {
    struct query      *next;
    pg_link_t         *l;         /* who asked */
    redisAsyncContext *ac;        /* to Sentinel idx; NULL between tries */
    int                idx;       /* Sentinel being asked */
    int                tried;     /* how many were asked so far */
    uint64_t           deadline;  /* pg_mono_ms() by which idx must answer */
    char               why[320];  /* the last failure, for the log */
} query_t;

static const pg_url_t *url;
static query_t        *queries;
static int             preferred;   /* the Sentinel that answered last */
static uv_timer_t      sweep;       /* query deadlines */
static pg_link_t       watches[PG_URL_MAX_HOSTS]; /* one per Sentinel, in URL order */
static int             nwatches;    /* initialised so far */
static pg_hostport_t   moved;       /* the last +switch-master's address */
static pg_hostport_t   promote;     /* a replica being promoted; port 0: none */
static uint64_t        promote_until;
static int             started;

static void try_sentinel(query_t *q);

/* Forget q's connection: no callback of it reaches q again. Safe inside
 * one of its callbacks, where hiredis defers the free. */
static void drop_conn(query_t *q)
{
    redisAsyncContext *ac = q->ac;
    if (ac == NULL)
        return;
    q->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void unlink_query(query_t *q)
{
    for (query_t **pp = &queries; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
}

/* The end of q: tell its link (unless cancelled) and free q. */
static void finish(query_t *q, const char *host, int port)
{
    pg_link_t *l = q->l;
    char why[sizeof q->why];
    memcpy(why, q->why, sizeof why);
    drop_conn(q);
    unlink_query(q);
    free(q);
    if (l != NULL)
        pg_link_located(l, host, port, why);
}

/* Sentinel idx failed q (logged with why): the next one, or give up. */
static void next_sentinel(query_t *q, const char *why)
{
    const pg_hostport_t *s = &url->hosts[q->idx];
    snprintf(q->why, sizeof q->why, "sentinel %.60s:%d: %.150s", s->host, s->port, why);
    pg_log(PG_LOG_WARN, "link=%s %s", q->l ? q->l->role : "-", q->why);
    drop_conn(q);
    if (++q->tried >= url->nhosts) {
        snprintf(q->why, sizeof q->why, "no Sentinel of %d told where master %.100s is "
                 "(last: %.60s:%d: %.100s)", url->nhosts, url->master, s->host, s->port, why);
        finish(q, NULL, 0);
        return;
    }
    q->idx = (q->idx + 1) % url->nhosts;
    try_sentinel(q);
}

static void q_connect_cb(const redisAsyncContext *ac, int status)
{
    query_t *q = ac->data;
    if (q == NULL || status == REDIS_OK)
        return;
    /* hiredis frees this context after we return, calling the pending
     * reply callbacks (which must not find q, possibly freed by then) and
     * no disconnect callback: forget it without freeing. */
    char why[128];
    snprintf(why, sizeof why, "%s", ac->errstr);
    ((redisAsyncContext *)ac)->data = NULL;
    q->ac = NULL;
    next_sentinel(q, why);
}

static void q_disconnect_cb(const redisAsyncContext *ac, int status)
{
    query_t *q = ac->data;
    (void)status;
    if (q == NULL)
        return;
    char why[128];
    snprintf(why, sizeof why, "%s", ac->errstr[0] ? ac->errstr : "connection closed");
    ((redisAsyncContext *)ac)->data = NULL;
    q->ac = NULL;   /* hiredis frees it after this */
    next_sentinel(q, why);
}

static void q_auth_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    query_t *q = ac->data;
    (void)priv;
    if (q == NULL || reply == NULL || reply->type != REDIS_REPLY_ERROR)
        return;
    char why[128];
    snprintf(why, sizeof why, "AUTH failed: %s", reply->str);
    next_sentinel(q, why);
}

static void q_addr_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    query_t *q = ac->data;   /* NULL once dropped: priv may be freed then */
    uint64_t port;
    (void)priv;
    if (q == NULL || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof why, "%s", reply->str);
        next_sentinel(q, why);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        pg_atou64(reply->element[1]->str, reply->element[1]->len, &port) < 0 ||
        port < 1 || port > 65535) {
        /* a nil reply: this Sentinel does not monitor that name */
        next_sentinel(q, reply->type == REDIS_REPLY_NIL ? "does not know the master name"
                                                          : "unexpected reply");
        return;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", reply->element[0]->str);
    preferred = q->idx;
    q->why[0] = '\0';
    if (q->l != NULL)
        pg_log(PG_LOG_DEBUG, "link=%s sentinel %s:%d says master %s is at %s:%d", q->l->role,
               url->hosts[q->idx].host, url->hosts[q->idx].port, url->master, host, (int)port);
    finish(q, host, (int)port);
}

static void try_sentinel(query_t *q)
{
    const pg_hostport_t *s = &url->hosts[q->idx];
    char err[128];
    q->deadline = pg_mono_ms() + QUERY_TIMEOUT_MS;
    redisAsyncContext *ac = pg_link_connect_raw(s->host, s->port, err, sizeof err);
    if (ac == NULL) {
        next_sentinel(q, err);
        return;
    }
    ac->data = q;
    q->ac = ac;
    redisAsyncSetConnectCallback(ac, q_connect_cb);
    redisAsyncSetDisconnectCallback(ac, q_disconnect_cb);
    /* Pipelined: hiredis writes them once the connect completes. */
    if (url->sentinel_password[0])
        redisAsyncCommand(ac, q_auth_cb, NULL, "AUTH %s", url->sentinel_password);
    redisAsyncCommand(ac, q_addr_cb, NULL, "SENTINEL get-master-addr-by-name %s", url->master);
}

static void sweep_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = pg_mono_ms();
    query_t *q = queries, *next;
    for (; q != NULL; q = next) {
        next = q->next;   /* next_sentinel may free q; it never frees another */
        if (q->ac != NULL && now >= q->deadline)
            next_sentinel(q, "no answer in time");
    }
}

/* The data links' locator (redis_link's seam). */
static int promoting(void);

static void locate(pg_link_t *l)
{
    if (promoting()) {
        /* no Sentinel names the replica before the promotion is done */
        pg_link_located(l, promote.host, promote.port, NULL);
        return;
    }
    query_t *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        pg_link_located(l, NULL, 0, "out of memory");
        return;
    }
    q->l = l;
    q->idx = preferred;
    q->next = queries;
    queries = q;
    try_sentinel(q);   /* may finish q at once */
}

static void cancel(pg_link_t *l)
{
    query_t *q = queries, *next;
    for (; q != NULL; q = next) {
        next = q->next;
        if (q->l == l) {
            q->l = NULL;
            finish(q, NULL, 0);
        }
    }
}

/* --- the watch links ------------------------------------------------------
 * One per Sentinel: each Sentinel announces +switch-master only once it
 * learnt the new configuration, and only the leader of a failover announces
 * its steps, so listening to one would leave the node waiting on whichever
 * it picked. A few idle connections are cheap next to a late failover. */

static void watch_locate(pg_link_t *l)
{
    const pg_hostport_t *s = &url->hosts[l - watches];
    pg_link_located(l, s->host, s->port, NULL);
}

static int promoting(void)
{
    return promote.port != 0 && pg_mono_ms() < promote_until;
}

/* "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>" */
static void switch_master(int from, const char *payload)
{
    char name[128], oldip[256], newip[256];
    int oldport, newport;
    if (sscanf(payload, "%127s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5 ||
        strcmp(name, url->master) != 0)
        return;
    preferred = from;      /* this one surely answers with the new address */
    promote.port = 0;
    if (newport == moved.port && strcmp(newip, moved.host) == 0)
        return;            /* another Sentinel announcing the same switch */
    snprintf(moved.host, sizeof moved.host, "%s", newip);
    moved.port = newport;
    pg_log(PG_LOG_WARN, "sentinel %s:%d: master %s moved from %s:%d to %s:%d",
           url->hosts[from].host, url->hosts[from].port, name, oldip, oldport, newip, newport);
    pg_link_master_moved(newip, newport);
}

/* "+failover-state-send-slaveof-noone slave <ip:port> <ip> <port> @ <name> ..."
 * The leader is about to promote that replica. From here on, whatever the
 * old master acknowledges is lost when the replica takes over, so the links
 * leave it now, not a second later at +switch-master: they connect to the
 * replica and retry until its ROLE says master. */
static void promoting_now(int from, const char *payload)
{
    char kind[16], rname[280], ip[256], name[128];
    int port;
    if (sscanf(payload, "%15s %279s %255s %d @ %127s", kind, rname, ip, &port, name) != 5 ||
        strcmp(kind, "slave") != 0 || strcmp(name, url->master) != 0)
        return;
    snprintf(promote.host, sizeof promote.host, "%s", ip);
    promote.port = port;
    promote_until = pg_mono_ms() + PROMOTE_MAX_MS;
    pg_log(PG_LOG_WARN, "sentinel %s:%d: promoting %s:%d to master of %s",
           url->hosts[from].host, url->hosts[from].port, ip, port, name);
    pg_link_master_moved(ip, port);
}

/* "-failover-abort-slave-timeout master <name> <ip> <port>": the promotion
 * did not happen; ask the Sentinels again. */
static void promotion_aborted(int from, const char *payload)
{
    char kind[16], name[128];
    if (sscanf(payload, "%15s %127s", kind, name) != 2 || strcmp(name, url->master) != 0 ||
        !promoting())
        return;
    pg_log(PG_LOG_WARN, "sentinel %s:%d: the promotion of %s:%d was aborted",
           url->hosts[from].host, url->hosts[from].port, promote.host, promote.port);
    promote.port = 0;
    moved.port = 0;
    pg_link_master_moved("", 0);
}

static void watch_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    pg_link_t *l = priv;
    (void)ac;
    if (reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        link_log(PG_LOG_ERROR, l, "SUBSCRIBE failed: %s", reply->str);
        pg_link_fail(l, "SUBSCRIBE failed");
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str, *chan = reply->element[1]->str;
    int from = (int)(l - watches);
    if (strcmp(kind, "subscribe") == 0) {
        if (l->state != PG_LINK_READY)
            pg_link_ready(l);
        return;
    }
    if (strcmp(kind, "message") != 0 || reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    const char *payload = reply->element[2]->str;
    if (strcmp(chan, "+switch-master") == 0)
        switch_master(from, payload);
    else if (strcmp(chan, "+failover-state-send-slaveof-noone") == 0)
        promoting_now(from, payload);
    else if (strcmp(chan, "-failover-abort-slave-timeout") == 0)
        promotion_aborted(from, payload);
}

static void watch_setup(pg_link_t *l)
{
    l->state = PG_LINK_SUBSCRIBING;
    redisAsyncCommand(l->ac, watch_reply, l, "SUBSCRIBE +switch-master "
                      "+failover-state-send-slaveof-noone -failover-abort-slave-timeout");
}

int pg_sentinel_start(void)
{
    url = &pg_node.cfg.redis;
    if (url->kind != PG_URL_SENTINEL)
        return 0;
    if (uv_timer_init(pg_node.loop, &sweep) != 0)
        return -1;
    uv_timer_start(&sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    started = 1;
    pg_link_set_locator(locate, cancel);
    for (int i = 0; i < url->nhosts; i++) {
        pg_link_t *w = &watches[i];
        w->role = "sentinel";
        w->setup = watch_setup;
        w->locate = watch_locate;
        w->user = NULL;
        w->password = url->sentinel_password;
        w->aux = 1;
        if (pg_link_init(w) != 0)
            return -1;
        nwatches++;
    }
    pg_log(PG_LOG_INFO, "sentinel: %d Sentinel(s), master %s", url->nhosts, url->master);
    for (int i = 0; i < url->nhosts; i++)
        pg_link_start(&watches[i]);
    return 0;
}

void pg_sentinel_stop(void)
{
    if (!started)
        return;
    started = 0;
    for (int i = 0; i < nwatches; i++)
        pg_link_stop(&watches[i]);
    nwatches = 0;
    while (queries != NULL) {
        queries->l = NULL;
        finish(queries, NULL, 0);
    }
    uv_timer_stop(&sweep);
    uv_close((uv_handle_t *)&sweep, NULL);
    pg_link_set_locator(NULL, NULL);
}
