/* api.c - POST /api/publish and the control endpoints. See api.h. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <json-c/json.h>
#include <hiredis/hiredis.h>

#include "api.h"
#include "commands.h"
#include "node.h"
#include "pg_buf.h"
#include "pg_chan.h"
#include "pg_json.h"
#include "pg_log.h"
#include "pg_util.h"

#define MAX_CHANNELS_PER_PUBLISH 100

/* One request's Redis work in flight. The HTTP side and the Redis replies
 * both point at it; whichever lets go last frees it (wsi == NULL: the
 * client left). */
typedef struct pg_api_req {
    struct lws *wsi;
    pg_http_t  *h;
    unsigned    pending;        /* FCALLs not answered yet */
    size_t      n;
    uint64_t   *ids;            /* one per channel, in request order */
    int         failed;         /* 0, or the HTTP status to answer */
    long long   nodes;          /* control: the function's answer */
    int         is_list;        /* "channels" form: answer with "ids" too */
    char        err[PG_ERRLEN];
} pg_api_req_t;

typedef struct api_slot {
    pg_api_req_t *req;
    size_t        idx;
} api_slot_t;

static int is_publish(const pg_http_t *h)
{
    return strcmp(h->path, "/api/publish") == 0;
}

static void answer(struct lws *wsi, pg_http_t *h, int status, const char *body, size_t len)
{
    if (is_publish(h))
        pg_metrics_publish(&pg_node.metrics, status);
    pg_http_answer(wsi, h, status, "application/json", body, len);
}

static void answer_error(struct lws *wsi, pg_http_t *h, int status, const char *msg)
{
    if (is_publish(h))
        pg_metrics_publish(&pg_node.metrics, status);
    pg_http_error(wsi, h, status, msg);
}

/* An answer given before the body was read: the rest of the body would be
 * taken for the next request, so the connection closes after the answer. */
static void refuse_early(struct lws *wsi, pg_http_t *h, int status, const char *msg)
{
    answer_error(wsi, h, status, msg);
    h->close_after = 1;
}

static const char *const routes[] = {
    "/api/publish", "/api/disconnect", "/api/subscribe", "/api/unsubscribe",
    "/api/presence", "/api/presence/stats"
};

/* The presence queries (SPEC §8) are reads: GET with the channel in the
 * query string, no body. */
static int is_presence(const char *route)
{
    return strncmp(route, "/api/presence", 13) == 0;
}

int pg_api_is_get(const char *route)
{
    return is_presence(route);
}

const char *pg_api_route(const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(path, routes[i]) == 0)
            return routes[i];
    return NULL;
}

/* The API key and the Origin: 1 when the request may go on, else 0 with
 * the refusal queued. */
static int authorized(struct lws *wsi, pg_http_t *h)
{
    char auth[1024];

    if (!pg_keys_has_api(pg_node.keys)) {
        refuse_early(wsi, h, 403, "the API is disabled: no --api-key configured");
        return 0;
    }
    int n = pg_http_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth));
    const char *given = NULL;
    if (n > 7 && strncasecmp(auth, "Bearer ", 7) == 0)
        given = auth + 7;
    if (given == NULL || !pg_keys_api_ok(pg_node.keys, given, strlen(given))) {
        refuse_early(wsi, h, 401, "missing or wrong API key");
        return 0;
    }
    if (!pg_http_origin_ok(wsi)) {
        refuse_early(wsi, h, 403, "origin not allowed");
        return 0;
    }
    return 1;
}

int pg_api_begin(struct lws *wsi, pg_http_t *h, const char *route)
{
    h->path = route;
    if (!authorized(wsi, h))
        return 1;
    /* lws 4.1 reads request bodies by Content-Length only. On a plain
     * connection the relay has decoded a chunked body and given it one;
     * over TLS lws reads the request itself and a chunked body would never
     * complete, so it is refused up front. */
    char cl[32];
    uint64_t v;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        refuse_early(wsi, h, 411, "a Content-Length is required");
        return 1;
    }
    if (pg_http_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof(cl)) < 0 ||
        pg_atou64(cl, (size_t)-1, &v) != 0) {
        refuse_early(wsi, h, 400, "Content-Length is not a number of bytes");
        return 1;
    }
    if (v > pg_node.cfg.max_message_bytes) {
        refuse_early(wsi, h, 413, "body over --max-message-bytes");
        return 1;
    }
    return 0;
}

