/* test_recovery.c - the real recovery.c and hub.c with no loop running:
 * the merge of history and held live messages, the read gating on
 * SUBSCRIBE, retries, the three ways a recovery ends incomplete (failed
 * reads, history that does not reach back, timeout or too much held),
 * abandonment, and the node-wide replay after a reconnect with its cap.
 *
 * What recovery.c calls below it is a stand-in here: the command link
 * records each history read (callback and argument) so a case answers it
 * later, in any order, or fails it; the subscriber link says "subscribed"
 * per channel as the case decides; the transport writes each connection's
 * deliveries into one ordered log; the clock is a counter driving a real
 * pg_wheel. Built on the counting allocator (test_alloc.h), so cmocka
 * fails a case that leaves a recovery, a read or a message reference
 * behind: each case ends with every read answered and nothing waiting. */
#include "test_alloc.h"
#include "recovery.h"
#include "commands.h"
#include "subscriber.h"
#include "hub.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

pg_node_t pg_node;

#define MAXREC 256
#define NCONNS 5
#define TICK0  1000

static const char notice[] = "{\"type\":\"recovery\",\"complete\":false}";

/* --- stand-ins ---------------------------------------------------------- */

static uint64_t ticks;

uint64_t pg_node_tick(void)
{
    return ticks;
}

typedef struct read_call {
    char          channel[32];
    uint64_t      since;
    pg_history_cb cb;
    void         *arg;
    int           answered;
} read_call_t;

/* One entry of the transport's log: a message, a control frame or a close. */
typedef struct out {
    pg_conn_t *c;
    pg_msg_t  *m;        /* a reference of our own; NULL for the others */
    int        notice;   /* the recovery-incomplete control frame */
    uint16_t   close;    /* pg_conn_close's code */
} out_t;

static struct {
    int         cmd_ready;
    char        subscribed[8][32];
    read_call_t reads[MAXREC];
    size_t      nreads;
    out_t       out[MAXREC];
    size_t      nout;
} st;

int pg_commands_ready(void)
{
    return st.cmd_ready;
}

int pg_commands_history(const char *channel, uint64_t since, pg_history_cb cb, void *arg)
{
    assert_true(st.nreads < MAXREC);
    read_call_t *r = &st.reads[st.nreads++];
    snprintf(r->channel, sizeof(r->channel), "%s", channel);
    r->since = since;
    r->cb = cb;
    r->arg = arg;
    r->answered = 0;
    return 0;
}

int pg_subscriber_has(const char *name)
{
    for (size_t i = 0; i < 8; i++)
        if (strcmp(st.subscribed[i], name) == 0)
            return 1;
    return 0;
}

int pg_conn_send(pg_conn_t *c, pg_msg_t *m)
{
    assert_true(st.nout < MAXREC);
    st.out[st.nout++] = (out_t){ .c = c, .m = pg_msg_ref(m) };
    return 0;
}

int pg_conn_send_control(pg_conn_t *c, const char *json, size_t len, const char *sse_event)
{
    assert_true(st.nout < MAXREC);
    /* the only control frame recovery.c sends */
    assert_int_equal(len, strlen(notice));
    assert_memory_equal(json, notice, len);
    assert_string_equal(sse_event, "pushgate.recovery");
    st.out[st.nout++] = (out_t){ .c = c, .notice = 1 };
    return 0;
}

void pg_conn_close(pg_conn_t *c, uint16_t code, const char *reason)
{
    (void)reason;
    assert_true(st.nout < MAXREC);
    c->flags |= PG_CONN_CLOSE_ASAP;
    st.out[st.nout++] = (out_t){ .c = c, .close = code };
}

/* --- helpers ------------------------------------------------------------ */

static pg_conn_t conns[NCONNS];

static pg_conn_t *conn(int i)
{
    return &conns[i];
}

static void subscribe(const char *name)
{
    for (size_t i = 0; i < 8; i++)
        if (st.subscribed[i][0] == '\0') {
            snprintf(st.subscribed[i], sizeof(st.subscribed[i]), "%s", name);
            return;
        }
    fail_msg("too many subscriptions");
}

static pg_msg_t *must_msg(const char *channel, uint64_t id)
{
    char payload[96];
    snprintf(payload, sizeof(payload), "{\"data\":\"m%llu\",\"id\":\"%llu\"}",
             (unsigned long long)id, (unsigned long long)id);
    int err = 0;
    pg_msg_t *m = pg_msg_from_payload(channel, payload, strlen(payload), 1 << 20, &err);
    assert_non_null(m);
    assert_int_equal(m->id, id);
    return m;
}

/* A live message from the subscriber link, as node.c routes it. */
static void live(const char *channel, uint64_t id)
{
    pg_msg_t *m = must_msg(channel, id);
    pg_recovery_dispatch(m);
    pg_msg_unref(&m);
}

/* The end of a loop iteration: the node flushes the reads gathered in it
 * (recovery.c's own prepare handle; there is no loop here). */
static void end_iteration(void)
{
    pg_recovery_flush();
}

/* A link or a subscription changed, then the iteration ends. */
static void kick(void)
{
    pg_recovery_kick();
    end_iteration();
}

/* Join c to channel at since and start its recovery, as session.c does,
 * without ending the loop iteration (several resume in one). */
