/* pg_metrics.c - counters and gauges rendered as Prometheus text 0.0.4. */
#include "pg_metrics.h"

#include <stdio.h>

/* Upper bounds of the latency buckets: 100us .. 2.5s in a 1-2.5-5 series.
 * A delivery on a healthy node takes well under a millisecond, so the low
 * end is fine-grained; multi-second values mean a slow consumer. */
static const struct {
    uint64_t    ns;
    const char *le;
} bounds[PG_LAT_NBUCKETS] = {
    { 100000, "0.0001" },   { 250000, "0.00025" },   { 500000, "0.0005" },
    { 1000000, "0.001" },   { 2500000, "0.0025" },   { 5000000, "0.005" },
    { 10000000, "0.01" },   { 25000000, "0.025" },   { 50000000, "0.05" },
    { 100000000, "0.1" },   { 250000000, "0.25" },   { 500000000, "0.5" },
    { 1000000000, "1" },    { 2500000000u, "2.5" },
};

static const int pub_codes[PG_PUB_COUNT] = { 200, 400, 401, 403, 405, 413, 503, 0 };
static const char *const tr_names[PG_TR_COUNT] = { "ws", "sse" };

void pg_metrics_publish(pg_metrics_t *m, int http_code)
{
    int i;
    for (i = 0; i < PG_PUB_OTHER; i++)
        if (pub_codes[i] == http_code)
            break;
    m->publish_requests[i]++;
}

void pg_metrics_latency(pg_metrics_t *m, uint64_t ns)
{
    int i;
    for (i = 0; i < PG_LAT_NBUCKETS; i++)
        if (ns <= bounds[i].ns)
            break;
    m->lat_buckets[i]++;
    m->lat_count++;
    m->lat_sum_ns += ns;
}

