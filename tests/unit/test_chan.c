/* test_chan.c - channel names, kinds, globs and the channels= list. */
#include "test_alloc.h"
#include "pg_chan.h"

static void valid_lengths_and_chars(void **state)
{
    (void)state;
    char name[PG_CHAN_MAX + 2];
    memset(name, 'a', sizeof name);
    assert_false(pg_chan_valid(name, 0));
    assert_true(pg_chan_valid(name, 1));
    assert_true(pg_chan_valid(name, 128));
    assert_false(pg_chan_valid(name, 129));
    assert_false(pg_chan_valid(NULL, 3));
    const char *ok = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@";
    assert_true(pg_chan_valid(ok, strlen(ok)));
    for (int c = 0; c < 256; c++) {
        char s[3] = { 'x', (char)c, 'y' };
        int want = c != 0 && strchr(ok, c) != NULL;
        assert_int_equal(pg_chan_valid(s, 3), want);
    }
}

static void kinds(void **state)
{
    (void)state;
    assert_int_equal(pg_chan_kind("broadcast"), PG_CHAN_BROADCAST);
    assert_int_equal(pg_chan_kind("broadcast2"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("Broadcast"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("user:42"), PG_CHAN_USER);
    assert_int_equal(pg_chan_kind("user:a@b.c"), PG_CHAN_USER);
    assert_int_equal(pg_chan_kind("user:"), PG_CHAN_INVALID);
    assert_int_equal(pg_chan_kind("user"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("users:1"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("news"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("orders.eu"), PG_CHAN_TOPIC);
    assert_int_equal(pg_chan_kind("_presence"), PG_CHAN_RESERVED);
    assert_int_equal(pg_chan_kind("_"), PG_CHAN_RESERVED);
    assert_int_equal(pg_chan_kind(""), PG_CHAN_INVALID);
    assert_int_equal(pg_chan_kind("a b"), PG_CHAN_INVALID);
    assert_int_equal(pg_chan_kind("news*"), PG_CHAN_INVALID);
    assert_int_equal(pg_chan_kind(NULL), PG_CHAN_INVALID);
    char name[PG_CHAN_MAX + 2];
    memset(name, 'a', sizeof name);
    name[128] = '\0';
    assert_int_equal(pg_chan_kind(name), PG_CHAN_TOPIC);
    name[128] = 'a';
    name[129] = '\0';
    assert_int_equal(pg_chan_kind(name), PG_CHAN_INVALID);
}

static void globs(void **state)
{
    (void)state;
    assert_true(pg_glob_match("news", "news"));
    assert_false(pg_glob_match("news", "news2"));
    assert_false(pg_glob_match("news", "new"));
    assert_true(pg_glob_match("*", "anything.at:all"));
    assert_true(pg_glob_match("*", ""));
    assert_true(pg_glob_match("", ""));
    assert_false(pg_glob_match("", "a"));
    assert_true(pg_glob_match("public.*", "public.x"));
    assert_true(pg_glob_match("public.*", "public."));
    assert_true(pg_glob_match("public.*", "public.a.b:c"));
    assert_false(pg_glob_match("public.*", "public"));
    assert_false(pg_glob_match("public.*", "xpublic.a"));
    assert_true(pg_glob_match("*.eu", "orders.eu"));
    assert_false(pg_glob_match("*.eu", "orders.eu2"));
    assert_true(pg_glob_match("a?c", "abc"));
    assert_false(pg_glob_match("a?c", "ac"));
    assert_false(pg_glob_match("a?c", "abbc"));
    assert_true(pg_glob_match("a*b*c", "aXXbYYc"));
    assert_true(pg_glob_match("a*b*c", "abc"));
    assert_false(pg_glob_match("a*b*c", "acb"));
    assert_true(pg_glob_match("**", "x"));
    assert_true(pg_glob_match("*?", "x"));
    assert_false(pg_glob_match("*?", ""));
    assert_true(pg_glob_match("user:*", "user:42"));
    assert_false(pg_glob_match(NULL, "x"));
    assert_false(pg_glob_match("x", NULL));
}

static void glob_pathological(void **state)
{
    (void)state;
    /* A backtracking matcher needs exponential time here; ours must answer
     * at once. 4000 bytes of 'a': a naive one would never finish. */
    char name[4001];
    memset(name, 'a', 4000);
    name[4000] = '\0';
    uint64_t t0 = pg_mono_ns();
    assert_false(pg_glob_match("a*a*a*a*a*a*a*a*b", name));
    assert_false(pg_glob_match("a*a*a*a*b", name));
    name[3999] = 'b';
    assert_true(pg_glob_match("a*a*a*a*b", name));
    assert_true(pg_mono_ns() - t0 < 2000000000ull);
}

static void glob_list(void **state)
{
    (void)state;
    pg_strlist_t l = { 0 };
    assert_false(pg_glob_list_match(&l, "news"));
    assert_false(pg_glob_list_match(NULL, "news"));
    assert_int_equal(pg_strlist_split("news, public.*", &l), 0);
    assert_true(pg_glob_list_match(&l, "news"));
    assert_true(pg_glob_list_match(&l, "public.sports"));
    assert_false(pg_glob_list_match(&l, "private"));
    pg_strlist_free(&l);
}

static void list_parse(void **state)
{
    (void)state;
    pg_strlist_t l = { 0 };
    char err[PG_ERRLEN] = "";
    assert_int_equal(pg_chan_list_parse("", 10, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_chan_list_parse(NULL, 10, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_chan_list_parse(" news , sports,user:1 ", 10, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "news");
    assert_string_equal(l.v[1], "sports");
    assert_string_equal(l.v[2], "user:1");
    pg_strlist_free(&l);
    /* Duplicates collapse and do not count toward max. */
    assert_int_equal(pg_chan_list_parse("a,b,a,b", 2, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 2);
    pg_strlist_free(&l);

    assert_int_equal(pg_chan_list_parse("a,b,c", 2, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "too many"));
    assert_int_equal(l.n, 0);
    assert_null(l.v);
    assert_int_equal(pg_chan_list_parse("news,bad name", 10, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "\"bad name\""));
    assert_int_equal(l.n, 0);
    assert_int_equal(pg_chan_list_parse("a,,b", 10, &l, err, sizeof err), -1);
    assert_int_equal(pg_chan_list_parse("a,", 10, &l, err, sizeof err), -1);
    assert_int_equal(pg_chan_list_parse(",", 10, &l, err, sizeof err), -1);
    assert_int_equal(pg_chan_list_parse("a*", 10, &l, err, sizeof err), -1);
    assert_int_equal(pg_chan_list_parse("bad\n\x01name", 10, &l, err, sizeof err), -1);
    assert_null(strchr(err, '\n'));   /* one line, nothing unprintable */
    assert_null(strchr(err, '\x01'));
    char name[200];
    memset(name, 'n', sizeof name);
    name[128] = '\0';
    assert_int_equal(pg_chan_list_parse(name, 10, &l, err, sizeof err), 0);
    pg_strlist_free(&l);
    name[128] = 'n';
    name[129] = '\0';
    assert_int_equal(pg_chan_list_parse(name, 10, &l, err, sizeof err), -1);
    assert_true(strlen(err) < PG_ERRLEN);

    /* Out of memory at each step: -1, nothing left allocated. */
    for (long k = 0; k < 10; k++) {
        pg_test_fail_after = k;
        if (pg_chan_list_parse("a,b,c", 10, &l, err, sizeof err) < 0)
            assert_int_equal(l.n, 0);
        pg_strlist_free(&l);
    }
    pg_test_fail_after = -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_lengths_and_chars),
        cmocka_unit_test(kinds),
        cmocka_unit_test(globs),
        cmocka_unit_test(glob_pathological),
        cmocka_unit_test(glob_list),
        cmocka_unit_test(list_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
