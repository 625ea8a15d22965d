/* hub.c - channel registry, two-way index and fan-out. See hub.h. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

static pg_channel_t  *chans;   /* uthash table by name */
static pg_hub_hooks_t hooks;

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
