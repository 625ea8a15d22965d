/* test_msg.c - SPEC §3 payload rules, delivery JSON, SSE text, WS frame
 * headers and reference counting. */
#define _GNU_SOURCE /* memmem */
#include "test_alloc.h"
#include "pg_msg.h"
#include "pg_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#define MAX 65536
#define FFFD "\xEF\xBF\xBD"

/* Build from a payload literal and compare both views exactly. */
static void check_len(const char *chan, const char *payload, size_t len, const char *json,
                      const char *sse)
{
    int err = -1;
    pg_msg_t *m = pg_msg_from_payload(chan, payload, len, MAX, &err);
    if (!m)
        fail_msg("payload %s: NULL (err %d)", payload, err);
    assert_int_equal(err, 0);
    assert_int_equal(m->refs, 1);
    assert_string_equal(m->channel, chan);
    if (strcmp(m->json, json) != 0)
        fail_msg("payload %s\n got json %s\nwant json %s", payload, m->json, json);
    assert_int_equal(m->json_len, strlen(json));
    if (strcmp(m->sse, sse) != 0)
        fail_msg("payload %s\n got sse %s\nwant sse %s", payload, m->sse, sse);
    assert_int_equal(m->sse_len, strlen(sse));
    pg_msg_unref(&m);
    assert_null(m);
}
#define CHECK(chan, payload, json, sse) check_len((chan), (payload), sizeof(payload) - 1, (json), (sse))

static uint64_t id_of(const char *payload)
{
    int err;
    pg_msg_t *m = pg_msg_from_payload("c", payload, strlen(payload), MAX, &err);
    assert_non_null(m);
    uint64_t id = m->id;
    /* the id member appears in the head of the delivery exactly when there
     * is an id (the data after it may hold an "id" of its own) */
    const char *d = strstr(m->json, ",\"data\":");
    assert_non_null(d);
    assert_int_equal(memmem(m->json, (size_t)(d - m->json), "\"id\":", 5) != NULL, id != 0);
    assert_int_equal(strncmp(m->sse, "id: ", 4) == 0, id != 0);
    pg_msg_unref(&m);
    return id;
}

static void envelope(void **state)
{
    (void)state;
    CHECK("user:42", "{\"event\":\"order.shipped\",\"data\":{\"order\":7}}",
          "{\"channel\":\"user:42\",\"event\":\"order.shipped\",\"data\":{\"order\":7}}",
          "event: order.shipped\ndata: {\"channel\":\"user:42\",\"event\":\"order.shipped\",\"data\":{\"order\":7}}\n\n");
    CHECK("user:42", "{\"id\":\"1234\",\"event\":\"order.shipped\",\"data\":{\"order\":7}}",
          "{\"channel\":\"user:42\",\"event\":\"order.shipped\",\"id\":\"1234\",\"data\":{\"order\":7}}",
          "id: 1234\nevent: order.shipped\ndata: {\"channel\":\"user:42\",\"event\":\"order.shipped\",\"id\":\"1234\",\"data\":{\"order\":7}}\n\n");
    CHECK("news", "{\"data\":{\"a\":[1,2.50,\"x/y\"],\"b\":{}}}",
          "{\"channel\":\"news\",\"data\":{\"a\":[1,2.50,\"x/y\"],\"b\":{}}}",
          "data: {\"channel\":\"news\",\"data\":{\"a\":[1,2.50,\"x/y\"],\"b\":{}}}\n\n");
    /* Whitespace is normalised away; members other than data/event/id dropped. */
    CHECK("news", " \n{ \"data\" : [ 1 , 2 ] , \"extra\": true }\r\n\t ",
          "{\"channel\":\"news\",\"data\":[1,2]}", "data: {\"channel\":\"news\",\"data\":[1,2]}\n\n");
    /* data null is still an envelope. */
    CHECK("news", "{\"data\":null,\"event\":\"e\"}", "{\"channel\":\"news\",\"event\":\"e\",\"data\":null}",
          "event: e\ndata: {\"channel\":\"news\",\"event\":\"e\",\"data\":null}\n\n");
    /* A non-string event is ignored. */
    CHECK("news", "{\"event\":5,\"data\":1}", "{\"channel\":\"news\",\"data\":1}",
          "data: {\"channel\":\"news\",\"data\":1}\n\n");
    CHECK("news", "{\"event\":null,\"data\":1}", "{\"channel\":\"news\",\"data\":1}",
          "data: {\"channel\":\"news\",\"data\":1}\n\n");
    CHECK("news", "{\"event\":[\"x\"],\"data\":1}", "{\"channel\":\"news\",\"data\":1}",
          "data: {\"channel\":\"news\",\"data\":1}\n\n");
    /* An empty event string is still an event. */
    CHECK("news", "{\"event\":\"\",\"data\":1}", "{\"channel\":\"news\",\"event\":\"\",\"data\":1}",
          "event: \ndata: {\"channel\":\"news\",\"event\":\"\",\"data\":1}\n\n");
}

