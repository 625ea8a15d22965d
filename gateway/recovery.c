/* recovery.c - history replay and the hold buffers. See recovery.h. */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "recovery.h"
#include "commands.h"
#include "hub.h"
#include "node.h"
#include "subscriber.h"
#include "pg_log.h"
#include "pg_util.h"

#define MAX_ATTEMPTS 3   /* a read that fails this often is reported incomplete */
/* The node-wide hold lasts one replay round trip after a reconnect; this
 * much held means Redis is not answering it, and delivering late beats
 * growing without bound. */
#define NODE_HOLD_MAX_BYTES (64u << 20)
/* A channel's window (see "windows" below) is kept this long after it last
 * served a resumer: a storm's stragglers come within seconds. */
#define WIN_IDLE_TICKS (10u * PG_TICKS_PER_SEC)
/* One window's messages at most: past it the oldest go (the window then
 * covers less, exactly). All windows together stay under the node cap. */
#define WIN_MAX_BYTES (4u << 20)

struct win;

typedef struct rec_read {
    char     *channel;
    uint64_t  since;
    struct win *win;      /* the channel window whose read serves this one */
    size_t    wslot;      /* our slot among win's waiters */
    int       issued;     /* a FCALL is in flight, or a window's */
    int       done;
    int       attempts;
    int       incomplete; /* history did not reach back, or the read failed */
} rec_read_t;

/* A list of message references in arrival order, with their byte count. */
typedef struct msg_list {
    pg_msg_t **v;
    size_t     n, cap, bytes;
} msg_list_t;

/* A channel's window: one history read shared by every connection that
 * resumes the channel in a burst. The read goes once per loop iteration,
 * from the lowest since gathered in that iteration; from when it is issued
 * the window also records the channel's live messages, so once answered it
 * holds every message after its since up to now, in id order, and serves
 * later resumers whose since it covers from memory, for as long as it is
 * used. Each connection still holds its own live messages from its own
 * join (pg_recovery_hold), so the window's record matters only for reuse:
 * wherever it may have a hole (the subscriber link dropped, the channel was
 * unsubscribed, it grew too big while its read was out) it serves the
 * waiters it has and takes no more. */
enum { WIN_PENDING, WIN_ISSUED, WIN_READY };

typedef struct waiter {
    struct pg_recovery *rec;   /* NULL: that recovery went away */
    size_t              idx;
} waiter_t;

typedef struct win {
    UT_hash_handle  hh;        /* in `wins` while current for its channel */
    lws_dll2_t      all;       /* in `all_wins` */
    lws_dll2_t      pend;      /* in `pending_wins` while PENDING */
    char           *channel;
    int             state;
    int             current;   /* the one new resumers of channel use */
    int             reusable;  /* its record has no hole: may serve newcomers */
    int             serving;   /* its waiters are being served: free later */
    int             doomed;    /* freed once serving ends */
    uint64_t        since;     /* covers ids after this */
    int             complete;  /* READY: history reached back to since */
    msg_list_t      msgs;      /* ISSUED: live since the issue; READY: all, id order */
    waiter_t       *w;
    size_t          nw, wcap, live_waiters;
    uint64_t        used;      /* tick it last served someone */
    pg_timer_t      idle;
} win_t;

typedef struct pg_recovery {
    lws_dll2_t  node;      /* in `waiting` while some read is not issued */
    pg_conn_t  *conn;      /* NULL: the node-wide replay, or detached */
    int         detached;  /* finished early or abandoned: free once replies are in */
    rec_read_t *reads;
    size_t      nreads, readcap;
    unsigned    outstanding;
    int         incomplete;
    msg_list_t  history;   /* what the reads returned, any order until finish */
    msg_list_t  live;      /* connection: live messages held meanwhile */
    pg_timer_t  timeout;   /* --recovery-timeout */
} pg_recovery_t;

