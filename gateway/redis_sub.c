/* redis_sub.c - the subscriber role of a pg_link_t. See redis_sub.h.
 *
 * The link keeps its own table of names, separate from the hub's channels,
 * because a channel can leave the hub while its UNSUBSCRIBE is still in
 * flight. A name never has a SUBSCRIBE and an UNSUBSCRIBE in flight at once:
 * hiredis 0.14 drops its callback for a channel when an "unsubscribe" reply
 * arrives, which would silently orphan a SUBSCRIBE sent just after it. */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "redis_sub.h"
#include "redis_link.h"
#include "node.h"
#include "hub.h"
#include "recovery.h"
#include "redis_cmd.h"
#include "pg_log.h"
#include "pg_msg.h"
#include "pg_util.h"

#define BATCH_MAX 512   /* channels per (UN)SUBSCRIBE command */

typedef struct rsub {
    UT_hash_handle hh;
    char          *name;      /* without the prefix */
    unsigned char  want;      /* the hub has it */
    unsigned char  have;      /* Redis confirmed SUBSCRIBE on this connection */
    unsigned char  inflight;  /* a (UN)SUBSCRIBE for it awaits its reply */
} rsub_t;

/* Pub/sub liveness. A subscriber connection can look healthy while Redis
 * no longer delivers to it (a failover that kept the TCP session, a proxy
 * in between). When it has been quiet for a ping interval, the node
 * PUBLISHes a nonce to its own _probe channel through the command link and
 * drops the subscriber if the nonce does not come back in time; the
 * reconnect then re-subscribes and replays history. */
#define PROBE_TIMEOUT_MS 5000

static pg_link_t    sub;
static uv_timer_t   probe_timer;
static char         probe_chan[96];   /* "_probe.<node-id>" */
static char         probe_pattern[256]; /* prefix + probe_chan, glob-escaped */
static uint64_t     last_rx_ms;       /* last reply of any kind on the link */
static uint64_t     probe_sent_ms;    /* 0 = no probe outstanding */
static uint64_t     probe_nonce;
static rsub_t      *rsubs;
static unsigned     ninflight;
static int          dirty;
static uv_prepare_t flush_prep;

static rsub_t *rsub_get(const char *name, int create)
{
    rsub_t *e = NULL;
    HASH_FIND_STR(rsubs, name, e);
    if (e == NULL && create) {
        if ((e = calloc(1, sizeof(*e))) == NULL || (e->name = strdup(name)) == NULL) {
            free(e);
            return NULL;
        }
        HASH_ADD_KEYPTR(hh, rsubs, e->name, strlen(e->name), e);
    }
    return e;
}

static void rsub_maybe_free(rsub_t *e)
{
    if (!e->want && !e->have && !e->inflight) {
        HASH_DEL(rsubs, e);
        free(e->name);
        free(e);
    }
}

void pg_link_want(const char *name, int on)
{
    rsub_t *e = rsub_get(name, on);
    if (e == NULL) {
        if (on)
            pg_log(PG_LOG_ERROR, "out of memory tracking channel %s", name);
        return;
    }
    e->want = (unsigned char)on;
    dirty = 1;
    rsub_maybe_free(e);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv);

/* Send one batched command for every entry that needs it. */
static void send_batch(const char *verb, int subscribe)
{
    const char *argv[BATCH_MAX + 1];
    size_t argvlen[BATCH_MAX + 1];
    char *names[BATCH_MAX];
    int n = 0;
    size_t plen = strlen(pg_node.cfg.prefix);
    rsub_t *e, *tmp;

    HASH_ITER(hh, rsubs, e, tmp) {
        if (e->inflight || e->want == e->have)
            continue;
        if ((e->want != 0) != subscribe)
            continue;
        size_t nlen = strlen(e->name);
        char *full = malloc(plen + nlen + 1);
        if (full == NULL)
            break;   /* stays dirty-worthy; retried next iteration */
        memcpy(full, pg_node.cfg.prefix, plen);
        memcpy(full + plen, e->name, nlen + 1);
        names[n] = full;
        argv[n + 1] = full;
        argvlen[n + 1] = plen + nlen;
        e->inflight = 1;
        ninflight++;
        if (++n == BATCH_MAX) {
            argv[0] = verb;
            argvlen[0] = strlen(verb);
            redisAsyncCommandArgv(sub.ac, on_reply, NULL, n + 1, argv, argvlen);
            for (int i = 0; i < n; i++)
                free(names[i]);
            n = 0;
        }
    }
    if (n > 0) {
        argv[0] = verb;
        argvlen[0] = strlen(verb);
        redisAsyncCommandArgv(sub.ac, on_reply, NULL, n + 1, argv, argvlen);
        for (int i = 0; i < n; i++)
            free(names[i]);
    }
}

