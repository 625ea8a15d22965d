/* test_buf.c - growable buffer and the JSON string escaper. */
#include "test_alloc.h"
#include "pg_buf.h"

static void grow_and_reset(void **state)
{
    (void)state;
    pg_buf_t b = PG_BUF_INIT;
    assert_int_equal(pg_buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pg_buf_puts(&b, "0123456789"), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(pg_buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data + 10000, "42-x");
    size_t cap = b.cap;
    pg_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.data, "");
    assert_int_equal(pg_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 3);
    size_t len = 0;
    char *d = pg_buf_steal(&b, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(d, "a\0b", 4);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(d);
    pg_buf_free(&b);
    pg_buf_free(NULL);
    pg_buf_reset(&b);   /* on an empty buffer */
}

static void oom_leaves_buffer(void **state)
{
    (void)state;
    pg_buf_t b = PG_BUF_INIT;
    assert_int_equal(pg_buf_puts(&b, "keep"), 0);
    char big[200];
    memset(big, 'x', sizeof big);
    pg_test_fail_after = 0;
    assert_int_equal(pg_buf_append(&b, big, sizeof big), -1);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    pg_test_fail_after = 0;
    assert_int_equal(pg_buf_printf(&b, "%200s", "y"), -1);
    assert_string_equal(b.data, "keep");
    pg_test_fail_after = 0;
    assert_int_equal(pg_buf_json_str(&b, big, sizeof big), -1);
    assert_string_equal(b.data, "keep");
    pg_test_fail_after = -1;
    /* A size that cannot be represented fails without touching memory. */
    assert_int_equal(pg_buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(pg_buf_json_str(&b, big, SIZE_MAX / 2), -1);
    pg_buf_free(&b);
}

static void js(const char *in, size_t n, const char *want)
{
    pg_buf_t b = PG_BUF_INIT;
    assert_int_equal(pg_buf_json_str(&b, in, n), 0);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    assert_true(pg_utf8_valid(b.data, b.len));
    pg_buf_free(&b);
}
#define JS(lit, want) js((lit), sizeof(lit) - 1, (want))
#define FFFD "\xEF\xBF\xBD"

static void json_str_escapes(void **state)
{
    (void)state;
    JS("", "\"\"");
    JS("plain", "\"plain\"");
    JS("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
    JS("l1\nl2\r\n\t", "\"l1\\nl2\\r\\n\\t\"");
    JS("\x01\x1f\x7f\b\f", "\"\\u0001\\u001f\\u007f\\u0008\\u000c\"");
    JS("nul\0x", "\"nul\\u0000x\"");
}

static void json_str_utf8(void **state)
{
    (void)state;
    /* Valid 2-, 3- and 4-byte sequences and the extremes pass unchanged. */
    JS("\xC3\xA9", "\"\xC3\xA9\"");
    JS("\xE2\x82\xAC", "\"\xE2\x82\xAC\"");
    JS("\xF0\x9F\x98\x80", "\"\xF0\x9F\x98\x80\"");
    JS("\xC2\x80", "\"\xC2\x80\"");
    JS("\xED\x9F\xBF", "\"\xED\x9F\xBF\"");          /* U+D7FF */
    JS("\xEE\x80\x80", "\"\xEE\x80\x80\"");          /* U+E000 */
    JS("\xF4\x8F\xBF\xBF", "\"\xF4\x8F\xBF\xBF\"");  /* U+10FFFF */
    /* Overlongs: one U+FFFD per byte. */
    JS("\xC0\x80", "\"" FFFD FFFD "\"");
    JS("\xC1\xBF", "\"" FFFD FFFD "\"");
    JS("\xE0\x80\x80", "\"" FFFD FFFD FFFD "\"");
    JS("\xE0\x9F\xBF", "\"" FFFD FFFD FFFD "\"");
    JS("\xF0\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
    JS("\xF0\x8F\xBF\xBF", "\"" FFFD FFFD FFFD FFFD "\"");
    /* Surrogates. */
    JS("\xED\xA0\x80", "\"" FFFD FFFD FFFD "\"");
    JS("\xED\xBF\xBF", "\"" FFFD FFFD FFFD "\"");
    /* Past U+10FFFF and never-valid lead bytes. */
    JS("\xF4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
    JS("\xF5\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");
    JS("\xFF", "\"" FFFD "\"");
    JS("\x80", "\"" FFFD "\"");
    /* Truncated at the end and in the middle. */
    JS("\xE2\x82", "\"" FFFD FFFD "\"");
    JS("\xF0\x9F\x98", "\"" FFFD FFFD FFFD "\"");
    JS("a\xE2\x82z", "\"a" FFFD FFFD "z\"");
    JS("\xC3", "\"" FFFD "\"");
    JS("\xC3\"", "\"" FFFD "\\\"\"");
}

static void utf8_valid(void **state)
{
    (void)state;
    assert_true(pg_utf8_valid("", 0));
    assert_true(pg_utf8_valid("abc\0", 4));
    assert_true(pg_utf8_valid("\xF0\x9F\x98\x80\xC3\xA9", 6));
    assert_false(pg_utf8_valid("\xC0\x80", 2));
    assert_false(pg_utf8_valid("\xED\xA0\x80", 3));
    assert_false(pg_utf8_valid("\xF4\x90\x80\x80", 4));
    assert_false(pg_utf8_valid("\xE2\x82", 2));
    assert_false(pg_utf8_valid("\xE2\x82\xAC", 2));   /* cut by the length */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grow_and_reset),
        cmocka_unit_test(oom_leaves_buffer),
        cmocka_unit_test(json_str_escapes),
        cmocka_unit_test(json_str_utf8),
        cmocka_unit_test(utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
