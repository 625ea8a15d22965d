/* test_util.c - string lists, decimal conversions, clocks, secure compare. */
#include "test_alloc.h"
#include "pg_util.h"

static void strlist_split_cases(void **state)
{
    (void)state;
    pg_strlist_t l = { 0 };
    assert_int_equal(pg_strlist_split(NULL, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_strlist_split("", &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_strlist_split(" , ,\t,", &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_strlist_split(" a , ,b\t,c d ,", &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "a");
    assert_string_equal(l.v[1], "b");
    assert_string_equal(l.v[2], "c d");
    pg_strlist_free(&l);
    assert_null(l.v);
    assert_int_equal(l.n, 0);
    pg_strlist_free(&l);   /* twice is fine */
    pg_strlist_free(NULL);
}

static void strlist_push_and_oom(void **state)
{
    (void)state;
    pg_strlist_t l = { 0 };
    assert_int_equal(pg_strlist_push(&l, "x"), 0);
    assert_int_equal(pg_strlist_push(&l, ""), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[1], "");
    pg_test_fail_after = 0;
    assert_int_equal(pg_strlist_push(&l, "y"), -1);
    pg_test_fail_after = 1;   /* the copy succeeds, the array grow fails */
    assert_int_equal(pg_strlist_push(&l, "y"), -1);
    assert_int_equal(l.n, 2);
    pg_strlist_free(&l);

    /* Every allocation of a split failing in turn: -1 and an empty list,
     * never a leak (cmocka checks at the end of the test). */
    for (long k = 0; k < 12; k++) {
        pg_test_fail_after = k;
        int rc = pg_strlist_split("a,b,c,d", &l);
        if (rc < 0) {
            assert_int_equal(l.n, 0);
            assert_null(l.v);
        } else {
            assert_int_equal(l.n, 4);
        }
        pg_strlist_free(&l);
    }
    pg_test_fail_after = -1;
}

static void u64toa_cases(void **state)
{
    (void)state;
    char b[21];
    assert_int_equal(pg_u64toa(0, b), 1);
    assert_string_equal(b, "0");
    assert_int_equal(pg_u64toa(1234, b), 4);
    assert_string_equal(b, "1234");
    assert_int_equal(pg_u64toa(UINT64_MAX, b), 20);
    assert_string_equal(b, "18446744073709551615");
}

static void atou64_cases(void **state)
{
    (void)state;
    uint64_t v = 77;
    assert_int_equal(pg_atou64("0", (size_t)-1, &v), 0);
    assert_true(v == 0);
    assert_int_equal(pg_atou64("9999999999999999999", (size_t)-1, &v), 0);
    assert_true(v == 9999999999999999999ull);
    assert_int_equal(pg_atou64("00012", (size_t)-1, &v), 0);
    assert_true(v == 12);
    assert_int_equal(pg_atou64("12345", 3, &v), 0);
    assert_true(v == 123);
    v = 5;
    assert_int_equal(pg_atou64("", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("12", 0, &v), -1);
    assert_int_equal(pg_atou64(NULL, 0, &v), -1);
    assert_int_equal(pg_atou64("10000000000000000000", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("-1", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("+1", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64(" 1", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("1 ", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("1x", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("1.0", (size_t)-1, &v), -1);
    assert_int_equal(pg_atou64("0x10", (size_t)-1, &v), -1);
    assert_true(v == 5);   /* untouched on failure */
}

static void grow_doubles_from_first_and_keeps_v_on_oom(void **state)
{
    (void)state;
    size_t cap = 0;
    int *v = pg_grow(NULL, 0, &cap, sizeof(*v), 4);
    assert_non_null(v);
    assert_int_equal(cap, 4);
    v[0] = 7;
    assert_ptr_equal(pg_grow(v, 3, &cap, sizeof(*v), 4), v);   /* room left */
    assert_int_equal(cap, 4);
    int *w = pg_grow(v, 4, &cap, sizeof(*w), 4);
    assert_non_null(w);
    assert_int_equal(cap, 8);
    assert_int_equal(w[0], 7);
    pg_test_fail_after = 0;
    assert_null(pg_grow(w, 8, &cap, sizeof(*w), 4));
    pg_test_fail_after = -1;
    assert_int_equal(cap, 8);    /* untouched, w still owned by the caller */
    assert_int_equal(w[0], 7);
    free(w);
}

static void clocks(void **state)
{
    (void)state;
    uint64_t a = pg_mono_ns(), b = pg_mono_ns();
    assert_true(b >= a);
    assert_true(pg_mono_ms() >= a / 1000000u);
    /* 2026 or later, and not absurdly far ahead. */
    assert_true(pg_wall_ms() > 1700000000000ull);
    assert_true(pg_wall_ms() < 4102444800000ull);
}

static void secure_equal(void **state)
{
    (void)state;
    assert_int_equal(pg_secure_equal("abc", 3, "abc", 3), 1);
    assert_int_equal(pg_secure_equal("", 0, "", 0), 1);
    assert_int_equal(pg_secure_equal("abc", 3, "abd", 3), 0);
    assert_int_equal(pg_secure_equal("abc", 3, "abcd", 4), 0);
    assert_int_equal(pg_secure_equal("abc", 3, "ab", 2), 0);
    assert_int_equal(pg_secure_equal("", 0, "a", 1), 0);
    assert_int_equal(pg_secure_equal("a\0b", 3, "a\0c", 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strlist_split_cases),
        cmocka_unit_test(strlist_push_and_oom),
        cmocka_unit_test(grow_doubles_from_first_and_keeps_v_on_oom),
        cmocka_unit_test(u64toa_cases),
        cmocka_unit_test(atou64_cases),
        cmocka_unit_test(clocks),
        cmocka_unit_test(secure_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
