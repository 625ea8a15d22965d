/* shard.c - sharded pub/sub on a non-blocking redisContext. See shard.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "shard.h"

/* One TCP connection. Separate from pg_shard_t because libuv releases a
 * poll handle only in a later loop iteration, and the fd must stay open
 * until then: a link that reconnects at once (from down) gets a fresh conn
 * while the old one is still closing. */
typedef struct conn {
    uv_poll_t     poll;
    redisContext *c;        /* owned; redisFree()d (closing the fd) in conn_closed */
    pg_shard_t   *s;        /* NULL once detached from its link */
    int           events;   /* UV_READABLE | UV_WRITABLE currently polled */
} conn_t;

/* A request sent and not answered yet: replies come back in order. */
typedef struct request {
    struct request   *next;
    pg_shard_reply_cb cb;
    void             *arg;
} request_t;

/* A SUNSUBSCRIBE we sent and Redis has not confirmed yet, so its
 * sunsubscribe push is told apart from the one Redis sends by itself when
 * a slot moves. A FIFO: Redis confirms in the order we asked, so ours is
 * found at the head, and only a push of Redis' own scans the list. */
typedef struct pending {
    struct pending *next;
    size_t          len;
    char            name[];
} pending_t;

struct pg_shard {
    uv_loop_t        *loop;
    pg_shard_cbs_t    cbs;
    void             *ud;
    char              host[256];
    int               port;
    char             *user;       /* NULL = none */
    char             *password;   /* NULL = no AUTH */
    pg_shard_state_t  state;
    conn_t           *conn;       /* NULL while DOWN */
    uv_timer_t        timer;      /* connect + AUTH deadline */
    pending_t        *unsubs;     /* our SUNSUBSCRIBEs not yet confirmed, oldest first */
    pending_t       **unsubs_tail;
    struct request   *reqs;       /* requests sent, oldest first (FIFO) */
    struct request  **reqs_tail;
    int               subscribed; /* this connection has sent an SSUBSCRIBE */
    uint64_t          rx_ms;      /* uv_now of the last read with bytes */
    int               freeing;    /* pg_shard_free() called: no more hooks */
};

static void conn_closed(uv_handle_t *h)
{
    conn_t *k = h->data;
    redisFree(k->c);
    free(k);
}

/* Stop polling and let the loop release the handle; the fd closes after. */
static void conn_close(conn_t *k)
{
    if (k == NULL)
        return;
    k->s = NULL;
    uv_close((uv_handle_t *)&k->poll, conn_closed);
}

static void poll_cb(uv_poll_t *h, int status, int events);

static void conn_want(conn_t *k, int events)
{
    if (events == k->events)
        return;            /* idempotent, as hiredis adapters/ae.h */
    k->events = events;
    if (events)
        uv_poll_start(&k->poll, events, poll_cb);
    else
        uv_poll_stop(&k->poll);
}

static void pending_clear(pg_shard_t *s)
{
    while (s->unsubs != NULL) {
        pending_t *p = s->unsubs;
        s->unsubs = p->next;
        free(p);
    }
    s->unsubs_tail = &s->unsubs;
}

/* 1 and the entry dropped when channel is one we asked to leave. */
static int pending_take(pg_shard_t *s, const char *ch, size_t len)
{
    for (pending_t **pp = &s->unsubs; *pp != NULL; pp = &(*pp)->next) {
        pending_t *p = *pp;
        if (p->len == len && memcmp(p->name, ch, len) == 0) {
            *pp = p->next;
            if (*pp == NULL)
                s->unsubs_tail = pp;
            free(p);
            return 1;
        }
    }
    return 0;
}

/* The oldest request's callback, taken off the queue first so that it may
 * send more requests or free the link. */
