/* node.c - the wiring. Every upward notice in the gateway goes through a
 * hook registered here, so each module calls only the layers below it:
 *
 *   node.c, main.c, server.c   wiring, the loop, the lws callback
 *   session                    a connection's life, orders applied
 *   services                   recovery, control, api
 *   broker                     subscriber, commands
 *   hub                        channels, members, fan-out
 *   transport                  conn (ws, sse), http
 *   io                         listener, fdwatch, redis_link
 */
#include "node.h"
#include "cbroker.h"
#include "commands.h"
#include "control.h"
#include "events.h"
#include "hub.h"
#include "presence.h"
#include "recovery.h"
#include "sentinel.h"
#include "server.h"
#include "session.h"
#include "subscriber.h"
#include "workers.h"
#include "pg_log.h"
#include "pg_util.h"

#define WHEEL_SLOTS 4096   /* 409.6 s of 100 ms ticks per lap */

/* The wheel's clock wakes the loop only for a slot that holds a timer, and
 * at least every 10 s (pg_wheel_next scans a slot per tick of the sleep). A
 * fixed 100 ms tick cost 10 wake-ups a second on an idle node, each ~30-150
 * us of kernel time on this VM (issue #15); with keepalives filed on a grid
 * of whole seconds (conn.c) and the subscriber's probe only when the link
 * has been quiet (subscriber.c), a small idle node wakes once per keepalive
 * step, up to 5 s. */
#define CLOCK_MAX_SLEEP_TICKS (10 * PG_TICKS_PER_SEC)

static uv_timer_t clock_timer;
static void clock_cb(uv_timer_t *t);

static void clock_sleep_until(uint64_t tick)
{
    uint64_t at_ms = tick * (1000 / PG_TICKS_PER_SEC), now_ms = pg_mono_ms();
    pg_node.wheel.wake = tick;
    /* uv times the delay from its cached loop time: bring it up to now, or
     * the wake comes early by however stale it was, before the tick. */
    uv_update_time(pg_node.loop);
    uv_timer_start(&clock_timer, clock_cb, at_ms > now_ms ? at_ms - now_ms : 0, 0);
}

static void clock_cb(uv_timer_t *t)
{
    (void)t;
    pg_node.wheel.wake = 0;   /* callbacks re-arming now need no earlier wake */
    pg_wheel_advance(&pg_node.wheel, pg_node_tick());
    clock_sleep_until(pg_wheel_next(&pg_node.wheel, CLOCK_MAX_SLEEP_TICKS));
}

/* A timer armed before the planned wake (wheel.earlier) */
static void clock_earlier(pg_wheel_t *w, uint64_t due)
{
    (void)w;
    clock_sleep_until(due);
}

int pg_node_ready_here(void)
{
    return pg_subscriber_ready() && pg_commands_ready() && pg_control_loaded() &&
           !pg_node.draining;
}

int pg_node_ready(void)
{
    return pg_node_ready_here() && (pg_node.nworkers == 0 || pg_workers_all_ready());
}

void pg_node_reload_keys(void)
{
    char err[256];
    pg_keys_t *k;
    if (pg_keys_load(&pg_node.cfg, &k, err, sizeof(err)) != 0) {
        pg_node.metrics.key_reloads_failed++;
        pg_log(PG_LOG_ERROR, "key reload failed, keeping the old keys: %s", err);
        return;
    }
    /* Nothing keeps a pointer into the old keyring across a loop
     * iteration (tokens are verified on the spot), so it can go now. */
    pg_keys_free(pg_node.keys);
    pg_node.keys = k;
    pg_node.metrics.key_reloads_ok++;
    pg_log(PG_LOG_INFO, "keys reloaded: %zu JWT keys, %zu API keys",
           pg_keys_jwt_count(k), pg_keys_api_count(k));
}

/* --- hooks ------------------------------------------------------------- */

