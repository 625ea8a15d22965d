/* hub.c - channel registry, two-way index and fan-out. See hub.h. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "httphead.h"
#include "node.h"
#include "pg_log.h"
#include "pg_since.h"
#include "pg_util.h"

static pg_channel_t  *chans;   /* uthash table by name */
static pg_hub_hooks_t hooks;
/* cluster SSE ids (send_with_positions); one thread: reused, grown to the
 * most channels one connection had */
static pg_since_ent_t *pos_scratch;
static size_t          pos_cap;
static pg_buf_t        id_scratch = PG_BUF_INIT;
static int             told_shortened;

#define FLOOR_MARGIN_MS 1000   /* clock estimate error we allow for */

uint64_t pg_hub_id_floor(void)
{
    int64_t now = (int64_t)pg_wall_ms() + pg_node.redis_clock_offset_ms - FLOOR_MARGIN_MS;
    uint64_t by_clock = now > 0 ? (uint64_t)now * 1000 : 0;
    /* On one Redis ids rise across all channels, so the highest seen on any
     * is a floor for every other. In a cluster they rise per channel only:
     * a shard may hand out ms*1000+0 on a new channel after ms*1000+5 on a
     * busy one, and that floor would hide the new channel's first message. */
    if (pg_node.cfg.redis.kind == PG_URL_CLUSTER)
        return by_clock;
    return by_clock > pg_node.max_id_seen ? by_clock : pg_node.max_id_seen;
}

static pg_channel_t *chan_new(const char *name)
{
    pg_channel_t *ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return NULL;
    if ((ch->name = strdup(name)) == NULL) {
        free(ch);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, chans, ch->name, strlen(ch->name), ch);
    ch->last_id = pg_hub_id_floor();
    pg_node.metrics.subscribed_channels++;
    if (hooks.channel_wanted != NULL)
        hooks.channel_wanted(ch->name, 1);
    return ch;
}

static void chan_free(pg_channel_t *ch)
{
    HASH_DEL(chans, ch);
    pg_node.metrics.subscribed_channels--;
    if (!pg_node.stopping && hooks.channel_wanted != NULL)
        hooks.channel_wanted(ch->name, 0);
    free(ch->name);
    free(ch);
}

int pg_hub_init(const pg_hub_hooks_t *h)
{
    hooks = *h;
    pg_channel_t *b = chan_new("broadcast");
    if (b == NULL)
        return -1;
    b->pinned = 1;
    return 0;
}

void pg_hub_free(void)
{
    free(pos_scratch);
    pos_scratch = NULL;
    pos_cap = 0;
    pg_buf_free(&id_scratch);
    pg_channel_t *ch, *tmp;
    HASH_ITER(hh, chans, ch, tmp) {
        pg_assert(ch->members.count == 0);
        chan_free(ch);
    }
}

pg_channel_t *pg_hub_find(const char *name)
{
    pg_channel_t *ch = NULL;
    HASH_FIND_STR(chans, name, ch);
    return ch;
}

pg_member_t *pg_hub_member(pg_conn_t *c, const char *name)
{
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        if (strcmp(mb->chan->name, name) == 0)
            return mb;
    } lws_end_foreach_dll(d);
    return NULL;
}

pg_member_t *pg_hub_join(pg_conn_t *c, const char *name)
{
    pg_member_t *mb = pg_hub_member(c, name);
    if (mb != NULL)
        return mb;
    pg_channel_t *ch = pg_hub_find(name);
    if (ch == NULL && (ch = chan_new(name)) == NULL)
        return NULL;
    if ((mb = calloc(1, sizeof(*mb))) == NULL) {
        if (ch->members.count == 0 && !ch->pinned)
            chan_free(ch);
        return NULL;
    }
    mb->conn = c;
    mb->chan = ch;
    /* Every message of ch delivered from now on has a higher id (they
     * reach the node in id order per channel, and a replay starts after
     * ch->last_id), so this is where a resume of this membership starts
     * while it has delivered nothing (send_with_positions). */
    mb->start_id = ch->last_id;
    lws_dll2_add_tail(&mb->conn_node, &c->members);
    lws_dll2_add_tail(&mb->chan_node, &ch->members);
    return mb;
}

void pg_hub_leave_member(pg_member_t *mb)
{
    pg_channel_t *ch = mb->chan;
    lws_dll2_remove(&mb->conn_node);
    lws_dll2_remove(&mb->chan_node);
    free(mb);
    if (ch->members.count == 0 && !ch->pinned)
        chan_free(ch);
}

int pg_hub_leave(pg_conn_t *c, const char *name)
{
    pg_member_t *mb = pg_hub_member(c, name);
    if (mb == NULL)
        return -1;
    pg_hub_leave_member(mb);
    return 0;
}

void pg_hub_leave_all(pg_conn_t *c)
{
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&c->members)) {
        pg_hub_leave_member(lws_container_of(d, pg_member_t, conn_node));
    } lws_end_foreach_dll_safe(d, d1);
}

