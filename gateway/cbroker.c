/* cbroker.c - the broker over a Redis Cluster. See cbroker.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cbroker.h"
#include "broker.h"
#include "cluster.h"
#include "commands.h"
#include "node.h"
#include "router.h"
#include "subscriber.h"
#include "pg_chan.h"
#include "pg_log.h"
#include "pg_slot.h"
#include "pg_util.h"

#define NAME_MAX_LEN 512   /* prefix (option-limited) + {channel} + suffix */
#define FCALL_MAXARGS 8
/* How long a stopping node waits for its last calls' answers (the one
 * Redis command link flushes its socket for up to 500 ms likewise). */
#define STOP_LINGER_MS 500

static pg_cluster_t          *sub;
static pg_router_t           *router;
static pg_subscriber_hooks_t  hooks;
static void                 (*cmd_ready_hook)(void);
static int                    ready;
static int                    libs_loaded;   /* the library reached every master once */
static int                    cmd_up;        /* commands_up ran since the map was last incomplete */
static int                    stopping;
static uv_timer_t             linger;
static uint64_t               linger_until;

/* "<prefix>{<name>}<suffix>": every cluster name of SPEC §10's table. */
static int tagged(char *out, const char *name, const char *suffix, size_t *len)
{
    int n = snprintf(out, NAME_MAX_LEN, "%s{%s}%s", pg_node.cfg.prefix, name, suffix);
    if (n < 0 || n >= NAME_MAX_LEN)
        return -1;
    *len = (size_t)n;
    return 0;
}

/* The pushgate name of a subscribed cluster channel "<prefix>{<name>}". */
static int untag(const char *ch, size_t len, char name[PG_CHAN_MAX + 1])
{
    size_t plen = strlen(pg_node.cfg.prefix);
    if (len < plen + 3 || memcmp(ch, pg_node.cfg.prefix, plen) != 0 || ch[plen] != '{' ||
        ch[len - 1] != '}' || len - plen - 2 > PG_CHAN_MAX)
        return -1;
    memcpy(name, ch + plen + 1, len - plen - 2);
    name[len - plen - 2] = '\0';
    return 0;
}

/* --- the subscriber side ----------------------------------------------------- */

static void on_message(void *ud, const char *channel, size_t clen,
                       const char *payload, size_t plen)
{
    char name[PG_CHAN_MAX + 1];
    (void)ud;
    if (stopping || untag(channel, clen, name) != 0)
        return;
    if (strcmp(name, "_control") == 0) {
        if (hooks.order != NULL)
            hooks.order(payload, plen);
        return;
    }
    pg_subscriber_deliver(&hooks, name, payload, plen);
}

static void on_subscribed(void *ud, const char *channel, size_t clen, int resync)
{
    char name[PG_CHAN_MAX + 1];
    (void)ud;
    if (stopping || untag(channel, clen, name) != 0)
        return;
    /* Confirmed: what is published on it from now on reaches us, so a
     * replay read now leaves no gap (recovery.h) */
    if (resync && hooks.resync != NULL)
        hooks.resync(strcmp(name, "_control") == 0 ? NULL : name);
    if (hooks.subscribed != NULL)
        hooks.subscribed();
}

static void timed(void *arg, const struct redisReply *r, const char *err)
{
    (void)arg;
    (void)err;
    pg_commands_time_reply(r);
}

static int cmd_ready(void);

/* The command side became usable (the map complete, and at start the
 * library on every master): learn Redis's clock and tell the node, which
 * then reads the revocations and writes presence. From on_ready, or at
 * start from the router once the last master has loaded the library,
 * whichever comes last. */
static void commands_up(void)
{
    if (!cmd_ready())
        return;
    libs_loaded = 1;
    cmd_up = 1;
    /* Ids follow Redis's clock (SPEC §3): how far ours is from it, for
     * pg_hub_id_floor(), as the command link learns it on one Redis. Asked
     * of the master owning {_control}; masters share a clock within NTP's
     * error, which the floor's margin covers. */
    pg_router_call(router, "{_control}", 10, 1, (const char *[]){ "TIME" },
                   (const size_t[]){ 4 }, timed, NULL);
    if (cmd_ready_hook != NULL)
        cmd_ready_hook();
}

static void router_loaded(void *ud)
{
    (void)ud;
    if (ready && !libs_loaded)
        commands_up();
}

