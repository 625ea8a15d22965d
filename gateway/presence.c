/* presence.c - presence entries and join/leave. See presence.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <uthash.h>
#include <hiredis/hiredis.h>

#include "presence.h"
#include "commands.h"
#include "hub.h"
#include "node.h"
#include "subscriber.h"
#include "pg_buf.h"
#include "pg_chan.h"
#include "pg_log.h"
#include "pg_util.h"

/* A join or leave waits at most this long for the node's SUBSCRIBE of its
 * channel (see flush_pubs). */
#define PUB_WAIT_MS 2000

/* One FCALL carries at most this many changes, so that one script never
 * holds Redis for long (a mass disconnect of 10 000 goes out in 10). */
#define OPS_PER_CALL 1000

/* <prefix>{<channel>}:presence: a 64-byte prefix, a 128-byte channel */
#define NAME_BUF 256

/* This node's entries in one channel. Freed when the count drops to 0. */
typedef struct pchan {
    UT_hash_handle hh;
    unsigned       count;
    uint64_t       beat_due;   /* cluster: when C's next beat is due (mono ms) */
    char           name[];
} pchan_t;

/* A connection with at least one entry: when it first appeared (the
 * entries' "since", kept so that a rewrite does not move it). */
typedef struct pconn {
    UT_hash_handle hh;
    uint64_t       id;
    uint64_t       since_ms;
    unsigned       n;          /* its entries */
} pconn_t;

/* A change waiting for the end of the loop iteration. */
typedef struct op {
    char     kind;             /* '+' add, '-' remove, '!' remove the last here,
                                * 'R' (cluster) drop all of ours in chan first */
    char     conn[24];
    char    *chan;             /* owned */
    char    *value;            /* owned, '+' only */
    size_t   value_len;
} op_t;

/* A join or leave message to PUBLISH after the changes. */
typedef struct pub {
    char    *chan;
    char    *payload;
    size_t   len;
    uint64_t at_ms;            /* when it was queued */
} pub_t;

static pchan_t   *chans;
/* Cluster mode: channels whose entries in Redis may differ from ours (a
 * write lost with a link, a beat or update that found another count);
 * written again at the next flush with the link ready. */
static pchan_t   *dirty;
static int        cluster;
static pconn_t   *conns;
static op_t      *ops;
static size_t     nops, capops;
static pub_t     *pubs;
static size_t     npubs, cappubs;
static uv_prepare_t flush_prep;
static uv_timer_t   beat_timer;
static int        started;
static uint64_t   beat_every_ms;   /* --presence-ttl / 3 */
/* <prefix as identifier>presence_update and its kin (functions.lua) */
static char       fn_update[96], fn_beat[96], fn_reset[96];

/* --- which memberships have presence ---------------------------------------- */

static int is_topic_tracked(const char *ch)
{
    /* broadcast and every user channel stay out of topic presence: a join
     * per connection to everyone, or one user in another's list, is never
     * what a --presence-topics glob like "*" meant */
    if (strcmp(ch, "broadcast") == 0 || strncmp(ch, "user:", 5) == 0 || ch[0] == '_')
        return 0;
    return pg_node.cfg.presence_globs.n > 0 && pg_glob_list_match(&pg_node.cfg.presence_globs, ch);
}

static int tracked(const pg_conn_t *c, const char *ch)
{
    return pg_chan_is_user(ch, c->who.sub) || is_topic_tracked(ch);
}

/* --- the value and the messages --------------------------------------------- */

static void put_user(pg_buf_t *b, const pg_conn_t *c)
{
    if (c->who.sub)
        pg_buf_json_str(b, c->who.sub, strlen(c->who.sub));
    else
        pg_buf_puts(b, "null");
}

/* {"user":"42","node":"n","conn":"17","info":...,"since":ms}: "user" first,
 * functions.lua counts users by that. */
static char *entry_value(const pg_conn_t *c, uint64_t since_ms, size_t *len)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_puts(&b, "{\"user\":");
    put_user(&b, c);
    pg_buf_puts(&b, ",\"node\":");
    pg_buf_json_str(&b, pg_node.cfg.node_id, strlen(pg_node.cfg.node_id));
    pg_buf_printf(&b, ",\"conn\":\"%llu\",\"info\":%s,\"since\":%llu}", (unsigned long long)c->id,
                  c->who.info ? c->who.info : "null", (unsigned long long)since_ms);
    return pg_buf_steal(&b, len);
}

