/* test_metrics.c - the Prometheus text exposition, byte for byte. */
#include "test_alloc.h"
#include "pg_metrics.h"

static const char *expected =
    "# HELP pushgate_connections Open client connections by transport.\n"
    "# TYPE pushgate_connections gauge\n"
    "pushgate_connections{transport=\"ws\"} 3\n"
    "pushgate_connections{transport=\"sse\"} 1\n"
    "# HELP pushgate_messages_received_total Messages received from Redis pub/sub.\n"
    "# TYPE pushgate_messages_received_total counter\n"
    "pushgate_messages_received_total 10\n"
    "# HELP pushgate_messages_dropped_total Messages dropped for exceeding --max-message-bytes.\n"
    "# TYPE pushgate_messages_dropped_total counter\n"
    "pushgate_messages_dropped_total 2\n"
    "# HELP pushgate_deliveries_total Frames handed to client sockets by transport.\n"
    "# TYPE pushgate_deliveries_total counter\n"
    "pushgate_deliveries_total{transport=\"ws\"} 30\n"
    "pushgate_deliveries_total{transport=\"sse\"} 18446744073709551615\n"
    "# HELP pushgate_slow_consumer_disconnects_total Clients closed because their queue passed --queue-limit-bytes.\n"
    "# TYPE pushgate_slow_consumer_disconnects_total counter\n"
    "pushgate_slow_consumer_disconnects_total 1\n"
    "# HELP pushgate_publish_requests_total POST /api/publish answers by HTTP status.\n"
    "# TYPE pushgate_publish_requests_total counter\n"
    "pushgate_publish_requests_total{code=\"200\"} 2\n"
    "pushgate_publish_requests_total{code=\"400\"} 1\n"
    "pushgate_publish_requests_total{code=\"401\"} 0\n"
    "pushgate_publish_requests_total{code=\"403\"} 0\n"
    "pushgate_publish_requests_total{code=\"405\"} 0\n"
    "pushgate_publish_requests_total{code=\"413\"} 1\n"
    "pushgate_publish_requests_total{code=\"503\"} 1\n"
    "pushgate_publish_requests_total{code=\"other\"} 2\n"
    "# HELP pushgate_connections_rejected_total Connections refused with 503 past --max-connections.\n"
    "# TYPE pushgate_connections_rejected_total counter\n"
    "pushgate_connections_rejected_total 4\n"
    "# HELP pushgate_redis_connected 1 while the Redis subscriber link is up.\n"
    "# TYPE pushgate_redis_connected gauge\n"
    "pushgate_redis_connected 1\n"
    "# HELP pushgate_redis_reconnects_total Reconnections of the Redis links.\n"
    "# TYPE pushgate_redis_reconnects_total counter\n"
    "pushgate_redis_reconnects_total 5\n"
    "# HELP pushgate_subscribed_channels Redis channels this node is subscribed to.\n"
    "# TYPE pushgate_subscribed_channels gauge\n"
    "pushgate_subscribed_channels 7\n"
    "# HELP pushgate_control_orders_total Backend orders received on the control channel (SPEC 7).\n"
    "# TYPE pushgate_control_orders_total counter\n"
    "pushgate_control_orders_total{result=\"applied\"} 6\n"
    "pushgate_control_orders_total{result=\"invalid\"} 1\n"
    "# HELP pushgate_session_closes_total Connections closed by the session with its own codes: 4000/4003 backend, 4001 expired, 4029 per-user limit.\n"
    "# TYPE pushgate_session_closes_total counter\n"
    "pushgate_session_closes_total{code=\"4000\"} 2\n"
    "pushgate_session_closes_total{code=\"4001\"} 0\n"
    "pushgate_session_closes_total{code=\"4003\"} 3\n"
    "pushgate_session_closes_total{code=\"4029\"} 1\n"
    "# HELP pushgate_key_reloads_total Key reloads on SIGHUP by result.\n"
    "# TYPE pushgate_key_reloads_total counter\n"
    "pushgate_key_reloads_total{result=\"ok\"} 8\n"
    "pushgate_key_reloads_total{result=\"failed\"} 9\n"
    "# HELP pushgate_history_reads_total History reads issued to Redis for resuming connections and replays.\n"
    "# TYPE pushgate_history_reads_total counter\n"
    "pushgate_history_reads_total 11\n"
    "# HELP pushgate_history_reads_coalesced_total Channel recoveries served by a read another connection's recovery issued, or from its result kept in memory.\n"
    "# TYPE pushgate_history_reads_coalesced_total counter\n"
    "pushgate_history_reads_coalesced_total 12\n"
    "# HELP pushgate_client_sends_total WebSocket send commands by answer: sent (stored in the events stream) or refused (SPEC 9).\n"
    "# TYPE pushgate_client_sends_total counter\n"
    "pushgate_client_sends_total{result=\"sent\"} 13\n"
    "pushgate_client_sends_total{result=\"refused\"} 14\n"
    "# HELP pushgate_events_dropped_total Events not written to the events stream: Redis link down or the write refused.\n"
    "# TYPE pushgate_events_dropped_total counter\n"
    "pushgate_events_dropped_total 15\n"
    "# HELP pushgate_presence_updates_total Presence batches written (one FCALL per loop iteration with changes, SPEC 8).\n"
    "# TYPE pushgate_presence_updates_total counter\n"
    "pushgate_presence_updates_total 16\n"
    "# HELP pushgate_delivery_latency_seconds Time from arrival from Redis to the socket write.\n"
    "# TYPE pushgate_delivery_latency_seconds histogram\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.0001\"} 2\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.00025\"} 2\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.0005\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.001\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.0025\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.005\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.01\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.025\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.05\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.1\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.25\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"0.5\"} 3\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"1\"} 4\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"2.5\"} 4\n"
    "pushgate_delivery_latency_seconds_bucket{le=\"+Inf\"} 5\n"
    "pushgate_delivery_latency_seconds_sum 4.000400050\n"
    "pushgate_delivery_latency_seconds_count 5\n";

