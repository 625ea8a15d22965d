/* recovery.c - history replay for connections and for the node. */
#include <stdlib.h>
#include <string.h>

#include "recovery.h"
#include "hub.h"
#include "node.h"
#include "redis_cmd.h"
#include "redis_sub.h"
#include "pg_log.h"
#include "pg_util.h"

#define MAX_ATTEMPTS 3   /* a read that fails this often is reported incomplete */

typedef struct rec_read {
    char     *channel;
    uint64_t  since;
    int       issued;     /* a FCALL is in flight */
    int       done;
    int       attempts;
} rec_read_t;

typedef struct pg_recovery {
    lws_dll2_t  node;      /* in `waiting` while some read is not issued */
    pg_conn_t  *conn;      /* NULL: the node-wide replay, or orphaned (see dead) */
    int         dead;      /* the connection left; free when replies are in */
    rec_read_t *reads;
    size_t      nreads, readcap;
    unsigned    outstanding;
    int         incomplete;
    pg_msg_t  **msgs;      /* collected history, any order until finish */
    size_t      nmsgs, msgcap;
} pg_recovery_t;

typedef struct read_ref {
    pg_recovery_t *rec;
    size_t         idx;
} read_ref_t;

static lws_dll2_owner_t waiting;
static void kick_once(void);
static pg_recovery_t   *node_replay;    /* the node-wide replay in progress */
static int              replay_again;   /* another reconnect happened meanwhile */

static void rec_free(pg_recovery_t *r)
{
    lws_dll2_remove(&r->node);
    for (size_t i = 0; i < r->nreads; i++)
        free(r->reads[i].channel);
    free(r->reads);
    for (size_t i = 0; i < r->nmsgs; i++)
        pg_msg_unref(&r->msgs[i]);
    free(r->msgs);
    free(r);
}

static int cmp_id(const void *a, const void *b)
{
    const pg_msg_t *x = *(pg_msg_t * const *)a, *y = *(pg_msg_t * const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void finish_conn(pg_recovery_t *r)
{
    pg_conn_t *c = r->conn;
    c->rec = NULL;
    c->flags &= ~PG_CONN_RECOVERING;
    if (r->incomplete) {
        static const char notice[] = "{\"type\":\"recovery\",\"complete\":false}";
        pg_conn_send_control(c, notice, sizeof(notice) - 1, "pushgate.recovery");
    }
    if (r->nmsgs > 1)
        qsort(r->msgs, r->nmsgs, sizeof(*r->msgs), cmp_id);
    for (size_t i = 0; i < r->nmsgs; i++) {
        pg_sub_t *s = pg_hub_sub_of(c, r->msgs[i]->channel);
        if (s != NULL)
            pg_hub_deliver(s, r->msgs[i]);
    }
    /* then what arrived live meanwhile, minus what history already sent */
    uint32_t n = c->nheld;
    pg_msg_t **held = c->held;
    c->held = NULL;
    c->nheld = c->heldcap = 0;
    for (uint32_t i = 0; i < n; i++) {
        pg_sub_t *s = pg_hub_sub_of(c, held[i]->channel);
        if (s != NULL)
            pg_hub_deliver(s, held[i]);
        pg_msg_unref(&held[i]);
    }
    free(held);
    conn_log(PG_LOG_DEBUG, c, "recovered %zu messages%s", r->nmsgs,
             r->incomplete ? " (incomplete)" : "");
}

static void finish_node(pg_recovery_t *r)
{
    if (r->nmsgs > 1)
        qsort(r->msgs, r->nmsgs, sizeof(*r->msgs), cmp_id);
    for (size_t i = 0; i < r->nmsgs; i++) {
        pg_msg_t *m = r->msgs[i];
        pg_chan_entry_t *ch = pg_hub_find(m->channel);
        if (ch == NULL)
            continue;
        if (m->id > ch->last_id)
            ch->last_id = m->id;
        lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&ch->subs)) {
            pg_hub_deliver(lws_container_of(d, pg_sub_t, chan_node), m);
        } lws_end_foreach_dll_safe(d, d1);
    }
    pg_log(PG_LOG_INFO, "replayed %zu messages missed while Redis was unreachable%s",
           r->nmsgs, r->incomplete ? " (history did not reach back for some channels)" : "");
}

