/* test_hub.c - the real hub.c with no loop running: membership, the
 * channel_wanted transitions, fan-out, the per-membership dedupe, the id
 * bookkeeping and the hold hook. What hub.c calls below it (pg_conn_send,
 * the hooks, pg_node) are stand-ins here that record what they were given.
 * hub.c and this file are built on the counting allocator (test_alloc.h),
 * so cmocka fails a test that leaks a channel or a membership. */
#include "test_alloc.h"
#include "hub.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

pg_node_t pg_node;

/* --- stand-ins ---------------------------------------------------------- */

#define MAXREC 64

typedef struct delivery {
    pg_conn_t *c;
    pg_msg_t  *m;      /* a reference of our own, dropped at teardown */
} delivery_t;

typedef struct want {
    char name[32];
    int  on;
} want_t;

static struct {
    delivery_t sent[MAXREC];
    size_t     nsent;
    delivery_t held[MAXREC];
    size_t     nheld;
    want_t     wants[MAXREC];
    size_t     nwants;
} rec;

int pg_conn_send(pg_conn_t *c, pg_msg_t *m)
{
    assert_true(rec.nsent < MAXREC);
    rec.sent[rec.nsent++] = (delivery_t){ c, pg_msg_ref(m) };
    return 0;
}

static void hook_wanted(const char *name, int on)
{
    assert_true(rec.nwants < MAXREC);
    want_t *w = &rec.wants[rec.nwants++];
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->on = on;
}

static void hook_hold(pg_conn_t *c, pg_msg_t *m)
{
    assert_true(rec.nheld < MAXREC);
    rec.held[rec.nheld++] = (delivery_t){ c, pg_msg_ref(m) };
}

static const pg_hub_hooks_t hooks = { .channel_wanted = hook_wanted, .hold = hook_hold };

/* --- helpers ------------------------------------------------------------ */

/* The fake connections: only the hub's fields and an id matter here. Kept
 * in the fixture so teardown can end their memberships even when a case
 * stopped at a failed assertion (pg_hub_free asserts none are left). */
#define NCONNS 4
static pg_conn_t conns[NCONNS];

static pg_conn_t *conn(int i)
{
    return &conns[i];
}

/* A delivery on channel with history id (0: a live-only message). */
static pg_msg_t *must_msg(const char *channel, uint64_t id)
{
    char payload[96];
    if (id)
        snprintf(payload, sizeof(payload), "{\"data\":\"m%llu\",\"id\":\"%llu\"}",
                 (unsigned long long)id, (unsigned long long)id);
    else
        snprintf(payload, sizeof(payload), "{\"data\":\"live\"}");
    int err = 0;
    pg_msg_t *m = pg_msg_from_payload(channel, payload, strlen(payload), 1 << 20, &err);
    assert_non_null(m);
    assert_int_equal(m->id, id);
    return m;
}

static void publish(const char *channel, uint64_t id)
{
    pg_msg_t *m = must_msg(channel, id);
    pg_hub_publish(m);
    pg_msg_unref(&m);
}

static size_t sent_to(const pg_conn_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < rec.nsent; i++)
        n += rec.sent[i].c == c;
    return n;
}

static void check_want(size_t i, const char *name, int on)
{
    assert_true(i < rec.nwants);
    assert_string_equal(rec.wants[i].name, name);
    assert_int_equal(rec.wants[i].on, on);
}

/* Each case ends with this: cmocka 1.1.5 counts the blocks still
 * allocated right after the case body, before teardown runs. */
static void drop_records(void)
{
    for (size_t i = 0; i < rec.nsent; i++)
        pg_msg_unref(&rec.sent[i].m);
    for (size_t i = 0; i < rec.nheld; i++)
        pg_msg_unref(&rec.held[i].m);
    memset(&rec, 0, sizeof(rec));
}

static int setup(void **state)
{
    (void)state;
    memset(&pg_node, 0, sizeof(pg_node));
    memset(&rec, 0, sizeof(rec));
    memset(conns, 0, sizeof(conns));
    for (int i = 0; i < NCONNS; i++)
        conns[i].id = (uint64_t)i + 1;
    /* Redis's clock far in the past: pg_hub_id_floor() is max_id_seen, so a
     * new channel's last_id is predictable. id_floor_* set their own. */
    pg_node.redis_clock_offset_ms = -(int64_t)pg_wall_ms() - 3600 * 1000;
    assert_int_equal(pg_hub_init(&hooks), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NCONNS; i++)
        pg_hub_leave_all(&conns[i]);
    drop_records();
    pg_node.stopping = 1;   /* as at exit: pg_hub_free tells no one */
    pg_hub_free();
    assert_int_equal(pg_hub_count(), 0);
    return 0;
}