/* The live (never history-backed) envelope of a join or leave. */
static char *join_payload(const pg_conn_t *c, const char *event, size_t *len)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_printf(&b, "{\"event\":\"%s\",\"data\":{\"user\":", event);
    put_user(&b, c);
    pg_buf_puts(&b, ",\"node\":");
    pg_buf_json_str(&b, pg_node.cfg.node_id, strlen(pg_node.cfg.node_id));
    pg_buf_printf(&b, ",\"conn\":\"%llu\",\"info\":%s}}", (unsigned long long)c->id,
                  c->who.info ? c->who.info : "null");
    return pg_buf_steal(&b, len);
}

/* --- the queue --------------------------------------------------------------- */

static void drop_pubs(void);

static void op_free(op_t *o)
{
    free(o->chan);
    free(o->value);
}

static void mark_dirty(const char *chan);
static void flush(void);

static void drop_queue(void)
{
    for (size_t i = 0; i < nops; i++) {
        if (cluster)
            mark_dirty(ops[i].chan);
        op_free(&ops[i]);
    }
    nops = 0;
    drop_pubs();
}

static void drop_pubs(void)
{
    for (size_t i = 0; i < npubs; i++) {
        free(pubs[i].chan);
        free(pubs[i].payload);
    }
    npubs = 0;
}

static int push_op(char kind, const pg_conn_t *c, const char *chan, uint64_t since_ms)
{
    op_t *grown = pg_grow(ops, nops, &capops, sizeof(*grown), 64);
    if (grown == NULL)
        return -1;
    ops = grown;
    op_t *o = &ops[nops];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    pg_u64toa(c->id, o->conn);
    if ((o->chan = strdup(chan)) == NULL)
        return -1;
    if (kind == '+' && (o->value = entry_value(c, since_ms, &o->value_len)) == NULL) {
        free(o->chan);
        return -1;
    }
    nops++;
    return 0;
}

static void push_pub(const pg_conn_t *c, const char *chan, const char *event)
{
    pub_t *grown = pg_grow(pubs, npubs, &cappubs, sizeof(*grown), 16);
    if (grown == NULL)
        return;
    pubs = grown;
    pub_t *p = &pubs[npubs];
    if ((p->chan = strdup(chan)) == NULL)
        return;
    if ((p->payload = join_payload(c, event, &p->len)) == NULL) {
        free(p->chan);
        return;
    }
    p->at_ms = pg_mono_ms();
    npubs++;
}

static void published(void *arg, int ok)
{
    (void)arg;
    (void)ok;   /* best effort, like any live PUBLISH */
}

static void updated(void *arg, const struct redisReply *r)
{
    (void)arg;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        pg_log(PG_LOG_WARN, "presence update refused by Redis: %s", r->str);
}

/* 1 when an earlier join/leave of channel still waits (pubs[0..kept)). */
static int held_back(const char *chan, size_t kept)
{
    for (size_t i = 0; i < kept; i++)
        if (strcmp(pubs[i].chan, chan) == 0)
            return 1;
    return 0;
}

/* The join/leave messages go out in order per channel. One for a channel
 * this node has members in waits until our own SUBSCRIBE of it is
 * confirmed: the PUBLISH travels on the command link and could otherwise
 * reach Redis before the SUBSCRIBE, and the joining client (the channel's
 * first member here) would miss its own join. Waiting is bounded by
 * PUB_WAIT_MS; other nodes' subscribers never wait for long. */
static void flush_pubs(void)
{
    size_t kept = 0;
    uint64_t now = pg_mono_ms();
    for (size_t i = 0; i < npubs; i++) {
        pub_t *p = &pubs[i];
        if (held_back(p->chan, kept) ||
            (now - p->at_ms < PUB_WAIT_MS && pg_hub_find(p->chan) != NULL &&
             !pg_subscriber_has(p->chan))) {
            pubs[kept++] = *p;
            continue;
        }
        pg_commands_raw_publish(p->chan, p->payload, p->len, published, NULL);
        free(p->chan);
        free(p->payload);
    }
    npubs = kept;
}