static void must_join_recover(pg_conn_t *c, const char *channel, uint64_t since)
{
    pg_member_t *mb = pg_hub_join(c, channel);
    assert_non_null(mb);
    mb->last_id = since;
    assert_int_equal(pg_recovery_add(c, channel, since), 0);
    /* recovering, unless a kept window served it at once */
    assert_true((c->flags & PG_CONN_RECOVERING) || c->rec == NULL);
}

/* The same, alone in its loop iteration. */
static void must_recover(pg_conn_t *c, const char *channel, uint64_t since)
{
    must_join_recover(c, channel, since);
    end_iteration();
}

/* The i-th history read issued, checked for channel and since. */
static read_call_t *must_read(size_t i, const char *channel, uint64_t since)
{
    assert_true(i < st.nreads);
    read_call_t *r = &st.reads[i];
    assert_string_equal(r->channel, channel);
    assert_int_equal(r->since, since);
    assert_false(r->answered);
    return r;
}

/* The index of the read issued for channel (each case knows it is one). */
static size_t read_of(const char *channel)
{
    for (size_t i = 0; i < st.nreads; i++)
        if (!st.reads[i].answered && strcmp(st.reads[i].channel, channel) == 0)
            return i;
    fail_msg("no read issued for %s", channel);
    return 0;
}

/* The index of the unanswered read of channel from since. */
static size_t read_from(const char *channel, uint64_t since)
{
    for (size_t i = 0; i < st.nreads; i++)
        if (!st.reads[i].answered && strcmp(st.reads[i].channel, channel) == 0 &&
            st.reads[i].since == since)
            return i;
    fail_msg("no read issued for %s from %llu", channel, (unsigned long long)since);
    return 0;
}

/* Answer read i: ok, whether history reached back, and its entries (the
 * messages are borrowed by the callback, as hiredis replies are). */
static void answer(size_t i, int ok, int complete, const uint64_t *ids, size_t n)
{
    assert_true(i < st.nreads);
    read_call_t *r = &st.reads[i];
    assert_false(r->answered);
    r->answered = 1;
    pg_msg_t *msgs[32];
    assert_true(n <= 32);
    for (size_t k = 0; k < n; k++)
        msgs[k] = must_msg(r->channel, ids[k]);
    r->cb(r->arg, ok, complete, msgs, n);
    for (size_t k = 0; k < n; k++)
        pg_msg_unref(&msgs[k]);
    end_iteration();
}

#define IDS(...) (const uint64_t[]){ __VA_ARGS__ }, \
    sizeof((const uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t)
#define HISTORY(i, ...) answer((i), 1, 1, IDS(__VA_ARGS__))
#define HISTORY_PARTIAL(i, ...) answer((i), 1, 0, IDS(__VA_ARGS__))
#define EMPTY_HISTORY(i) answer((i), 1, 1, NULL, 0)
#define FAIL_READ(i) answer((i), 0, 0, NULL, 0)

/* What c got, in order: ids, "N" for the incomplete notice, "X<code>" for
 * a close; space-separated ("" for nothing). */
static const char *log_of(const pg_conn_t *c)
{
    static char buf[2048];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < st.nout; i++) {
        const out_t *o = &st.out[i];
        if (o->c != c)
            continue;
        const char *sep = off ? " " : "";
        if (o->m != NULL)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%llu", sep,
                                    (unsigned long long)o->m->id);
        else if (o->notice)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%sN", sep);
        else
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%sX%u", sep, o->close);
        assert_true(off < sizeof(buf));
    }
    return buf;
}

static void advance_to(uint64_t t)
{
    ticks = t;
    pg_wheel_advance(&pg_node.wheel, t);
}

static uint64_t timeout_ticks(void)
{
    return (uint64_t)pg_node.cfg.recovery_timeout * PG_TICKS_PER_SEC;
}

static void drop_log(void)
{
    for (size_t i = 0; i < st.nout; i++)
        pg_msg_unref(&st.out[i].m);
    st.nout = 0;
}

/* The end of every case: every read answered, nothing recovering, the log
 * dropped and the memberships ended. Deliberately no abandon and no
 * pg_recovery_shutdown: a recovery still alive here is a leak cmocka
 * reports right after the case body. */
static void end_case(void)
{
    for (size_t i = 0; i < st.nreads; i++)
        assert_true(st.reads[i].answered);
    for (int i = 0; i < NCONNS; i++) {
        assert_null(conns[i].rec);
        assert_false(conns[i].flags & PG_CONN_RECOVERING);
        pg_hub_leave_all(&conns[i]);
    }
    /* a window kept for stragglers (broadcast is never unsubscribed) goes
     * once unused for its 10 s */
    advance_to(ticks + 10 * PG_TICKS_PER_SEC);
    drop_log();
}

/* As node.c wires it: a channel the node stops subscribing to loses its
 * window (what is published meanwhile would be missing from it). */
static void channel_wanted(const char *name, int on)
{
    if (!on)
        pg_recovery_forget(name);
}

static const pg_hub_hooks_t hub_hooks = { .channel_wanted = channel_wanted,
                                          .hold = pg_recovery_hold };

