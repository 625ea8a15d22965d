/* commands.c - the command role of a pg_link_t. See commands.h. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "broker.h"
#include "redis_link.h"
#include "embed.h"
#include "node.h"
#include "pg_buf.h"
#include "pg_log.h"
#include "pg_util.h"

static pg_link_t cmd;
const pg_broker_ops_t *pg_broker;   /* NULL: this link (broker.h) */
static void (*ready_hook)(void);

/* Replace every @KEY@ placeholder of the template. The prefix is limited to
 * [A-Za-z0-9_.:-] by the option table, so it is safe inside a Lua string. */
char *pg_commands_render_library(size_t *len)
{
    char num[4][24];
    const char *keys[] = { "@PREFIX@", "@FN@", "@HISTORY_SIZE@", "@HISTORY_TTL@", "@MAX_BYTES@",
                           "@REVOKE_TTL@", "@TOPOLOGY@" };
    enum { NKEYS = sizeof(keys) / sizeof(keys[0]) };
    const char *vals[NKEYS];

    snprintf(num[0], sizeof(num[0]), "%u", pg_node.cfg.history_size);
    snprintf(num[1], sizeof(num[1]), "%u", pg_node.cfg.history_ttl);
    snprintf(num[2], sizeof(num[2]), "%zu", pg_node.cfg.max_message_bytes);
    snprintf(num[3], sizeof(num[3]), "%u", pg_node.cfg.revoke_ttl);
    vals[0] = pg_node.cfg.prefix; vals[1] = pg_node.fn_prefix;
    vals[2] = num[0]; vals[3] = num[1]; vals[4] = num[2]; vals[5] = num[3];
    /* the cluster naming of SPEC §10, baked in (functions.lua says why) */
    vals[6] = pg_node.cfg.redis.kind == PG_URL_CLUSTER ? "cluster" : "single";

    pg_buf_t b = PG_BUF_INIT;
    const char *s = pg_embed_functions_lua, *end = s + pg_embed_functions_lua_len;
    while (s < end) {
        const char *at = memchr(s, '@', (size_t)(end - s));
        if (at == NULL) {
            if (pg_buf_append(&b, s, (size_t)(end - s)) < 0)
                goto oom;
            break;
        }
        if (pg_buf_append(&b, s, (size_t)(at - s)) < 0)
            goto oom;
        size_t k;
        for (k = 0; k < NKEYS; k++) {
            size_t kl = strlen(keys[k]);
            if ((size_t)(end - at) >= kl && memcmp(at, keys[k], kl) == 0) {
                if (pg_buf_puts(&b, vals[k]) < 0)
                    goto oom;
                s = at + kl;
                break;
            }
        }
        if (k == NKEYS) {
            if (pg_buf_append(&b, "@", 1) < 0)
                goto oom;
            s = at + 1;
        }
    }
    return pg_buf_steal(&b, len);
oom:
    pg_buf_free(&b);
    return NULL;
}

static void loaded_cb(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    /* an error here is most likely a Redis older than 7 (no FUNCTION) */
    if (pg_link_reply_ok(priv, r, "FUNCTION LOAD (Redis 7+ is required)"))
        pg_link_ready(priv);
}

void pg_commands_time_reply(const struct redisReply *r)
{
    const redisReply *reply = r;
    uint64_t sec, usec;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING &&
        pg_atou64(reply->element[0]->str, reply->element[0]->len, &sec) == 0 &&
        pg_atou64(reply->element[1]->str, reply->element[1]->len, &usec) == 0)
        pg_node.redis_clock_offset_ms = (int64_t)(sec * 1000 + usec / 1000) - (int64_t)pg_wall_ms();
}

static void time_cb(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    (void)priv;
    pg_commands_time_reply(r);
}

