/* test_url.c - redis://, redis+sentinel:// and redis+cluster:// (SPEC §10) */
#include "test_alloc.h"
#include "pg_url.h"
#include "pg_util.h"

static pg_url_t u;
static char err[PG_ERRLEN];

static void ok(const char *s)
{
    err[0] = '\0';
    if (pg_url_parse(s, &u, err, sizeof err) != 0)
        fail_msg("%s: %s", s, err);
}

static void bad(const char *s, const char *why)
{
    err[0] = '\0';
    assert_int_equal(pg_url_parse(s, &u, err, sizeof err), -1);
    if (!strstr(err, why))
        fail_msg("%s: got \"%s\", want \"%s\"", s, err, why);
    /* A failed parse leaves no password behind. */
    assert_string_equal(u.password, "");
    assert_string_equal(u.sentinel_password, "");
}

static void good_urls(void **state)
{
    (void)state;
    ok("redis://127.0.0.1:6379/0");
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    ok("redis://cache");
    assert_string_equal(u.host, "cache");
    assert_int_equal(u.port, 6379);
    ok("redis://cache/");
    assert_int_equal(u.db, 0);
    ok("redis://cache:7000/15");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 15);
    ok("redis://:s3cret@h:1");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.user, "");
    assert_int_equal(u.port, 1);
    ok("redis://alice:pw@h:65535/2");
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.port, 65535);
    ok("redis://:p%40ss%3Aw%2Fd%25@h");
    assert_string_equal(u.password, "p@ss:w/d%");
    ok("redis://:p@ss/w@h:6380/3");   /* raw '@' and '/': the last '@' ends it */
    assert_string_equal(u.password, "p@ss/w");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    ok("redis://[::1]:6390/1");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    ok("redis://[fe80::1%25eth0]");
    assert_string_equal(u.host, "fe80::1%25eth0");
    ok("redis://:@h");
    assert_string_equal(u.password, "");
    /* redis:// is one host, listed as such too */
    ok("redis://alice:pw@h:7000/2");
    assert_int_equal(u.kind, PG_URL_REDIS);
    assert_int_equal(u.nhosts, 1);
    assert_string_equal(u.hosts[0].host, "h");
    assert_int_equal(u.hosts[0].port, 7000);
    assert_string_equal(u.master, "");
}

static void sentinel_urls(void **state)
{
    (void)state;
    ok("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster");
    assert_int_equal(u.kind, PG_URL_SENTINEL);
    assert_int_equal(u.nhosts, 3);
    assert_string_equal(u.hosts[0].host, "s1");
    assert_int_equal(u.hosts[0].port, 26380);
    assert_string_equal(u.hosts[1].host, "s2");
    assert_int_equal(u.hosts[1].port, 26379);   /* Sentinel's own default */
    assert_string_equal(u.hosts[2].host, "::1");
    assert_int_equal(u.hosts[2].port, 26381);
    assert_string_equal(u.host, "s1");          /* hosts[0], for old readers */
    assert_int_equal(u.port, 26380);
    assert_string_equal(u.master, "mymaster");
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.sentinel_password, "");

    ok("redis+sentinel://app:p%40ss@s1:1,s2:2/my%2Fmaster/3?sentinel-password=s%26p%3D");
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.master, "my/master");
    assert_int_equal(u.db, 3);
    assert_string_equal(u.sentinel_password, "s&p=");
    assert_int_equal(u.nhosts, 2);

    ok("redis+sentinel://s1/m/?sentinel-password=x");
    assert_int_equal(u.db, 0);
    assert_string_equal(u.sentinel_password, "x");
    ok("redis+sentinel://s1/m?sentinel-password=");
    assert_string_equal(u.sentinel_password, "");
    ok("redis+sentinel://s1/m?");
    ok("redis+sentinel://:pw@s1:5/m");
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.hosts[0].port, 5);
}

static void cluster_urls(void **state)
{
    (void)state;
    ok("redis+cluster://a:7000,b:7001,c");
    assert_int_equal(u.kind, PG_URL_CLUSTER);
    assert_int_equal(u.nhosts, 3);
    assert_string_equal(u.hosts[0].host, "a");
    assert_int_equal(u.hosts[0].port, 7000);
    assert_string_equal(u.hosts[2].host, "c");
    assert_int_equal(u.hosts[2].port, 6379);
    ok("redis+cluster://u:p@h:1/0");
    assert_string_equal(u.user, "u");
    assert_int_equal(u.nhosts, 1);
    ok("redis+cluster://h/");
    char many[512] = "redis+cluster://";
    for (int i = 0; i < PG_URL_MAX_HOSTS; i++)
        sprintf(many + strlen(many), "%sh%d:%d", i ? "," : "", i, 7000 + i);
    ok(many);
    assert_int_equal(u.nhosts, PG_URL_MAX_HOSTS);
    assert_int_equal(u.hosts[PG_URL_MAX_HOSTS - 1].port, 7000 + PG_URL_MAX_HOSTS - 1);
    strcat(many, ",one-more");
    bad(many, "more than");
}