static int setup(void **state)
{
    (void)state;
    memset(&pg_node, 0, sizeof(pg_node));
    memset(&st, 0, sizeof(st));
    memset(conns, 0, sizeof(conns));
    for (int i = 0; i < NCONNS; i++)
        conns[i].id = (uint64_t)i + 1;
    st.cmd_ready = 1;
    pg_node.cfg.recovery_timeout = 5;
    pg_node.cfg.queue_limit_bytes = 1 << 20;
    /* Redis's clock far in the past: a new channel starts at max_id_seen (0). */
    pg_node.redis_clock_offset_ms = -(int64_t)pg_wall_ms() - 3600 * 1000;
    ticks = TICK0;
    assert_int_equal(pg_wheel_init(&pg_node.wheel, 64, ticks), 0);
    assert_int_equal(pg_hub_init(&hub_hooks), 0);
    return 0;
}

/* Also after a failed assertion: release what a case left, as the node's
 * exit does (links stop and fail what is in flight; then shutdown). */
static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NCONNS; i++)
        pg_recovery_abandon(&conns[i]);
    for (size_t i = 0; i < st.nreads; i++)
        if (!st.reads[i].answered)
            FAIL_READ(i);
    pg_recovery_shutdown();
    for (int i = 0; i < NCONNS; i++)
        pg_hub_leave_all(&conns[i]);
    drop_log();
    pg_node.stopping = 1;
    pg_hub_free();
    pg_wheel_free(&pg_node.wheel);
    return 0;
}

/* --- one connection's recovery ------------------------------------------ */

static void recovery_seam_no_gap_no_dup(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    must_recover(c, "a", 0);
    must_read(0, "a", 0);
    assert_int_equal(st.nreads, 1);

    live("a", 3);                 /* published after the read was issued */
    live("a", 4);
    assert_string_equal(log_of(c), "");
    HISTORY(0, 1, 2, 3);          /* the read saw 3 too */
    assert_string_equal(log_of(c), "1 2 3 4");
    assert_null(c->rec);
    assert_false(c->flags & PG_CONN_RECOVERING);

    live("a", 5);                 /* an ordinary live connection again */
    live("a", 4);
    assert_string_equal(log_of(c), "1 2 3 4 5");
    end_case();
}

static void since_is_respected_at_the_seam(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    must_recover(c, "a", 7);
    must_read(0, "a", 7);
    live("a", 9);
    /* history answers with only what is newer than since; an entry at or
     * below it (a history that ignores since) is still not sent twice */
    HISTORY(0, 7, 8, 9);
    assert_string_equal(log_of(c), "8 9");
    end_case();
}

static void two_channels_merge_into_one_id_order(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    subscribe("b");
    must_recover(c, "a", 0);
    must_recover(c, "b", 0);
    assert_int_equal(st.nreads, 2);
    size_t ra = read_of("a"), rb = read_of("b");
    must_read(ra, "a", 0);
    must_read(rb, "b", 0);

    live("b", 7);
    live("a", 8);
    HISTORY(rb, 2, 5, 6, 7);      /* b answers first */
    assert_string_equal(log_of(c), "");
    assert_true(c->flags & PG_CONN_RECOVERING);
    HISTORY(ra, 1, 3, 4);
    assert_string_equal(log_of(c), "1 2 3 4 5 6 7 8");
    end_case();
}

static void read_waits_for_subscribe_confirmation(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    must_recover(c, "a", 0);
    assert_int_equal(st.nreads, 0);     /* SUBSCRIBE not confirmed yet */
    kick();
    assert_int_equal(st.nreads, 0);

    subscribe("a");
    assert_int_equal(st.nreads, 0);     /* nothing until the next kick */
    st.cmd_ready = 0;
    kick();
    assert_int_equal(st.nreads, 0);     /* nor while the command link is down */
    st.cmd_ready = 1;
    kick();
    must_read(0, "a", 0);
    assert_int_equal(st.nreads, 1);
    kick();                 /* in flight: not issued twice */
    assert_int_equal(st.nreads, 1);

    live("a", 2);
    HISTORY(0, 1);
    assert_string_equal(log_of(c), "1 2");
    end_case();
}

static void failed_read_retried_then_succeeds_complete(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    must_recover(c, "a", 4);
    FAIL_READ(0);
    /* retried at once: an error reply leaves the link up, and nothing else
     * would kick the recovery before its timeout */
    assert_int_equal(st.nreads, 2);
    assert_true(c->flags & PG_CONN_RECOVERING);
    live("a", 7);
    must_read(1, "a", 4);
    HISTORY(1, 5, 6, 7);
    assert_string_equal(log_of(c), "5 6 7");   /* no notice */
    end_case();
}

static void three_failed_reads_notice_then_what_there_is(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    subscribe("b");
    must_recover(c, "a", 0);
    must_recover(c, "b", 0);
    size_t rb = read_of("b");
    HISTORY(rb, 3);
    live("a", 5);
    for (int attempt = 0; attempt < 3; attempt++) {
        size_t ra = read_of("a");
        must_read(ra, "a", 0);
        assert_string_equal(log_of(c), "");
        FAIL_READ(ra);
        kick();
    }
    assert_int_equal(st.nreads, 4);     /* b once, a three times */
    assert_string_equal(log_of(c), "N 3 5");
    assert_null(c->rec);
    end_case();
}

