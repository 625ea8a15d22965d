/* pushgate-bench: the publisher. Runs in the coordinator on its event_base:
 * through Redis (PUBLISH or FCALL, pipelined up to --window replies) or HTTP
 * POST (pushgate /api/publish or an Nchan publisher location, one request in
 * flight per keep-alive connection). Messages are spaced evenly by a timer:
 * each tick sends what the clock says is due, so late ticks catch up. */
#include "bench.h"
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define MAX_HTTP_RECONNECTS 100

typedef struct hconn {
    struct publisher *p;
    struct bufferevent *bev;
    int busy;           /* a request is in flight */
    int head_done;
    int chunked;
    int close_after;
    int status;
    uint64_t body_left;
    chunker_t ch;
} hconn_t;

struct publisher {
    const bench_opts_t *o;
    struct event_base *base;
    void (*done_cb)(void *);
    void *done_arg;
    void (*sent_cb)(void *, uint64_t);
    void *sent_arg;
    redisAsyncContext *ac;
    hconn_t *hc;
    int nhc, reconnects;
    struct sockaddr_in http_dst;
    char http_host[256], http_path[1024];
    int http_port;
    struct event *tick;
    uint64_t t0, sent, acked, errors, inflight, t_first, t_last;
    int started, stopped, failed, done_called;
    char lasterr[256];
    char *buf;          /* payload scratch */
    size_t bufcap;
};

static void pump(publisher_t *p);

static void set_err(publisher_t *p, const char *what, const char *detail)
{
    snprintf(p->lasterr, sizeof p->lasterr, "%s%s%.200s", what, detail ? ": " : "", detail ? detail : "");
}

static void check_done(publisher_t *p)
{
    if (p->done_called || !p->started)
        return;
    int all_sent = p->stopped || p->failed || p->sent >= (uint64_t)p->o->messages;
    if (all_sent && (p->inflight == 0 || p->failed)) {
        p->done_called = 1;
        if (p->tick)
            evtimer_del(p->tick);
        p->done_cb(p->done_arg);
    }
}

static void give_up(publisher_t *p, const char *why, const char *detail)
{
    if (!p->failed)
        say(p->o, "publisher: %s%s%s", why, detail ? ": " : "", detail ? detail : "");
    set_err(p, why, detail);
    p->failed = 1;
    check_done(p);
}

/* {"seq":N,"t":T[,"pad":"xx.."]} sized so the Redis payload {"data":...} is
 * --size bytes when that is larger than the bare message. */
static size_t build_data(publisher_t *p, uint64_t seq, uint64_t t, char *out, size_t cap)
{
    int n = snprintf(out, cap, "{\"seq\":%llu,\"t\":%llu", (unsigned long long)seq, (unsigned long long)t);
    size_t bare = (size_t)n + 1 + 9; /* + "}" + {"data":...} wrapper */
    size_t want = (size_t)p->o->size;
    if (want > bare + 9 && want - bare - 9 + (size_t)n + 16 < cap) {
        size_t padn = want - bare - 9; /* ,"pad":"" is 9 bytes */
        memcpy(out + n, ",\"pad\":\"", 8);
        n += 8;
        for (size_t i = 0; i < padn; i++)
            out[n++] = 'x';
        out[n++] = '"';
    }
    out[n++] = '}';
    out[n] = '\0';
    return (size_t)n;
}

static const char *channel_for(publisher_t *p, uint64_t seq, char *tmp, size_t tmplen)
{
    if (p->o->target == TGT_USER_RANDOM) {
        snprintf(tmp, tmplen, "user:u%ld", target_user(p->o, seq));
        return tmp;
    }
    return p->o->channel;
}

/* ---- Redis ---- */

static void redis_reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
    publisher_t *p = priv;
    redisReply *reply = r;
    (void)ac;
    p->inflight--;
    p->acked++;
    if (!reply) {
        p->errors++;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        p->errors++;
        if (p->errors == 1)
            say(p->o, "publisher: redis error: %s", reply->str);
        set_err(p, "redis", reply->str);
    }
    pump(p);
    check_done(p);
}

static void redis_setup_cb(redisAsyncContext *ac, void *r, void *priv)
{
    publisher_t *p = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        give_up(p, "redis setup", reply->str);
}

static void redis_connect_cb(const redisAsyncContext *ac, int status)
{
    publisher_t *p = ac->data;
    if (status != REDIS_OK) {
        p->ac = NULL; /* hiredis frees it after this callback */
        give_up(p, "redis connect", ac->errstr);
    }
}