static void bad_multi_host_urls(void **state)
{
    (void)state;
    bad("redis://a,b", "host");                 /* one host only */
    bad("redis+sentinel://s1,s2", "master name");
    bad("redis+sentinel://s1,s2/", "master name");
    bad("redis+sentinel://s1//0", "master name");
    bad("redis+sentinel://s1/?x", "master name");
    bad("redis+sentinel://s1,/m", "host");
    bad("redis+sentinel://,s1/m", "host");
    bad("redis+sentinel://s1:0/m", "port");
    bad("redis+sentinel://s1:x,s2/m", "port");
    bad("redis+sentinel://s1/m/x", "database");
    bad("redis+sentinel://s1/m/1/2", "database");
    bad("redis+sentinel://s1/m%zz", "master name");
    bad("redis+sentinel://s1/m%20x", "master name");
    bad("redis+sentinel://s1/m?password=x", "unknown URL parameter");
    bad("redis+sentinel://s1/m?sentinel-password=%zz", "sentinel-password");
    bad("redis+sentinel://:pw@s1/m?sentinel-password=%zz", "sentinel-password");
    bad("redis+cluster://a,b/1", "only database 0");
    bad("redis+cluster://a,b/x", "database");
    bad("redis+cluster://a,b?x", "unexpected");
    bad("redis+cluster://a,,b", "host");
    bad("redis+cluster://a b", "host");
    bad("redis+clusterx://a", "redis+cluster://");
}

static void bad_urls(void **state)
{
    (void)state;
    bad(NULL, "redis://");
    bad("", "redis://");
    bad("http://h", "redis://");
    bad("rediss://h", "redis://");
    bad("redis://", "host");
    bad("redis://:6379", "host");
    bad("redis://:pw@", "host");
    bad("redis://h:0", "port");
    bad("redis://h:65536", "port");
    bad("redis://h:", "port");
    bad("redis://h:abc", "port");
    bad("redis://h:-1", "port");
    bad("redis://h:+80", "port");
    bad("redis://h/x", "database");
    bad("redis://h/-1", "database");
    bad("redis://h/1/2", "database");
    bad("redis://h/99999999999", "database");
    bad("redis://[::1", "IPv6");
    bad("redis://[]:1", "IPv6");
    bad("redis://[::1]x", "unexpected");
    bad("redis://h?x=1", "host");
    bad("redis://h h", "host");
    bad("redis://pw@h", "[user]:password");
    bad("redis://:p%zz@h", "password");
    bad("redis://:p%4@h", "password");
    bad("redis://:p%00x@h", "password");
    bad("redis://u%zz:p@h", "user");
}

static void password_never_in_err(void **state)
{
    (void)state;
    const char *urls[] = {
        "redis://:hunter2@h:0", "redis://:hunter2@", "redis://:hunter2@h/x",
        "redis://:hunter2%zz@h", "redis://u:hunter2@[::1", "redis://:hunter2@h h",
        "redis+sentinel://:hunter2@s1", "redis+sentinel://s1/m?sentinel-password=hunter2&x=1",
        "redis+sentinel://:hunter2@s1/m/x?sentinel-password=hunter2",
        "redis+cluster://:hunter2@a,b/1",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        assert_int_equal(pg_url_parse(urls[i], &u, err, sizeof err), -1);
        assert_null(strstr(err, "hunter2"));
        assert_string_equal(u.password, "");
        assert_string_equal(u.sentinel_password, "");
    }
    char longpw[400] = "redis://:";
    memset(longpw + 9, 'p', 300);
    strcpy(longpw + 309, "@h");
    assert_int_equal(pg_url_parse(longpw, &u, err, sizeof err), -1);
    assert_null(strstr(err, "ppp"));
    char longhost[400] = "redis://";
    memset(longhost + 8, 'h', 300);
    longhost[308] = '\0';
    assert_int_equal(pg_url_parse(longhost, &u, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_urls),
        cmocka_unit_test(bad_urls),
        cmocka_unit_test(sentinel_urls),
        cmocka_unit_test(cluster_urls),
        cmocka_unit_test(bad_multi_host_urls),
        cmocka_unit_test(password_never_in_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