static void incomplete_history_notice_once(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    subscribe("b");
    must_recover(c, "a", 10);
    must_recover(c, "b", 10);
    live("b", 31);
    HISTORY_PARTIAL(read_of("a"), 20, 22);
    HISTORY_PARTIAL(read_of("b"), 21);
    assert_string_equal(log_of(c), "N 20 21 22 31");
    end_case();
}

static void timeout_delivers_held_with_notice_late_reply_ignored(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0), *other = conn(1);
    subscribe("a");
    must_recover(c, "a", 5);
    assert_non_null(pg_hub_join(other, "a"));
    live("a", 10);
    live("a", 11);
    assert_string_equal(log_of(other), "10 11");

    advance_to(TICK0 + timeout_ticks() - 1);
    assert_string_equal(log_of(c), "");
    assert_true(c->flags & PG_CONN_RECOVERING);
    advance_to(TICK0 + timeout_ticks());
    assert_string_equal(log_of(c), "N 10 11");
    assert_null(c->rec);
    assert_false(c->flags & PG_CONN_RECOVERING);

    HISTORY(0, 6, 7, 10);               /* too late: dropped, and freed */
    assert_string_equal(log_of(c), "N 10 11");
    live("a", 12);
    assert_string_equal(log_of(c), "N 10 11 12");
    assert_int_equal(pg_node.wheel.armed, 0);
    end_case();
}

static void timeout_while_waiting_for_subscribe(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    must_recover(c, "a", 0);            /* never subscribed: never issued */
    live("a", 3);
    advance_to(TICK0 + timeout_ticks());
    assert_string_equal(log_of(c), "N 3");
    subscribe("a");
    kick();                 /* nothing waits any more */
    assert_int_equal(st.nreads, 0);
    end_case();
}

static void holding_past_queue_limit_ends_incomplete(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    pg_msg_t *probe = must_msg("a", 10);
    /* room for two held messages of this size, not three */
    pg_node.cfg.queue_limit_bytes = probe->json_len * 5 / 2;
    pg_msg_unref(&probe);
    subscribe("a");
    must_recover(c, "a", 0);
    live("a", 10);
    live("a", 11);
    assert_string_equal(log_of(c), "");
    live("a", 12);
    assert_string_equal(log_of(c), "N 10 11 12");
    assert_false(c->flags & PG_CONN_RECOVERING);

    HISTORY(0, 1, 2);                   /* the read still in flight: ignored */
    assert_string_equal(log_of(c), "N 10 11 12");
    assert_int_equal(pg_node.wheel.armed, 0);
    end_case();
}

static void abandon_with_read_in_flight_then_reply(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0), *d = conn(1);
    subscribe("a");
    must_recover(c, "a", 0);
    must_recover(d, "b", 0);            /* b unsubscribed: its read waits */
    live("a", 4);
    pg_recovery_abandon(c);
    pg_recovery_abandon(d);
    assert_null(c->rec);
    assert_false(c->flags & PG_CONN_RECOVERING);
    assert_int_equal(pg_node.wheel.armed, 0);
    pg_recovery_abandon(c);             /* idempotent */

    /* the connection is gone (its memberships too) before the reply */
    pg_hub_leave_all(c);
    HISTORY(0, 1, 2, 3);
    subscribe("b");
    kick();                 /* d's read was dropped, not issued */
    assert_int_equal(st.nreads, 1);
    assert_string_equal(log_of(c), "");
    assert_string_equal(log_of(d), "");
    end_case();                         /* cmocka: nothing left allocated */
}

static void recovery_out_of_memory_closes_1011(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("a");
    assert_non_null(pg_hub_join(c, "a"));
    /* the recovery itself, its reads array, the channel copy */
    for (long n = 0; n < 3; n++) {
        st.nout = 0;
        c->flags = 0;
        pg_test_fail_after = n;
        int rc = pg_recovery_add(c, "a", 0);
        pg_test_fail_after = -1;
        assert_int_equal(rc, -1);
        assert_string_equal(log_of(c), "X1011");
        assert_int_equal(st.nreads, 0);
        /* what was built before the failure stays on c until the
         * session's teardown abandons it, as it does for a closed one */
        pg_recovery_abandon(c);
        assert_null(c->rec);
    }
    end_case();
}

/* --- the node-wide replay ----------------------------------------------- */

