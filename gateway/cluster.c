/* cluster.c - wanted channels kept subscribed across a Redis Cluster. See
 * cluster.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "pg_backoff.h"
#include "pg_log.h"
#include "pg_slot.h"
#include "shard.h"
#include "topology.h"
#include "pg_util.h"

/* One subscriber link to one master. */
typedef struct link {
    pg_cluster_t *c;
    pg_hostport_t addr;
    pg_shard_t   *s;
    int           up;        /* READY: may SSUBSCRIBE */
    uint64_t      ping_at;   /* uv_now a liveness PING went; 0: none out */
    int           overdue;   /* the PING's time ran out at the last check */
    int           wanted;    /* scratch of reconcile(): owns a wanted channel */
    /* Channels dropped while their SSUBSCRIBE here was unconfirmed, once
     * per SSUBSCRIBE: its confirmation is still to come, and must not be
     * taken for that of a later SSUBSCRIBE of the same name (l_subscribed). */
    char        **stale;
    size_t        nstale, stale_cap;
} link_t;

/* A wanted channel. A node may want a hundred thousand (one per user
 * online), so they live in a dense array (reconcile walks it) indexed by an
 * open-addressing hash of their names (every push names its channel). */
typedef struct chan {
    char    *name;
    size_t   len;
    unsigned slot;
    link_t  *at;         /* link subscribed or subscribing at; NULL: none */
    int      confirmed;  /* Redis confirmed the SSUBSCRIBE at `at` */
    int      lost;       /* was confirmed once, lost since: resync when back */
} chan_t;

struct pg_cluster {
    uv_loop_t       *loop;
    pg_cluster_cbs_t cbs;
    void            *ud;
    pg_hostport_t   *seeds;
    int              nseeds;
    char            *user;
    char            *password;
    unsigned         timeout_ms;
    unsigned         refresh_ms;
    pg_backoff_t     backoff;
    pg_slot_map_t    map;
    int              have_map;
    link_t         **links;
    size_t           nlinks, links_cap;
    chan_t          *chans;
    size_t           nchans, chans_cap;
    uint32_t        *index;       /* chans position + 1 by name hash; 0 = empty */
    size_t           index_cap;   /* a power of two, at least 2 * nchans */
    size_t           nconfirmed;  /* chans with confirmed set */
    pg_shard_t      *query;       /* the map read in progress, or NULL */
    char             query_host[256];
    unsigned         query_next;  /* rotates over known masters, then seeds */
    int              again;       /* a repair was asked during the read */
    int              failed;      /* the last repair left something to redo */
    uv_timer_t       timer;       /* next repair, or the map read's deadline */
    uv_timer_t       probe;       /* once a second: the links' liveness */
    unsigned         probe_ms, probe_timeout_ms;
    int              handles;     /* uv handles not closed yet (freeing) */
    int              ready;
    int              freeing;
    unsigned long    map_reads;
};

static void schedule(pg_cluster_t *c, unsigned ms);
static void reconcile(pg_cluster_t *c);
static void timer_cb(uv_timer_t *t);

/* FNV-1a: channel names are short and chosen by the node's own users, who
 * gain nothing by colliding them (a collision costs a probe, not a wrong
 * answer). */
static size_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