static void answer(pg_shard_t *s, const redisReply *r)
{
    request_t *q = s->reqs;
    if (q == NULL)
        return;
    s->reqs = q->next;
    if (s->reqs == NULL)
        s->reqs_tail = &s->reqs;
    pg_shard_reply_cb cb = q->cb;
    void *arg = q->arg;
    free(q);
    if (!s->freeing)
        cb(s, arg, r);
}

/* Every request still queued fails (NULL reply), oldest first; a callback
 * that frees the link stops the rest from being called, not freed. */
static void answer_all(pg_shard_t *s)
{
    while (s->reqs != NULL)
        answer(s, NULL);
}

/* The connection is unusable: drop it and tell the caller, once. */
static void go_down(pg_shard_t *s, const char *why)
{
    conn_close(s->conn);
    s->conn = NULL;
    s->state = PG_SHARD_DOWN;
    s->subscribed = 0;
    uv_timer_stop(&s->timer);
    pending_clear(s);
    answer_all(s);
    if (!s->freeing)
        s->cbs.down(s, s->ud, why);
}

static void become_ready(pg_shard_t *s)
{
    s->state = PG_SHARD_READY;
    s->rx_ms = uv_now(s->loop);
    uv_timer_stop(&s->timer);
    s->cbs.up(s, s->ud);
}

static void timeout_cb(uv_timer_t *t)
{
    pg_shard_t *s = t->data;
    if (s->state == PG_SHARD_CONNECTING || s->state == PG_SHARD_AUTH)
        go_down(s, s->state == PG_SHARD_CONNECTING ? "connect timed out" : "AUTH timed out");
}

/* Queue the bytes hiredis appended to its output buffer for writing. */
static void want_write(pg_shard_t *s)
{
    conn_want(s->conn, s->conn->events | UV_WRITABLE);
}

static int is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int kind_is(const redisReply *r, const char *kind)
{
    size_t n = strlen(kind);
    return r->len == n && strncasecmp(r->str, kind, n) == 0;
}

/* One reply or push. Returns 0, or -1 when the connection must go down
 * (why in *why). */
static int handle(pg_shard_t *s, redisReply *r, const char **why)
{
    if (s->state == PG_SHARD_AUTH) {
        /* the first reply answers AUTH: nothing else was sent before it */
        if (r->type == REDIS_REPLY_ERROR) {
            *why = "AUTH refused (wrong user or password?)";
            return -1;
        }
        become_ready(s);
        return 0;
    }
    if (s->reqs != NULL) {
        /* a request link never subscribes, so this reply is the answer */
        answer(s, r);
        return 0;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (s->cbs.error)
            s->cbs.error(s, s->ud, r->str, r->len);
        return 0;
    }
    /* RESP2 pushes: [kind, channel, payload-or-count] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !is_str(r->element[0]) || !is_str(r->element[1]))
        return 0; /* nothing else is sent; an odd reply is ignored, not fatal */
    const redisReply *kind = r->element[0], *ch = r->element[1], *third = r->element[2];
    if (kind_is(kind, "smessage")) {
        if (is_str(third))
            s->cbs.message(s, s->ud, ch->str, ch->len, third->str, third->len);
    } else if (kind_is(kind, "ssubscribe")) {
        if (s->cbs.subscribed)
            s->cbs.subscribed(s, s->ud, ch->str, ch->len);
    } else if (kind_is(kind, "sunsubscribe")) {
        int asked = pending_take(s, ch->str, ch->len);
        if (s->cbs.unsubscribed)
            s->cbs.unsubscribed(s, s->ud, ch->str, ch->len, asked);
    }
    return 0;
}

