/* workers.h - one host, every core (SPEC §11): --workers N runs a
 * supervisor that forks N worker processes sharing --listen, restarts one
 * that dies outside a drain (with backoff, and gives up loudly on a crash
 * loop), forwards SIGTERM/SIGINT (drain all) and SIGHUP (reload all), and
 * exits 0 when every worker drained cleanly.
 *
 * Workers share one memory segment, mapped by the supervisor before it
 * forks: a slot per worker holding a copy of its metrics and its readiness,
 * written by the worker once a second (and when asked), so /metrics and
 * /readyz of any worker speak for all of them. The supervisor holds no
 * connections, no Redis link and no loop: a fork()ed child is the same
 * single-threaded node as ever. */
#ifndef PG_WORKERS_H
#define PG_WORKERS_H

#include <stdint.h>
#include <sys/types.h>

#include "pg_buf.h"
#include "pg_metrics.h"

typedef struct pg_worker_slot {
    uint32_t     seq;        /* odd while the worker writes (a seqlock) */
    int          ready;      /* its own /readyz */
    uint64_t     updated_ms; /* CLOCK_MONOTONIC of the last write */
    pid_t        pid;        /* set by the supervisor */
    pg_metrics_t metrics;
} pg_worker_slot_t;

/* How many workers `--workers auto` means: the CPUs in this process's
 * affinity mask. */
unsigned pg_workers_auto(void);
/* Become a supervisor of n (>= 2) workers. Returns in a worker with its
 * index (1..n): the caller then runs it as a node (its node id and
 * --reuse-port already set in pg_node.cfg). Returns 0 in the supervisor once
 * every worker has stopped, with *exit_code 0 after a clean drain, 1 after
 * a crash loop or a drain that did not end cleanly. */
unsigned pg_workers_run(unsigned n, int *exit_code);

/* In a worker (pg_node.nworkers > 0), on its loop: publish its slot now and
 * once a second from then on. 0 or -1. */
int pg_workers_start(void);
void pg_workers_stop(void);
/* Write this worker's slot now (metrics and readiness). */
void pg_workers_publish(void);
/* 1 when every worker's slot says ready and is fresh. */
int pg_workers_all_ready(void);
/* /metrics: the totals over every worker, then each worker's series with a
 * worker="<i>" label. 0 or -1 (out of memory). */
int pg_workers_render_metrics(pg_buf_t *out);

#endif