static void flush_cb(uv_prepare_t *h)
{
    (void)h;
    if (!dirty || sub.ac == NULL || sub.state < PG_LINK_SUBSCRIBING)
        return;
    dirty = 0;
    send_batch("SUBSCRIBE", 1);
    send_batch("UNSUBSCRIBE", 0);
    if (sub.state == PG_LINK_SUBSCRIBING && ninflight == 0)
        pg_link_ready(&sub);
}

static void on_message(const char *chan, const char *payload, size_t len)
{
    int err = 0;
    pg_node.metrics.messages_received_total++;
    pg_msg_t *m = pg_msg_from_payload(chan, payload, len, pg_node.cfg.max_message_bytes, &err);
    if (m == NULL) {
        pg_node.metrics.messages_dropped_total++;
        pg_log(PG_LOG_WARN, "dropped a message on %s: %s (%zu bytes)", chan,
               err == PG_MSG_E_TOO_BIG ? "over --max-message-bytes" : "out of memory", len);
        return;
    }
    pg_hub_dispatch(m);
    pg_msg_unref(&m);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)ac;
    (void)priv;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const char *full = reply->element[1]->str;
    if (strcmp(kind, "pmessage") == 0) {
        /* only the probe uses a pattern: [pmessage, pattern, channel, nonce] */
        uint64_t nonce;
        last_rx_ms = pg_mono_ms();
        if (reply->elements == 4 && reply->element[3]->type == REDIS_REPLY_STRING &&
            pg_atou64(reply->element[3]->str, reply->element[3]->len, &nonce) == 0 &&
            nonce == probe_nonce)
            probe_sent_ms = 0;
        return;
    }
    size_t plen = strlen(pg_node.cfg.prefix);
    if (strncmp(full, pg_node.cfg.prefix, plen) != 0)
        return;
    const char *name = full + plen;

    last_rx_ms = pg_mono_ms();
    if (strcmp(kind, "message") == 0) {
        if (reply->element[2]->type == REDIS_REPLY_STRING)
            on_message(name, reply->element[2]->str, reply->element[2]->len);
        return;
    }
    int is_sub = strcmp(kind, "subscribe") == 0;
    if (!is_sub && strcmp(kind, "unsubscribe") != 0)
        return;
    rsub_t *e = rsub_get(name, 0);
    if (e == NULL)
        return;
    if (e->inflight) {
        e->inflight = 0;
        ninflight--;
    }
    e->have = (unsigned char)is_sub;
    if (e->want != e->have)
        dirty = 1;          /* changed its mind meanwhile: next batch fixes it */
    rsub_maybe_free(e);
    if (is_sub)
        pg_recovery_kick();
    if (sub.state == PG_LINK_SUBSCRIBING && ninflight == 0 && !dirty)
        pg_link_ready(&sub);
}

static void sub_setup(pg_link_t *l)
{
    /* A new connection has no subscriptions: everything wanted goes out
     * again in the next batch. */
    rsub_t *e, *tmp;
    HASH_ITER(hh, rsubs, e, tmp) {
        e->have = 0;
        e->inflight = 0;
        rsub_maybe_free(e);
    }
    ninflight = 0;
    dirty = 1;
    l->state = PG_LINK_SUBSCRIBING;
    /* The probe channel goes in by PSUBSCRIBE: patterns do not show in
     * PUBSUB CHANNELS, which operators (and tests) read as "the channels
     * this node serves". */
    const char *argv[2] = { "PSUBSCRIBE", probe_pattern };
    size_t argvlen[2] = { 10, strlen(probe_pattern) };
    redisAsyncCommandArgv(l->ac, on_reply, NULL, 2, argv, argvlen);
    /* After a reconnect, hold live messages from the first confirmed
     * SUBSCRIBE on, until the history replay has delivered what came before
     * them: otherwise a newer live message would go out first and the
     * per-subscription dedupe would then discard the older replayed ones. */
    if (l->connects > 0)
        pg_hub_hold();
}

