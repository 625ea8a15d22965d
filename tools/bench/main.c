/* pushgate-bench: options, the coordinator process and the JSON report.
 *
 * The coordinator forks --procs workers (worker.c), each holding its share of
 * the connections from its own source address, and talks to them over a
 * socketpair. It samples the server's RSS before and after connecting, runs
 * the publisher (publish.c) on its own event_base, samples the server's CPU
 * over the publish phase, then collects the workers' counters and latency
 * histograms and prints one JSON line on stdout. Progress goes to stderr. */
#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>

enum { PH_CONNECT = 0, PH_SETTLE, PH_PUBLISH, PH_DRAIN, PH_STORM, PH_COLLECT, PH_DONE };
static const char *phase_name[] = {"connect", "settle", "publish", "drain", "storm", "collect", "done"};
/* --storm / --close-all, within PH_STORM */
enum { ST_NONE = 0, ST_SUBWAIT, ST_MARK, ST_CLOSING, ST_CATCHUP, ST_DONE };

typedef struct wslot {
    pid_t pid;
    int fd;
    long n;
    struct event *ev;
    struct evbuffer *in;
    msg_progress_t prog;
    uint8_t *okmap;
    int connected_done, result_done;
    int dead;                   /* its socket closed: send nothing more */
    int died;                   /* ... before its result came: the totals miss it */
    worker_result_t res;
} wslot_t;

typedef struct coord {
    bench_opts_t *o;
    struct event_base *base;
    wslot_t w[BENCH_MAX_PROCS];
    int nw, n_connected_done, n_results;
    int phase, timed_out, pub_failed;
    publisher_t *pub;
    struct event *phase_ev, *timeout_ev, *prog_ev;
    uint64_t t_start, t_connected, t_pub_start, t_pub_end, t_drain_end;
    int64_t rss_before[BENCH_MAX_PIDS], rss_after[BENCH_MAX_PIDS];
    int64_t cpu_start[BENCH_MAX_PIDS], cpu_end[BENCH_MAX_PIDS];
    int64_t idle_cpu_start[BENCH_MAX_PIDS], idle_cpu_end[BENCH_MAX_PIDS];
    uint64_t t_idle_end;        /* the idle window: t_connected .. t_idle_end */
    int64_t sched_start[BENCH_MAX_PIDS], sched_end[BENCH_MAX_PIDS];
    int64_t wait_start[BENCH_MAX_PIDS], wait_end[BENCH_MAX_PIDS];
    int cpu_sampled;
    int conn_cpu_sampled;       /* --connect-rate: cpu_start/end span the connect phase */
    uint64_t total_connected, expected_live, drain_seen;
    uint64_t *user_conns;       /* connections per user, from the workers' maps */
    /* --storm / --close-all */
    int st, n_dropped, storm_cpu, storm_complete;
    struct event *storm_ev;
    redisContext *redis;
    uint64_t storm_expect, storm_base, marks_expect, storm_pub_errors;
    uint64_t t_subwait, t_drop, t_closed, t_reconnect, t_caught;
    int64_t fds_before, fds_connected, fds_after;
    int t_cpu_window_open;
    long long reads_before, reads_after;
} coord_t;

static coord_t C;

/* ---------------- options ---------------- */

static void usage(FILE *f)
{
    fprintf(f,
"usage: pushgate-bench [options]          load generator for pushgate (and Nchan)\n"
"       pushgate-bench --calibrate --connections N   the machine's floor, no server\n"
"\n"
"where to connect\n"
"  --url URL               ws://HOST:PORT/PATH (WebSocket) or http://HOST:PORT/PATH (SSE);\n"
"                          sets --transport/--host/--port/--path at once\n"
"  --transport ws|sse      default ws\n"
"  --host IPV4             default 127.0.0.1\n"
"  --port N                default 8080\n"
"  --path P                default /ws (ws) or /sse (sse); may carry ?channels=...;\n"
"                          {user} becomes the connection's u<g %% U> (Nchan: a channel per user)\n"
"  -c, --connections N     default 100\n"
"  --procs P               worker processes, default ceil(N/15000); each holds N/P\n"
"  --sources K             source addresses 127.0.0.2..(1+K), connection g uses\n"
"                          127.0.0.(2 + g%%K); default P for a 127/8 host, else 0 (no bind)\n"
"  --ramp R                new connections per second in total, 0 = unpaced (default)\n"
"  --concurrency C         handshakes in flight per worker, default 256\n"
"  --handshake-timeout S   default 10 (with --subscribe: until the answer)\n"
"  --subscribe CH          WebSocket: after the upgrade send {\"type\":\"subscribe\",\n"
"                          \"channel\":CH}; a connection counts as connected at the\n"
"                          first text frame back (the answer), failed on an error\n"
"  --storm M               a reconnect storm: once all are connected, one FCALL'd mark on\n"
"                          broadcast (and each user channel with --users) gives each its last\n"
"                          id; then all close at once, M messages go to broadcast (and M to\n"
"                          random users), and all come back at once with since=<last id>:\n"
"                          time until every missed message arrived, history reads (Redis INFO\n"
"                          commandstats, FCALL_RO) over the storm, server CPU meanwhile\n"
"  --close-all             once all are connected, close them all at once: time until the\n"
"                          servers' descriptor counts (--server-pid) are back where they were\n"
"  --connect-rate          the connect phase is the run: unpaced (--concurrency in\n"
"                          flight per worker), nothing published; the report's\n"
"                          connect.per_s is connections accepted, upgraded (and\n"
"                          subscribed) per second, server CPU over that phase\n"
"identity\n"
"  --token T               the same token for every connection\n"
"  --users U               connection g is user u<g %% U>\n"
"  --jwt-secret S          mint an HS256 token per connection (sub=u<g%%U>, 1 day;\n"
"                          a channels claim lists the channels= of --path)\n"
"  --user-tokens FILE      line k is the token of user u<k> (instead of --jwt-secret)\n"
"  --token-in-query        send ?token= instead of Authorization: Bearer\n"
"publishing\n"
"  --publish MODE          none (default), raw (PUBLISH <prefix><channel>), fcall (FCALL\n"
"                          <fn> 0 <channel>), api (POST /api/publish), nchan-http\n"
"                          (POST the payload to --publish-url)\n"
"  --messages M            how many (default 0); or --duration S with --rate\n"
"  --rate R                messages per second, evenly spaced; 0 = as fast as the\n"
"                          window allows (default 100)\n"
"  --duration S            messages = rate * S when --messages is not given\n"
"  --channel C             broadcast (default), user-random (a random user among\n"
"                          --users per message), user:<id>, or a topic\n"
"  --redis-url URL         redis://[:pass@]host:port[/db], default redis://127.0.0.1:6379\n"
"  --prefix P              default pushgate: (the FCALL function is P with\n"
"                          non-alphanumerics as _ then 'publish')\n"
"  --api-key K             Bearer key for --publish api\n"
"  --publish-url URL       http://IPV4:PORT/PATH for api (default the gateway's\n"
"                          /api/publish) or nchan-http (required; {user} becomes the\n"
"                          message's target user with --channel user-random)\n"
"  --publish-conns N       HTTP keep-alive connections, default 8\n"
"  --window N              Redis replies outstanding at most, default 1000\n"
"  --size B                pad the Redis payload {\"data\":{...}} to B bytes\n"
"  --seed N                seed of the user-random draw, default 1\n"
"run\n"
"  --idle S                hold the connections S seconds before publishing (memory)\n"
"  --settle S              wait after the last handshake before sampling RSS, default 0.5\n"
"  --drain S               after the last publish, wait for the expected deliveries\n"
"                          until none came for S seconds, default 5\n"
"  --timeout S             the whole run, default 60; then report what there is\n"
"  --server-pid PID        a server process to sample (repeatable): CPU over the\n"
"                          publish phase, VmRSS before connecting vs all connected\n"
"  --label L               copied into the JSON\n"
"  -q, --quiet             no progress on stderr\n"
"calibrate\n"
"  --calibrate             N loopback TCP pairs, one ~80 byte WebSocket frame write(2)\n"
"                          per connection, then 8 frames per write: sender CPU and wall;\n"
"                          then the relay: 1000 msg/s arrive one by one on a TCP socket,\n"
"                          each read and written to one connection: CPU per message\n"
"  --rounds R              default 5 (the median round is reported)\n"
"  --frame-bytes B         default 80\n"
"  --cal-cpus S,R          pin sender and receiver (and the relay's feeder) to these CPUs\n"
"\n"
"Output: one JSON line on stdout with the parameters and every number.\n"
"Exit: 0 ok, 1 the run finished but is not ok (loss, duplicates, failed connections,\n"
"publish errors), 2 bad usage, 3 timed out, 4 the publisher could not be set up.\n"
"Latency is CLOCK_MONOTONIC at publish (carried in the payload as data.t) to the\n"
"read that brought the delivery in; deliveries must carry data.seq and data.t.\n");
}