typedef struct read_ref {
    pg_recovery_t *rec;
    size_t         idx;
} read_ref_t;

static lws_dll2_owner_t waiting;
static pg_recovery_t   *node_replay;    /* the node-wide replay in progress */
static int              replay_again;   /* another reconnect happened meanwhile */
static int              node_holding;
static int              batching;       /* pg_recovery_batch */
static msg_list_t       node_live;      /* held while node_holding */

static win_t           *wins;           /* current window per channel */
static lws_dll2_owner_t all_wins, pending_wins;
static size_t           win_bytes;      /* all windows' messages */
static uv_prepare_t    *flush_handle;   /* the end of this loop iteration */

static void kick_once(void);
static void win_detach(rec_read_t *rd);

static int list_push(msg_list_t *l, pg_msg_t *m)
{
    pg_msg_t **nv = pg_grow(l->v, l->n, &l->cap, sizeof(*nv), 8);
    if (nv == NULL)
        return -1;
    l->v = nv;
    l->v[l->n++] = pg_msg_ref(m);
    l->bytes += m->json_len;
    return 0;
}

static void list_free(msg_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        pg_msg_unref(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void rec_free(pg_recovery_t *r)
{
    lws_dll2_remove(&r->node);
    pg_wheel_cancel(&pg_node.wheel, &r->timeout);
    for (size_t i = 0; i < r->nreads; i++) {
        win_detach(&r->reads[i]);
        free(r->reads[i].channel);
    }
    free(r->reads);
    list_free(&r->history);
    list_free(&r->live);
    free(r);
}

static int cmp_id(const void *a, const void *b)
{
    const pg_msg_t *x = *(pg_msg_t * const *)a, *y = *(pg_msg_t * const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Deliver what the connection's recovery has, history first (in id order),
 * then what arrived live meanwhile, the dedupe dropping what history
 * already sent; then c is an ordinary live connection again. */
static void finish_conn(pg_recovery_t *r)
{
    pg_conn_t *c = r->conn;
    c->rec = NULL;
    c->flags &= ~PG_CONN_RECOVERING;
    r->conn = NULL;
    if (r->incomplete) {
        static const char notice[] = "{\"type\":\"recovery\",\"complete\":false}";
        pg_conn_send_control(c, notice, sizeof(notice) - 1, "pushgate.recovery");
    }
    if (r->history.n > 1)
        qsort(r->history.v, r->history.n, sizeof(*r->history.v), cmp_id);
    msg_list_t *lists[2] = { &r->history, &r->live };
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lists[k]->n; i++) {
            pg_member_t *mb = pg_hub_member(c, lists[k]->v[i]->channel);
            if (mb != NULL)
                pg_hub_deliver(mb, lists[k]->v[i]);
        }
        list_free(lists[k]);
    }
    conn_log(PG_LOG_DEBUG, c, "recovery done%s", r->incomplete ? " (incomplete)" : "");
}

static void release_node_hold(void)
{
    node_holding = 0;
    for (size_t i = 0; i < node_live.n; i++)
        pg_hub_publish(node_live.v[i]);
    list_free(&node_live);
}

static void notify_gap(pg_member_t *mb, void *arg)
{
    static const char notice[] = "{\"type\":\"recovery\",\"complete\":false}";
    pg_conn_t *c = mb->conn;
    (void)arg;
    if (c->flags & PG_CONN_GAP_TOLD)
        return;
    c->flags |= PG_CONN_GAP_TOLD;
    pg_conn_send_control(c, notice, sizeof(notice) - 1, "pushgate.recovery");
}

static void untell(pg_member_t *mb, void *arg)
{
    (void)arg;
    mb->conn->flags &= ~PG_CONN_GAP_TOLD;
}

/* The node's replay could not deliver everything its channels missed:
 * every member of such a channel is told once, as a resuming client is. */
static void tell_gaps(pg_recovery_t *r)
{
    for (size_t i = 0; i < r->nreads; i++)
        if (r->reads[i].incomplete || !r->reads[i].done)
            pg_hub_foreach_member(r->reads[i].channel, notify_gap, NULL);
    for (size_t i = 0; i < r->nreads; i++)
        if (r->reads[i].incomplete || !r->reads[i].done)
            pg_hub_foreach_member(r->reads[i].channel, untell, NULL);
}

/* The node's replay is over: deliver its history. The node hold is the
 * caller's to release: not when another reconnect asked for a replay
 * meanwhile, since what was held must wait for that replay's history too,
 * or a held message would advance the channel past the second gap. */
static void finish_node(pg_recovery_t *r)
{
    node_replay = NULL;
    if (r->history.n > 1)
        qsort(r->history.v, r->history.n, sizeof(*r->history.v), cmp_id);
    for (size_t i = 0; i < r->history.n; i++)
        pg_hub_publish(r->history.v[i]);
    if (r->incomplete)
        tell_gaps(r);
    pg_log(PG_LOG_INFO, "replayed %zu messages missed while Redis was unreachable%s",
           r->history.n, r->incomplete ? " (history did not reach back for some channels)" : "");
    list_free(&r->history);
}

/* After a node replay: the one another reconnect asked for, or the end of
 * the hold. */
static void next_node_replay(void)
{
    if (replay_again) {
        replay_again = 0;
        pg_recovery_replay_all();   /* keeps holding */
        return;
    }
    release_node_hold();
}

/* Free r if nothing refers to it any more; otherwise it waits for its
 * replies (rec_free runs from the last one). */
static void release(pg_recovery_t *r)
{
    lws_dll2_remove(&r->node);
    pg_wheel_cancel(&pg_node.wheel, &r->timeout);
    for (size_t i = 0; i < r->nreads; i++)
        win_detach(&r->reads[i]);
    r->detached = 1;
    if (r->outstanding == 0)
        rec_free(r);
}

static void maybe_finish(pg_recovery_t *r)
{
    if (r->outstanding && !r->detached)
        return;
    if (r->detached) {
        if (r->outstanding == 0)
            rec_free(r);
        return;
    }
    for (size_t i = 0; i < r->nreads; i++)
        if (!r->reads[i].done)
            return;
    if (r == node_replay) {
        finish_node(r);
        release(r);
        next_node_replay();
        return;
    }
    finish_conn(r);
    release(r);
}

/* A recovery ran out of time or room: what it has goes out now, marked
 * incomplete; replies still in flight are ignored. */
static void give_up(pg_recovery_t *r, const char *why)
{
    r->incomplete = 1;
    if (r == node_replay) {
        pg_log(PG_LOG_WARN, "history replay after reconnect %s: delivering live messages now; "
               "channels may have missed some", why);
        /* none of its channels is known to be whole: all are told */
        for (size_t i = 0; i < r->nreads; i++)
            r->reads[i].incomplete = 1;
        finish_node(r);
        release(r);
        /* what is held goes out now (the bound was reached), then a replay
         * another reconnect asked for still runs */
        release_node_hold();
        next_node_replay();
        return;
    }
    conn_log(PG_LOG_INFO, r->conn, "recovery %s", why);
    finish_conn(r);
    release(r);
}

static void timeout_cb(pg_timer_t *t)
{
    give_up(lws_container_of(t, pg_recovery_t, timeout), "timed out");
}

static void arm_timeout(pg_recovery_t *r)
{
    r->timeout.cb = timeout_cb;
    pg_wheel_arm(&pg_node.wheel, &r->timeout,
                 pg_node_tick() + (uint64_t)pg_node.cfg.recovery_timeout * PG_TICKS_PER_SEC);
}

static void read_cb(void *arg, int ok, int complete, pg_msg_t **msgs, size_t n)
{
    read_ref_t *ref = arg;
    pg_recovery_t *r = ref->rec;
    rec_read_t *rd = &r->reads[ref->idx];
    free(ref);
    r->outstanding--;
    rd->issued = 0;
    if (r->detached) {
        maybe_finish(r);
        return;
    }
    if (!ok) {
        if (++rd->attempts >= MAX_ATTEMPTS) {
            rd->done = 1;
            rd->incomplete = 1;
            r->incomplete = 1;
        } else if (r->node.owner == NULL) {
            /* retried now: an error reply leaves the link up, and nothing
             * else would kick the recovery again before it times out */
            lws_dll2_add_tail(&r->node, &waiting);
            pg_recovery_kick();
            return;
        }
        maybe_finish(r);
        return;
    }
    rd->done = 1;
    if (!complete)
        rd->incomplete = r->incomplete = 1;
    for (size_t i = 0; i < n; i++)
        if (list_push(&r->history, msgs[i]) != 0) {
            r->incomplete = 1;
            break;
        }
    maybe_finish(r);
}

/* --- windows ------------------------------------------------------------ */

static void win_free(win_t *w)
{
    if (w->serving) {
        w->doomed = 1;
        return;
    }
    if (w->current)
        HASH_DEL(wins, w);
    lws_dll2_remove(&w->all);
    lws_dll2_remove(&w->pend);
    pg_wheel_cancel(&pg_node.wheel, &w->idle);
    for (size_t i = 0; i < w->nw; i++)
        if (w->w[i].rec != NULL)
            w->w[i].rec->reads[w->w[i].idx].win = NULL;
    win_bytes -= w->msgs.bytes;
    list_free(&w->msgs);
    free(w->w);
    free(w->channel);
    free(w);
}

/* w may have a hole from now on: it stops recording and serving newcomers;
 * its waiters are still served (each holds its own live messages). */
static void win_retire(win_t *w)
{
    if (w->current) {
        HASH_DEL(wins, w);
        w->current = 0;
    }
    w->reusable = 0;
    if (w->state == WIN_READY || (w->state == WIN_PENDING && w->live_waiters == 0)) {
        win_free(w);
        return;
    }
    if (w->state == WIN_ISSUED) {
        win_bytes -= w->msgs.bytes;
        list_free(&w->msgs);
    }
}

static void win_detach(rec_read_t *rd)
{
    win_t *w = rd->win;
    if (w == NULL)
        return;
    rd->win = NULL;
    w->w[rd->wslot].rec = NULL;
    w->live_waiters--;
}

static void win_idle_cb(pg_timer_t *t)
{
    win_t *w = lws_container_of(t, win_t, idle);
    if (pg_node_tick() - w->used >= WIN_IDLE_TICKS)
        win_free(w);
    else
        pg_wheel_arm(&pg_node.wheel, &w->idle, w->used + WIN_IDLE_TICKS);
}

static void prep_closed(uv_handle_t *h)
{
    free(h);
}

static void prep_cb(uv_prepare_t *h)
{
    uv_prepare_stop(h);
    uv_close((uv_handle_t *)h, prep_closed);
    flush_handle = NULL;
    pg_recovery_flush();
}

/* Issue the pending windows' reads at the end of this loop iteration, so
 * every resumer that arrived in it shares one read. Without a loop (the
 * unit tests) the caller flushes. */
static void schedule_flush(void)
{
    if (flush_handle != NULL || pg_node.loop == NULL || pending_wins.count == 0)
        return;
    uv_prepare_t *h = malloc(sizeof(*h));
    if (h == NULL || uv_prepare_init(pg_node.loop, h) != 0) {
        free(h);
        pg_recovery_flush();    /* no batching then, but no stall either */
        return;
    }
    flush_handle = h;
    uv_prepare_start(h, prep_cb);
}

static win_t *win_new(const char *channel, uint64_t since)
{
    win_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->channel = strdup(channel)) == NULL) {
        free(w);
        return NULL;
    }
    w->state = WIN_PENDING;
    w->since = since;
    /* while the node holds live messages its record would miss them */
    w->reusable = !node_holding;
    w->idle.cb = win_idle_cb;
    HASH_ADD_KEYPTR(hh, wins, w->channel, strlen(w->channel), w);
    w->current = 1;
    lws_dll2_add_tail(&w->all, &all_wins);
    lws_dll2_add_tail(&w->pend, &pending_wins);
    return w;
}

