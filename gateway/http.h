/* http.h - the transport's plain-HTTP side: an answer waiting for
 * HTTP_WRITEABLE, the one {"error":"..."} body, refusals of a WebSocket
 * upgrade, request headers, Origin checks and CORS headers.
 *
 * Nothing here decides policy (who may connect, what an endpoint does): it
 * writes what the layers above ask for. */
#ifndef PG_HTTP_H
#define PG_HTTP_H

#include <stddef.h>
#include <libwebsockets.h>

#include "pg_buf.h"

struct pg_api_req;

/* One plain HTTP exchange on a wsi: the answer waiting for HTTP_WRITEABLE,
 * and the request body being read for the API. Lives in the lws per-session
 * data; pg_http_reset releases what it owns. */
typedef struct pg_http {
    int                status;     /* 0 = no answer yet */
    const char        *ctype;      /* static */
    char              *body;       /* owned (malloc) unless body_static */
    size_t             body_len;
    int                body_static;
    const char        *allow;      /* Allow header for 405, static */
    const char        *extra;      /* more header lines ("name: v\r\n"), static */
    char              *cors;       /* headers for an allowed foreign Origin; owned */
    size_t             cors_len;
    char              *req;        /* request body being read; owned */
    size_t             req_len;
    int                too_big;    /* body passed --max-message-bytes */
    int                close_after; /* answered before the body was read */
    int                head_only;  /* a HEAD request: the answer has no content */
    const char        *path;       /* the API route being served, static */
    struct pg_api_req *api;        /* Redis work in flight; see api.c */
} pg_http_t;

/* Release what h owns and zero it. The api request, if any, is told the
 * client left (through the hook pg_http_set_abandon registered). */
void pg_http_reset(pg_http_t *h);
void pg_http_set_abandon(void (*cb)(pg_http_t *h));

/* Answer later from HTTP_WRITEABLE. body is copied. */
void pg_http_answer(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                    const char *body, size_t len);
/* The same, body not copied: it must outlive the answer (a literal). */
void pg_http_answer_static(struct lws *wsi, pg_http_t *h, int status, const char *ctype,
                           const char *body, size_t len);
/* Answer {"error":"<msg>"} (application/json). */
void pg_http_error(struct lws *wsi, pg_http_t *h, int status, const char *msg);
/* Append {"error":"<msg>"}\n to b: the one error body. -1 on out-of-memory. */
int pg_http_error_body(pg_buf_t *b, const char *msg);
/* HTTP_WRITEABLE: write the answer. Returns -1 when lws must close. */
int pg_http_writeable(struct lws *wsi, pg_http_t *h);

/* Refuse a WebSocket upgrade (from the filter callback) with a real
 * HTTP/1.1 answer and {"error":msg}. Returns -1 for lws to drop the wsi. */
int pg_http_refuse_upgrade(struct lws *wsi, int status, const char *msg);

/* A whole refusal (status line, fields with Date and "connection: close",
 * {"error":msg} unless no_body) appended to out, for a request answered
 * before lws has it (relay.c). extra: more "name: v\r\n" lines or NULL.
 * 0, or -1 on out-of-memory. */
int pg_http_refusal(pg_buf_t *out, int status, const char *msg, int no_body, const char *extra);
/* The current time as an IMF-fixdate (RFC 9110 §5.6.7), for Date fields. */
const char *pg_http_date(void);

/* Copy header tok of wsi into buf (NUL-terminated). Returns its length, or
 * -1 when absent or longer than the buffer. */
int pg_http_header(struct lws *wsi, enum lws_token_indexes tok, char *buf, size_t len);
/* 1 if a field value of wsi's request holds a NUL. lws 4.1 stores the
 * bytes after one but every C string of the value ends there, so a value
 * would be used cut short; RFC 9110 §5.5 wants it refused. Only requests
 * over TLS need it: the node checks every plain one itself (relay.c). */
int pg_http_has_nul(struct lws *wsi);
/* 1 if the Origin header of wsi is allowed (SPEC §1), else 0. */
int pg_http_origin_ok(struct lws *wsi);
/* CORS: when the request carries an Origin that --allowed-origins admits,
 * add Access-Control-Allow-Origin (that origin), -Allow-Credentials and
 * Vary: Origin to the headers being built in [*p, end). 0, or -1 if out of
 * room. */
int pg_http_cors_headers(struct lws *wsi, unsigned char **p, unsigned char *end);
/* Keep the CORS headers of this request in h (answers may come later, after
 * the headers are gone), and answer an OPTIONS preflight. Returns 1 when
 * the request was a preflight and is answered, else 0. */
int pg_http_cors_begin(struct lws *wsi, pg_http_t *h, int is_options);

#endif
