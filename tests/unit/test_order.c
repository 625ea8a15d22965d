/* test_order.c - control orders as nodes read them from <prefix>_control. */
#include "test_alloc.h"
#include "pg_order.h"
#include "pg_util.h"

static int parse(const char *s, pg_order_t *o)
{
    char err[PG_ERRLEN];
    int rc = pg_order_parse(s, strlen(s), o, err, sizeof(err));
    if (rc != 0)
        assert_true(strlen(err) > 0);
    return rc;
}

static void disconnect_orders(void **state)
{
    (void)state;
    pg_order_t o;
    assert_int_equal(parse("{\"type\":\"disconnect\",\"user\":\"42\",\"code\":4000,\"reason\":\"bye\"}", &o), 0);
    assert_int_equal(o.type, PG_ORDER_DISCONNECT);
    assert_string_equal(o.user, "42");
    assert_int_equal(o.code, 4000);
    assert_string_equal(o.reason, "bye");
    assert_int_equal(o.revoked_at, 0);
    assert_int_equal(parse("{\"type\":\"disconnect\",\"user\":\"a.b@c\",\"code\":4003,\"reason\":\"\","
                           "\"revoked_at\":1764277200}", &o), 0);
    assert_int_equal(o.code, 4003);
    assert_int_equal(o.revoked_at, 1764277200);
    assert_string_equal(o.reason, "");
}

static void subscribe_orders(void **state)
{
    (void)state;
    pg_order_t o;
    assert_int_equal(parse("{\"type\":\"subscribe\",\"user\":\"7\",\"channel\":\"room.7\",\"since\":\"123\"}", &o), 0);
    assert_int_equal(o.type, PG_ORDER_SUBSCRIBE);
    assert_string_equal(o.channel, "room.7");
    assert_true(o.has_since);
    assert_int_equal(o.since, 123);
    assert_int_equal(parse("{\"type\":\"unsubscribe\",\"user\":\"7\",\"channel\":\"room.7\"}", &o), 0);
    assert_int_equal(o.type, PG_ORDER_UNSUBSCRIBE);
    assert_false(o.has_since);
}

static void bad_orders_are_refused(void **state)
{
    (void)state;
    pg_order_t o;
    static const char *const bad[] = {
        "", "[]", "nope", "{\"type\":\"disconnect\"}",
        "{\"type\":\"disconnect\",\"user\":\"42\"}",                       /* no code */
        "{\"type\":\"disconnect\",\"user\":\"42\",\"code\":1000}",        /* not ours */
        "{\"type\":\"disconnect\",\"user\":\"42\",\"code\":\"4000\"}",
        "{\"type\":\"disconnect\",\"user\":\"\",\"code\":4000}",
        "{\"type\":\"disconnect\",\"user\":\"a b\",\"code\":4000}",
        "{\"type\":\"disconnect\",\"user\":42,\"code\":4000}",
        "{\"type\":\"disconnect\",\"user\":\"42\",\"code\":4000,\"revoked_at\":-1}",
        "{\"type\":\"disconnect\",\"user\":\"42\",\"code\":4000,\"reason\":7}",
        "{\"type\":\"subscribe\",\"user\":\"42\"}",
        "{\"type\":\"subscribe\",\"user\":\"42\",\"channel\":\"_control\"}",
        "{\"type\":\"subscribe\",\"user\":\"42\",\"channel\":\"bad name\"}",
        "{\"type\":\"subscribe\",\"user\":\"42\",\"channel\":\"x\",\"since\":\"12a\"}",
        "{\"type\":\"subscribe\",\"user\":\"42\",\"channel\":\"x\",\"since\":12}",
        "{\"type\":\"explode\",\"user\":\"42\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &o) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(o.type, 0);
    }
    /* a reason longer than a close frame can carry */
    char big[400];
    int n = snprintf(big, sizeof(big), "{\"type\":\"disconnect\",\"user\":\"1\",\"code\":4000,\"reason\":\"");
    memset(big + n, 'x', 124);
    strcpy(big + n + 124, "\"}");
    assert_int_equal(parse(big, &o), -1);
    /* a user id whose user: channel would pass 128 bytes */
    char longuser[300];
    n = snprintf(longuser, sizeof(longuser), "{\"type\":\"disconnect\",\"code\":4000,\"user\":\"");
    memset(longuser + n, 'u', 124);
    strcpy(longuser + n + 124, "\"}");
    assert_int_equal(parse(longuser, &o), -1);
}

static void out_of_memory_is_a_refusal(void **state)
{
    (void)state;
    pg_order_t o;
    const char *s = "{\"type\":\"subscribe\",\"user\":\"7\",\"channel\":\"room.7\",\"since\":\"123\"}";
    for (long k = 0; k < 20; k++) {
        pg_test_fail_after = k;
        int rc = parse(s, &o);
        pg_test_fail_after = -1;
        assert_true(rc == 0 || rc == -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disconnect_orders),
        cmocka_unit_test(subscribe_orders),
        cmocka_unit_test(bad_orders_are_refused),
        cmocka_unit_test(out_of_memory_is_a_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