static int head(pg_buf_t *o, const char *name, const char *type, const char *help)
{
    return pg_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The label set of a sample: its own labels (`own`, e.g. transport="ws",
 * or "") and, for a worker's series, worker="<w>" (w 0: none). */
static const char *labels(char *buf, size_t len, const char *own, unsigned w)
{
    if (!*own && !w)
        return "";
    if (!w)
        snprintf(buf, len, "{%s}", own);
    else
        snprintf(buf, len, "{%s%sworker=\"%u\"}", own, *own ? "," : "", w);
    return buf;
}

enum { F_CONNS, F_RECEIVED, F_DROPPED, F_DELIVERIES, F_SLOW, F_PUBLISH, F_REJECTED,
       F_REDIS_UP, F_RECONNECTS, F_CHANNELS, F_ORDERS, F_CLOSES, F_RELOADS,
       F_HREADS, F_HCOALESCED, F_SENDS, F_EVDROPPED, F_PRESENCE, F_LATENCY,
       F_COUNT };

static const struct { const char *name, *type, *help; } fams[F_COUNT] = {
    [F_CONNS] = { "pushgate_connections", "gauge", "Open client connections by transport." },
    [F_RECEIVED] = { "pushgate_messages_received_total", "counter", "Messages received from Redis pub/sub." },
    [F_DROPPED] = { "pushgate_messages_dropped_total", "counter", "Messages dropped for exceeding --max-message-bytes." },
    [F_DELIVERIES] = { "pushgate_deliveries_total", "counter", "Frames handed to client sockets by transport." },
    [F_SLOW] = { "pushgate_slow_consumer_disconnects_total", "counter",
                 "Clients closed because their queue passed --queue-limit-bytes." },
    [F_PUBLISH] = { "pushgate_publish_requests_total", "counter", "POST /api/publish answers by HTTP status." },
    [F_REJECTED] = { "pushgate_connections_rejected_total", "counter",
                     "Connections refused with 503 past --max-connections." },
    [F_REDIS_UP] = { "pushgate_redis_connected", "gauge", "1 while the Redis subscriber link is up." },
    [F_RECONNECTS] = { "pushgate_redis_reconnects_total", "counter", "Reconnections of the Redis links." },
    [F_CHANNELS] = { "pushgate_subscribed_channels", "gauge", "Redis channels this node is subscribed to." },
    [F_ORDERS] = { "pushgate_control_orders_total", "counter",
                   "Backend orders received on the control channel (SPEC 7)." },
    [F_CLOSES] = { "pushgate_session_closes_total", "counter",
                   "Connections closed by the session with its own codes: 4000/4003 backend, 4001 expired, 4029 per-user limit." },
    [F_RELOADS] = { "pushgate_key_reloads_total", "counter", "Key reloads on SIGHUP by result." },
    [F_HREADS] = { "pushgate_history_reads_total", "counter",
                   "History reads issued to Redis for resuming connections and replays." },
    [F_HCOALESCED] = { "pushgate_history_reads_coalesced_total", "counter",
                       "Channel recoveries served by a read another connection's recovery issued, or from its result kept in memory." },
    [F_SENDS] = { "pushgate_client_sends_total", "counter",
                  "WebSocket send commands by answer: sent (stored in the events stream) or refused (SPEC 9)." },
    [F_EVDROPPED] = { "pushgate_events_dropped_total", "counter",
                      "Events not written to the events stream: Redis link down or the write refused." },
    [F_PRESENCE] = { "pushgate_presence_updates_total", "counter",
                     "Presence batches written (one FCALL per loop iteration with changes, SPEC 8)." },
    [F_LATENCY] = { "pushgate_delivery_latency_seconds", "histogram",
                    "Time from arrival from Redis to the socket write." },
};

/* One family's samples for one metrics set (w 0: the node's own or the
 * total; w > 0: worker w's series). */
static int samples(pg_buf_t *o, int f, const pg_metrics_t *m, unsigned w)
{
    static const int close_codes[PG_CLOSE_COUNT] = { 4000, 4001, 4003, 4029 };
    const char *n = fams[f].name;
    char lb[96], own[48];
    int rc = 0;

    switch (f) {
    case F_CONNS:
    case F_DELIVERIES:
        for (int t = 0; t < PG_TR_COUNT; t++) {
            snprintf(own, sizeof(own), "transport=\"%s\"", tr_names[t]);
            if (f == F_CONNS)
                rc |= pg_buf_printf(o, "%s%s %lld\n", n, labels(lb, sizeof(lb), own, w),
                                    (long long)m->connections[t]);
            else
                rc |= pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), own, w),
                                    (unsigned long long)m->deliveries_total[t]);
        }
        return rc;
    case F_PUBLISH:
        for (int i = 0; i < PG_PUB_COUNT; i++) {
            if (i == PG_PUB_OTHER)
                snprintf(own, sizeof(own), "code=\"other\"");
            else
                snprintf(own, sizeof(own), "code=\"%d\"", pub_codes[i]);
            rc |= pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), own, w),
                                (unsigned long long)m->publish_requests[i]);
        }
        return rc;
    case F_SENDS:
        rc |= pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), "result=\"sent\"", w),
                            (unsigned long long)m->client_sends_sent);
        rc |= pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), "result=\"refused\"", w),
                            (unsigned long long)m->client_sends_refused);
        return rc;
    case F_ORDERS:
    case F_RELOADS: {
        uint64_t a = f == F_ORDERS ? m->control_orders_total : m->key_reloads_ok;
        uint64_t b = f == F_ORDERS ? m->control_orders_invalid_total : m->key_reloads_failed;
        rc |= pg_buf_printf(o, "%s%s %llu\n", n,
                            labels(lb, sizeof(lb), f == F_ORDERS ? "result=\"applied\"" : "result=\"ok\"", w),
                            (unsigned long long)a);
        rc |= pg_buf_printf(o, "%s%s %llu\n", n,
                            labels(lb, sizeof(lb), f == F_ORDERS ? "result=\"invalid\"" : "result=\"failed\"", w),
                            (unsigned long long)b);
        return rc;
    }
    case F_CLOSES:
        for (int i = 0; i < PG_CLOSE_COUNT; i++) {
            snprintf(own, sizeof(own), "code=\"%d\"", close_codes[i]);
            rc |= pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), own, w),
                                (unsigned long long)m->session_closes[i]);
        }
        return rc;
    case F_REDIS_UP:
        /* a total is how many workers are connected */
        return pg_buf_printf(o, "%s%s %d\n", n, labels(lb, sizeof(lb), "", w), m->redis_connected);
    case F_CHANNELS:
        return pg_buf_printf(o, "%s%s %lld\n", n, labels(lb, sizeof(lb), "", w),
                             (long long)m->subscribed_channels);
    case F_LATENCY: {
        uint64_t cum = 0;
        for (int i = 0; i <= PG_LAT_NBUCKETS; i++) {
            cum += m->lat_buckets[i];
            snprintf(own, sizeof(own), "le=\"%s\"", i < PG_LAT_NBUCKETS ? bounds[i].le : "+Inf");
            rc |= pg_buf_printf(o, "%s_bucket%s %llu\n", n, labels(lb, sizeof(lb), own, w),
                                (unsigned long long)cum);
        }
        rc |= pg_buf_printf(o, "%s_sum%s %llu.%09llu\n", n, labels(lb, sizeof(lb), "", w),
                            (unsigned long long)(m->lat_sum_ns / 1000000000u),
                            (unsigned long long)(m->lat_sum_ns % 1000000000u));
        rc |= pg_buf_printf(o, "%s_count%s %llu\n", n, labels(lb, sizeof(lb), "", w),
                            (unsigned long long)m->lat_count);
        return rc;
    }
    default: {
        uint64_t v = f == F_RECEIVED ? m->messages_received_total
                   : f == F_DROPPED ? m->messages_dropped_total
                   : f == F_SLOW ? m->slow_consumer_disconnects_total
                   : f == F_REJECTED ? m->connections_rejected_total
                   : f == F_HREADS ? m->history_reads_total
                   : f == F_HCOALESCED ? m->history_reads_coalesced_total
                   : f == F_EVDROPPED ? m->events_dropped_total
                   : f == F_PRESENCE ? m->presence_updates_total
                   : m->redis_reconnects_total;
        return pg_buf_printf(o, "%s%s %llu\n", n, labels(lb, sizeof(lb), "", w),
                             (unsigned long long)v);
    }
    }
}

