/* main.c - options, the loop, signals, drain and exit code. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "node.h"
#include "server.h"
#include "workers.h"
#include "listener.h"
#include "pg_log.h"
#include "pg_util.h"

pg_node_t pg_node;

static uv_loop_t  loop;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t drain_timer, drain_poll;

/* The Redis function names (SPEC §3): the prefix with every character other
 * than a letter or digit turned into '_', then "publish" / "history". Made
 * once here; the library template gets the same prefix (redis_cmd.c). The
 * option table caps --prefix at 64 characters, so nothing is cut. */
static void function_names(void)
{
    char *fn = pg_node.fn_prefix;
    size_t i, n = strlen(pg_node.cfg.prefix);
    for (i = 0; i < n && i < sizeof(pg_node.fn_prefix) - 1; i++) {
        char c = pg_node.cfg.prefix[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        fn[i] = alnum ? c : '_';
    }
    fn[i] = '\0';
    snprintf(pg_node.fn_publish, sizeof(pg_node.fn_publish), "%spublish", fn);
    snprintf(pg_node.fn_history, sizeof(pg_node.fn_history), "%shistory", fn);
    snprintf(pg_node.fn_disconnect, sizeof(pg_node.fn_disconnect), "%sdisconnect", fn);
    snprintf(pg_node.fn_subscribe, sizeof(pg_node.fn_subscribe), "%ssubscribe", fn);
    snprintf(pg_node.fn_unsubscribe, sizeof(pg_node.fn_unsubscribe), "%sunsubscribe", fn);
}

static long derive_max_connections(void)
{
    struct rlimit rl;
    if (pg_node.cfg.max_connections > 0)
        return pg_node.cfg.max_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 10000;
    /* Keep descriptors for the listener, Redis, the loop and a few HTTP
     * requests beyond the limit so the 503 can still be sent. */
    long n = (long)rl.rlim_cur - 64;
    return n > 16 ? n : 16;
}

static void shutdown_now(void)
{
    if (pg_node.stopping)
        return;
    pg_node.stopping = 1;
    pg_log(PG_LOG_INFO, "stopping");
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_hup);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_timer_stop(&drain_timer);
    uv_close((uv_handle_t *)&drain_timer, NULL);
    uv_timer_stop(&drain_poll);
    uv_close((uv_handle_t *)&drain_poll, NULL);
    pg_node_stop();
}

static void drain_timeout_cb(uv_timer_t *t)
{
    (void)t;
    pg_log(PG_LOG_WARN, "drain timeout: closing %zu connections that did not finish",
           pg_conn_count());
    shutdown_now();
}

static void drain_poll_cb(uv_timer_t *t)
{
    (void)t;
    if (pg_conn_count() == 0)
        shutdown_now();
}

static void hup_cb(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    pg_node_reload_keys();
}

static void signal_cb(uv_signal_t *h, int signum)
{
    (void)h;
    if (pg_node.draining) {
        pg_log(PG_LOG_WARN, "second signal: stopping without waiting");
        shutdown_now();
        return;
    }
    pg_log(PG_LOG_INFO, "signal %d: draining %zu connections (up to %u s)", signum,
           pg_conn_count(), pg_node.cfg.drain_timeout);
    pg_node.draining = 1;
    /* A worker stops accepting at once, so that the port's other workers
     * (SO_REUSEPORT) get the new connections; a lone node keeps its port to
     * answer 503 and /readyz for its load balancer. */
    if (pg_node.nworkers)
        pg_listener_stop();
    pg_workers_publish();
    pg_server_drain();
    uv_timer_start(&drain_timer, drain_timeout_cb, pg_node.cfg.drain_timeout * 1000ull, 0);
    uv_timer_start(&drain_poll, drain_poll_cb, 0, 20);
}

int main(int argc, char **argv)
{
    extern char **environ;
    char err[512];
    int rc = 0;
    pg_config_t *cfg = &pg_node.cfg;

    switch (pg_opt_parse(cfg, argc, argv, environ, err, sizeof(err))) {
    case PG_OPT_HELP:
        pg_opt_help(stdout);
        pg_config_free(cfg);
        return 0;
    case PG_OPT_VERSION:
        printf("pushgate %s\n", PG_VERSION);
        pg_config_free(cfg);
        return 0;
    case PG_OPT_FAIL:
        fprintf(stderr, "pushgate: %s\n", err);
        pg_config_free(cfg);
        return 2;
    default:
        break;
    }
    pg_log_level = cfg->log_level;
    pg_log_json = cfg->log_json;
    pg_log_node = cfg->node_id;

    if (pg_keys_load(cfg, &pg_node.keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "pushgate: %s\n", err);
        pg_config_free(cfg);
        return 2;
    }
    /* --workers: from here on this is either the supervisor, which never
     * returns, or one of its workers, which runs as a node */
    unsigned nworkers = cfg->workers ? cfg->workers : pg_workers_auto();
    if (nworkers >= 2 && pg_workers_run(nworkers, &rc) == 0) {
        pg_keys_free(pg_node.keys);
        pg_config_free(cfg);
        return rc;
    }
    pg_node.max_connections = derive_max_connections();
    function_names();
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)(pg_wall_ms() ^ (uint64_t)getpid()));

    if (uv_loop_init(&loop) != 0) {
        pg_log(PG_LOG_ERROR, "cannot create the event loop");
        return 1;
    }
    pg_node.loop = &loop;
    if (pg_node_start() != 0) {
        pg_config_free(cfg);
        return 1;
    }
    pg_log(PG_LOG_INFO, "pushgate %s node=%s redis=%s:%d prefix=%s max_connections=%ld",
           PG_VERSION, cfg->node_id, cfg->redis.host, cfg->redis.port, cfg->prefix,
           pg_node.max_connections);
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_init(&loop, &sig_hup);
    uv_signal_start(&sig_term, signal_cb, SIGTERM);
    uv_signal_start(&sig_int, signal_cb, SIGINT);
    uv_signal_start(&sig_hup, hup_cb, SIGHUP);
    uv_timer_init(&loop, &drain_timer);
    uv_timer_init(&loop, &drain_poll);

    uv_run(&loop, UV_RUN_DEFAULT);

    /* The loop ran dry after pg_server_stop(): lws has closed its handles. */
    pg_server_destroy();
    uv_run(&loop, UV_RUN_DEFAULT);
    pg_node_free();
    if (uv_loop_close(&loop) != 0)
        pg_log(PG_LOG_WARN, "event loop closed with handles still open");
    pg_log(PG_LOG_INFO, "stopped");
    pg_config_free(cfg);
    return 0;
}