void pg_api_body(pg_http_t *h, const void *in, size_t len)
{
    if (h->too_big || len == 0)
        return;
    if (h->req_len + len > pg_node.cfg.max_message_bytes) {
        h->too_big = 1;
        free(h->req);
        h->req = NULL;
        h->req_len = 0;
        return;
    }
    char *n = realloc(h->req, h->req_len + len + 1);
    if (n == NULL) {
        h->too_big = 1;   /* answered 413; nothing was accepted */
        return;
    }
    memcpy(n + h->req_len, in, len);
    h->req = n;
    h->req_len += len;
    h->req[h->req_len] = '\0';
}

static void req_free(pg_api_req_t *r)
{
    free(r->ids);
    free(r);
}

/* r's Redis work is over. Returns 1 when the caller answers success (and
 * then frees r); otherwise the client left or the work failed, which is
 * dealt with here, r included. */
static int work_done(pg_api_req_t *r)
{
    if (r->wsi == NULL) {
        req_free(r);
        return 0;
    }
    r->h->api = NULL;
    if (r->failed) {
        answer_error(r->wsi, r->h, r->failed, r->err);
        req_free(r);
        return 0;
    }
    return 1;
}

static void finish(pg_api_req_t *r)
{
    if (!work_done(r))
        return;
    struct lws *wsi = r->wsi;
    pg_http_t *h = r->h;
    pg_buf_t b = PG_BUF_INIT;
    char num[24];
    pg_u64toa(r->ids[r->n - 1], num);
    pg_buf_printf(&b, "{\"id\":\"%s\"", num);
    if (r->is_list) {
        pg_buf_puts(&b, ",\"ids\":[");
        for (size_t i = 0; i < r->n; i++) {
            pg_u64toa(r->ids[i], num);
            pg_buf_printf(&b, "%s\"%s\"", i ? "," : "", num);
        }
        pg_buf_puts(&b, "]");
    }
    if (pg_buf_puts(&b, "}") < 0)
        answer_error(wsi, h, 500, "out of memory");
    else
        answer(wsi, h, 200, b.data, b.len);
    pg_buf_free(&b);
    req_free(r);
}

static void published(void *arg, int ok, uint64_t id, const char *err)
{
    api_slot_t *slot = arg;
    pg_api_req_t *r = slot->req;
    if (ok) {
        r->ids[slot->idx] = id;
    } else if (!r->failed) {
        r->failed = 503;
        snprintf(r->err, sizeof(r->err), "publish failed: %s", err);
    }
    free(slot);
    if (--r->pending == 0)
        finish(r);
}

/* Check one channel name for publishing; err gets why not. */
static int channel_ok(const char *name, char *err, size_t errlen)
{
    pg_chan_kind_t k = pg_chan_kind(name);
    if (k == PG_CHAN_INVALID) {
        snprintf(err, errlen, "bad channel name: 1-128 bytes of A-Z a-z 0-9 _ - . : @");
        return 0;
    }
    if (k == PG_CHAN_RESERVED) {
        snprintf(err, errlen, "bad channel name: names starting with _ are reserved");
        return 0;
    }
    return 1;
}