static void cmd_setup(pg_link_t *l)
{
    /* Ids are Redis's clock in microseconds-ish (SPEC §3): learn how far our
     * clock is from it, for pg_hub_id_floor(). Pipelined with the load. */
    redisAsyncCommand(l->ac, time_cb, NULL, "TIME");
    size_t len;
    char *lib = pg_commands_render_library(&len);
    if (lib == NULL) {
        pg_link_fail(l, "out of memory");
        return;
    }
    l->state = PG_LINK_LOADING_FUNCTION;
    /* REPLACE at every connect: a Redis restarted without persistence has
     * lost the library, and a node must never depend on another to load it. */
    redisAsyncCommand(l->ac, loaded_cb, l, "FUNCTION LOAD REPLACE %b", lib, len);
    free(lib);
}

static void cmd_ready(pg_link_t *l)
{
    (void)l;
    if (ready_hook != NULL)
        ready_hook();
}

int pg_commands_start(void (*ready)(void))
{
    ready_hook = ready;
    cmd.role = "commands";
    cmd.setup = cmd_setup;
    cmd.on_ready = cmd_ready;
    cmd.select_db = 1;
    if (pg_link_init(&cmd) != 0)
        return -1;
    pg_link_start(&cmd);
    return 0;
}

void pg_commands_stop(void)
{
    pg_link_stop(&cmd);
}

void pg_commands_hurry(void)
{
    if (pg_broker != NULL)
        return;
    pg_link_hurry(&cmd);
}

int pg_commands_ready(void)
{
    if (pg_broker != NULL)
        return pg_broker->cmd_ready();
    return cmd.state == PG_LINK_READY;
}

/* --- publish ------------------------------------------------------------ */

typedef struct pub_req {
    pg_publish_cb cb;
    void         *arg;
} pub_req_t;

/* Both function calls have one shape: VERB fn 0 channel arg. */
#define FCALL_MAXARGS 8

/* VERB fn 0 args[0..argc): every function call of the node has this shape. */
static int fcall(const char *verb, const char *fn, int argc, const char **args,
                 const size_t *lens, redisCallbackFn *cb, void *priv)
{
    const char *argv[FCALL_MAXARGS + 3] = { verb, fn, "0" };
    size_t argvlen[FCALL_MAXARGS + 3] = { strlen(verb), strlen(fn), 1 };
    if (argc > FCALL_MAXARGS)
        return -1;
    for (int i = 0; i < argc; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = lens[i];
    }
    return redisAsyncCommandArgv(cmd.ac, cb, priv, argc + 3, argv, argvlen) == REDIS_OK ? 0 : -1;
}

/* fcall with the common two arguments: a channel and one more. */
static int fcall2(const char *verb, const char *fn, const char *channel,
                  const char *arg, size_t arglen, redisCallbackFn *cb, void *priv)
{
    const char *args[2] = { channel, arg };
    size_t lens[2] = { strlen(channel), arglen };
    return fcall(verb, fn, 2, args, lens, cb, priv);
}

void pg_commands_publish_reply(const struct redisReply *r, const char *lost,
                               pg_publish_cb cb, void *arg)
{
    const redisReply *reply = r;
    uint64_t id = 0;
    if (reply == NULL)
        cb(arg, 0, 0, lost != NULL ? lost : "redis connection lost");
    else if (reply->type == REDIS_REPLY_ERROR)
        cb(arg, 0, 0, reply->str);
    else if (reply->type == REDIS_REPLY_STRING && pg_atou64(reply->str, reply->len, &id) == 0)
        cb(arg, 1, id, NULL);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        cb(arg, 1, (uint64_t)reply->integer, NULL);
    else
        cb(arg, 0, 0, "unexpected reply from the publish function");
}

static void publish_cb(redisAsyncContext *ac, void *r, void *priv)
{
    pub_req_t *p = priv;
    (void)ac;
    pg_commands_publish_reply(r, NULL, p->cb, p->arg);
    free(p);
}

