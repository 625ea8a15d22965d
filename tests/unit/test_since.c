/* test_since.c - per-channel recovery positions (since=, Last-Event-ID) */
#include "test_alloc.h"
#include "pg_since.h"

static pg_since_t sp;
static char err[PG_ERRLEN];

static void ok(const char *s, size_t max)
{
    err[0] = '\0';
    pg_since_free(&sp);
    if (pg_since_parse(s, strlen(s), max, &sp, err, sizeof err) != 0)
        fail_msg("%s: %s", s, err);
}

static void bad(const char *s, size_t max, const char *why)
{
    err[0] = '\0';
    pg_since_free(&sp);
    assert_int_equal(pg_since_parse(s, strlen(s), max, &sp, err, sizeof err), -1);
    if (!strstr(err, why))
        fail_msg("%s: got \"%s\", want \"%s\"", s, err, why);
    pg_since_free(&sp);
}

static uint64_t get(const char *channel)
{
    uint64_t id = 0;
    if (!pg_since_get(&sp, channel, &id))
        return UINT64_MAX;
    return id;
}

static void one_cut_for_all(void **state)
{
    (void)state;
    ok("1764277200123000", 8);
    assert_true(sp.has_all);
    assert_int_equal(sp.n, 0);
    assert_int_equal(get("news"), 1764277200123000ULL);
    assert_int_equal(get("user:42"), 1764277200123000ULL);
    ok("0", 8);
    assert_int_equal(get("x"), 0);
    ok("9999999999999999999", 8);
    assert_int_equal(get("x"), 9999999999999999999ULL);
    pg_since_free(&sp);
}

static void per_channel_positions(void **state)
{
    (void)state;
    ok("news:1764277200124000,user:42:1764277200123000", 8);
    assert_false(sp.has_all);
    assert_int_equal(sp.n, 2);
    assert_int_equal(get("news"), 1764277200124000ULL);
    /* split at the last ':', so channels with colons work */
    assert_int_equal(get("user:42"), 1764277200123000ULL);
    assert_int_equal(get("user"), UINT64_MAX);
    assert_int_equal(get("sports"), UINT64_MAX); /* starts live */
    ok("a.b-c_d@e:f:1", 8);
    assert_int_equal(get("a.b-c_d@e:f"), 1);
    pg_since_free(&sp);
}

static void both_forms(void **state)
{
    (void)state;
    ok("1764277200000000,news:1764277200124000", 8);
    assert_int_equal(get("news"), 1764277200124000ULL);
    assert_int_equal(get("sports"), 1764277200000000ULL);
    ok("news:5,7", 1);
    assert_int_equal(get("news"), 5);
    assert_int_equal(get("other"), 7);
    pg_since_free(&sp);
}

static void refused(void **state)
{
    (void)state;
    bad("", 8, "empty");
    bad(",", 8, "need an id");
    bad("1,", 8, "need an id");
    bad("news", 8, "need an id");
    bad("-1", 8, "need an id");
    bad("12a", 8, "need an id");
    bad("99999999999999999999", 8, "need an id");
    bad("1,2", 8, "more than one bare id");
    bad("news:", 8, "after the last ':'");
    bad("news:x", 8, "after the last ':'");
    bad(":5", 8, "invalid channel");
    bad("ne ws:5", 8, "invalid channel");
    bad("n/s:5", 8, "invalid channel");
    bad("news:1,news:2", 8, "twice");
    bad("a:1,b:2,c:3", 2, "more than 2 channels");
    bad("a:1,b:2,3,4", 2, "more than 2 channels");
    char longname[140];
    memset(longname, 'x', 129);
    strcpy(longname + 129, ":1");
    bad(longname, 8, "invalid channel");
}

static void out_of_memory(void **state)
{
    (void)state;
    pg_test_fail_after = 0;
    bad("news:1", 8, "out of memory");
    pg_test_fail_after = -1;
}

/* What a cluster node writes as SSE id: parses back to the same positions. */
static void append_round_trips(void **state)
{
    (void)state;
    pg_buf_t b = PG_BUF_INIT;
    assert_int_equal(pg_since_append(&b, "news", 1764277200124000ULL), 0);
    assert_int_equal(pg_since_append(&b, "user:42", 7), 0);
    assert_int_equal(pg_since_append(&b, "z", 0), 0);
    assert_int_equal(b.len, strlen("news:1764277200124000,user:42:7,z:0"));
    assert_memory_equal(b.data, "news:1764277200124000,user:42:7,z:0", b.len);
    err[0] = '\0';
    pg_since_free(&sp);
    assert_int_equal(pg_since_parse(b.data, b.len, 3, &sp, err, sizeof err), 0);
    assert_int_equal(get("news"), 1764277200124000ULL);
    assert_int_equal(get("user:42"), 7);
    assert_int_equal(get("z"), 0);
    pg_since_free(&sp);
    pg_buf_free(&b);
    pg_since_free(NULL);
}

static const char *write_list(pg_buf_t *b, pg_since_ent_t *v, size_t n, int want_rc)
{
    assert_int_equal(pg_since_write(b, v, n, PG_SINCE_MAX_BYTES), want_rc);
    return b->data != NULL ? b->data : "";
}