static void not_envelope(void **state)
{
    (void)state;
    /* Object without data: the object is the data. */
    CHECK("c", "{\"event\":\"x\",\"a\":1}", "{\"channel\":\"c\",\"data\":{\"event\":\"x\",\"a\":1}}",
          "data: {\"channel\":\"c\",\"data\":{\"event\":\"x\",\"a\":1}}\n\n");
    /* JSON that is not an object. */
    CHECK("c", "[1,{\"data\":2}]", "{\"channel\":\"c\",\"data\":[1,{\"data\":2}]}",
          "data: {\"channel\":\"c\",\"data\":[1,{\"data\":2}]}\n\n");
    CHECK("c", "42", "{\"channel\":\"c\",\"data\":42}", "data: {\"channel\":\"c\",\"data\":42}\n\n");
    CHECK("c", "-1.5e3", "{\"channel\":\"c\",\"data\":-1.5e3}", "data: {\"channel\":\"c\",\"data\":-1.5e3}\n\n");
    CHECK("c", "\"str\"", "{\"channel\":\"c\",\"data\":\"str\"}", "data: {\"channel\":\"c\",\"data\":\"str\"}\n\n");
    CHECK("c", "true", "{\"channel\":\"c\",\"data\":true}", "data: {\"channel\":\"c\",\"data\":true}\n\n");
    CHECK("c", "null", "{\"channel\":\"c\",\"data\":null}", "data: {\"channel\":\"c\",\"data\":null}\n\n");
    CHECK("c", " 7 ", "{\"channel\":\"c\",\"data\":7}", "data: {\"channel\":\"c\",\"data\":7}\n\n");
}