static int win_attach(win_t *w, pg_recovery_t *r, size_t idx)
{
    waiter_t *nv = pg_grow(w->w, w->nw, &w->wcap, sizeof(*nv), 8);
    if (nv == NULL)
        return -1;
    w->w = nv;
    rec_read_t *rd = &r->reads[idx];
    w->w[w->nw] = (waiter_t){ .rec = r, .idx = idx };
    rd->win = w;
    rd->wslot = w->nw++;
    rd->issued = 1;
    w->live_waiters++;
    return 0;
}

/* Whether w (READY) holds all that a resumer from since may get: the read's
 * own since, a complete read, or a since at or after its first message
 * (what was trimmed is older than that). */
static int win_covers(const win_t *w, uint64_t since)
{
    if (since < w->since)
        return 0;
    return w->complete || since == w->since || (w->msgs.n && since >= w->msgs.v[0]->id);
}

/* Hand rd the window's messages after its since; rd is then done. */
static void win_serve(win_t *w, pg_recovery_t *r, rec_read_t *rd)
{
    size_t lo = 0, hi = w->msgs.n;
    while (lo < hi) {           /* first message with id > since */
        size_t mid = (lo + hi) / 2;
        if (w->msgs.v[mid]->id <= rd->since)
            lo = mid + 1;
        else
            hi = mid;
    }
    rd->issued = 0;
    rd->done = 1;
    if (!(w->complete || (w->msgs.n && rd->since >= w->msgs.v[0]->id)))
        rd->incomplete = r->incomplete = 1;
    for (size_t i = lo; i < w->msgs.n; i++)
        if (list_push(&r->history, w->msgs.v[i]) != 0) {
            r->incomplete = 1;
            break;
        }
    w->used = pg_node_tick();
}

