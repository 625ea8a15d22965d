/* relay.c - every request head of a plain connection, checked by the node.
 * See relay.h.
 *
 * One relay_t per plain connection from accept until lws has the client's
 * socket (or the connection ends). Its sockets, the client's and the node's
 * end of the socketpair, wait in one private edge-triggered epoll set
 * (fdwatch.h); any event on either runs pump(), which moves what it can in
 * both directions until nothing moves. Backpressure: the client is read
 * only while nothing waits for the pair, and the pair only while nothing
 * waits for the client, so each direction holds at most one read's worth
 * (a chunked body excepted, bounded by --max-message-bytes).
 *
 * lws's answers are scanned for where each ends (status line, Content-Length
 * or chunked, none for HEAD, 1xx, 204, 304), so the relay knows when lws has
 * answered every request it was given: only then may anything of the
 * relay's own reach the client (a refusal, a 100 Continue) or the client's
 * socket go to lws. The alternative, shutting the pair and waiting for lws
 * to close, loses an answer still owed: lws 4.1 reads the socket after a
 * request body and closes at EOF, even with a publish in flight. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libwebsockets.h>

#include "relay.h"
#include "fdwatch.h"
#include "http.h"
#include "httpchunk.h"
#include "httphead.h"
#include "node.h"
#include "pg_log.h"
#include "pg_util.h"

#define HEAD_TIMEOUT_MS  10000   /* as lws's timeout_secs for a head */
#define LINGER_MS         2000   /* reading out a refused or ended connection */
#define MOVE             16384   /* bytes moved per read, either way */
#define MAX_INFLIGHT        64   /* requests lws has not answered yet (one bit each) */

enum {
    R_HEAD,      /* reading the next request head */
    R_BODY,      /* passing `left` body bytes to lws */
    R_CHUNKED,   /* decoding a chunked body before lws gets its request */
    R_WAIT,      /* reading no more: waiting for lws's last answer, then `then` */
    R_LINGER     /* our side done: reading out the client, then close */
};
enum { THEN_CLOSE, THEN_ADOPT, THEN_REFUSE };
enum { A_STATUS, A_FIELD, A_BODY, A_CHUNKED, A_TO_EOF };

/* Where lws's current answer ends. Only what the node's own answers need:
 * a field line is kept up to sizeof(line), enough for Content-Length and
 * Transfer-Encoding. */
typedef struct answer_scan {
    int        state;     /* A_* */
    int        status;
    int        chunked;
    long long  cl;
    uint64_t   left;
    size_t     n;
    char       line[40];
    pg_chunk_t ck;
} answer_scan_t;

typedef struct relay {
    lws_dll2_t    all;        /* in relays */
    lws_dll2_t    timed;      /* in heading or lingering while a deadline runs */
    int           fd;         /* the client */
    int           pair;       /* the node's end of the socketpair; -1 until used */
    int           state;      /* R_* */
    int           then;       /* THEN_*, in R_WAIT */
    int           last;       /* the request being passed on ends the connection */
    int           pair_eof;   /* lws closed its end (or it failed) */
    int           shut;       /* R_LINGER: SHUT_WR done */
    int           out_client, out_pair;   /* EPOLLOUT asked for */
    /* Edge-triggered: a socket is read only after an event said it has
     * something, until a read comes up short (it is drained: the next
     * input is a new event). Saves the reads that would find nothing. */
    int           client_ready, pair_ready;
    int           tag[2];     /* the watch's arg: &tag[0] the client, &tag[1] the pair */
    uint64_t      since_ms;   /* the running deadline's start */
    size_t        seen;       /* head bytes peeked so far */
    uint64_t      left;       /* R_BODY */
    int           cur_head;   /* R_CHUNKED: the request is a HEAD */
    int           body_wait;  /* a head with a body waits for lws's answers */
    pg_chunk_t    ck;         /* R_CHUNKED */
    unsigned      inflight;   /* requests given to lws and not yet answered */
    uint64_t      heads;      /* bit i: the i-th of them is a HEAD */
    answer_scan_t as;
    pg_buf_t      up;         /* for the pair, from up_off */
    size_t        up_off;
    pg_buf_t      down;       /* for the client, from down_off */
    size_t        down_off;
    pg_buf_t      held;       /* a canonical head (chunked, adopt) or a refusal */
    pg_buf_t      cbody;      /* R_CHUNKED: the body decoded so far */
} relay_t;

