/* cluster_probe.c - gateway/cluster.c and gateway/router.c driven line by
 * line, for test_cluster_subscriber.py and test_cluster_router.py against a
 * real Redis Cluster.
 *
 *   pg-cluster-probe <refresh ms> <library file | -> <host:port>...
 *
 * $PG_PROBE_USER and $PG_PROBE_PASSWORD, when set, are the data nodes' ACL
 * user and password (not on the command line, where ps shows them).
 *
 * Starts a pg_cluster_t on those seeds and a pg_router_t on its map that
 * loads the library file (if any) on every master. Commands on stdin, one a
 * line (words separated by one space):
 *   sub <channel> | unsub <channel> | stats | quit
 *   call <tag> <key> <word>...   pg_router_call(key, words)
 * Reports on stdout, one a line:
 *   msg <channel> <payload> | subscribed <channel> resync=<0|1> |
 *   ready <0|1> | stats channels=<n> links=<n> pending=<n> |
 *   reply <tag> <str|int|err|nil|arr> <text> | reply <tag> none <why> |
 *   refused <command>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "pg_log.h"
#include "router.h"

static uv_pipe_t in;
static pg_cluster_t *cl;
static pg_router_t *router;
static char line[70000];
static size_t line_len;

static void on_message(void *ud, const char *ch, size_t clen, const char *p, size_t plen)
{
    (void)ud;
    printf("msg %.*s %.*s\n", (int)clen, ch, (int)plen, p);
}

static void on_subscribed(void *ud, const char *ch, size_t clen, int resync)
{
    (void)ud;
    printf("subscribed %.*s resync=%d\n", (int)clen, ch, resync);
}

static void on_ready(void *ud, int ready)
{
    (void)ud;
    printf("ready %d\n", ready);
}

static void replied(void *arg, const struct redisReply *reply, const char *err)
{
    char *tag = arg;
    const redisReply *r = (const redisReply *)reply;
    if (r == NULL)
        printf("reply %s none %s\n", tag, err);
    else if (r->type == REDIS_REPLY_INTEGER)
        printf("reply %s int %lld\n", tag, r->integer);
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        printf("reply %s str %.*s\n", tag, (int)r->len, r->str);
    else if (r->type == REDIS_REPLY_ERROR)
        printf("reply %s err %.*s\n", tag, (int)r->len, r->str);
    else if (r->type == REDIS_REPLY_ARRAY)
        printf("reply %s arr %zu\n", tag, r->elements);
    else
        printf("reply %s nil -\n", tag);
    free(tag);
}

/* call <tag> <key> <word>... */
static int call(char *args)
{
    const char *argv[64];
    size_t argvlen[64];
    int argc = 0;
    char *tag = strtok(args, " "), *key = strtok(NULL, " ");
    if (tag == NULL || key == NULL)
        return -1;
    for (char *w = strtok(NULL, " "); w != NULL && argc < 64; w = strtok(NULL, " ")) {
        argv[argc] = w;
        argvlen[argc++] = strlen(w);
    }
    char *t = strdup(tag);
    if (t == NULL || pg_router_call(router, key, strlen(key), argc, argv, argvlen, replied, t) < 0) {
        free(t);
        return -1;
    }
    return 0;
}

static void stop(void)
{
    pg_router_free(router);
    router = NULL;
    pg_cluster_free(cl);
    cl = NULL;
    uv_close((uv_handle_t *)&in, NULL);
}

static void command(char *cmd)
{
    char *arg = strchr(cmd, ' ');
    if (arg != NULL)
        *arg++ = '\0';
    else
        arg = "";
    int rc = 0;
    if (strcmp(cmd, "sub") == 0)
        rc = pg_cluster_subscribe(cl, arg, strlen(arg));
    else if (strcmp(cmd, "unsub") == 0)
        rc = pg_cluster_unsubscribe(cl, arg, strlen(arg));
    else if (strcmp(cmd, "stats") == 0)
        printf("stats channels=%zu links=%zu pending=%zu\n", pg_cluster_channels(cl),
               pg_cluster_links(cl), pg_router_pending(router));
    else if (strcmp(cmd, "call") == 0)
        rc = call(arg);
    else if (strcmp(cmd, "quit") == 0)
        stop();
    else
        rc = -1;
    if (rc < 0)
        printf("refused %s %s\n", cmd, arg);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char chunk[65536];
    (void)h; (void)suggested;
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)st;
    if (n < 0) {
        if (cl != NULL)
            stop();
        return;
    }
    for (ssize_t i = 0; i < n && cl != NULL; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            line[line_len] = '\0';
            command(line);
            line_len = 0;
        } else if (line_len + 1 < sizeof line) {
            line[line_len++] = ch;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s <refresh ms> <library file | -> <host:port>...\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pg_log_level = PG_LOG_INFO;
    char *lib = NULL;
    size_t lib_len = 0;
    if (strcmp(argv[2], "-") != 0) {
        FILE *f = fopen(argv[2], "rb");
        if (f == NULL)
            return 2;
        lib = malloc(1 << 20);
        lib_len = lib ? fread(lib, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
        if (lib == NULL)
            return 1;
    }
    int nseeds = argc - 3;
    pg_hostport_t *seeds = calloc((size_t)nseeds, sizeof(*seeds));
    if (seeds == NULL)
        return 1;
    for (int i = 0; i < nseeds; i++) {
        const char *a = argv[i + 3], *colon = strrchr(a, ':');
        if (colon == NULL || (size_t)(colon - a) >= sizeof seeds[i].host)
            return 2;
        memcpy(seeds[i].host, a, (size_t)(colon - a));
        seeds[i].port = atoi(colon + 1);
    }
    uv_loop_t *loop = uv_default_loop();
    pg_cluster_cfg_t cfg = {
        .seeds = seeds, .nseeds = nseeds, .timeout_ms = 1000,
        .user = getenv("PG_PROBE_USER"), .password = getenv("PG_PROBE_PASSWORD"),
        .refresh_ms = (unsigned)atoi(argv[1]), .backoff_base_ms = 50, .backoff_cap_ms = 500,
    };
    pg_cluster_cbs_t cbs = { .message = on_message, .subscribed = on_subscribed,
                             .ready = on_ready };
    cl = pg_cluster_new(loop, &cfg, &cbs, NULL);
    free(seeds);
    pg_router_cfg_t rcfg = { .timeout_ms = 1000, .library = lib, .library_len = lib_len,
                             .user = cfg.user, .password = cfg.password };
    router = cl ? pg_router_new(loop, cl, &rcfg) : NULL;
    free(lib);
    if (router == NULL || pg_cluster_start(cl) < 0) {
        fprintf(stderr, "cannot start the cluster subscriber\n");
        return 1;
    }
    uv_pipe_init(loop, &in, 0);
    uv_pipe_open(&in, 0);
    uv_read_start((uv_stream_t *)&in, alloc_cb, read_cb);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
