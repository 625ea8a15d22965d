/* server.c - the HTTP/WebSocket port. See server.h.
 *
 * One lws protocol serves everything: plain HTTP routes, SSE streams (HTTP
 * responses that never end) and WebSocket sessions (clients that send no
 * Sec-WebSocket-Protocol bind to protocols[0]). Its per-session data is
 * pg_pss_t, whose kind says which of the three a wsi is. */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "api.h"
#include "auth.h"
#include "embed.h"
#include "hangup.h"
#include "listener.h"
#include "hub.h"
#include "node.h"
#include "recovery.h"
#include "redis_cmd.h"
#include "redis_sub.h"
#include "pg_cmd.h"
#include "pg_log.h"
#include "pg_util.h"

#define MAX_SUBS_PER_CONN  256
#define CMD_RATE_PER_SEC   100   /* client commands per second before we close */
#define SSE_RETRY_MS       1000  /* the retry: hint sent when draining */

static lws_retry_bo_t ws_idle_policy;
static uv_timer_t sse_ping_timer;

/* --- plain HTTP answers --------------------------------------------------- */

static void http_reset(pg_http_t *h)
{
    if (!h->body_static)
        free(h->body);
    free(h->req);
    free(h->cors);
    pg_api_abandon(h);
    memset(h, 0, sizeof(*h));
}

static void answer_common(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                          const char *body, size_t len, int is_static)
{
    if (!h->body_static)
        free(h->body);
    h->status = status;
    h->ctype = ctype;
    h->body_static = is_static;
    if (is_static) {
        h->body = (char *)body;
    } else {
        h->body = malloc(len ? len : 1);
        if (h->body != NULL && len)
            memcpy(h->body, body, len);
        if (h->body == NULL)
            len = 0;
    }
    h->body_len = len;
    lws_callback_on_writable(wsi);
}

void pg_http_answer(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                    const char *body, size_t len)
{
    answer_common(wsi, h, status, ctype, body, len, 0);
}

void pg_http_error(struct lws *wsi, pg_http_t *h, int status, const char *msg)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_puts(&b, "{\"error\":");
    pg_buf_json_str(&b, msg, strlen(msg));
    if (pg_buf_puts(&b, "}\n") < 0)
        pg_http_answer(wsi, h, status, "application/json", "{}", 2);
    else
        pg_http_answer(wsi, h, status, "application/json", b.data, b.len);
    pg_buf_free(&b);
}

/* Write status line, headers and the whole body. Used for answers and for
 * refusing a WebSocket upgrade before it happens. Returns -1 on error. */
static int write_response(struct lws *wsi, int status, const char *ctype, const char *allow,
                          const char *cors, size_t cors_len, const char *body, size_t len)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                  *end = hdr + sizeof(hdr) - 1;

    if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype, len, &p, end))
        return -1;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    if (allow != NULL &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                    (const unsigned char *)allow, (int)strlen(allow), &p, end))
        return -1;
    if (cors != NULL) {
        if ((size_t)(end - p) < cors_len)
            return -1;
        memcpy(p, cors, cors_len);
        p += cors_len;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (len == 0)
        return 0;
    /* lws_write wants LWS_PRE writable bytes before the payload */
    unsigned char *buf = malloc(LWS_PRE + len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, body, len);
    int n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    return n < 0 ? -1 : 0;
}

