/* test_slot.c - Redis Cluster key slots, slot maps and redirections (SPEC §10) */
#include "test_alloc.h"
#include "pg_slot.h"

static unsigned slot_of(const char *key)
{
    return pg_slot_of_key(key, strlen(key));
}

/* The check value of CRC16/XMODEM, the one the Redis Cluster specification
 * gives for its hash function. */
static void crc16_check_value(void **state)
{
    (void)state;
    assert_int_equal(pg_slot_crc16("123456789", 9), 0x31C3);
    assert_int_equal(pg_slot_crc16("", 0), 0);
    assert_int_equal(pg_slot_crc16("A", 1), 0x58E5);
    /* bytes >= 0x80 are not sign-extended (0xFF alone: 0x1EF0) */
    assert_int_equal(pg_slot_crc16("\xff", 1), 0x1EF0);
}

/* The examples of Redis' CLUSTER KEYSLOT documentation and of the cluster
 * specification's hash-tag rules; the figures agree with CLUSTER KEYSLOT of
 * redis-server 7.0 (test_cluster_link.py compares many more). */
static void documented_slots(void **state)
{
    (void)state;
    assert_int_equal(slot_of("somekey"), 11058);
    assert_int_equal(slot_of("foo{hash_tag}"), 2515);
    assert_int_equal(slot_of("123456789"), 0x31C3 % PG_SLOT_COUNT);
    assert_int_equal(slot_of(""), 0);
}

static void hash_tags(void **state)
{
    (void)state;
    /* same tag, same slot: a channel's keys and pub/sub channel live together */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("pushgate:{news}"), slot_of("pushgate:{news}:history"));
    assert_int_equal(slot_of("pushgate:{news}"), slot_of("news"));
    /* only the first { and the first } after it count */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* an empty tag hashes the whole key, a lone brace is an ordinary byte */
    assert_int_equal(slot_of("foo{}{bar}"), pg_slot_crc16("foo{}{bar}", 10) % PG_SLOT_COUNT);
    assert_int_equal(slot_of("foo{bar"), pg_slot_crc16("foo{bar", 7) % PG_SLOT_COUNT);
    assert_int_equal(slot_of("foo}bar{"), pg_slot_crc16("foo}bar{", 8) % PG_SLOT_COUNT);
    /* len is honoured: a tag past it is not seen, NUL bytes inside are hashed */
    assert_int_equal(pg_slot_of_key("ab{c}", 2), slot_of("ab"));
    assert_int_equal(pg_slot_of_key("{a\0b}", 5), pg_slot_crc16("a\0b", 3) % PG_SLOT_COUNT);
}

static void map_assign_and_lookup(void **state)
{
    (void)state;
    pg_slot_map_t m;
    pg_slot_map_init(&m);
    assert_null(pg_slot_map_owner(&m, 0));
    assert_false(pg_slot_map_complete(&m));
    assert_int_equal(pg_slot_map_assign(&m, 0, 5460, "127.0.0.1", 7000), 0);
    assert_int_equal(pg_slot_map_assign(&m, 5461, 10922, "127.0.0.1", 7001), 1);
    assert_false(pg_slot_map_complete(&m));
    assert_int_equal(pg_slot_map_assign(&m, 10923, 16383, "::1", 7002), 2);
    assert_true(pg_slot_map_complete(&m));
    assert_int_equal(m.nshards, 3);
    const pg_hostport_t *o = pg_slot_map_owner(&m, 5461);
    assert_non_null(o);
    assert_string_equal(o->host, "127.0.0.1");
    assert_int_equal(o->port, 7001);
    assert_int_equal(pg_slot_map_owner(&m, 16383)->port, 7002);
    assert_string_equal(pg_slot_map_owner(&m, 16383)->host, "::1");
    assert_int_equal(pg_slot_map_owner(&m, 0)->port, 7000);
    assert_null(pg_slot_map_owner(&m, PG_SLOT_COUNT));
    assert_int_equal(pg_slot_map_shard(&m, PG_SLOT_COUNT), -1);

    /* a slot moves (a resharding): the same address keeps its index */
    assert_int_equal(pg_slot_map_assign(&m, 100, 100, "127.0.0.1", 7001), 1);
    assert_int_equal(pg_slot_map_owner(&m, 100)->port, 7001);
    assert_int_equal(pg_slot_map_owner(&m, 99)->port, 7000);
    assert_true(pg_slot_map_complete(&m));
    assert_int_equal(m.nshards, 3);

    /* a fifth distinct master grows shards[] past its first allocation */
    assert_int_equal(pg_slot_map_assign(&m, 1, 1, "10.0.0.4", 7003), 3);
    assert_int_equal(pg_slot_map_assign(&m, 2, 2, "10.0.0.5", 7004), 4);
    assert_int_equal(pg_slot_map_owner(&m, 2)->port, 7004);
    assert_int_equal(pg_slot_map_owner(&m, 1)->port, 7003);
    assert_int_equal(pg_slot_map_owner(&m, 100)->port, 7001);
    pg_slot_map_free(&m);
    assert_int_equal(m.nshards, 0);
    assert_null(pg_slot_map_owner(&m, 0));
    pg_slot_map_free(NULL);
}

static void map_refuses_bad_ranges(void **state)
{
    (void)state;
    pg_slot_map_t m;
    pg_slot_map_init(&m);
    char longhost[300];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    assert_int_equal(pg_slot_map_assign(&m, 5, 4, "h", 1), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, PG_SLOT_COUNT, "h", 1), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, 1, "", 1), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, 1, NULL, 1), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, 1, longhost, 1), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, 1, "h", 0), -1);
    assert_int_equal(pg_slot_map_assign(&m, 0, 1, "h", 65536), -1);
    assert_int_equal(m.covered, 0);
    assert_int_equal(m.nshards, 0);
    pg_slot_map_free(&m);
}