static void redis_disconnect_cb(const redisAsyncContext *ac, int status)
{
    publisher_t *p = ac->data;
    p->ac = NULL;
    if (status != REDIS_OK && !p->done_called)
        give_up(p, "redis disconnected", ac->errstr);
}

static int redis_open(publisher_t *p)
{
    const bench_opts_t *o = p->o;
    p->ac = redisAsyncConnect(o->redis_host, o->redis_port);
    if (!p->ac || p->ac->err) {
        say(o, "redis: %s", p->ac ? p->ac->errstr : "out of memory");
        return -1;
    }
    p->ac->data = p;
    redisLibeventAttach(p->ac, p->base);
    redisAsyncSetConnectCallback(p->ac, redis_connect_cb);
    redisAsyncSetDisconnectCallback(p->ac, redis_disconnect_cb);
    if (o->redis_pass[0])
        redisAsyncCommand(p->ac, redis_setup_cb, p, "AUTH %s", o->redis_pass);
    if (o->redis_db)
        redisAsyncCommand(p->ac, redis_setup_cb, p, "SELECT %d", o->redis_db);
    return 0;
}

static int redis_send(publisher_t *p, uint64_t seq)
{
    char chan[300];
    const char *ch = channel_for(p, seq, chan, sizeof chan);
    uint64_t t = mono_ns();
    memcpy(p->buf, "{\"data\":", 8);
    size_t n = 8 + build_data(p, seq, t, p->buf + 8, p->bufcap - 16);
    p->buf[n++] = '}';
    int r;
    if (p->o->publish == PUB_RAW)
        r = redisAsyncCommand(p->ac, redis_reply_cb, p, "PUBLISH %s%s %b", p->o->prefix, ch, p->buf, n);
    else
        r = redisAsyncCommand(p->ac, redis_reply_cb, p, "FCALL %s 0 %s %b", p->o->fnname, ch, p->buf, n);
    if (r != REDIS_OK)
        return -1;
    /* write it now: t says when the command left, and hiredis would
     * otherwise wait for the next loop iteration's EV_WRITE */
    redisAsyncHandleWrite(p->ac);
    p->inflight++;
    return 0;
}

/* ---- HTTP ---- */

static void http_connect(publisher_t *p, hconn_t *h);

static void http_answer(publisher_t *p, hconn_t *h)
{
    h->busy = 0;
    h->head_done = 0;
    p->inflight--;
    p->acked++;
    if (h->status < 200 || h->status > 299) {
        char s[16];
        p->errors++;
        snprintf(s, sizeof s, "%d", h->status);
        if (p->errors == 1)
            say(p->o, "publisher: HTTP %d", h->status);
        set_err(p, "http status", s);
    }
    if (h->close_after) {
        bufferevent_free(h->bev);
        h->bev = NULL;
        http_connect(p, h);
    }
}

static void http_read_cb(struct bufferevent *bev, void *arg)
{
    hconn_t *h = arg;
    publisher_t *p = h->p;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (!h->busy) {
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        if (!h->head_done) {
            char lc[8192];
            int st = http_read_head(in, lc, sizeof lc);
            if (st == 0)
                break;
            if (st < 0) {
                h->status = 0;
                h->close_after = 1;
                http_answer(p, h);
                break;
            }
            size_t vl;
            const char *v;
            h->status = st;
            h->head_done = 1;
            h->chunked = 0;
            h->body_left = 0;
            memset(&h->ch, 0, sizeof h->ch);
            if ((v = http_header(lc, "transfer-encoding", &vl)) && memmem(v, vl, "chunked", 7))
                h->chunked = 1;
            else if ((v = http_header(lc, "content-length", &vl)))
                h->body_left = strtoull(v, NULL, 10);
            v = http_header(lc, "connection", &vl);
            h->close_after = v && memmem(v, vl, "close", 5);
        }
        if (h->chunked) {
            int r = http_chunk_feed(&h->ch, in, NULL);
            if (r == 0)
                break;
            if (r < 0)
                h->close_after = 1;
        } else if (h->body_left) {
            size_t have = evbuffer_get_length(in);
            size_t take = have < h->body_left ? have : (size_t)h->body_left;
            evbuffer_drain(in, take);
            h->body_left -= take;
            if (h->body_left)
                break;
        }
        http_answer(p, h);
        if (!h->bev)
            break;
    }
    pump(p);
    check_done(p);
}