static lws_dll2_owner_t relays, heading, lingering;
static pg_timer_t       sweep_timer;
static pg_fdwatch_t     watch = { .epfd = -1 };
static int              running;
/* Peeked heads and moved bytes pass through here: everything happens in
 * one callback, so one buffer serves every relay. */
static char             scratch[MOVE > PG_HEAD_MAX + 64 ? MOVE : PG_HEAD_MAX + 64];

static void arm_sweep(void)
{
    if (!pg_timer_armed(&sweep_timer))
        pg_wheel_arm(&pg_node.wheel, &sweep_timer, pg_node_second(pg_node_tick() + 1));
}

/* Start (or restart) r's deadline in list l (kept oldest first). */
static void deadline(relay_t *r, lws_dll2_owner_t *l)
{
    lws_dll2_remove(&r->timed);
    r->since_ms = pg_mono_ms();
    lws_dll2_add_tail(&r->timed, l);
    arm_sweep();
}

static void free_relay(relay_t *r)
{
    pg_fdwatch_cancel(&watch, &r->tag[0]);
    pg_fdwatch_cancel(&watch, &r->tag[1]);
    lws_dll2_remove(&r->timed);
    lws_dll2_remove(&r->all);
    pg_buf_free(&r->up);
    pg_buf_free(&r->down);
    pg_buf_free(&r->held);
    pg_buf_free(&r->cbody);
    free(r);
}

static void close_pair(relay_t *r)
{
    if (r->pair < 0)
        return;
    pg_fdwatch_forget(&watch, r->pair);
    close(r->pair);   /* lws reads EOF and closes its end */
    r->pair = -1;
}

/* The end: close everything. */
static void end(relay_t *r)
{
    close_pair(r);
    pg_fdwatch_forget(&watch, r->fd);
    close(r->fd);
    free_relay(r);
}

/* Give the client's socket to lws: with the canonical head in canon (read
 * off the socket already), or as it is (canon NULL: lws reads the head). */
static void hand_over(relay_t *r, const pg_buf_t *canon)
{
    int fd = r->fd;
    close_pair(r);
    pg_fdwatch_forget(&watch, fd);
    free_relay(r);
    /* on failure lws closes fd itself */
    if (canon != NULL) {
        if (lws_adopt_socket_vhost_readbuf(pg_node.vhost, fd, canon->data, canon->len) == NULL)
            pg_log(PG_LOG_DEBUG, "a connection closed during its request");
        return;
    }
    lws_sock_file_fd_type sock;
    sock.sockfd = fd;
    if (lws_adopt_descriptor_vhost(pg_node.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, sock,
                                   NULL, NULL) == NULL)
        pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
}

/* Our side is done: what is still for the client goes out, then SHUT_WR,
 * and the client is read out for a moment before the close: closing over
 * unread bytes resets the connection and the client could lose the end. */
static void linger(relay_t *r)
{
    close_pair(r);
    r->state = R_LINGER;
    deadline(r, &lingering);
}

/* Stop reading the client; once lws has answered all it was given, do
 * `then`. */
static void wait_then(relay_t *r, int then)
{
    r->state = R_WAIT;
    r->then = then;
    lws_dll2_remove(&r->timed);
}

static int want_out(relay_t *r, int fd, int *flag, int on)
{
    if (*flag == on)
        return 0;
    *flag = on;
    return pg_fdwatch_want_out(&watch, fd, &r->tag[fd == r->fd ? 0 : 1], on);
}

/* --- lws's answers ---------------------------------------------------------- */

static void answered(relay_t *r)
{
    r->inflight--;
    r->heads >>= 1;
    r->as.state = A_STATUS;
    r->as.n = 0;
}