static void node_replay_history_then_held_in_order(void **state)
{
    (void)state;
    pg_conn_t *c1 = conn(0), *c2 = conn(1);
    assert_non_null(pg_hub_join(c1, "a"));
    assert_non_null(pg_hub_join(c2, "a"));
    assert_non_null(pg_hub_join(c2, "b"));
    subscribe("broadcast");
    subscribe("a");
    live("a", 10);                      /* not holding: straight through */
    live("b", 20);
    assert_string_equal(log_of(c1), "10");
    assert_string_equal(log_of(c2), "10 20");

    /* the subscriber link dropped; it reconnects and re-subscribes */
    pg_recovery_hold_node();
    live("a", 13);
    live("b", 22);
    live("a", 14);
    assert_string_equal(log_of(c1), "10");
    pg_recovery_replay_all();
    /* b's SUBSCRIBE is not confirmed yet: its read waits for it */
    assert_int_equal(st.nreads, 2);
    size_t ra = read_of("a"), rbr = read_of("broadcast");
    must_read(ra, "a", 10);
    must_read(rbr, "broadcast", 0);
    subscribe("b");
    kick();
    size_t rb = read_of("b");
    must_read(rb, "b", 20);

    HISTORY(ra, 11, 12, 13);
    EMPTY_HISTORY(rbr);
    live("b", 23);                      /* still held */
    assert_string_equal(log_of(c2), "10 20");
    HISTORY(rb, 21, 22);
    assert_string_equal(log_of(c1), "10 11 12 13 14");
    assert_string_equal(log_of(c2), "10 20 11 12 13 21 22 14 23");
    assert_int_equal(pg_hub_find("a")->last_id, 14);
    assert_int_equal(pg_hub_find("b")->last_id, 23);

    live("a", 15);                      /* the hold is over */
    assert_string_equal(log_of(c1), "10 11 12 13 14 15");
    end_case();
}

static void node_replay_reaches_a_recovering_connection_through_its_hold(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    subscribe("broadcast");
    subscribe("a");
    live("a", 10);                      /* channel "a" does not exist yet */
    must_recover(c, "a", 10);
    size_t rc = read_of("a");
    pg_recovery_hold_node();
    live("a", 12);
    pg_recovery_replay_all();
    size_t ra = st.nreads;
    while (ra-- > 0 && strcmp(st.reads[ra].channel, "a") != 0)
        ;                               /* the node's read of a: the latest */
    assert_true(ra > rc && ra < st.nreads);
    must_read(ra, "a", 10);
    EMPTY_HISTORY(read_of("broadcast"));
    HISTORY(ra, 11, 12);                /* published to the hub: held for c */
    assert_string_equal(log_of(c), "");
    HISTORY(rc, 11);                    /* c's own read ran earlier */
    assert_string_equal(log_of(c), "11 12");
    end_case();
}

static void node_replay_timeout_releases_hold(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    subscribe("broadcast");
    subscribe("a");
    pg_recovery_hold_node();
    live("a", 5);
    pg_recovery_replay_all();
    EMPTY_HISTORY(read_of("broadcast"));
    advance_to(TICK0 + timeout_ticks() - 1);
    assert_string_equal(log_of(c), "");
    advance_to(TICK0 + timeout_ticks());
    /* late beats never; a's read never came back: its members are told */
    assert_string_equal(log_of(c), "N 5");
    HISTORY(read_of("a"), 3, 4, 5);        /* ignored */
    assert_string_equal(log_of(c), "N 5");
    live("a", 6);
    assert_string_equal(log_of(c), "N 5 6");
    end_case();
}

static void node_replay_gap_told_once_per_member(void **state)
{
    (void)state;
    pg_conn_t *c1 = conn(0), *c2 = conn(1), *c3 = conn(2);
    assert_non_null(pg_hub_join(c1, "a"));
    assert_non_null(pg_hub_join(c1, "b"));
    assert_non_null(pg_hub_join(c2, "b"));
    assert_non_null(pg_hub_join(c3, "x"));
    subscribe("broadcast");
    subscribe("a");
    subscribe("b");
    subscribe("x");
    for (int round = 0; round < 2; round++) {
        drop_log();
        pg_recovery_hold_node();
        pg_recovery_replay_all();
        EMPTY_HISTORY(read_of("broadcast"));
        EMPTY_HISTORY(read_of("x"));                /* x reached back */
        HISTORY_PARTIAL(read_of("a"), 11u + (uint64_t)round * 10);  /* trimmed */
        for (int attempt = 0; attempt < 3; attempt++) {     /* b: never read */
            FAIL_READ(read_of("b"));
            kick();
        }
        /* history first, then the notice, once per connection; only to
         * members of a channel that missed something; and again on the
         * next replay (the told mark lasts one pass) */
        assert_string_equal(log_of(c1), round == 0 ? "11 N" : "21 N");
        assert_string_equal(log_of(c2), "N");
        assert_string_equal(log_of(c3), "");
        for (int i = 0; i < NCONNS; i++)
            assert_false(conns[i].flags & PG_CONN_GAP_TOLD);
    }
    end_case();
}

/* Two cases that failed against recovery.c as of 5ff309b (the second
 * reconnect's gap was lost, or its replay never ran). They leave
 * replay_again set if they fail, so they run last. */

/* A second reconnect while the first replay's reads are in flight: what
 * the channels missed in the second outage must still be replayed before
 * the live messages held since. Scenario: 10 seen; outage 1 misses 11; the
 * replay reads a from 10, and Redis answers [11] before outage 2, which
 * misses 12; after the re-subscribe, 13 arrives live and is held. */
static void second_reconnect_during_replay_replays_its_gap(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    subscribe("broadcast");
    subscribe("a");
    live("a", 10);
    pg_recovery_hold_node();            /* reconnect 1 */
    pg_recovery_replay_all();
    size_t r1 = read_of("a");
    must_read(r1, "a", 10);
    EMPTY_HISTORY(read_of("broadcast"));
    pg_recovery_hold_node();            /* reconnect 2 */
    live("a", 13);
    pg_recovery_replay_all();
    HISTORY(r1, 11);                    /* read before 12 was published */
    /* the second replay must read from 11 (what reached c), not from 13 */
    size_t r2 = read_of("a");
    must_read(r2, "a", 11);
    EMPTY_HISTORY(read_of("broadcast"));
    HISTORY(r2, 12, 13);
    assert_string_equal(log_of(c), "10 11 12 13");
    end_case();
}