static void http_event_cb(struct bufferevent *bev, short what, void *arg)
{
    hconn_t *h = arg;
    publisher_t *p = h->p;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    bufferevent_free(h->bev);
    h->bev = NULL;
    if (h->busy) {
        h->busy = 0;
        p->inflight--;
        p->acked++;
        p->errors++;
    }
    set_err(p, "http connection", (what & BEV_EVENT_EOF) ? "closed by server" : "error");
    if (++p->reconnects > MAX_HTTP_RECONNECTS) {
        give_up(p, "http", "too many reconnects");
        return;
    }
    http_connect(p, h);
    pump(p);
    check_done(p);
}

static void http_connect(publisher_t *p, hconn_t *h)
{
    h->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    h->busy = 0;
    h->head_done = 0;
    bufferevent_setcb(h->bev, http_read_cb, NULL, http_event_cb, h);
    bufferevent_enable(h->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&p->http_dst, sizeof p->http_dst) == 0) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(h->bev);
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

static hconn_t *http_idle(publisher_t *p)
{
    for (int i = 0; i < p->nhc; i++)
        if (p->hc[i].bev && !p->hc[i].busy)
            return &p->hc[i];
    return NULL;
}

static int http_send(publisher_t *p, hconn_t *h, uint64_t seq)
{
    const bench_opts_t *o = p->o;
    char chan[300], auth[600] = "";
    uint64_t t = mono_ns();
    size_t n;
    if (o->publish == PUB_API) {
        const char *ch = channel_for(p, seq, chan, sizeof chan);
        int k = snprintf(p->buf, p->bufcap, "{\"channel\":\"%s\",\"data\":", ch);
        n = (size_t)k + build_data(p, seq, t, p->buf + k, p->bufcap - (size_t)k - 8);
        if (o->api_key)
            snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", o->api_key);
    } else {
        memcpy(p->buf, "{\"data\":", 8);
        n = 8 + build_data(p, seq, t, p->buf + 8, p->bufcap - 16);
    }
    p->buf[n++] = '}';
    const char *path = p->http_path;
    char upath[sizeof p->http_path + 32];
    if (o->publish == PUB_NCHAN && strstr(path, "{user}")) {
        /* Nchan has no users: each is its own channel, named in the URL */
        if (subst_user(path, target_user(o, seq), upath, sizeof upath) < 0)
            return -1;
        path = upath;
    }
    struct evbuffer *out = bufferevent_get_output(h->bev);
    evbuffer_add_printf(out,
                        "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n%s\r\n",
                        path, p->http_host, p->http_port, n, auth);
    evbuffer_add(out, p->buf, n);
    h->busy = 1;
    h->head_done = 0;
    p->inflight++;
    return 0;
}

static int parse_http_url(publisher_t *p, const char *url)
{
    const char *s = url;
    if (strncmp(s, "http://", 7) != 0)
        return -1;
    s += 7;
    size_t hl = strcspn(s, ":/");
    if (hl == 0 || hl >= sizeof p->http_host)
        return -1;
    memcpy(p->http_host, s, hl);
    p->http_host[hl] = '\0';
    s += hl;
    p->http_port = 80;
    if (*s == ':')
        p->http_port = (int)strtol(s + 1, (char **)&s, 10);
    snprintf(p->http_path, sizeof p->http_path, "%s", *s ? s : "/");
    if (strcmp(p->http_host, "localhost") == 0)
        snprintf(p->http_host, sizeof p->http_host, "127.0.0.1");
    p->http_dst.sin_family = AF_INET;
    p->http_dst.sin_port = htons((uint16_t)p->http_port);
    return inet_pton(AF_INET, p->http_host, &p->http_dst.sin_addr) == 1 ? 0 : -1;
}

/* ---- rate clock ---- */

/* Message seq is due seq/rate seconds after t0. A tick that comes a little
 * early (libevent measures timeouts from its cached loop time) still sends
 * what is due within SLACK_NS, or two messages would share the next tick. */
#define SLACK_NS 200000ull

static uint64_t due_ns(const publisher_t *p, uint64_t seq)
{
    return (uint64_t)((double)seq * 1e9 / p->o->rate);
}

/* Arm the one-shot tick for the next message's due time; faster rates than
 * one per 100 us send several per tick, still at their own due times. */