static int parse_redis_url(bench_opts_t *o, const char *url)
{
    const char *s = url;
    if (strncmp(s, "redis://", 8) != 0)
        return -1;
    s += 8;
    const char *at = strchr(s, '@');
    if (at) {
        const char *pw = s;
        if (*pw == ':')
            pw++;
        else if (strchr(pw, ':') && strchr(pw, ':') < at)
            pw = strchr(pw, ':') + 1;
        snprintf(o->redis_pass, sizeof o->redis_pass, "%.*s", (int)(at - pw), pw);
        s = at + 1;
    }
    size_t hl = strcspn(s, ":/");
    snprintf(o->redis_host, sizeof o->redis_host, "%.*s", (int)hl, s);
    s += hl;
    o->redis_port = 6379;
    if (*s == ':')
        o->redis_port = (int)strtol(s + 1, (char **)&s, 10);
    if (*s == '/')
        o->redis_db = atoi(s + 1);
    return o->redis_host[0] ? 0 : -1;
}

static int parse_url(bench_opts_t *o, const char *url)
{
    const char *s;
    if (strncmp(url, "ws://", 5) == 0) {
        o->transport = TR_WS;
        s = url + 5;
    } else if (strncmp(url, "http://", 7) == 0) {
        o->transport = TR_SSE;
        s = url + 7;
    } else {
        return -1;
    }
    size_t hl = strcspn(s, ":/");
    snprintf(o->host, sizeof o->host, "%.*s", (int)hl, s);
    s += hl;
    o->port = 80;
    if (*s == ':')
        o->port = (int)strtol(s + 1, (char **)&s, 10);
    snprintf(o->path, sizeof o->path, "%s", *s ? s : "/");
    return 0;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pushgate-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double num(const char *name, const char *v, double min, double max)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < min || d > max) {
        fprintf(stderr, "pushgate-bench: bad value for --%s: %s\n", name, v);
        exit(2);
    }
    return d;
}

enum {
    O_URL = 256, O_TRANSPORT, O_HOST, O_PORT, O_PATH, O_PROCS, O_SOURCES, O_RAMP, O_CONC,
    O_HST, O_TOKEN, O_USERS, O_JWT, O_UTOK, O_TIQ, O_PUBLISH, O_MESSAGES, O_RATE, O_DURATION,
    O_CHANNEL, O_REDIS, O_PREFIX, O_APIKEY, O_PUBURL, O_PUBCONNS, O_WINDOW, O_SIZE, O_SEED,
    O_IDLE, O_SETTLE, O_DRAIN, O_TIMEOUT, O_SPID, O_LABEL, O_CAL, O_ROUNDS, O_FRAME, O_CALCPU,
    O_SUBSCRIBE, O_CONNRATE, O_STORM, O_CLOSEALL,
};

static const struct option longopts[] = {
    {"url", 1, 0, O_URL}, {"transport", 1, 0, O_TRANSPORT}, {"host", 1, 0, O_HOST},
    {"port", 1, 0, O_PORT}, {"path", 1, 0, O_PATH}, {"connections", 1, 0, 'c'},
    {"procs", 1, 0, O_PROCS}, {"sources", 1, 0, O_SOURCES}, {"ramp", 1, 0, O_RAMP},
    {"concurrency", 1, 0, O_CONC}, {"handshake-timeout", 1, 0, O_HST}, {"token", 1, 0, O_TOKEN},
    {"users", 1, 0, O_USERS}, {"jwt-secret", 1, 0, O_JWT}, {"user-tokens", 1, 0, O_UTOK},
    {"token-in-query", 0, 0, O_TIQ}, {"publish", 1, 0, O_PUBLISH}, {"messages", 1, 0, O_MESSAGES},
    {"rate", 1, 0, O_RATE}, {"duration", 1, 0, O_DURATION}, {"channel", 1, 0, O_CHANNEL},
    {"redis-url", 1, 0, O_REDIS}, {"prefix", 1, 0, O_PREFIX}, {"api-key", 1, 0, O_APIKEY},
    {"publish-url", 1, 0, O_PUBURL}, {"publish-conns", 1, 0, O_PUBCONNS}, {"window", 1, 0, O_WINDOW},
    {"size", 1, 0, O_SIZE}, {"seed", 1, 0, O_SEED}, {"idle", 1, 0, O_IDLE}, {"settle", 1, 0, O_SETTLE},
    {"drain", 1, 0, O_DRAIN}, {"timeout", 1, 0, O_TIMEOUT}, {"server-pid", 1, 0, O_SPID},
    {"label", 1, 0, O_LABEL}, {"quiet", 0, 0, 'q'}, {"calibrate", 0, 0, O_CAL},
    {"rounds", 1, 0, O_ROUNDS}, {"frame-bytes", 1, 0, O_FRAME}, {"cal-cpus", 1, 0, O_CALCPU},
    {"subscribe", 1, 0, O_SUBSCRIBE}, {"connect-rate", 0, 0, O_CONNRATE},
    {"storm", 1, 0, O_STORM}, {"close-all", 0, 0, O_CLOSEALL},
    {"help", 0, 0, 'h'}, {0, 0, 0, 0},
};

static const char *publish_name(int m)
{
    static const char *n[] = {"none", "raw", "fcall", "api", "nchan-http"};
    return n[m];
}