static void on_ready(void *ud, int r)
{
    (void)ud;
    if (stopping)
        return;
    ready = r;
    pg_node.metrics.redis_connected = r;
    if (!r) {
        /* Every new channel makes the subscriber unready until Redis
         * confirms it: a user connecting is not the command side going
         * away. Only a map missing slots is; then the node reads the
         * revocations and writes its presence again once it is back. */
        const pg_slot_map_t *m = sub != NULL ? pg_cluster_map(sub) : NULL;
        if (m == NULL || !pg_slot_map_complete(m))
            cmd_up = 0;
        return;
    }
    if (!cmd_up)
        commands_up();
    /* never a node-wide replay (reconnect 0): channels that lost their
     * subscription are replayed one by one, by resync */
    if (hooks.ready != NULL)
        hooks.ready(0);
}

static int sub_ready(void)
{
    return sub != NULL && ready;
}

static void want(const char *name, int on)
{
    char full[NAME_MAX_LEN];
    size_t len;
    if (sub == NULL || tagged(full, name, "", &len) != 0)
        return;
    if (on && pg_cluster_subscribe(sub, full, len) != 0)
        pg_log(PG_LOG_ERROR, "out of memory tracking channel %s", name);
    else if (!on)
        pg_cluster_unsubscribe(sub, full, len);
}

static int has(const char *name)
{
    char full[NAME_MAX_LEN];
    size_t len;
    return sub != NULL && tagged(full, name, "", &len) == 0 && pg_cluster_has(sub, full, len);
}

/* --- the command side: one-key calls routed by their key -------------------- */

static int cmd_ready(void)
{
    if (stopping)
        return 0;
    const pg_slot_map_t *m = sub != NULL ? pg_cluster_map(sub) : NULL;
    /* Ready at start only once every master has the library: a backend's
     * one-key FCALL may go to a master this node has sent nothing to. Not
     * after: a promoted replica has it already (functions replicate), a
     * master that restarted empty gets it before any call of ours, and one
     * master down must not stop the calls to the others. */
    return router != NULL && m != NULL && pg_slot_map_complete(m) &&
           (libs_loaded || pg_router_loaded(router));
}

typedef struct req {
    union {
        pg_publish_cb   pub;
        pg_history_cb   hist;
        pg_raw_cb       raw;
        pg_fcall_int_cb num;
        pg_hash_cb      hash;
    } cb;
    void *arg;
    char  channel[PG_CHAN_MAX + 1];
} req_t;

static int call(const char *key, size_t keylen, int argc, const char **argv,
                const size_t *lens, pg_router_cb done, req_t *q)
{
    if (!cmd_ready() ||
        pg_router_call(router, key, keylen, argc, argv, lens, done, q) != 0) {
        free(q);
        return -1;
    }
    return 0;
}

static req_t *req_new(void *arg, const char *channel)
{
    req_t *q = calloc(1, sizeof(*q));
    if (q != NULL) {
        q->arg = arg;
        if (channel != NULL)
            snprintf(q->channel, sizeof(q->channel), "%s", channel);
    }
    return q;
}

static void published(void *arg, const struct redisReply *r, const char *err)
{
    req_t *q = arg;
    pg_commands_publish_reply(r, err, q->cb.pub, q->arg);
    free(q);
}

static int publish(const char *channel, const char *payload, size_t len,
                   pg_publish_cb cb, void *arg)
{
    char key[NAME_MAX_LEN];
    size_t klen;
    req_t *q = req_new(arg, NULL);
    if (q == NULL || tagged(key, channel, ":history", &klen) != 0) {
        free(q);
        return -1;
    }
    q->cb.pub = cb;
    const char *argv[] = { "FCALL", pg_node.fn_publish, "1", key, channel, payload };
    const size_t lens[] = { 5, strlen(pg_node.fn_publish), 1, klen, strlen(channel), len };
    return call(key, klen, 6, argv, lens, published, q);
}

static void history_read(void *arg, const struct redisReply *reply, const char *err)
{
    req_t *q = arg;
    (void)err;
    pg_commands_history_reply(q->channel, reply, q->cb.hist, q->arg);
    free(q);
}

