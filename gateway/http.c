/* http.c - plain HTTP answers, refusals, headers and CORS. See http.h. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "node.h"
#include "pg_origin.h"

static void (*abandon_cb)(pg_http_t *h);

void pg_http_set_abandon(void (*cb)(pg_http_t *h))
{
    abandon_cb = cb;
}

void pg_http_reset(pg_http_t *h)
{
    if (!h->body_static)
        free(h->body);
    free(h->req);
    free(h->cors);
    if (h->api != NULL && abandon_cb != NULL)
        abandon_cb(h);
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

void pg_http_answer_static(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                           const char *body, size_t len)
{
    answer_common(wsi, h, status, ctype, body, len, 1);
}

int pg_http_error_body(pg_buf_t *b, const char *msg)
{
    pg_buf_puts(b, "{\"error\":");
    pg_buf_json_str(b, msg, strlen(msg));
    return pg_buf_puts(b, "}\n");
}

void pg_http_error(struct lws *wsi, pg_http_t *h, int status, const char *msg)
{
    pg_buf_t b = PG_BUF_INIT;
    if (pg_http_error_body(&b, msg) < 0)
        pg_http_answer_static(wsi, h, status, "application/json", "{}", 2);
    else
        pg_http_answer(wsi, h, status, "application/json", b.data, b.len);
    pg_buf_free(&b);
}

/* Write status line, headers and the whole body. -1 on error. */
static int write_response(struct lws *wsi, const pg_http_t *h)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                  *end = hdr + sizeof(hdr) - 1;

    if (lws_add_http_common_headers(wsi, (unsigned int)h->status, h->ctype, h->body_len, &p, end))
        return -1;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    const char *date = pg_http_date();
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"date:",
                                    (const unsigned char *)date, (int)strlen(date), &p, end))
        return -1;
    if (h->close_after &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     (const unsigned char *)"close", 5, &p, end))
        return -1;
    if (h->allow != NULL &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                    (const unsigned char *)h->allow, (int)strlen(h->allow), &p, end))
        return -1;
    const char *more[2] = { h->cors, h->extra };
    size_t morelen[2] = { h->cors_len, h->extra ? strlen(h->extra) : 0 };
    for (int i = 0; i < 2; i++) {
        if (more[i] == NULL)
            continue;
        if ((size_t)(end - p) < morelen[i])
            return -1;
        memcpy(p, more[i], morelen[i]);
        p += morelen[i];
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (h->body_len == 0 || h->head_only)
        return 0;   /* HEAD: GET's fields, Content-Length included, no content */
    /* lws_write wants LWS_PRE writable bytes before the payload */
    unsigned char *buf = malloc(LWS_PRE + h->body_len);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, h->body, h->body_len);
    int n = lws_write(wsi, buf + LWS_PRE, h->body_len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    return n < 0 ? -1 : 0;
}

int pg_http_writeable(struct lws *wsi, pg_http_t *h)
{
    if (h->status <= 0)
        return 0;
    int rc = write_response(wsi, h);
    int close_after = h->close_after;
    pg_http_reset(h);
    if (rc < 0 || close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    case 503: return "Service Unavailable";
    default:  return "Error";
    }
}

const char *pg_http_date(void)
{
    /* one formatting a second, however many answers */
    static char date[40];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
                 tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        last = now;
    }
    return date;
}

int pg_http_refusal(pg_buf_t *out, int status, const char *msg, int no_body, const char *extra)
{
    pg_buf_t body = PG_BUF_INIT;
    pg_http_error_body(&body, msg);
    pg_buf_printf(out, "HTTP/1.1 %d %s\r\ndate: %s\r\ncontent-type: application/json\r\n"
                  "content-length: %zu\r\ncache-control: no-store\r\nconnection: close\r\n%s\r\n",
                  status, reason_phrase(status), pg_http_date(), body.len, extra ? extra : "");
    int rc = no_body ? 0 : pg_buf_append(out, body.data, body.len);
    pg_buf_free(&body);
    return rc;
}

/* Written by hand: at filter time lws has not recorded the request's HTTP
 * version and would answer "HTTP/1.0", which strict WebSocket clients
 * reject as invalid instead of reporting the status. */