static void parse_opts(bench_opts_t *o, int argc, char **argv)
{
    int ch, have_path = 0, have_sources = 0, have_messages = 0;
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 8080;
    o->connections = 100;
    o->concurrency = 256;
    o->hs_timeout = 10;
    o->rate = 100;
    o->channel = "broadcast";
    o->redis_url = "redis://127.0.0.1:6379";
    o->prefix = "pushgate:";
    o->publish_conns = 8;
    o->window = 1000;
    o->seed = 1;
    o->settle = 0.5;
    o->drain = 5;
    o->timeout = 60;
    o->cal_rounds = 5;
    o->cal_frame = 80;
    o->cal_cpu_send = o->cal_cpu_recv = -1;

    while ((ch = getopt_long(argc, argv, "c:qh", longopts, NULL)) != -1) {
        switch (ch) {
        case O_URL:
            if (parse_url(o, optarg) < 0)
                die("bad --url %s (want ws://host:port/path or http://host:port/path)", optarg);
            have_path = 1;
            break;
        case O_TRANSPORT:
            if (strcmp(optarg, "ws") == 0)
                o->transport = TR_WS;
            else if (strcmp(optarg, "sse") == 0)
                o->transport = TR_SSE;
            else
                die("bad --transport %s (ws or sse)", optarg);
            break;
        case O_HOST: snprintf(o->host, sizeof o->host, "%s", optarg); break;
        case O_PORT: o->port = (int)num("port", optarg, 1, 65535); break;
        case O_PATH: snprintf(o->path, sizeof o->path, "%s", optarg); have_path = 1; break;
        case 'c': o->connections = (long)num("connections", optarg, 0, 1e7); break;
        case O_PROCS: o->procs = (int)num("procs", optarg, 1, BENCH_MAX_PROCS); break;
        case O_SOURCES: o->sources = (int)num("sources", optarg, 0, 250); have_sources = 1; break;
        case O_RAMP: o->ramp = num("ramp", optarg, 0, 1e9); break;
        case O_CONC: o->concurrency = (int)num("concurrency", optarg, 1, 100000); break;
        case O_HST: o->hs_timeout = num("handshake-timeout", optarg, 0.01, 3600); break;
        case O_TOKEN: o->token = optarg; break;
        case O_USERS: o->users = (long)num("users", optarg, 0, 1e9); break;
        case O_JWT: o->jwt_secret = optarg; break;
        case O_UTOK: o->user_tokens_file = optarg; break;
        case O_TIQ: o->token_in_query = 1; break;
        case O_PUBLISH:
            if (strcmp(optarg, "none") == 0) o->publish = PUB_NONE;
            else if (strcmp(optarg, "raw") == 0) o->publish = PUB_RAW;
            else if (strcmp(optarg, "fcall") == 0) o->publish = PUB_FCALL;
            else if (strcmp(optarg, "api") == 0) o->publish = PUB_API;
            else if (strcmp(optarg, "nchan-http") == 0) o->publish = PUB_NCHAN;
            else die("bad --publish %s (none, raw, fcall, api, nchan-http)", optarg);
            break;
        case O_MESSAGES: o->messages = (long)num("messages", optarg, 0, 1e10); have_messages = 1; break;
        case O_RATE: o->rate = num("rate", optarg, 0, 1e8); break;
        case O_DURATION: o->duration = num("duration", optarg, 0, 1e6); break;
        case O_CHANNEL: o->channel = optarg; break;
        case O_REDIS: o->redis_url = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_APIKEY: o->api_key = optarg; break;
        case O_PUBURL: o->publish_url = optarg; break;
        case O_PUBCONNS: o->publish_conns = (int)num("publish-conns", optarg, 1, 1000); break;
        case O_WINDOW: o->window = (int)num("window", optarg, 1, 1e7); break;
        case O_SIZE: o->size = (int)num("size", optarg, 0, 16 << 20); break;
        case O_SEED: o->seed = (uint64_t)num("seed", optarg, 0, 1e18); break;
        case O_IDLE: o->idle = num("idle", optarg, 0, 86400); break;
        case O_SETTLE: o->settle = num("settle", optarg, 0, 3600); break;
        case O_DRAIN: o->drain = num("drain", optarg, 0, 3600); break;
        case O_TIMEOUT: o->timeout = num("timeout", optarg, 0.1, 86400); break;
        case O_SPID:
            if (o->n_server_pids == BENCH_MAX_PIDS)
                die("at most 16 --server-pid");
            o->server_pids[o->n_server_pids++] = (pid_t)num("server-pid", optarg, 1, 1e9);
            break;
        case O_LABEL: o->label = optarg; break;
        case 'q': o->quiet = 1; break;
        case O_CAL: o->calibrate = 1; break;
        case O_ROUNDS: o->cal_rounds = (int)num("rounds", optarg, 1, 1000); break;
        case O_FRAME: o->cal_frame = (int)num("frame-bytes", optarg, 8, 125); break;
        case O_CALCPU:
            if (sscanf(optarg, "%d,%d", &o->cal_cpu_send, &o->cal_cpu_recv) != 2)
                die("bad --cal-cpus %s (want S,R)", optarg);
            break;
        case O_SUBSCRIBE:
            if (!*optarg || strlen(optarg) > 128 || strpbrk(optarg, "\"\\"))
                die("bad --subscribe %s (a channel name)", optarg);
            o->subscribe = optarg;
            break;
        case O_CONNRATE: o->connect_rate = 1; break;
        case O_STORM: o->storm = 1; o->storm_missed = (long)num("storm", optarg, 0, 1e7); break;
        case O_CLOSEALL: o->close_all = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument %s", argv[optind]);
    if (o->calibrate)
        return;
    if (!have_path)
        snprintf(o->path, sizeof o->path, "%s", o->transport == TR_WS ? "/ws" : "/sse");
    if (strcmp(o->host, "localhost") == 0)
        snprintf(o->host, sizeof o->host, "127.0.0.1");
    struct in_addr ia;
    if (inet_aton(o->host, &ia) == 0)
        die("--host must be an IPv4 address: %s", o->host);
    if (!o->procs)
        o->procs = (int)((o->connections + 14999) / 15000);
    if (o->procs < 1)
        o->procs = 1;
    if (o->procs > BENCH_MAX_PROCS)
        die("too many connections for 64 procs");
    if ((o->connections + o->procs - 1) / o->procs > 19000)
        die("more than 19000 connections per process: raise --procs");
    if (!have_sources)
        o->sources = (ntohl(ia.s_addr) >> 24) == 127 ? o->procs : 0;
    if (!have_messages && o->duration > 0)
        o->messages = (long)(o->duration * o->rate);
    if (o->connect_rate && o->publish != PUB_NONE)
        die("--connect-rate publishes nothing: drop --publish");
    if (o->connect_rate && o->ramp > 0)
        die("--connect-rate is unpaced: drop --ramp");
    if (o->subscribe && o->transport != TR_WS)
        die("--subscribe is a WebSocket command");
    if ((o->storm || o->close_all) && (o->publish != PUB_NONE || o->connect_rate || o->ramp > 0))
        die("--storm and --close-all publish on their own, unpaced: drop --publish, --ramp, --connect-rate");
    if (o->storm && o->close_all)
        die("--storm already closes every connection: drop --close-all");
    if (o->publish == PUB_NONE)
        o->messages = 0;
    if (o->publish != PUB_NONE && o->messages == 0)
        die("--publish %s needs --messages or --duration", publish_name(o->publish));
    if (o->publish == PUB_NCHAN && !o->publish_url)
        die("--publish nchan-http needs --publish-url");
    if (parse_redis_url(o, o->redis_url) < 0)
        die("bad --redis-url %s", o->redis_url);
    if (o->storm) /* seq 0: the broadcast mark, 1..U: the users' marks, then the missed */
        o->messages = 1 + (o->users > 0 ? o->users : 0) + o->storm_missed * (o->users > 0 ? 2 : 1);
    /* the FCALL function name: prefix with non-alphanumerics as '_' + publish */
    size_t k = 0;
    for (const char *s = o->prefix; *s && k + 8 < sizeof o->fnname; s++)
        o->fnname[k++] = isalnum((unsigned char)*s) ? *s : '_';
    snprintf(o->fnname + k, sizeof o->fnname - k, "publish");
    if (strcmp(o->channel, "user-random") == 0) {
        o->target = TGT_USER_RANDOM;
        if (o->users <= 0)
            die("--channel user-random needs --users");
    } else if (strncmp(o->channel, "user:", 5) == 0) {
        o->target = TGT_USER_FIXED;
        o->fixed_user = -1;
        if (o->channel[5] == 'u' && isdigit((unsigned char)o->channel[6]))
            o->fixed_user = atol(o->channel + 6);
        if (o->users <= 0 || o->fixed_user >= o->users)
            o->fixed_user = -1;
    } else {
        o->target = TGT_ALL;
    }
    if ((o->target != TGT_ALL) && !o->token && !o->jwt_secret && !o->user_tokens_file &&
        !strstr(o->path, "{user}"))
        die("a user channel needs --jwt-secret, --user-tokens or {user} in the path");
    if ((o->jwt_secret || o->user_tokens_file) && o->users <= 0)
        die("--jwt-secret / --user-tokens need --users");
}

/* ---------------- coordinator ---------------- */

static void phase_to(coord_t *c, int ph, double after_s);
static void storm_begin(coord_t *c);
static void storm_subwait(coord_t *c);
static void storm_caught_up(coord_t *c, int complete);

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static void sample_cpu(coord_t *c, int64_t *into)
{
    int start = into == c->cpu_start;
    int64_t *sched = start ? c->sched_start : c->sched_end;
    int64_t *wait = start ? c->wait_start : c->wait_end;
    for (int i = 0; i < c->o->n_server_pids; i++) {
        into[i] = proc_cpu_us(c->o->server_pids[i]);
        sched[i] = proc_sched_ns(c->o->server_pids[i], &wait[i]);
    }
}

/* Server CPU alone, in µs: the idle window's two samples. From the
 * scheduler's run time (ns) where there is one: an idle node of 1k
 * connections uses ~80 ms in 55 s, 8 ticks of /proc's 10 ms, so the tick
 * count alone moved the result by ±12 %. */
static void sample_cpu_only(coord_t *c, int64_t *into)
{
    for (int i = 0; i < c->o->n_server_pids; i++) {
        int64_t wait, ns = proc_sched_ns(c->o->server_pids[i], &wait);
        into[i] = ns >= 0 ? ns / 1000 : proc_cpu_us(c->o->server_pids[i]);
    }
}

static void sample_rss(coord_t *c, int64_t *into)
{
    for (int i = 0; i < c->o->n_server_pids; i++)
        into[i] = proc_rss_kb(c->o->server_pids[i]);
}

static uint64_t sum_prog(coord_t *c, int what)
{
    uint64_t s = 0;
    for (int i = 0; i < c->nw; i++) {
        const msg_progress_t *p = &c->w[i].prog;
        s += what == 0 ? p->connected : what == 1 ? p->failed : what == 2 ? p->deliveries : p->open;
    }
    return s;
}

static void send_stop(coord_t *c)
{
    uint64_t sent = 0, acked, errors, tf, tl;
    char e[8];
    if (c->pub)
        pub_stats(c->pub, &sent, &acked, &errors, &tf, &tl, e, sizeof e);
    struct {
        msg_hdr_t h;
        msg_stop_t s;
    } m = {{MSG_STOP, sizeof(msg_stop_t)}, {sent}};
    for (int i = 0; i < c->nw; i++)
        if (!c->w[i].dead && send(c->w[i].fd, &m, sizeof m, MSG_NOSIGNAL) < 0)
            c->w[i].dead = 1;
}

static void all_connected(coord_t *c)
{
    const bench_opts_t *o = c->o;
    c->t_connected = mono_ns();
    c->total_connected = 0;
    if (o->users > 0)
        c->user_conns = calloc((size_t)o->users, sizeof *c->user_conns);
    for (int i = 0; i < c->nw; i++) {
        for (long j = 0; j < c->w[i].n; j++) {
            if (!c->w[i].okmap || !(c->w[i].okmap[j >> 3] & (1u << (j & 7))))
                continue;
            c->total_connected++;
            if (c->user_conns)
                c->user_conns[(i + j * o->procs) % o->users]++;
        }
    }
    say(o, "connected %llu/%ld in %.2f s (%llu failed)", (unsigned long long)c->total_connected,
        o->connections, secs(c->t_connected - c->t_start), (unsigned long long)sum_prog(c, 1));
    sample_cpu_only(c, c->idle_cpu_start);
    if (o->storm || o->close_all) {
        sample_rss(c, c->rss_after);
        storm_begin(c);
        return;
    }
    if (o->connect_rate) {
        sample_cpu(c, c->cpu_end);
        c->conn_cpu_sampled = 1;
        sample_rss(c, c->rss_after);
        c->t_drain_end = mono_ns();
        phase_to(c, PH_COLLECT, 10);
        return;
    }
    phase_to(c, PH_SETTLE, o->settle + o->idle);
}

static void pub_sent_cb(void *arg, uint64_t seq)
{
    coord_t *c = arg;
    if (c->o->target == TGT_ALL) {
        c->expected_live += c->total_connected;
    } else {
        long u = target_user(c->o, seq);
        if (u >= 0 && c->user_conns)
            c->expected_live += c->user_conns[u];
    }
}

static void pub_done_cb(void *arg)
{
    coord_t *c = arg;
    if (c->phase != PH_PUBLISH)
        return;
    c->t_pub_end = mono_ns();
    say(c->o, "publishing done in %.2f s; draining", secs(c->t_pub_end - c->t_pub_start));
    phase_to(c, PH_DRAIN, c->o->drain);
}

static void end_drain(coord_t *c)
{
    if (!c->cpu_sampled && c->t_pub_start) {
        sample_cpu(c, c->cpu_end);
        c->cpu_sampled = 1;
    }
    c->t_drain_end = mono_ns();
    phase_to(c, PH_COLLECT, 10);
}

/* What happens when the phase timer fires: the phase's deadline passed. */
static void phase_cb(evutil_socket_t fd, short what, void *arg)
{
    coord_t *c = arg;
    (void)fd;
    (void)what;
    switch (c->phase) {
    case PH_SETTLE:
        sample_cpu_only(c, c->idle_cpu_end);
        c->t_idle_end = mono_ns();
        sample_rss(c, c->rss_after);
        if (c->o->publish == PUB_NONE || !c->pub) {
            c->t_drain_end = mono_ns();
            phase_to(c, PH_COLLECT, 10);
            break;
        }
        say(c->o, "publishing %ld messages (%s, %s) at %g/s", c->o->messages,
            publish_name(c->o->publish), c->o->channel, c->o->rate);
        c->phase = PH_PUBLISH;
        sample_cpu(c, c->cpu_start);
        c->t_pub_start = mono_ns();
        pub_start(c->pub, pub_sent_cb, c);
        break;
    case PH_DRAIN:
        end_drain(c);
        break;
    case PH_STORM:
        /* no delivery for --drain s while catching up */
        if (c->st == ST_CATCHUP)
            storm_caught_up(c, 0);
        break;
    case PH_COLLECT:
        say(c->o, "workers did not answer in time; reporting without them");
        for (int i = 0; i < c->nw; i++)
            if (!c->w[i].result_done)
                kill(c->w[i].pid, SIGKILL);
        event_base_loopbreak(c->base);
        break;
    default:
        break;
    }
}

static void phase_to(coord_t *c, int ph, double after_s)
{
    c->phase = ph;
    if (ph == PH_COLLECT) {
        send_stop(c);
        say(c->o, "collecting results");
    }
    struct timeval tv = {(time_t)after_s, (suseconds_t)((after_s - (double)(long)after_s) * 1e6)};
    evtimer_add(c->phase_ev, &tv);
}

/* Draining ends when every expected delivery is in, or when --drain seconds
 * pass without a new one: a slow server is measured, a stuck one is not
 * waited for (the --timeout still bounds both). */
static void check_drained(coord_t *c)
{
    if (c->phase != PH_DRAIN)
        return;
    uint64_t got = sum_prog(c, 2);
    if (got >= c->expected_live) {
        end_drain(c);
    } else if (got > c->drain_seen) {
        c->drain_seen = got;
        double d = c->o->drain;
        struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(long)d) * 1e6)};
        evtimer_add(c->phase_ev, &tv);
    }
}