/* --- cases -------------------------------------------------------------- */

static void join_is_idempotent(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    pg_member_t *a = pg_hub_join(c, "news");
    assert_non_null(a);
    assert_ptr_equal(pg_hub_join(c, "news"), a);
    assert_ptr_equal(pg_hub_member(c, "news"), a);
    assert_int_equal(c->members.count, 1);
    pg_channel_t *ch = pg_hub_find("news");
    assert_non_null(ch);
    assert_int_equal(ch->members.count, 1);
    assert_ptr_equal(a->chan, ch);
    assert_ptr_equal(a->conn, c);
    assert_int_equal(pg_hub_count(), 2);   /* news + broadcast */
    pg_hub_leave_all(c);
    drop_records();
}

static void first_member_wants_last_leaving_unwants(void **state)
{
    (void)state;
    pg_conn_t *c1 = conn(0), *c2 = conn(1);
    check_want(0, "broadcast", 1);         /* from pg_hub_init */
    size_t base = rec.nwants;

    assert_non_null(pg_hub_join(c1, "a"));
    assert_non_null(pg_hub_join(c2, "a"));
    assert_non_null(pg_hub_join(c1, "a"));
    assert_int_equal(rec.nwants, base + 1);
    check_want(base, "a", 1);
    assert_int_equal(pg_node.metrics.subscribed_channels, 2);

    assert_int_equal(pg_hub_leave(c1, "a"), 0);
    assert_int_equal(rec.nwants, base + 1);         /* c2 still holds it */
    assert_int_equal(pg_hub_leave(c1, "a"), -1);   /* not a member any more */
    assert_int_equal(pg_hub_leave(c2, "a"), 0);
    assert_int_equal(rec.nwants, base + 2);
    check_want(base + 1, "a", 0);
    assert_null(pg_hub_find("a"));
    assert_int_equal(pg_node.metrics.subscribed_channels, 1);

    /* a channel that comes back is wanted again */
    assert_non_null(pg_hub_join(c2, "a"));
    check_want(base + 2, "a", 1);
    pg_hub_leave_all(c2);
    check_want(base + 3, "a", 0);
    assert_int_equal(rec.nwants, base + 4);
    drop_records();
}

static void broadcast_is_pinned_never_unwanted(void **state)
{
    (void)state;
    pg_conn_t *c1 = conn(0), *c2 = conn(1);
    assert_int_equal(rec.nwants, 1);
    check_want(0, "broadcast", 1);
    assert_true(pg_hub_find("broadcast")->pinned);
    assert_non_null(pg_hub_join(c1, "broadcast"));
    assert_non_null(pg_hub_join(c2, "broadcast"));
    pg_hub_leave_all(c1);
    assert_int_equal(pg_hub_leave(c2, "broadcast"), 0);
    assert_int_equal(rec.nwants, 1);
    pg_channel_t *b = pg_hub_find("broadcast");
    assert_non_null(b);
    assert_int_equal(b->members.count, 0);
    /* still there, still delivering to whoever joins next */
    assert_non_null(pg_hub_join(c1, "broadcast"));
    publish("broadcast", 7);
    assert_int_equal(sent_to(c1), 1);
    pg_hub_leave_all(c1);
    assert_int_equal(rec.nwants, 1);
    drop_records();
}

static void fanout_reaches_every_member_once(void **state)
{
    (void)state;
    pg_conn_t *c[4] = { conn(0), conn(1), conn(2), conn(3) };
    for (int i = 0; i < 3; i++)
        assert_non_null(pg_hub_join(c[i], "a"));
    assert_non_null(pg_hub_join(c[0], "b"));
    assert_non_null(pg_hub_join(c[3], "b"));

    pg_msg_t *m = must_msg("a", 5);
    pg_hub_publish(m);
    assert_int_equal(rec.nsent, 3);
    for (int i = 0; i < 3; i++) {
        assert_ptr_equal(rec.sent[i].c, c[i]);   /* join order */
        assert_ptr_equal(rec.sent[i].m, m);       /* one shared message */
    }
    assert_int_equal(sent_to(c[3]), 0);
    assert_int_equal(m->refs, 4);                 /* ours + one per delivery */
    pg_msg_unref(&m);

    publish("b", 6);
    assert_int_equal(rec.nsent, 5);
    assert_int_equal(sent_to(c[0]), 2);
    assert_int_equal(sent_to(c[3]), 1);
    assert_int_equal(sent_to(c[1]), 1);

    publish("nobody-here", 9);
    assert_int_equal(rec.nsent, 5);
    assert_int_equal(rec.nheld, 0);
    for (int i = 0; i < 4; i++)
        pg_hub_leave_all(c[i]);
    drop_records();
}

