/* pushgate-bench: a worker process. It holds its share of the connections on
 * one event_base, parses what the server sends, and reports to the
 * coordinator over a socketpair. Minimal WebSocket (RFC 6455) and SSE clients
 * over bufferevents: only what a push gateway sends is understood. */
#include "bench.h"
#include "http.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_FRAME (16u << 20)
/* Past this many bytes of per-connection seq bitmaps in one process the
 * duplicate check is skipped (and reported off) rather than risk the box. */
#define DUP_BUDGET ((size_t)768 << 20)

/* The two answers to a subscribe command (SPEC 4), as the gateway spells them. */
#define ANS_OK "\"type\":\"subscribed\""
#define ANS_ERROR "\"type\":\"error\""

enum { CS_NEW = 0, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_FAILED, CS_CLOSED };

typedef struct conn {
    struct bufferevent *bev;    /* NULL once failed or closed */
    struct evbuffer *aux;       /* SSE de-chunked stream or WS fragments; lazy */
    uint8_t *seen;              /* bit seq set once delivered; lazy, NULL if no dup check */
    uint64_t t0;                /* connect start, for the handshake time */
    uint64_t next_seq;          /* highest seq seen + 1; 0 = none yet */
    uint64_t last_id;           /* highest message id delivered: since= on a resume */
    uint32_t j;                 /* local index; global g = idx + j * procs */
    uint8_t state;              /* CS_* */
    uint8_t chunked;            /* SSE body is chunked */
    uint8_t frag_op;            /* opcode of the fragmented message in aux, 0 = none */
    uint8_t await;              /* --subscribe: upgraded, the answer not in yet */
    chunker_t ch;
    char accept[32];            /* expected Sec-WebSocket-Accept */
} conn_t;

typedef struct worker {
    const bench_opts_t *o;
    int idx, fd;
    struct event_base *base;
    struct event *ipc_ev, *ramp_ev, *prog_ev;
    struct evbuffer *ipc_in;
    struct sockaddr_in dst;
    conn_t *c;
    long n, next, inflight, done;
    uint64_t t_start, now, rng;
    int resuming;               /* the --storm round: since= on each request */
    int dup_check;
    long open;
    uint8_t *okmap;             /* bit j: connection j completed its handshake */
    char **user_tokens;
    long n_user_tokens;
    worker_result_t r;
} worker_t;

static worker_t W;

long worker_share(const bench_opts_t *o, int idx)
{
    long n = o->connections / o->procs;
    if (idx < o->connections % o->procs)
        n++;
    return n;
}

static void ipc_send(worker_t *w, uint32_t type, const void *body, uint32_t len)
{
    msg_hdr_t h = {type, len};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)body, len}};
    size_t total = sizeof h + len, off = 0;
    /* blocking writes: the socket is blocking and the coordinator always reads */
    while (off < total) {
        struct msghdr mh = {0};
        struct iovec v[2];
        int nv = 0;
        size_t skip = off;
        for (int i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (char *)iov[i].iov_base + skip;
            v[nv].iov_len = iov[i].iov_len - skip;
            skip = 0;
            nv++;
        }
        mh.msg_iov = v;
        mh.msg_iovlen = (size_t)nv;
        ssize_t k = sendmsg(w->fd, &mh, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            _exit(3);
        }
        off += (size_t)k;
    }
}

static void progress(worker_t *w)
{
    msg_progress_t p = {(uint64_t)w->r.connected, w->r.failed, (uint64_t)w->inflight,
                        w->r.deliveries, (uint64_t)w->open};
    ipc_send(w, MSG_PROGRESS, &p, sizeof p);
}

static void pump(worker_t *w);

static void attempt_done(worker_t *w)
{
    w->inflight--;
    w->done++;
    if (w->done == w->n) {
        if (w->resuming)
            w->r.reconnect_ns = mono_ns() - w->t_start;
        else
            w->r.connect_ns = mono_ns() - w->t_start;
        progress(w);
        ipc_send(w, MSG_CONNECTED, w->okmap, (uint32_t)((w->n + 7) / 8));
    }
    pump(w);
}

static void conn_drop(conn_t *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->aux) {
        evbuffer_free(c->aux);
        c->aux = NULL;
    }
}

enum { F_CONNECT, F_TIMEOUT, F_HTTP, F_PROTO };