/* The SSE id of a cluster node: the highest, then each channel below it. */
static void write_positions(void **state)
{
    (void)state;
    pg_buf_t b = PG_BUF_INIT;
    pg_since_ent_t v[] = {
        { "broadcast", 100 }, { "user:42", 180 }, { "news", 200 }, { "sports", 150 },
    };
    assert_string_equal(write_list(&b, v, 4, 0), "200,broadcast:100,user:42:180,sports:150");
    /* it parses back to every channel's own position */
    pg_since_free(&sp);
    assert_int_equal(pg_since_parse(b.data, b.len, PG_SINCE_MAX_ENTRIES, &sp, err, sizeof err), 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(get(v[i].channel), v[i].id);
    pg_since_free(&sp);
    /* all at one position, or one channel: the bare id, as on one Redis */
    pg_since_ent_t same[] = { { "a", 7 }, { "b", 7 } };
    assert_string_equal(write_list(&b, same, 2, 0), "7");
    assert_string_equal(write_list(&b, v + 2, 1, 0), "200");
    assert_string_equal(write_list(&b, v, 0, 0), "");
    assert_int_equal(b.len, 0);
    pg_buf_free(&b);
}

/* Past the limits: what the node accepts, and no channel resumes above its
 * own position (no gap; a duplicate at most). */
static void write_past_the_limits(void **state)
{
    (void)state;
    pg_buf_t b = PG_BUF_INIT;
    enum { N = 90 };
    static char names[N][PG_CHAN_MAX + 1];
    pg_since_ent_t v[N], orig[N];
    /* 90 channels: too many entries; ids descending by index */
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "c%zu", i);
        v[i] = (pg_since_ent_t){ names[i], 1000 - i };
    }
    memcpy(orig, v, sizeof v);
    write_list(&b, v, N, 1);
    pg_since_free(&sp);
    assert_int_equal(pg_since_parse(b.data, b.len, PG_SINCE_MAX_ENTRIES, &sp, err, sizeof err), 0);
    assert_int_equal(sp.n, PG_SINCE_MAX_ENTRIES);
    for (size_t i = 0; i < N; i++) {
        uint64_t at;
        assert_true(pg_since_get(&sp, orig[i].channel, &at));
        assert_true(at <= orig[i].id);
    }
    /* the 66 lowest have their own entries; the bare id is the next one */
    assert_true(sp.has_all);
    assert_int_equal(sp.all, 1000 - (N - 1) + PG_SINCE_MAX_ENTRIES);
    pg_since_free(&sp);

    /* 40 channels of 120-byte names: too many bytes */
    for (size_t i = 0; i < 40; i++) {
        memset(names[i], 'a' + (char)(i % 26), 120);
        snprintf(names[i] + 120, 8, "%zu", i);
        v[i] = (pg_since_ent_t){ names[i], 1764277200000000ULL + (i * 7919) % 40 };
    }
    memcpy(orig, v, sizeof v);
    write_list(&b, v, 40, 1);
    assert_true(b.len <= PG_SINCE_MAX_BYTES);
    assert_int_equal(pg_since_parse(b.data, b.len, PG_SINCE_MAX_ENTRIES, &sp, err, sizeof err), 0);
    assert_true(sp.n > 20 && sp.n < 40);
    for (size_t i = 0; i < 40; i++) {
        uint64_t at;
        assert_true(pg_since_get(&sp, orig[i].channel, &at));
        assert_true(at <= orig[i].id);
    }
    pg_since_free(&sp);

    /* a smaller room (the request that brings it back has less): fewer
     * entries, still no channel above its own position; none at all fit:
     * the lowest position as the bare id alone */
    memcpy(v, orig, sizeof(pg_since_ent_t) * 40);
    assert_int_equal(pg_since_write(&b, v, 40, 1000), 1);
    assert_true(b.len <= 1000 && b.len > 500);
    assert_int_equal(pg_since_parse(b.data, b.len, PG_SINCE_MAX_ENTRIES, &sp, err, sizeof err), 0);
    for (size_t i = 0; i < 40; i++) {
        uint64_t at;
        assert_true(pg_since_get(&sp, orig[i].channel, &at));
        assert_true(at <= orig[i].id);
    }
    pg_since_free(&sp);
    assert_int_equal(pg_since_write(&b, v, 40, 10), 1);
    assert_string_equal(b.data, "1764277200000000");

    /* out of memory: -1 */
    v[0].id = 1;
    pg_buf_free(&b);
    pg_test_fail_after = 0;
    assert_int_equal(pg_since_write(&b, v, 40, PG_SINCE_MAX_BYTES), -1);
    pg_test_fail_after = 2;   /* the first list fits, the shortened one fails */
    assert_int_equal(pg_since_write(&b, v, 40, PG_SINCE_MAX_BYTES), -1);
    pg_test_fail_after = -1;
    pg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_cut_for_all),
        cmocka_unit_test(per_channel_positions),
        cmocka_unit_test(both_forms),
        cmocka_unit_test(refused),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(append_round_trips),
        cmocka_unit_test(write_positions),
        cmocka_unit_test(write_past_the_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