/* ---------------- --storm and --close-all ---------------- */

static redisContext *storm_redis(coord_t *c)
{
    const bench_opts_t *o = c->o;
    struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout(o->redis_host, o->redis_port, tv);
    if (!r || r->err) {
        say(o, "storm: cannot connect to Redis %s:%d: %s", o->redis_host, o->redis_port,
            r ? r->errstr : "out of memory");
        if (r)
            redisFree(r);
        return NULL;
    }
    redisReply *rep = NULL;
    if (o->redis_pass[0])
        rep = redisCommand(r, "AUTH %s", o->redis_pass);
    freeReplyObject(rep);
    rep = o->redis_db ? redisCommand(r, "SELECT %d", o->redis_db) : NULL;
    freeReplyObject(rep);
    return r;
}

/* FCALL_RO calls Redis has served: the gateway's history reads. */
static long long fcall_ro_calls(redisContext *r)
{
    long long n = -1;
    redisReply *rep = r ? redisCommand(r, "INFO commandstats") : NULL;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *s = strstr(rep->str, "cmdstat_fcall_ro:calls=");
        n = s ? atoll(s + 23) : 0;
    }
    freeReplyObject(rep);
    return n;
}

/* FCALL <fn> 0 <channel> {"data":{"seq":S,"t":T}} for seq0..seq0+n-1, on
 * broadcast or (to_users) a random user's channel, pipelined; returns the
 * deliveries they make to the connections we hold. */
static uint64_t storm_publish(coord_t *c, uint64_t seq0, uint64_t n, int to_users)
{
    const bench_opts_t *o = c->o;
    uint64_t expect = 0;
    for (uint64_t s = seq0; s < seq0 + n; s++) {
        char ch[64], data[128];
        /* the user-random draw, whatever --channel says */
        long u = to_users ? (long)(mix64(o->seed ^ (s * 0x9e3779b97f4a7c15ULL)) % (uint64_t)o->users) : -1;
        if (to_users)
            snprintf(ch, sizeof ch, "user:u%ld", u);
        else
            snprintf(ch, sizeof ch, "broadcast");
        snprintf(data, sizeof data, "{\"data\":{\"seq\":%llu,\"t\":%llu}}", (unsigned long long)s,
                 (unsigned long long)mono_ns());
        redisAppendCommand(c->redis, "FCALL %s 0 %s %s", o->fnname, ch, data);
        expect += to_users ? (c->user_conns ? c->user_conns[u] : 0) : c->total_connected;
    }
    for (uint64_t k = 0; k < n; k++) {
        redisReply *rep = NULL;
        if (redisGetReply(c->redis, (void **)&rep) != REDIS_OK) {
            c->storm_pub_errors += n - k;
            break;
        }
        if (!rep || rep->type == REDIS_REPLY_ERROR)
            c->storm_pub_errors++;
        freeReplyObject(rep);
    }
    return expect;
}

