/* pushgate-bench: shared types of the coordinator, the worker processes, the
 * publisher and the calibration loop. One event_base per process; no threads. */
#ifndef PG_BENCH_H
#define PG_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_VERSION "0.1.0"
#define BENCH_MAX_PIDS 16
#define BENCH_MAX_PROCS 64

enum { TR_WS = 0, TR_SSE = 1 };
enum { PUB_NONE = 0, PUB_RAW, PUB_FCALL, PUB_API, PUB_NCHAN };
/* Who a published message is for: every connection (broadcast or the topic in
 * the connect path), a user drawn at random per message, or one fixed user. */
enum { TGT_ALL = 0, TGT_USER_RANDOM, TGT_USER_FIXED };

typedef struct bench_opts {
    /* where the connections go */
    int         transport;          /* TR_WS / TR_SSE */
    char        host[256];
    int         port;
    char        path[1024];         /* path + query, e.g. /ws?channels=news */
    long        connections;
    int         procs;
    int         sources;            /* distinct source addresses 127.0.0.(2+k); 0 = no bind */
    double      ramp;               /* new connections per second in total; 0 = as fast as allowed */
    int         concurrency;        /* handshakes in flight per worker */
    double      hs_timeout;         /* seconds for connect + upgrade */
    const char *subscribe;          /* WS: after the upgrade send a subscribe for this
                                     * channel; the attempt succeeds at the answer */
    int         connect_rate;       /* --connect-rate: the connect phase is the run */
    int         storm;              /* --storm: drop all, publish, all resume with since */
    int         close_all;          /* --close-all: drop all, time the server's closes */
    long        storm_missed;       /* --storm: messages missed on broadcast (and as many
                                     * over the user channels with --users) */
    /* identity */
    const char *token;              /* one token for every connection */
    const char *user_tokens_file;   /* line k = token of user u<k> */
    long        users;              /* connection g is user u<g % users> */
    const char *jwt_secret;         /* mint HS256 tokens ourselves */
    int         token_in_query;     /* token as ?token= instead of Authorization */
    /* publishing */
    int         publish;            /* PUB_* */
    long        messages;
    double      rate;               /* msg/s; 0 = as fast as the window allows */
    double      duration;           /* alternative to --messages: messages = rate * duration */
    const char *channel;            /* "broadcast", "user-random", "user:<id>", a topic */
    int         target;             /* TGT_* derived from channel */
    long        fixed_user;         /* TGT_USER_FIXED: index k of u<k>, -1 = not one of ours */
    char        redis_host[256];
    int         redis_port;
    char        redis_pass[256];
    int         redis_db;
    const char *redis_url;
    const char *prefix;
    char        fnname[300];        /* <prefix with non-alnum -> _>publish */
    const char *api_key;
    const char *publish_url;        /* api / nchan-http endpoint */
    int         publish_conns;      /* HTTP publisher keep-alive connections */
    int         window;             /* redis replies outstanding at most */
    int         size;               /* pad payload to this many bytes */
    uint64_t    seed;               /* user-random draw */
    /* run shape */
    double      idle;               /* hold connections this long before publishing */
    double      settle;             /* wait after all connected before the RSS sample */
    double      drain;              /* wait for stragglers after the last publish */
    double      timeout;            /* whole run */
    pid_t       server_pids[BENCH_MAX_PIDS];
    int         n_server_pids;
    const char *label;
    int         quiet;
    uint64_t    t0_ns;              /* CLOCK_MONOTONIC at start: older payloads are stale */
    /* calibrate */
    int         calibrate;
    int         cal_rounds;
    int         cal_frame;          /* bytes per frame */
    int         cal_cpu_send, cal_cpu_recv;
} bench_opts_t;

/* Latency histogram with log buckets: 64 linear sub-buckets per power of two,
 * so any quantile is within 1.6% of the truth, in 30 KiB whatever the count. A
 * sorted sample was turned down: it needs memory per delivery or drops data. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * 59u)
typedef struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[HIST_BUCKETS];
} hist_t;

void     hist_init(hist_t *h);
void     hist_add(hist_t *h, uint64_t v);
void     hist_merge(hist_t *into, const hist_t *from);
/* Value at quantile q in [0,1] (bucket midpoint, clamped to min/max); 0 if empty. */
uint64_t hist_quantile(const hist_t *h, double q);

