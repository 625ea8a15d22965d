/* events.c - the events stream and the "send" command. See events.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <uthash.h>
#include <hiredis/hiredis.h>

#include "events.h"
#include "commands.h"
#include "node.h"
#include "pg_buf.h"
#include "pg_json.h"
#include "pg_log.h"
#include "pg_util.h"

#define REF_MAX 128   /* a client's tag is echoed back: keep it short */

/* A connection that used "send": its rate window and its sends in flight.
 * Kept apart from pg_conn_t because few connections ever send; conn is NULL
 * once the connection closed, and the record goes with its last reply. */
typedef struct sender {
    UT_hash_handle hh;
    uint64_t       id;
    pg_conn_t     *conn;
    uint64_t       window_ms;
    uint32_t       count;
    uint32_t       pending;
} sender_t;

typedef struct send_req {
    uint64_t id;
    char     ref[REF_MAX * 6 + 3];   /* JSON string, quotes included */
} send_req_t;

static sender_t *senders;

/* --- XADD ------------------------------------------------------------------- */

#define MAX_FIELDS 8

/* XADD <prefix>events MAXLEN ~ N * type T node N conn C user U [k v]... ts MS;
 * in a Redis Cluster the stream is <prefix>{_events} (SPEC §10), one key on
 * the shard owning that slot, so every node's events still land in one
 * stream in the order each node wrote them. */
static int xadd(const pg_conn_t *c, const char *type, const char **kv, const size_t *kvlen,
                int nkv, pg_reply_cb cb, void *arg)
{
    char key[128], maxlen[24], conn[24], ts[24];
    const char *argv[8 + 10 + 2 * MAX_FIELDS];
    size_t lens[8 + 10 + 2 * MAX_FIELDS];
    int argc = 0;
    int kl = snprintf(key, sizeof(key), pg_node.cfg.redis.kind == PG_URL_CLUSTER ?
                      "%s{_events}" : "%sevents", pg_node.cfg.prefix);
    const char *user = c->who.sub ? c->who.sub : "";

#define ARG(s, l) do { argv[argc] = (s); lens[argc++] = (l); } while (0)
    ARG("XADD", 4);
    ARG(key, (size_t)kl);
    ARG("MAXLEN", 6);
    ARG("~", 1);
    ARG(maxlen, pg_u64toa(pg_node.cfg.events_max_len, maxlen));
    ARG("*", 1);
    ARG("type", 4);
    ARG(type, strlen(type));
    ARG("node", 4);
    ARG(pg_node.cfg.node_id, strlen(pg_node.cfg.node_id));
    ARG("conn", 4);
    ARG(conn, pg_u64toa(c->id, conn));
    ARG("user", 4);
    ARG(user, strlen(user));
    for (int i = 0; i < nkv && i < MAX_FIELDS; i++) {
        ARG(kv[2 * i], strlen(kv[2 * i]));
        ARG(kv[2 * i + 1], kvlen ? kvlen[i] : strlen(kv[2 * i + 1]));
    }
    ARG("ts", 2);
    ARG(ts, pg_u64toa(pg_wall_ms(), ts));
#undef ARG
    return pg_commands_keyed_argv(key, (size_t)kl, argc, argv, lens, cb, arg);
}

static void noted(void *arg, const struct redisReply *r)
{
    (void)arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        pg_node.metrics.events_dropped_total++;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        pg_log(PG_LOG_WARN, "event refused by Redis: %s", r->str);
}

/* A best-effort event: counted when it cannot even be queued. */
static void note(const pg_conn_t *c, const char *type, const char **kv, int nkv)
{
    if (xadd(c, type, kv, NULL, nkv, noted, NULL) != 0)
        pg_node.metrics.events_dropped_total++;
}

void pg_events_connect(pg_conn_t *c)
{
    if (pg_node.cfg.events)
        note(c, "connect", NULL, 0);
}

void pg_events_disconnect(pg_conn_t *c, unsigned code, const char *reason)
{
    if (!pg_node.cfg.events)
        return;
    char num[24];
    snprintf(num, sizeof(num), "%u", code);
    const char *kv[4] = { "code", num, "reason", reason ? reason : "" };
    note(c, "disconnect", kv, 2);
}

void pg_events_subscribe(pg_conn_t *c, const char *channel, int on)
{
    if (!pg_node.cfg.events)
        return;
    const char *kv[2] = { "channel", channel };
    note(c, on ? "subscribe" : "unsubscribe", kv, 1);
}

/* --- send ------------------------------------------------------------------------ */

static void answer_error(pg_conn_t *c, const char *ref, const char *code, const char *msg)
{
    pg_node.metrics.client_sends_refused++;
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    pg_buf_json_str(&b, msg, strlen(msg));
    if (ref[0])
        pg_buf_printf(&b, ",\"ref\":%s", ref);
    if (pg_buf_puts(&b, "}") == 0)
        pg_conn_send_control(c, b.data, b.len, NULL);
    pg_buf_free(&b);
}

static void sender_release(sender_t *s)
{
    if (s->conn == NULL && s->pending == 0) {
        HASH_DEL(senders, s);
        free(s);
    }
}

