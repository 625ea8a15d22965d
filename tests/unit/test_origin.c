/* test_origin.c - the --allowed-origins rules of SPEC §1. */
#include "test_alloc.h"
#include "pg_origin.h"

static int allowed(const char *list, const char *origin, const char *host)
{
    pg_strlist_t l = { 0 };
    assert_int_equal(pg_strlist_split(list, &l), 0);
    int r = pg_origin_allowed(&l, origin, host);
    pg_strlist_free(&l);
    return r;
}

static void no_origin(void **state)
{
    (void)state;
    assert_true(allowed("", NULL, NULL));
    assert_true(allowed("https://a.com", NULL, "x"));
    assert_true(pg_origin_allowed(NULL, NULL, NULL));
}

static void star(void **state)
{
    (void)state;
    assert_true(allowed("*", "https://anything.example", "h"));
    assert_true(allowed("https://a.com, *", "null", "h"));
}

static void exact(void **state)
{
    (void)state;
    assert_true(allowed("https://app.example.com", "https://app.example.com", "gw"));
    assert_true(allowed("https://App.Example.COM", "HTTPS://app.example.com", "gw"));
    assert_true(allowed("https://app.example.com/", "https://app.example.com", "gw"));
    assert_true(allowed("https://a.com:443", "https://a.com", "gw"));
    assert_true(allowed("http://a.com", "http://a.com:80", "gw"));
    assert_true(allowed("http://localhost:3000", "http://localhost:3000", "gw"));
    assert_false(allowed("http://localhost:3000", "http://localhost:3001", "gw"));
    assert_false(allowed("https://app.example.com", "http://app.example.com", "gw"));
    assert_false(allowed("https://app.example.com", "https://app.example.com.evil.io", "gw"));
    assert_false(allowed("https://app.example.com", "https://evilapp.example.com", "gw"));
    assert_false(allowed("https://a.com", "https://a.com:8443", "gw"));
    assert_true(allowed("http://[::1]:8080", "http://[::1]:8080", "gw"));
    assert_true(allowed("https://a.com,https://b.com", "https://b.com", "gw"));
}

static void wildcard(void **state)
{
    (void)state;
    const char *l = "https://*.example.com";
    assert_true(allowed(l, "https://app.example.com", "gw"));
    assert_true(allowed(l, "https://a.b.example.com", "gw"));
    assert_false(allowed(l, "https://example.com", "gw"));
    assert_false(allowed(l, "https://.example.com", "gw"));
    assert_false(allowed(l, "https://evilexample.com", "gw"));
    assert_false(allowed(l, "http://app.example.com", "gw"));
    assert_false(allowed(l, "https://app.example.com:8443", "gw"));
    assert_false(allowed(l, "https://app.example.com.evil.io", "gw"));
    assert_true(allowed("https://*.example.com:8443", "https://x.example.com:8443", "gw"));
    assert_false(allowed("https://*.example.com:8443", "https://x.example.com", "gw"));
}

static void malformed(void **state)
{
    (void)state;
    assert_false(allowed("https://a.com", "null", "a.com"));
    assert_false(allowed("", "null", "a.com"));
    assert_false(allowed("https://a.com", "a.com", "a.com"));
    assert_false(allowed("https://a.com", "https://", "a.com"));
    assert_false(allowed("https://a.com", "https://a.com/path", "a.com"));
    assert_false(allowed("https://a.com", "https://a.com:0", "a.com"));
    assert_false(allowed("https://a.com", "https://a.com:99999", "a.com"));
    assert_false(allowed("https://a.com", "https://a.com:", "a.com"));
    assert_false(allowed("https://a.com", "https://u@a.com", "a.com"));
    assert_false(allowed("https://a.com", "https://a com", "a.com"));
    assert_false(allowed("https://a.com", "", "a.com"));
}

static void same_host(void **state)
{
    (void)state;
    assert_true(allowed("", "http://gw.local:8080", "gw.local:8080"));
    assert_true(allowed("", "http://GW.local:8080", "gw.LOCAL:8080"));
    assert_false(allowed("", "http://gw.local:8080", "gw.local:8081"));
    assert_false(allowed("", "http://other:8080", "gw.local:8080"));
    assert_false(allowed("", "http://gw.local:8080", NULL));
    /* Default ports may be left out on either side. */
    assert_true(allowed("", "https://gw.example", "gw.example"));
    assert_true(allowed("", "https://gw.example", "gw.example:443"));
    assert_true(allowed("", "https://gw.example:443", "gw.example"));
    assert_true(allowed("", "http://gw.example", "gw.example:80"));
    assert_false(allowed("", "https://gw.example", "gw.example:80"));
    assert_false(allowed("", "http://gw.example", "gw.example:8080"));
    assert_true(allowed("", "http://[::1]:8080", "[::1]:8080"));
    assert_false(allowed("", "http://gw.example", "gw.example:bad"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_origin),   cmocka_unit_test(star),
        cmocka_unit_test(exact),       cmocka_unit_test(wildcard),
        cmocka_unit_test(malformed),   cmocka_unit_test(same_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