static void render_exact(void **state)
{
    (void)state;
    pg_metrics_t m;
    memset(&m, 0, sizeof m);
    m.connections[PG_TR_WS] = 3;
    m.connections[PG_TR_SSE] = 1;
    m.messages_received_total = 10;
    m.messages_dropped_total = 2;
    m.deliveries_total[PG_TR_WS] = 30;
    m.deliveries_total[PG_TR_SSE] = UINT64_MAX;
    m.slow_consumer_disconnects_total = 1;
    pg_metrics_publish(&m, 200);
    pg_metrics_publish(&m, 200);
    pg_metrics_publish(&m, 400);
    pg_metrics_publish(&m, 413);
    pg_metrics_publish(&m, 503);
    pg_metrics_publish(&m, 500);
    pg_metrics_publish(&m, 0);
    m.connections_rejected_total = 4;
    m.redis_connected = 1;
    m.redis_reconnects_total = 5;
    m.subscribed_channels = 7;
    m.control_orders_total = 6;
    m.control_orders_invalid_total = 1;
    m.session_closes[PG_CLOSE_4000] = 2;
    m.session_closes[PG_CLOSE_4003] = 3;
    m.session_closes[PG_CLOSE_4029] = 1;
    m.key_reloads_ok = 8;
    m.key_reloads_failed = 9;
    m.history_reads_total = 11;
    m.history_reads_coalesced_total = 12;
    m.client_sends_sent = 13;
    m.client_sends_refused = 14;
    m.events_dropped_total = 15;
    m.presence_updates_total = 16;
    pg_metrics_latency(&m, 0);              /* le 0.0001 */
    pg_metrics_latency(&m, 100000);         /* exactly on the bound: le 0.0001 */
    pg_metrics_latency(&m, 300050);         /* le 0.0005 */
    pg_metrics_latency(&m, 1000000000);     /* le 1 */
    pg_metrics_latency(&m, 3000000000ull);  /* +Inf only */
    /* sum: 0 + 0.0001 + 0.00030005 + 1 + 3 = 4.00040005 s */
    pg_buf_t out = PG_BUF_INIT;
    assert_int_equal(pg_metrics_render(&m, &out), 0);
    if (strcmp(out.data, expected) != 0)
        fail_msg("got:\n%s", out.data);
    pg_buf_free(&out);
}

