/* subscriber.c - the subscriber role of a pg_link_t. See subscriber.h.
 *
 * The link keeps its own table of names, separate from the hub's channels,
 * because a channel can leave the hub while its UNSUBSCRIBE is still in
 * flight. A name never has a SUBSCRIBE and an UNSUBSCRIBE in flight at once:
 * hiredis 0.14 drops its callback for a channel when an "unsubscribe" reply
 * arrives, which would silently orphan a SUBSCRIBE sent just after it. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <uthash.h>

#include "subscriber.h"
#include "redis_link.h"
#include "node.h"
#include "commands.h"
#include "broker.h"
#include "pg_log.h"
#include "pg_msg.h"
#include "pg_util.h"

#define BATCH_MAX 512   /* channels per (UN)SUBSCRIBE command */

/* A channel's state on this link: what the hub wants, what Redis has. */
typedef struct rchan {
    UT_hash_handle hh;
    char          *name;      /* without the prefix */
    unsigned char  want;      /* the hub has it */
    unsigned char  have;      /* Redis confirmed SUBSCRIBE on this connection */
    unsigned char  inflight;  /* a (UN)SUBSCRIBE for it awaits its reply */
} rchan_t;

/* Pub/sub liveness. A subscriber connection can look healthy while Redis
 * no longer delivers to it (a failover that kept the TCP session, a proxy
 * in between). When it has been quiet for a ping interval, the node
 * PUBLISHes a nonce to its own _probe channel through the command link and
 * drops the subscriber if the nonce does not come back in time; the
 * reconnect then re-subscribes and replays history. */
#define PROBE_TIMEOUT_MS 5000
/* A (UN)SUBSCRIBE batch unanswered this long means the link is stuck: drop
 * it, and the reconnect subscribes everything again. */
#define BATCH_TIMEOUT_MS 5000

static pg_subscriber_hooks_t hooks;
static pg_link_t    sub;
static pg_timer_t   probe_timer;  /* on the node's wheel: probe_arm says when */
static char         probe_chan[96];   /* "_probe.<node-id>" */
static char         probe_pattern[256]; /* prefix + probe_chan, glob-escaped */
static char         control_pattern[256]; /* prefix + "_control", glob-escaped */
static uint64_t     oldest_batch_ms;  /* when the oldest unanswered batch went out */
static uint64_t     last_rx_ms;       /* last reply of any kind on the link */
static uint64_t     probe_sent_ms;    /* 0 = no probe outstanding */
static uint64_t     probe_nonce;
static rchan_t      *rchans;
static unsigned     ninflight;
static int          dirty;
static uv_prepare_t flush_prep;

/* The probe timer fires within a second from now (a wait has started). */
static void probe_soon(void)
{
    uint64_t at = pg_node_second(pg_node_tick() + 1);
    if (!pg_timer_armed(&probe_timer) || probe_timer.due > at)
        pg_wheel_arm(&pg_node.wheel, &probe_timer, at);
}

static rchan_t *rchan_get(const char *name, int create)
{
    rchan_t *e = NULL;
    HASH_FIND_STR(rchans, name, e);
    if (e == NULL && create) {
        if ((e = calloc(1, sizeof(*e))) == NULL || (e->name = strdup(name)) == NULL) {
            free(e);
            return NULL;
        }
        HASH_ADD_KEYPTR(hh, rchans, e->name, strlen(e->name), e);
    }
    return e;
}

static void rchan_maybe_free(rchan_t *e)
{
    if (!e->want && !e->have && !e->inflight) {
        HASH_DEL(rchans, e);
        free(e->name);
        free(e);
    }
}