static void answer_line(relay_t *r)
{
    answer_scan_t *a = &r->as;
    size_t n = a->n;
    a->n = 0;
    if (n > 0 && a->line[n - 1] == '\r')
        n--;
    if (a->state == A_STATUS) {
        /* "HTTP/1.1 200 ..." */
        a->status = n >= 12 && a->line[8] == ' ' ? atoi(a->line + 9) : 0;
        a->cl = -1;
        a->chunked = 0;
        a->state = A_FIELD;
        return;
    }
    if (n > 0) {
        a->line[n < sizeof(a->line) ? n : sizeof(a->line) - 1] = '\0';
        if (strncasecmp(a->line, "content-length:", 15) == 0)
            a->cl = atoll(a->line + 15);
        else if (strncasecmp(a->line, "transfer-encoding:", 18) == 0)
            a->chunked = strcasestr(a->line + 18, "chunked") != NULL;
        return;
    }
    /* the end of the head (RFC 9112 §6.3) */
    if (a->status >= 100 && a->status < 200) {
        a->state = A_STATUS;   /* interim: the final answer follows */
        return;
    }
    if ((r->heads & 1) || a->status == 204 || a->status == 304 || a->cl == 0)
        answered(r);
    else if (a->chunked) {
        pg_chunk_t init = PG_CHUNK_INIT;
        a->ck = init;
        a->state = A_CHUNKED;
    } else if (a->cl > 0) {
        a->left = (uint64_t)a->cl;
        a->state = A_BODY;
    } else
        a->state = A_TO_EOF;   /* ends with the connection: never "answered" */
}

/* p[0, n) came from lws: note the answers that end in it. */
static void scan_answers(relay_t *r, const char *p, size_t n)
{
    answer_scan_t *a = &r->as;
    size_t i = 0;
    while (i < n && r->inflight > 0 && a->state != A_TO_EOF) {
        if (a->state == A_STATUS || a->state == A_FIELD) {
            char c = p[i++];
            if (c == '\n')
                answer_line(r);
            else if (a->n < sizeof(a->line))
                a->line[a->n++] = c;
        } else if (a->state == A_BODY) {
            size_t k = a->left < n - i ? (size_t)a->left : n - i;
            i += k;
            a->left -= k;
            if (a->left == 0)
                answered(r);
        } else {
            size_t d;
            long k = pg_chunk_step(&a->ck, p + i, n - i, &d);
            if (k < 0) {
                a->state = A_TO_EOF;
                break;
            }
            i += (size_t)k;
            if (a->ck.done)
                answered(r);
        }
    }
}

/* --- moving bytes ------------------------------------------------------------ */

/* Send b from *off to fd; what is left waits for EPOLLOUT. 1 if anything
 * went, 0 if nothing could, -1 if fd failed. */
static int flush(relay_t *r, int fd, int *flag, pg_buf_t *b, size_t *off)
{
    size_t before = *off;
    while (*off < b->len) {
        ssize_t n = send(fd, b->data + *off, b->len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        want_out(r, fd, flag, 1);
        return *off > before;
    }
    int moved = b->len > before;
    pg_buf_free(b);   /* an idle relay holds no buffer */
    *off = 0;
    want_out(r, fd, flag, 0);
    return moved;
}

/* p[0, n) for fd, after what b still holds: sent now, what does not go
 * queued in b. 0, or -1 if fd failed. */
static int pass(relay_t *r, int fd, int *flag, pg_buf_t *b, size_t *off, const char *p, size_t n)
{
    if (*off >= b->len) {
        while (n > 0) {
            ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0) {
                p += k;
                n -= (size_t)k;
                continue;
            }
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && errno != EAGAIN)
                return -1;
            break;
        }
        if (n == 0)
            return 0;
    }
    if (pg_buf_append(b, p, n) != 0)
        return -1;
    want_out(r, fd, flag, 1);
    return 0;
}

/* lws's answers to the client. 1 progress, 0 none, -1 r is gone. */
static int move_down(relay_t *r)
{
    if (r->down_off < r->down.len) {
        int rc = flush(r, r->fd, &r->out_client, &r->down, &r->down_off);
        if (rc < 0) {
            end(r);   /* the client is gone */
            return -1;
        }
        if (r->down_off < r->down.len)
            return rc;
    }
    if (r->pair < 0 || r->pair_eof || !r->pair_ready)
        return 0;
    ssize_t n = recv(r->pair, scratch, MOVE, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        r->pair_ready = errno == EINTR;
        return 0;
    }
    if (n > 0 && n < MOVE)
        r->pair_ready = 0;   /* drained */
    if (n <= 0) {
        /* lws closed its end (an AF_UNIX reset comes only after the data) */
        r->pair_eof = 1;
        return 1;
    }
    scan_answers(r, scratch, (size_t)n);
    if (pass(r, r->fd, &r->out_client, &r->down, &r->down_off, scratch, (size_t)n) < 0) {
        end(r);
        return -1;
    }
    return 1;
}