int pg_http_refuse_upgrade(struct lws *wsi, int status, const char *msg)
{
    pg_buf_t body = PG_BUF_INIT, b = PG_BUF_INIT;
    pg_http_error_body(&body, msg);
    pg_buf_append(&b, "0123456789abcdef0123456789abcdef", LWS_PRE); /* lws headroom */
    pg_buf_printf(&b, "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                  "content-length: %zu\r\ncache-control: no-store\r\n"
                  "date: %s\r\nconnection: close\r\n\r\n", status, reason_phrase(status),
                  body.len, pg_http_date());
    if (pg_buf_append(&b, body.data, body.len) == 0)
        lws_write(wsi, (unsigned char *)b.data + LWS_PRE, b.len - LWS_PRE,
                  LWS_WRITE_HTTP_HEADERS);
    pg_buf_free(&body);
    pg_buf_free(&b);
    return -1;
}

int pg_http_has_nul(struct lws *wsi)
{
    char buf[8192 + 1];   /* lws's max_http_header_data (server.c), + its NUL */
    for (int tok = 0; tok < WSI_TOKEN_COUNT; tok++) {
        /* each fragment (a repeated field has one per line) as stored */
        for (int i = 0;; i++) {
            int n = lws_hdr_copy_fragment(wsi, buf, (int)sizeof(buf), (enum lws_token_indexes)tok, i);
            if (n < 0)
                break;   /* no more (or longer than any head the node takes) */
            if (memchr(buf, '\0', (size_t)n) != NULL)
                return 1;
        }
    }
    return 0;
}

int pg_http_header(struct lws *wsi, enum lws_token_indexes tok, char *buf, size_t len)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0 || (size_t)n >= len)
        return -1;
    if (lws_hdr_copy(wsi, buf, (int)len, tok) < 0)
        return -1;
    /* RFC 9112 §5.1: whitespace around a value is not part of it. lws keeps
     * the trailing part; a request with a body that closes its connection
     * reaches lws as sent (relay.c), not in the canonical form. */
    int a = 0;
    while (a < n && (buf[a] == ' ' || buf[a] == '\t'))
        a++;
    while (n > a && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (a)
        memmove(buf, buf + a, (size_t)(n - a));
    n -= a;
    buf[n] = '\0';
    return n;
}

int pg_http_origin_ok(struct lws *wsi)
{
    char origin[512], host[512];
    int no = pg_http_header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin));
    if (no < 0) {
        /* absent is fine (not a browser); present but oversized is not */
        return lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0;
    }
    int nh = pg_http_header(wsi, WSI_TOKEN_HOST, host, sizeof(host));
    return pg_origin_allowed(&pg_node.cfg.origins, origin, nh < 0 ? NULL : host);
}

int pg_http_cors_headers(struct lws *wsi, unsigned char **p, unsigned char *end)
{
    char origin[512];
    int n = pg_http_header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin));
    if (n <= 0 || !pg_http_origin_ok(wsi))
        return 0;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                    (const unsigned char *)origin, n, p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-credentials:",
                                    (const unsigned char *)"true", 4, p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"vary:",
                                    (const unsigned char *)"Origin", 6, p, end))
        return -1;
    return 0;
}

int pg_http_cors_begin(struct lws *wsi, pg_http_t *h, int is_options)
{
    unsigned char cb[1024], *cp = cb;
    if (pg_http_cors_headers(wsi, &cp, cb + sizeof(cb)) == 0 && cp > cb &&
        (h->cors = malloc((size_t)(cp - cb))) != NULL) {
        memcpy(h->cors, cb, (size_t)(cp - cb));
        h->cors_len = (size_t)(cp - cb);
    }
    if (!is_options)
        return 0;
    /* CORS preflight (a browser app on another origin POSTing with an
     * Authorization header): allowed origins only. */
    if (h->cors == NULL) {
        pg_http_error(wsi, h, 403, "origin not allowed");
        return 1;
    }
    h->extra = "access-control-allow-methods: GET, POST\x0d\x0a"
               "access-control-allow-headers: Authorization, Content-Type, Last-Event-ID\x0d\x0a"
               "access-control-max-age: 600\x0d\x0a";
    pg_http_answer_static(wsi, h, 204, "text/plain", "", 0);
    return 1;
}