static int history(const char *channel, uint64_t since, pg_history_cb cb, void *arg)
{
    char key[NAME_MAX_LEN], sbuf[24];
    size_t klen, slen = pg_u64toa(since, sbuf);
    req_t *q = req_new(arg, channel);
    if (q == NULL || tagged(key, channel, ":history", &klen) != 0) {
        free(q);
        return -1;
    }
    q->cb.hist = cb;
    const char *argv[] = { "FCALL_RO", pg_node.fn_history, "1", key, channel, sbuf };
    const size_t lens[] = { 8, strlen(pg_node.fn_history), 1, klen, strlen(channel), slen };
    return call(key, klen, 6, argv, lens, history_read, q);
}

static void raw_published(void *arg, const struct redisReply *r, const char *err)
{
    const redisReply *reply = (const redisReply *)r;
    req_t *q = arg;
    (void)err;
    q->cb.raw(q->arg, reply != NULL && reply->type == REDIS_REPLY_INTEGER);
    free(q);
}

static int raw_publish(const char *channel, const char *payload, size_t len,
                       pg_raw_cb cb, void *arg)
{
    char key[NAME_MAX_LEN];
    size_t klen;
    req_t *q = req_new(arg, NULL);
    if (q == NULL || tagged(key, channel, "", &klen) != 0) {
        free(q);
        return -1;
    }
    q->cb.raw = cb;
    const char *argv[] = { "SPUBLISH", key, payload };
    const size_t lens[] = { 8, klen, len };
    return call(key, klen, 3, argv, lens, raw_published, q);
}

static void counted(void *arg, const struct redisReply *r, const char *err)
{
    req_t *q = arg;
    pg_commands_int_reply(r, err, q->cb.num, q->arg);
    free(q);
}

/* The control functions, in their one-key form: routed to {_control}. */
static int fcall_int(const char *fn, int argc, const char **args, const size_t *alens,
                     pg_fcall_int_cb cb, void *arg)
{
    char key[NAME_MAX_LEN];
    size_t klen;
    const char *argv[FCALL_MAXARGS + 4];
    size_t lens[FCALL_MAXARGS + 4];
    req_t *q = argc <= FCALL_MAXARGS ? req_new(arg, NULL) : NULL;
    if (q == NULL || tagged(key, "_control", ":revoked", &klen) != 0) {
        free(q);
        return -1;
    }
    q->cb.num = cb;
    argv[0] = "FCALL"; lens[0] = 5;
    argv[1] = fn;      lens[1] = strlen(fn);
    argv[2] = "1";     lens[2] = 1;
    argv[3] = key;     lens[3] = klen;
    for (int i = 0; i < argc; i++) {
        argv[4 + i] = args[i];
        lens[4 + i] = alens[i];
    }
    return call(key, klen, argc + 4, argv, lens, counted, q);
}

static void hashed(void *arg, const struct redisReply *r, const char *err)
{
    req_t *q = arg;
    (void)err;
    pg_commands_hash_reply(r, q->cb.hash, q->arg);
    free(q);
}

/* Only the revocations are read as a hash (control.c): the node-wide
 * "revoked" is <prefix>{_control}:revoked in a cluster. */
static int hgetall(const char *key, pg_hash_cb cb, void *arg)
{
    char full[NAME_MAX_LEN];
    size_t klen;
    if (strcmp(key, "revoked") != 0 || tagged(full, "_control", ":revoked", &klen) != 0)
        return -1;
    req_t *q = req_new(arg, NULL);
    if (q == NULL)
        return -1;
    q->cb.hash = cb;
    const char *argv[] = { "HGETALL", full };
    const size_t lens[] = { 7, klen };
    return call(full, klen, 2, argv, lens, hashed, q);
}

/* An unkeyed command has no shard to go to: every caller names its key
 * (presence per channel, events on {_events}) through keyed_argv. */
static int any_argv(int argc, const char **argv, const size_t *lens, pg_reply_cb cb, void *arg)
{
    (void)argc; (void)argv; (void)lens; (void)cb; (void)arg;
    return -1;
}

typedef struct keyed_req {
    pg_reply_cb cb;   /* NULL: the caller wants no reply */
    void       *arg;
} keyed_req_t;

static void keyed_done(void *arg, const struct redisReply *r, const char *err)
{
    keyed_req_t *q = arg;
    (void)err;
    if (q->cb != NULL)
        q->cb(q->arg, r);
    free(q);
}