static int is_sse(const pg_buf_t *canon)
{
    /* server.c streams GET /sse (HEAD /sse is a plain answer) */
    return canon->len > 9 && memcmp(canon->data, "GET /sse", 8) == 0 &&
           (canon->data[8] == ' ' || canon->data[8] == '?');
}

/* The client's socket has one more request for lws: socketpair and adopt
 * on the first. 0, or -1 (nothing changed). */
static int open_pair(relay_t *r)
{
    if (r->pair >= 0)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    lws_sock_file_fd_type sock;
    sock.sockfd = sv[1];
    /* on failure lws closes sv[1] itself */
    if (lws_adopt_descriptor_vhost(pg_node.vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, sock,
                                   NULL, NULL) == NULL) {
        close(sv[0]);
        return -1;
    }
    if (pg_fdwatch_add(&watch, sv[0], &r->tag[1]) != 0) {
        close(sv[0]);
        return -1;
    }
    r->pair = sv[0];
    return 0;
}

static void push_request(relay_t *r, int is_head)
{
    r->heads |= (uint64_t)(is_head != 0) << r->inflight;
    r->inflight++;
}

/* h was refused: answer it, after lws's earlier answers if any. */
static void refuse(relay_t *r, const pg_head_t *h)
{
    pg_log(PG_LOG_DEBUG, "refused a request head: %d %s", h->status, h->why);
    pg_buf_reset(&r->held);
    pg_http_refusal(&r->held, h->status, h->why, h->is_head,
                    h->ws_version ? "sec-websocket-version: 13\r\nupgrade: websocket\r\n" : NULL);
    wait_then(r, THEN_REFUSE);
}

/* R_HEAD: peek the next head; when whole, check it and act on it.
 * 1 progress, 0 none, -1 r is gone. */
