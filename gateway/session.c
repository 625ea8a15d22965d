/* session.c - a connection's life. See session.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.h"
#include "auth.h"
#include "control.h"
#include "events.h"
#include "hub.h"
#include "node.h"
#include "presence.h"
#include "recovery.h"
#include "pg_chan.h"
#include "pg_cmd.h"
#include "pg_log.h"
#include "pg_util.h"

#define MAX_SUBS_PER_CONN  256
#define CMD_RATE_PER_SEC   100   /* client commands per second before we close */

static int is_implicit(const pg_conn_t *c, const char *name);

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* --- frames the session sends ------------------------------------------- */

static void send_error(pg_conn_t *c, const char *code, const char *msg)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    pg_buf_json_str(&b, msg, strlen(msg));
    if (pg_buf_puts(&b, "}") == 0)
        pg_conn_send_control(c, b.data, b.len, NULL);
    pg_buf_free(&b);
}

/* {"type":"subscribed","channel":...} and its kin; SSE gets them as the
 * event pushgate.<type> (a client's own commands only exist on WebSocket). */
static void send_ack(pg_conn_t *c, const char *type, const char *channel, const char *reason)
{
    char buf[96 + PG_CHAN_MAX], ev[32];
    /* channel names need no JSON escaping: their alphabet has no " or \ */
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"%s\",\"channel\":\"%s\"%s%s%s}", type,
                     channel, reason ? ",\"reason\":\"" : "", reason ? reason : "",
                     reason ? "\"" : "");
    snprintf(ev, sizeof(ev), "pushgate.%s", type);
    pg_conn_send_control(c, buf, (size_t)n, ev);
}

/* Close c with one of the session's codes, after what is queued: WebSocket
 * with a close frame, SSE with a pushgate.disconnect event and the end of
 * the stream. */
static void close_with(pg_conn_t *c, uint16_t code, const char *reason)
{
    if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
        return;
    switch (code) {
    case 4000: pg_node.metrics.session_closes[PG_CLOSE_4000]++; break;
    case 4001: pg_node.metrics.session_closes[PG_CLOSE_4001]++; break;
    case 4003: pg_node.metrics.session_closes[PG_CLOSE_4003]++; break;
    case 4029: pg_node.metrics.session_closes[PG_CLOSE_4029]++; break;
    }
    if (c->transport == PG_TR_SSE) {
        pg_buf_t b = PG_BUF_INIT;
        pg_buf_printf(&b, "{\"code\":%u,\"reason\":", code);
        pg_buf_json_str(&b, reason, strlen(reason));
        if (pg_buf_puts(&b, "}") == 0)
            pg_conn_send_control(c, b.data, b.len, "pushgate.disconnect");
        pg_buf_free(&b);
    }
    conn_log(PG_LOG_DEBUG, c, "closing %u %s", code, reason);
    pg_conn_close_after_flush(c, code, reason);
}

/* --- token lifetime ------------------------------------------------------ */

static uint64_t tick_at(int64_t unix_s)
{
    int64_t ms = unix_s * 1000 - (int64_t)pg_wall_ms();
    uint64_t now = pg_node_tick();
    return ms <= 0 ? now : now + (uint64_t)ms / (1000 / PG_TICKS_PER_SEC);
}

static void send_expiring(pg_conn_t *c)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"expiring\",\"exp\":%lld}",
                     (long long)c->who.exp);
    pg_conn_send_control(c, buf, (size_t)n, "pushgate.expiring");
    c->flags |= PG_CONN_EXPIRY_WARNED;
}

/* Arm the token timer for what comes next: the "expiring" notice at
 * exp - window (now, if already inside it), then the close at exp. */
static void life_arm(pg_conn_t *c)
{
    if (c->who.exp <= 0) {
        pg_wheel_cancel(&pg_node.wheel, &c->life);
        return;
    }
    int64_t warn_at = c->who.exp - (int64_t)pg_node.cfg.token_refresh_window;
    if (!(c->flags & PG_CONN_EXPIRY_WARNED) && warn_at <= now_s())
        send_expiring(c);
    int64_t next = (c->flags & PG_CONN_EXPIRY_WARNED) ? c->who.exp : warn_at;
    pg_wheel_arm(&pg_node.wheel, &c->life, tick_at(next));
}

