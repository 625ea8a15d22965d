/* broker.h - the topology seam (SPEC §10): what the layers above the
 * broker ask of Redis (subscribe a channel, publish, read history, control
 * orders, the revocations, readiness) goes either to the two links of one
 * Redis or Sentinel (subscriber.c, commands.c) or to a Redis Cluster
 * (cbroker.c). The choice is made once, at start, by setting pg_broker:
 * NULL is one Redis, and the public functions of subscriber.h and
 * commands.h forward to the table otherwise, so their callers (hub wiring,
 * recovery, control, api, presence, events) stay topology-blind. */
#ifndef PG_BROKER_H
#define PG_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "commands.h"

typedef struct pg_broker_ops {
    /* the subscriber side (subscriber.h) */
    int  (*sub_ready)(void);
    void (*want)(const char *name, int on);
    int  (*has)(const char *name);
    /* the command side (commands.h) */
    int  (*cmd_ready)(void);
    int  (*publish)(const char *channel, const char *payload, size_t len,
                    pg_publish_cb cb, void *arg);
    int  (*history)(const char *channel, uint64_t since, pg_history_cb cb, void *arg);
    int  (*raw_publish)(const char *channel, const char *payload, size_t len,
                        pg_raw_cb cb, void *arg);
    int  (*fcall_int)(const char *fn, int argc, const char **argv, const size_t *lens,
                      pg_fcall_int_cb cb, void *arg);
    int  (*hgetall)(const char *key, pg_hash_cb cb, void *arg);
    int  (*argv)(int argc, const char **argv, const size_t *lens, pg_reply_cb cb, void *arg);
    /* argv on the master owning key's slot (key: the full Redis name, as
     * in argv): what presence and events write per channel or stream */
    int  (*keyed_argv)(const char *key, size_t keylen, int argc, const char **argv,
                       const size_t *lens, pg_reply_cb cb, void *arg);
} pg_broker_ops_t;

/* NULL (one Redis, Sentinel) or the cluster broker's table; set once by
 * the node before anything is subscribed. Defined in commands.c. */
extern const pg_broker_ops_t *pg_broker;

#endif