static void maybe_finish(pg_recovery_t *r)
{
    if (r->outstanding)
        return;
    if (r->dead) {
        /* its connection left: reads not issued yet never will be */
        rec_free(r);
        return;
    }
    for (size_t i = 0; i < r->nreads; i++)
        if (!r->reads[i].done)
            return;
    if (r == node_replay) {
        node_replay = NULL;
        finish_node(r);
        rec_free(r);
        pg_hub_release();
        if (replay_again) {
            replay_again = 0;
            pg_recovery_replay_all();
        }
        return;
    }
    if (!r->dead)
        finish_conn(r);
    rec_free(r);
}

static void read_cb(void *arg, int ok, int complete, pg_msg_t **msgs, size_t n)
{
    read_ref_t *ref = arg;
    pg_recovery_t *r = ref->rec;
    rec_read_t *rd = &r->reads[ref->idx];
    free(ref);
    r->outstanding--;
    rd->issued = 0;
    if (!ok) {
        if (++rd->attempts >= MAX_ATTEMPTS || r->dead) {
            rd->done = 1;
            r->incomplete = 1;
        } else if (r->node.owner == NULL) {
            lws_dll2_add_tail(&r->node, &waiting);   /* retried on the next kick */
        }
        maybe_finish(r);
        return;
    }
    rd->done = 1;
    if (!complete)
        r->incomplete = 1;
    if (!r->dead && n) {
        if (r->nmsgs + n > r->msgcap) {
            size_t ncap = (r->nmsgs + n) * 2;
            pg_msg_t **nm = realloc(r->msgs, ncap * sizeof(*nm));
            if (nm == NULL) {
                r->incomplete = 1;
                n = 0;
            } else {
                r->msgs = nm;
                r->msgcap = ncap;
            }
        }
        for (size_t i = 0; i < n; i++)
            r->msgs[r->nmsgs++] = pg_msg_ref(msgs[i]);
    }
    maybe_finish(r);
}

/* Issue every read of r that can go now; returns 1 if some still wait. */
static int issue(pg_recovery_t *r)
{
    int waits = 0;
    for (size_t i = 0; i < r->nreads; i++) {
        rec_read_t *rd = &r->reads[i];
        if (rd->done || rd->issued)
            continue;
        if (r->dead) {
            rd->done = 1;
            continue;
        }
        if (!pg_rcmd_ready() || !pg_sub_is_subscribed(rd->channel)) {
            waits = 1;
            continue;
        }
        read_ref_t *ref = malloc(sizeof(*ref));
        if (ref == NULL) {
            waits = 1;
            continue;
        }
        ref->rec = r;
        ref->idx = i;
        if (pg_rcmd_history(rd->channel, rd->since, read_cb, ref) != 0) {
            free(ref);
            waits = 1;
            continue;
        }
        rd->issued = 1;
        r->outstanding++;
    }
    return waits;
}

static int kicking, kick_again;

void pg_recovery_kick(void)
{
    /* Finishing a recovery can start another (a replay after a replay), which
     * kicks again: run those passes here instead of re-entering the walk. */
    if (kicking) {
        kick_again = 1;
        return;
    }
    kicking = 1;
    do {
        kick_again = 0;
        kick_once();
    } while (kick_again);
    kicking = 0;
}