/* --- cluster mode: per channel (README "Redis Cluster") ------------------------
 * A function may touch only its channel's slot, so every call names one
 * channel C in the one-key form (key <prefix>{C}:presence) and is routed
 * to C's shard, pipelined with everything else of the loop iteration for
 * that master. The node's liveness in C is its score in C's presence-nodes,
 * set by each update of C and by a beat of each channel the node has
 * entries in every ttl / 3. Updates and beats carry the node's number of
 * entries in C; Redis answers 0 when it holds another, and C is then
 * written again (reset, then every entry): this is what repairs entries
 * lost with a failover or swept while the node stalled, in place of the
 * node index of one Redis. */

/* When a channel just beaten is due again: a beat interval, give or take
 * an eighth of it at random, so that channels that beat together drift
 * apart instead of beating in one burst that would hold their masters for
 * the whole batch, at the same number of beats on average. The latest
 * beat, an eighth late plus the timer's eighth step, comes well within the
 * ttl. */
static uint64_t next_due(void)
{
    uint64_t spread = beat_every_ms / 4;
    return pg_mono_ms() + beat_every_ms - spread / 2 + (spread ? (uint64_t)rand() % spread : 0);
}

/* A reply's channel, and whether the call was part of writing it again. */
typedef struct chan_req {
    int  rewrite;
    char name[];
} chan_req_t;

static chan_req_t *chan_req(const char *name, int rewrite)
{
    size_t n = strlen(name);
    chan_req_t *q = malloc(sizeof(*q) + n + 1);
    if (q != NULL) {
        q->rewrite = rewrite;
        memcpy(q->name, name, n + 1);
    }
    return q;
}

static void mark_dirty(const char *chan)
{
    pchan_t *d;
    HASH_FIND_STR(dirty, chan, d);
    if (d != NULL)
        return;
    size_t n = strlen(chan);
    if ((d = calloc(1, sizeof(*d) + n + 1)) == NULL)
        return;   /* the next beat of chan finds it */
    memcpy(d->name, chan, n + 1);
    HASH_ADD_STR(dirty, name, d);
}

static int chan_key(char *key, size_t size, const char *chan, size_t *len)
{
    int n = snprintf(key, size, "%s{%s}:presence", pg_node.cfg.prefix, chan);
    if (n < 0 || (size_t)n >= size)
        return -1;
    *len = (size_t)n;
    return 0;
}

static unsigned held_here(const char *chan)
{
    pchan_t *ch;
    HASH_FIND_STR(chans, chan, ch);
    return ch != NULL ? ch->count : 0;
}

/* The answer to a one-key update or beat of q->name: 1 agrees, 0 means
 * Redis holds another number of our entries there. */
static void chan_checked(void *arg, const struct redisReply *r)
{
    chan_req_t *q = arg;
    if (r == NULL) {
        mark_dirty(q->name);   /* lost with the link: may or may not have run */
    } else if (r->type == REDIS_REPLY_ERROR) {
        pg_log(PG_LOG_WARN, "presence call on %s refused by Redis: %s", q->name, r->str);
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        if (q->rewrite) {
            /* once per beat at most, never in a loop of rewrites */
            pg_log(PG_LOG_WARN, "presence: %s still differs after writing it again", q->name);
        } else {
            pg_log(PG_LOG_INFO, "presence: Redis holds other entries of ours in %s, "
                   "writing them again", q->name);
            mark_dirty(q->name);
        }
    }
    free(q);
}

static void push_reset(const char *chan)
{
    op_t *grown = pg_grow(ops, nops, &capops, sizeof(*grown), 64);
    if (grown == NULL)
        return;
    ops = grown;
    op_t *o = &ops[nops];
    memset(o, 0, sizeof(*o));
    o->kind = 'R';
    if ((o->chan = strdup(chan)) != NULL)
        nops++;
}

static void rewrite_member(pg_member_t *mb, void *arg)
{
    const char *chan = arg;
    pconn_t *pc;
    HASH_FIND(hh, conns, &mb->conn->id, sizeof(mb->conn->id), pc);
    if (pc != NULL && tracked(mb->conn, chan))
        push_op('+', mb->conn, chan, pc->since_ms);
}

/* Queue C written again: whatever of C is queued is superseded. */
static void rewrite_chan(const char *chan)
{
    size_t kept = 0;
    for (size_t i = 0; i < nops; i++) {
        if (strcmp(ops[i].chan, chan) == 0)
            op_free(&ops[i]);
        else
            ops[kept++] = ops[i];
    }
    nops = kept;
    push_reset(chan);
    pg_hub_foreach_member(chan, rewrite_member, (void *)chan);
}