static void life_cb(pg_timer_t *t)
{
    pg_conn_t *c = lws_container_of(t, pg_conn_t, life);
    if (c->who.exp > 0 && now_s() >= c->who.exp) {
        close_with(c, 4001, "token expired");
        return;
    }
    life_arm(c);
}

/* --- opening ------------------------------------------------------------- */

static int too_many_connections(void)
{
    if (pg_node.nconns < pg_node.max_connections)
        return 0;
    pg_node.metrics.connections_rejected_total++;
    return 1;
}

typedef struct user_count {
    const char *user;
    unsigned    n;
} user_count_t;

static void count_cb(pg_member_t *mb, void *arg)
{
    user_count_t *uc = arg;
    pg_conn_t *c = mb->conn;
    if (pg_chan_is_user(mb->chan->name, c->who.sub) &&
        !(c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING)))
        uc->n++;
}

/* 1 when user already holds --max-connections-per-user on this node. The
 * user's own channel lists its connections, so no index of our own. */
static int over_user_limit(const char *user)
{
    char chan[PG_CHAN_MAX + 1];
    if (pg_node.cfg.max_conns_per_user == 0 || user == NULL || pg_chan_user(user, chan) != 0)
        return 0;
    user_count_t uc = { user, 0 };
    pg_hub_foreach_member(chan, count_cb, &uc);
    return uc.n >= pg_node.cfg.max_conns_per_user;
}

/* Every check a connect must pass, for both transports. Returns 0 with res
 * filled, or the HTTP status to refuse with and the reason in err. */
static int admit(struct lws *wsi, int is_sse, pg_auth_result_t *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    if (pg_node.draining) {
        snprintf(err, errlen, "draining");
        return 503;
    }
    if (too_many_connections()) {
        snprintf(err, errlen, "too many connections");
        return 503;
    }
    int status = pg_auth_request(wsi, is_sse, res, err, errlen);
    if (status != 0)
        return status;
    if (pg_control_revoked(res->who.sub, res->who.iat, now_s())) {
        pg_auth_result_free(res);
        snprintf(err, errlen, "token revoked");
        return 401;
    }
    return 0;
}

/* c is open: take the identity, join the implicit and requested channels,
 * start recovery and the token timer. Past the per-user limit, close 4029
 * instead (after the upgrade, so a browser can read why). */
static void start(pg_conn_t *c, pg_auth_result_t *res)
{
    char chan[PG_CHAN_MAX + 1];
    int over = over_user_limit(res->who.sub);

    c->who = res->who;
    memset(&res->who, 0, sizeof(res->who));
    c->life.cb = life_cb;
    if (over) {
        conn_log(PG_LOG_INFO, c, "user %s is over --max-connections-per-user", c->who.sub);
        close_with(c, 4029, "too many connections");
        return;
    }
    if (pg_hub_join(c, "broadcast") == NULL ||
        (c->who.sub != NULL && pg_chan_user(c->who.sub, chan) == 0 && pg_hub_join(c, chan) == NULL))
        goto oom;
    for (size_t i = 0; i < res->channels.n; i++)
        if (pg_hub_join(c, res->channels.v[i]) == NULL)
            goto oom;
    /* presence and events see the connection with all its channels */
    pg_events_connect(c);
    lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        pg_presence_join(c, mb->chan->name);
        if (!is_implicit(c, mb->chan->name))
            pg_events_subscribe(c, mb->chan->name, 1);
    } lws_end_foreach_dll(d);
    if (res->has_since) {
        /* each channel from its own position, else the bare id; one with
         * neither starts live (entries for other channels are ignored).
         * Every position is set before the first recovery is added: one
         * served from a channel's window goes out at once, and its SSE
         * `id:` lists the other channels' positions (cluster mode) */
        lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->members)) {
            pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
            uint64_t since;
            if (pg_since_get(&res->since, mb->chan->name, &since))
                mb->last_id = since;
        } lws_end_foreach_dll(d);
        int failed = 0;
        pg_recovery_batch(1);   /* all reads start together (recovery.h) */
        lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&c->members)) {
            pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
            uint64_t since;
            /* no `continue` here: the macro advances at its end */
            if (!failed && pg_since_get(&res->since, mb->chan->name, &since) &&
                pg_recovery_add(c, mb->chan->name, since) != 0)
                failed = 1;
        } lws_end_foreach_dll_safe(d, d1);
        pg_recovery_batch(0);
        if (failed)
            return;
    }
    life_arm(c);
    conn_log(PG_LOG_DEBUG, c, "open user=%s", c->who.sub ? c->who.sub : "-");
    return;