int pg_metrics_render(const pg_metrics_t *m, pg_buf_t *o)
{
    return pg_metrics_render_workers(m, NULL, 0, o);
}

int pg_metrics_render_workers(const pg_metrics_t *total, const pg_metrics_t *workers,
                              size_t n, pg_buf_t *o)
{
    int rc = 0;
    for (int f = 0; f < F_COUNT; f++) {
        rc |= head(o, fams[f].name, fams[f].type, fams[f].help);
        rc |= samples(o, f, total, 0);
        for (size_t i = 0; i < n; i++)
            rc |= samples(o, f, &workers[i], (unsigned)i + 1);
    }
    return rc ? -1 : 0;
}

void pg_metrics_add(pg_metrics_t *dst, const pg_metrics_t *src)
{
    for (int t = 0; t < PG_TR_COUNT; t++) {
        dst->connections[t] += src->connections[t];
        dst->deliveries_total[t] += src->deliveries_total[t];
    }
    dst->messages_received_total += src->messages_received_total;
    dst->messages_dropped_total += src->messages_dropped_total;
    dst->slow_consumer_disconnects_total += src->slow_consumer_disconnects_total;
    for (int i = 0; i < PG_PUB_COUNT; i++)
        dst->publish_requests[i] += src->publish_requests[i];
    dst->connections_rejected_total += src->connections_rejected_total;
    dst->redis_connected += src->redis_connected;
    dst->redis_reconnects_total += src->redis_reconnects_total;
    dst->subscribed_channels += src->subscribed_channels;
    dst->control_orders_total += src->control_orders_total;
    dst->control_orders_invalid_total += src->control_orders_invalid_total;
    for (int i = 0; i < PG_CLOSE_COUNT; i++)
        dst->session_closes[i] += src->session_closes[i];
    dst->key_reloads_ok += src->key_reloads_ok;
    dst->key_reloads_failed += src->key_reloads_failed;
    dst->history_reads_total += src->history_reads_total;
    dst->history_reads_coalesced_total += src->history_reads_coalesced_total;
    dst->client_sends_sent += src->client_sends_sent;
    dst->client_sends_refused += src->client_sends_refused;
    dst->events_dropped_total += src->events_dropped_total;
    dst->presence_updates_total += src->presence_updates_total;
    for (int i = 0; i <= PG_LAT_NBUCKETS; i++)
        dst->lat_buckets[i] += src->lat_buckets[i];
    dst->lat_count += src->lat_count;
    dst->lat_sum_ns += src->lat_sum_ns;
}
