/* test_wheel.c - the hashed timer wheel: firing order, laps, re-arming and
 * cancelling from inside a callback, long gaps. */
#include "test_alloc.h"
#include "pg_wheel.h"

typedef struct fired {
    pg_timer_t *seen[64];
    uint64_t    at[64];
    size_t      n;
    pg_wheel_t *w;
    pg_timer_t *cancel_other;   /* cancelled by the first callback */
    uint64_t    rearm_by;       /* re-arm the fired timer this far ahead (0: no) */
} fired_t;

static fired_t *cur;   /* the test's record: timers have no argument */

static void record(pg_timer_t *t)
{
    fired_t *f = cur;
    f->at[f->n] = f->w->now;
    f->seen[f->n++] = t;
    if (f->cancel_other != NULL) {
        pg_wheel_cancel(f->w, f->cancel_other);
        f->cancel_other = NULL;
    }
    if (f->rearm_by)
        pg_wheel_arm(f->w, t, f->w->now + f->rearm_by);
}

static void fires_when_due_not_before(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record }, b = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 8, 100), 0);
    pg_wheel_arm(&w, &a, 103);
    pg_wheel_arm(&w, &b, 125);          /* three laps out: same slot as 101 */
    assert_true(pg_timer_armed(&a));
    assert_int_equal(pg_wheel_advance(&w, 102), 0);
    assert_int_equal(pg_wheel_advance(&w, 103), 1);
    assert_ptr_equal(f.seen[0], &a);
    assert_int_equal(f.at[0], 103);
    assert_false(pg_timer_armed(&a));
    assert_int_equal(pg_wheel_advance(&w, 124), 0);
    assert_int_equal(pg_wheel_advance(&w, 125), 1);
    assert_ptr_equal(f.seen[1], &b);
    assert_int_equal(w.armed, 0);
    pg_wheel_free(&w);
}

static void past_due_fires_on_next_advance(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 16, 50), 0);
    pg_wheel_arm(&w, &a, 10);
    assert_int_equal(pg_wheel_advance(&w, 51), 1);
    pg_wheel_free(&w);
}

static void cancel_and_move(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record }, b = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 4, 0), 0);
    pg_wheel_arm(&w, &a, 2);
    pg_wheel_arm(&w, &b, 2);
    pg_wheel_cancel(&w, &a);
    pg_wheel_cancel(&w, &a);            /* idle: no-op */
    pg_wheel_arm(&w, &b, 7);            /* moved */
    assert_int_equal(w.armed, 1);
    assert_int_equal(pg_wheel_advance(&w, 6), 0);
    assert_int_equal(pg_wheel_advance(&w, 7), 1);
    pg_wheel_free(&w);
}

static void callback_cancels_a_due_sibling(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record }, b = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 8, 0), 0);
    pg_wheel_arm(&w, &a, 3);
    pg_wheel_arm(&w, &b, 3);
    /* whichever fires first cancels the other: only one may fire */
    f.cancel_other = &a;
    size_t n = pg_wheel_advance(&w, 3);
    if (f.seen[0] == &a) {
        /* a fired first and tried to cancel itself (idle): b still fires */
        assert_int_equal(n, 2);
    } else {
        assert_int_equal(n, 1);
        assert_ptr_equal(f.seen[0], &b);
        assert_false(pg_timer_armed(&a));
    }
    assert_int_equal(w.armed, 0);
    pg_wheel_free(&w);
}

static void rearm_from_callback_waits_a_lap(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record };
    fired_t f = { .w = &w, .rearm_by = 4 };   /* nslots: same slot again */
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 4, 0), 0);
    pg_wheel_arm(&w, &a, 1);
    assert_int_equal(pg_wheel_advance(&w, 4), 1);
    assert_int_equal(pg_wheel_advance(&w, 5), 1);   /* 1 + 4 */
    assert_int_equal(f.at[1], 5);
    f.rearm_by = 0;
    assert_int_equal(pg_wheel_advance(&w, 9), 1);   /* 5 + 4 */
    assert_int_equal(w.armed, 0);
    pg_wheel_free(&w);
}

static void long_gap_fires_everything_once(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t t[20];
    fired_t f = { .w = &w };
    cur = &f;
    memset(t, 0, sizeof(t));
    for (int i = 0; i < 20; i++)
        t[i].cb = record;
    assert_int_equal(pg_wheel_init(&w, 8, 0), 0);
    for (int i = 0; i < 20; i++)
        pg_wheel_arm(&w, &t[i], (uint64_t)(1 + i * 3));
    assert_int_equal(pg_wheel_advance(&w, 1000), 20);
    assert_int_equal(w.armed, 0);
    pg_wheel_free(&w);
}

/* The owner's clock sleeps until the next non-empty slot, capped. */
static void next_is_the_first_occupied_slot(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record }, b = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    assert_int_equal(pg_wheel_init(&w, 16, 100), 0);
    assert_int_equal(pg_wheel_next(&w, 10), 110);       /* empty: the cap */
    pg_wheel_arm(&w, &a, 107);
    pg_wheel_arm(&w, &b, 104);
    assert_int_equal(pg_wheel_next(&w, 10), 104);
    assert_int_equal(pg_wheel_next(&w, 3), 103);        /* beyond the cap */
    assert_int_equal(pg_wheel_advance(&w, 104), 1);
    assert_int_equal(pg_wheel_next(&w, 10), 107);
    pg_wheel_cancel(&w, &a);
    pg_wheel_arm(&w, &a, 104 + 16 + 2);                 /* a lap out, slot of 106 */
    assert_int_equal(pg_wheel_next(&w, 10), 106);       /* counted: a spare wake, none missed */
    assert_int_equal(pg_wheel_advance(&w, 106), 0);
    pg_wheel_free(&w);
}

static uint64_t earlier_due[8];
static size_t   earlier_n;

static void note_earlier(pg_wheel_t *w, uint64_t due)
{
    earlier_due[earlier_n++] = due;
    w->wake = due;
}

/* Arming before the owner's planned wake tells it; later or with wake 0 not. */
static void arming_before_the_wake_calls_earlier(void **state)
{
    (void)state;
    pg_wheel_t w;
    pg_timer_t a = { .cb = record }, b = { .cb = record }, c = { .cb = record };
    fired_t f = { .w = &w };
    cur = &f;
    earlier_n = 0;
    assert_int_equal(pg_wheel_init(&w, 64, 100), 0);
    w.earlier = note_earlier;
    pg_wheel_arm(&w, &a, 105);                          /* wake 0: off */
    assert_int_equal(earlier_n, 0);
    w.wake = 110;
    pg_wheel_arm(&w, &b, 115);                          /* after the wake */
    assert_int_equal(earlier_n, 0);
    pg_wheel_arm(&w, &c, 103);
    assert_int_equal(earlier_n, 1);
    assert_int_equal(earlier_due[0], 103);
    assert_int_equal(w.wake, 103);
    pg_wheel_arm(&w, &b, 50);                           /* past due: next tick */
    assert_int_equal(earlier_n, 2);
    assert_int_equal(earlier_due[1], 101);
    pg_wheel_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_when_due_not_before),
        cmocka_unit_test(past_due_fires_on_next_advance),
        cmocka_unit_test(cancel_and_move),
        cmocka_unit_test(callback_cancels_a_due_sibling),
        cmocka_unit_test(rearm_from_callback_waits_a_lap),
        cmocka_unit_test(long_gap_fires_everything_once),
        cmocka_unit_test(next_is_the_first_occupied_slot),
        cmocka_unit_test(arming_before_the_wake_calls_earlier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