oom:
    pg_conn_close(c, 1011, "out of memory");
}

int pg_session_ws_filter(struct lws *wsi)
{
    char path[256], err[PG_ERRLEN];
    pg_auth_result_t res;

    if (pg_http_header(wsi, WSI_TOKEN_GET_URI, path, sizeof(path)) < 0 ||
        strcmp(path, "/ws") != 0)
        return pg_http_refuse_upgrade(wsi, 404, "not found");
    int status = admit(wsi, 0, &res, err, sizeof(err));
    if (status != 0) {
        pg_log(PG_LOG_DEBUG, "ws refused %d: %s", status, err);
        return pg_http_refuse_upgrade(wsi, status, err);
    }
    pg_auth_result_free(&res);
    return 0;
}

void pg_session_ws_open(pg_conn_t *c, struct lws *wsi)
{
    char err[PG_ERRLEN];
    pg_auth_result_t res;

    /* The upgrade passed the filter moments ago with these same headers;
     * they are still attached until ESTABLISHED returns, and the per-session
     * data may not exist at filter time, so the request is read again. */
    pg_conn_open(c, wsi, PG_TR_WS);
    if (admit(wsi, 0, &res, err, sizeof(err)) != 0) {
        c->life.cb = life_cb;
        pg_conn_close(c, 1008, "refused");
        return;
    }
    start(c, &res);
    pg_auth_result_free(&res);
}

pg_conn_t *pg_session_sse_open(struct lws *wsi, pg_http_t *h, int *fatal)
{
    char err[PG_ERRLEN];
    pg_auth_result_t res;

    *fatal = 0;
    int status = admit(wsi, 1, &res, err, sizeof(err));
    if (status == 0 && over_user_limit(res.who.sub)) {
        pg_node.metrics.session_closes[PG_CLOSE_4029]++;
        pg_auth_result_free(&res);
        snprintf(err, sizeof(err), "too many connections for this user");
        status = 429;
    }
    if (status != 0) {
        pg_log(PG_LOG_DEBUG, "sse refused %d: %s", status, err);
        pg_http_error(wsi, h, status, err);
        return NULL;
    }
    pg_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        pg_auth_result_free(&res);
        pg_http_error(wsi, h, 500, "out of memory");
        return NULL;
    }
    pg_conn_open(c, wsi, PG_TR_SSE);
    start(c, &res);
    pg_auth_result_free(&res);
    if (pg_conn_sse_begin(c) != 0)
        *fatal = 1;
    return c;
}

void pg_session_ended(pg_conn_t *c)
{
    if (!(c->flags & PG_CONN_OPEN) || (c->flags & PG_CONN_ENDED))
        return;
    c->flags |= PG_CONN_ENDED;
    /* reverse order of acquisition: timer, recovery, channels (identity
     * and the connection itself go in pg_session_closed) */
    pg_wheel_cancel(&pg_node.wheel, &c->life);
    pg_recovery_abandon(c);
    if (c->members.count > 0) {   /* it was admitted: presence and events saw it */
        unsigned code = c->close_code;
        const char *why = c->close_reason;
        if (code == 0 && (c->flags & PG_CONN_DRAINING)) {
            code = 1001;
            why = "going away";
        } else if (code == 0) {
            code = 1005;   /* gone with no Close frame, or one without a code */
            why = "closed by the client";
        }
        pg_presence_leave_all(c);
        pg_events_disconnect(c, code, why);
    }
    pg_events_closed(c);
    pg_hub_leave_all(c);
}