/* The same second reconnect, but the first replay runs out of time: the
 * second reconnect's replay must still run. */
static void second_reconnect_replayed_after_first_replay_times_out(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    subscribe("broadcast");
    subscribe("a");
    live("a", 10);
    pg_recovery_hold_node();            /* reconnect 1 */
    pg_recovery_replay_all();
    EMPTY_HISTORY(read_of("broadcast"));
    size_t r1 = read_of("a");
    pg_recovery_hold_node();            /* reconnect 2 */
    pg_recovery_replay_all();
    advance_to(TICK0 + timeout_ticks()); /* replay 1 gives up */
    FAIL_READ(r1);                        /* its reply, late */
    size_t issued = st.nreads;
    assert_int_equal(issued, 4);          /* replay 2: broadcast and a again */
    EMPTY_HISTORY(read_of("broadcast"));
    HISTORY(read_of("a"), 11, 12);
    assert_string_equal(log_of(c), "10 N 11 12");
    end_case();
}

/* The node hold's cap is recovery.c's NODE_HOLD_MAX_BYTES (64 MiB): one
 * message of 1 MiB held again and again (each hold is a reference, so the
 * memory is shared) passes it in about 64 steps. */
static void node_hold_past_cap_delivers_now(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    subscribe("broadcast");
    subscribe("a");
    pg_recovery_hold_node();
    pg_recovery_replay_all();
    live("a", 5);

    size_t big_len = (size_t)1 << 20;
    char *payload = malloc(big_len + 64);
    assert_non_null(payload);
    int off = snprintf(payload, 64, "{\"id\":\"6\",\"data\":\"");
    memset(payload + off, 'x', big_len);
    memcpy(payload + off + big_len, "\"}", 3);
    int err = 0;
    pg_msg_t *big = pg_msg_from_payload("a", payload, strlen(payload), big_len * 2, &err);
    free(payload);
    assert_non_null(big);
    size_t held = 0;
    while (st.nout == 0 && held < 1000) {
        pg_recovery_dispatch(big);
        held++;
    }
    /* where the cap is: 64 MiB of held bytes (message 5 is small) */
    size_t fit = ((size_t)64 << 20) / big->json_len;
    assert_in_range(held, fit, fit + 1);
    pg_msg_unref(&big);
    /* given up: a's members told of the gap, then what was held, in
     * order, 6 once */
    assert_string_equal(log_of(c), "N 5 6");

    HISTORY(read_of("a"), 4, 5);        /* the replay was given up: ignored */
    EMPTY_HISTORY(read_of("broadcast"));
    live("a", 7);
    assert_string_equal(log_of(c), "N 5 6 7");
    end_case();
}

static void node_hold_past_cap_without_replay(void **state)
{
    (void)state;
    pg_conn_t *c = conn(0);
    assert_non_null(pg_hub_join(c, "a"));
    pg_recovery_hold_node();            /* reconnected, not ready yet */
    live("a", 5);
    size_t big_len = (size_t)1 << 20;
    char *payload = malloc(big_len + 64);
    assert_non_null(payload);
    int off = snprintf(payload, 64, "{\"id\":\"6\",\"data\":\"");
    memset(payload + off, 'x', big_len);
    memcpy(payload + off + big_len, "\"}", 3);
    int err = 0;
    pg_msg_t *big = pg_msg_from_payload("a", payload, strlen(payload), big_len * 2, &err);
    free(payload);
    assert_non_null(big);
    size_t held = 0;
    while (st.nout == 0 && held < 1000) {
        pg_recovery_dispatch(big);
        held++;
    }
    pg_msg_unref(&big);
    assert_in_range(held, 2, 999);
    assert_string_equal(log_of(c), "5 6");
    live("a", 7);
    assert_string_equal(log_of(c), "5 6 7");
    end_case();
}


/* --- reconnect storms: one read per channel per burst ------------------- */

static uint64_t reads_total(void)
{
    return pg_node.metrics.history_reads_total;
}

static void storm_one_read_from_lowest_since(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    subscribe("broadcast");
    /* three resume in one loop iteration, lowest since second */
    must_join_recover(c0, "broadcast", 5);
    must_join_recover(c1, "broadcast", 3);
    must_join_recover(c2, "broadcast", 7);
    assert_int_equal(st.nreads, 0);     /* gathered until the iteration ends */
    end_iteration();
    assert_int_equal(st.nreads, 1);
    must_read(0, "broadcast", 3);
    assert_int_equal(reads_total(), 1);
    assert_int_equal(pg_node.metrics.history_reads_coalesced_total, 2);

    live("broadcast", 10);              /* after the issue: held by each */
    HISTORY(0, 4, 5, 6, 7, 8, 9);
    /* each from its own since, no gap, no duplicate at the seam */
    assert_string_equal(log_of(c0), "6 7 8 9 10");
    assert_string_equal(log_of(c1), "4 5 6 7 8 9 10");
    assert_string_equal(log_of(c2), "8 9 10");
    live("broadcast", 11);
    assert_string_equal(log_of(c2), "8 9 10 11");
    assert_int_equal(st.nreads, 1);
    end_case();
}