static void publish(struct lws *wsi, pg_http_t *h)
{
    char err[PG_ERRLEN];
    json_object *root = NULL;
    pg_api_req_t *r = NULL;
    const char *single[1];
    const char **names = single;
    size_t n = 0;

    /* 63: the envelope built from it must stay within the 64 levels the
     * delivery path parses (pg_msg.c, functions.lua MAX_DEPTH) */
    int too_deep = 0;
    if (h->req != NULL)
        root = pg_json_parse_object(h->req, h->req_len, 63, &too_deep);
    if (root == NULL) {
        answer_error(wsi, h, 400, too_deep ? "body nested deeper than 63 levels"
                                           : "body must be a JSON object");
        goto out;
    }

    json_object *data, *event = NULL, *chan, *chans;
    if (!json_object_object_get_ex(root, "data", &data)) {
        answer_error(wsi, h, 400, "missing \"data\"");
        goto out;
    }
    if (json_object_object_get_ex(root, "event", &event) && event != NULL &&
        !json_object_is_type(event, json_type_string)) {
        answer_error(wsi, h, 400, "\"event\" must be a string");
        goto out;
    }
    int is_list = 0;
    if (json_object_object_get_ex(root, "channels", &chans)) {
        if (!json_object_is_type(chans, json_type_array) ||
            (n = json_object_array_length(chans)) == 0 || n > MAX_CHANNELS_PER_PUBLISH) {
            answer_error(wsi, h, 400, "\"channels\" must be a list of 1 to 100 channel names");
            goto out;
        }
        if ((names = calloc(n, sizeof(*names))) == NULL) {
            answer_error(wsi, h, 500, "out of memory");
            names = single;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *c = json_object_array_get_idx(chans, i);
            if (!json_object_is_type(c, json_type_string)) {
                answer_error(wsi, h, 400, "\"channels\" must hold strings");
                goto out;
            }
            names[i] = json_object_get_string(c);
        }
        is_list = 1;
    } else if (json_object_object_get_ex(root, "channel", &chan) &&
               json_object_is_type(chan, json_type_string)) {
        single[0] = json_object_get_string(chan);
        n = 1;
    } else {
        answer_error(wsi, h, 400, "missing \"channel\" (a string) or \"channels\" (a list)");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!channel_ok(names[i], err, sizeof(err))) {
            answer_error(wsi, h, 400, err);
            goto out;
        }
    }

    /* The envelope Redis stores and fans out: event and data only; the
     * function adds the id. */
    json_object *env = json_object_new_object();
    if (env == NULL) {
        answer_error(wsi, h, 500, "out of memory");
        goto out;
    }
    if (event != NULL)
        json_object_object_add(env, "event", json_object_get(event));
    json_object_object_add(env, "data", json_object_get(data));
    size_t plen;
    const char *payload = json_object_to_json_string_length(env,
            JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &plen);
    if (plen > pg_node.cfg.max_message_bytes) {
        json_object_put(env);
        answer_error(wsi, h, 413, "message over --max-message-bytes");
        goto out;
    }
    if (!pg_commands_ready()) {
        json_object_put(env);
        answer_error(wsi, h, 503, "redis unavailable");
        goto out;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL || (r->ids = calloc(n, sizeof(*r->ids))) == NULL) {
        json_object_put(env);
        free(r);
        r = NULL;
        answer_error(wsi, h, 500, "out of memory");
        goto out;
    }
    r->wsi = wsi;
    r->h = h;
    r->n = n;
    r->pending = 1;   /* held by us until every FCALL is queued */
    r->is_list = is_list;
    h->api = r;
    for (size_t i = 0; i < n; i++) {
        api_slot_t *slot = malloc(sizeof(*slot));
        if (slot == NULL) {
            r->failed = 500;
            snprintf(r->err, sizeof(r->err), "out of memory");
            break;
        }
        slot->req = r;
        slot->idx = i;
        r->pending++;
        if (pg_commands_publish(names[i], payload, plen, published, slot) != 0) {
            r->pending--;
            free(slot);
            r->failed = 503;
            snprintf(r->err, sizeof(r->err), "redis unavailable");
            break;
        }
    }
    json_object_put(env);
    if (--r->pending == 0)
        finish(r);
out:
    if (names != single)
        free(names);
    json_object_put(root);
}

/* --- control endpoints (SPEC §7) ----------------------------------------
 * Each calls the Redis function of the same name, which validates every
 * argument, records a revocation and publishes the order in one step: the
 * endpoint and the function cannot disagree, and the answer's "nodes" is
 * the function's count of nodes that got the order. */