/* Descriptors open in the servers (--server-pid), summed; -1 if unreadable. */
static int64_t server_fds(coord_t *c)
{
    int64_t n = 0;
    if (c->o->n_server_pids == 0)
        return -1;
    for (int i = 0; i < c->o->n_server_pids; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", (int)c->o->server_pids[i]);
        DIR *d = opendir(path);
        if (!d)
            return -1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
    }
    return n;
}

static void send_all(coord_t *c, uint32_t type)
{
    msg_hdr_t h = {type, 0};
    for (int i = 0; i < c->nw; i++)
        if (!c->w[i].dead && send(c->w[i].fd, &h, sizeof h, MSG_NOSIGNAL) < 0)
            c->w[i].dead = 1;
}

static void storm_end(coord_t *c)
{
    c->st = ST_DONE;
    if (c->storm_ev)
        evtimer_del(c->storm_ev);
    if (c->t_cpu_window_open) {
        sample_cpu(c, c->cpu_end);
        c->storm_cpu = 1;
        c->t_cpu_window_open = 0;
    }
    c->t_drain_end = mono_ns();
    phase_to(c, PH_COLLECT, 10);
}

static void storm_caught_up(coord_t *c, int complete)
{
    c->t_caught = mono_ns();
    c->storm_complete = complete;
    c->reads_after = fcall_ro_calls(c->redis);
    say(c->o, "storm: %s in %.2f s; %lld history reads", complete ? "all caught up" : "gave up",
        secs(c->t_caught - c->t_reconnect), c->reads_after - c->reads_before);
    storm_end(c);
}

/* Every connection closed on the server: publish what they miss, then all
 * come back at once. */
static void storm_resume(coord_t *c)
{
    const bench_opts_t *o = c->o;
    uint64_t base = 1 + (o->users > 0 ? (uint64_t)o->users : 0), M = (uint64_t)o->storm_missed;
    c->reads_before = fcall_ro_calls(c->redis);
    uint64_t expect = storm_publish(c, base, M, 0);
    if (o->users > 0)
        expect += storm_publish(c, base + M, M, 1);
    c->storm_base = sum_prog(c, 2);
    c->storm_expect = c->storm_base + expect;
    c->drain_seen = c->storm_base;
    say(o, "storm: %llu missed published; all resume", (unsigned long long)(M * (o->users > 0 ? 2 : 1)));
    c->st = ST_CATCHUP;
    sample_cpu(c, c->cpu_start);
    c->t_cpu_window_open = 1;
    c->t_reconnect = mono_ns();
    send_all(c, MSG_RECONNECT);
    double d = o->drain;
    struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(long)d) * 1e6)};
    evtimer_add(c->phase_ev, &tv);
}

static void storm_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    coord_t *c = arg;
    (void)fd;
    (void)what;
    if (c->st == ST_SUBWAIT) {
        storm_subwait(c);
        return;
    }
    if (c->st != ST_CLOSING)
        return;
    int64_t fds = server_fds(c);
    uint64_t now = mono_ns();
    int closed = fds >= 0 ? fds <= c->fds_before + 2
                          : c->n_dropped == c->nw && now - c->t_drop > 1000000000ull;
    if (closed) {
        c->t_closed = now;
        c->fds_after = fds;
        say(c->o, "closed on the server in %.3f s", secs(c->t_closed - c->t_drop));
        if (c->o->close_all)
            storm_end(c);
        else
            storm_resume(c);
        return;
    }
    if (now - c->t_drop > (uint64_t)(c->o->drain * 1e9)) {
        say(c->o, "the servers still hold %lld descriptors (%lld before): going on",
            (long long)fds, (long long)c->fds_before);
        c->fds_after = fds;
        if (c->o->close_all)
            storm_end(c);
        else
            storm_resume(c);
        return;
    }
    struct timeval tv = {0, 5000};
    evtimer_add(c->storm_ev, &tv);
}

static void storm_drop(coord_t *c)
{
    c->fds_connected = server_fds(c);
    if (c->o->close_all) {
        sample_cpu(c, c->cpu_start);
        c->t_cpu_window_open = 1;
    }
    say(c->o, "closing all %llu connections at once", (unsigned long long)c->total_connected);
    c->st = ST_CLOSING;
    c->t_drop = mono_ns();
    send_all(c, MSG_DROP);
    if (c->storm_ev == NULL)
        c->storm_ev = evtimer_new(c->base, storm_poll_cb, c);
    struct timeval tv = {0, 5000};
    evtimer_add(c->storm_ev, &tv);
}

/* Redis counts a subscriber on broadcast and on every user channel some
 * connection holds: 1, or 0 while a node's SUBSCRIBE is still on its way.
 * A "connected" WebSocket is upgraded, not yet subscribed; a mark published
 * before its node's SUBSCRIBE reaches no one, and without it the storm
 * would wait for deliveries that never come (seen on a loaded ASan run).
 * With several nodes this sees the first node's subscription only; the
 * --drain wait below still ends the step. */
static int storm_subscribed(coord_t *c)
{
    const bench_opts_t *o = c->o;
    size_t n = 3 + (size_t)o->users, k = 0;   /* PUBSUB NUMSUB broadcast user:u0... */
    char **argv = calloc(n, sizeof *argv);
    int ready = 0;
    if (argv == NULL)
        return 1;   /* cannot ask: publish as before */
    argv[k++] = strdup("PUBSUB");
    argv[k++] = strdup("NUMSUB");
    if (asprintf(&argv[k], "%sbroadcast", o->prefix) >= 0)
        k++;
    for (long u = 0; u < o->users; u++)
        if (c->user_conns && c->user_conns[u] > 0 &&
            asprintf(&argv[k], "%suser:u%ld", o->prefix, u) >= 0)
            k++;
    redisReply *rep = redisCommandArgv(c->redis, (int)k, (const char **)argv, NULL);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 * (k - 2)) {
        ready = 1;
        for (size_t i = 1; i < rep->elements; i += 2)
            if (rep->element[i]->type != REDIS_REPLY_INTEGER || rep->element[i]->integer < 1)
                ready = 0;
    }
    freeReplyObject(rep);
    for (size_t i = 0; i < k; i++)
        free(argv[i]);
    free(argv);
    return ready;
}

/* Publish one mark on every channel held: seq 0 on broadcast, seq 1 + k on
 * user:u<k>; the workers record them as each connection's last id. */
static void storm_marks(coord_t *c)
{
    const bench_opts_t *o = c->o;
    uint64_t expect = storm_publish(c, 0, 1, 0);
    for (long k = 0; k < o->users; k++) {
        char ch[64], data[128];
        snprintf(ch, sizeof ch, "user:u%ld", k);
        snprintf(data, sizeof data, "{\"data\":{\"seq\":%ld,\"t\":%llu}}", 1 + k,
                 (unsigned long long)mono_ns());
        redisAppendCommand(c->redis, "FCALL %s 0 %s %s", o->fnname, ch, data);
        expect += c->user_conns ? c->user_conns[k] : 0;
    }
    for (long k = 0; k < o->users; k++) {
        redisReply *rep = NULL;
        if (redisGetReply(c->redis, (void **)&rep) != REDIS_OK || !rep || rep->type == REDIS_REPLY_ERROR)
            c->storm_pub_errors++;
        freeReplyObject(rep);
    }
    c->marks_expect = expect;
    c->st = ST_MARK;
    say(o, "storm: marks published; waiting for %llu deliveries", (unsigned long long)expect);
}

/* Polled every 5 ms until the channels are subscribed, --drain at most. */
static void storm_subwait(coord_t *c)
{
    if (!storm_subscribed(c)) {
        if (mono_ns() - c->t_subwait <= (uint64_t)(c->o->drain * 1e9)) {
            struct timeval tv = {0, 5000};
            evtimer_add(c->storm_ev, &tv);
            return;
        }
        say(c->o, "storm: channels still not subscribed after %.1f s: publishing anyway",
            c->o->drain);
    }
    storm_marks(c);
}

/* All connected: once every channel is subscribed, give each connection a
 * last id (storm_marks), or go straight to the close. */