int pg_commands_publish(const char *channel, const char *payload, size_t len,
                   pg_publish_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->publish(channel, payload, len, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    pub_req_t *p = malloc(sizeof(*p));
    if (p == NULL)
        return -1;
    p->cb = cb;
    p->arg = arg;
    if (fcall2("FCALL", pg_node.fn_publish, channel, payload, len, publish_cb, p) < 0) {
        free(p);
        return -1;
    }
    return 0;
}

/* --- history ------------------------------------------------------------ */

typedef struct hist_req {
    pg_history_cb cb;
    void         *arg;
    char         *channel;
} hist_req_t;

static void history_cb(redisAsyncContext *ac, void *r, void *priv)
{
    hist_req_t *h = priv;
    (void)ac;
    pg_commands_history_reply(h->channel, r, h->cb, h->arg);
    free(h->channel);
    free(h);
}

void pg_commands_history_reply(const char *channel, const struct redisReply *r,
                               pg_history_cb cb, void *arg)
{
    const redisReply *reply = r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        if (reply != NULL)
            pg_log(PG_LOG_WARN, "history read of %s failed: %s", channel,
                   reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        cb(arg, 0, 0, NULL, 0);
        return;
    }
    int complete = reply->element[0]->integer != 0;
    size_t n = (reply->elements - 1) / 2, got = 0;
    pg_msg_t **msgs = n ? calloc(n, sizeof(*msgs)) : NULL;
    if (n && msgs == NULL) {
        cb(arg, 0, 0, NULL, 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *env = reply->element[2 + 2 * i];
        if (env->type != REDIS_REPLY_STRING)
            continue;
        int err;
        pg_msg_t *m = pg_msg_from_payload(channel, env->str, env->len,
                                          pg_node.cfg.max_message_bytes, &err);
        if (m == NULL || m->id == 0) {
            pg_msg_unref(&m);
            continue;
        }
        msgs[got++] = m;
    }
    cb(arg, 1, complete, msgs, got);
    for (size_t i = 0; i < got; i++)
        pg_msg_unref(&msgs[i]);
    free(msgs);
}

int pg_commands_history(const char *channel, uint64_t since, pg_history_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->history(channel, since, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    hist_req_t *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->channel = strdup(channel)) == NULL) {
        free(h);
        return -1;
    }
    h->cb = cb;
    h->arg = arg;
    char sbuf[24];
    size_t slen = pg_u64toa(since, sbuf);
    if (fcall2("FCALL_RO", pg_node.fn_history, channel, sbuf, slen, history_cb, h) < 0) {
        free(h->channel);
        free(h);
        return -1;
    }
    return 0;
}

/* --- raw publish (probe) ------------------------------------------------- */

typedef struct raw_req {
    pg_raw_cb cb;
    void     *arg;
} raw_req_t;

static void raw_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    raw_req_t *q = priv;
    (void)ac;
    q->cb(q->arg, reply != NULL && reply->type == REDIS_REPLY_INTEGER);
    free(q);
}

