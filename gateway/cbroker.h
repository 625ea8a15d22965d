/* cbroker.h - the broker over a Redis Cluster (SPEC §10, README "Redis
 * Cluster"): the cluster subscriber (cluster.h) in place of the subscriber
 * link and the router (router.h) in place of the command link, behind the
 * seam of broker.h. It maps pushgate names to cluster names (channel C is
 * <prefix>{C}; the orders' channel <prefix>{_control}, always subscribed;
 * the revocations <prefix>{_control}:revoked) and calls the same hooks the
 * subscriber link does, plus `resync` per channel whose subscription was
 * lost and is back. Single-threaded: the node's loop. */
#ifndef PG_CBROKER_H
#define PG_CBROKER_H

#include "subscriber.h"

/* Create the cluster subscriber and the router and install the table in
 * pg_broker, so channels wanted from now on are recorded. Before the hub
 * starts (broadcast is wanted at once). 0, or -1 (logged). */
int pg_cbroker_init(void);
/* Read the slot map and connect; hooks are copied, cmd_ready (may be NULL)
 * runs each time the cluster is ready again (the router can reach every
 * slot: reload what a command link reloads). 0 or -1. */
int pg_cbroker_start(const pg_subscriber_hooks_t *hooks, void (*cmd_ready)(void));
/* Stop: no call is taken from now on, and nothing more is delivered. The
 * router's links stay until the calls already made are answered (up to
 * STOP_LINGER_MS), so that a stopping node's last writes (its presence
 * removed, disconnect events) are not dropped with the links; then every
 * link closes and calls still in flight are answered as failed. */
void pg_cbroker_stop(void);

#endif