static void conn_fail(worker_t *w, conn_t *c, int why)
{
    conn_drop(c);
    c->state = CS_FAILED;
    w->r.failed++;
    switch (why) {
    case F_CONNECT: w->r.fail_connect++; break;
    case F_TIMEOUT: w->r.fail_timeout++; break;
    case F_HTTP: w->r.fail_http++; break;
    default: w->r.fail_proto++; break;
    }
    attempt_done(w);
}

/* An open connection ended: by the server, a reset, or a protocol error. */
static void conn_lost(worker_t *w, conn_t *c)
{
    if (c->await) {
        /* upgraded but never subscribed: the attempt failed */
        c->await = 0;
        conn_fail(w, c, F_PROTO);
        return;
    }
    conn_drop(c);
    if (c->state == CS_OPEN || c->state == CS_CLOSING) {
        w->r.disconnects++;
        w->open--;
    }
    c->state = CS_CLOSED;
}

static int parse_u64(const unsigned char **sp, const unsigned char *end, uint64_t *v)
{
    const unsigned char *s = *sp;
    while (s < end && (*s == ' ' || *s == '"'))
        s++;
    if (s >= end || *s < '0' || *s > '9')
        return 0;
    uint64_t x = 0;
    while (s < end && *s >= '0' && *s <= '9')
        x = x * 10 + (uint64_t)(*s++ - '0');
    *v = x;
    *sp = s;
    return 1;
}

/* One delivery: find "seq" and "t" with memmem, no JSON parse. */
static void on_message(worker_t *w, conn_t *c, const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n, *s;
    uint64_t seq, t;
    w->r.frames++;
    const unsigned char *id = memmem(p, n, "\"id\":\"", 6);
    if (id) {
        uint64_t v;
        id += 6;
        if (parse_u64(&id, end, &v) && v > c->last_id)
            c->last_id = v;
    }
    s = memmem(p, n, "\"seq\":", 6);
    if (!s) {
        if (memmem(p, n, "\"type\":\"recovery\"", 17))
            w->r.notices++;
        else
            w->r.unparsed++;
        return;
    }
    s += 6;
    if (!parse_u64(&s, end, &seq)) {
        w->r.unparsed++;
        return;
    }
    const unsigned char *ts = memmem(s, (size_t)(end - s), "\"t\":", 4);
    if (!ts) {
        ts = memmem(p, n, "\"t\":", 4);
        if (!ts) {
            w->r.unparsed++;
            return;
        }
    }
    ts += 4;
    if (!parse_u64(&ts, end, &t) || seq >= (uint64_t)w->o->messages) {
        w->r.unparsed++;
        return;
    }
    if (t < w->o->t0_ns) {
        /* an earlier run's message replayed from a server's buffer */
        w->r.stale++;
        return;
    }
    if (w->dup_check) {
        if (!c->seen) {
            c->seen = calloc(((size_t)w->o->messages + 7) / 8, 1);
            if (!c->seen) {
                w->dup_check = 0;
                goto count;
            }
        }
        uint8_t bit = (uint8_t)(1u << (seq & 7));
        if (c->seen[seq >> 3] & bit) {
            w->r.dups++;
            return;
        }
        c->seen[seq >> 3] |= bit;
    }
count:
    if (seq + 1 <= c->next_seq)
        w->r.out_of_order++;
    else
        c->next_seq = seq + 1;
    w->r.deliveries++;
    hist_add(&w->r.lat, w->now > t ? w->now - t : 0);
    if (!w->r.first_rx_ns)
        w->r.first_rx_ns = w->now;
    w->r.last_rx_ns = w->now;
}

/* A client frame: always masked (RFC 6455 5.3); control frames only here. */
static void ws_send(worker_t *w, conn_t *c, int op, const unsigned char *p, size_t n)
{
    unsigned char f[8 + 1024];
    size_t hl = 2;
    if (n > 1024)
        n = 1024;
    uint64_t r = rng_next(&w->rng);
    unsigned char m[4];
    memcpy(m, &r, 4);
    f[0] = (unsigned char)(0x80 | op);
    if (n <= 125) {
        f[1] = (unsigned char)(0x80 | n);
    } else {
        f[1] = 0x80 | 126;
        f[2] = (unsigned char)(n >> 8);
        f[3] = (unsigned char)n;
        hl = 4;
    }
    memcpy(f + hl, m, 4);
    for (size_t i = 0; i < n; i++)
        f[hl + 4 + i] = p[i] ^ m[i & 3];
    bufferevent_write(c->bev, f, hl + 4 + n);
}