/* The index position holding name, or the empty one where it would go. */
static size_t index_pos(const pg_cluster_t *c, const char *name, size_t len)
{
    size_t mask = c->index_cap - 1, i = name_hash(name, len) & mask;
    while (c->index[i] != 0) {
        const chan_t *ch = &c->chans[c->index[i] - 1];
        if (ch->len == len && memcmp(ch->name, name, len) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

static chan_t *chan_find(pg_cluster_t *c, const char *name, size_t len)
{
    if (c->index_cap == 0)
        return NULL;
    uint32_t v = c->index[index_pos(c, name, len)];
    return v ? &c->chans[v - 1] : NULL;
}

/* Grow the index to cap (a power of two) and file every channel again. */
static int index_resize(pg_cluster_t *c, size_t cap)
{
    uint32_t *n = calloc(cap, sizeof(*n));
    if (n == NULL)
        return -1;
    free(c->index);
    c->index = n;
    c->index_cap = cap;
    for (size_t k = 0; k < c->nchans; k++)
        c->index[index_pos(c, c->chans[k].name, c->chans[k].len)] = (uint32_t)(k + 1);
    return 0;
}

/* Empty position i, shifting back the entries after it that probed past it
 * (linear probing's deletion without tombstones, Knuth's algorithm R). */
static void index_delete(pg_cluster_t *c, size_t i)
{
    size_t mask = c->index_cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (c->index[j] == 0)
            break;
        const chan_t *ch = &c->chans[c->index[j] - 1];
        size_t home = name_hash(ch->name, ch->len) & mask;
        /* move j back to i unless its home lies cyclically in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            c->index[i] = c->index[j];
            i = j;
        }
    }
    c->index[i] = 0;
}

static void chan_confirm(pg_cluster_t *c, chan_t *ch)
{
    if (!ch->confirmed) {
        ch->confirmed = 1;
        c->nconfirmed++;
    }
}

/* The channel no longer has a subscription it can count on. */
static void chan_lose(pg_cluster_t *c, chan_t *ch)
{
    if (ch->confirmed) {
        ch->lost = 1;
        c->nconfirmed--;
    }
    ch->confirmed = 0;
    ch->at = NULL;
}

static void update_ready(pg_cluster_t *c)
{
    int r = c->have_map && pg_slot_map_complete(&c->map) && c->nconfirmed == c->nchans;
    if (r != c->ready) {
        c->ready = r;
        if (c->cbs.ready)
            c->cbs.ready(c->ud, r);
    }
}

/* --- subscriber links ----------------------------------------------------- */

static void stale_add(link_t *l, const char *name, size_t len)
{
    char **nv = pg_grow(l->stale, l->nstale, &l->stale_cap, sizeof(*nv), 4);
    char *copy = malloc(len + 1);
    if (nv == NULL || copy == NULL) {
        free(copy);   /* not remembered: its confirmation may confirm early */
        return;
    }
    l->stale = nv;
    memcpy(copy, name, len);
    copy[len] = '\0';
    l->stale[l->nstale++] = copy;
}

/* 1, and the entry gone, when a confirmation of name is a stale one. */
static int stale_take(link_t *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->nstale; i++) {
        if (strlen(l->stale[i]) == len && memcmp(l->stale[i], name, len) == 0) {
            free(l->stale[i]);
            l->stale[i] = l->stale[--l->nstale];
            return 1;
        }
    }
    return 0;
}

/* An error took the place of some confirmation, or the connection is gone:
 * which stale SSUBSCRIBEs will still be confirmed is no longer known. */
static void stale_clear(link_t *l)
{
    for (size_t i = 0; i < l->nstale; i++)
        free(l->stale[i]);
    l->nstale = 0;
}

/* SUNSUBSCRIBE ch where it is subscribed or subscribing, if that link is
 * up (a link down has no subscriptions). */
static void chan_leave(chan_t *ch)
{
    if (ch->at == NULL || !ch->at->up)
        return;
    if (!ch->confirmed)
        stale_add(ch->at, ch->name, ch->len);
    pg_shard_sunsubscribe(ch->at->s, ch->name, ch->len);
}

static void link_free(link_t *l)
{
    pg_shard_free(l->s);
    stale_clear(l);
    free(l->stale);
    free(l);
}

static void link_remove(pg_cluster_t *c, link_t *l)
{
    for (size_t i = 0; i < c->nlinks; i++) {
        if (c->links[i] == l) {
            c->links[i] = c->links[--c->nlinks];
            break;
        }
    }
    for (size_t i = 0; i < c->nchans; i++)
        if (c->chans[i].at == l)
            chan_lose(c, &c->chans[i]);
    link_free(l);
}

static void l_up(pg_shard_t *s, void *ud)
{
    (void)s;
    link_t *l = ud;
    l->up = 1;
    reconcile(l->c);
}

static void l_down(pg_shard_t *s, void *ud, const char *why)
{
    (void)s;
    link_t *l = ud;
    pg_cluster_t *c = l->c;
    pg_log(PG_LOG_WARN, "cluster: link to %s:%d lost: %s", l->addr.host, l->addr.port, why);
    link_remove(c, l);
    /* the master may be gone for good (a failover): read the map again */
    c->failed = 1;
    schedule(c, pg_backoff_next(&c->backoff, pg_backoff_random, NULL));
    update_ready(c);
}

static void l_message(pg_shard_t *s, void *ud, const char *ch, size_t clen,
                      const char *p, size_t plen)
{
    (void)s;
    link_t *l = ud;
    l->c->cbs.message(l->c->ud, ch, clen, p, plen);
}

static void l_subscribed(pg_shard_t *s, void *ud, const char *name, size_t len)
{
    (void)s;
    link_t *l = ud;
    pg_cluster_t *c = l->c;
    /* Sent before this channel was dropped and wanted again: Redis may have
     * done the SUNSUBSCRIBE since, and the new SSUBSCRIBE not yet. Taken as
     * the confirmation, a resumer's history read could run in between and
     * miss a message published there, which no subscription delivers. */
    if (stale_take(l, name, len))
        return;
    chan_t *ch = chan_find(c, name, len);
    if (ch == NULL || ch->at != l || ch->confirmed)
        return; /* unwanted meanwhile, or moved on: the next reconcile tidies */
    chan_confirm(c, ch);
    int resync = ch->lost;
    ch->lost = 0;
    if (c->cbs.subscribed) {
        c->cbs.subscribed(c->ud, name, len, resync);
        if (c->freeing)
            return;
    }
    update_ready(c);
}

static void l_unsubscribed(pg_shard_t *s, void *ud, const char *name, size_t len, int asked)
{
    (void)s;
    link_t *l = ud;
    pg_cluster_t *c = l->c;
    /* Our own SUNSUBSCRIBEs are for channels already dropped or moved away
     * from l (at != l), or sent before an SSUBSCRIBE not yet confirmed, so
     * our state alone tells; asked is not trusted, since an error reply to
     * a SUNSUBSCRIBE would leave it pending and make a later push of the
     * same channel look like its answer. */
    (void)asked;
    chan_t *ch = chan_find(c, name, len);
    if (ch == NULL || ch->at != l || !ch->confirmed)
        return;
    /* its slot left this master: find the new owner at once */
    chan_lose(c, ch);
    update_ready(c);
    if (!c->freeing)
        schedule(c, 0);
}

static void l_error(pg_shard_t *s, void *ud, const char *text, size_t len)
{
    (void)s;
    link_t *l = ud;
    pg_cluster_t *c = l->c;
    unsigned slot;
    pg_hostport_t to;
    stale_clear(l);
    if (pg_slot_parse_redirect(text, len, &slot, &to) == PG_SLOT_NOT_REDIRECT) {
        /* Which SSUBSCRIBE it answers is not known (replies carry no name),
         * so every unconfirmed one on this link is sent again by the next
         * repair; a second confirmation of one that did go through is
         * ignored. Without this a refused channel would wait forever. */
        pg_log(PG_LOG_WARN, "cluster: %s:%d answered %.*s", l->addr.host, l->addr.port,
               (int)(len > 200 ? 200 : len), text);
        for (size_t i = 0; i < c->nchans; i++)
            if (c->chans[i].at == l && !c->chans[i].confirmed)
                c->chans[i].at = NULL;
        c->failed = 1;
        schedule(c, pg_backoff_next(&c->backoff, pg_backoff_random, NULL));
        return;
    }
    /* an SSUBSCRIBE sent on a stale map: every unconfirmed channel of that
     * slot on this link goes back to the pool, and the map is read again */
    for (size_t i = 0; i < c->nchans; i++) {
        chan_t *ch = &c->chans[i];
        if (ch->at == l && ch->slot == slot && !ch->confirmed)
            ch->at = NULL;
    }
    schedule(c, 0);
}

static const pg_shard_cbs_t link_cbs = {
    .up = l_up, .down = l_down, .message = l_message, .subscribed = l_subscribed,
    .unsubscribed = l_unsubscribed, .error = l_error,
};

/* The link to addr, opened when there is none. NULL when it cannot even
 * start (the next repair tries again). */
static link_t *link_get(pg_cluster_t *c, const pg_hostport_t *addr)
{
    for (size_t i = 0; i < c->nlinks; i++)
        if (c->links[i]->addr.port == addr->port &&
            strcmp(c->links[i]->addr.host, addr->host) == 0)
            return c->links[i];
    link_t **n = pg_grow(c->links, c->nlinks, &c->links_cap, sizeof(*n), 4);
    if (n == NULL)
        return NULL;
    c->links = n;
    link_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->c = c;
    l->addr = *addr;
    l->s = pg_shard_new(c->loop, addr->host, addr->port, c->user, c->password, &link_cbs, l);
    if (l->s == NULL || pg_shard_connect(l->s, c->timeout_ms) < 0) {
        pg_shard_free(l->s);
        free(l);
        return NULL;
    }
    c->links[c->nlinks++] = l;
    return l;
}

/* Every wanted channel subscribed at its slot's owner, and nowhere else;
 * links that own no wanted channel closed. */
static void reconcile(pg_cluster_t *c)
{
    if (c->freeing)
        return;
    for (size_t i = 0; i < c->nlinks; i++)
        c->links[i]->wanted = 0;
    for (size_t i = 0; i < c->nchans; i++) {
        chan_t *ch = &c->chans[i];
        const pg_hostport_t *o = c->have_map ? pg_slot_map_owner(&c->map, ch->slot) : NULL;
        link_t *want = o ? link_get(c, o) : NULL;
        if (o != NULL && want == NULL)
            c->failed = 1;
        if (want != NULL)
            want->wanted = 1;
        if (ch->at != NULL && ch->at != want) {
            chan_leave(ch);
            chan_lose(c, ch);
        }
        if (ch->at == NULL && want != NULL && want->up &&
            pg_shard_ssubscribe(want->s, ch->name, ch->len) == 0)
            ch->at = want;
    }
    for (size_t i = 0; i < c->nlinks;) {
        link_t *l = c->links[i];
        if (!l->wanted)
            link_remove(c, l); /* swaps the last link into slot i */
        else
            i++;
    }
    update_ready(c);
}

/* --- liveness ------------------------------------------------------------------ */

/* A link can stay connected while its master no longer answers (a host
 * gone without a reset, a stopped process, a network cut): Redis pushes
 * nothing, so nothing tells. A link silent for probe_ms is sent a PING; no
 * byte back within probe_timeout_ms drops it like any lost link, so the node
 * turns unready and the repair subscribes its channels again (with resync)
 * once a master answers. Overdue at two checks in a row, since a loop that
 * is behind runs this timer before it reads what already came. */
static void probe_cb(uv_timer_t *t)
{
    pg_cluster_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    for (size_t i = c->nlinks; i-- > 0;) {
        link_t *l = c->links[i];
        if (!l->up)
            continue;
        uint64_t rx = pg_shard_rx_ms(l->s);
        if (l->ping_at != 0 && rx >= l->ping_at) {
            l->ping_at = 0;
            l->overdue = 0;
        }
        if (l->ping_at != 0) {
            if (now - l->ping_at < c->probe_timeout_ms)
                continue;
            if (!l->overdue) {
                l->overdue = 1;
                continue;
            }
            l_down(l->s, l, "liveness probe: no answer to PING");
            if (c->freeing)
                return;
            continue;
        }
        if (now - rx >= c->probe_ms && pg_shard_ping(l->s) == 0)
            l->ping_at = now ? now : 1;
    }
}

/* --- map reads -------------------------------------------------------------- */

static void query_done(pg_cluster_t *c, int ok)
{
    pg_shard_free(c->query);
    c->query = NULL;
    if (!ok)
        c->failed = 1;
    if (c->freeing)
        return;
    if (ok)
        reconcile(c);
    if (c->freeing)
        return;
    if (c->again) {
        c->again = 0;
        schedule(c, 0);
    } else if (c->failed || !c->ready) {
        schedule(c, pg_backoff_next(&c->backoff, pg_backoff_random, NULL));
    } else {
        pg_backoff_reset(&c->backoff);
        schedule(c, c->refresh_ms);
    }
}

static void q_reply(pg_shard_t *s, void *arg, const struct redisReply *reply)
{
    (void)s;
    pg_cluster_t *c = arg;
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    if (reply == NULL) {
        pg_slot_map_free(&m);
        query_done(c, 0);
        return;
    }
    if (pg_topology_parse_slots((const redisReply *)reply, c->query_host, &m, err, sizeof err) < 0) {
        pg_log(PG_LOG_WARN, "cluster: %s:%d: %s", c->query_host, pg_shard_port(c->query), err);
        pg_slot_map_free(&m);
        query_done(c, 0);
        return;
    }
    pg_slot_map_free(&c->map);
    c->map = m; /* the struct holds the only pointer to m's shards */
    c->have_map = 1;
    c->map_reads++;
    c->failed = !pg_slot_map_complete(&c->map);
    query_done(c, 1);
}

static void q_up(pg_shard_t *s, void *ud)
{
    pg_cluster_t *c = ud;
    static const char *argv[] = { "CLUSTER", "SLOTS" };
    static const size_t argvlen[] = { 7, 5 };
    if (pg_shard_request(s, q_reply, c, 2, argv, argvlen) < 0)
        query_done(c, 0);
}

static void q_down(pg_shard_t *s, void *ud, const char *why)
{
    pg_cluster_t *c = ud;
    pg_log(PG_LOG_WARN, "cluster: map read at %s:%d failed: %s", c->query_host,
           pg_shard_port(s), why);
    query_done(c, 0);
}

static void q_message(pg_shard_t *s, void *ud, const char *ch, size_t clen,
                      const char *p, size_t plen)
{
    (void)s; (void)ud; (void)ch; (void)clen; (void)p; (void)plen;
}

static const pg_shard_cbs_t query_cbs = { .up = q_up, .down = q_down, .message = q_message };

/* Ask the next address in turn: the masters of the last map first (they
 * are the likeliest to answer), then the seeds, so a cluster that moved
 * entirely away from its seeds is still followed. */
static void start_query(pg_cluster_t *c)
{
    size_t known = c->have_map ? c->map.nshards : 0;
    size_t n = known + (size_t)c->nseeds;
    const pg_hostport_t *to;
    size_t i = c->query_next++ % n;
    to = i < known ? &c->map.shards[i] : &c->seeds[i - known];
    snprintf(c->query_host, sizeof c->query_host, "%s", to->host);
    c->query = pg_shard_new(c->loop, to->host, to->port, c->user, c->password, &query_cbs, c);
    if (c->query == NULL || pg_shard_connect(c->query, c->timeout_ms) < 0) {
        pg_shard_free(c->query);
        c->query = NULL;
        c->failed = 1;
        schedule(c, pg_backoff_next(&c->backoff, pg_backoff_random, NULL));
        return;
    }
    /* the timer now bounds the whole read, CLUSTER SLOTS included */
    uv_timer_start(&c->timer, timer_cb, c->timeout_ms * 2, 0);
}

static void timer_cb(uv_timer_t *t)
{
    pg_cluster_t *c = t->data;
    if (c->query != NULL) {
        pg_log(PG_LOG_WARN, "cluster: map read at %s timed out", c->query_host);
        query_done(c, 0);
        return;
    }
    c->failed = 0;
    start_query(c);
}

/* Repair in ms (0: at the next loop iteration). A sooner repair wins over a
 * later one; during a read, an immediate repair is remembered for after it. */
static void schedule(pg_cluster_t *c, unsigned ms)
{
    if (c->freeing)
        return;
    if (c->query != NULL) {
        if (ms == 0)
            c->again = 1;
        return;
    }
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms)
        return;
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* --- the API ---------------------------------------------------------------- */

pg_cluster_t *pg_cluster_new(uv_loop_t *loop, const pg_cluster_cfg_t *cfg,
                             const pg_cluster_cbs_t *cbs, void *ud)
{
    if (loop == NULL || cfg == NULL || cfg->seeds == NULL || cfg->nseeds < 1 ||
        cbs == NULL || cbs->message == NULL)
        return NULL;
    pg_cluster_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->cbs = *cbs;
    c->ud = ud;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
    c->refresh_ms = cfg->refresh_ms ? cfg->refresh_ms : 5000;
    pg_backoff_init(&c->backoff, cfg->backoff_base_ms ? cfg->backoff_base_ms : 100,
                    cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 5000);
    pg_slot_map_init(&c->map);
    c->seeds = calloc((size_t)cfg->nseeds, sizeof(*c->seeds));
    if (c->seeds == NULL)
        goto err;
    memcpy(c->seeds, cfg->seeds, (size_t)cfg->nseeds * sizeof(*c->seeds));
    c->nseeds = cfg->nseeds;
    if ((cfg->user != NULL && (c->user = strdup(cfg->user)) == NULL) ||
        (cfg->password != NULL && (c->password = strdup(cfg->password)) == NULL))
        goto err;
    c->probe_ms = cfg->probe_ms ? cfg->probe_ms : 5000;
    c->probe_timeout_ms = cfg->probe_timeout_ms ? cfg->probe_timeout_ms : 5000;
    /* libuv's uv_timer_init cannot fail: no half-made handle to close */
    if (uv_timer_init(loop, &c->timer) != 0 || uv_timer_init(loop, &c->probe) != 0)
        goto err;
    c->timer.data = c;
    c->probe.data = c;
    return c;
err:
    free(c->seeds);
    free(c->user);
    free(c->password);
    free(c);
    return NULL;
}

int pg_cluster_start(pg_cluster_t *c)
{
    if (c == NULL || c->freeing)
        return -1;
    schedule(c, 0);
    uv_timer_start(&c->probe, probe_cb, 1000, 1000);
    return 0;
}

int pg_cluster_subscribe(pg_cluster_t *c, const char *channel, size_t len)
{
    if (c == NULL || c->freeing || channel == NULL || len == 0)
        return -1;
    if (chan_find(c, channel, len) != NULL)
        return 0;
    if ((c->nchans + 1) * 2 > c->index_cap &&
        index_resize(c, c->index_cap ? c->index_cap * 2 : 32) < 0)
        return -1;
    chan_t *n = pg_grow(c->chans, c->nchans, &c->chans_cap, sizeof(*n), 16);
    if (n == NULL)
        return -1;
    c->chans = n;
    chan_t *ch = &c->chans[c->nchans];
    memset(ch, 0, sizeof(*ch));
    ch->name = malloc(len + 1);
    if (ch->name == NULL)
        return -1;
    memcpy(ch->name, channel, len);
    ch->name[len] = '\0';
    ch->len = len;
    ch->slot = pg_slot_of_key(channel, len);
    c->index[index_pos(c, channel, len)] = (uint32_t)(c->nchans + 1);
    c->nchans++;
    /* subscribe now when the owner's link is up; else its up or the next
     * repair does */
    const pg_hostport_t *o = c->have_map ? pg_slot_map_owner(&c->map, ch->slot) : NULL;
    link_t *l = o ? link_get(c, o) : NULL;
    if (l != NULL && l->up && pg_shard_ssubscribe(l->s, ch->name, ch->len) == 0)
        ch->at = l;
    update_ready(c);
    return 0;
}

int pg_cluster_unsubscribe(pg_cluster_t *c, const char *channel, size_t len)
{
    if (c == NULL || c->freeing)
        return -1;
    if (c->index_cap == 0)
        return -1;
    size_t pos = index_pos(c, channel, len);
    if (c->index[pos] == 0)
        return -1;
    size_t k = c->index[pos] - 1;
    chan_t *ch = &c->chans[k];
    chan_leave(ch);
    if (ch->confirmed)
        c->nconfirmed--;
    index_delete(c, pos);
    free(ch->name);
    size_t last = --c->nchans;
    if (k != last) {
        /* the last channel fills the hole: its index entry follows */
        c->chans[k] = c->chans[last];
        c->index[index_pos(c, c->chans[k].name, c->chans[k].len)] = (uint32_t)(k + 1);
    }
    update_ready(c);
    return 0;
}

int pg_cluster_has(pg_cluster_t *c, const char *channel, size_t len)
{
    if (c == NULL || c->freeing)
        return 0;
    const chan_t *ch = chan_find(c, channel, len);
    return ch != NULL && ch->confirmed;
}

size_t pg_cluster_channels(const pg_cluster_t *c)
{
    return c->nchans;
}

size_t pg_cluster_links(const pg_cluster_t *c)
{
    return c->nlinks;
}

const pg_slot_map_t *pg_cluster_map(const pg_cluster_t *c)
{
    return c->have_map ? &c->map : NULL;
}

void pg_cluster_refresh(pg_cluster_t *c)
{
    if (c != NULL)
        schedule(c, 0);
}

unsigned long pg_cluster_map_reads(const pg_cluster_t *c)
{
    return c->map_reads;
}

static void cluster_closed(uv_handle_t *h)
{
    pg_cluster_t *c = h->data;
    if (--c->handles > 0)
        return;
    for (size_t i = 0; i < c->nchans; i++)
        free(c->chans[i].name);
    free(c->chans);
    free(c->index);
    free(c->links);
    pg_slot_map_free(&c->map);
    free(c->seeds);
    free(c->user);
    free(c->password);
    free(c);
}

void pg_cluster_free(pg_cluster_t *c)
{
    if (c == NULL || c->freeing)
        return;
    c->freeing = 1;
    pg_shard_free(c->query);
    c->query = NULL;
    for (size_t i = 0; i < c->nlinks; i++)
        link_free(c->links[i]);
    c->nlinks = 0;
    c->handles = 2;
    uv_close((uv_handle_t *)&c->timer, cluster_closed);
    uv_close((uv_handle_t *)&c->probe, cluster_closed);
}