/* What a worker sends back at the end (host byte order: same machine). */
typedef struct worker_result {
    uint64_t attempted, connected, failed;
    uint64_t fail_connect, fail_timeout, fail_http, fail_proto;
    uint64_t disconnects;           /* open connections lost before the end */
    uint64_t server_closes;         /* of those, by a WebSocket close frame */
    uint64_t frames;                /* text frames / SSE data lines */
    uint64_t deliveries;            /* unique, parsed, seq < messages */
    uint64_t dups, out_of_order, unparsed, pings, comments, sse_ids;
    uint64_t stale;                 /* published before this run (a server's replay) */
    uint64_t bytes_in;
    uint64_t expected;              /* filled by the worker at STOP */
    uint64_t dup_check;             /* 1 when the per-connection bitmaps were kept */
    uint64_t first_rx_ns, last_rx_ns;
    uint64_t cpu_user_us, cpu_sys_us, maxrss_kb;
    uint64_t connect_ns;            /* start to the last attempt's outcome */
    uint64_t reconnect_ns;          /* --storm: MSG_RECONNECT to the last outcome */
    uint64_t notices;               /* recovery-incomplete notices */
    uint64_t last_http_status;      /* a failing status, for the report */
    hist_t   lat;                   /* publish -> receive, ns */
    hist_t   hs;                    /* TCP connect start -> 101/200, ns */
} worker_result_t;

/* Coordinator <-> worker messages over a socketpair: header then body. */
enum { MSG_PROGRESS = 1, MSG_CONNECTED, MSG_RESULT, MSG_STOP,
       MSG_DROP,        /* coordinator: close every connection now */
       MSG_DROPPED,     /* worker: done */
       MSG_RECONNECT }; /* coordinator: open them all again with since=<last id> */
typedef struct msg_hdr {
    uint32_t type, len;
} msg_hdr_t;
struct evbuffer;
/* When a whole message is buffered in in: its header into *h, drained (the
 * body of h->len bytes is next) and 1; else 0 and nothing taken. */
int ipc_take(struct evbuffer *in, msg_hdr_t *h);
typedef struct msg_progress {
    uint64_t connected, failed, inflight, deliveries, open;
} msg_progress_t;
typedef struct msg_stop {
    uint64_t published;             /* seq 0..published-1 were sent */
} msg_stop_t;

/* util.c */
uint64_t    mono_ns(void);
uint64_t    rng_next(uint64_t *s);             /* splitmix64 */
uint64_t    mix64(uint64_t x);
/* The user index of message seq for TGT_USER_RANDOM: a pure function of (seed,
 * seq) so every process knows the target without being told. */
long        target_user(const bench_opts_t *o, uint64_t seq);
/* tmpl with every "{user}" replaced by u<user>, into out; -1 if it does not fit.
 * How users are told apart where the URL is the identity (Nchan channels). */
int         subst_user(const char *tmpl, long user, char *out, size_t outlen);
/* A JSON number printed with prec decimals (json-c would print 17 digits). */
struct json_object *json_fixed(double v, int prec);
size_t      b64_encode(const unsigned char *in, size_t n, char *out, int url);
/* Sec-WebSocket-Accept for key into out[29]. */
void        ws_accept_for(const char *key, char out[32]);
/* An HS256 JWT with sub=u<user> (and a channels claim from the path) into out. */
int         jwt_mint(const bench_opts_t *o, long user, char *out, size_t outlen);
/* utime+stime of pid in microseconds; -1 if unreadable. */
int64_t     proc_cpu_us(pid_t pid);
/* Run time of all of pid's threads in ns from schedstat (exact, unlike the
 * clock ticks of stat, but threads that exited are missed), and in *wait_ns
 * the time they sat runnable waiting for a CPU; -1 if unreadable. */
int64_t     proc_sched_ns(pid_t pid, int64_t *wait_ns);
/* VmRSS of pid in KiB; -1 if unreadable. */
int64_t     proc_rss_kb(pid_t pid);
void        say(const bench_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* worker.c: runs the connections of worker idx; never returns. */
void        worker_main(const bench_opts_t *o, int idx, int fd) __attribute__((noreturn));
/* Number of connections worker idx holds (global index g = idx + j * procs). */
long        worker_share(const bench_opts_t *o, int idx);

/* publish.c */
struct event_base;
typedef struct publisher publisher_t;
/* Opens the Redis or HTTP link now; done_cb is called once when every message
 * is sent and answered, or the publisher gave up. NULL on a setup error. */
publisher_t *pub_new(const bench_opts_t *o, struct event_base *base,
                     void (*done_cb)(void *), void *arg);
/* Starts the rate clock. count_cb(arg, seq) is called for each message sent. */
void         pub_start(publisher_t *p, void (*sent_cb)(void *, uint64_t), void *arg);
/* Stops sending (timeout); the counters stay readable. */
void         pub_stop(publisher_t *p);
void         pub_stats(const publisher_t *p, uint64_t *sent, uint64_t *acked, uint64_t *errors,
                       uint64_t *t_first, uint64_t *t_last, char *lasterr, size_t lasterrlen);
void         pub_free(publisher_t *p);

/* calibrate.c: runs the no-gateway floor measurement, prints its JSON line. */
int          calibrate_main(const bench_opts_t *o);

#endif