static void rewrite_dirty(void)
{
    pchan_t *d, *t;
    HASH_ITER(hh, dirty, d, t) {
        HASH_DEL(dirty, d);
        rewrite_chan(d->name);
        free(d);
    }
}

static int op_cmp(const void *a, const void *b)
{
    const op_t *x = *(op_t *const *)a, *y = *(op_t *const *)b;
    int c = strcmp(x->chan, y->chan);
    return c != 0 ? c : (x < y ? -1 : x > y);
}

/* o as presence_update's arguments (kind, channel, conn[, value]) at
 * argv[argc]; the new argc. */
static size_t put_op(const char **argv, size_t *lens, size_t argc, const op_t *o)
{
    argv[argc] = o->kind == '+' ? "+" : o->kind == '-' ? "-" : "!";
    lens[argc++] = 1;
    argv[argc] = o->chan; lens[argc++] = strlen(o->chan);
    argv[argc] = o->conn; lens[argc++] = strlen(o->conn);
    if (o->kind == '+') {
        argv[argc] = o->value;
        lens[argc++] = o->value_len;
    }
    return argc;
}

static int op_net(const op_t *o)
{
    return o->kind == '+' ? 1 : o->kind == 'R' ? 0 : -1;
}

/* One channel's changes ops[0..n) (an 'R' only first), in calls of up to
 * OPS_PER_CALL changes, each with the number of our entries in C once it
 * ran (counted back from what we hold now). */
static void flush_chan(op_t **g, size_t n, const char **argv, size_t *lens)
{
    char key[NAME_BUF], ttl[24], want[24];
    size_t klen, tl = pg_u64toa((uint64_t)pg_node.cfg.presence_ttl * 1000, ttl);
    const char *chan = g[0]->chan;
    int rewrite = g[0]->kind == 'R';
    if (chan_key(key, sizeof(key), chan, &klen) != 0)
        return;
    if (rewrite) {
        const char *rv[6] = { "FCALL", fn_reset, "1", key, pg_node.cfg.node_id, chan };
        size_t rl[6] = { 5, strlen(fn_reset), 1, klen, strlen(pg_node.cfg.node_id), strlen(chan) };
        if (pg_commands_keyed_argv(key, klen, 6, rv, rl, updated, NULL) != 0)
            mark_dirty(chan);
        g++;
        n--;
    }
    /* our entries in C once each call ran: what we hold now, less what
     * the calls after it change */
    long long after = held_here(chan);
    for (size_t k = 0; k < n; k++)
        after -= op_net(g[k]);
    size_t ncalls = (n + OPS_PER_CALL - 1) / OPS_PER_CALL;
    for (size_t c = 0, i = 0; c < ncalls; c++) {
        size_t argc = 0;
        argv[argc] = "FCALL"; lens[argc++] = 5;
        argv[argc] = fn_update; lens[argc++] = strlen(fn_update);
        argv[argc] = "1"; lens[argc++] = 1;
        argv[argc] = key; lens[argc++] = klen;
        argv[argc] = pg_node.cfg.node_id; lens[argc++] = strlen(pg_node.cfg.node_id);
        argv[argc] = ttl; lens[argc++] = tl;
        argv[argc] = want;
        size_t wantarg = argc++;
        for (size_t k = 0; k < OPS_PER_CALL && i < n; k++, i++) {
            op_t *o = g[i];
            after += op_net(o);
            argc = put_op(argv, lens, argc, o);
        }
        lens[wantarg] = (size_t)snprintf(want, sizeof(want), "%lld", after);
        chan_req_t *q = chan_req(chan, rewrite);
        if (q == NULL || pg_commands_keyed_argv(key, klen, (int)argc, argv, lens,
                                                chan_checked, q) != 0) {
            free(q);
            mark_dirty(chan);
        } else {
            pg_node.metrics.presence_updates_total++;
        }
    }
}

/* Everything queued, grouped by channel (each channel's changes in order):
 * one call per channel and OPS_PER_CALL changes. */