static int read_head(relay_t *r)
{
    if (r->inflight >= MAX_INFLIGHT || (r->body_wait && r->inflight > 0))
        return 0;   /* back when lws has answered (some) */
    r->body_wait = 0;
    if (!r->client_ready)
        return 0;
    ssize_t n = recv(r->fd, scratch, PG_HEAD_MAX + 64, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        r->client_ready = errno == EINTR;
        return 0;
    }
    /* all there is was peeked: back when more comes, unless more than
     * this head is there */
    int drained = n < PG_HEAD_MAX + 64;
    if (n < 0) {
        end(r);
        return -1;
    }
    if (n == 0) {
        /* the client is done sending: its answers still go out */
        if (r->pair < 0 && r->inflight == 0) {
            end(r);
            return -1;
        }
        wait_then(r, THEN_CLOSE);
        return 1;
    }
    if (r->seen == 0 && r->timed.owner == NULL)
        deadline(r, &heading);   /* a later head began: it has its time */
    /* The head is peeked again whole at each wake-up; it is parsed again
     * only when a line has ended since (or it reached the limit), so a head
     * trickling in byte by byte costs one parse per line, not per byte. */
    size_t seen = r->seen;
    r->seen = (size_t)n;
    if ((size_t)n < PG_HEAD_MAX && (size_t)n > seen &&
        memchr(scratch + seen, '\n', (size_t)n - seen) == NULL) {
        r->client_ready = !drained;
        return 0;
    }
    pg_head_t h;
    pg_buf_t canon = PG_BUF_INIT;
    int rc = pg_head_check(scratch, (size_t)n, &h, &canon);
    if (rc == PG_AGAIN) {
        r->client_ready = !drained;   /* edge-triggered: back when more has come */
        return 0;
    }
    if (rc == PG_ERR) {
        end(r);
        return -1;
    }
    r->seen = 0;
    if (h.status != 0) {
        /* not counted in connections_rejected_total: that one is 503s
         * past --max-connections only */
        refuse(r, &h);
        return 1;
    }
    int first = r->pair < 0;
    if (h.has_body && r->inflight > 0) {
        /* lws 4.1 spins when a request with a body comes out of its
         * read-ahead (lws_http_action's buflist loop): such a request goes
         * into the pair only once lws has answered all before it, so lws
         * reads it from the socket like a first request */
        r->body_wait = 1;
        lws_dll2_remove(&r->timed);
        pg_buf_free(&canon);
        return 0;
    }
    if (h.expect_continue && h.has_body && r->inflight == 0) {
        /* RFC 9110 §10.1.1: the client may wait for this before its body;
         * with every earlier answer out it cannot split one */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (pass(r, r->fd, &r->out_client, &r->down, &r->down_off, cont, sizeof(cont) - 1) < 0) {
            pg_buf_free(&canon);
            end(r);
            return -1;
        }
    }
    /* lws 4.1 takes a handed-over head a second time as the body
     * (lws_http_action's buflist loop): with a body it reads the head as
     * sent. A WebSocket or SSE stream never runs through the pair. */
    /* A chunked body always goes through the pair, which decodes it: lws
     * reads none, and a client's choice of Connection: close should not
     * turn a publish into a 411. */
    int direct = first ? (h.upgrade || is_sse(&canon) || (!h.persistent && !h.chunked))
                       : ((h.upgrade || is_sse(&canon)) && !h.has_body);
    if (!direct && open_pair(r) != 0) {
        /* Out of descriptors (or memory). Not handed to lws: it would read
         * every later request of the connection unchecked. Shed, as the
         * listener sheds a connection it cannot accept. */
        pg_head_t busy;
        memset(&busy, 0, sizeof(busy));
        busy.status = 503;
        busy.why = "out of file descriptors";
        busy.is_head = h.is_head;
        pg_buf_free(&canon);
        refuse(r, &busy);
        return 1;
    }
    if (direct) {
        if (h.has_body) {   /* a first request only: lws reads it as sent */
            pg_buf_free(&canon);
            hand_over(r, NULL);
            return -1;
        }
        /* the head was peeked whole: reading it cannot come up short */
        if (recv(r->fd, scratch, h.consumed, MSG_DONTWAIT) != (ssize_t)h.consumed) {
            pg_buf_free(&canon);
            end(r);
            return -1;
        }
        if (first) {
            hand_over(r, &canon);
            pg_buf_free(&canon);
            return -1;
        }
        pg_buf_free(&r->held);
        r->held = canon;
        wait_then(r, THEN_ADOPT);
        return 1;
    }
    if (recv(r->fd, scratch, h.consumed, MSG_DONTWAIT) != (ssize_t)h.consumed) {
        pg_buf_free(&canon);
        end(r);
        return -1;
    }
    if (drained && (size_t)n == h.consumed)
        r->client_ready = 0;
    r->last = !h.persistent;
    if (h.chunked) {
        pg_chunk_t init = PG_CHUNK_INIT;
        r->ck = init;
        r->cur_head = h.is_head;
        pg_buf_free(&r->held);
        r->held = canon;
        pg_buf_reset(&r->cbody);
        r->state = R_CHUNKED;
        deadline(r, &heading);   /* the body has its time too */
        return 1;
    }
    lws_dll2_remove(&r->timed);
    push_request(r, h.is_head);
    int prc = pass(r, r->pair, &r->out_pair, &r->up, &r->up_off, canon.data, canon.len);
    pg_buf_free(&canon);
    if (prc < 0) {
        r->pair_eof = 1;
        wait_then(r, THEN_CLOSE);
        return 1;
    }
    if (h.content_length > 0) {
        r->left = (uint64_t)h.content_length;
        r->state = R_BODY;
    } else if (r->last)
        wait_then(r, THEN_CLOSE);
    return 1;
}

/* R_BODY: the next body bytes, never more than the body. */
static int read_body(relay_t *r)
{
    if (!r->client_ready)
        return 0;
    size_t want = r->left < MOVE ? (size_t)r->left : MOVE;
    ssize_t n = recv(r->fd, scratch, want, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        r->client_ready = errno == EINTR;
        return 0;
    }
    if (n > 0 && (size_t)n < want)
        r->client_ready = 0;   /* drained */
    if (n <= 0) {
        /* the client left mid-body: lws times the request out or sees EOF */
        end(r);
        return -1;
    }
    r->left -= (uint64_t)n;
    if (pass(r, r->pair, &r->out_pair, &r->up, &r->up_off, scratch, (size_t)n) < 0) {
        r->pair_eof = 1;
        wait_then(r, THEN_CLOSE);
        return 1;
    }
    if (r->left == 0) {
        if (r->last)
            wait_then(r, THEN_CLOSE);
        else
            r->state = R_HEAD;
    }
    return 1;
}

