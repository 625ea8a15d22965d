/* test_backoff.c - capped exponential backoff with equal jitter. */
#include "test_alloc.h"
#include "pg_backoff.h"

static uint32_t rng_zero(void *ctx) { (void)ctx; return 0; }
static uint32_t rng_max(void *ctx) { (void)ctx; return UINT32_MAX; }
static uint32_t rng_seq(void *ctx)
{
    /* xorshift32: deterministic, covers the whole range. */
    uint32_t *s = ctx;
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void bounds_and_cap(void **state)
{
    (void)state;
    pg_backoff_t b;
    uint32_t seed = 2463534242u;
    pg_backoff_init(&b, 100, 30000);
    for (unsigned a = 0; a < 200; a++) {
        uint64_t d = a < 40 ? 100ull << (a < 32 ? a : 31) : 30000;
        if (d > 30000)
            d = 30000;
        unsigned v = pg_backoff_next(&b, rng_seq, &seed);
        assert_true(v >= d / 2);
        assert_true(v <= d);
    }
    /* Low and high ends of the jitter range are reachable. */
    pg_backoff_init(&b, 100, 30000);
    assert_int_equal(pg_backoff_next(&b, rng_zero, NULL), 50);
    pg_backoff_reset(&b);
    unsigned hi = pg_backoff_next(&b, rng_max, NULL);
    assert_true(hi >= 50 && hi <= 100);
    pg_backoff_init(&b, 1000, 5000);
    pg_backoff_next(&b, rng_zero, NULL);              /* 1000 */
    pg_backoff_next(&b, rng_zero, NULL);              /* 2000 */
    pg_backoff_next(&b, rng_zero, NULL);              /* 4000 */
    assert_int_equal(pg_backoff_next(&b, rng_zero, NULL), 2500); /* capped 5000 */
}

static void exact_sequence(void **state)
{
    (void)state;
    /* rng = 0 yields exactly d/2: 50, 100, 200, ... up to cap/2. */
    pg_backoff_t b;
    pg_backoff_init(&b, 100, 1000);
    unsigned want[] = { 50, 100, 200, 400, 500, 500, 500 };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(pg_backoff_next(&b, rng_zero, NULL), want[i]);
    pg_backoff_reset(&b);
    assert_int_equal(pg_backoff_next(&b, rng_zero, NULL), 50);
}

static void no_overflow(void **state)
{
    (void)state;
    pg_backoff_t b;
    pg_backoff_init(&b, UINT32_MAX, UINT32_MAX);
    for (int i = 0; i < 100; i++) {
        unsigned v = pg_backoff_next(&b, rng_max, NULL);
        assert_true(v >= UINT32_MAX / 2);
    }
    pg_backoff_init(&b, 100, 30000);
    b.attempt = UINT32_MAX;   /* as after a very long outage */
    unsigned v = pg_backoff_next(&b, rng_zero, NULL);
    assert_int_equal(v, 15000);
    assert_int_equal(b.attempt, UINT32_MAX);   /* no wrap back to the base */
    pg_backoff_init(&b, 0, 0);
    assert_int_equal(pg_backoff_next(&b, rng_max, NULL), 0);
    pg_backoff_init(&b, 500, 100);   /* cap below base: the cap wins */
    assert_true(pg_backoff_next(&b, rng_max, NULL) <= 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bounds_and_cap),
        cmocka_unit_test(exact_sequence),
        cmocka_unit_test(no_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