static void flush_cluster(void)
{
    rewrite_dirty();
    if (nops == 0)
        return;
    op_t **g = malloc(nops * sizeof(*g));
    const char **argv = malloc((8 + 4 * OPS_PER_CALL) * sizeof(*argv));
    size_t *lens = malloc((8 + 4 * OPS_PER_CALL) * sizeof(*lens));
    if (g == NULL || argv == NULL || lens == NULL) {
        pg_log(PG_LOG_ERROR, "presence: out of memory, %zu changes dropped", nops);
        free(g);
        free(argv);
        free(lens);
        drop_queue();
        return;
    }
    for (size_t i = 0; i < nops; i++)
        g[i] = &ops[i];
    qsort(g, nops, sizeof(*g), op_cmp);
    for (size_t a = 0, b; a < nops; a = b) {
        for (b = a + 1; b < nops && strcmp(g[b]->chan, g[a]->chan) == 0; b++)
            ;
        flush_chan(g + a, b - a, argv, lens);
    }
    free(g);
    free(argv);
    free(lens);
    for (size_t i = 0; i < nops; i++)
        op_free(&ops[i]);
    nops = 0;
}

/* Every channel we hold entries in, and every dirty one, written again. */
static void rewrite_cluster(void)
{
    for (size_t i = 0; i < nops; i++)
        op_free(&ops[i]);
    nops = 0;
    pchan_t *ch, *t;
    HASH_ITER(hh, chans, ch, t) {
        mark_dirty(ch->name);
    }
    rewrite_dirty();
    flush();
}

static void beat_cluster(void)
{
    char key[NAME_BUF], ttl[24], count[24];
    size_t klen, tl = pg_u64toa((uint64_t)pg_node.cfg.presence_ttl * 1000, ttl);
    flush();   /* what we count now is what has gone out */
    uint64_t now = pg_mono_ms();
    pchan_t *ch, *t;
    HASH_ITER(hh, chans, ch, t) {
        if (ch->beat_due > now || chan_key(key, sizeof(key), ch->name, &klen) != 0)
            continue;
        ch->beat_due = next_due();
        const char *argv[8] = { "FCALL", fn_beat, "1", key, pg_node.cfg.node_id, ttl,
                                ch->name, count };
        size_t lens[8] = { 5, strlen(fn_beat), 1, klen, strlen(pg_node.cfg.node_id), tl,
                           strlen(ch->name), pg_u64toa(ch->count, count) };
        chan_req_t *q = chan_req(ch->name, 0);
        if (q == NULL || pg_commands_keyed_argv(key, klen, 8, argv, lens, chan_checked, q) != 0)
            free(q);
    }
}

/* Shutdown: our entries in every channel we still hold go. */
static void reset_cluster(void)
{
    char key[NAME_BUF];
    size_t klen;
    pchan_t *ch, *t;
    HASH_ITER(hh, chans, ch, t) {
        if (chan_key(key, sizeof(key), ch->name, &klen) != 0)
            continue;
        const char *argv[6] = { "FCALL", fn_reset, "1", key, pg_node.cfg.node_id, ch->name };
        size_t lens[6] = { 5, strlen(fn_reset), 1, klen, strlen(pg_node.cfg.node_id),
                           strlen(ch->name) };
        pg_commands_keyed_argv(key, klen, 6, argv, lens, NULL, NULL);
    }
}

/* Everything queued goes out: FCALLs of up to OPS_PER_CALL changes, in
 * order, then the join/leave messages, all pipelined. With the command link
 * down the queue is dropped: the rewrite at its next ready restores Redis
 * from what the node holds then. */
static void flush(void)
{
    if (nops == 0 && npubs == 0 && dirty == NULL)
        return;
    if (!pg_commands_ready()) {
        drop_queue();
        return;
    }
    if (cluster) {
        flush_cluster();
        flush_pubs();
        return;
    }
    const char **argv = NULL;
    size_t *lens = NULL;
    size_t max = 4 + 4 * (nops < OPS_PER_CALL ? nops : OPS_PER_CALL);
    if (nops && ((argv = malloc(max * sizeof(*argv))) == NULL ||
                 (lens = malloc(max * sizeof(*lens))) == NULL)) {
        pg_log(PG_LOG_ERROR, "presence: out of memory, %zu changes dropped", nops);
        goto out;
    }
    for (size_t i = 0; i < nops;) {
        size_t argc = 0;
        argv[argc] = "FCALL"; lens[argc++] = 5;
        argv[argc] = fn_update; lens[argc++] = strlen(fn_update);
        argv[argc] = "0"; lens[argc++] = 1;
        argv[argc] = pg_node.cfg.node_id; lens[argc++] = strlen(pg_node.cfg.node_id);
        for (size_t k = 0; k < OPS_PER_CALL && i < nops; k++, i++) {
            op_t *o = &ops[i];
            argc = put_op(argv, lens, argc, o);
        }
        if (pg_commands_argv((int)argc, argv, lens, updated, NULL) != 0)
            pg_log(PG_LOG_WARN, "presence: an update could not be queued");
        else
            pg_node.metrics.presence_updates_total++;
    }
out:
    free(argv);
    free(lens);
    for (size_t i = 0; i < nops; i++)
        op_free(&ops[i]);
    nops = 0;
    flush_pubs();
}

