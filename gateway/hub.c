/* hub.c - channel registry, two-way index and fan-out. See hub.h. */
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "node.h"
#include "redis_sub.h"
#include "pg_log.h"
#include "pg_util.h"

static pg_chan_entry_t *chans;   /* uthash table by name */

/* Messages held while a replay runs (pg_hub_hold): references, in arrival
 * order. Bounded by what Redis sends during one replay round trip. */
static pg_msg_t **held;
static size_t     nheld, heldcap;
static int        holding;

#define FLOOR_MARGIN_MS 1000   /* clock estimate error we allow for */

uint64_t pg_hub_id_floor(void)
{
    int64_t now = (int64_t)pg_wall_ms() + pg_node.redis_clock_offset_ms - FLOOR_MARGIN_MS;
    uint64_t by_clock = now > 0 ? (uint64_t)now * 1000 : 0;
    return by_clock > pg_node.max_id_seen ? by_clock : pg_node.max_id_seen;
}

static pg_chan_entry_t *chan_new(const char *name)
{
    pg_chan_entry_t *ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return NULL;
    if ((ch->name = strdup(name)) == NULL) {
        free(ch);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, chans, ch->name, strlen(ch->name), ch);
    ch->last_id = pg_hub_id_floor();
    pg_node.metrics.subscribed_channels++;
    pg_link_want(ch->name, 1);
    return ch;
}

static void chan_free(pg_chan_entry_t *ch)
{
    HASH_DEL(chans, ch);
    pg_node.metrics.subscribed_channels--;
    if (!pg_node.stopping)
        pg_link_want(ch->name, 0);
    free(ch->name);
    free(ch);
}

int pg_hub_init(void)
{
    pg_chan_entry_t *b = chan_new("broadcast");
    if (b == NULL)
        return -1;
    b->pinned = 1;
    return 0;
}

void pg_hub_free(void)
{
    pg_chan_entry_t *ch, *tmp;
    HASH_ITER(hh, chans, ch, tmp) {
        pg_assert(ch->subs.count == 0);
        chan_free(ch);
    }
    for (size_t i = 0; i < nheld; i++)
        pg_msg_unref(&held[i]);
    free(held);
    held = NULL;
    nheld = heldcap = 0;
}

pg_chan_entry_t *pg_hub_find(const char *name)
{
    pg_chan_entry_t *ch = NULL;
    HASH_FIND_STR(chans, name, ch);
    return ch;
}

pg_sub_t *pg_hub_sub_of(pg_conn_t *c, const char *name)
{
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->subs)) {
        pg_sub_t *s = lws_container_of(d, pg_sub_t, conn_node);
        if (strcmp(s->chan->name, name) == 0)
            return s;
    } lws_end_foreach_dll(d);
    return NULL;
}

pg_sub_t *pg_hub_join(pg_conn_t *c, const char *name)
{
    pg_sub_t *s = pg_hub_sub_of(c, name);
    if (s != NULL)
        return s;
    pg_chan_entry_t *ch = pg_hub_find(name);
    if (ch == NULL && (ch = chan_new(name)) == NULL)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        if (ch->subs.count == 0 && !ch->pinned)
            chan_free(ch);
        return NULL;
    }
    s->conn = c;
    s->chan = ch;
    lws_dll2_add_tail(&s->conn_node, &c->subs);
    lws_dll2_add_tail(&s->chan_node, &ch->subs);
    return s;
}

static void sub_free(pg_sub_t *s)
{
    pg_chan_entry_t *ch = s->chan;
    lws_dll2_remove(&s->conn_node);
    lws_dll2_remove(&s->chan_node);
    free(s);
    if (ch->subs.count == 0 && !ch->pinned)
        chan_free(ch);
}

int pg_hub_leave(pg_conn_t *c, const char *name)
{
    pg_sub_t *s = pg_hub_sub_of(c, name);
    if (s == NULL)
        return -1;
    sub_free(s);
    return 0;
}

void pg_hub_leave_all(pg_conn_t *c)
{
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&c->subs)) {
        sub_free(lws_container_of(d, pg_sub_t, conn_node));
    } lws_end_foreach_dll_safe(d, d1);
}

void pg_hub_deliver(pg_sub_t *s, pg_msg_t *m)
{
    pg_conn_t *c = s->conn;

    if (c->flags & PG_CONN_RECOVERING) {
        /* History for this connection is still being read: keep the live
         * message; the replay's end sends it unless history already did. */
        if (c->nheld == c->heldcap) {
            uint32_t ncap = c->heldcap ? c->heldcap * 2 : 8;
            pg_msg_t **n = realloc(c->held, ncap * sizeof(*n));
            if (n == NULL) {
                pg_conn_close(c, 1011, "out of memory");
                return;
            }
            c->held = n;
            c->heldcap = ncap;
        }
        c->held[c->nheld++] = pg_msg_ref(m);
        return;
    }
    if (m->id != 0) {
        if (m->id <= s->last_id)
            return;          /* already delivered (history/live seam) */
        s->last_id = m->id;
    }
    pg_conn_send(c, m);
}

static void fan_out(pg_msg_t *m)
{
    pg_chan_entry_t *ch = pg_hub_find(m->channel);
    if (ch == NULL)
        return;
    if (m->id > ch->last_id)
        ch->last_id = m->id;
    if (m->id > pg_node.max_id_seen)
        pg_node.max_id_seen = m->id;
    /* Delivery never frees a connection (pg_conn_send only flags slow ones),
     * so the list cannot change under us; the safe iterator is belt and
     * braces against a future change there. */
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&ch->subs)) {
        pg_hub_deliver(lws_container_of(d, pg_sub_t, chan_node), m);
    } lws_end_foreach_dll_safe(d, d1);
}

void pg_hub_dispatch(pg_msg_t *m)
{
    if (holding) {
        if (nheld == heldcap) {
            size_t ncap = heldcap ? heldcap * 2 : 64;
            pg_msg_t **n = realloc(held, ncap * sizeof(*n));
            if (n == NULL) {
                pg_log(PG_LOG_ERROR, "out of memory holding a message during replay; delivering it now");
                fan_out(m);
                return;
            }
            held = n;
            heldcap = ncap;
        }
        held[nheld++] = pg_msg_ref(m);
        return;
    }
    fan_out(m);
}

void pg_hub_hold(void)
{
    holding = 1;
}

void pg_hub_release(void)
{
    holding = 0;
    for (size_t i = 0; i < nheld; i++) {
        fan_out(held[i]);
        pg_msg_unref(&held[i]);
    }
    nheld = 0;
}

void pg_hub_foreach(pg_hub_iter_cb cb, void *arg)
{
    pg_chan_entry_t *ch, *tmp;
    HASH_ITER(hh, chans, ch, tmp)
        cb(ch, arg);
}

size_t pg_hub_count(void)
{
    return HASH_COUNT(chans);
}
