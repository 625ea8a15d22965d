/* pg_metrics.h - the node's counters and gauges, rendered as Prometheus text
 * (SPEC §5). One instance per process; only the loop thread touches it. */
#ifndef PG_METRICS_H
#define PG_METRICS_H

#include <stdint.h>
#include "pg_buf.h"

enum { PG_TR_WS = 0, PG_TR_SSE = 1, PG_TR_COUNT = 2 };

/* publish answers counted by code; anything else lands in "other" */
enum { PG_PUB_200, PG_PUB_400, PG_PUB_401, PG_PUB_403, PG_PUB_405, PG_PUB_413,
       PG_PUB_503, PG_PUB_OTHER, PG_PUB_COUNT };

/* the session's own close codes (SPEC §7), counted */
enum { PG_CLOSE_4000, PG_CLOSE_4001, PG_CLOSE_4003, PG_CLOSE_4029, PG_CLOSE_COUNT };

#define PG_LAT_NBUCKETS 14  /* bounds in pg_metrics.c: 100us .. 2.5s */

typedef struct pg_metrics {
    int64_t  connections[PG_TR_COUNT];          /* gauge */
    uint64_t messages_received_total;           /* pub/sub messages from Redis */
    uint64_t messages_dropped_total;            /* over --max-message-bytes */
    uint64_t deliveries_total[PG_TR_COUNT];     /* frames handed to a socket */
    uint64_t slow_consumer_disconnects_total;
    uint64_t publish_requests[PG_PUB_COUNT];
    uint64_t connections_rejected_total;        /* 503 past --max-connections */
    int      redis_connected;                   /* gauge 0/1 */
    uint64_t redis_reconnects_total;
    int64_t  subscribed_channels;               /* gauge */
    uint64_t control_orders_total;              /* orders applied (SPEC §7) */
    uint64_t control_orders_invalid_total;      /* orders that did not parse */
    uint64_t session_closes[PG_CLOSE_COUNT];    /* by PG_CLOSE_* */
    uint64_t key_reloads_ok, key_reloads_failed;
    uint64_t history_reads_total;               /* history reads issued to Redis */
    uint64_t history_reads_coalesced_total;     /* channel recoveries served by another's read */
    uint64_t client_sends_sent;                 /* "send" answered sent (SPEC 9) */
    uint64_t client_sends_refused;              /* "send" answered error */
    uint64_t events_dropped_total;              /* events not written: link down or refused */
    uint64_t presence_updates_total;            /* presence_update FCALLs (batches) */
    uint64_t lat_buckets[PG_LAT_NBUCKETS + 1];  /* last = +Inf; non-cumulative */
    uint64_t lat_count;
    uint64_t lat_sum_ns;
} pg_metrics_t;

/* Count one /api/publish answer. */
void pg_metrics_publish(pg_metrics_t *m, int http_code);
/* Observe one Redis-arrival -> socket-write time. */
void pg_metrics_latency(pg_metrics_t *m, uint64_t ns);
/* Append the Prometheus exposition (HELP, TYPE, samples) to out:
 * pushgate_connections{transport="ws|sse"}, pushgate_messages_received_total,
 * pushgate_messages_dropped_total, pushgate_deliveries_total{transport},
 * pushgate_slow_consumer_disconnects_total, pushgate_publish_requests_total{code},
 * pushgate_connections_rejected_total, pushgate_redis_connected,
 * pushgate_redis_reconnects_total, pushgate_subscribed_channels,
 * pushgate_control_orders_total{result="applied|invalid"},
 * pushgate_session_closes_total{code="4000|4001|4003|4029"},
 * pushgate_key_reloads_total{result="ok|failed"},
 * pushgate_history_reads_total, pushgate_history_reads_coalesced_total,
 * pushgate_client_sends_total{result="sent|refused"},
 * pushgate_events_dropped_total, pushgate_presence_updates_total (each of
 * these five only once it is not 0),
 * pushgate_delivery_latency_seconds (histogram). node labels nothing: the
 * scraper adds instance. Returns 0 or -1 on out-of-memory. */
int pg_metrics_render(const pg_metrics_t *m, pg_buf_t *out);
/* The same for a node of several workers (SPEC §11): each family's samples
 * for total first, then the same samples of each of the n workers with the
 * label worker="<i>" (i from 1) added, so every family stays together. */
int pg_metrics_render_workers(const pg_metrics_t *total, const pg_metrics_t *workers,
                              size_t n, pg_buf_t *out);
/* dst += src, field by field (gauges too: a total of connections is their
 * sum, of redis_connected the number of workers connected). */
void pg_metrics_add(pg_metrics_t *dst, const pg_metrics_t *src);

#endif