static void dedupe_drops_seen_ids_passes_live_only(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    pg_member_t *mb = pg_hub_join(c, "a");
    assert_non_null(mb);
    static const uint64_t ids[]  = { 5, 5, 4, 0, 0, 6, 1, 0, 6, 7 };
    static const uint64_t want[] = { 5, 0, 0, 6, 0, 7 };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        publish("a", ids[i]);
    assert_int_equal(rec.nsent, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < rec.nsent; i++)
        assert_int_equal(rec.sent[i].m->id, want[i]);
    assert_int_equal(mb->last_id, 7);

    /* the seam: a membership resumed at 10 takes only what is newer */
    mb->last_id = 10;
    pg_msg_t *old = must_msg("a", 10), *next = must_msg("a", 11), *live = must_msg("a", 0);
    pg_hub_deliver(mb, old);
    pg_hub_deliver(mb, live);
    pg_hub_deliver(mb, next);
    pg_hub_deliver(mb, next);
    assert_int_equal(rec.nsent, sizeof(want) / sizeof(want[0]) + 2);
    assert_ptr_equal(rec.sent[rec.nsent - 2].m, live);
    assert_ptr_equal(rec.sent[rec.nsent - 1].m, next);
    assert_int_equal(mb->last_id, 11);
    pg_msg_unref(&old);
    pg_msg_unref(&next);
    pg_msg_unref(&live);

    /* each membership has its own seam */
    pg_conn_t *d = conn(1);
    assert_non_null(pg_hub_join(d, "a"));
    publish("a", 8);
    assert_int_equal(sent_to(d), 1);
    assert_int_equal(sent_to(c), sizeof(want) / sizeof(want[0]) + 2);
    pg_hub_leave_all(c);
    pg_hub_leave_all(d);
    drop_records();
}

static void publish_advances_channel_and_node_ids(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    pg_channel_t *ch = pg_hub_find("a");
    assert_int_equal(ch->last_id, 0);

    publish("a", 40);
    assert_int_equal(ch->last_id, 40);
    assert_int_equal(pg_node.max_id_seen, 40);
    publish("a", 30);                       /* older: neither goes back */
    assert_int_equal(ch->last_id, 40);
    assert_int_equal(pg_node.max_id_seen, 40);
    publish("a", 0);                        /* live-only: no id to learn */
    assert_int_equal(ch->last_id, 40);

    /* a channel no one holds: the node still learns the id; no channel
     * is created for it */
    publish("elsewhere", 55);
    assert_int_equal(pg_node.max_id_seen, 55);
    assert_null(pg_hub_find("elsewhere"));
    assert_int_equal(ch->last_id, 40);

    /* a channel created now starts at the floor: the node's highest id */
    pg_conn_t *d = conn(1);
    assert_non_null(pg_hub_join(d, "late"));
    assert_int_equal(pg_hub_find("late")->last_id, 55);
    pg_hub_leave_all(c);
    pg_hub_leave_all(d);
    drop_records();
}

static void recovering_conn_gets_hold_not_send(void **state)
{
    (void)state;
    pg_conn_t *r = conn(0), *l = conn(1);
    r->flags |= PG_CONN_RECOVERING;
    pg_member_t *rm = pg_hub_join(r, "a");
    assert_non_null(rm);
    assert_non_null(pg_hub_join(l, "a"));
    rm->last_id = 3;

    publish("a", 4);
    publish("a", 2);     /* the hold takes even what the dedupe would drop: */
    publish("a", 0);     /* recovery.c merges and dedupes when it ends */
    assert_int_equal(rec.nheld, 3);
    for (size_t i = 0; i < rec.nheld; i++)
        assert_ptr_equal(rec.held[i].c, r);
    assert_int_equal(rec.held[0].m->id, 4);
    assert_int_equal(rec.held[1].m->id, 2);
    assert_int_equal(rec.held[2].m->id, 0);
    assert_int_equal(sent_to(r), 0);
    assert_int_equal(sent_to(l), 2);    /* 4, then 2 is old for it */
    assert_int_equal(rm->last_id, 3);    /* holding delivers nothing yet */

    /* recovery over: what was held goes through the dedupe */
    r->flags &= ~PG_CONN_RECOVERING;
    for (size_t i = 0; i < 3; i++)
        pg_hub_deliver(rm, rec.held[i].m);
    assert_int_equal(sent_to(r), 2);    /* 4 and the live-only one */
    assert_int_equal(rm->last_id, 4);
    pg_hub_leave_all(r);
    pg_hub_leave_all(l);
    drop_records();
}