static void non_json(void **state)
{
    (void)state;
    CHECK("c", "hello", "{\"channel\":\"c\",\"data\":\"hello\"}", "data: {\"channel\":\"c\",\"data\":\"hello\"}\n\n");
    CHECK("c", "", "{\"channel\":\"c\",\"data\":\"\"}", "data: {\"channel\":\"c\",\"data\":\"\"}\n\n");
    CHECK("c", "   ", "{\"channel\":\"c\",\"data\":\"   \"}", "data: {\"channel\":\"c\",\"data\":\"   \"}\n\n");
    CHECK("c", "{\"data\":1} x", "{\"channel\":\"c\",\"data\":\"{\\\"data\\\":1} x\"}",
          "data: {\"channel\":\"c\",\"data\":\"{\\\"data\\\":1} x\"}\n\n");
    CHECK("c", "{\"data\":1}{}", "{\"channel\":\"c\",\"data\":\"{\\\"data\\\":1}{}\"}",
          "data: {\"channel\":\"c\",\"data\":\"{\\\"data\\\":1}{}\"}\n\n");
    CHECK("c", "{\"data\":", "{\"channel\":\"c\",\"data\":\"{\\\"data\\\":\"}",
          "data: {\"channel\":\"c\",\"data\":\"{\\\"data\\\":\"}\n\n");
    CHECK("c", "[1,]", "{\"channel\":\"c\",\"data\":\"[1,]\"}", "data: {\"channel\":\"c\",\"data\":\"[1,]\"}\n\n");
    CHECK("c", "'x'", "{\"channel\":\"c\",\"data\":\"'x'\"}", "data: {\"channel\":\"c\",\"data\":\"'x'\"}\n\n");
    CHECK("c", "01", "{\"channel\":\"c\",\"data\":\"01\"}", "data: {\"channel\":\"c\",\"data\":\"01\"}\n\n");
    CHECK("c", "tru", "{\"channel\":\"c\",\"data\":\"tru\"}", "data: {\"channel\":\"c\",\"data\":\"tru\"}\n\n");
    /* json-c takes these; JSON does not. */
    CHECK("c", "NaN", "{\"channel\":\"c\",\"data\":\"NaN\"}", "data: {\"channel\":\"c\",\"data\":\"NaN\"}\n\n");
    CHECK("c", "[Infinity]", "{\"channel\":\"c\",\"data\":\"[Infinity]\"}",
          "data: {\"channel\":\"c\",\"data\":\"[Infinity]\"}\n\n");
    CHECK("c", "{\"data\":-Infinity}", "{\"channel\":\"c\",\"data\":\"{\\\"data\\\":-Infinity}\"}",
          "data: {\"channel\":\"c\",\"data\":\"{\\\"data\\\":-Infinity}\"}\n\n");
    /* Integers json-c would clamp go out as text, not as another number. */
    CHECK("c", "18446744073709551616", "{\"channel\":\"c\",\"data\":\"18446744073709551616\"}",
          "data: {\"channel\":\"c\",\"data\":\"18446744073709551616\"}\n\n");
    CHECK("c", "[-9223372036854775809]", "{\"channel\":\"c\",\"data\":\"[-9223372036854775809]\"}",
          "data: {\"channel\":\"c\",\"data\":\"[-9223372036854775809]\"}\n\n");
    CHECK("c", "[18446744073709551614,-9223372036854775807,9223372036854775807]",
          "{\"channel\":\"c\",\"data\":[18446744073709551614,-9223372036854775807,9223372036854775807]}",
          "data: {\"channel\":\"c\",\"data\":[18446744073709551614,-9223372036854775807,9223372036854775807]}\n\n");
    CHECK("c", "1e400", "{\"channel\":\"c\",\"data\":1e400}", "data: {\"channel\":\"c\",\"data\":1e400}\n\n");
    /* A raw NUL: never JSON. */
    CHECK("c", "1\0002", "{\"channel\":\"c\",\"data\":\"1\\u00002\"}", "data: {\"channel\":\"c\",\"data\":\"1\\u00002\"}\n\n");
    /* Too deep for the parser: delivered as text, not lost. */
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    int err;
    pg_msg_t *m = pg_msg_from_payload("c", deep, 200, MAX, &err);
    assert_non_null(m);
    assert_int_equal(strncmp(m->json, "{\"channel\":\"c\",\"data\":\"[[[", 26), 0);
    pg_msg_unref(&m);
}