/* Pipelined behind whatever else goes to that master in this loop
 * iteration (the router's link writes once per iteration). */
static int keyed_argv(const char *key, size_t keylen, int argc, const char **argv,
                      const size_t *lens, pg_reply_cb cb, void *arg)
{
    keyed_req_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    q->cb = cb;
    q->arg = arg;
    if (!cmd_ready() ||
        pg_router_call(router, key, keylen, argc, argv, lens, keyed_done, q) != 0) {
        free(q);
        return -1;
    }
    return 0;
}

static const pg_broker_ops_t ops = {
    .sub_ready = sub_ready, .want = want, .has = has,
    .cmd_ready = cmd_ready, .publish = publish, .history = history,
    .raw_publish = raw_publish, .fcall_int = fcall_int, .hgetall = hgetall, .argv = any_argv,
    .keyed_argv = keyed_argv,
};

/* --- life ---------------------------------------------------------------------- */

int pg_cbroker_init(void)
{
    static const pg_cluster_cbs_t cbs = {
        .message = on_message, .subscribed = on_subscribed, .ready = on_ready,
    };
    const pg_url_t *u = &pg_node.cfg.redis;
    pg_cluster_cfg_t ccfg = {
        .seeds = u->hosts, .nseeds = u->nhosts,
        .user = u->user[0] ? u->user : NULL,
        .password = u->password[0] ? u->password : NULL,
        /* as the one-Redis subscriber's probe: quiet for a ping interval,
         * then 5 s to answer */
        .probe_ms = pg_node.cfg.ping_interval * 1000u,
        .probe_timeout_ms = 5000,
        /* a repair (one CLUSTER SLOTS) at least every 250 ms while
         * something is wrong: SPEC 10 wants the node at a promoted replica
         * within 2 s, and with a 1 s cap it came 1.0-1.2 s after the
         * promotion in 4 of 10 kills (scripts/cluster-bench.py kill), late
         * enough for a channel at 100 msg/s to have its first messages at
         * the new master trimmed from a 100-entry history. A map read at a
         * live master costs it one CLUSTER SLOTS. */
        .backoff_cap_ms = 250,
    };
    char full[NAME_MAX_LEN];
    size_t len, liblen;
    char *lib = pg_commands_render_library(&liblen);
    if (lib == NULL || (sub = pg_cluster_new(pg_node.loop, &ccfg, &cbs, NULL)) == NULL) {
        free(lib);
        pg_log(PG_LOG_ERROR, "cannot set up the cluster subscriber");
        return -1;
    }
    pg_router_cfg_t rcfg = {
        .user = ccfg.user, .password = ccfg.password, .library = lib, .library_len = liblen,
        .all_loaded = router_loaded,
    };
    router = pg_router_new(pg_node.loop, sub, &rcfg);
    free(lib);   /* the router keeps a copy */
    if (router == NULL) {
        pg_log(PG_LOG_ERROR, "cannot set up the cluster router");
        pg_cluster_free(sub);
        sub = NULL;
        return -1;
    }
    /* the orders' channel, always (SPEC §10: SPUBLISH counts every node) */
    if (tagged(full, "_control", "", &len) != 0 || pg_cluster_subscribe(sub, full, len) != 0)
        return -1;
    pg_broker = &ops;
    return 0;
}

int pg_cbroker_start(const pg_subscriber_hooks_t *h, void (*cmd_ready_cb)(void))
{
    hooks = *h;
    cmd_ready_hook = cmd_ready_cb;
    return pg_cluster_start(sub);
}

static void close_all(void)
{
    /* the router first: it reads the subscriber's map */
    pg_router_t *r = router;
    router = NULL;
    pg_router_free(r);
    pg_cluster_t *c = sub;
    sub = NULL;
    ready = 0;
    pg_cluster_free(c);
}

static void linger_cb(uv_timer_t *t)
{
    if (router != NULL && pg_router_pending(router) > 0 && pg_mono_ms() < linger_until)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    close_all();
}

void pg_cbroker_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    ready = 0;
    if (router == NULL || pg_router_pending(router) == 0 ||
        uv_timer_init(pg_node.loop, &linger) != 0) {
        close_all();
        return;
    }
    linger_until = pg_mono_ms() + STOP_LINGER_MS;
    uv_timer_start(&linger, linger_cb, 5, 5);
}