static void kick_once(void)
{
    /* One pass over what waits now. Take the whole list first: a recovery
     * that must keep waiting goes back on `waiting`, and walking that same
     * list would meet it again and never end. Pop from the head each time:
     * finishing one recovery can free others (a connection it closes). */
    lws_dll2_owner_t pass;
    memset(&pass, 0, sizeof(pass));
    struct lws_dll2 *d;
    while ((d = lws_dll2_get_head(&waiting)) != NULL) {
        lws_dll2_remove(d);
        lws_dll2_add_tail(d, &pass);
    }
    while ((d = lws_dll2_get_head(&pass)) != NULL) {
        pg_recovery_t *r = lws_container_of(d, pg_recovery_t, node);
        lws_dll2_remove(d);
        if (issue(r))
            lws_dll2_add_tail(&r->node, &waiting);
        else
            maybe_finish(r);
    }
}

static int add_read(pg_recovery_t *r, const char *channel, uint64_t since)
{
    for (size_t i = 0; i < r->nreads; i++)
        if (strcmp(r->reads[i].channel, channel) == 0 && !r->reads[i].done &&
            !r->reads[i].issued) {
            if (since < r->reads[i].since)
                r->reads[i].since = since;
            return 0;
        }
    if (r->nreads == r->readcap) {
        size_t ncap = r->readcap ? r->readcap * 2 : 4;
        rec_read_t *n = realloc(r->reads, ncap * sizeof(*n));
        if (n == NULL)
            return -1;
        r->reads = n;
        r->readcap = ncap;
    }
    rec_read_t *rd = &r->reads[r->nreads];
    memset(rd, 0, sizeof(*rd));
    if ((rd->channel = strdup(channel)) == NULL)
        return -1;
    rd->since = since;
    r->nreads++;
    return 0;
}

int pg_recovery_add(pg_conn_t *c, const char *channel, uint64_t since)
{
    pg_recovery_t *r = c->rec;
    if (r == NULL) {
        if ((r = calloc(1, sizeof(*r))) == NULL)
            goto oom;
        r->conn = c;
        c->rec = r;
        c->flags |= PG_CONN_RECOVERING;
    }
    if (add_read(r, channel, since) != 0)
        goto oom;
    if (r->node.owner == NULL)
        lws_dll2_add_tail(&r->node, &waiting);
    pg_recovery_kick();
    return 0;
oom:
    pg_conn_close(c, 1011, "out of memory");
    return -1;
}

void pg_recovery_shutdown(void)
{
    /* Links are stopped: every reply callback has run. What still waits
     * will never be issued. */
    struct lws_dll2 *d;
    while ((d = lws_dll2_get_head(&waiting)) != NULL) {
        pg_recovery_t *r = lws_container_of(d, pg_recovery_t, node);
        if (r == node_replay)
            node_replay = NULL;
        if (r->conn != NULL)
            r->conn->rec = NULL;
        rec_free(r);
    }
    if (node_replay != NULL) {
        rec_free(node_replay);
        node_replay = NULL;
    }
}

void pg_recovery_abandon(pg_conn_t *c)
{
    pg_recovery_t *r = c->rec;
    if (r == NULL)
        return;
    c->rec = NULL;
    r->conn = NULL;
    r->dead = 1;
    if (r->outstanding == 0)
        rec_free(r);
    else
        lws_dll2_remove(&r->node);   /* replies in flight free it */
}

static void add_channel_cb(pg_chan_entry_t *ch, void *arg)
{
    pg_recovery_t *r = arg;
    if (add_read(r, ch->name, ch->last_id) != 0)
        r->incomplete = 1;
}

void pg_recovery_replay_all(void)
{
    if (node_replay != NULL) {
        replay_again = 1;
        return;
    }
    pg_recovery_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        pg_log(PG_LOG_ERROR, "out of memory: cannot replay history after reconnect");
        return;
    }
    pg_hub_foreach(add_channel_cb, r);
    if (r->nreads == 0) {
        rec_free(r);
        pg_hub_release();
        return;
    }
    node_replay = r;
    pg_hub_hold();   /* normally held since the re-SUBSCRIBE already */
    lws_dll2_add_tail(&r->node, &waiting);
    pg_recovery_kick();
}
