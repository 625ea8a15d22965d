/* test_topology.c - CLUSTER SLOTS replies into slot maps (gateway/topology.c).
 * Replies are built from RESP text by hiredis' own reader, as they arrive. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "topology.h"

static redisReply *resp(const char *text, size_t len)
{
    redisReader *r = redisReaderCreate();
    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, text, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    return reply;
}

static int parse_n(const char *text, size_t len, pg_slot_map_t *m, char *err)
{
    redisReply *r = resp(text, len);
    err[0] = '\0';
    int rc = pg_topology_parse_slots(r, "10.9.8.7", m, err, 256);
    freeReplyObject(r);
    return rc;
}

static int parse(const char *text, pg_slot_map_t *m, char *err)
{
    return parse_n(text, strlen(text), m, err);
}

static void three_masters_with_replicas(void **state)
{
    (void)state;
    const char *text =
        "*3\r\n"
        "*4\r\n:0\r\n:5460\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nm1\r\n*0\r\n"
        "*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n*0\r\n"
        "*3\r\n:5461\r\n:10922\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nm2\r\n"
        "*4\r\n:10923\r\n:16383\r\n"
        "*4\r\n$3\r\n::1\r\n:7002\r\n$2\r\nm3\r\n*0\r\n"
        "*2\r\n$9\r\n127.0.0.1\r\n:7005\r\n";
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(parse(text, &m, err), 0);
    assert_true(pg_slot_map_complete(&m));
    assert_int_equal(m.nshards, 3);
    assert_int_equal(pg_slot_map_owner(&m, 0)->port, 7000);
    assert_int_equal(pg_slot_map_owner(&m, 5460)->port, 7000);
    assert_int_equal(pg_slot_map_owner(&m, 5461)->port, 7001);
    assert_string_equal(pg_slot_map_owner(&m, 16383)->host, "::1");
    assert_int_equal(pg_slot_map_owner(&m, 16383)->port, 7002);
    pg_slot_map_free(&m);
}

/* Redis 7: an empty or nil host means the node the reply came from; "?"
 * an endpoint nobody knows, whose slots stay unowned. */
static void unknown_and_empty_endpoints(void **state)
{
    (void)state;
    const char *text =
        "*3\r\n"
        "*3\r\n:0\r\n:99\r\n*2\r\n$0\r\n\r\n:7000\r\n"
        "*3\r\n:100\r\n:199\r\n*2\r\n$-1\r\n:7001\r\n"
        "*3\r\n:200\r\n:16383\r\n*2\r\n$1\r\n?\r\n:7002\r\n";
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(parse(text, &m, err), 0);
    assert_false(pg_slot_map_complete(&m));
    assert_string_equal(pg_slot_map_owner(&m, 0)->host, "10.9.8.7");
    assert_int_equal(pg_slot_map_owner(&m, 99)->port, 7000);
    assert_string_equal(pg_slot_map_owner(&m, 150)->host, "10.9.8.7");
    assert_int_equal(pg_slot_map_owner(&m, 150)->port, 7001);
    assert_null(pg_slot_map_owner(&m, 200));
    pg_slot_map_free(&m);
}

static void empty_cluster_is_an_empty_map(void **state)
{
    (void)state;
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(parse("*0\r\n", &m, err), 0);
    assert_false(pg_slot_map_complete(&m));
    assert_null(pg_slot_map_owner(&m, 0));
    pg_slot_map_free(&m);
}

static void refused(const char *text, const char *why)
{
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(parse(text, &m, err), -1);
    if (strstr(err, why) == NULL)
        fail_msg("%s: got \"%s\", want \"%s\"", text, err, why);
    pg_slot_map_free(&m);
}

static void malformed_replies(void **state)
{
    (void)state;
    refused("-ERR This instance has cluster support disabled\r\n", "cluster support disabled");
    refused("+OK\r\n", "not an array");
    refused(":1\r\n", "not an array");
    refused("*1\r\n:1\r\n", "entry 0 is not");
    refused("*1\r\n*2\r\n:0\r\n:1\r\n", "entry 0 is not");
    refused("*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", "entry 0 is not");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n", "entry 0 is not");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n$1\r\nh\r\n", "entry 0 is not");
    refused("*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n", "slots 5-4");
    refused("*1\r\n*3\r\n:-1\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n", "slots -1-4");
    refused("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", "slots 0-16384");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n", "no valid port");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:65536\r\n", "no valid port");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n", "no valid port");
    refused("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:5\r\n:7000\r\n", "no host string");
    /* a later bad entry fails the whole reply */
    refused("*2\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:7000\r\n"
            "*3\r\n:2\r\n:1\r\n*2\r\n$1\r\nh\r\n:7000\r\n", "entry 1 has slots 2-1");
}

static void host_with_a_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:7000\r\n";
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(parse_n(text, sizeof text - 1, &m, err), -1);
    assert_non_null(strstr(err, "NUL byte"));
    assert_int_equal(m.covered, 0);
    pg_slot_map_free(&m);
}

static void no_reply(void **state)
{
    (void)state;
    pg_slot_map_t m;
    char err[256];
    pg_slot_map_init(&m);
    assert_int_equal(pg_topology_parse_slots(NULL, "h", &m, err, sizeof err), -1);
    assert_string_equal(err, "CLUSTER SLOTS: no reply");
    pg_slot_map_free(&m);
}

/* n one-slot ranges, slot i % 16384 each, all at one master */
static char *one_slot_ranges(unsigned n, size_t *len)
{
    char *buf = malloc((size_t)n * 64 + 32);
    assert_non_null(buf);
    size_t k = (size_t)sprintf(buf, "*%u\r\n", n);
    for (unsigned i = 0; i < n; i++)
        k += (size_t)sprintf(buf + k, "*3\r\n:%u\r\n:%u\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n",
                             i % PG_SLOT_COUNT, i % PG_SLOT_COUNT);
    *len = k;
    return buf;
}

/* Ranges never overlap, so more entries than slots is a broken or hostile
 * server: refused before any is read (each may name a new master, looked up
 * among all the others; 70000 of them took seconds and wrapped owners). */
static void more_ranges_than_slots(void **state)
{
    (void)state;
    pg_slot_map_t m;
    char err[256];
    size_t len;
    char *text = one_slot_ranges(PG_SLOT_COUNT, &len);
    pg_slot_map_init(&m);
    assert_int_equal(parse_n(text, len, &m, err), 0);
    assert_true(pg_slot_map_complete(&m));
    assert_int_equal(m.nshards, 1);
    pg_slot_map_free(&m);
    free(text);

    text = one_slot_ranges(PG_SLOT_COUNT + 1, &len);
    pg_slot_map_init(&m);
    assert_int_equal(parse_n(text, len, &m, err), -1);
    assert_string_equal(err, "CLUSTER SLOTS: 16385 ranges, more than there are slots");
    assert_int_equal(m.covered, 0);
    pg_slot_map_free(&m);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(three_masters_with_replicas),
        cmocka_unit_test(unknown_and_empty_endpoints),
        cmocka_unit_test(empty_cluster_is_an_empty_map),
        cmocka_unit_test(malformed_replies),
        cmocka_unit_test(host_with_a_nul_byte),
        cmocka_unit_test(no_reply),
        cmocka_unit_test(more_ranges_than_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