static void map_out_of_memory_changes_nothing(void **state)
{
    (void)state;
    pg_slot_map_t m;
    pg_slot_map_init(&m);
    pg_test_fail_after = 0;
    assert_int_equal(pg_slot_map_assign(&m, 0, 10, "127.0.0.1", 7000), -1);
    pg_test_fail_after = -1;
    assert_int_equal(m.covered, 0);
    assert_null(pg_slot_map_owner(&m, 0));
    for (int i = 0; i < 4; i++)
        assert_int_equal(pg_slot_map_assign(&m, (unsigned)i, (unsigned)i, "h", 7000 + i), i);
    pg_test_fail_after = 0; /* the fifth master needs a bigger array */
    assert_int_equal(pg_slot_map_assign(&m, 9, 9, "h", 7009), -1);
    pg_test_fail_after = -1;
    assert_null(pg_slot_map_owner(&m, 9));
    assert_int_equal(m.nshards, 4);
    assert_int_equal(pg_slot_map_owner(&m, 3)->port, 7003);
    pg_slot_map_free(&m);
}

/* owner[] keeps a master's index + 1 in 16 bits, so a map holding 65535
 * addresses takes no new one (it would wrap to "no owner" or to another
 * master); the addresses it has still work. Made directly: assigning
 * 65535 addresses one by one is a quadratic lookup. */
static void map_refuses_a_65536th_address(void **state)
{
    (void)state;
    pg_slot_map_t m;
    pg_slot_map_init(&m);
    m.shards = calloc(UINT16_MAX, sizeof(*m.shards));
    assert_non_null(m.shards);
    m.nshards = m.cap = UINT16_MAX;
    snprintf(m.shards[UINT16_MAX - 1].host, sizeof m.shards[0].host, "10.0.0.9");
    m.shards[UINT16_MAX - 1].port = 7009;
    assert_int_equal(pg_slot_map_assign(&m, 5, 5, "10.0.0.1", 7000), -1);
    assert_null(pg_slot_map_owner(&m, 5));
    assert_int_equal(m.covered, 0);
    assert_int_equal(m.nshards, UINT16_MAX);
    assert_int_equal(pg_slot_map_assign(&m, 5, 5, "10.0.0.9", 7009), UINT16_MAX - 1);
    assert_int_equal(pg_slot_map_owner(&m, 5)->port, 7009);
    assert_int_equal(m.covered, 1);
    pg_slot_map_free(&m);
}

static pg_slot_redirect_t redirect(const char *text, unsigned *slot, pg_hostport_t *to)
{
    return pg_slot_parse_redirect(text, strlen(text), slot, to);
}

static void redirections(void **state)
{
    (void)state;
    unsigned slot = 0;
    pg_hostport_t to;
    assert_int_equal(redirect("MOVED 3999 127.0.0.1:6381", &slot, &to), PG_SLOT_MOVED);
    assert_int_equal(slot, 3999);
    assert_string_equal(to.host, "127.0.0.1");
    assert_int_equal(to.port, 6381);
    assert_int_equal(redirect("ASK 16383 ::1:7000", &slot, &to), PG_SLOT_ASK);
    assert_int_equal(slot, 16383);
    assert_string_equal(to.host, "::1");
    assert_int_equal(to.port, 7000);
    assert_int_equal(redirect("ASK 0 [fe80::1]:7000", &slot, &to), PG_SLOT_ASK);
    assert_string_equal(to.host, "fe80::1");
    /* Redis 7 without a known endpoint: the host is the one asked */
    assert_int_equal(redirect("MOVED 12 :6390", &slot, &to), PG_SLOT_MOVED);
    assert_string_equal(to.host, "");
    assert_int_equal(to.port, 6390);
}

static void not_redirections(void **state)
{
    (void)state;
    const char *bad[] = {
        "", "MOVED", "MOVED ", "MOVED 1", "MOVED 1 ", "MOVED 1 host", "MOVED 1 host:",
        "MOVED x host:1", "MOVED 16384 host:1", "MOVED -1 host:1", "MOVED 1 host:0",
        "MOVED 1 host:65536", "MOVED 1 host:1x", "MOVED 99999999999 h:1",
        "ASK 1 a b:1", "moved 1 host:1", "CROSSSLOT Keys in request don't hash to the same slot",
        "ERR unknown command", "TRYAGAIN Multiple keys request during rehashing of slot",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned slot = 77;
        pg_hostport_t to = { .host = "keep", .port = 5 };
        if (redirect(bad[i], &slot, &to) != PG_SLOT_NOT_REDIRECT)
            fail_msg("taken for a redirection: \"%s\"", bad[i]);
        assert_int_equal(slot, 77);
        assert_string_equal(to.host, "keep");
        assert_int_equal(to.port, 5);
    }
    /* len is honoured: the port ends where len says */
    unsigned slot;
    pg_hostport_t to;
    assert_int_equal(pg_slot_parse_redirect("MOVED 5 h:12345", 13, &slot, &to), PG_SLOT_MOVED);
    assert_int_equal(to.port, 123);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc16_check_value),
        cmocka_unit_test(documented_slots),
        cmocka_unit_test(hash_tags),
        cmocka_unit_test(map_assign_and_lookup),
        cmocka_unit_test(map_refuses_bad_ranges),
        cmocka_unit_test(map_out_of_memory_changes_nothing),
        cmocka_unit_test(map_refuses_a_65536th_address),
        cmocka_unit_test(redirections),
        cmocka_unit_test(not_redirections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