static void sub_connecting(int reconnect)
{
    if (reconnect)
        pg_recovery_hold_node();
}

static void sub_ready(int reconnect)
{
    /* after a reconnect, what the channels missed is in the history, and
     * orders may have been missed too: a revocation among them is in the
     * hash (the command link may never have dropped, so reload here too) */
    if (reconnect) {
        pg_recovery_replay_all();
        pg_control_reload();
    }
    pg_recovery_kick();
}

/* Cluster mode (cbroker.h): one channel lost its subscription and has it
 * again; NULL is the orders' channel, whose missed revocations are in the
 * hash. */
static void sub_resync(const char *name)
{
    if (name == NULL)
        pg_control_reload();
    else
        pg_recovery_resync(name);
}

static void commands_ready(void)
{
    pg_recovery_kick();
    pg_control_reload();
    pg_presence_link_ready();
}

/* A channel's first member came or its last left. On leaving, recovery's
 * window of the channel goes too: unsubscribed, it would miss messages. */
static void channel_wanted(const char *name, int on)
{
    pg_subscriber_want(name, on);
    if (!on)
        pg_recovery_forget(name);
}

int pg_node_start(void)
{
    static const pg_hub_hooks_t hub_hooks = {
        .channel_wanted = channel_wanted,
        .hold = pg_recovery_hold,
    };
    static const pg_subscriber_hooks_t sub_hooks = {
        .message = pg_recovery_dispatch,
        .order = pg_control_order,
        .subscribed = pg_recovery_kick,
        .connecting = sub_connecting,
        .ready = sub_ready,
        .resync = sub_resync,
    };
    int cluster = pg_node.cfg.redis.kind == PG_URL_CLUSTER;
    static const pg_control_hooks_t control_hooks = {
        .order = pg_session_apply,
        .reloaded = pg_session_recheck_revocations,
    };

    if (pg_wheel_init(&pg_node.wheel, WHEEL_SLOTS, pg_node_tick()) != 0 ||
        uv_timer_init(pg_node.loop, &clock_timer) != 0)
        return -1;
    pg_node.wheel.earlier = clock_earlier;
    clock_sleep_until(pg_wheel_next(&pg_node.wheel, CLOCK_MAX_SLEEP_TICKS));
    pg_control_init(&control_hooks);
    /* the topology seam (broker.h), before the hub wants broadcast */
    if (cluster && pg_cbroker_init() != 0)
        return -1;
    if (pg_hub_init(&hub_hooks) != 0 || pg_presence_init() != 0 || pg_server_start() != 0)
        return -1;
    /* the Sentinel locator first: the links ask it where to connect */
    if (cluster ? pg_cbroker_start(&sub_hooks, commands_ready) != 0 :
        (pg_sentinel_start() != 0 || pg_subscriber_start(&sub_hooks) != 0 ||
         pg_commands_start(commands_ready) != 0)) {
        pg_log(PG_LOG_ERROR, "cannot start the Redis links");
        return -1;
    }
    return pg_workers_start();
}

void pg_node_stop(void)
{
    pg_workers_stop();
    uv_timer_stop(&clock_timer);
    uv_close((uv_handle_t *)&clock_timer, NULL);
    int cluster = pg_node.cfg.redis.kind == PG_URL_CLUSTER;
    if (cluster) {
        pg_presence_stop();   /* first: the router lingers for its last writes */
        pg_cbroker_stop();
    } else
        pg_subscriber_stop();
    pg_presence_stop();   /* before the command link: its last writes go out */
    if (!cluster) {
        pg_commands_stop();
        pg_sentinel_stop();
    }
    pg_server_stop();
}

void pg_node_free(void)
{
    pg_recovery_shutdown();
    pg_events_free();
    pg_presence_free();
    pg_hub_free();
    pg_control_free();
    pg_wheel_free(&pg_node.wheel);
    pg_keys_free(pg_node.keys);
    pg_node.keys = NULL;
}