/* Keep a READY window within its bounds: drop its oldest messages past
 * WIN_MAX_BYTES (it then covers from the last dropped id, exactly), and
 * the whole window when all windows pass the node cap. */
static void win_bound(win_t *w)
{
    if (win_bytes > NODE_HOLD_MAX_BYTES) {
        win_free(w);
        return;
    }
    if (w->msgs.bytes <= WIN_MAX_BYTES)
        return;
    size_t k = 0, drop = 0;
    while (k < w->msgs.n && w->msgs.bytes - drop > WIN_MAX_BYTES / 2)
        drop += w->msgs.v[k++]->json_len;
    w->since = w->msgs.v[k - 1]->id;
    w->complete = 1;    /* everything after the new since is here */
    for (size_t i = 0; i < k; i++)
        pg_msg_unref(&w->msgs.v[i]);
    memmove(w->msgs.v, w->msgs.v + k, (w->msgs.n - k) * sizeof(*w->msgs.v));
    w->msgs.n -= k;
    w->msgs.bytes -= drop;
    win_bytes -= drop;
}

/* A live message about to be fanned out: the current window of its channel
 * records it (history-backed messages only: nothing else is replayed). */
static void win_record(pg_msg_t *m)
{
    win_t *w;
    if (m->id == 0 || wins == NULL)
        return;
    HASH_FIND_STR(wins, m->channel, w);
    if (w == NULL || !w->reusable || w->state == WIN_PENDING)
        return;
    if (w->state == WIN_READY && w->msgs.n && m->id <= w->msgs.v[w->msgs.n - 1]->id)
        return;
    if (list_push(&w->msgs, m) != 0) {
        win_retire(w);
        return;
    }
    win_bytes += m->json_len;
    if (w->state == WIN_READY) {
        win_bound(w);
    } else if (w->msgs.bytes > WIN_MAX_BYTES || win_bytes > NODE_HOLD_MAX_BYTES) {
        /* recording what its read has not answered yet: stop instead */
        win_retire(w);
    }
}