static void flush_cb(uv_prepare_t *h)
{
    (void)h;
    flush();
}

/* --- joins and leaves ----------------------------------------------------------- */

void pg_presence_join(pg_conn_t *c, const char *channel)
{
    if (!started || !tracked(c, channel))
        return;
    pconn_t *pc;
    HASH_FIND(hh, conns, &c->id, sizeof(c->id), pc);
    if (pc == NULL) {
        if ((pc = calloc(1, sizeof(*pc))) == NULL)
            return;
        pc->id = c->id;
        pc->since_ms = pg_wall_ms();
        HASH_ADD(hh, conns, id, sizeof(pc->id), pc);
    }
    pchan_t *ch;
    HASH_FIND_STR(chans, channel, ch);
    if (ch == NULL) {
        size_t n = strlen(channel);
        if ((ch = calloc(1, sizeof(*ch) + n + 1)) == NULL)
            return;
        memcpy(ch->name, channel, n + 1);
        /* its update scores us there; the first beat anywhere in the second
         * half of an interval, so that channels made together (a mass
         * reconnect) start apart */
        ch->beat_due = pg_mono_ms() + beat_every_ms / 2 +
                       (beat_every_ms > 1 ? (uint64_t)rand() % (beat_every_ms / 2) : 0);
        HASH_ADD_STR(chans, name, ch);
    }
    ch->count++;
    pc->n++;
    push_op('+', c, channel, pc->since_ms);
    if (is_topic_tracked(channel))
        push_pub(c, channel, "pushgate.join");
}

void pg_presence_leave(pg_conn_t *c, const char *channel)
{
    if (!started || !tracked(c, channel))
        return;
    pchan_t *ch;
    pconn_t *pc;
    HASH_FIND_STR(chans, channel, ch);
    HASH_FIND(hh, conns, &c->id, sizeof(c->id), pc);
    if (ch == NULL || pc == NULL)
        return;   /* joined while out of memory */
    int last = --ch->count == 0;
    if (last) {
        HASH_DEL(chans, ch);
        free(ch);
    }
    if (--pc->n == 0) {
        HASH_DEL(conns, pc);
        free(pc);
    }
    push_op(last ? '!' : '-', c, channel, 0);
    if (is_topic_tracked(channel))
        push_pub(c, channel, "pushgate.leave");
}

void pg_presence_leave_all(pg_conn_t *c)
{
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        pg_presence_leave(c, mb->chan->name);
    } lws_end_foreach_dll(d);
}

/* --- heartbeat and rewrite --------------------------------------------------------- */

static void rewrite_conn(pg_conn_t *c, void *arg)
{
    (void)arg;
    pconn_t *pc;
    HASH_FIND(hh, conns, &c->id, sizeof(c->id), pc);
    if (pc == NULL)
        return;
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        if (tracked(c, mb->chan->name))
            push_op('+', c, mb->chan->name, pc->since_ms);
    } lws_end_foreach_dll(d);
}

static int beat(pg_reply_cb cb);

/* Redis may hold stale entries of ours (removals lost with the link) or
 * none (restarted empty, or swept while we were cut off): drop them all
 * and write what we hold, in one pipeline. */
static void rewrite(void)
{
    const char *argv[4] = { "FCALL", fn_reset, "0", pg_node.cfg.node_id };
    size_t lens[4] = { 5, strlen(argv[1]), 1, strlen(argv[3]) };
    for (size_t i = 0; i < nops; i++)
        op_free(&ops[i]);
    nops = 0;   /* superseded; join/leave messages still go */
    /* reset forgets the node's heartbeat too: beat again before writing */
    if (pg_commands_argv(4, argv, lens, updated, NULL) != 0 || beat(updated) != 0)
        return;
    pg_conn_foreach(-1, rewrite_conn, NULL);
    flush();
}

