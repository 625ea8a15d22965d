/* server.c - the HTTP/WebSocket port: the lws context and the one protocol
 * callback, which routes each event to the layer that owns it. See server.h.
 *
 * One lws protocol serves everything: plain HTTP routes, SSE streams (HTTP
 * responses that never end) and WebSocket sessions (clients that send no
 * Sec-WebSocket-Protocol bind to protocols[0]). Its per-session data is
 * pg_pss_t, whose kind says which of the three a wsi is. */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "api.h"
#include "embed.h"
#include "listener.h"
#include "node.h"
#include "session.h"
#include "workers.h"
#include "pg_log.h"
#include "pg_util.h"

#define SSE_RETRY_MS       1000  /* the retry: hint sent when draining */

/* All zeros: lws schedules no ping or hang-up ("validity") timers of its
 * own; the keepalive is conn.c's, on the node's timer wheel. */
static const lws_retry_bo_t no_lws_keepalive;

/* --- routes ---------------------------------------------------------------- */

static void serve_metrics(struct lws *wsi, pg_http_t *h)
{
    pg_buf_t b = PG_BUF_INIT;
    int rc = pg_node.nworkers ? pg_workers_render_metrics(&b) : pg_metrics_render(&pg_node.metrics, &b);
    if (rc < 0)
        pg_http_error(wsi, h, 500, "out of memory");
    else
        pg_http_answer(wsi, h, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    pg_buf_free(&b);
}

static int sse_start(struct lws *wsi, pg_pss_t *pss)
{
    int fatal;
    pg_conn_t *c = pg_session_sse_open(wsi, &pss->http, &fatal);
    if (c == NULL)
        return 0;
    lws_set_opaque_user_data(wsi, c);
    pss->kind = PG_PSS_SSE;
    /* pss must not be touched after this: lws may rebind the protocol */
    return fatal ? -1 : 0;
}

/* The plain HTTP exchange on this connection still owes its answer: one
 * is set and not yet written, or the API's Redis work is in flight. */
static int answer_pending(const pg_pss_t *pss)
{
    return pss->kind == PG_PSS_HTTP && (pss->http.status != 0 || pss->http.api != NULL);
}

/* Over TLS, a request (or bytes past a body) arrived while the one before
 * is still unanswered: pipelining, where lws reads the socket itself (a
 * plain connection gets one request at a time from the relay, relay.c).
 * lws 4.1 mishandles what it read ahead: left in its body state after a
 * body, it hands the extra bytes back on every loop iteration as a new
 * completion, consuming nothing, and a request parsed from its read-ahead
 * has its body taken twice; either way the node ends up spinning at full
 * CPU for good, answering nobody. So the unanswered request is answered
 * and the connection then closed, lws never parsing what came after it:
 * RFC 9112 §9.3.2 lets a server close a pipelined connection, and the
 * client resends what got no answer. */
static int tls_pipelined(pg_pss_t *pss)
{
    if (pg_node.cfg.tls_cert == NULL || !answer_pending(pss))
        return 0;
    pss->http.close_after = 1;
    return 1;
}

static int on_http(struct lws *wsi, pg_pss_t *pss, const char *path)
{
    if (tls_pipelined(pss))
        return 0;
    char *uri;
    int ulen;
    int meth = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    pg_http_t *h = &pss->http;
    /* HEAD is GET without content (RFC 9110 §9.3.2): routed as GET, the
     * answer written without its body (http.c) */
    int is_head = meth == LWSHUMETH_HEAD;
    int is_get = meth == LWSHUMETH_GET || is_head;

    pg_http_reset(h);
    pss->kind = PG_PSS_HTTP;
    h->head_only = is_head;
    /* Over TLS a request whose answer does not wait for a body is the last
     * of its connection: another one already read ahead behind it would be
     * parsed by lws 4.1 with its body taken twice (see tls_pipelined()), and
     * after such an answer nothing else tells that one is there. API POSTs
     * keep the connection (below): one read ahead behind a body shows. */
    h->close_after = pg_node.cfg.tls_cert != NULL;

    /* Every request of a plain connection was checked whole by the node
     * (relay.c); one over TLS only by lws,
     * which reads a body by Content-Length even beside Transfer-Encoding:
     * refused here, and the connection closed, so the two cannot disagree
     * on where the next request starts (RFC 9112 §6.1, smuggling). */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 &&
        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        h->close_after = 1;
        pg_http_error(wsi, h, 400, "Transfer-Encoding with Content-Length");
        return 0;
    }
    if (pg_http_has_nul(wsi)) {
        h->close_after = 1;
        pg_http_error(wsi, h, 400, "NUL in a header field");
        return 0;
    }

    const char *api = pg_api_route(path);
    if ((api != NULL || strcmp(path, "/sse") == 0) &&
        pg_http_cors_begin(wsi, h, meth == LWSHUMETH_OPTIONS))
        return 0;   /* an answered preflight */

    if (api != NULL) {
        h->path = api;
        if (pg_api_is_get(api)) {   /* the presence queries (SPEC §8) */
            if (!is_get) {
                h->allow = "GET";
                h->close_after = 1;   /* a body, if any, is not read */
                pg_http_error(wsi, h, 405, "use GET");
                return 0;
            }
            pg_api_get(wsi, h, api);
            return 0;
        }
        if (meth != LWSHUMETH_POST) {
            h->allow = "POST";
            h->close_after = 1;   /* a body, if any, is not read */
            if (strcmp(api, "/api/publish") == 0)
                pg_metrics_publish(&pg_node.metrics, 405);
            pg_http_error(wsi, h, 405, "use POST");
            return 0;
        }
        h->close_after = 0;
        pg_api_begin(wsi, h, api);
        return 0;   /* the body arrives in HTTP_BODY callbacks */
    }
    static const char *const known[] = {
        "/", "/pushgate.js", "/healthz", "/readyz", "/metrics", "/sse", "/ws"
    };
    int found = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(path, known[i]) == 0)
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
        pg_http_answer_static(wsi, h, 200, "text/plain", "ok\n", 3);
    else if (strcmp(path, "/readyz") == 0) {
        if (pg_node_ready())
            pg_http_answer_static(wsi, h, 200, "text/plain", "ready\n", 6);
        else
            pg_http_answer_static(wsi, h, 503, "text/plain",
                                  pg_node.draining ? "draining\n" : "redis not ready\n",
                                  pg_node.draining ? 9 : 16);
    } else if (strcmp(path, "/metrics") == 0)
        serve_metrics(wsi, h);
    else if (strcmp(path, "/") == 0)
        pg_http_answer_static(wsi, h, 200, "text/html; charset=utf-8", pg_embed_index_html,
                              pg_embed_index_html_len);
    else if (strcmp(path, "/pushgate.js") == 0)
        pg_http_answer_static(wsi, h, 200, "application/javascript; charset=utf-8",
                              pg_embed_pushgate_js, pg_embed_pushgate_js_len);
    else if (strcmp(path, "/sse") == 0 && is_head)
        pg_http_answer_static(wsi, h, 200, "text/event-stream", "", 0);
    else if (strcmp(path, "/sse") == 0)
        return sse_start(wsi, pss);
    else /* /ws without an upgrade */
        pg_http_error(wsi, h, 400, "WebSocket upgrade required");
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
        /* pending: called again for the same request, for bytes past its
         * body (tls_pipelined) */
        if (pss->kind != PG_PSS_HTTP || tls_pipelined(pss) || answer_pending(pss))
            return 0;
        /* an empty body: a request read ahead behind it would not show */
        if (pss->http.req_len == 0 && pg_node.cfg.tls_cert != NULL)
            pss->http.close_after = 1;
        pg_api_complete(wsi, &pss->http);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (sse != NULL)
            return pg_conn_writeable(sse);
        if (pss == NULL)
            return 0;
        return pg_http_writeable(wsi, &pss->http);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (sse != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            pg_session_closed(sse);
            free(sse);
        }
        if (pss != NULL) {
            pg_http_reset(&pss->http);
            pss->kind = PG_PSS_NONE;
        }
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return pg_session_ws_filter(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        pss->kind = PG_PSS_WS;
        pg_session_ws_open(&pss->conn, wsi);
        /* frames are read by conn.c (wsframe.h says why); over TLS lws
         * must decrypt them, so its parser stays there */
        if (pg_node.cfg.tls_cert == NULL)
            pg_conn_ws_own_reads(&pss->conn);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        pg_conn_seen(&pss->conn);
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        pg_conn_t *c = &pss->conn;
        pg_conn_seen(c);
        if (c->flags & (PG_CONN_CLOSE_ASAP | PG_CONN_CLOSING))
            return 0;   /* closing: whatever else it sends is ignored */
        switch (pg_conn_ws_receive(c, in, len)) {
        case PG_ERR:
            return -1;
        case PG_AGAIN:
            return 0;
        }
        pg_session_message(c, c->rx.data, c->rx.len);
        pg_buf_reset(&c->rx);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pg_conn_writeable(&pss->conn);
    case LWS_CALLBACK_CLOSED:
        pg_session_closed(&pss->conn);
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
    /* lws 4.1 logs every adoption with a head handed over (relay.c) as
     * an error: routine, not a fault */
    if (strstr(line, "adopt_socket_readbuf: ") != NULL)
        return;
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


    memset(&info, 0, sizeof(info));
    /* VALIDATE_UTF8: a text frame that is not UTF-8 is closed by lws (1007)
     * before it reaches the command parser. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.foreign_loops = foreign;
    /* lws listens on nothing: listener.c owns the port and hands each
     * accepted connection over (listener.h says why). */
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.retry_and_idle_policy = &no_lws_keepalive;
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
    pg_http_set_abandon(pg_api_abandon);
    pg_conn_set_message_hook(pg_session_message);
    pg_conn_set_end_hook(pg_session_ended);
    if (pg_listener_start() != 0)
        return -1;
    if (pg_conn_init() != 0)
        return -1;
    pg_log(PG_LOG_INFO, "listening on %s%s", pg_node.cfg.listen,
           pg_node.cfg.tls_cert ? " (TLS)" : "");
    return 0;
}

void pg_server_stop(void)
{
    pg_listener_stop();
    pg_conn_shutdown();

    if (pg_node.lws != NULL)
        lws_context_destroy(pg_node.lws);   /* first call: starts closing */
}

void pg_server_destroy(void)
{
    if (pg_node.lws != NULL)
        lws_context_destroy(pg_node.lws);   /* second call, loop drained: frees */
    pg_node.lws = NULL;
}