static void on_readable(pg_shard_t *s, conn_t *k)
{
    const char *why = NULL;
    int rc = redisBufferRead(k->c);
    if (rc == REDIS_OK)
        s->rx_ms = uv_now(s->loop);
    /* Whatever was read before an error still counts, in order. */
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(k->c, &reply) != REDIS_OK) {
            why = "protocol error";
            break;
        }
        if (reply == NULL)
            break;
        int bad = handle(s, reply, &why);
        freeReplyObject(reply);
        if (bad < 0)
            break;
        if (s->conn != k) /* a hook freed the link or it went down */
            return;
    }
    if (why == NULL && rc != REDIS_OK)
        why = k->c->errstr[0] ? k->c->errstr : "connection lost";
    if (why != NULL) {
        char copy[128];
        /* errstr lives in the context go_down hands to the loop to free */
        snprintf(copy, sizeof copy, "%s", why);
        go_down(s, copy);
    }
}

static void on_writable(pg_shard_t *s, conn_t *k)
{
    int done = 0;
    if (redisBufferWrite(k->c, &done) != REDIS_OK) {
        char copy[128];
        snprintf(copy, sizeof copy, "%s", k->c->errstr[0] ? k->c->errstr : "write failed");
        go_down(s, copy);
        return;
    }
    if (done)
        conn_want(k, k->events & ~UV_WRITABLE);
}

/* The TCP connect finished (writable): its outcome is in SO_ERROR. */
static void on_connected(pg_shard_t *s, conn_t *k)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(k->c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        char why[128];
        snprintf(why, sizeof why, "connect failed: %s", strerror(err));
        go_down(s, why);
        return;
    }
    conn_want(k, UV_READABLE);
    if (s->password == NULL) {
        become_ready(s);
        return;
    }
    s->state = PG_SHARD_AUTH;
    int rc = s->user != NULL
        ? redisAppendCommand(k->c, "AUTH %s %s", s->user, s->password)
        : redisAppendCommand(k->c, "AUTH %s", s->password);
    if (rc != REDIS_OK) {
        go_down(s, "out of memory");
        return;
    }
    want_write(s);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    conn_t *k = h->data;
    pg_shard_t *s = k->s;
    if (s == NULL || s->conn != k)
        return;
    if (s->state == PG_SHARD_CONNECTING) {
        /* a failed connect may report only an error status: SO_ERROR says which */
        if (status < 0 || (events & (UV_WRITABLE | UV_READABLE)))
            on_connected(s, k);
        return;
    }
    /* An error is handed to the read, which sees the socket error and
     * goes down (a socket in error would otherwise stay ready and spin). */
    if (status < 0 || (events & UV_READABLE)) {
        on_readable(s, k);
        if (s->conn != k)
            return;
    }
    if (status == 0 && (events & UV_WRITABLE))
        on_writable(s, k);
}

pg_shard_t *pg_shard_new(uv_loop_t *loop, const char *host, int port,
                         const char *user, const char *password,
                         const pg_shard_cbs_t *cbs, void *ud)
{
    if (loop == NULL || host == NULL || host[0] == '\0' || strlen(host) >= 256 ||
        port < 1 || port > 65535 || cbs == NULL || cbs->up == NULL ||
        cbs->down == NULL || cbs->message == NULL)
        return NULL;
    pg_shard_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->cbs = *cbs;
    s->ud = ud;
    memcpy(s->host, host, strlen(host) + 1);
    s->port = port;
    if ((user != NULL && user[0] != '\0' && (s->user = strdup(user)) == NULL) ||
        (password != NULL && password[0] != '\0' && (s->password = strdup(password)) == NULL))
        goto err;
    if (uv_timer_init(loop, &s->timer) != 0)
        goto err;
    s->timer.data = s;
    s->reqs_tail = &s->reqs;
    s->unsubs_tail = &s->unsubs;
    return s;
err:
    free(s->user);
    free(s->password);
    free(s);
    return NULL;
}