static void storm_begin(coord_t *c)
{
    const bench_opts_t *o = c->o;
    c->phase = PH_STORM;
    if (o->close_all) {
        storm_drop(c);
        return;
    }
    if ((c->redis = storm_redis(c)) == NULL) {
        c->pub_failed = 1;
        storm_end(c);
        return;
    }
    c->st = ST_SUBWAIT;
    c->t_subwait = mono_ns();
    c->storm_ev = evtimer_new(c->base, storm_poll_cb, c);
    storm_subwait(c);
}

/* Progress came: a storm step that waits on deliveries may go on. */
static void check_storm(coord_t *c)
{
    if (c->phase != PH_STORM)
        return;
    uint64_t got = sum_prog(c, 2);
    if (c->st == ST_MARK && got >= c->marks_expect) {
        storm_drop(c);
    } else if (c->st == ST_CATCHUP) {
        if (got >= c->storm_expect) {
            storm_caught_up(c, 1);
        } else if (got > c->drain_seen) {
            c->drain_seen = got;
            double d = c->o->drain;
            struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(long)d) * 1e6)};
            evtimer_add(c->phase_ev, &tv);
        }
    }
}

static void worker_gone(coord_t *c, wslot_t *w)
{
    if (w->dead)
        return;
    w->dead = 1;
    if (!w->connected_done) {
        w->connected_done = 1;
        if (++c->n_connected_done == c->nw && c->phase == PH_CONNECT)
            all_connected(c);
    }
    if (!w->result_done) {
        /* a worker exits right after sending its result: only an end
         * before that is a death */
        w->result_done = 1;
        w->died = 1;
        say(c->o, "worker %d (pid %d) died", (int)(w - c->w), (int)w->pid);
        if (++c->n_results == c->nw)
            event_base_loopbreak(c->base);
    }
}

static void ipc_cb(evutil_socket_t fd, short what, void *arg)
{
    wslot_t *w = arg;
    coord_t *c = &C;
    (void)what;
    int r = evbuffer_read(w->in, fd, 1 << 16);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        event_del(w->ev);
        worker_gone(c, w);
        return;
    }
    for (;;) {
        msg_hdr_t h;
        if (!ipc_take(w->in, &h))
            return;
        switch (h.type) {
        case MSG_PROGRESS:
            if (h.len == sizeof w->prog) {
                evbuffer_remove(w->in, &w->prog, sizeof w->prog);
                check_drained(c);
                check_storm(c);
                continue;
            }
            break;
        case MSG_CONNECTED:
            free(w->okmap);
            w->okmap = malloc(h.len ? h.len : 1);
            evbuffer_remove(w->in, w->okmap, h.len);
            if (!w->connected_done) {
                w->connected_done = 1;
                if (++c->n_connected_done == c->nw && c->phase == PH_CONNECT)
                    all_connected(c);
            }
            continue;
        case MSG_DROPPED:
            c->n_dropped++;
            continue;
        case MSG_RESULT:
            if (h.len == sizeof w->res) {
                evbuffer_remove(w->in, &w->res, sizeof w->res);
                if (!w->result_done) {
                    w->result_done = 1;
                    if (++c->n_results == c->nw)
                        event_base_loopbreak(c->base);
                }
                continue;
            }
            break;
        default:
            break;
        }
        evbuffer_drain(w->in, h.len);
    }
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    coord_t *c = arg;
    (void)fd;
    (void)what;
    if (c->phase >= PH_COLLECT)
        return;
    c->timed_out = 1;
    say(c->o, "timeout (%g s) in phase %s: reporting", c->o->timeout, phase_name[c->phase]);
    if (c->pub)
        pub_stop(c->pub);
    if (c->t_pub_start && !c->cpu_sampled) {
        sample_cpu(c, c->cpu_end);
        c->cpu_sampled = 1;
    }
    if (c->phase < PH_PUBLISH)
        sample_rss(c, c->rss_after);
    c->t_drain_end = mono_ns();
    evtimer_del(c->phase_ev);
    phase_to(c, PH_COLLECT, 10);
}

static void prog_cb(evutil_socket_t fd, short what, void *arg)
{
    coord_t *c = arg;
    (void)fd;
    (void)what;
    uint64_t sent = 0, acked = 0, errors = 0, tf, tl;
    char e[8];
    if (c->pub)
        pub_stats(c->pub, &sent, &acked, &errors, &tf, &tl, e, sizeof e);
    say(c->o, "[%5.1fs %-7s] open %llu, failed %llu, published %llu (%llu err), received %llu/%llu",
        secs(mono_ns() - c->t_start), phase_name[c->phase], (unsigned long long)sum_prog(c, 3),
        (unsigned long long)sum_prog(c, 1), (unsigned long long)sent, (unsigned long long)errors,
        (unsigned long long)sum_prog(c, 2), (unsigned long long)c->expected_live);
}

/* ---------------- report ---------------- */

static json_object *ju(uint64_t v) { return json_object_new_int64((int64_t)v); }

static json_object *hist_json(const hist_t *h, double div, int prec)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "count", ju(h->count));
    if (!h->count)
        return o;
    json_object_object_add(o, "min", json_fixed((double)h->min / div, prec));
    json_object_object_add(o, "p50", json_fixed((double)hist_quantile(h, 0.50) / div, prec));
    json_object_object_add(o, "p90", json_fixed((double)hist_quantile(h, 0.90) / div, prec));
    json_object_object_add(o, "p99", json_fixed((double)hist_quantile(h, 0.99) / div, prec));
    json_object_object_add(o, "p999", json_fixed((double)hist_quantile(h, 0.999) / div, prec));
    json_object_object_add(o, "max", json_fixed((double)h->max / div, prec));
    json_object_object_add(o, "mean", json_fixed((double)h->sum / (double)h->count / div, prec));
    return o;
}