static void probe_published(void *arg, int ok)
{
    (void)arg;
    if (!ok)
        probe_sent_ms = 0;   /* the command link failed; it reconnects itself */
}

static void probe_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = pg_mono_ms();
    if (sub.state != PG_LINK_READY)
        return;
    if (probe_sent_ms != 0) {
        if (now - probe_sent_ms > PROBE_TIMEOUT_MS) {
            probe_sent_ms = 0;
            pg_link_fail(&sub, "liveness probe did not come back");
        }
        return;
    }
    if (now - last_rx_ms < pg_node.cfg.ping_interval * 1000ull)
        return;
    char payload[24];
    size_t n = pg_u64toa(++probe_nonce, payload);
    if (pg_rcmd_raw_publish(probe_chan, payload, n, probe_published, NULL) == 0)
        probe_sent_ms = now;
}

static void sub_ready(pg_link_t *l)
{
    /* Redis is back: the command link should not sit out its backoff */
    pg_rcmd_hurry();
    last_rx_ms = pg_mono_ms();
    probe_sent_ms = 0;
    pg_node.metrics.redis_connected = 1;
    /* After a reconnect, what the channels missed is in the history. */
    if (l->connects > 1)
        pg_recovery_replay_all();
    pg_recovery_kick();
}

static void sub_down(pg_link_t *l)
{
    (void)l;
    pg_node.metrics.redis_connected = 0;
}

int pg_sub_start(void)
{
    sub.role = "subscriber";
    sub.setup = sub_setup;
    sub.on_ready = sub_ready;
    sub.on_down = sub_down;
    sub.select_db = 0;   /* pub/sub ignores the database */
    if (pg_link_init(&sub) != 0 || uv_prepare_init(pg_node.loop, &flush_prep) != 0 ||
        uv_timer_init(pg_node.loop, &probe_timer) != 0)
        return -1;
    uv_prepare_start(&flush_prep, flush_cb);
    snprintf(probe_chan, sizeof(probe_chan), "_probe.%s", pg_node.cfg.node_id);
    /* glob-escape prefix + channel so the pattern matches only itself */
    size_t o = 0;
    char full[sizeof(probe_pattern)];
    snprintf(full, sizeof(full), "%s%s", pg_node.cfg.prefix, probe_chan);
    for (const char *p = full; *p && o + 2 < sizeof(probe_pattern); p++) {
        if (strchr("*?[]\\^", *p))
            probe_pattern[o++] = '\\';
        probe_pattern[o++] = *p;
    }
    probe_pattern[o] = '\0';
    uv_timer_start(&probe_timer, probe_cb, 1000, 1000);
    pg_link_start(&sub);
    return 0;
}

void pg_sub_stop(void)
{
    pg_link_stop(&sub);
    uv_prepare_stop(&flush_prep);
    uv_close((uv_handle_t *)&flush_prep, NULL);
    uv_timer_stop(&probe_timer);
    uv_close((uv_handle_t *)&probe_timer, NULL);
    rsub_t *e, *tmp;
    HASH_ITER(hh, rsubs, e, tmp) {
        HASH_DEL(rsubs, e);
        free(e->name);
        free(e);
    }
}

int pg_sub_ready(void)
{
    return sub.state == PG_LINK_READY;
}

int pg_sub_is_subscribed(const char *name)
{
    if (sub.state != PG_LINK_READY && sub.state != PG_LINK_SUBSCRIBING)
        return 0;
    rsub_t *e = rsub_get(name, 0);
    return e != NULL && e->have;
}