static void win_read_cb(void *arg, int ok, int complete, pg_msg_t **msgs, size_t n)
{
    win_t *w = arg;
    if (!ok) {
        /* each waiter retries (or gives up) as its own read would */
        if (w->current) {
            HASH_DEL(wins, w);
            w->current = 0;
        }
        w->serving = 1;
        for (size_t i = 0; i < w->nw; i++) {
            pg_recovery_t *r = w->w[i].rec;
            if (r == NULL)
                continue;
            rec_read_t *rd = &r->reads[w->w[i].idx];
            win_detach(rd);
            rd->issued = 0;
            if (++rd->attempts >= MAX_ATTEMPTS) {
                rd->done = 1;
                rd->incomplete = 1;
                r->incomplete = 1;
                maybe_finish(r);
            } else if (r->node.owner == NULL) {
                lws_dll2_add_tail(&r->node, &waiting);
            }
        }
        w->serving = 0;
        win_free(w);
        pg_recovery_kick();
        return;
    }
    /* the read's messages and the live ones recorded since it was issued,
     * in id order, each once */
    msg_list_t all;
    memset(&all, 0, sizeof(all));
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++)
        oom = list_push(&all, msgs[i]) != 0;
    for (size_t i = 0; i < w->msgs.n && !oom; i++)
        oom = list_push(&all, w->msgs.v[i]) != 0;
    if (all.n > 1)
        qsort(all.v, all.n, sizeof(*all.v), cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < all.n; i++) {
        if (k && all.v[k - 1]->id == all.v[i]->id) {
            all.bytes -= all.v[i]->json_len;
            pg_msg_unref(&all.v[i]);
            continue;
        }
        all.v[k++] = all.v[i];
    }
    all.n = k;
    win_bytes -= w->msgs.bytes;
    list_free(&w->msgs);
    w->msgs = all;
    win_bytes += all.bytes;
    w->state = WIN_READY;
    w->complete = complete && !oom;
    /* nobody waits any more (gave up, left): no burst to keep it for */
    int keep = w->live_waiters > 0, requeued = 0;
    w->serving = 1;
    for (size_t i = 0; i < w->nw; i++) {
        pg_recovery_t *r = w->w[i].rec;
        if (r == NULL)
            continue;
        rec_read_t *rd = &r->reads[w->w[i].idx];
        win_detach(rd);
        if (!win_covers(w, rd->since)) {
            /* history was trimmed after the read's since and this since is
             * before what is left: only a read from it says whether it
             * lost anything */
            rd->issued = 0;
            if (r->node.owner == NULL)
                lws_dll2_add_tail(&r->node, &waiting);
            requeued = 1;
            continue;
        }
        win_serve(w, r, rd);
        maybe_finish(r);    /* may close others: their slots turn NULL */
    }
    w->nw = 0;
    w->serving = 0;
    if (w->doomed || !w->reusable || !w->current || !keep) {
        win_free(w);
    } else {
        w->used = pg_node_tick();
        pg_wheel_arm(&pg_node.wheel, &w->idle, w->used + WIN_IDLE_TICKS);
        win_bound(w);
    }
    if (requeued)
        pg_recovery_kick();
}