static void conn_ready(worker_t *w, conn_t *c);

static void event_cb(struct bufferevent *bev, short what, void *arg);

static void closing_written_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_lost(&W, arg);
}

/* Returns -1 when the connection is gone. */
static int ws_feed(worker_t *w, conn_t *c, struct evbuffer *in)
{
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        unsigned char h[14];
        if (avail < 2)
            return 0;
        evbuffer_copyout(in, h, avail < 14 ? avail : 14);
        int fin = h[0] & 0x80, op = h[0] & 0x0f, masked = h[1] & 0x80;
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                return 0;
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return 0;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        unsigned char mask[4] = {0};
        if (masked) {
            if (avail < hl + 4)
                return 0;
            memcpy(mask, h + hl, 4);
            hl += 4;
        }
        if (len > MAX_FRAME) {
            w->r.fail_proto++;
            conn_lost(w, c);
            return -1;
        }
        if (avail < hl + len)
            return 0;
        evbuffer_drain(in, hl);
        unsigned char *p = len ? evbuffer_pullup(in, (ssize_t)len) : h;
        if (masked)
            for (uint64_t i = 0; i < len; i++)
                p[i] ^= mask[i & 3];
        switch (op) {
        case 0x0: /* continuation */
            if (c->frag_op && c->aux) {
                evbuffer_add(c->aux, p, len);
                if (fin) {
                    size_t fl = evbuffer_get_length(c->aux);
                    unsigned char *fp = fl ? evbuffer_pullup(c->aux, -1) : h;
                    if (c->frag_op == 1)
                        on_message(w, c, fp, fl);
                    evbuffer_drain(c->aux, fl);
                    c->frag_op = 0;
                }
            }
            break;
        case 0x1:
        case 0x2:
            if (fin && op == 1 && c->await) {
                /* --subscribe: the first text frame is the answer (or a
                 * message that beat it, which proves the same) */
                c->await = 0;
                if (memmem(p, len, ANS_ERROR, sizeof ANS_ERROR - 1)) {
                    conn_fail(w, c, F_PROTO);
                    return -1;
                }
                conn_ready(w, c);
                if (!memmem(p, len, ANS_OK, sizeof ANS_OK - 1))
                    on_message(w, c, p, len);
            } else if (fin) {
                if (op == 1)
                    on_message(w, c, p, len);
            } else {
                if (!c->aux)
                    c->aux = evbuffer_new();
                evbuffer_add(c->aux, p, len);
                c->frag_op = (uint8_t)op;
            }
            break;
        case 0x8: /* close: echo the code, then drop once it is written */
            w->r.server_closes++;
            ws_send(w, c, 0x8, p, len >= 2 ? 2 : 0);
            evbuffer_drain(in, len);
            c->state = CS_CLOSING;
            bufferevent_disable(c->bev, EV_READ);
            bufferevent_setcb(c->bev, NULL, closing_written_cb, event_cb, c);
            return -1;
        case 0x9:
            w->r.pings++;
            ws_send(w, c, 0xA, p, len);
            break;
        default:
            break;
        }
        evbuffer_drain(in, len);
    }
}

static void sse_line(worker_t *w, conn_t *c, unsigned char *l, size_t n)
{
    if (n >= 5 && memcmp(l, "data:", 5) == 0) {
        size_t k = 5;
        if (k < n && l[k] == ' ')
            k++;
        on_message(w, c, l + k, n - k);
    } else if (n >= 3 && memcmp(l, "id:", 3) == 0) {
        w->r.sse_ids++;
    } else if (n >= 1 && l[0] == ':') {
        w->r.comments++;
    }
    /* event:, retry: and the blank line that ends an event need nothing */
}

static int sse_feed(worker_t *w, conn_t *c, struct evbuffer *in)
{
    struct evbuffer *b = in;
    if (c->chunked) {
        if (!c->aux)
            c->aux = evbuffer_new();
        int r = http_chunk_feed(&c->ch, in, c->aux);
        if (r != 0) { /* stream ended (1) or garbage (-1) */
            if (r < 0)
                w->r.fail_proto++;
            conn_lost(w, c);
            return -1;
        }
        b = c->aux;
    }
    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr e = evbuffer_search_eol(b, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if (e.pos < 0)
            return 0;
        size_t ll = (size_t)e.pos;
        unsigned char *l = evbuffer_pullup(b, (ssize_t)(ll + eol_len));
        sse_line(w, c, l, ll);
        evbuffer_drain(b, ll + eol_len);
    }
}

