/* httphead.h - the node's own strict check of an HTTP/1.1 request head
 * (RFC 9112 §2-§7, RFC 9110 §5, RFC 6455 §4.2.1), made before lws sees it.
 *
 * lws 4.1's parser lets through what the RFCs require a server to refuse:
 * obs-fold, NUL or CR in a value, Content-Length beside Transfer-Encoding,
 * whitespace before the colon, a line without a colon, a bad Host, a bad
 * handshake. Behind a proxy some of these are request smuggling. So the
 * listener reads the head itself, refuses what is wrong with a real answer,
 * and hands lws a canonical copy of what is right: one "name: value" per
 * line, values trimmed, repeated fields joined into one list line, a
 * higher HTTP/1.x minor version and HTTP/1.0 written as HTTP/1.1 (HTTP/1.0
 * then gets "connection: close" unless it asked for keep-alive), an
 * absolute-form target cut to its path, fields the node does not serve
 * (Expect, an Upgrade other than websocket, subprotocols) left out. What
 * lws then parses cannot be read two ways.
 *
 * Pure: no I/O, no globals; fuzzed by tests/fuzz/fuzz_httphead.c. */
#ifndef PG_HTTPHEAD_H
#define PG_HTTPHEAD_H

#include <stddef.h>

#include "pg_buf.h"

/* Largest head taken (request line and fields); past it 414 or 431. It
 * stays under lws's max_http_header_data (8192, server.c) so lws never
 * drops a head this module passed. */
#define PG_HEAD_MAX        8000
#define PG_HEAD_MAX_FIELDS 256

typedef struct pg_head {
    int         status;       /* 0: pass out[] to lws; else refuse with it */
    const char *why;          /* the refusal's reason (static text) */
    int         is_head;      /* method HEAD: a refusal has no body */
    int         ws_version;   /* 426: name Sec-WebSocket-Version: 13 */
    int         expect_continue; /* the client waits for 100 before its body */
    int         has_body;     /* Content-Length > 0 or Transfer-Encoding */
    int         chunked;      /* Transfer-Encoding: chunked. The canonical head
                                 then has no Transfer-Encoding: whoever passes
                                 it on decodes the body and adds a
                                 Content-Length (relay.c) */
    int         upgrade;      /* a valid WebSocket handshake */
    int         persistent;   /* the connection stays open after this request
                                 (RFC 9112 §9.3): HTTP/1.1 without "close",
                                 HTTP/1.0 with "keep-alive" */
    size_t      consumed;     /* raw bytes of the head, leading CRLFs included */
    long long   content_length; /* -1 when absent */
} pg_head_t;

/* Check the request head at the start of buf[0, len). Returns PG_AGAIN when
 * it is incomplete and may still fit, else PG_OK with h filled in: either
 * h->status == 0 and the canonical head appended to out, or the status to
 * refuse the request with (out untouched). PG_ERR only when out of memory. */
int pg_head_check(const char *buf, size_t len, pg_head_t *h, pg_buf_t *out);

#endif