static void arm_tick(publisher_t *p, uint64_t now)
{
    uint64_t next = p->t0 + due_ns(p, p->sent), wait = next > now ? next - now : 0;
    if (wait < 100000)
        wait = 100000;
    struct timeval tv = {(time_t)(wait / 1000000000u), (suseconds_t)(wait % 1000000000u / 1000u)};
    event_base_update_cache_time(p->base);
    evtimer_add(p->tick, &tv);
}

static void pump(publisher_t *p)
{
    const bench_opts_t *o = p->o;
    if (!p->started || p->stopped || p->failed)
        return;
    uint64_t total = (uint64_t)o->messages, now = mono_ns();
    while (p->sent < total && (o->rate <= 0 || p->t0 + due_ns(p, p->sent) <= now + SLACK_NS)) {
        uint64_t seq = p->sent;
        if (o->publish == PUB_RAW || o->publish == PUB_FCALL) {
            if (!p->ac || p->inflight >= (uint64_t)o->window || redis_send(p, seq) < 0)
                break;
        } else {
            hconn_t *h = http_idle(p);
            if (!h || http_send(p, h, seq) < 0)
                break;
        }
        p->t_last = mono_ns();
        if (!p->t_first)
            p->t_first = p->t_last;
        p->sent++;
        if (p->sent_cb)
            p->sent_cb(p->sent_arg, seq);
    }
    /* Paced: wake at the next due time. Unpaced, or held back by the
     * window, replies and answers pump again. */
    if (p->sent < total && o->rate > 0 && !evtimer_pending(p->tick, NULL))
        arm_tick(p, mono_ns());
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    publisher_t *p = arg;
    (void)fd;
    (void)what;
    pump(p);
    check_done(p);
}

publisher_t *pub_new(const bench_opts_t *o, struct event_base *base,
                     void (*done_cb)(void *), void *arg)
{
    publisher_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->o = o;
    p->base = base;
    p->done_cb = done_cb;
    p->done_arg = arg;
    p->bufcap = (size_t)o->size + 1024;
    p->buf = malloc(p->bufcap);
    p->tick = evtimer_new(base, tick_cb, p);
    if (!p->buf || !p->tick)
        goto err;
    if (o->publish == PUB_RAW || o->publish == PUB_FCALL) {
        if (redis_open(p) < 0)
            goto err;
    } else {
        char url[1400];
        if (o->publish_url)
            snprintf(url, sizeof url, "%s", o->publish_url);
        else
            snprintf(url, sizeof url, "http://%s:%d/api/publish", o->host, o->port);
        if (parse_http_url(p, url) < 0) {
            say(o, "bad publish url %s (want http://IPv4:port/path)", url);
            goto err;
        }
        p->nhc = o->publish_conns;
        p->hc = calloc((size_t)p->nhc, sizeof *p->hc);
        if (!p->hc)
            goto err;
        for (int i = 0; i < p->nhc; i++) {
            p->hc[i].p = p;
            http_connect(p, &p->hc[i]);
        }
    }
    return p;
err:
    pub_free(p);
    return NULL;
}

void pub_start(publisher_t *p, void (*sent_cb)(void *, uint64_t), void *arg)
{
    p->sent_cb = sent_cb;
    p->sent_arg = arg;
    p->started = 1;
    p->t0 = mono_ns();
    pump(p);
    check_done(p);
}

void pub_stop(publisher_t *p)
{
    p->stopped = 1;
    if (p->tick)
        evtimer_del(p->tick);
}

void pub_stats(const publisher_t *p, uint64_t *sent, uint64_t *acked, uint64_t *errors,
               uint64_t *t_first, uint64_t *t_last, char *lasterr, size_t lasterrlen)
{
    *sent = p->sent;
    *acked = p->acked;
    *errors = p->errors;
    *t_first = p->t_first;
    *t_last = p->t_last;
    snprintf(lasterr, lasterrlen, "%s", p->lasterr);
}

void pub_free(publisher_t *p)
{
    if (!p)
        return;
    /* hiredis calls the pending reply callbacks with NULL: keep them quiet */
    p->done_called = 1;
    p->stopped = 1;
    if (p->ac) {
        redisAsyncContext *ac = p->ac;
        p->ac = NULL;
        ac->data = p;
        redisAsyncFree(ac);
    }
    for (int i = 0; i < p->nhc; i++)
        if (p->hc[i].bev)
            bufferevent_free(p->hc[i].bev);
    free(p->hc);
    if (p->tick)
        event_free(p->tick);
    free(p->buf);
    free(p);
}