static void handshake(worker_t *w, conn_t *c, struct evbuffer *in)
{
    char lc[16384];
    int st = http_read_head(in, lc, sizeof lc);
    if (st == 0)
        return;
    if (st < 0) {
        conn_fail(w, c, F_PROTO);
        return;
    }
    size_t vl = 0;
    const char *v;
    if (w->o->transport == TR_WS) {
        if (st != 101) {
            w->r.last_http_status = (uint64_t)st;
            conn_fail(w, c, F_HTTP);
            return;
        }
        v = http_header(lc, "sec-websocket-accept", &vl);
        if (!v || vl != strlen(c->accept) || strncasecmp(v, c->accept, vl) != 0) {
            conn_fail(w, c, F_PROTO);
            return;
        }
    } else {
        if (st != 200) {
            w->r.last_http_status = (uint64_t)st;
            conn_fail(w, c, F_HTTP);
            return;
        }
        v = http_header(lc, "content-type", &vl);
        if (!v || !memmem(v, vl, "text/event-stream", 17)) {
            conn_fail(w, c, F_PROTO);
            return;
        }
        v = http_header(lc, "transfer-encoding", &vl);
        c->chunked = v && memmem(v, vl, "chunked", 7);
    }
    c->state = CS_OPEN;
    if (w->o->subscribe && w->o->transport == TR_WS) {
        /* ready when subscribed: the handshake timeout still runs */
        char cmd[512];
        int n = snprintf(cmd, sizeof cmd, "{\"type\":\"subscribe\",\"channel\":\"%s\"}",
                         w->o->subscribe);
        c->await = 1;
        ws_send(w, c, 0x1, (const unsigned char *)cmd, (size_t)n);
        return;
    }
    conn_ready(w, c);
}

/* The attempt succeeded: upgraded (and with --subscribe, subscribed). */
static void conn_ready(worker_t *w, conn_t *c)
{
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    w->r.connected++;
    w->open++;
    w->okmap[c->j >> 3] |= (uint8_t)(1u << (c->j & 7));
    hist_add(&w->r.hs, mono_ns() - c->t0);
    attempt_done(w);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    worker_t *w = &W;
    struct evbuffer *in = bufferevent_get_input(bev);
    w->now = mono_ns();
    w->r.bytes_in += evbuffer_get_length(in);
    if (c->state == CS_HANDSHAKE) {
        handshake(w, c, in);
        if (c->state != CS_OPEN)
            return;
    }
    if (c->state != CS_OPEN)
        return;
    if (w->o->transport == TR_WS)
        ws_feed(w, c, in);
    else
        sse_feed(w, c, in);
}

static void request(worker_t *w, conn_t *c)
{
    const bench_opts_t *o = w->o;
    long g = w->idx + (long)c->j * o->procs;
    char tok[2048] = "", req[6144], key[32], auth[2200] = "", path[4096];
    const char *t = NULL;

    if (o->token) {
        t = o->token;
    } else if (w->n_user_tokens > 0) {
        t = w->user_tokens[g % w->n_user_tokens];
    } else if (o->jwt_secret && o->users > 0) {
        if (jwt_mint(o, g % o->users, tok, sizeof tok) == 0)
            t = tok;
    }
    if (t && o->token_in_query)
        snprintf(path, sizeof path, "%s%ctoken=%s", o->path, strchr(o->path, '?') ? '&' : '?', t);
    else if (o->users > 0 && strstr(o->path, "{user}"))
        subst_user(o->path, g % o->users, path, sizeof path);
    else
        snprintf(path, sizeof path, "%s", o->path);
    if (t && !o->token_in_query)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", t);
    if (w->resuming && c->last_id) {
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof path - pl, "%csince=%llu", strchr(path, '?') ? '&' : '?',
                 (unsigned long long)c->last_id);
    }

    int n;
    if (o->transport == TR_WS) {
        unsigned char raw[16];
        uint64_t a = rng_next(&w->rng), b = rng_next(&w->rng);
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
        b64_encode(raw, 16, key, 0);
        ws_accept_for(key, c->accept);
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, o->host, o->port, key, auth);
    } else {
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n%s\r\n",
                     path, o->host, o->port, auth);
    }
    if (n < 0 || (size_t)n >= sizeof req) {
        conn_fail(w, c, F_PROTO);
        return;
    }
    bufferevent_write(c->bev, req, (size_t)n);
    c->state = CS_HANDSHAKE;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn_t *c = arg;
    worker_t *w = &W;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        request(w, c);
        return;
    }
    switch (c->state) {
    case CS_CONNECTING:
        conn_fail(w, c, (what & BEV_EVENT_TIMEOUT) ? F_TIMEOUT : F_CONNECT);
        break;
    case CS_HANDSHAKE:
        conn_fail(w, c, (what & BEV_EVENT_TIMEOUT) ? F_TIMEOUT : F_PROTO);
        break;
    default:
        if (c->await) {
            c->await = 0;
            conn_fail(w, c, (what & BEV_EVENT_TIMEOUT) ? F_TIMEOUT : F_PROTO);
        } else {
            conn_lost(w, c);
        }
        break;
    }
}