static void unicode_and_newlines(void **state)
{
    (void)state;
    CHECK("c", "{\"data\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\",\"event\":\"\xC3\xBC\"}",
          "{\"channel\":\"c\",\"event\":\"\xC3\xBC\",\"data\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}",
          "event: \xC3\xBC\ndata: {\"channel\":\"c\",\"event\":\"\xC3\xBC\",\"data\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}\n\n");
    CHECK("c", "\"\\u00e9\\ud83d\\ude00\"", "{\"channel\":\"c\",\"data\":\"\xC3\xA9\xF0\x9F\x98\x80\"}",
          "data: {\"channel\":\"c\",\"data\":\"\xC3\xA9\xF0\x9F\x98\x80\"}\n\n");
    /* Newlines never reach the SSE text raw: escaped in JSON, spaces in the
     * event line. */
    CHECK("c", "line1\nline2\r\n", "{\"channel\":\"c\",\"data\":\"line1\\nline2\\r\\n\"}",
          "data: {\"channel\":\"c\",\"data\":\"line1\\nline2\\r\\n\"}\n\n");
    CHECK("c", "{\"data\":\"a\\nb\"}", "{\"channel\":\"c\",\"data\":\"a\\nb\"}",
          "data: {\"channel\":\"c\",\"data\":\"a\\nb\"}\n\n");
    CHECK("c", "{\"event\":\"a\\nb\\rc\\u0000d\",\"data\":0}",
          "{\"channel\":\"c\",\"event\":\"a\\nb\\rc\\u0000d\",\"data\":0}",
          "event: a b c d\ndata: {\"channel\":\"c\",\"event\":\"a\\nb\\rc\\u0000d\",\"data\":0}\n\n");
    CHECK("c", "{\"data\":\"\\u2028</script>\"}", "{\"channel\":\"c\",\"data\":\"\xE2\x80\xA8</script>\"}",
          "data: {\"channel\":\"c\",\"data\":\"\xE2\x80\xA8</script>\"}\n\n");
}

static void invalid_utf8(void **state)
{
    (void)state;
    CHECK("c", "\xFF" "abc", "{\"channel\":\"c\",\"data\":\"" FFFD "abc\"}",
          "data: {\"channel\":\"c\",\"data\":\"" FFFD "abc\"}\n\n");
    /* Inside otherwise valid JSON: the payload is not JSON, so the whole of
     * it becomes a string, with U+FFFD for each bad byte. */
    CHECK("c", "{\"data\":\"\xC0\x80\"}", "{\"channel\":\"c\",\"data\":\"{\\\"data\\\":\\\"" FFFD FFFD "\\\"}\"}",
          "data: {\"channel\":\"c\",\"data\":\"{\\\"data\\\":\\\"" FFFD FFFD "\\\"}\"}\n\n");
    CHECK("c", "\"\xED\xA0\x80\"", "{\"channel\":\"c\",\"data\":\"\\\"" FFFD FFFD FFFD "\\\"\"}",
          "data: {\"channel\":\"c\",\"data\":\"\\\"" FFFD FFFD FFFD "\\\"\"}\n\n");
    CHECK("c", "\"\xF4\x90\x80\x80\"", "{\"channel\":\"c\",\"data\":\"\\\"" FFFD FFFD FFFD FFFD "\\\"\"}",
          "data: {\"channel\":\"c\",\"data\":\"\\\"" FFFD FFFD FFFD FFFD "\\\"\"}\n\n");
    CHECK("c", "x\xE2\x82", "{\"channel\":\"c\",\"data\":\"x" FFFD FFFD "\"}",
          "data: {\"channel\":\"c\",\"data\":\"x" FFFD FFFD "\"}\n\n");
}

static void size_limit(void **state)
{
    (void)state;
    char buf[64];
    int err = 0;
    memset(buf, 'x', sizeof buf);
    pg_msg_t *m = pg_msg_from_payload("c", buf, 16, 16, &err);
    assert_non_null(m);
    assert_int_equal(err, 0);
    pg_msg_unref(&m);
    m = pg_msg_from_payload("c", buf, 17, 16, &err);
    assert_null(m);
    assert_int_equal(err, PG_MSG_E_TOO_BIG);
    m = pg_msg_from_payload("c", buf, 17, 16, NULL);   /* err may be NULL */
    assert_null(m);
    /* exactly at the limit with a real envelope */
    const char *env = "{\"data\":123456}";
    m = pg_msg_from_payload("c", env, strlen(env), strlen(env), &err);
    assert_non_null(m);
    assert_string_equal(m->json, "{\"channel\":\"c\",\"data\":123456}");
    pg_msg_unref(&m);
    m = pg_msg_from_payload("c", env, strlen(env), strlen(env) - 1, &err);
    assert_null(m);
    assert_int_equal(err, PG_MSG_E_TOO_BIG);
}