int pg_commands_raw_publish(const char *channel, const char *payload, size_t len,
                       pg_raw_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->raw_publish(channel, payload, len, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    raw_req_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    q->cb = cb;
    q->arg = arg;
    size_t plen = strlen(pg_node.cfg.prefix), clen = strlen(channel);
    char *full = malloc(plen + clen + 1);
    if (full == NULL) {
        free(q);
        return -1;
    }
    memcpy(full, pg_node.cfg.prefix, plen);
    memcpy(full + plen, channel, clen + 1);
    const char *argv[3] = { "PUBLISH", full, payload };
    size_t argvlen[3] = { 7, plen + clen, len };
    int rc = redisAsyncCommandArgv(cmd.ac, raw_cb, q, 3, argv, argvlen);
    free(full);
    if (rc != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

/* --- control functions ---------------------------------------------------- */

typedef struct int_req {
    pg_fcall_int_cb cb;
    void           *arg;
} int_req_t;

void pg_commands_int_reply(const struct redisReply *r, const char *lost,
                           pg_fcall_int_cb cb, void *arg)
{
    const redisReply *reply = r;
    if (reply == NULL)
        cb(arg, 0, 0, lost != NULL ? lost : "redis connection lost");
    else if (reply->type == REDIS_REPLY_ERROR)
        cb(arg, 0, 0, reply->str);
    else if (reply->type == REDIS_REPLY_INTEGER)
        cb(arg, 1, reply->integer, NULL);
    else
        cb(arg, 0, 0, "unexpected reply from a control function");
}

static void int_cb(redisAsyncContext *ac, void *r, void *priv)
{
    int_req_t *q = priv;
    (void)ac;
    pg_commands_int_reply(r, NULL, q->cb, q->arg);
    free(q);
}

int pg_commands_fcall_int(const char *fn, int argc, const char **argv, const size_t *lens,
                          pg_fcall_int_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->fcall_int(fn, argc, argv, lens, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    int_req_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    q->cb = cb;
    q->arg = arg;
    if (fcall("FCALL", fn, argc, argv, lens, int_cb, q) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

typedef struct hash_req {
    pg_hash_cb cb;
    void      *arg;
} hash_req_t;

void pg_commands_hash_reply(const struct redisReply *r, pg_hash_cb cb, void *arg)
{
    const redisReply *reply = r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        cb(arg, 0, NULL, NULL, 0);
        return;
    }
    size_t n = reply->elements / 2, got = 0;
    const char **f = calloc(n + 1, sizeof(*f)), **v = calloc(n + 1, sizeof(*v));
    if (f == NULL || v == NULL) {
        cb(arg, 0, NULL, NULL, 0);
    } else {
        for (size_t i = 0; i < n; i++) {
            const redisReply *kf = reply->element[2 * i], *kv = reply->element[2 * i + 1];
            if (kf->type != REDIS_REPLY_STRING || kv->type != REDIS_REPLY_STRING)
                continue;
            f[got] = kf->str;
            v[got++] = kv->str;
        }
        cb(arg, 1, f, v, got);
    }
    free(f);
    free(v);
}

static void hash_cb(redisAsyncContext *ac, void *r, void *priv)
{
    hash_req_t *q = priv;
    (void)ac;
    pg_commands_hash_reply(r, q->cb, q->arg);
    free(q);
}

int pg_commands_hgetall(const char *key, pg_hash_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->hgetall(key, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    hash_req_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    q->cb = cb;
    q->arg = arg;
    if (redisAsyncCommand(cmd.ac, hash_cb, q, "HGETALL %s%s", pg_node.cfg.prefix, key) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

/* --- any command, pipelined (presence, events) ----------------------------- */

typedef struct argv_req {
    pg_reply_cb cb;
    void       *arg;
} argv_req_t;

static void argv_cb(redisAsyncContext *ac, void *r, void *priv)
{
    argv_req_t *q = priv;
    (void)ac;
    q->cb(q->arg, r);
    free(q);
}

int pg_commands_argv(int argc, const char **argv, const size_t *lens, pg_reply_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->argv(argc, argv, lens, cb, arg);
    if (cmd.state != PG_LINK_READY)
        return -1;
    argv_req_t *q = NULL;
    if (cb != NULL) {
        if ((q = malloc(sizeof(*q))) == NULL)
            return -1;
        q->cb = cb;
        q->arg = arg;
    }
    if (redisAsyncCommandArgv(cmd.ac, q ? argv_cb : NULL, q, argc, argv, lens) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

int pg_commands_keyed_argv(const char *key, size_t keylen, int argc, const char **argv,
                           const size_t *lens, pg_reply_cb cb, void *arg)
{
    if (pg_broker != NULL)
        return pg_broker->keyed_argv(key, keylen, argc, argv, lens, cb, arg);
    return pg_commands_argv(argc, argv, lens, cb, arg);
}

void pg_commands_flush_sync(int timeout_ms)
{
    if (cmd.ac == NULL || cmd.state != PG_LINK_READY)
        return;
    redisContext *c = &cmd.ac->c;
    uint64_t end = pg_mono_ms() + (uint64_t)timeout_ms;
    int done = 0;
    while (!done) {
        if (redisBufferWrite(c, &done) == REDIS_ERR)
            return;
        if (done)
            break;
        uint64_t now = pg_mono_ms();
        if (now >= end)
            return;
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        if (poll(&p, 1, (int)(end - now)) <= 0)
            return;
    }
}