static void controlled(void *arg, int ok, long long value, const char *err)
{
    pg_api_req_t *r = arg;
    if (ok) {
        r->nodes = value;
    } else {
        /* Redis's error text for bad arguments ("ERR ..."), or a lost link */
        int lost = strcmp(err, "redis connection lost") == 0;
        r->failed = lost ? 503 : 400;
        if (strncmp(err, "ERR ", 4) == 0)
            err += 4;
        snprintf(r->err, sizeof(r->err), "%s", err);
    }
    if (!work_done(r))
        return;
    char body[48];
    int len = snprintf(body, sizeof(body), "{\"nodes\":%lld}", r->nodes);
    answer(r->wsi, r->h, 200, body, (size_t)len);
    req_free(r);
}

/* The string member name of o, or NULL when absent; *bad when present but
 * not a string. */
static const char *member_str(json_object *o, const char *name, int *bad)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v))
        return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = 1;
        return NULL;
    }
    return json_object_get_string(v);
}

static void control(struct lws *wsi, pg_http_t *h)
{
    json_object *root = NULL, *opts = NULL;
    const char *argv[4];
    size_t lens[4];
    int argc = 0, bad = 0;
    const char *fn;
    char since_buf[24];

    root = pg_json_parse_object(h->req ? h->req : "", h->req_len, 8, NULL);
    if (root == NULL) {
        answer_error(wsi, h, 400, "body must be a JSON object");
        return;
    }
    const char *user = member_str(root, "user", &bad);
    if (user == NULL) {
        answer_error(wsi, h, 400, "missing \"user\" (a string)");
        goto out;
    }
    argv[argc++] = user;
    if (strcmp(h->path, "/api/disconnect") == 0) {
        fn = pg_node.fn_disconnect;
        /* every other member is an option; the function refuses unknown
         * ones and wrong types, so the rules live in one place */
        if ((opts = json_object_new_object()) == NULL) {
            answer_error(wsi, h, 500, "out of memory");
            goto out;
        }
        json_object_object_foreach(root, k, v) {
            if (strcmp(k, "user") != 0)
                json_object_object_add(opts, k, json_object_get(v));
        }
        if (json_object_object_length(opts) > 0)
            argv[argc++] = json_object_to_json_string_ext(opts, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    } else {
        int sub = strcmp(h->path, "/api/subscribe") == 0;
        fn = sub ? pg_node.fn_subscribe : pg_node.fn_unsubscribe;
        const char *channel = member_str(root, "channel", &bad);
        if (channel == NULL) {
            answer_error(wsi, h, 400, "missing \"channel\" (a string)");
            goto out;
        }
        argv[argc++] = channel;
        json_object *since;
        if (sub && json_object_object_get_ex(root, "since", &since)) {
            if (json_object_is_type(since, json_type_string)) {
                argv[argc++] = json_object_get_string(since);
            } else if (json_object_is_type(since, json_type_int) &&
                       json_object_get_int64(since) >= 0) {
                pg_u64toa(json_object_get_uint64(since), since_buf);
                argv[argc++] = since_buf;
            } else {
                answer_error(wsi, h, 400, "\"since\" is a message id (a string of digits)");
                goto out;
            }
        }
        json_object_object_foreach(root, k, v) {
            (void)v;
            if (strcmp(k, "user") != 0 && strcmp(k, "channel") != 0 &&
                !(sub && strcmp(k, "since") == 0)) {
                answer_error(wsi, h, 400, "unknown member in the body");
                goto out;
            }
        }
    }
    if (bad) {
        answer_error(wsi, h, 400, "\"user\" and \"channel\" must be strings");
        goto out;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    pg_api_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        answer_error(wsi, h, 500, "out of memory");
        goto out;
    }
    r->wsi = wsi;
    r->h = h;
    if (pg_commands_fcall_int(fn, argc, argv, lens, controlled, r) != 0) {
        free(r);
        answer_error(wsi, h, 503, "redis unavailable");
        goto out;
    }
    h->api = r;
out:
    json_object_put(opts);
    json_object_put(root);
}

/* --- presence (SPEC §8) ----------------------------------------------------
 * GET /api/presence?channel=C -> {"clients":[...]}; GET /api/presence/stats
 * ?channel=C -> {"clients":N,"users":M}: the same functions a backend calls
 * with FCALL, so both answers always agree. */

static void presence_answered(void *arg, const struct redisReply *reply)
{
    pg_api_req_t *r = arg;
    if (reply == NULL) {
        r->failed = 503;
        snprintf(r->err, sizeof(r->err), "redis connection lost");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        r->failed = 400;
        snprintf(r->err, sizeof(r->err), "%s",
                 strncmp(reply->str, "ERR ", 4) == 0 ? reply->str + 4 : reply->str);
    } else if (reply->type != REDIS_REPLY_STRING) {
        r->failed = 502;
        snprintf(r->err, sizeof(r->err), "unexpected reply from the presence function");
    }
    if (!work_done(r))
        return;
    if (strcmp(r->h->path, "/api/presence") == 0) {
        pg_buf_t b = PG_BUF_INIT;
        pg_buf_puts(&b, "{\"clients\":");
        pg_buf_append(&b, reply->str, reply->len);
        if (pg_buf_puts(&b, "}") < 0)
            answer_error(r->wsi, r->h, 500, "out of memory");
        else
            answer(r->wsi, r->h, 200, b.data, b.len);
        pg_buf_free(&b);
    } else {
        answer(r->wsi, r->h, 200, reply->str, reply->len);
    }
    req_free(r);
}

void pg_api_get(struct lws *wsi, pg_http_t *h, const char *route)
{
    char buf[PG_CHAN_MAX + 16], err[PG_ERRLEN], fn[128];

    h->path = route;
    if (!authorized(wsi, h))
        return;
    /* lws copies "channel=<value>" into buf and points past the name */
    const char *chan = lws_get_urlarg_by_name(wsi, "channel=", buf, (int)sizeof(buf));
    if (chan == NULL) {
        answer_error(wsi, h, 400, "missing ?channel=");
        return;
    }
    if (!channel_ok(chan, err, sizeof(err))) {
        answer_error(wsi, h, 400, err);
        return;
    }
    int stats = strcmp(route, "/api/presence/stats") == 0;
    snprintf(fn, sizeof(fn), "%s%s", pg_node.fn_prefix, stats ? "presence_stats" : "presence");
    /* a Redis Cluster takes the one-key form, routed to C's shard (SPEC §10) */
    char key[PG_CHAN_MAX + 128];
    int cluster = pg_node.cfg.redis.kind == PG_URL_CLUSTER;
    int klen = snprintf(key, sizeof(key), "%s{%s}:presence", pg_node.cfg.prefix, chan);
    const char *argv[5] = { "FCALL_RO", fn, cluster ? "1" : "0", cluster ? key : chan, chan };
    size_t lens[5] = { 8, strlen(fn), 1, cluster ? (size_t)klen : strlen(chan), strlen(chan) };
    pg_api_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        answer_error(wsi, h, 500, "out of memory");
        return;
    }
    r->wsi = wsi;
    r->h = h;
    if (pg_commands_keyed_argv(key, (size_t)klen, cluster ? 5 : 4, argv, lens,
                               presence_answered, r) != 0) {
        free(r);
        answer_error(wsi, h, 503, "redis unavailable");
        return;
    }
    h->api = r;
}

void pg_api_complete(struct lws *wsi, pg_http_t *h)
{
    if (is_presence(h->path)) {   /* a POST: the router takes GET only */
        h->allow = "GET";
        answer_error(wsi, h, 405, "use GET");
        return;
    }
    if (h->too_big) {
        answer_error(wsi, h, 413, "body over --max-message-bytes");
        return;
    }
    if (is_publish(h))
        publish(wsi, h);
    else
        control(wsi, h);
}

void pg_api_abandon(pg_http_t *h)
{
    if (h->api != NULL) {
        h->api->wsi = NULL;
        h->api->h = NULL;
        h->api = NULL;
    }
}