static void ids(void **state)
{
    (void)state;
    assert_true(id_of("{\"id\":\"1234\",\"data\":1}") == 1234);
    assert_true(id_of("{\"id\":1234,\"data\":1}") == 1234);
    assert_true(id_of("{\"id\":\"9007199254740991\",\"data\":1}") == 9007199254740991ull);
    assert_true(id_of("{\"id\":\"9999999999999999999\",\"data\":1}") == 9999999999999999999ull);
    assert_true(id_of("{\"id\":\"0012\",\"data\":1}") == 12);
    /* garbage is ignored, the message still delivered */
    assert_true(id_of("{\"id\":\"12a\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":\"\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":\"-5\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":\" 5\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":\"10000000000000000000\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":-5,\"data\":1}") == 0);
    assert_true(id_of("{\"id\":0,\"data\":1}") == 0);
    assert_true(id_of("{\"id\":\"0\",\"data\":1}") == 0);
    assert_true(id_of("{\"id\":1.5,\"data\":1}") == 0);
    assert_true(id_of("{\"id\":true,\"data\":1}") == 0);
    assert_true(id_of("{\"id\":null,\"data\":1}") == 0);
    assert_true(id_of("{\"id\":[1],\"data\":1}") == 0);
    assert_true(id_of("{\"id\":{\"a\":1},\"data\":1}") == 0);
    /* id outside an envelope is just data */
    assert_true(id_of("{\"id\":\"7\"}") == 0);
    CHECK("c", "{\"id\":77,\"data\":\"x\"}", "{\"channel\":\"c\",\"id\":\"77\",\"data\":\"x\"}",
          "id: 77\ndata: {\"channel\":\"c\",\"id\":\"77\",\"data\":\"x\"}\n\n");
}

static void ws_header_for(size_t n, const unsigned char *want, size_t wlen)
{
    char *json = malloc(n + 1);
    memset(json, 'j', n);
    pg_msg_t *m = pg_msg_control(json, n, NULL);
    assert_non_null(m);
    assert_int_equal(m->json_len, n);
    assert_int_equal(m->ws_hdr_len, wlen);
    assert_true(m->ws_hdr_len <= PG_MSG_PRE);
    assert_memory_equal(m->json - m->ws_hdr_len, want, wlen);
    assert_memory_equal(m->json, json, n);
    assert_int_equal(m->json[n], '\0');
    /* The SSE view of a control frame without an event. */
    assert_int_equal(m->sse_len, 6 + n + 2);
    assert_memory_equal(m->sse, "data: ", 6);
    assert_memory_equal(m->sse + 6 + n, "\n\n", 3);
    /* Both headrooms are writable (ASan checks the bounds). */
    memset(m->json - PG_MSG_PRE, 0xAA, PG_MSG_PRE);
    memset(m->sse - PG_MSG_PRE, 0xBB, PG_MSG_PRE);
    assert_memory_equal(m->json, json, n);
    pg_msg_unref(&m);
    free(json);
}