void pg_session_closed(pg_conn_t *c)
{
    if (!(c->flags & PG_CONN_OPEN))
        return;
    pg_session_ended(c);
    pg_identity_free(&c->who);
    pg_conn_destroy(c);
}

/* --- the client's commands ------------------------------------------------ */

static int is_implicit(const pg_conn_t *c, const char *name)
{
    return strcmp(name, "broadcast") == 0 || pg_chan_is_user(name, c->who.sub);
}

/* Topics the new identity no longer allows are left, unless the backend
 * granted them (SPEC §7: "no permission check: the backend decides"). */
static void drop_forbidden(pg_conn_t *c)
{
    lws_start_foreach_dll_safe(struct lws_dll2 *, d, d1, lws_dll2_get_head(&c->members)) {
        pg_member_t *mb = lws_container_of(d, pg_member_t, conn_node);
        if (!mb->granted && !is_implicit(c, mb->chan->name) &&
            !pg_auth_may_read(&c->who, mb->chan->name)) {
            send_ack(c, "unsubscribed", mb->chan->name, "forbidden");
            pg_presence_leave(c, mb->chan->name);
            pg_events_subscribe(c, mb->chan->name, 0);
            pg_hub_leave_member(mb);
        }
    } lws_end_foreach_dll_safe(d, d1);
}

static void refresh(pg_conn_t *c, const char *token)
{
    pg_identity_t who;
    char why[PG_ERRLEN], msg[PG_ERRLEN + 32];
    int64_t now = now_s();

    memset(&who, 0, sizeof(who));
    const pg_jwt_keys_t *keys = pg_keys_jwt(pg_node.keys);
    if (keys == NULL) {
        send_error(c, "bad_token", "this gateway has no JWT key");
        return;
    }
    if (pg_jwt_verify(keys, token, now, &who, why, sizeof(why)) != 0) {
        snprintf(msg, sizeof(msg), "invalid token: %s", why);
        send_error(c, "bad_token", msg);
        return;
    }
    if (who.sub == NULL || c->who.sub == NULL || strcmp(who.sub, c->who.sub) != 0) {
        pg_identity_free(&who);
        send_error(c, "wrong_user", "the token is for another user");
        return;
    }
    if (pg_control_revoked(who.sub, who.iat, now)) {
        pg_identity_free(&who);
        send_error(c, "bad_token", "token revoked");
        return;
    }
    pg_identity_free(&c->who);
    c->who = who;
    c->flags &= ~PG_CONN_EXPIRY_WARNED;
    char buf[64];
    int n = c->who.exp > 0
          ? snprintf(buf, sizeof(buf), "{\"type\":\"refreshed\",\"exp\":%lld}", (long long)c->who.exp)
          : snprintf(buf, sizeof(buf), "{\"type\":\"refreshed\"}");
    pg_conn_send_control(c, buf, (size_t)n, NULL);
    drop_forbidden(c);
    life_arm(c);
}

/* A membership for name on c, announced; recovery from since when asked.
 * granted: a backend order (kept across refreshes). NULL on out-of-memory. */
static pg_member_t *subscribe(pg_conn_t *c, const char *name, int has_since, uint64_t since,
                              int granted)
{
    int was_member = pg_hub_member(c, name) != NULL;
    pg_member_t *mb = pg_hub_join(c, name);
    if (mb == NULL) {
        pg_conn_close(c, 1011, "out of memory");
        return NULL;
    }
    if (!was_member) {
        pg_presence_join(c, name);
        pg_events_subscribe(c, name, 1);
    }
    if (granted)
        mb->granted = 1;
    send_ack(c, "subscribed", name, NULL);
    if (has_since) {
        if (since > mb->last_id || mb->last_id == 0)
            mb->last_id = since;
        pg_recovery_add(c, name, since);
    }
    return mb;
}

