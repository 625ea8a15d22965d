/* shard_probe.c - gateway/shard.c and gateway/topology.c driven line by line,
 * for test_cluster_link.py against a real Redis Cluster.
 *
 *   pg-shard-probe <host> <port> [<password>]
 *
 * Connects a pg_shard_t to host:port at once. Reads commands on stdin, one
 * a line:
 *   sub <channel>       pg_shard_ssubscribe
 *   unsub <channel>     pg_shard_sunsubscribe
 *   connect             pg_shard_connect again (after a down)
 *   slot <key>          pg_slot_of_key             -> "slot <key> <n>"
 *   owner <slot>        CLUSTER SLOTS (a blocking side connection to
 *                       host:port) through pg_topology_parse_slots
 *                       -> "owner <slot> <host>:<port> complete=<0|1>"
 *   quit                pg_shard_free, then exit 0 once the loop is empty
 * and writes what the link reports on stdout, one a line:
 *   up | down <why> | subscribed <ch> | unsubscribed <ch> asked|pushed |
 *   msg <ch> <payload> | error <text>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "pg_slot.h"
#include "shard.h"
#include "topology.h"

static uv_loop_t *loop;
static uv_pipe_t in;
static pg_shard_t *shard;
static char line[70000];
static size_t line_len;
static const char *host;
static int port;

static void on_up(pg_shard_t *s, void *ud)
{
    (void)s; (void)ud;
    printf("up\n");
}

static void on_down(pg_shard_t *s, void *ud, const char *why)
{
    (void)s; (void)ud;
    printf("down %s\n", why);
}

static void on_message(pg_shard_t *s, void *ud, const char *ch, size_t clen,
                       const char *p, size_t plen)
{
    (void)s; (void)ud;
    printf("msg %.*s %.*s\n", (int)clen, ch, (int)plen, p);
}

static void on_subscribed(pg_shard_t *s, void *ud, const char *ch, size_t clen)
{
    (void)s; (void)ud;
    printf("subscribed %.*s\n", (int)clen, ch);
}

static void on_unsubscribed(pg_shard_t *s, void *ud, const char *ch, size_t clen, int asked)
{
    (void)s; (void)ud;
    printf("unsubscribed %.*s %s\n", (int)clen, ch, asked ? "asked" : "pushed");
}

static void on_error(pg_shard_t *s, void *ud, const char *text, size_t len)
{
    (void)s; (void)ud;
    printf("error %.*s\n", (int)len, text);
}

static void owner(const char *arg)
{
    unsigned slot = (unsigned)strtoul(arg, NULL, 10);
    redisContext *c = redisConnect(host, port);
    if (c == NULL || c->err) {
        printf("owner %u error connect\n", slot);
        redisFree(c);
        return;
    }
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    pg_slot_map_t m;
    pg_slot_map_init(&m);
    char err[256];
    if (pg_topology_parse_slots(r, host, &m, err, sizeof err) < 0) {
        printf("owner %u error %s\n", slot, err);
    } else {
        const pg_hostport_t *o = pg_slot_map_owner(&m, slot);
        if (o == NULL)
            printf("owner %u none complete=%d\n", slot, pg_slot_map_complete(&m));
        else
            printf("owner %u %s:%d complete=%d\n", slot, o->host, o->port,
                   pg_slot_map_complete(&m));
    }
    pg_slot_map_free(&m);
    freeReplyObject(r);
    redisFree(c);
}

static void command(char *cmd)
{
    char *arg = strchr(cmd, ' ');
    if (arg != NULL)
        *arg++ = '\0';
    else
        arg = "";
    int rc = 0;
    if (strcmp(cmd, "sub") == 0) {
        rc = pg_shard_ssubscribe(shard, arg, strlen(arg));
    } else if (strcmp(cmd, "unsub") == 0) {
        rc = pg_shard_sunsubscribe(shard, arg, strlen(arg));
    } else if (strcmp(cmd, "connect") == 0) {
        rc = pg_shard_connect(shard, 2000);
    } else if (strcmp(cmd, "slot") == 0) {
        printf("slot %s %u\n", arg, pg_slot_of_key(arg, strlen(arg)));
    } else if (strcmp(cmd, "owner") == 0) {
        owner(arg);
    } else if (strcmp(cmd, "quit") == 0) {
        pg_shard_free(shard);
        shard = NULL;
        uv_close((uv_handle_t *)&in, NULL);
    } else {
        printf("refused unknown command %s\n", cmd);
    }
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
    if (n < 0) { /* stdin closed: as quit */
        if (shard != NULL) {
            pg_shard_free(shard);
            shard = NULL;
            uv_close((uv_handle_t *)&in, NULL);
        }
        return;
    }
    for (ssize_t i = 0; i < n && shard != NULL; i++) {
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
    if (argc < 3) {
        fprintf(stderr, "usage: %s <host> <port> [<password>]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    host = argv[1];
    port = atoi(argv[2]);
    loop = uv_default_loop();
    pg_shard_cbs_t cbs = {
        .up = on_up, .down = on_down, .message = on_message,
        .subscribed = on_subscribed, .unsubscribed = on_unsubscribed, .error = on_error,
    };
    shard = pg_shard_new(loop, host, port, NULL, argc > 3 ? argv[3] : NULL, &cbs, NULL);
    if (shard == NULL || pg_shard_connect(shard, 2000) < 0) {
        fprintf(stderr, "cannot start the link\n");
        return 1;
    }
    uv_pipe_init(loop, &in, 0);
    uv_pipe_open(&in, 0);
    uv_read_start((uv_stream_t *)&in, alloc_cb, read_cb);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