static void ws_headers(void **state)
{
    (void)state;
    ws_header_for(0, (const unsigned char *)"\x81\x00", 2);
    ws_header_for(125, (const unsigned char *)"\x81\x7d", 2);
    ws_header_for(126, (const unsigned char *)"\x81\x7e\x00\x7e", 4);
    ws_header_for(65535, (const unsigned char *)"\x81\x7e\xff\xff", 4);
    ws_header_for(65536, (const unsigned char *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    ws_header_for(70000, (const unsigned char *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
    /* and on a delivery */
    int err;
    pg_msg_t *m = pg_msg_from_payload("c", "1", 1, MAX, &err);
    assert_int_equal(m->json_len, strlen("{\"channel\":\"c\",\"data\":1}"));
    assert_int_equal(m->ws_hdr_len, 2);
    assert_int_equal((unsigned char)m->json[-2], 0x81);
    assert_int_equal((unsigned char)m->json[-1], m->json_len);
    assert_true(m->recv_ns > 0 && m->recv_ns <= pg_mono_ns());
    pg_msg_unref(&m);
}

static void control_and_raw(void **state)
{
    (void)state;
    const char *j = "{\"type\":\"recovery\",\"complete\":false}";
    pg_msg_t *m = pg_msg_control(j, strlen(j), "pushgate.recovery");
    assert_non_null(m);
    assert_null(m->channel);
    assert_true(m->id == 0);
    assert_string_equal(m->json, j);
    assert_string_equal(m->sse, "event: pushgate.recovery\ndata: {\"type\":\"recovery\",\"complete\":false}\n\n");
    assert_int_equal(m->sse_len, strlen(m->sse));
    pg_msg_unref(&m);
    m = pg_msg_control("{\"type\":\"pong\"}", 15, NULL);
    assert_string_equal(m->sse, "data: {\"type\":\"pong\"}\n\n");
    pg_msg_unref(&m);
    m = pg_msg_sse_raw(": ping\n\n", 8);
    assert_non_null(m);
    assert_int_equal(m->json_len, 0);
    assert_string_equal(m->json, "");
    assert_string_equal(m->sse, ": ping\n\n");
    assert_int_equal(m->sse_len, 8);
    assert_null(m->channel);
    pg_msg_unref(&m);
}

static void one_allocation(void **state)
{
    (void)state;
    /* struct, channel and both views live in one block (SPEC §4: encoded
     * once, shared by every recipient). */
    long before = pg_test_allocs;
    pg_msg_t *m = pg_msg_control("{\"type\":\"pong\"}", 15, "x");
    assert_int_equal(pg_test_allocs - before, 1);
    pg_msg_unref(&m);
    before = pg_test_allocs;
    m = pg_msg_sse_raw(": ping\n\n", 8);
    assert_int_equal(pg_test_allocs - before, 1);
    pg_msg_unref(&m);
    int err;
    m = pg_msg_from_payload("news", "{\"data\":1}", 10, MAX, &err);
    assert_true((char *)m->channel > (char *)m && m->channel < m->json && m->json < m->sse);
    assert_true(m->sse + m->sse_len - (char *)m < (ptrdiff_t)(sizeof *m + 5 + 3 * PG_MSG_PRE + 2 * m->json_len + 16));
    pg_msg_unref(&m);
}

static void refcounting(void **state)
{
    (void)state;
    int err;
    pg_msg_t *m = pg_msg_from_payload("c", "1", 1, MAX, &err);
    pg_msg_t *a = pg_msg_ref(m);
    pg_msg_t *b = pg_msg_ref(m);
    assert_ptr_equal(a, m);
    assert_int_equal(m->refs, 3);
    pg_msg_unref(&a);
    assert_null(a);
    assert_int_equal(m->refs, 2);
    pg_msg_unref(&b);
    assert_int_equal(m->refs, 1);
    pg_msg_unref(&m);   /* freed here; cmocka flags a leak otherwise */
    assert_null(m);
    pg_msg_unref(&m);   /* *mp == NULL: no-op */
    pg_msg_unref(NULL);
}

static void underflow_asserts(void **state)
{
    (void)state;
    /* pg_assert aborts; run it in a child so the suite survives. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 2);
        pg_msg_t *m = pg_msg_sse_raw("x", 1);
        m->refs = 0;
        pg_msg_unref(&m);
        _exit(0);   /* not reached */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
}

static void out_of_memory(void **state)
{
    (void)state;
    const char *p = "{\"event\":\"e\",\"id\":\"5\",\"data\":\"x\"}";
    int ok = 0;
    for (long k = 0; k < 20; k++) {
        int err = 0;
        pg_test_fail_after = k;
        pg_msg_t *m = pg_msg_from_payload("c", p, strlen(p), MAX, &err);
        if (m) {
            ok++;
            assert_int_equal(err, 0);
            pg_msg_unref(&m);
        } else {
            assert_int_equal(err, PG_MSG_E_NOMEM);
        }
        pg_test_fail_after = k;
        m = pg_msg_from_payload("c", "\xFFnot json", 9, MAX, &err);
        pg_msg_unref(&m);
        pg_test_fail_after = k;
        m = pg_msg_control("{}", 2, "e");
        pg_msg_unref(&m);
        pg_test_fail_after = k;
        m = pg_msg_sse_raw("x", 1);
        pg_msg_unref(&m);
    }
    pg_test_fail_after = -1;
    assert_true(ok > 0);
}

static void keepalive_is_a_ping_frame_and_an_sse_comment(void **state)
{
    (void)state;
    pg_msg_t *m = pg_msg_keepalive();
    assert_non_null(m);
    assert_null(m->channel);            /* not counted as a delivery */
    const unsigned char *f = (const unsigned char *)m->json - m->ws_hdr_len;
    assert_int_equal(m->ws_hdr_len + m->json_len, 4);
    /* FIN | ping, unmasked, 2 bytes of payload: lws hands a non-empty pong
     * to the gateway, an empty one to nobody */
    assert_int_equal(f[0], 0x89);
    assert_int_equal(f[1], 2);
    assert_memory_equal(f + 2, "pg", 2);
    assert_int_equal(m->sse_len, 8);
    assert_string_equal(m->sse, ": ping\n\n");
    pg_msg_unref(&m);
}

/* A cluster SSE connection's own copy: its id line, the rest unchanged. */
static void sse_with_own_id(void **state)
{
    (void)state;
    int err;
    static const char p[] = "{\"event\":\"e\",\"id\":\"1764277200124000\",\"data\":1}";
    pg_msg_t *m = pg_msg_from_payload("news", p, sizeof(p) - 1, MAX, &err);
    assert_non_null(m);
    static const char list[] = "1764277200124000,broadcast:1764277200000000,user:42:7";
    pg_msg_t *c = pg_msg_sse_with_id(m, list, sizeof(list) - 1);
    assert_non_null(c);
    static const char want[] = "id: 1764277200124000,broadcast:1764277200000000,user:42:7\n"
                               "event: e\n"
                               "data: {\"channel\":\"news\",\"event\":\"e\","
                               "\"id\":\"1764277200124000\",\"data\":1}\n\n";
    assert_int_equal(c->sse_len, sizeof(want) - 1);
    assert_string_equal(c->sse, want);
    assert_string_equal(c->channel, "news");   /* still a delivery (count_delivery) */
    assert_int_equal(c->id, m->id);
    assert_int_equal(c->recv_ns, m->recv_ns);
    assert_int_equal(c->json_len, 0);
    assert_int_equal(c->refs, 1);
    /* the shared message is untouched */
    assert_int_equal(strncmp(m->sse, "id: 1764277200124000\nevent: e\n", 30), 0);
    memset(c->sse - PG_MSG_PRE, 0xBB, PG_MSG_PRE);   /* headroom writable (ASan) */
    pg_msg_unref(&c);
    pg_test_fail_after = 0;
    assert_null(pg_msg_sse_with_id(m, list, sizeof(list) - 1));
    pg_test_fail_after = -1;
    pg_msg_unref(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(envelope),
        cmocka_unit_test(not_envelope),
        cmocka_unit_test(non_json),
        cmocka_unit_test(unicode_and_newlines),
        cmocka_unit_test(invalid_utf8),
        cmocka_unit_test(size_limit),
        cmocka_unit_test(ids),
        cmocka_unit_test(ws_headers),
        cmocka_unit_test(control_and_raw),
        cmocka_unit_test(one_allocation),
        cmocka_unit_test(refcounting),
        cmocka_unit_test(underflow_asserts),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(keepalive_is_a_ping_frame_and_an_sse_comment),
        cmocka_unit_test(sse_with_own_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