static void open_one(worker_t *w, conn_t *c)
{
    const bench_opts_t *o = w->o;
    long g = w->idx + (long)c->j * o->procs;
    int one = 1;

    w->inflight++;
    c->t0 = mono_ns();
    c->state = CS_CONNECTING;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(w, c, F_CONNECT);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->sources > 0) {
        /* The port is picked at connect(), per destination: each source
         * address then gives a whole ephemeral range towards each server. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(g % o->sources));
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            close(fd);
            conn_fail(w, c, F_CONNECT);
            return;
        }
    }
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        conn_fail(w, c, F_CONNECT);
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    struct timeval tv = {(time_t)o->hs_timeout, (suseconds_t)((o->hs_timeout - (long)o->hs_timeout) * 1e6)};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&w->dst, sizeof w->dst) < 0) {
        /* libevent already reported the error through event_cb, or will */
        if (c->state == CS_CONNECTING)
            conn_fail(w, c, F_CONNECT);
    }
}

static void pump(worker_t *w)
{
    const bench_opts_t *o = w->o;
    static int pumping;
    long due = w->n;
    /* open_one() can fail at once and call back here: the outer loop goes on */
    if (pumping)
        return;
    if (o->ramp > 0) {
        double per = o->ramp / o->procs;
        due = (long)((double)(mono_ns() - w->t_start) * 1e-9 * per) + 1;
        if (due > w->n)
            due = w->n;
    }
    pumping = 1;
    while (w->next < due && w->inflight < o->concurrency)
        open_one(w, &w->c[w->next++]);
    pumping = 0;
    if (w->next >= w->n && w->ramp_ev)
        evtimer_del(w->ramp_ev);
}

static void ramp_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void prog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    progress(arg);
}

static uint64_t compute_expected(worker_t *w, uint64_t published)
{
    const bench_opts_t *o = w->o;
    uint64_t exp = 0;
    if (o->target == TGT_ALL)
        return (uint64_t)w->r.connected * published;
    if (o->users <= 0)
        return 0;
    uint64_t *per = calloc((size_t)o->users, sizeof *per);
    if (!per)
        return 0;
    for (uint64_t s = 0; s < published; s++) {
        long u = target_user(o, s);
        if (u >= 0 && u < o->users)
            per[u]++;
    }
    for (long j = 0; j < w->n; j++)
        if (w->okmap[j >> 3] & (1u << (j & 7)))
            exp += per[(w->idx + j * o->procs) % o->users];
    free(per);
    return exp;
}

static void finish(worker_t *w, uint64_t published)
{
    struct rusage ru;
    w->r.expected = compute_expected(w, published);
    w->r.dup_check = (uint64_t)w->dup_check;
    w->r.attempted = (uint64_t)w->next;
    getrusage(RUSAGE_SELF, &ru);
    w->r.cpu_user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
    w->r.cpu_sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    w->r.maxrss_kb = (uint64_t)ru.ru_maxrss;
    ipc_send(w, MSG_RESULT, &w->r, sizeof w->r);
    /* The kernel closes every socket at exit: no per-connection teardown. */
    _exit(0);
}