int pg_shard_connect(pg_shard_t *s, unsigned timeout_ms)
{
    if (s == NULL || s->freeing || s->state != PG_SHARD_DOWN)
        return -1;
    conn_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -1;
    k->c = redisConnectNonBlock(s->host, s->port);
    if (k->c == NULL || k->c->err) {
        redisFree(k->c);
        free(k);
        return -1;
    }
    if (uv_poll_init_socket(s->loop, &k->poll, k->c->fd) != 0) {
        redisFree(k->c);
        free(k);
        return -1;
    }
    k->poll.data = k;
    k->s = s;
    s->conn = k;
    s->state = PG_SHARD_CONNECTING;
    /* writable means the connect finished, either way */
    conn_want(k, UV_WRITABLE);
    uv_timer_start(&s->timer, timeout_cb, timeout_ms ? timeout_ms : 1, 0);
    return 0;
}

int pg_shard_request(pg_shard_t *s, pg_shard_reply_cb cb, void *arg,
                     int argc, const char **argv, const size_t *argvlen)
{
    if (s == NULL || cb == NULL || s->state != PG_SHARD_READY || s->subscribed || argc < 1)
        return -1;
    request_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    if (redisAppendCommandArgv(s->conn->c, argc, argv, argvlen) != REDIS_OK) {
        free(q);
        return -1;
    }
    q->next = NULL;
    q->cb = cb;
    q->arg = arg;
    *s->reqs_tail = q;
    s->reqs_tail = &q->next;
    want_write(s);
    return 0;
}

static int send_one(pg_shard_t *s, const char *cmd, const char *channel, size_t len)
{
    if (s == NULL || s->state != PG_SHARD_READY || s->reqs != NULL ||
        channel == NULL || len == 0)
        return -1;
    if (redisAppendCommand(s->conn->c, "%s %b", cmd, channel, len) != REDIS_OK)
        return -1;
    s->subscribed = 1;
    want_write(s);
    return 0;
}

int pg_shard_ssubscribe(pg_shard_t *s, const char *channel, size_t len)
{
    return send_one(s, "SSUBSCRIBE", channel, len);
}

int pg_shard_ping(pg_shard_t *s)
{
    if (s == NULL || s->state != PG_SHARD_READY || s->reqs != NULL)
        return -1;
    if (redisAppendCommand(s->conn->c, "PING") != REDIS_OK)
        return -1;
    want_write(s);
    return 0;
}

uint64_t pg_shard_rx_ms(const pg_shard_t *s)
{
    return s->rx_ms;
}

int pg_shard_sunsubscribe(pg_shard_t *s, const char *channel, size_t len)
{
    if (s == NULL || s->state != PG_SHARD_READY || channel == NULL || len == 0)
        return -1;
    pending_t *p = malloc(sizeof(*p) + len);
    if (p == NULL)
        return -1;
    if (send_one(s, "SUNSUBSCRIBE", channel, len) < 0) {
        free(p);
        return -1;
    }
    p->len = len;
    memcpy(p->name, channel, len);
    p->next = NULL;
    *s->unsubs_tail = p;
    s->unsubs_tail = &p->next;
    return 0;
}

pg_shard_state_t pg_shard_state(const pg_shard_t *s)
{
    return s->state;
}

const char *pg_shard_host(const pg_shard_t *s)
{
    return s->host;
}

int pg_shard_port(const pg_shard_t *s)
{
    return s->port;
}

static void shard_closed(uv_handle_t *h)
{
    pg_shard_t *s = h->data;
    free(s->user);
    if (s->password != NULL) {
        /* do not leave the secret in freed memory */
        volatile char *p = s->password;
        while (*p)
            *p++ = '\0';
        free(s->password);
    }
    free(s);
}

void pg_shard_free(pg_shard_t *s)
{
    if (s == NULL || s->freeing)
        return;
    s->freeing = 1;
    conn_close(s->conn);
    s->conn = NULL;
    s->state = PG_SHARD_DOWN;
    while (s->reqs != NULL) { /* freed without a call, as promised */
        request_t *q = s->reqs;
        s->reqs = q->next;
        free(q);
    }
    s->reqs_tail = &s->reqs;
    pending_clear(s);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, shard_closed);
}