static int http_writeable(struct lws *wsi, pg_http_t *h)
{
    if (h->status <= 0)
        return 0;
    int rc = write_response(wsi, h->status, h->ctype, h->allow, h->cors, h->cors_len,
                            h->body, h->body_len);
    int close_after = h->close_after;
    http_reset(h);
    if (rc < 0 || close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* --- routes ---------------------------------------------------------------- */

/* Ready: subscribed to everything needed (SPEC §5), and also able to
 * publish, so a load balancer never sends POST /api/publish to a node that
 * would answer 503 while its command link is still reconnecting. */
static int readyz(void)
{
    return pg_sub_ready() && pg_rcmd_ready() && !pg_node.draining;
}

static void serve_metrics(struct lws *wsi, pg_http_t *h)
{
    pg_buf_t b = PG_BUF_INIT;
    if (pg_metrics_render(&pg_node.metrics, &b) < 0)
        pg_http_error(wsi, h, 500, "out of memory");
    else
        pg_http_answer(wsi, h, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    pg_buf_free(&b);
}

static int too_many_connections(void)
{
    if (pg_node.nconns < pg_node.max_connections)
        return 0;
    pg_node.metrics.connections_rejected_total++;
    return 1;
}

static int join_requested(pg_conn_t *c, pg_auth_result_t *res)
{
    for (size_t i = 0; i < res->channels.n; i++)
        if (pg_hub_join(c, res->channels.v[i]) == NULL)
            return -1;
    if (res->has_since) {
        lws_start_foreach_dll(struct lws_dll2 *, d, lws_dll2_get_head(&c->subs)) {
            pg_sub_t *s = lws_container_of(d, pg_sub_t, conn_node);
            s->last_id = res->since;
            if (pg_recovery_add(c, s->chan->name, res->since) != 0)
                return -1;
        } lws_end_foreach_dll(d);
    }
    return 0;
}

static int sse_start(struct lws *wsi, pg_pss_t *pss)
{
    char err[PG_ERRLEN];
    pg_auth_result_t res;

    if (pg_node.draining || too_many_connections()) {
        pg_http_error(wsi, &pss->http, 503, pg_node.draining ? "draining" : "too many connections");
        return 0;
    }
    int status = pg_auth_request(wsi, 1, &res, err, sizeof(err));
    if (status != 0) {
        pg_log(PG_LOG_DEBUG, "sse refused %d: %s", status, err);
        pg_http_error(wsi, &pss->http, status, err);
        return 0;
    }
    pg_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        pg_auth_result_free(&res);
        pg_http_error(wsi, &pss->http, 500, "out of memory");
        return 0;
    }
    lws_set_opaque_user_data(wsi, c);
    pss->kind = PG_PSS_SSE;
    pg_conn_open(c, wsi, PG_TR_SSE, &res.who);
    if (join_requested(c, &res) != 0)
        pg_conn_close(c, 1011, "out of memory");
    pg_auth_result_free(&res);
    /* pss must not be touched after this: lws may rebind the protocol */
    return pg_conn_sse_begin(c);
}

static int on_http(struct lws *wsi, pg_pss_t *pss, const char *path)
{
    char *uri;
    int ulen;
    int meth = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    pg_http_t *h = &pss->http;
    int is_get = meth == LWSHUMETH_GET;

    http_reset(h);
    pss->kind = PG_PSS_HTTP;

    int is_api = strcmp(path, "/api/publish") == 0;
    if (is_api || strcmp(path, "/sse") == 0) {
        /* Built now, while the request headers are at hand; the answer may
         * be written later, after Redis replied. */
        unsigned char cb[1024], *cp = cb;
        if (pg_auth_cors_headers(wsi, &cp, cb + sizeof(cb)) == 0 && cp > cb &&
            (h->cors = malloc((size_t)(cp - cb))) != NULL) {
            memcpy(h->cors, cb, (size_t)(cp - cb));
            h->cors_len = (size_t)(cp - cb);
        }
        if (meth == LWSHUMETH_OPTIONS) {
            /* CORS preflight (a browser app on another origin POSTing with
             * an Authorization header): allowed origins only. */
            if (h->cors == NULL) {
                pg_http_error(wsi, h, 403, "origin not allowed");
                return 0;
            }
            static const char pre[] =
                "access-control-allow-methods: GET, POST\x0d\x0a"
                "access-control-allow-headers: Authorization, Content-Type, Last-Event-ID\x0d\x0a"
                "access-control-max-age: 600\x0d\x0a";
            char *n = realloc(h->cors, h->cors_len + sizeof(pre) - 1);
            if (n != NULL) {
                memcpy(n + h->cors_len, pre, sizeof(pre) - 1);
                h->cors = n;
                h->cors_len += sizeof(pre) - 1;
            }
            answer_common(wsi, h, 204, "text/plain", "", 0, 1);
            return 0;
        }
    }

    if (is_api) {
        if (meth != LWSHUMETH_POST) {
            h->allow = "POST";
            h->close_after = 1;   /* a body, if any, is not read */
            pg_metrics_publish(&pg_node.metrics, 405);
            pg_http_error(wsi, h, 405, "use POST");
            return 0;
        }
        pg_api_begin(wsi, h);
        return 0;   /* the body arrives in HTTP_BODY callbacks */
    }
    struct { const char *path; } known[] = {
        {"/"}, {"/pushgate.js"}, {"/healthz"}, {"/readyz"}, {"/metrics"}, {"/sse"}, {"/ws"}
    };
    int found = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(path, known[i].path) == 0)
            found = 1;
    if (!found) {
        pg_http_error(wsi, h, 404, "not found");
        return 0;
    }
    if (!is_get) {
        h->allow = "GET";
        pg_http_error(wsi, h, 405, "use GET");
        return 0;
    }
    if (strcmp(path, "/healthz") == 0)
        answer_common(wsi, h, 200, "text/plain", "ok\n", 3, 1);
    else if (strcmp(path, "/readyz") == 0) {
        if (readyz())
            answer_common(wsi, h, 200, "text/plain", "ready\n", 6, 1);
        else
            answer_common(wsi, h, 503, "text/plain",
                          pg_node.draining ? "draining\n" : "redis not ready\n",
                          pg_node.draining ? 9 : 16, 1);
    } else if (strcmp(path, "/metrics") == 0)
        serve_metrics(wsi, h);
    else if (strcmp(path, "/") == 0)
        answer_common(wsi, h, 200, "text/html; charset=utf-8", pg_embed_index_html,
                      pg_embed_index_html_len, 1);
    else if (strcmp(path, "/pushgate.js") == 0)
        answer_common(wsi, h, 200, "application/javascript; charset=utf-8",
                      pg_embed_pushgate_js, pg_embed_pushgate_js_len, 1);
    else if (strcmp(path, "/sse") == 0)
        return sse_start(wsi, pss);
    else /* /ws without an upgrade */
        pg_http_error(wsi, h, 400, "WebSocket upgrade required");
    return 0;
}

/* --- WebSocket ----------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 503: return "Service Unavailable";
    default:  return "Error";
    }
}

/* Refuse a WebSocket upgrade with a real HTTP answer. Written by hand: at
 * this point lws has not recorded the request's HTTP version and would
 * answer "HTTP/1.0", which strict WebSocket clients reject as invalid
 * instead of reporting the status. Returns -1 so lws drops the connection. */
static int refuse_upgrade(struct lws *wsi, int status, const char *msg)
{
    pg_buf_t body = PG_BUF_INIT, b = PG_BUF_INIT;
    pg_buf_puts(&body, "{\"error\":");
    pg_buf_json_str(&body, msg, strlen(msg));
    pg_buf_puts(&body, "}\n");
    pg_buf_append(&b, "0123456789abcdef0123456789abcdef", LWS_PRE); /* lws headroom */
    pg_buf_printf(&b, "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                  "content-length: %zu\r\ncache-control: no-store\r\n"
                  "connection: close\r\n\r\n", status, reason_phrase(status), body.len);
    if (pg_buf_append(&b, body.data, body.len) == 0)
        lws_write(wsi, (unsigned char *)b.data + LWS_PRE, b.len - LWS_PRE,
                  LWS_WRITE_HTTP_HEADERS);
    pg_buf_free(&body);
    pg_buf_free(&b);
    return -1;
}

static int ws_filter(struct lws *wsi)
{
    char path[256], err[PG_ERRLEN];
    pg_auth_result_t res;

    if (pg_auth_header(wsi, WSI_TOKEN_GET_URI, path, sizeof(path)) < 0 ||
        strcmp(path, "/ws") != 0)
        return refuse_upgrade(wsi, 404, "not found");
    if (pg_node.draining)
        return refuse_upgrade(wsi, 503, "draining");
    if (too_many_connections())
        return refuse_upgrade(wsi, 503, "too many connections");
    int status = pg_auth_request(wsi, 0, &res, err, sizeof(err));
    if (status != 0) {
        pg_log(PG_LOG_DEBUG, "ws refused %d: %s", status, err);
        return refuse_upgrade(wsi, status, err);
    }
    pg_auth_result_free(&res);
    return 0;
}

static void ws_established(struct lws *wsi, pg_pss_t *pss)
{
    char err[PG_ERRLEN];
    pg_auth_result_t res;

    /* The upgrade passed ws_filter moments ago with these same headers;
     * they are still attached until ESTABLISHED returns, and the per-session
     * data may not exist at filter time, so the request is read again here. */
    pss->kind = PG_PSS_WS;
    int status = pg_auth_request(wsi, 0, &res, err, sizeof(err));
    pg_identity_t anon = {0};
    pg_conn_open(&pss->conn, wsi, PG_TR_WS, status == 0 ? &res.who : &anon);
    if (status != 0) {
        pg_conn_close(&pss->conn, 1008, "refused");
        return;
    }
    if (join_requested(&pss->conn, &res) != 0)
        pg_conn_close(&pss->conn, 1011, "out of memory");
    pg_auth_result_free(&res);
}

static void send_error(pg_conn_t *c, const char *code, const char *msg)
{
    pg_buf_t b = PG_BUF_INIT;
    pg_buf_printf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    pg_buf_json_str(&b, msg, strlen(msg));
    if (pg_buf_puts(&b, "}") == 0)
        pg_conn_send_control(c, b.data, b.len, NULL);
    pg_buf_free(&b);
}

static void send_ack(pg_conn_t *c, const char *type, const char *channel)
{
    char buf[64 + PG_CHAN_MAX];
    /* channel names need no JSON escaping: their alphabet has no " or \ */
    int n = snprintf(buf, sizeof(buf), "{\"type\":\"%s\",\"channel\":\"%s\"}", type, channel);
    pg_conn_send_control(c, buf, (size_t)n, NULL);
}

static int is_implicit(pg_conn_t *c, const char *name)
{
    if (strcmp(name, "broadcast") == 0)
        return 1;
    return c->who.sub != NULL && strncmp(name, "user:", 5) == 0 &&
           strcmp(name + 5, c->who.sub) == 0;
}

static void ws_command(pg_conn_t *c, const char *buf, size_t len)
{
    pg_cmd_t cmd;
    const char *code;
    char err[PG_ERRLEN];

    if (pg_cmd_parse(buf, len, &cmd, &code, err, sizeof(err)) != 0) {
        send_error(c, code, err);
        return;
    }
    switch (cmd.type) {
    case PG_CMD_PING: {
        static const char pong[] = "{\"type\":\"pong\"}";
        pg_conn_send_control(c, pong, sizeof(pong) - 1, NULL);
        return;
    }
    case PG_CMD_SUBSCRIBE: {
        if (!pg_auth_may_read(&c->who, cmd.channel)) {
            send_error(c, "forbidden", "channel not allowed");
            return;
        }
        pg_sub_t *s = pg_hub_sub_of(c, cmd.channel);
        if (s == NULL && c->subs.count >= MAX_SUBS_PER_CONN) {
            send_error(c, "too_many_channels", "subscription limit reached");
            return;
        }
        if (s == NULL && (s = pg_hub_join(c, cmd.channel)) == NULL) {
            pg_conn_close(c, 1011, "out of memory");
            return;
        }
        send_ack(c, "subscribed", cmd.channel);
        if (cmd.has_since) {
            if (cmd.since > s->last_id || s->last_id == 0)
                s->last_id = cmd.since;
            pg_recovery_add(c, cmd.channel, cmd.since);
        }
        return;
    }
    case PG_CMD_UNSUBSCRIBE:
        if (is_implicit(c, cmd.channel)) {
            send_error(c, "implicit_channel", "broadcast and your own user channel cannot be left");
            return;
        }
        if (pg_hub_leave(c, cmd.channel) != 0) {
            send_error(c, "not_subscribed", "not subscribed to that channel");
            return;
        }
        send_ack(c, "unsubscribed", cmd.channel);
        return;
    }
}

static int ws_receive(struct lws *wsi, pg_conn_t *c, const void *in, size_t len)
{
    size_t max = pg_node.cfg.max_message_bytes;

    if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
        return 0;   /* closing: whatever else it sends is ignored */
    if (lws_frame_is_binary(wsi)) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         (unsigned char *)"binary frames are not accepted", 30);
        return -1;
    }
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (c->rx.len + len + remaining > max) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message too big", 15);
        return -1;
    }
    int final = lws_is_final_fragment(wsi) && remaining == 0;
    if (!final || c->rx.len) {
        if (pg_buf_append(&c->rx, in, len) < 0)
            return -1;
        if (!final)
            return 0;
        in = c->rx.data;
        len = c->rx.len;
    }

    uint64_t now = pg_mono_ms();
    if (now - c->cmd_window_ms >= 1000) {
        c->cmd_window_ms = now;
        c->cmd_count = 0;
    }
    if (++c->cmd_count > CMD_RATE_PER_SEC) {
        send_error(c, "rate_limited", "more than 100 commands a second");
        pg_conn_close_after_flush(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many commands");
    } else {
        ws_command(c, in, len);
    }
    pg_buf_reset(&c->rx);
    return 0;
}