static void refuse_body(relay_t *r, int status, const char *why)
{
    pg_head_t h;
    memset(&h, 0, sizeof(h));
    h.status = status;
    h.why = why;
    h.is_head = r->cur_head;
    pg_buf_free(&r->cbody);
    refuse(r, &h);
}

/* R_CHUNKED: decode what has come of the body, taking no byte past its
 * end; once whole, lws gets the head with a Content-Length and the data. */
static int read_chunked(relay_t *r)
{
    if (!r->client_ready)
        return 0;
    ssize_t n = recv(r->fd, scratch, MOVE, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        r->client_ready = errno == EINTR;
        return 0;
    }
    if (n <= 0) {
        end(r);
        return -1;
    }
    size_t off = 0;
    while (off < (size_t)n && !r->ck.done) {
        size_t d;
        long k = pg_chunk_step(&r->ck, scratch + off, (size_t)n - off, &d);
        if (k < 0) {
            refuse_body(r, 400, "malformed chunked body");
            return 1;
        }
        if (d > 0) {
            if (r->cbody.len + d > pg_node.cfg.max_message_bytes) {
                refuse_body(r, 413, "body over --max-message-bytes");
                return 1;
            }
            if (pg_buf_append(&r->cbody, scratch + off, d) != 0) {
                end(r);
                return -1;
            }
        }
        off += (size_t)k;
    }
    /* what was decoded is taken off the socket: exactly that */
    if (recv(r->fd, scratch, off, MSG_DONTWAIT) != (ssize_t)off) {
        end(r);
        return -1;
    }
    if (n < MOVE && off == (size_t)n)
        r->client_ready = 0;   /* drained */
    if (!r->ck.done)
        return 1;
    lws_dll2_remove(&r->timed);
    /* the canonical head ends in an empty line; its Transfer-Encoding was
     * left out (httphead.h) */
    r->held.len -= 2;
    if (pg_buf_printf(&r->held, "content-length: %zu\r\n\r\n", r->cbody.len) != 0 ||
        pg_buf_append(&r->held, r->cbody.data, r->cbody.len) != 0) {
        end(r);
        return -1;
    }
    pg_buf_free(&r->cbody);
    push_request(r, r->cur_head);
    int prc = pass(r, r->pair, &r->out_pair, &r->up, &r->up_off, r->held.data, r->held.len);
    pg_buf_free(&r->held);
    if (prc < 0) {
        r->pair_eof = 1;
        wait_then(r, THEN_CLOSE);
        return 1;
    }
    if (r->last)
        wait_then(r, THEN_CLOSE);
    else
        r->state = R_HEAD;
    return 1;
}

/* R_WAIT: lws has answered everything (or closed) and the client has it
 * all: do what was waiting. 1 progress, 0 not yet, -1 r is gone. */
static int finish_wait(relay_t *r)
{
    if ((r->inflight > 0 && !r->pair_eof) || r->down_off < r->down.len ||
        r->up_off < r->up.len)
        return 0;
    switch (r->then) {
    case THEN_ADOPT: {
        pg_buf_t canon = r->held;
        r->held = (pg_buf_t)PG_BUF_INIT;
        hand_over(r, &canon);
        pg_buf_free(&canon);
        return -1;
    }
    case THEN_REFUSE: {
        pg_buf_t b = r->held;
        r->held = (pg_buf_t)PG_BUF_INIT;
        pg_buf_free(&r->down);
        r->down = b;
        r->down_off = 0;
        linger(r);
        return 1;
    }
    default:
        linger(r);
        return 1;
    }
}

/* R_LINGER: what is left goes out, then SHUT_WR; the client's bytes are
 * read and dropped until it closes (or the deadline). */
static int do_linger(relay_t *r)
{
    int progress = 0;
    if (r->down_off < r->down.len) {
        int rc = flush(r, r->fd, &r->out_client, &r->down, &r->down_off);
        if (rc < 0) {
            end(r);
            return -1;
        }
        if (r->down_off < r->down.len)
            return rc;
        progress = 1;
    }
    if (!r->shut) {
        shutdown(r->fd, SHUT_WR);
        r->shut = 1;
        progress = 1;
    }
    ssize_t n;
    while ((n = recv(r->fd, scratch, MOVE, MSG_DONTWAIT)) > 0)
        ;
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        end(r);
        return -1;
    }
    return progress;
}