/* Prints the JSON line; returns whether the run was ok. */
static int report(coord_t *c)
{
    const bench_opts_t *o = c->o;
    worker_result_t *t = calloc(1, sizeof *t);
    uint64_t first = UINT64_MAX, last = 0, dup_check = 1, connect_ns = 0, reconnect_ns = 0;
    hist_init(&t->lat);
    hist_init(&t->hs);
    for (int i = 0; i < c->nw; i++) {
        const worker_result_t *r = &c->w[i].res;
        if (!c->w[i].result_done || c->w[i].died) {
            dup_check = 0;
            if (!c->w[i].result_done || !r->attempted)
                continue;
        }
        uint64_t *a = (uint64_t *)t;
        const uint64_t *b = (const uint64_t *)r;
        /* every field up to the histograms is a counter: add them */
        for (size_t k = 0; k < offsetof(worker_result_t, lat) / sizeof(uint64_t); k++)
            a[k] += b[k];
        hist_merge(&t->lat, &r->lat);
        hist_merge(&t->hs, &r->hs);
        if (r->first_rx_ns && r->first_rx_ns < first)
            first = r->first_rx_ns;
        if (r->last_rx_ns > last)
            last = r->last_rx_ns;
        if (!r->dup_check)
            dup_check = 0;
        if (r->connect_ns > connect_ns)
            connect_ns = r->connect_ns;
        if (r->reconnect_ns > reconnect_ns)
            reconnect_ns = r->reconnect_ns;
    }
    t->connect_ns = connect_ns; /* the slowest worker, not a sum */
    t->reconnect_ns = reconnect_ns;
    if (o->storm) /* the marks, then what the storm's clients missed */
        t->expected = c->st >= ST_CATCHUP ? c->storm_expect : c->marks_expect;
    uint64_t sent = 0, acked = 0, errors = 0, tf = 0, tl = 0;
    char lasterr[256] = "";
    if (c->pub)
        pub_stats(c->pub, &sent, &acked, &errors, &tf, &tl, lasterr, sizeof lasterr);

    json_object *j = json_object_new_object(), *x;
    json_object_object_add(j, "tool", json_object_new_string("pushgate-bench"));
    json_object_object_add(j, "version", json_object_new_string(BENCH_VERSION));
    json_object_object_add(j, "mode", json_object_new_string(
        o->connect_rate ? "connect-rate" : o->storm ? "storm" : o->close_all ? "close" : "run"));
    if (o->label)
        json_object_object_add(j, "label", json_object_new_string(o->label));

    x = json_object_new_object();
    json_object_object_add(x, "transport", json_object_new_string(o->transport == TR_WS ? "ws" : "sse"));
    json_object_object_add(x, "host", json_object_new_string(o->host));
    json_object_object_add(x, "port", json_object_new_int(o->port));
    json_object_object_add(x, "path", json_object_new_string(o->path));
    json_object_object_add(x, "connections", ju((uint64_t)o->connections));
    json_object_object_add(x, "procs", json_object_new_int(o->procs));
    json_object_object_add(x, "sources", json_object_new_int(o->sources));
    json_object_object_add(x, "ramp", json_fixed(o->ramp, 1));
    json_object_object_add(x, "concurrency", json_object_new_int(o->concurrency));
    /* what "connected" means in this run */
    json_object_object_add(x, "ready", json_object_new_string(o->subscribe ? "subscribe-answer" : "upgrade"));
    if (o->subscribe)
        json_object_object_add(x, "subscribe", json_object_new_string(o->subscribe));
    json_object_object_add(x, "users", ju((uint64_t)o->users));
    json_object_object_add(x, "auth", json_object_new_string(
        o->token ? "token" : o->user_tokens_file ? "user-tokens" : o->jwt_secret ? "jwt-hs256" : "none"));
    json_object_object_add(x, "publish", json_object_new_string(publish_name(o->publish)));
    json_object_object_add(x, "messages", ju((uint64_t)o->messages));
    json_object_object_add(x, "rate", json_fixed(o->rate, 1));
    json_object_object_add(x, "channel", json_object_new_string(o->channel));
    json_object_object_add(x, "size", json_object_new_int(o->size));
    if (o->publish == PUB_RAW || o->publish == PUB_FCALL) {
        json_object_object_add(x, "redis", json_object_new_string(o->redis_host));
        json_object_object_add(x, "redis_port", json_object_new_int(o->redis_port));
        json_object_object_add(x, "prefix", json_object_new_string(o->prefix));
    }
    if (o->publish_url)
        json_object_object_add(x, "publish_url", json_object_new_string(o->publish_url));
    json_object_object_add(x, "idle", json_fixed(o->idle, 1));
    json_object_object_add(x, "timeout", json_fixed(o->timeout, 1));
    json_object_object_add(j, "params", x);

    x = json_object_new_object();
    json_object_object_add(x, "attempted", ju(t->attempted));
    json_object_object_add(x, "connected", ju(t->connected));
    json_object_object_add(x, "failed", ju(t->failed));
    json_object_object_add(x, "fail_connect", ju(t->fail_connect));
    json_object_object_add(x, "fail_timeout", ju(t->fail_timeout));
    json_object_object_add(x, "fail_http", ju(t->fail_http));
    json_object_object_add(x, "fail_proto", ju(t->fail_proto));
    uint64_t st = 0;
    for (int i = 0; i < c->nw; i++)
        if (c->w[i].res.last_http_status)
            st = c->w[i].res.last_http_status;
    if (st)
        json_object_object_add(x, "last_http_status", ju(st));
    json_object_object_add(x, "disconnects", ju(t->disconnects));
    json_object_object_add(x, "server_closes", ju(t->server_closes));
    json_object_object_add(x, "seconds", json_fixed(secs(t->connect_ns), 3));
    json_object_object_add(x, "per_s", json_fixed(t->connect_ns ? (double)t->connected / secs(t->connect_ns) : 0, 1));
    json_object_object_add(x, "handshake_ms", hist_json(&t->hs, 1e6, 3));
    json_object_object_add(j, "connect", x);

    x = json_object_new_object();
    json_object_object_add(x, "sent", ju(sent));
    json_object_object_add(x, "answered", ju(acked));
    json_object_object_add(x, "errors", ju(errors));
    if (lasterr[0])
        json_object_object_add(x, "last_error", json_object_new_string(lasterr));
    double pubs = tl > tf ? secs(tl - tf) : 0;
    json_object_object_add(x, "seconds", json_fixed(pubs, 3));
    json_object_object_add(x, "per_s", json_fixed(pubs > 0 ? (double)(sent - 1) / pubs : 0, 1));
    json_object_object_add(j, "publish", x);

    x = json_object_new_object();
    uint64_t lost = t->expected > t->deliveries ? t->expected - t->deliveries : 0;
    json_object_object_add(x, "expected", ju(t->expected));
    json_object_object_add(x, "received", ju(t->deliveries));
    json_object_object_add(x, "lost", ju(lost));
    json_object_object_add(x, "loss_pct", json_fixed(t->expected ? 100.0 * (double)lost / (double)t->expected : 0, 4));
    json_object_object_add(x, "duplicates", ju(t->dups));
    json_object_object_add(x, "dup_check", json_object_new_boolean(dup_check && o->messages > 0));
    json_object_object_add(x, "out_of_order", ju(t->out_of_order));
    json_object_object_add(x, "unparsed", ju(t->unparsed));
    json_object_object_add(x, "stale", ju(t->stale));
    json_object_object_add(x, "frames", ju(t->frames));
    json_object_object_add(x, "pings", ju(t->pings));
    json_object_object_add(x, "sse_comments", ju(t->comments));
    json_object_object_add(x, "sse_ids", ju(t->sse_ids));
    json_object_object_add(x, "bytes_in", ju(t->bytes_in));
    double rxs = last > first && first != UINT64_MAX ? secs(last - first) : 0;
    json_object_object_add(x, "seconds", json_fixed(rxs, 3));
    json_object_object_add(x, "per_s", json_fixed(rxs > 0 ? (double)t->deliveries / rxs : 0, 1));
    json_object_object_add(j, "deliveries", x);

    json_object_object_add(j, "latency_ms", hist_json(&t->lat, 1e6, 3));

    if (o->storm || o->close_all) {
        x = json_object_new_object();
        if (c->fds_before >= 0) {
            json_object_object_add(x, "server_fds_before", json_object_new_int64(c->fds_before));
            json_object_object_add(x, "server_fds_connected", json_object_new_int64(c->fds_connected));
            json_object_object_add(x, "server_fds_after", json_object_new_int64(c->fds_after));
        }
        if (c->t_closed)
            json_object_object_add(x, "seconds", json_fixed(secs(c->t_closed - c->t_drop), 3));
        json_object_object_add(j, "close", x);
    }
    if (o->storm) {
        x = json_object_new_object();
        json_object_object_add(x, "missed_broadcast", ju((uint64_t)o->storm_missed));
        json_object_object_add(x, "missed_users", ju(o->users > 0 ? (uint64_t)o->storm_missed : 0));
        json_object_object_add(x, "publish_errors", ju(c->storm_pub_errors));
        json_object_object_add(x, "complete", json_object_new_boolean(c->storm_complete));
        json_object_object_add(x, "resumed", ju(t->connected));
        json_object_object_add(x, "expected", ju(c->st >= ST_CATCHUP ? c->storm_expect - c->storm_base : 0));
        json_object_object_add(x, "received", ju(t->deliveries >= c->storm_base ? t->deliveries - c->storm_base : 0));
        json_object_object_add(x, "recovery_notices", ju(t->notices));
        json_object_object_add(x, "reconnect_s", json_fixed(secs(t->reconnect_ns), 3));
        /* until the last missed message arrived (the workers' own clocks) */
        if (c->storm_complete && last > c->t_reconnect)
            json_object_object_add(x, "caught_up_s", json_fixed(secs(last - c->t_reconnect), 3));
        if (c->reads_before >= 0 && c->reads_after >= 0 && c->t_caught)
            json_object_object_add(x, "history_reads", json_object_new_int64(c->reads_after - c->reads_before));
        json_object_object_add(j, "storm", x);
    }

    if (o->n_server_pids) {
        json_object *pids = json_object_new_array();
        int64_t cpu = 0, rb = 0, ra = 0, sch = 0, wt = 0;
        int cpu_ok = c->cpu_sampled, rss_ok = 1;
        for (int i = 0; i < o->n_server_pids; i++) {
            json_object_array_add(pids, json_object_new_int(o->server_pids[i]));
            if (c->cpu_start[i] < 0 || c->cpu_end[i] < 0)
                cpu_ok = 0;
            cpu += c->cpu_end[i] - c->cpu_start[i];
            sch += c->sched_end[i] - c->sched_start[i];
            wt += c->wait_end[i] - c->wait_start[i];
            if (c->rss_before[i] < 0 || c->rss_after[i] < 0)
                rss_ok = 0;
            rb += c->rss_before[i];
            ra += c->rss_after[i];
        }
        x = json_object_new_object();
        json_object_object_add(x, "pids", pids);
        if (rss_ok) {
            json_object_object_add(x, "rss_kb_before", json_object_new_int64(rb));
            json_object_object_add(x, "rss_kb_connected", json_object_new_int64(ra));
            json_object_object_add(x, "rss_kb_per_conn",
                                   json_fixed(t->connected ? (double)(ra - rb) / (double)t->connected : 0, 3));
        }
        if (c->t_idle_end && o->idle > 0) {
            /* what holding the connections costs: keepalive and timers,
             * with nothing published */
            int64_t icpu = 0;
            int ok = 1;
            for (int i = 0; i < o->n_server_pids; i++) {
                if (c->idle_cpu_start[i] < 0 || c->idle_cpu_end[i] < 0)
                    ok = 0;
                icpu += c->idle_cpu_end[i] - c->idle_cpu_start[i];
            }
            double iwall = secs(c->t_idle_end - c->t_connected);
            if (ok && iwall > 0) {
                json_object_object_add(x, "idle_cpu_s", json_fixed((double)icpu / 1e6, 3));
                json_object_object_add(x, "idle_window_s", json_fixed(iwall, 3));
                json_object_object_add(x, "idle_cpu_us_per_conn_s",
                                       json_fixed(t->connected ? (double)icpu / iwall / (double)t->connected : 0, 3));
            }
        }
        if (c->conn_cpu_sampled) {
            int ok = 1;
            for (int i = 0; i < o->n_server_pids; i++)
                if (c->cpu_start[i] < 0 || c->cpu_end[i] < 0)
                    ok = 0;
            if (ok) {
                /* the connect phase: accept, upgrade, subscribe */
                json_object_object_add(x, "connect_cpu_s", json_fixed((double)cpu / 1e6, 3));
                json_object_object_add(x, "connect_window_s", json_fixed(secs(c->t_connected - c->t_start), 3));
                json_object_object_add(x, "sched_cpu_s", json_fixed((double)sch / 1e9, 4));
                json_object_object_add(x, "sched_wait_s", json_fixed((double)wt / 1e9, 4));
                json_object_object_add(x, "cpu_us_per_connect",
                                       json_fixed(t->connected ? (double)sch / 1e3 / (double)t->connected : 0, 3));
            }
        }
        if (c->storm_cpu) {
            /* the storm from the reconnect to caught up, or the close */
            json_object_object_add(x, "cpu_s", json_fixed((double)cpu / 1e6, 3));
            json_object_object_add(x, "sched_cpu_s", json_fixed((double)sch / 1e9, 4));
            json_object_object_add(x, "sched_wait_s", json_fixed((double)wt / 1e9, 4));
        }
        if (cpu_ok && c->t_pub_start) {
            double wall = secs(c->t_drain_end - c->t_pub_start);
            json_object_object_add(x, "cpu_s", json_fixed((double)cpu / 1e6, 3));
            json_object_object_add(x, "cpu_window_s", json_fixed(wall, 3));
            json_object_object_add(x, "cpu_pct", json_fixed(wall > 0 ? 100.0 * (double)cpu / 1e6 / wall : 0, 1));
            json_object_object_add(x, "cpu_us_per_delivery",
                                   json_fixed(t->deliveries ? (double)cpu / (double)t->deliveries : 0, 3));
            json_object_object_add(x, "sched_cpu_s", json_fixed((double)sch / 1e9, 4));
            /* runnable but not running: another process had the server's CPU */
            json_object_object_add(x, "sched_wait_s", json_fixed((double)wt / 1e9, 4));
            json_object_object_add(x, "sched_cpu_us_per_delivery",
                                   json_fixed(t->deliveries ? (double)sch / 1e3 / (double)t->deliveries : 0, 3));
            json_object_object_add(x, "cpu_us_per_message",
                                   json_fixed(sent ? (double)cpu / (double)sent : 0, 3));
        }
        json_object_object_add(j, "server", x);
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    x = json_object_new_object();
    json_object_object_add(x, "workers_cpu_user_s", json_fixed((double)t->cpu_user_us / 1e6, 3));
    json_object_object_add(x, "workers_cpu_sys_s", json_fixed((double)t->cpu_sys_us / 1e6, 3));
    json_object_object_add(x, "coordinator_cpu_s",
                           json_fixed((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                  (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6, 3));
    json_object_object_add(x, "workers_maxrss_kb_sum", ju(t->maxrss_kb));
    json_object_object_add(j, "bench", x);
    json_object_object_add(j, "seconds", json_fixed(secs(mono_ns() - c->t_start), 3));
    json_object_object_add(j, "timed_out", json_object_new_boolean(c->timed_out));
    /* more deliveries than expected is as wrong as fewer */
    int ok = !c->timed_out && t->failed == 0 && lost == 0 && t->deliveries <= t->expected &&
             t->dups == 0 && errors == 0 && sent == (uint64_t)o->messages;
    if (o->storm)
        ok = !c->timed_out && t->failed == 0 && lost == 0 && t->deliveries <= t->expected &&
             t->dups == 0 && c->storm_complete && c->storm_pub_errors == 0;
    else if (o->close_all)
        ok = !c->timed_out && t->failed == 0 && c->t_closed != 0;
    json_object_object_add(j, "ok", json_object_new_boolean(ok));
    printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    fflush(stdout);
    json_object_put(j);
    free(t);
    return ok;
}

static int run(bench_opts_t *o)
{
    coord_t *c = &C;
    struct event_config *cfg = event_config_new();
    /* timerfd: publish ticks below the millisecond of epoll_wait */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    c->o = o;
    c->fds_before = -1;
    c->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!c->base)
        return 1;
    c->t_start = mono_ns();
    o->t0_ns = c->t_start;
    sample_rss(c, c->rss_before);
    if (o->storm || o->close_all)
        c->fds_before = server_fds(c);
    if (o->connect_rate)
        sample_cpu(c, c->cpu_start);
    for (int i = 0; i < o->n_server_pids; i++)
        if (c->rss_before[i] < 0)
            say(o, "warning: cannot read /proc/%d", (int)o->server_pids[i]);
    say(o, "%ld %s connections to %s:%d%s from %d procs, %d source addresses", o->connections,
        o->transport == TR_WS ? "WebSocket" : "SSE", o->host, o->port, o->path, o->procs, o->sources);

    fflush(NULL);
    c->nw = o->procs;
    for (int i = 0; i < c->nw; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            perror("socketpair");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(sv[0]);
            for (int k = 0; k < i; k++)
                close(c->w[k].fd);
            /* a fresh process: drop the coordinator's loop, keep nothing */
            worker_main(o, i, sv[1]);
        }
        close(sv[1]);
        c->w[i].pid = pid;
        c->w[i].fd = sv[0];
        c->w[i].n = worker_share(o, i);
        c->w[i].in = evbuffer_new();
        evutil_make_socket_nonblocking(sv[0]);
        c->w[i].ev = event_new(c->base, sv[0], EV_READ | EV_PERSIST, ipc_cb, &c->w[i]);
        event_add(c->w[i].ev, NULL);
    }
    /* stop must not block on a worker: sends are tiny, the socket never fills */
    if (o->publish != PUB_NONE) {
        c->pub = pub_new(o, c->base, pub_done_cb, c);
        if (!c->pub)
            c->pub_failed = 1;
    }
    c->phase_ev = evtimer_new(c->base, phase_cb, c);
    c->timeout_ev = evtimer_new(c->base, timeout_cb, c);
    c->prog_ev = event_new(c->base, -1, EV_PERSIST, prog_cb, c);
    struct timeval tv = {(time_t)o->timeout, (suseconds_t)((o->timeout - (double)(long)o->timeout) * 1e6)};
    evtimer_add(c->timeout_ev, &tv);
    struct timeval one = {1, 0};
    if (!o->quiet)
        evtimer_add(c->prog_ev, &one);
    c->phase = PH_CONNECT;
    event_base_dispatch(c->base);

    int ok = report(c);
    for (int i = 0; i < c->nw; i++) {
        int status;
        if (waitpid(c->w[i].pid, &status, WNOHANG) == 0) {
            kill(c->w[i].pid, SIGKILL);
            waitpid(c->w[i].pid, &status, 0);
        }
    }
    pub_free(c->pub);
    if (c->redis)
        redisFree(c->redis);
    return c->timed_out ? 3 : c->pub_failed ? 4 : ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    static bench_opts_t o;
    signal(SIGPIPE, SIG_IGN);
    parse_opts(&o, argc, argv);
    if (o.calibrate)
        return calibrate_main(&o);
    return run(&o);
}