void pg_subscriber_want(const char *name, int on)
{
    if (pg_broker != NULL) {
        pg_broker->want(name, on);
        return;
    }
    rchan_t *e = rchan_get(name, on);
    if (e == NULL) {
        if (on)
            pg_log(PG_LOG_ERROR, "out of memory tracking channel %s", name);
        return;
    }
    e->want = (unsigned char)on;
    dirty = 1;
    rchan_maybe_free(e);
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
    rchan_t *e, *tmp;

    HASH_ITER(hh, rchans, e, tmp) {
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
        if (ninflight++ == 0) {
            oldest_batch_ms = pg_mono_ms();
            probe_soon();   /* its timeout is watched once a second */
        }
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

void pg_subscriber_deliver(const pg_subscriber_hooks_t *h, const char *chan,
                           const char *payload, size_t len)
{
    if (h->message == NULL)
        return;
    int err = 0;
    pg_node.metrics.messages_received_total++;
    pg_msg_t *m = pg_msg_from_payload(chan, payload, len, pg_node.cfg.max_message_bytes, &err);
    if (m == NULL) {
        pg_node.metrics.messages_dropped_total++;
        pg_log(PG_LOG_WARN, "dropped a message on %s: %s (%zu bytes)", chan,
               err == PG_MSG_E_TOO_BIG ? "over --max-message-bytes" : "out of memory", len);
        return;
    }
    h->message(m);
    pg_msg_unref(&m);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)ac;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        /* hiredis cannot tell which (UN)SUBSCRIBE this answers, so the
         * channels it left in flight would stay stuck: start over. */
        link_log(PG_LOG_ERROR, &sub, "Redis refused a subscription: %s", reply->str);
        pg_link_fail(&sub, "a (P)SUBSCRIBE failed");
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const char *full = reply->element[1]->str;
    if (strcmp(kind, "pmessage") == 0) {
        /* the probe and the control channel: [pmessage, pattern, channel, payload] */
        uint64_t nonce;
        last_rx_ms = pg_mono_ms();
        if (reply->elements != 4 || reply->element[3]->type != REDIS_REPLY_STRING)
            return;
        if (strcmp(full, control_pattern) == 0) {
            if (hooks.order != NULL)
                hooks.order(reply->element[3]->str, reply->element[3]->len);
            return;
        }
        if (pg_atou64(reply->element[3]->str, reply->element[3]->len, &nonce) == 0 &&
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
            pg_subscriber_deliver(&hooks, name, reply->element[2]->str, reply->element[2]->len);
        return;
    }
    int is_sub = strcmp(kind, "subscribe") == 0;
    if (!is_sub && strcmp(kind, "unsubscribe") != 0)
        return;
    rchan_t *e = rchan_get(name, 0);
    if (e == NULL)
        return;
    if (e->inflight) {
        e->inflight = 0;
        ninflight--;
    }
    e->have = (unsigned char)is_sub;
    if (e->want != e->have)
        dirty = 1;          /* changed its mind meanwhile: next batch fixes it */
    rchan_maybe_free(e);
    if (is_sub && hooks.subscribed != NULL)
        hooks.subscribed();
    if (sub.state == PG_LINK_SUBSCRIBING && ninflight == 0 && !dirty)
        pg_link_ready(&sub);
}

static void sub_setup(pg_link_t *l)
{
    /* A new connection has no subscriptions: everything wanted goes out
     * again in the next batch. */
    rchan_t *e, *tmp;
    HASH_ITER(hh, rchans, e, tmp) {
        e->have = 0;
        e->inflight = 0;
        rchan_maybe_free(e);
    }
    ninflight = 0;
    dirty = 1;
    l->state = PG_LINK_SUBSCRIBING;
    /* The probe and control channels go in by PSUBSCRIBE: patterns do not
     * show in PUBSUB CHANNELS, which operators (and tests) read as "the
     * channels this node serves", and PUBLISH still counts them, so a
     * control function's answer is the number of nodes that got it. Sent
     * before the first SUBSCRIBE batch, so by the time the node is ready
     * Redis has both. */
    const char *argv[3] = { "PSUBSCRIBE", probe_pattern, control_pattern };
    size_t argvlen[3] = { 10, strlen(probe_pattern), strlen(control_pattern) };
    redisAsyncCommandArgv(l->ac, on_reply, NULL, 3, argv, argvlen);
    if (hooks.connecting != NULL)
        hooks.connecting(l->connects > 0);
}

static void probe_published(void *arg, int ok)
{
    (void)arg;
    if (!ok)
        probe_sent_ms = 0;   /* the command link failed; it reconnects itself */
}

/* Both timeouts of probe_cb mean "Redis did not answer". A node whose loop
 * is behind (a reconnect storm: one iteration over thousands of sockets)
 * runs that timer before it reads the answers already waiting on the
 * socket, and dropping the link then made every channel subscribe and read
 * its history again (10k extra reads in a 10k-client storm). Bytes waiting
 * to be read are an answer: not stuck, just behind. Asked only when a
 * timeout is about to fire, not every second. */
static int answers_waiting(void)
{
    int unread = 0;
    return sub.ac != NULL && ioctl(sub.ac->c.fd, FIONREAD, &unread) == 0 && unread > 0;
}

static void probe_check(void)
{
    uint64_t now = pg_mono_ms();
    if (ninflight > 0 && sub.state >= PG_LINK_SUBSCRIBING &&
        now - oldest_batch_ms > BATCH_TIMEOUT_MS && !answers_waiting()) {
        pg_link_fail(&sub, "(UN)SUBSCRIBE unanswered");
        return;
    }
    if (sub.state != PG_LINK_READY)
        return;
    if (probe_sent_ms != 0) {
        if (now - probe_sent_ms > PROBE_TIMEOUT_MS && !answers_waiting()) {
            probe_sent_ms = 0;
            pg_link_fail(&sub, "liveness probe did not come back");
        }
        return;
    }
    if (now - last_rx_ms < pg_node.cfg.ping_interval * 1000ull)
        return;
    char payload[24];
    size_t n = pg_u64toa(++probe_nonce, payload);
    if (pg_commands_raw_publish(probe_chan, payload, n, probe_published, NULL) == 0)
        probe_sent_ms = now;
}

/* When probe_check can next act, on whole seconds like the keepalives (a
 * uv timer of its own woke the node a second time). Once a second while
 * something is awaited (a batch, a probe) or the link is not ready; while
 * it is ready and calm, only when it will have been quiet for a ping
 * interval. An idle node is then not woken every second for a check with
 * nothing to do (issue #15); whatever starts a wait calls probe_soon. */
static void probe_arm(void)
{
    uint64_t at = pg_node_tick() + 1;
    if (ninflight == 0 && probe_sent_ms == 0 && sub.state == PG_LINK_READY) {
        uint64_t quiet = (last_rx_ms + pg_node.cfg.ping_interval * 1000ull) /
                         (1000 / PG_TICKS_PER_SEC);
        if (quiet > at)
            at = quiet;
    }
    pg_wheel_arm(&pg_node.wheel, &probe_timer, pg_node_second(at));
}

static void probe_cb(pg_timer_t *t)
{
    (void)t;
    probe_check();
    probe_arm();
}

static void sub_ready(pg_link_t *l)
{
    /* Redis is back: the command link should not sit out its backoff */
    pg_commands_hurry();
    last_rx_ms = pg_mono_ms();
    probe_sent_ms = 0;
    pg_node.metrics.redis_connected = 1;
    if (hooks.ready != NULL)
        hooks.ready(l->connects > 1);
}

static void sub_down(pg_link_t *l)
{
    (void)l;
    pg_node.metrics.redis_connected = 0;
    if (hooks.down != NULL)
        hooks.down();
}

/* prefix + name, glob-escaped, so the pattern matches only itself. */
static void exact_pattern(char *out, size_t outlen, const char *name)
{
    char full[256];
    size_t o = 0;
    snprintf(full, sizeof(full), "%s%s", pg_node.cfg.prefix, name);
    for (const char *p = full; *p && o + 2 < outlen; p++) {
        if (strchr("*?[]\\^", *p))
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
}

int pg_subscriber_start(const pg_subscriber_hooks_t *h)
{
    hooks = *h;
    sub.role = "subscriber";
    sub.setup = sub_setup;
    sub.on_ready = sub_ready;
    sub.on_down = sub_down;
    sub.select_db = 0;   /* pub/sub ignores the database */
    if (pg_link_init(&sub) != 0 || uv_prepare_init(pg_node.loop, &flush_prep) != 0)
        return -1;
    uv_prepare_start(&flush_prep, flush_cb);
    snprintf(probe_chan, sizeof(probe_chan), "_probe.%s", pg_node.cfg.node_id);
    exact_pattern(probe_pattern, sizeof(probe_pattern), probe_chan);
    exact_pattern(control_pattern, sizeof(control_pattern), "_control");
    probe_timer.cb = probe_cb;
    probe_arm();
    pg_link_start(&sub);
    return 0;
}

void pg_subscriber_stop(void)
{
    pg_link_stop(&sub);
    uv_prepare_stop(&flush_prep);
    uv_close((uv_handle_t *)&flush_prep, NULL);
    pg_wheel_cancel(&pg_node.wheel, &probe_timer);
    rchan_t *e, *tmp;
    HASH_ITER(hh, rchans, e, tmp) {
        HASH_DEL(rchans, e);
        free(e->name);
        free(e);
    }
}

int pg_subscriber_ready(void)
{
    if (pg_broker != NULL)
        return pg_broker->sub_ready();
    return sub.state == PG_LINK_READY;
}

int pg_subscriber_has(const char *name)
{
    if (pg_broker != NULL)
        return pg_broker->has(name);
    if (sub.state != PG_LINK_READY && sub.state != PG_LINK_SUBSCRIBING)
        return 0;
    /* Not while an UNSUBSCRIBE is in flight (have and inflight: never a
     * SUBSCRIBE then). Redis may have done it already, and a history read
     * issued now could run before a message that no subscription of ours
     * will see either: that message would be lost to the resumer. The
     * channel's next SUBSCRIBE is confirmed after the UNSUBSCRIBE, and
     * kicks the read. */
    rchan_t *e = rchan_get(name, 0);
    return e != NULL && e->have && !e->inflight;
}
