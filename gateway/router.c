/* router.c - key-routed commands over a Redis Cluster. See router.h. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "router.h"
#include "pg_log.h"
#include "pg_slot.h"
#include "shard.h"

/* A cluster client follows a handful of redirections at most: more means
 * the map keeps changing under the call, and the caller should see an
 * error rather than a call that never ends. */
#define MAX_REDIRECTS 5

typedef struct rlink rlink_t;

/* One call, from pg_router_call() to its callback. */
typedef struct call {
    struct call  *next;       /* in its link's waiting list */
    struct call  *all_prev, *all_next; /* in the router's list of every call */
    pg_router_t  *r;
    pg_router_cb  cb;
    void         *arg;
    int           argc;
    char        **argv;       /* copies, in the same allocation as the call */
    size_t       *argvlen;
    int           redirects;
    int           asking;     /* send ASKING first (an ASK redirection) */
} call_t;

/* One request link to one master. */
struct rlink {
    pg_router_t  *r;
    rlink_t      *next;
    pg_hostport_t addr;
    pg_shard_t   *s;
    int           up;
    int           loaded;     /* its FUNCTION LOAD was answered OK */
    call_t       *wait;       /* calls waiting for the link to come up */
    call_t      **wait_tail;
};

struct pg_router {
    uv_loop_t    *loop;
    pg_cluster_t *map;
    char         *user;
    char         *password;
    unsigned      timeout_ms;
    char         *lib;
    size_t        lib_len;
    void        (*all_loaded)(void *ud);
    void         *ud;
    rlink_t      *links;
    call_t       *calls;      /* every call not finished, for pg_router_free */
    size_t        pending;
};

static void finish(call_t *k, const redisReply *reply, const char *err)
{
    pg_router_t *r = k->r;
    if (k->all_prev)
        k->all_prev->all_next = k->all_next;
    else
        r->calls = k->all_next;
    if (k->all_next)
        k->all_next->all_prev = k->all_prev;
    r->pending--;
    pg_router_cb cb = k->cb;
    void *arg = k->arg;
    free(k);
    cb(arg, (const struct redisReply *)reply, err);
}

static void reply_cb(pg_shard_t *s, void *arg, const struct redisReply *reply);

static void ignore_cb(pg_shard_t *s, void *arg, const struct redisReply *reply)
{
    (void)s; (void)arg; (void)reply;
}

/* Put k on the wire of l (ASKING first when asked). -1 when it cannot. */
static int send_now(rlink_t *l, call_t *k)
{
    static const char *asking[] = { "ASKING" };
    static const size_t asking_len[] = { 6 };
    if (k->asking && pg_shard_request(l->s, ignore_cb, NULL, 1, asking, asking_len) < 0)
        return -1;
    return pg_shard_request(l->s, reply_cb, k, k->argc, (const char **)k->argv, k->argvlen);
}

/* Send k on l, or queue it until l is up; a send that fails finishes k. */
static void send_call(rlink_t *l, call_t *k)
{
    if (!l->up) {
        k->next = NULL;
        *l->wait_tail = k;
        l->wait_tail = &k->next;
        return;
    }
    if (send_now(l, k) < 0)
        finish(k, NULL, "cannot send to the master");
}

