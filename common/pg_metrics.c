/* pg_metrics.c - counters and gauges rendered as Prometheus text 0.0.4. */
#include "pg_metrics.h"

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

static int scalar(pg_buf_t *o, const char *name, const char *type, const char *help,
                  unsigned long long v)
{
    if (head(o, name, type, help) < 0)
        return -1;
    return pg_buf_printf(o, "%s %llu\n", name, v);
}

int pg_metrics_render(const pg_metrics_t *m, pg_buf_t *o)
{
    int rc = 0;
    rc |= head(o, "pushgate_connections", "gauge", "Open client connections by transport.");
    for (int t = 0; t < PG_TR_COUNT; t++)
        rc |= pg_buf_printf(o, "pushgate_connections{transport=\"%s\"} %lld\n", tr_names[t],
                            (long long)m->connections[t]);
    rc |= scalar(o, "pushgate_messages_received_total", "counter",
                 "Messages received from Redis pub/sub.", m->messages_received_total);
    rc |= scalar(o, "pushgate_messages_dropped_total", "counter",
                 "Messages dropped for exceeding --max-message-bytes.", m->messages_dropped_total);
    rc |= head(o, "pushgate_deliveries_total", "counter", "Frames handed to client sockets by transport.");
    for (int t = 0; t < PG_TR_COUNT; t++)
        rc |= pg_buf_printf(o, "pushgate_deliveries_total{transport=\"%s\"} %llu\n", tr_names[t],
                            (unsigned long long)m->deliveries_total[t]);
    rc |= scalar(o, "pushgate_slow_consumer_disconnects_total", "counter",
                 "Clients closed because their queue passed --queue-limit-bytes.",
                 m->slow_consumer_disconnects_total);
    rc |= head(o, "pushgate_publish_requests_total", "counter", "POST /api/publish answers by HTTP status.");
    for (int i = 0; i < PG_PUB_COUNT; i++) {
        if (i == PG_PUB_OTHER)
            rc |= pg_buf_printf(o, "pushgate_publish_requests_total{code=\"other\"} %llu\n",
                                (unsigned long long)m->publish_requests[i]);
        else
            rc |= pg_buf_printf(o, "pushgate_publish_requests_total{code=\"%d\"} %llu\n",
                                pub_codes[i], (unsigned long long)m->publish_requests[i]);
    }
    rc |= scalar(o, "pushgate_connections_rejected_total", "counter",
                 "Connections refused with 503 past --max-connections.", m->connections_rejected_total);
    rc |= head(o, "pushgate_redis_connected", "gauge", "1 while the Redis subscriber link is up.");
    rc |= pg_buf_printf(o, "pushgate_redis_connected %d\n", m->redis_connected ? 1 : 0);
    rc |= scalar(o, "pushgate_redis_reconnects_total", "counter",
                 "Reconnections of the Redis links.", m->redis_reconnects_total);
    rc |= head(o, "pushgate_subscribed_channels", "gauge", "Redis channels this node is subscribed to.");
    rc |= pg_buf_printf(o, "pushgate_subscribed_channels %lld\n", (long long)m->subscribed_channels);
    rc |= head(o, "pushgate_control_orders_total", "counter",
               "Backend orders received on the control channel (SPEC 7).");
    rc |= pg_buf_printf(o, "pushgate_control_orders_total{result=\"applied\"} %llu\n"
                        "pushgate_control_orders_total{result=\"invalid\"} %llu\n",
                        (unsigned long long)m->control_orders_total,
                        (unsigned long long)m->control_orders_invalid_total);
    static const int close_codes[PG_CLOSE_COUNT] = { 4000, 4001, 4003, 4029 };
    rc |= head(o, "pushgate_session_closes_total", "counter",
               "Connections closed by the session with its own codes: 4000/4003 backend, 4001 expired, 4029 per-user limit.");
    for (int i = 0; i < PG_CLOSE_COUNT; i++)
        rc |= pg_buf_printf(o, "pushgate_session_closes_total{code=\"%d\"} %llu\n", close_codes[i],
                            (unsigned long long)m->session_closes[i]);
    rc |= head(o, "pushgate_key_reloads_total", "counter", "Key reloads on SIGHUP by result.");
    rc |= pg_buf_printf(o, "pushgate_key_reloads_total{result=\"ok\"} %llu\n"
                        "pushgate_key_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)m->key_reloads_ok, (unsigned long long)m->key_reloads_failed);

    const char *h = "pushgate_delivery_latency_seconds";
    rc |= head(o, h, "histogram", "Time from arrival from Redis to the socket write.");
    uint64_t cum = 0;
    for (int i = 0; i <= PG_LAT_NBUCKETS; i++) {
        cum += m->lat_buckets[i];
        rc |= pg_buf_printf(o, "%s_bucket{le=\"%s\"} %llu\n", h,
                            i < PG_LAT_NBUCKETS ? bounds[i].le : "+Inf", (unsigned long long)cum);
    }
    rc |= pg_buf_printf(o, "%s_sum %llu.%09llu\n", h, (unsigned long long)(m->lat_sum_ns / 1000000000u),
                        (unsigned long long)(m->lat_sum_ns % 1000000000u));
    rc |= pg_buf_printf(o, "%s_count %llu\n", h, (unsigned long long)m->lat_count);
    return rc ? -1 : 0;
}