/* --- cluster SSE ids ------------------------------------------------------
 * On one Redis the shared frame's `id: <message id>` is one exact cut across
 * every channel (ids reach a node in order over one link). In a cluster ids
 * rise per channel and shards deliver over separate links, so the `id:` a
 * browser sends back as Last-Event-ID must be the connection's position per
 * channel: built here, for each delivery to each SSE connection, as m is
 * queued, into a frame of its own (one allocation of the SSE text plus the
 * list, and a walk over the connection's channels). A channel that has
 * delivered nothing yet is at its start_id: a resume then replays what it
 * got after the connection joined it, which the highest id of the others
 * could skip (no common order across shards). */

/* How long c's list may be. The request that brings it back must fit in
 * the request head a node takes, PG_HEAD_MAX (httphead.h; past it 431, and
 * lws keeps no more either): a browser's
 * own reconnect sends the URL it opened (channels=, token=, and
 * pushgate.js's since= with an earlier list) plus the list in
 * Last-Event-ID, and a request over it is refused (431). So the list gets
 * what is left after the channel names (the URL carries them too) and
 * REQ_OTHER for the token and the other headers, shared with one earlier
 * list in the URL (21/10: URL-encoding adds 2 bytes per ',' and ':'). */
#define REQ_OTHER      2048
static size_t id_room(size_t names_len)
{
    if (names_len + REQ_OTHER >= PG_HEAD_MAX)
        return 0;
    size_t room = (PG_HEAD_MAX - REQ_OTHER - names_len) * 10 / 21;
    return room < PG_SINCE_MAX_BYTES ? room : PG_SINCE_MAX_BYTES;
}

/* Out of memory anywhere here, c gets the shared frame: its bare id is a
 * resume as before the lists (one cut), better than no message. */
static void send_with_positions(pg_conn_t *c, pg_msg_t *m)
{
    size_t n = 0, names_len = 0;
    if (c->members.count > pos_cap) {
        size_t cap = c->members.count * 2;
        pg_since_ent_t *v = realloc(pos_scratch, cap * sizeof(*v));
        if (v == NULL)
            goto shared;
        pos_scratch = v;
        pos_cap = cap;
    }
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        /* last_id 0: nothing delivered and no since (ids are never 0) */
        pos_scratch[n].channel = mb->chan->name;
        pos_scratch[n].id = mb->last_id != 0 ? mb->last_id : mb->start_id;
        names_len += strlen(mb->chan->name) + 1;
        n++;
    } lws_end_foreach_dll(d);
    int rc = pg_since_write(&id_scratch, pos_scratch, n, id_room(names_len));
    if (rc < 0)
        goto shared;
    if (rc > 0 && !told_shortened) {
        told_shortened = 1;
        conn_log(PG_LOG_INFO, c, "SSE id: the positions of %zu channels do not fit in %zu "
                 "bytes; such streams resume the rest from the lowest position left "
                 "(said once per process)", n, id_room(names_len));
    }
    char num[24];
    size_t nlen = pg_u64toa(m->id, num);
    pg_msg_t *own = NULL;
    /* the bare message id alone: the shared frame says just that */
    if (!(id_scratch.len == nlen && memcmp(id_scratch.data, num, nlen) == 0) &&
        (own = pg_msg_sse_with_id(m, id_scratch.data, id_scratch.len)) != NULL) {
        pg_conn_send(c, own);
        pg_msg_unref(&own);
        return;
    }
shared:
    pg_conn_send(c, m);
}

void pg_hub_deliver(pg_member_t *mb, pg_msg_t *m)
{
    pg_conn_t *c = mb->conn;

    if ((c->flags & PG_CONN_RECOVERING) && hooks.hold != NULL) {
        /* History for this connection is still being read: the recovery
         * keeps the live message and sends it after the history, unless
         * history already did. */
        hooks.hold(c, m);
        return;
    }
    if (m->id != 0) {
        if (m->id <= mb->last_id)
            return;          /* already delivered (history/live seam) */
        mb->last_id = m->id;
        if (c->transport == PG_TR_SSE && pg_node.cfg.redis.kind == PG_URL_CLUSTER) {
            send_with_positions(c, m);
            return;
        }
    }
    pg_conn_send(c, m);
}

void pg_hub_publish(pg_msg_t *m)
{
    pg_channel_t *ch = pg_hub_find(m->channel);
    if (m->id > pg_node.max_id_seen)
        pg_node.max_id_seen = m->id;
    if (ch == NULL)
        return;
    if (m->id > ch->last_id)
        ch->last_id = m->id;
    /* Delivery never frees a connection (pg_conn_send only flags slow ones),
     * so the list cannot change under us; the safe iterator is belt and
     * braces against a future change there. */
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&ch->members)) {
        pg_hub_deliver(lws_container_of(d, pg_member_t, chan_node), m);
    } lws_end_foreach_dll_safe(d, d1);
}

void pg_hub_foreach(pg_hub_iter_cb cb, void *arg)
{
    pg_channel_t *ch, *tmp;
    HASH_ITER(hh, chans, ch, tmp)
        cb(ch, arg);
}

void pg_hub_foreach_member(const char *name, pg_hub_member_cb cb, void *arg)
{
    pg_channel_t *ch = pg_hub_find(name);
    if (ch == NULL)
        return;
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&ch->members)) {
        cb(lws_container_of(d, pg_member_t, chan_node), arg);
    } lws_end_foreach_dll_safe(d, d1);
}

size_t pg_hub_count(void)
{
    return HASH_COUNT(chans);
}