void pg_recovery_flush(void)
{
    struct lws_dll2 *d, *next;
    for (d = lws_dll2_get_head(&pending_wins); d != NULL; d = next) {
        win_t *w = lws_container_of(d, win_t, pend);
        next = d->next;
        if (w->live_waiters == 0) {
            win_free(w);
            continue;
        }
        /* after the SUBSCRIBE is confirmed, as any read (recovery.h) */
        if (!pg_commands_ready() || !pg_subscriber_has(w->channel))
            continue;
        if (pg_commands_history(w->channel, w->since, win_read_cb, w) != 0)
            continue;
        lws_dll2_remove(&w->pend);
        w->state = WIN_ISSUED;
        pg_node.metrics.history_reads_total++;
    }
}

/* Route rd (of a connection's recovery) through its channel's window:
 * served now from memory, joined to a read that is to go or out, or a new
 * window. 0, or -1 to try again later. */
static int win_route(pg_recovery_t *r, size_t idx)
{
    rec_read_t *rd = &r->reads[idx];
    win_t *w;
    HASH_FIND_STR(wins, rd->channel, w);
    if (w != NULL && w->state == WIN_READY && win_covers(w, rd->since)) {
        win_serve(w, r, rd);
        pg_node.metrics.history_reads_coalesced_total++;
        return 0;
    }
    if (w != NULL && w->state == WIN_PENDING) {
        /* one read per iteration: from the lowest since */
        if (rd->since < w->since)
            w->since = rd->since;
        if (win_attach(w, r, idx) != 0)
            return -1;
        if (w->live_waiters > 1)
            pg_node.metrics.history_reads_coalesced_total++;
        return 0;
    }
    if (w != NULL && w->state == WIN_ISSUED && rd->since >= w->since) {
        if (win_attach(w, r, idx) != 0)
            return -1;
        pg_node.metrics.history_reads_coalesced_total++;
        return 0;
    }
    /* none, or one that does not reach back to since: a new read */
    if (w != NULL)
        win_retire(w);
    if ((w = win_new(rd->channel, rd->since)) == NULL)
        return -1;
    if (win_attach(w, r, idx) != 0) {
        win_free(w);
        return -1;
    }
    schedule_flush();
    return 0;
}