/* Move everything that can move. Returns with r possibly freed. */
static void pump(relay_t *r)
{
    for (int round = 0;; round++) {
        if (round == 64) {
            /* 1 MiB moved in one go: let the loop serve others. Modifying
             * the watch re-queues an event for what is still ready (no new
             * edge would come for bytes already there). */
            pg_fdwatch_want_out(&watch, r->fd, &r->tag[0], r->out_client);
            if (r->pair >= 0)
                pg_fdwatch_want_out(&watch, r->pair, &r->tag[1], r->out_pair);
            return;
        }
        int rc, progress = 0;
        if (r->state == R_LINGER) {
            if (do_linger(r) <= 0)
                return;
            continue;
        }
        /* answers first: they make room for more requests */
        if ((rc = move_down(r)) < 0)
            return;
        progress |= rc;
        if (r->up_off < r->up.len) {
            rc = flush(r, r->pair, &r->out_pair, &r->up, &r->up_off);
            if (rc < 0) {
                r->pair_eof = 1;
                pg_buf_free(&r->up);
                r->up_off = 0;
                progress = 1;
            } else
                progress |= rc;
        }
        if (r->pair_eof && r->state != R_WAIT) {
            /* lws ended the connection (an answer with close, its keepalive
             * timeout, a refused body): the client gets what lws wrote */
            wait_then(r, THEN_CLOSE);
            progress = 1;
        }
        if (r->up_off >= r->up.len) {
            rc = 0;
            if (r->state == R_HEAD)
                rc = read_head(r);
            else if (r->state == R_BODY)
                rc = read_body(r);
            else if (r->state == R_CHUNKED)
                rc = read_chunked(r);
            if (rc < 0)
                return;
            progress |= rc;
        }
        if (r->state == R_WAIT) {
            if ((rc = finish_wait(r)) < 0)
                return;
            progress |= rc;
        }
        if (!progress)
            return;
    }
}

static void relay_event(void *arg, int hup)
{
    (void)hup;   /* a hang-up is read as EOF */
    int *tag = arg;
    relay_t *r = lws_container_of(tag - *tag, relay_t, tag);
    if (*tag == 0)
        r->client_ready = 1;
    else
        r->pair_ready = 1;
    pump(r);
}

/* Once a second while deadlines run: heads (and chunked bodies) that did
 * not come whole in time (slowloris), and lingering connections that did
 * not go away. Both lists are oldest first, so the sweep stops at the
 * first one still in time. On the node's wheel, on whole seconds: a node
 * with none does not wake for it, one with some wakes with its keepalives.
 * An idle kept-alive connection has no deadline here: lws's keepalive
 * timeout closes its end of the pair, which ends the relay. */
static void sweep(pg_timer_t *t)
{
    uint64_t now = pg_mono_ms();
    lws_dll2_owner_t *lists[2] = { &heading, &lingering };
    uint64_t limits[2] = { HEAD_TIMEOUT_MS, LINGER_MS };
    for (int i = 0; i < 2; i++)
        while (lists[i]->head != NULL) {
            relay_t *r = lws_container_of(lists[i]->head, relay_t, timed);
            if (now - r->since_ms < limits[i])
                break;
            end(r);
        }
    if (heading.count > 0 || lingering.count > 0)
        pg_wheel_arm(&pg_node.wheel, t, pg_node_second(pg_node_tick() + 1));
}

int pg_relay_take(int fd)
{
    if (!running)
        return -1;
    relay_t *r = calloc(1, sizeof(*r));
    if (r == NULL || pg_fdwatch_add(&watch, fd, &r->tag[0]) != 0) {
        free(r);
        close(fd);
        pg_log(PG_LOG_WARN, "could not take a new connection (out of memory?)");
        return 0;
    }
    r->fd = fd;
    r->tag[1] = 1;
    r->pair = -1;
    r->state = R_HEAD;
    lws_dll2_add_tail(&r->all, &relays);
    deadline(r, &heading);
    return 0;
}

int pg_relay_start(void)
{
    if (pg_fdwatch_init(&watch, relay_event) != 0)
        return -1;
    running = 1;
    sweep_timer.cb = sweep;
    return 0;
}

void pg_relay_stop(void)
{
    if (!running)
        return;
    running = 0;
    /* their connections end with the node */
    while (relays.head != NULL)
        end(lws_container_of(relays.head, relay_t, all));
    pg_wheel_cancel(&pg_node.wheel, &sweep_timer);
    pg_fdwatch_stop(&watch);
}