/* --- the protocol callback ---------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    pg_pss_t *pss = user;
    /* an SSE stream's connection, whatever lws did to pss (server.h) */
    pg_conn_t *sse = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (sse != NULL)
            return -1;   /* a request on an SSE stream's connection: not for us */
        return on_http(wsi, pss, (const char *)in);
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->kind == PG_PSS_HTTP && pss->http.status == 0)
            pg_api_body(&pss->http, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss->kind == PG_PSS_HTTP && pss->http.status == 0 && pss->http.api == NULL)
            pg_api_complete(wsi, &pss->http);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (sse != NULL)
            return pg_conn_writeable(sse);
        if (pss == NULL)
            return 0;
        return http_writeable(wsi, &pss->http);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (sse != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            pg_conn_destroy(sse);
            free(sse);
        }
        if (pss != NULL) {
            http_reset(&pss->http);
            pss->kind = PG_PSS_NONE;
        }
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        ws_established(wsi, pss);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return ws_receive(wsi, &pss->conn, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pg_conn_writeable(&pss->conn);
    case LWS_CALLBACK_CLOSED:
        pg_conn_destroy(&pss->conn);
        pss->kind = PG_PSS_NONE;
        return 0;

    default:
        return 0;
    }
}

static struct lws_protocols protocols[] = {
    /* rx_buffer_size: lws allocates it per WebSocket connection. Client
     * commands are small; a rare large frame arrives in pieces and is
     * reassembled in pg_conn_t.rx. */
    /* tx_packet_size: without it lws sends at most rx_buffer_size bytes per
     * write and buffers the rest, which would defeat coalescing. */
    { "pushgate", callback, sizeof(pg_pss_t), 512, 0, NULL, 65536 + LWS_PRE },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* --- SSE keepalive ------------------------------------------------------- */

static void sse_ping(pg_conn_t *c, void *arg)
{
    if (c->flags & PG_CONN_HDRS_SENT)
        pg_conn_send(c, arg);
}

static void sse_ping_cb(uv_timer_t *t)
{
    (void)t;
    pg_msg_t *m = pg_msg_sse_raw(": ping\n\n", 8);
    if (m == NULL)
        return;
    pg_conn_foreach(PG_TR_SSE, sse_ping, m);
    pg_msg_unref(&m);
}

/* --- drain ------------------------------------------------------------------ */

static void drain_one(pg_conn_t *c, void *arg)
{
    pg_msg_t *retry = arg;
    if (c->transport == PG_TR_SSE && retry != NULL)
        pg_conn_send(c, retry);     /* reconnect soon, elsewhere */
    c->flags |= PG_CONN_DRAINING;
    lws_callback_on_writable(c->wsi);
}

void pg_server_drain(void)
{
    /* The listener stays open while draining: /readyz must answer 503 so
     * load balancers and orchestrators see the drain (SPEC §6), and new
     * WebSocket and SSE requests are refused with 503 (server.c routes). */
    char txt[32];
    int n = snprintf(txt, sizeof(txt), "retry: %d\n\n", SSE_RETRY_MS);
    pg_msg_t *retry = pg_msg_sse_raw(txt, (size_t)n);
    pg_conn_foreach(-1, drain_one, retry);
    pg_msg_unref(&retry);
}

/* --- lifecycle ---------------------------------------------------------- */

static void lws_log_emit(int level, const char *line)
{
    int lvl = (level & LLL_ERR) ? PG_LOG_ERROR : (level & LLL_WARN) ? PG_LOG_WARN : PG_LOG_DEBUG;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    pg_log(lvl, "lws: %.*s", (int)n, line);
}

int pg_server_start(void)
{
    struct lws_context_creation_info info;
    void *foreign[1] = { pg_node.loop };

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    ws_idle_policy.secs_since_valid_ping = (uint16_t)pg_node.cfg.ping_interval;
    ws_idle_policy.secs_since_valid_hangup = (uint16_t)(2 * pg_node.cfg.ping_interval);

    memset(&info, 0, sizeof(info));
    /* VALIDATE_UTF8: a text frame that is not UTF-8 is closed by lws (1007)
     * before it reaches the command parser. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.foreign_loops = foreign;
    /* lws listens on nothing: listener.c owns the port and hands each
     * accepted connection over (listener.h says why). */
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.retry_and_idle_policy = &ws_idle_policy;
    info.max_http_header_data = 8192;
    /* Header tables are lent to connections still sending their request
     * head (an SSE stream gives its own back, see pg_conn_sse_begin). With
     * lws's default of a few dozen, that many trickling sockets (slowloris)
     * made every new request wait for the 10 s head timeout. 1024 costs at
     * most 8 MiB while under such an attack, nothing otherwise. */
    info.max_http_header_pool = 1024;
    info.fd_limit_per_thread = (unsigned int)(pg_node.max_connections + 128);
    info.timeout_secs = 10;       /* an unfinished request head is dropped */
    info.keepalive_timeout = 30;
    if (pg_node.cfg.tls_cert != NULL) {
        /* CREATE_VHOST_SSL_CTX: the vhost has no listen port of its own */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                        LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
        info.ssl_cert_filepath = pg_node.cfg.tls_cert;
        info.ssl_private_key_filepath = pg_node.cfg.tls_key;
    }

    pg_node.lws = lws_create_context(&info);
    /* lws may return a context whose default vhost failed (e.g. a bad
     * certificate): check for the vhost too. */
    if (pg_node.lws != NULL &&
        (pg_node.vhost = lws_get_vhost_by_name(pg_node.lws, "default")) == NULL) {
        lws_context_destroy(pg_node.lws);
        pg_node.lws = NULL;
    }
    if (pg_node.lws == NULL) {
        pg_log(PG_LOG_ERROR, "cannot start the HTTP server (a bad TLS certificate or key, "
               "or the libuv event plugin libwebsockets-evlib-uv is missing)");
        return -1;
    }
    if (pg_listener_start() != 0)
        return -1;
    pg_hangup_init();
    if (pg_conn_init() != 0)
        return -1;
    uv_timer_init(pg_node.loop, &sse_ping_timer);
    uv_timer_start(&sse_ping_timer, sse_ping_cb, pg_node.cfg.ping_interval * 1000ull,
                   pg_node.cfg.ping_interval * 1000ull);
    pg_log(PG_LOG_INFO, "listening on %s%s", pg_node.cfg.listen,
           pg_node.cfg.tls_cert ? " (TLS)" : "");
    return 0;
}

void pg_server_stop(void)
{
    pg_listener_stop();
    pg_hangup_stop();
    pg_conn_shutdown();
    uv_timer_stop(&sse_ping_timer);
    uv_close((uv_handle_t *)&sse_ping_timer, NULL);

    if (pg_node.lws != NULL)
        lws_context_destroy(pg_node.lws);   /* first call: starts closing */
}

void pg_server_destroy(void)
{
    if (pg_node.lws != NULL)
        lws_context_destroy(pg_node.lws);   /* second call, loop drained: frees */
    pg_node.lws = NULL;
}
