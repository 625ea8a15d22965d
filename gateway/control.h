/* control.h - the backend's orders (SPEC §7) as they reach this node, and
 * the node's copy of the revocations.
 *
 * Orders arrive on <prefix>_control through the subscriber; control.c
 * parses them, applies a revocation to its copy, and hands the order to the
 * hook the node registered (the session layer acts on connections). The
 * copy of <prefix>revoked is loaded with HGETALL whenever the command link
 * becomes ready (start, and after every reconnect, when orders may have
 * been missed), so a connect never waits for Redis to check a token. */
#ifndef PG_CONTROL_H
#define PG_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "pg_order.h"

typedef struct pg_control_hooks {
    void (*order)(const pg_order_t *o);   /* apply o to this node's connections */
    void (*reloaded)(void);               /* the revocations were reloaded */
} pg_control_hooks_t;

void pg_control_init(const pg_control_hooks_t *hooks);
void pg_control_free(void);
/* An order's payload from the subscriber. Malformed ones are logged and
 * counted, never applied. */
void pg_control_order(const char *payload, size_t len);
/* The command link is ready: reload the revocations. */
void pg_control_reload(void);
/* 1 once the first reload has answered (loaded, or failed and logged):
 * until then a revoked token would be accepted and only closed after the
 * load, so the node does not call itself ready (/readyz). */
int pg_control_loaded(void);
/* 1 if a token of user issued at iat (0: no iat) is revoked at now (unix
 * seconds): a revocation at or after iat that has not lapsed. */
int pg_control_revoked(const char *user, int64_t iat, int64_t now);

#endif