static void later_resumer_served_from_memory_seam_exact(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    subscribe("a");
    must_recover(c0, "a", 2);
    live("a", 6);                       /* recorded: after the issue */
    HISTORY(0, 3, 4, 5);
    assert_string_equal(log_of(c0), "3 4 5 6");
    live("a", 7);
    /* a straggler of the same burst: no read, what it missed from memory */
    must_recover(c1, "a", 4);
    assert_int_equal(st.nreads, 1);
    assert_string_equal(log_of(c1), "5 6 7");
    assert_null(c1->rec);
    assert_false(c1->flags & PG_CONN_RECOVERING);
    /* one up to date: nothing but what comes next */
    must_recover(c2, "a", 7);
    assert_string_equal(log_of(c2), "");
    live("a", 8);
    assert_string_equal(log_of(c0), "3 4 5 6 7 8");
    assert_string_equal(log_of(c1), "5 6 7 8");
    assert_string_equal(log_of(c2), "8");
    assert_int_equal(reads_total(), 1);
    assert_int_equal(pg_node.metrics.history_reads_coalesced_total, 2);
    end_case();
}

static void since_older_than_window_reads_again(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    subscribe("a");
    must_recover(c0, "a", 5);
    /* a lower since while the read is out: a read of its own */
    must_recover(c1, "a", 2);
    assert_int_equal(st.nreads, 2);
    must_read(1, "a", 2);
    /* and one in between joins the newer (lower) read */
    must_recover(c2, "a", 4);
    assert_int_equal(st.nreads, 2);
    live("a", 8);
    HISTORY(1, 3, 4, 5, 6, 7);
    assert_string_equal(log_of(c1), "3 4 5 6 7 8");
    assert_string_equal(log_of(c2), "5 6 7 8");
    assert_string_equal(log_of(c0), "");
    HISTORY(0, 6, 7);
    assert_string_equal(log_of(c0), "6 7 8");
    end_case();
}

static void incomplete_window_serves_only_what_it_covers(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    subscribe("a");
    must_recover(c0, "a", 3);
    HISTORY_PARTIAL(0, 8, 9);           /* 4..7 were trimmed */
    assert_string_equal(log_of(c0), "N 8 9");
    /* from 8 on the window is whole: served from memory, no notice */
    must_recover(c1, "a", 8);
    assert_string_equal(log_of(c1), "9");
    assert_int_equal(st.nreads, 1);
    /* from 5 only Redis can say what is gone: a read of its own */
    must_recover(c2, "a", 5);
    assert_int_equal(st.nreads, 2);
    must_read(1, "a", 5);
    HISTORY(1, 8, 9);                   /* complete for 5 after all */
    assert_string_equal(log_of(c2), "8 9");
    end_case();
}

static void waiter_before_what_a_trimmed_read_kept_reads_again(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1);
    subscribe("a");
    /* one burst: 2..4 trimmed; c1's since 4 lost nothing, but only a read
     * from 4 can tell (a notice would be wrong, no notice a guess) */
    must_join_recover(c0, "a", 1);
    must_join_recover(c1, "a", 4);
    end_iteration();
    must_read(0, "a", 1);
    HISTORY_PARTIAL(0, 5, 6);
    assert_string_equal(log_of(c0), "N 5 6");
    assert_string_equal(log_of(c1), "");
    must_read(1, "a", 4);
    HISTORY(1, 5, 6);
    assert_string_equal(log_of(c1), "5 6");
    end_case();
}

static void link_loss_mid_read_serves_waiters_then_reads_again(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1);
    subscribe("broadcast");
    subscribe("a");
    must_recover(c0, "a", 2);
    live("a", 5);
    /* the subscriber link drops while the read is out */
    pg_recovery_hold_node();
    HISTORY(0, 3, 4, 5);
    assert_string_equal(log_of(c0), "3 4 5");
    /* the window may have a hole (6 may be lost with the link): a
     * resumer now reads again, even with a since the window covered */
    must_recover(c1, "a", 3);
    assert_int_equal(st.nreads, 2);
    size_t r1 = read_from("a", 3);
    pg_recovery_replay_all();           /* the node replays its channels */
    size_t ra = read_from("a", 5), rb = read_of("broadcast");
    HISTORY(ra, 6);                     /* the node's replay of a from 5 */
    EMPTY_HISTORY(rb);
    assert_string_equal(log_of(c0), "3 4 5 6");
    HISTORY(r1, 4, 5, 6);
    assert_string_equal(log_of(c1), "4 5 6");
    live("a", 7);
    assert_string_equal(log_of(c0), "3 4 5 6 7");
    assert_string_equal(log_of(c1), "4 5 6 7");
    end_case();
}