static void leave_all_frees_everything(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0), *d = conn(1);
    static const char *names[] = { "broadcast", "a", "b", "c", "user:42" };
    for (size_t i = 0; i < 5; i++)
        assert_non_null(pg_hub_join(c, names[i]));
    assert_non_null(pg_hub_join(d, "a"));
    assert_int_equal(c->members.count, 5);
    assert_int_equal(pg_hub_count(), 5);
    size_t base = rec.nwants;

    pg_hub_leave_all(c);
    assert_int_equal(c->members.count, 0);
    assert_null(lws_dll2_get_head(&c->members));
    assert_int_equal(pg_hub_count(), 2);          /* broadcast, a (d) */
    assert_non_null(pg_hub_find("a"));
    assert_int_equal(pg_hub_find("a")->members.count, 1);
    assert_int_equal(pg_hub_find("broadcast")->members.count, 0);
    assert_int_equal(rec.nwants, base + 3);       /* b, c, user:42 off */
    for (size_t i = base; i < rec.nwants; i++)
        assert_int_equal(rec.wants[i].on, 0);

    pg_hub_leave_all(c);                          /* nothing left: no-op */
    pg_hub_leave_all(d);
    assert_int_equal(pg_hub_count(), 1);
    /* teardown's pg_hub_free and cmocka's block check prove nothing leaked */
    drop_records();
}

static void join_out_of_memory_leaves_nothing_behind(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    int failures = 0;
    for (long n = 0; n < 16; n++) {
        size_t base = rec.nwants;
        pg_test_fail_after = n;
        pg_member_t *mb = pg_hub_join(c, "a");
        pg_test_fail_after = -1;
        if (mb != NULL)
            break;
        failures++;
        /* nothing half-built: no channel, no membership, wants balanced */
        assert_null(pg_hub_find("a"));
        assert_int_equal(c->members.count, 0);
        assert_int_equal(pg_hub_count(), 1);
        int on = 0;
        for (size_t i = base; i < rec.nwants; i++)
            on += rec.wants[i].on ? 1 : -1;
        assert_int_equal(on, 0);
    }
    assert_true(failures >= 3);   /* the channel, its name, the membership */
    assert_int_equal(c->members.count, 1);
    pg_hub_leave_all(c);
    drop_records();
}

static void id_floor_is_larger_of_max_seen_and_clock(void **state)
{
    (void)state;
    /* clock in sync: (now - 1 s margin) * 1000 */
    pg_node.redis_clock_offset_ms = 0;
    pg_node.max_id_seen = 0;
    uint64_t before = pg_wall_ms();
    uint64_t f = pg_hub_id_floor();
    uint64_t after = pg_wall_ms();
    assert_in_range(f, (before - 1000) * 1000, (after - 1000) * 1000);

    /* an id seen that is ahead of the clock wins */
    pg_node.max_id_seen = (after + 60000) * 1000 + 7;
    assert_int_equal(pg_hub_id_floor(), pg_node.max_id_seen);

    /* Redis's clock 5 s ahead of ours: the clock wins over an older id */
    pg_node.max_id_seen = 123;
    pg_node.redis_clock_offset_ms = 5000;
    before = pg_wall_ms();
    f = pg_hub_id_floor();
    after = pg_wall_ms();
    assert_in_range(f, (before + 4000) * 1000, (after + 4000) * 1000);

    /* a new channel starts its replay point there */
    pg_conn_t *c = conn(0);
    before = pg_wall_ms();
    assert_non_null(pg_hub_join(c, "fresh"));
    after = pg_wall_ms();
    assert_in_range(pg_hub_find("fresh")->last_id, (before + 4000) * 1000,
                    (after + 4000) * 1000);
    pg_hub_leave_all(c);

    /* a clock estimate at or before the epoch gives 0, not a wrapped id */
    pg_node.max_id_seen = 0;
    pg_node.redis_clock_offset_ms = -(int64_t)pg_wall_ms();
    assert_int_equal(pg_hub_id_floor(), 0);
    drop_records();
}

int main(void)
{
    pg_log_level = PG_LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(join_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(first_member_wants_last_leaving_unwants, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_is_pinned_never_unwanted, setup, teardown),
        cmocka_unit_test_setup_teardown(fanout_reaches_every_member_once, setup, teardown),
        cmocka_unit_test_setup_teardown(dedupe_drops_seen_ids_passes_live_only, setup, teardown),
        cmocka_unit_test_setup_teardown(publish_advances_channel_and_node_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(recovering_conn_gets_hold_not_send, setup, teardown),
        cmocka_unit_test_setup_teardown(leave_all_frees_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(join_out_of_memory_leaves_nothing_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(id_floor_is_larger_of_max_seen_and_clock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