static void command(pg_conn_t *c, const char *buf, size_t len)
{
    pg_cmd_t cmd;
    const char *code;
    char err[PG_ERRLEN];

    if (pg_cmd_parse(buf, len, &cmd, &code, err, sizeof(err)) != 0) {
        /* "send" (SPEC §9) is the events service's; pg_cmd knows the rest */
        if (strcmp(code, "unknown_type") == 0 && pg_events_send(c, buf, len))
            return;
        send_error(c, code, err);
        return;
    }
    switch (cmd.type) {
    case PG_CMD_PING: {
        static const char pong[] = "{\"type\":\"pong\"}";
        pg_conn_send_control(c, pong, sizeof(pong) - 1, NULL);
        return;
    }
    case PG_CMD_REFRESH:
        refresh(c, cmd.token);
        return;
    case PG_CMD_SUBSCRIBE:
        if (!pg_auth_may_read(&c->who, cmd.channel)) {
            send_error(c, "forbidden", "channel not allowed");
            return;
        }
        if (pg_hub_member(c, cmd.channel) == NULL && c->members.count >= MAX_SUBS_PER_CONN) {
            send_error(c, "too_many_channels", "subscription limit reached");
            return;
        }
        subscribe(c, cmd.channel, cmd.has_since, cmd.since, 0);
        return;
    case PG_CMD_UNSUBSCRIBE:
        if (is_implicit(c, cmd.channel)) {
            send_error(c, "implicit_channel", "broadcast and your own user channel cannot be left");
            return;
        }
        if (pg_hub_leave(c, cmd.channel) != 0) {
            send_error(c, "not_subscribed", "not subscribed to that channel");
            return;
        }
        pg_presence_leave(c, cmd.channel);
        pg_events_subscribe(c, cmd.channel, 0);
        send_ack(c, "unsubscribed", cmd.channel, NULL);
        return;
    }
}

void pg_session_message(pg_conn_t *c, const char *buf, size_t len)
{
    uint64_t now = pg_mono_ms();
    if (now - c->cmd_window_ms >= 1000) {
        c->cmd_window_ms = now;
        c->cmd_count = 0;
    }
    if (++c->cmd_count > CMD_RATE_PER_SEC) {
        send_error(c, "rate_limited", "more than 100 commands a second");
        pg_conn_close_after_flush(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many commands");
        return;
    }
    command(c, buf, len);
}

/* --- the backend's orders ------------------------------------------------ */

static void apply_one(pg_member_t *um, void *arg)
{
    const pg_order_t *o = arg;
    pg_conn_t *c = um->conn;

    /* The user channel's members are the user's connections, unless the
     * backend subscribed someone else to it: those are not the user. */
    if (!pg_chan_is_user(um->chan->name, c->who.sub) ||
        (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING)))
        return;
    switch (o->type) {
    case PG_ORDER_DISCONNECT:
        close_with(c, o->code, o->reason[0] ? o->reason : "disconnected");
        return;
    case PG_ORDER_SUBSCRIBE:
        subscribe(c, o->channel, o->has_since, o->since, 1);
        return;
    case PG_ORDER_UNSUBSCRIBE:
        if (!is_implicit(c, o->channel) && pg_hub_leave(c, o->channel) == 0) {
            pg_presence_leave(c, o->channel);
            pg_events_subscribe(c, o->channel, 0);
            send_ack(c, "unsubscribed", o->channel, NULL);
        }
        return;
    }
}

void pg_session_apply(const pg_order_t *o)
{
    char chan[PG_CHAN_MAX + 1];
    if (pg_chan_user(o->user, chan) != 0)
        return;
    /* apply_one joins and leaves other channels only (never this user
     * channel: it is implicit), so walking its members is safe */
    pg_hub_foreach_member(chan, apply_one, (void *)o);
}

static void recheck_one(pg_conn_t *c, void *arg)
{
    (void)arg;
    if (c->who.sub != NULL && pg_control_revoked(c->who.sub, c->who.iat, now_s()))
        close_with(c, 4003, "revoked");
}

void pg_session_recheck_revocations(void)
{
    pg_conn_foreach(-1, recheck_one, NULL);
}