/* --storm / --close-all: every connection goes at once, as when the node
 * they were on died (the kernel sends FIN; the server sees them all close). */
static void drop_all(worker_t *w)
{
    for (long j = 0; j < w->n; j++) {
        conn_t *c = &w->c[j];
        conn_drop(c);
        c->frag_op = 0;
        if (c->state != CS_FAILED)
            c->state = CS_NEW;
    }
    w->open = 0;
}

/* ... and all come back at once, each with since= its last id. */
static void reconnect_all(worker_t *w)
{
    w->resuming = 1;
    w->next = w->done = w->inflight = 0;
    w->r.connected = 0;
    memset(w->okmap, 0, (size_t)(w->n + 8) / 8);
    w->t_start = mono_ns();
    if (w->n == 0) {
        w->inflight = 1;
        w->done = -1;
        attempt_done(w);
        return;
    }
    pump(w);
}

static void ipc_cb(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)what;
    int r = evbuffer_read(w->ipc_in, fd, 4096);
    if (r <= 0)
        _exit(4); /* the coordinator is gone */
    for (;;) {
        msg_hdr_t h;
        if (!ipc_take(w->ipc_in, &h))
            return;
        if (h.type == MSG_STOP && h.len == sizeof(msg_stop_t)) {
            msg_stop_t s;
            evbuffer_remove(w->ipc_in, &s, sizeof s);
            finish(w, s.published);
        }
        if (h.type == MSG_DROP) {
            drop_all(w);
            ipc_send(w, MSG_DROPPED, NULL, 0);
        }
        if (h.type == MSG_RECONNECT)
            reconnect_all(w);
        evbuffer_drain(w->ipc_in, h.len);
    }
}

static void load_user_tokens(worker_t *w)
{
    FILE *f = fopen(w->o->user_tokens_file, "r");
    char line[4096];
    long cap = 0;
    if (!f) {
        perror(w->o->user_tokens_file);
        _exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (w->n_user_tokens == cap) {
            cap = cap ? cap * 2 : 1024;
            w->user_tokens = realloc(w->user_tokens, (size_t)cap * sizeof(char *));
        }
        w->user_tokens[w->n_user_tokens++] = strdup(line);
    }
    fclose(f);
}

void worker_main(const bench_opts_t *o, int idx, int fd)
{
    worker_t *w = &W;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* a safety net if the coordinator hangs: it has its own timeout first */
    alarm((unsigned)(o->timeout + 30));
    memset(w, 0, sizeof *w);
    w->o = o;
    w->idx = idx;
    w->fd = fd;
    w->rng = o->seed ^ mix64((uint64_t)getpid() * 7919u + (uint64_t)idx);
    hist_init(&w->r.lat);
    hist_init(&w->r.hs);
    w->n = worker_share(o, idx);
    w->c = calloc((size_t)(w->n ? w->n : 1), sizeof *w->c);
    w->okmap = calloc((size_t)(w->n + 8) / 8, 1);
    w->ipc_in = evbuffer_new();
    if (!w->c || !w->okmap || !w->ipc_in)
        _exit(5);
    for (long j = 0; j < w->n; j++)
        w->c[j].j = (uint32_t)j;
    w->dup_check = o->messages > 0 &&
                   (size_t)w->n * (((size_t)o->messages + 7) / 8) <= DUP_BUDGET;
    if (o->user_tokens_file)
        load_user_tokens(w);
    w->dst.sin_family = AF_INET;
    w->dst.sin_port = htons((uint16_t)o->port);
    inet_pton(AF_INET, o->host, &w->dst.sin_addr);

    w->base = event_base_new();
    if (!w->base)
        _exit(5);
    w->ipc_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, ipc_cb, w);
    event_add(w->ipc_ev, NULL);
    w->prog_ev = event_new(w->base, -1, EV_PERSIST, prog_cb, w);
    struct timeval ptv = {0, 200000};
    evtimer_add(w->prog_ev, &ptv);
    w->ramp_ev = event_new(w->base, -1, EV_PERSIST, ramp_cb, w);
    struct timeval rtv = {0, 10000};
    evtimer_add(w->ramp_ev, &rtv);
    w->t_start = mono_ns();
    if (w->n == 0) {
        w->inflight = 1;
        w->done = -1;
        attempt_done(w);
    } else {
        pump(w);
    }
    event_base_dispatch(w->base);
    _exit(0);
}