/* Issue every read of r that can go now; returns 1 if some still wait. */
static int issue(pg_recovery_t *r)
{
    int waits = 0;
    for (size_t i = 0; i < r->nreads; i++) {
        rec_read_t *rd = &r->reads[i];
        if (rd->done || rd->issued)
            continue;
        if (r != node_replay) {
            /* a connection's: through the channel's window, which issues
             * its read once the link and the SUBSCRIBE are ready */
            if (win_route(r, i) != 0)
                waits = 1;
            continue;
        }
        if (!pg_commands_ready() || !pg_subscriber_has(rd->channel)) {
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
        if (pg_commands_history(rd->channel, rd->since, read_cb, ref) != 0) {
            free(ref);
            waits = 1;
            continue;
        }
        rd->issued = 1;
        r->outstanding++;
        pg_node.metrics.history_reads_total++;
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
    schedule_flush();   /* windows that waited for a link or a SUBSCRIBE */
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
    rec_read_t *n = pg_grow(r->reads, r->nreads, &r->readcap, sizeof(*n), 4);
    if (n == NULL)
        return -1;
    r->reads = n;
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
        arm_timeout(r);
    }
    if (add_read(r, channel, since) != 0)
        goto oom;
    if (r->node.owner == NULL)
        lws_dll2_add_tail(&r->node, &waiting);
    if (!batching)
        pg_recovery_kick();
    return 0;
oom:
    pg_conn_close(c, 1011, "out of memory");
    return -1;
}

void pg_recovery_batch(int on)
{
    batching = on;
    if (!on)
        pg_recovery_kick();
}

void pg_recovery_hold(pg_conn_t *c, pg_msg_t *m)
{
    pg_recovery_t *r = c->rec;
    if (r == NULL) {          /* cannot happen: RECOVERING implies rec */
        pg_conn_send(c, m);
        return;
    }
    if (r->live.bytes + m->json_len > pg_node.cfg.queue_limit_bytes) {
        /* Holding more than the connection could queue: its history is
         * too slow to come. Deliver now; the dedupe and the notice keep
         * the promise (no duplicate; the client knows of the gap). */
        give_up(r, "held more than --queue-limit-bytes");
        pg_member_t *mb = pg_hub_member(c, m->channel);
        if (mb != NULL)
            pg_hub_deliver(mb, m);
        return;
    }
    if (list_push(&r->live, m) != 0)
        pg_conn_close(c, 1011, "out of memory");
}

void pg_recovery_abandon(pg_conn_t *c)
{
    pg_recovery_t *r = c->rec;
    if (r == NULL)
        return;
    c->rec = NULL;
    c->flags &= ~PG_CONN_RECOVERING;
    r->conn = NULL;
    release(r);
}

/* --- the node-wide replay ---------------------------------------------- */

void pg_recovery_dispatch(pg_msg_t *m)
{
    if (!node_holding) {
        win_record(m);
        pg_hub_publish(m);
        return;
    }
    if (node_live.bytes + m->json_len > NODE_HOLD_MAX_BYTES || list_push(&node_live, m) != 0) {
        if (node_replay != NULL)
            give_up(node_replay, "held too much");
        else
            release_node_hold();
        pg_hub_publish(m);
    }
}

static void retire_all_windows(void)
{
    struct lws_dll2 *d, *next;
    for (d = lws_dll2_get_head(&all_wins); d != NULL; d = next) {
        next = d->next;
        win_retire(lws_container_of(d, win_t, all));
    }
}

void pg_recovery_hold_node(void)
{
    /* the link was lost: what the windows recorded has a hole now */
    retire_all_windows();
    node_holding = 1;
}

void pg_recovery_forget(const char *channel)
{
    win_t *w;
    HASH_FIND_STR(wins, channel, w);
    if (w != NULL)
        win_retire(w);
}

static void add_channel_cb(pg_channel_t *ch, void *arg)
{
    pg_recovery_t *r = arg;
    if (add_read(r, ch->name, ch->last_id) != 0) {
        /* not replayed at all: its members are told */
        r->incomplete = 1;
        pg_hub_foreach_member(ch->name, notify_gap, NULL);
        pg_hub_foreach_member(ch->name, untell, NULL);
    }
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
        release_node_hold();
        return;
    }
    pg_hub_foreach(add_channel_cb, r);
    if (r->nreads == 0) {
        rec_free(r);
        release_node_hold();
        return;
    }
    node_replay = r;
    node_holding = 1;   /* normally held since the re-SUBSCRIBE already */
    arm_timeout(r);
    lws_dll2_add_tail(&r->node, &waiting);
    pg_recovery_kick();
}

void pg_recovery_resync(const char *channel)
{
    pg_channel_t *ch = pg_hub_find(channel);
    if (ch == NULL)
        return;              /* its last member left meanwhile */
    /* held live messages reach the hub without the windows recording
     * them: their records would have a hole */
    retire_all_windows();
    node_holding = 1;
    pg_recovery_t *r = node_replay;
    if (r == NULL) {
        if ((r = calloc(1, sizeof(*r))) == NULL) {
            pg_log(PG_LOG_ERROR, "out of memory: cannot replay %s", channel);
            pg_hub_foreach_member(channel, notify_gap, NULL);
            pg_hub_foreach_member(channel, untell, NULL);
            release_node_hold();
            return;
        }
        node_replay = r;
        arm_timeout(r);
    }
    add_channel_cb(ch, r);
    if (r->node.owner == NULL)
        lws_dll2_add_tail(&r->node, &waiting);
    pg_recovery_kick();
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
    list_free(&node_live);
    node_holding = 0;
    replay_again = 0;
    /* every reply has run: no window is out */
    struct lws_dll2 *d2;
    while ((d2 = lws_dll2_get_head(&all_wins)) != NULL)
        win_free(lws_container_of(d2, win_t, all));
}