static void rlink_drop(rlink_t *l)
{
    pg_router_t *r = l->r;
    for (rlink_t **pp = &r->links; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    pg_shard_free(l->s);
    free(l);
}

static void load_cb(pg_shard_t *s, void *arg, const struct redisReply *reply)
{
    rlink_t *l = arg;
    const redisReply *rr = (const redisReply *)reply;
    if (rr != NULL && rr->type == REDIS_REPLY_ERROR)
        pg_log(PG_LOG_ERROR, "router: FUNCTION LOAD at %s:%d: %.*s (Redis 7+ is required)",
               pg_shard_host(s), pg_shard_port(s), (int)(rr->len > 200 ? 200 : rr->len), rr->str);
    if (rr == NULL || rr->type == REDIS_REPLY_ERROR)
        return;   /* a lost link is dropped by l_down; an error stays not loaded */
    l->loaded = 1;
    pg_router_t *r = l->r;
    if (r->all_loaded != NULL && pg_router_loaded(r))
        r->all_loaded(r->ud);
}

static void l_up(pg_shard_t *s, void *ud)
{
    rlink_t *l = ud;
    pg_router_t *r = l->r;
    l->up = 1;
    /* the library goes first on the wire, so every call after it finds it,
     * also on a master that restarted empty */
    if (r->lib != NULL) {
        const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", r->lib };
        const size_t argvlen[] = { 8, 4, 7, r->lib_len };
        if (pg_shard_request(s, load_cb, l, 4, argv, argvlen) < 0)
            pg_log(PG_LOG_ERROR, "router: cannot send FUNCTION LOAD to %s:%d",
                   l->addr.host, l->addr.port);
    }
    call_t *k = l->wait;
    l->wait = NULL;
    l->wait_tail = &l->wait;
    while (k != NULL) {
        call_t *next = k->next;
        if (send_now(l, k) < 0)
            finish(k, NULL, "cannot send to the master");
        k = next;
    }
}

static void l_down(pg_shard_t *s, void *ud, const char *why)
{
    (void)s;
    rlink_t *l = ud;
    pg_log(PG_LOG_WARN, "router: link to %s:%d lost: %s", l->addr.host, l->addr.port, why);
    /* calls already sent were answered NULL by the link before this */
    call_t *k = l->wait;
    l->wait = NULL;
    l->wait_tail = &l->wait;
    pg_router_t *r = l->r;
    rlink_drop(l);
    while (k != NULL) {
        call_t *next = k->next;
        finish(k, NULL, "master unreachable");
        k = next;
    }
    pg_cluster_refresh(r->map);
}

static void l_message(pg_shard_t *s, void *ud, const char *ch, size_t clen,
                      const char *p, size_t plen)
{
    (void)s; (void)ud; (void)ch; (void)clen; (void)p; (void)plen;
}

static const pg_shard_cbs_t link_cbs = { .up = l_up, .down = l_down, .message = l_message };

static rlink_t *rlink_get(pg_router_t *r, const pg_hostport_t *addr)
{
    for (rlink_t *l = r->links; l != NULL; l = l->next)
        if (l->addr.port == addr->port && strcmp(l->addr.host, addr->host) == 0)
            return l;
    rlink_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->r = r;
    l->addr = *addr;
    l->wait_tail = &l->wait;
    l->s = pg_shard_new(r->loop, addr->host, addr->port, r->user, r->password, &link_cbs, l);
    if (l->s == NULL || pg_shard_connect(l->s, r->timeout_ms) < 0) {
        pg_shard_free(l->s);
        free(l);
        return NULL;
    }
    l->next = r->links;
    r->links = l;
    return l;
}

static void reply_cb(pg_shard_t *s, void *arg, const struct redisReply *reply)
{
    call_t *k = arg;
    const redisReply *rr = (const redisReply *)reply;
    if (rr == NULL) {
        finish(k, NULL, "connection lost before the answer");
        return;
    }
    unsigned slot;
    pg_hostport_t to;
    pg_slot_redirect_t kind = PG_SLOT_NOT_REDIRECT;
    if (rr->type == REDIS_REPLY_ERROR && k->redirects < MAX_REDIRECTS)
        kind = pg_slot_parse_redirect(rr->str, rr->len, &slot, &to);
    if (kind == PG_SLOT_NOT_REDIRECT) {
        finish(k, rr, NULL);
        return;
    }
    k->redirects++;
    if (to.host[0] == '\0') /* Redis 7: the host this link reached */
        memcpy(to.host, pg_shard_host(s), strlen(pg_shard_host(s)) + 1);
    if (kind == PG_SLOT_MOVED)
        pg_cluster_refresh(k->r->map); /* the map is stale */
    k->asking = kind == PG_SLOT_ASK;
    rlink_t *l = rlink_get(k->r, &to);
    if (l == NULL) {
        finish(k, NULL, "cannot reach the master a redirection named");
        return;
    }
    send_call(l, k);
}

pg_router_t *pg_router_new(uv_loop_t *loop, pg_cluster_t *map, const pg_router_cfg_t *cfg)
{
    if (loop == NULL || map == NULL || cfg == NULL)
        return NULL;
    pg_router_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->map = map;
    r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
    r->all_loaded = cfg->all_loaded;
    r->ud = cfg->ud;
    if ((cfg->user != NULL && (r->user = strdup(cfg->user)) == NULL) ||
        (cfg->password != NULL && (r->password = strdup(cfg->password)) == NULL))
        goto err;
    if (cfg->library != NULL) {
        r->lib = malloc(cfg->library_len + 1);
        if (r->lib == NULL)
            goto err;
        memcpy(r->lib, cfg->library, cfg->library_len);
        r->lib[cfg->library_len] = '\0';
        r->lib_len = cfg->library_len;
    }
    return r;
err:
    free(r->user);
    free(r->password);
    free(r);
    return NULL;
}

int pg_router_call(pg_router_t *r, const char *key, size_t keylen, int argc,
                   const char **argv, const size_t *argvlen, pg_router_cb cb, void *arg)
{
    if (r == NULL || key == NULL || argc < 1 || argv == NULL || argvlen == NULL || cb == NULL)
        return -1;
    const pg_slot_map_t *m = pg_cluster_map(r->map);
    const pg_hostport_t *owner = m ? pg_slot_map_owner(m, pg_slot_of_key(key, keylen)) : NULL;
    if (owner == NULL)
        return -1;
    /* the call, its argv pointers, lengths and bytes in one allocation */
    size_t bytes = sizeof(call_t) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++)
        bytes += argvlen[i] + 1;
    call_t *k = calloc(1, bytes);
    if (k == NULL)
        return -1;
    k->r = r;
    k->cb = cb;
    k->arg = arg;
    k->argc = argc;
    k->argv = (char **)(k + 1);
    k->argvlen = (size_t *)(k->argv + argc);
    char *p = (char *)(k->argvlen + argc);
    for (int i = 0; i < argc; i++) {
        k->argv[i] = p;
        k->argvlen[i] = argvlen[i];
        memcpy(p, argv[i], argvlen[i]);
        p[argvlen[i]] = '\0';
        p += argvlen[i] + 1;
    }
    rlink_t *l = rlink_get(r, owner);
    if (l == NULL || (l->up && send_now(l, k) < 0)) {
        free(k);
        return -1;
    }
    if (!l->up) {
        *l->wait_tail = k;
        l->wait_tail = &k->next;
    }
    k->all_next = r->calls;
    if (r->calls)
        r->calls->all_prev = k;
    r->calls = k;
    r->pending++;
    return 0;
}

int pg_router_loaded(pg_router_t *r)
{
    const pg_slot_map_t *m = r != NULL ? pg_cluster_map(r->map) : NULL;
    if (m == NULL || m->nshards == 0)
        return 0;
    int all = 1;
    for (size_t i = 0; i < m->nshards; i++) {
        rlink_t *l = rlink_get(r, &m->shards[i]);   /* opens a missing one */
        if (l == NULL || (r->lib != NULL && !l->loaded) || !l->up)
            all = 0;
    }
    return all;
}

size_t pg_router_pending(const pg_router_t *r)
{
    return r->pending;
}

void pg_router_free(pg_router_t *r)
{
    if (r == NULL)
        return;
    /* the links first: a freed link calls nothing back */
    while (r->links != NULL) {
        rlink_t *l = r->links;
        r->links = l->next;
        pg_shard_free(l->s);
        free(l);
    }
    while (r->calls != NULL)
        finish(r->calls, NULL, "router closed");
    free(r->user);
    free(r->password);
    free(r->lib);
    free(r);
}