static void render_zero_and_appends(void **state)
{
    (void)state;
    pg_metrics_t m;
    memset(&m, 0, sizeof m);
    m.connections[PG_TR_WS] = -1;   /* a gauge bug shows as it is, not wrapped */
    pg_buf_t out = PG_BUF_INIT;
    assert_int_equal(pg_buf_puts(&out, "prefix\n"), 0);
    assert_int_equal(pg_metrics_render(&m, &out), 0);
    assert_int_equal(strncmp(out.data, "prefix\n# HELP", 13), 0);
    assert_non_null(strstr(out.data, "pushgate_connections{transport=\"ws\"} -1\n"));
    assert_non_null(strstr(out.data, "pushgate_delivery_latency_seconds_sum 0.000000000\n"));
    assert_non_null(strstr(out.data, "pushgate_delivery_latency_seconds_bucket{le=\"+Inf\"} 0\n"));
    /* Every sample follows its own HELP and TYPE lines. */
    int helps = 0, types = 0;
    for (const char *p = out.data; (p = strstr(p, "# HELP ")); p++)
        helps++;
    for (const char *p = out.data; (p = strstr(p, "# TYPE ")); p++)
        types++;
    assert_int_equal(helps, 19);
    assert_int_equal(types, 19);
    assert_int_equal(out.data[out.len - 1], '\n');
    pg_buf_free(&out);

    for (long k = 0; k < 5; k++) {
        pg_test_fail_after = k;
        pg_buf_t o2 = PG_BUF_INIT;
        int rc = pg_metrics_render(&m, &o2);
        assert_true(rc == 0 || rc == -1);
        pg_buf_free(&o2);
    }
    pg_test_fail_after = -1;
}

static void workers_totals_and_labelled_series_stay_grouped(void **state)
{
    (void)state;
    pg_metrics_t w[2], total;
    memset(w, 0, sizeof w);
    memset(&total, 0, sizeof total);
    w[0].connections[PG_TR_WS] = 3;
    w[1].connections[PG_TR_WS] = 4;
    w[0].redis_connected = 1;
    w[1].redis_connected = 1;
    w[1].session_closes[PG_CLOSE_4003] = 2;
    pg_metrics_latency(&w[0], 0);
    pg_metrics_add(&total, &w[0]);
    pg_metrics_add(&total, &w[1]);
    assert_int_equal(total.connections[PG_TR_WS], 7);
    assert_int_equal(total.redis_connected, 2);
    assert_int_equal(total.lat_count, 1);
    pg_buf_t out = PG_BUF_INIT;
    assert_int_equal(pg_metrics_render_workers(&total, w, 2, &out), 0);
    const char *t = strstr(out.data, "pushgate_connections{transport=\"ws\"} 7\n");
    const char *a = strstr(out.data, "pushgate_connections{transport=\"ws\",worker=\"1\"} 3\n");
    const char *b = strstr(out.data, "pushgate_connections{transport=\"ws\",worker=\"2\"} 4\n");
    assert_non_null(t);
    assert_non_null(a);
    assert_non_null(b);
    /* a family's samples follow its HELP/TYPE, totals first, before the
     * next family's HELP */
    const char *next = strstr(out.data, "# HELP pushgate_messages_received_total");
    assert_true(t < a && a < b && b < next);
    assert_non_null(strstr(out.data, "pushgate_redis_connected{worker=\"2\"} 1\n"));
    assert_non_null(strstr(out.data, "pushgate_session_closes_total{code=\"4003\",worker=\"2\"} 2\n"));
    assert_non_null(strstr(out.data, "pushgate_delivery_latency_seconds_count{worker=\"1\"} 1\n"));
    int helps = 0;
    for (const char *p = out.data; (p = strstr(p, "# HELP ")); p++)
        helps++;
    assert_int_equal(helps, 19);   /* once per family, not per worker */
    pg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(render_exact),
        cmocka_unit_test(render_zero_and_appends),
        cmocka_unit_test(workers_totals_and_labelled_series_stay_grouped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