static void beaten(void *arg, const struct redisReply *r)
{
    (void)arg;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        pg_log(PG_LOG_WARN, "presence heartbeat refused by Redis: %s", r->str);
        return;
    }
    /* 0: we had been dead for a moment (a stalled loop, a slow link), and
     * another node may have swept our entries */
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && HASH_COUNT(conns) > 0) {
        pg_log(PG_LOG_WARN, "presence: heartbeat came late, writing every entry again");
        rewrite();
    }
}

static int beat(pg_reply_cb cb)
{
    char ttl[24];
    size_t tl = pg_u64toa((uint64_t)pg_node.cfg.presence_ttl * 1000, ttl);
    const char *argv[5] = { "FCALL", fn_beat, "0", pg_node.cfg.node_id, ttl };
    size_t lens[5] = { 5, strlen(argv[1]), 1, strlen(argv[3]), tl };
    return pg_commands_argv(5, argv, lens, cb, NULL);
}

static void beat_cb(uv_timer_t *t)
{
    (void)t;
    if (pg_commands_ready())
        cluster ? beat_cluster() : (void)beat(beaten);
}

void pg_presence_link_ready(void)
{
    if (started)
        cluster ? rewrite_cluster() : rewrite();
}

/* --- life ------------------------------------------------------------------------------ */

int pg_presence_init(void)
{
    snprintf(fn_update, sizeof(fn_update), "%spresence_update", pg_node.fn_prefix);
    snprintf(fn_beat, sizeof(fn_beat), "%spresence_beat", pg_node.fn_prefix);
    snprintf(fn_reset, sizeof(fn_reset), "%spresence_reset", pg_node.fn_prefix);
    cluster = pg_node.cfg.redis.kind == PG_URL_CLUSTER;
    if (uv_prepare_init(pg_node.loop, &flush_prep) != 0)
        return -1;
    if (uv_timer_init(pg_node.loop, &beat_timer) != 0) {
        uv_close((uv_handle_t *)&flush_prep, NULL);
        return -1;
    }
    uv_prepare_start(&flush_prep, flush_cb);
    /* a third of the ttl: one late or lost beat never lets us expire. In a
     * cluster the timer looks at the channels eight times as often and
     * beats those due, so their beats spread over the interval. */
    uint64_t every = beat_every_ms = (uint64_t)pg_node.cfg.presence_ttl * 1000 / 3;
    if (cluster && (every /= 8) == 0)
        every = 1;
    uv_timer_start(&beat_timer, beat_cb, every, every);
    uv_unref((uv_handle_t *)&beat_timer);
    started = 1;
    return 0;
}

void pg_presence_stop(void)
{
    if (!started)
        return;
    started = 0;
    flush();
    if (pg_commands_ready()) {
        /* the leaves of a drain wait for no SUBSCRIBE: we are going */
        for (size_t i = 0; i < npubs; i++)
            pg_commands_raw_publish(pubs[i].chan, pubs[i].payload, pubs[i].len, published, NULL);
        drop_pubs();
        const char *argv[4] = { "FCALL", fn_reset, "0", pg_node.cfg.node_id };
        size_t lens[4] = { 5, strlen(argv[1]), 1, strlen(argv[3]) };
        if (cluster)
            reset_cluster();   /* the router lingers for these (cbroker.h) */
        else
            pg_commands_argv(4, argv, lens, NULL, NULL);
        pg_commands_flush_sync(500);
    }
    uv_prepare_stop(&flush_prep);
    uv_close((uv_handle_t *)&flush_prep, NULL);
    uv_timer_stop(&beat_timer);
    uv_close((uv_handle_t *)&beat_timer, NULL);
}

void pg_presence_free(void)
{
    drop_queue();
    free(ops);
    free(pubs);
    ops = NULL;
    pubs = NULL;
    capops = cappubs = 0;
    pchan_t *ch, *tch;
    HASH_ITER(hh, chans, ch, tch) {
        HASH_DEL(chans, ch);
        free(ch);
    }
    HASH_ITER(hh, dirty, ch, tch) {
        HASH_DEL(dirty, ch);
        free(ch);
    }
    pconn_t *pc, *tpc;
    HASH_ITER(hh, conns, pc, tpc) {
        HASH_DEL(conns, pc);
        free(pc);
    }
}