static void stored(void *arg, const struct redisReply *r)
{
    send_req_t *q = arg;
    sender_t *s;
    HASH_FIND(hh, senders, &q->id, sizeof(q->id), s);
    if (s == NULL) {   /* pg_events_free ran first (shutdown) */
        free(q);
        return;
    }
    s->pending--;
    pg_conn_t *c = s->conn;
    if (c != NULL && !(c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))) {
        if (r != NULL && r->type == REDIS_REPLY_STRING) {
            pg_node.metrics.client_sends_sent++;
            pg_buf_t b = PG_BUF_INIT;
            pg_buf_puts(&b, "{\"type\":\"sent\"");
            if (q->ref[0])
                pg_buf_printf(&b, ",\"ref\":%s", q->ref);
            pg_buf_puts(&b, ",\"id\":");
            pg_buf_json_str(&b, r->str, r->len);
            if (pg_buf_puts(&b, "}") == 0)
                pg_conn_send_control(c, b.data, b.len, NULL);
            pg_buf_free(&b);
        } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
            answer_error(c, q->ref, "unavailable", "Redis refused the message; it was not stored");
        } else {
            /* the link went down between the write and the reply: the entry
             * may or may not be in the stream, and we cannot tell which */
            answer_error(c, q->ref, "unknown",
                         "the Redis connection was lost before it answered: the message may or may not be stored");
        }
    }
    sender_release(s);
    free(q);
}

/* 1 when c may send one more message this second (counts it). */
static int within_rate(sender_t *s)
{
    uint64_t now = pg_mono_ms();
    if (now - s->window_ms >= 1000) {
        s->window_ms = now;
        s->count = 0;
    }
    return ++s->count <= pg_node.cfg.client_send_rate;
}

int pg_events_send(pg_conn_t *c, const char *buf, size_t len)
{
    json_object *root = pg_json_parse_object(buf, len, 64, NULL), *type, *data, *ref;
    if (root == NULL || !json_object_object_get_ex(root, "type", &type) ||
        !json_object_is_type(type, json_type_string) ||
        strcmp(json_object_get_string(type), "send") != 0) {
        json_object_put(root);
        return 0;
    }
    char refj[sizeof(((send_req_t *)0)->ref)] = "";
    if (json_object_object_get_ex(root, "ref", &ref)) {
        if (!json_object_is_type(ref, json_type_string) || json_object_get_string_len(ref) > REF_MAX) {
            answer_error(c, "", "bad_ref", "ref must be a string of at most 128 bytes");
            goto out;
        }
        pg_buf_t b = PG_BUF_INIT;
        pg_buf_json_str(&b, json_object_get_string(ref), (size_t)json_object_get_string_len(ref));
        if (b.data && b.len < sizeof(refj)) {
            memcpy(refj, b.data, b.len);
            refj[b.len] = '\0';
        }
        pg_buf_free(&b);
    }
    if (!json_object_object_get_ex(root, "data", &data)) {
        answer_error(c, refj, "bad_send", "send needs \"data\" (any JSON)");
        goto out;
    }
    if (!pg_node.cfg.events) {
        answer_error(c, refj, "events_off", "this gateway does not take messages (--events is off)");
        goto out;
    }
    sender_t *s;
    HASH_FIND(hh, senders, &c->id, sizeof(c->id), s);
    if (s == NULL) {
        if ((s = calloc(1, sizeof(*s))) == NULL) {
            answer_error(c, refj, "unavailable", "out of memory");
            goto out;
        }
        s->id = c->id;
        s->conn = c;
        HASH_ADD(hh, senders, id, sizeof(s->id), s);
    }
    if (!within_rate(s)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "more than %u messages a second (--client-send-rate)",
                 pg_node.cfg.client_send_rate);
        answer_error(c, refj, "rate_limited", msg);
        goto out;
    }
    size_t dlen;
    const char *d = json_object_to_json_string_length(data, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE, &dlen);
    if (d == NULL || dlen > pg_node.cfg.max_message_bytes) {
        answer_error(c, refj, "too_big", "data over --max-message-bytes");
        goto out;
    }
    send_req_t *q = malloc(sizeof(*q));
    if (q == NULL) {
        answer_error(c, refj, "unavailable", "out of memory");
        goto out;
    }
    q->id = c->id;
    memcpy(q->ref, refj, sizeof(q->ref));
    const char *kv[2] = { "data", d };
    size_t kvlen[1] = { dlen };
    if (!pg_commands_ready() || xadd(c, "message", kv, kvlen, 1, stored, q) != 0) {
        free(q);
        answer_error(c, refj, "unavailable", "Redis is unavailable; the message was not stored");
        goto out;
    }
    s->pending++;
out:
    json_object_put(root);
    return 1;
}

void pg_events_closed(pg_conn_t *c)
{
    sender_t *s;
    HASH_FIND(hh, senders, &c->id, sizeof(c->id), s);
    if (s == NULL)
        return;
    s->conn = NULL;
    sender_release(s);
}

void pg_events_free(void)
{
    sender_t *s, *t;
    HASH_ITER(hh, senders, s, t) {
        HASH_DEL(senders, s);
        free(s);
    }
}