static void window_dropped_when_unused_or_unsubscribed(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    subscribe("a");
    must_recover(c0, "a", 1);
    HISTORY(0, 2);
    /* unused for 10 s: gone; the next resumer reads */
    advance_to(TICK0 + 10 * PG_TICKS_PER_SEC);
    assert_int_equal(pg_node.wheel.armed, 0);
    must_recover(c1, "a", 1);
    assert_int_equal(st.nreads, 2);
    HISTORY(1, 2);
    assert_string_equal(log_of(c1), "2");
    /* every member leaves: the node unsubscribes, the window goes */
    pg_hub_leave_all(c0);
    pg_hub_leave_all(c1);
    must_recover(c2, "a", 1);
    assert_int_equal(st.nreads, 3);
    HISTORY(2, 2);
    assert_string_equal(log_of(c2), "2");
    end_case();
}

static void failed_window_read_retries_for_every_waiter(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1);
    subscribe("a");
    must_join_recover(c0, "a", 4);
    must_join_recover(c1, "a", 2);
    end_iteration();
    must_read(0, "a", 2);
    FAIL_READ(0);                       /* retried at once, still one read */
    assert_int_equal(st.nreads, 2);
    must_read(1, "a", 2);
    HISTORY(1, 3, 4, 5);
    assert_string_equal(log_of(c0), "5");
    assert_string_equal(log_of(c1), "3 4 5");
    end_case();
}

static void abandoned_waiter_leaves_the_others_served(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1);
    subscribe("a");
    must_join_recover(c0, "a", 1);
    must_join_recover(c1, "a", 1);
    end_iteration();
    pg_recovery_abandon(c0);            /* c0 went away meanwhile */
    pg_hub_leave_all(c0);
    HISTORY(0, 2, 3);
    assert_string_equal(log_of(c0), "");
    assert_string_equal(log_of(c1), "2 3");
    end_case();
}

/* A message of about 1 MiB on channel, with id. */
static pg_msg_t *big_msg(const char *channel, uint64_t id)
{
    size_t big_len = (size_t)1 << 20;
    char *payload = malloc(big_len + 64);
    assert_non_null(payload);
    int off = snprintf(payload, 64, "{\"id\":\"%llu\",\"data\":\"", (unsigned long long)id);
    memset(payload + off, 'x', big_len);
    memcpy(payload + off + big_len, "\"}", 3);
    int err = 0;
    pg_msg_t *m = pg_msg_from_payload(channel, payload, strlen(payload), big_len * 2, &err);
    free(payload);
    assert_non_null(m);
    return m;
}

static void window_past_its_bound_keeps_the_newest_exactly(void **state)
{
    (void)state;
    pg_conn_t *c0 = conn(0), *c1 = conn(1), *c2 = conn(2);
    pg_node.cfg.queue_limit_bytes = (size_t)64 << 20;  /* c0 takes it all */
    subscribe("a");
    must_recover(c0, "a", 1);
    HISTORY(0, 2);
    /* six ~1 MiB messages live: past the window's 4 MiB its oldest go,
     * and it then covers from the last one it dropped */
    for (uint64_t id = 10; id < 16; id++) {
        pg_msg_t *m = big_msg("a", id);
        pg_recovery_dispatch(m);
        pg_msg_unref(&m);
    }
    assert_string_equal(log_of(c0), "2 10 11 12 13 14 15");
    /* from 13 on it still has everything: from memory */
    must_recover(c1, "a", 13);
    assert_int_equal(st.nreads, 1);
    assert_string_equal(log_of(c1), "14 15");
    /* from 2 it no longer has 10: a read of its own */
    must_recover(c2, "a", 2);
    assert_int_equal(st.nreads, 2);
    must_read(1, "a", 2);
    HISTORY(1, 10, 11, 12, 13, 14, 15);
    assert_string_equal(log_of(c2), "10 11 12 13 14 15");
    end_case();
}

int main(void)
{
    pg_log_level = PG_LOG_ERROR;
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(recovery_seam_no_gap_no_dup),
        T(since_is_respected_at_the_seam),
        T(two_channels_merge_into_one_id_order),
        T(read_waits_for_subscribe_confirmation),
        T(failed_read_retried_then_succeeds_complete),
        T(three_failed_reads_notice_then_what_there_is),
        T(incomplete_history_notice_once),
        T(timeout_delivers_held_with_notice_late_reply_ignored),
        T(timeout_while_waiting_for_subscribe),
        T(holding_past_queue_limit_ends_incomplete),
        T(abandon_with_read_in_flight_then_reply),
        T(recovery_out_of_memory_closes_1011),
        T(node_replay_history_then_held_in_order),
        T(node_replay_reaches_a_recovering_connection_through_its_hold),
        T(node_replay_timeout_releases_hold),
        T(node_replay_gap_told_once_per_member),
        T(node_hold_past_cap_delivers_now),
        T(node_hold_past_cap_without_replay),
        T(second_reconnect_during_replay_replays_its_gap),
        T(second_reconnect_replayed_after_first_replay_times_out),
        T(storm_one_read_from_lowest_since),
        T(later_resumer_served_from_memory_seam_exact),
        T(since_older_than_window_reads_again),
        T(incomplete_window_serves_only_what_it_covers),
        T(waiter_before_what_a_trimmed_read_kept_reads_again),
        T(link_loss_mid_read_serves_waiters_then_reads_again),
        T(window_dropped_when_unused_or_unsubscribed),
        T(failed_window_read_retries_for_every_waiter),
        T(abandoned_waiter_leaves_the_others_served),
        T(window_past_its_bound_keeps_the_newest_exactly),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
