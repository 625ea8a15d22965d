/* test_cmd.c - WebSocket client commands. */
#include "test_alloc.h"
#include "pg_cmd.h"

static pg_cmd_t c;
static const char *code;
static char err[PG_ERRLEN];

static int parse(const char *s)
{
    code = NULL;
    err[0] = '\0';
    return pg_cmd_parse(s, strlen(s), &c, &code, err, sizeof err);
}

static void bad(const char *s, const char *want)
{
    if (parse(s) != -1)
        fail_msg("%s: parsed", s);
    assert_non_null(code);
    if (strcmp(code, want) != 0)
        fail_msg("%s: code %s, want %s", s, code, want);
    assert_true(err[0] != '\0');
    /* the message goes into one JSON error frame and one log line */
    if (strchr(err, '\n') != NULL || strchr(err, '\r') != NULL)
        fail_msg("%s: error text has a line break: %s", s, err);
}

static void good(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"type\":\"ping\"}"), 0);
    assert_int_equal(c.type, PG_CMD_PING);
    assert_int_equal(parse("{\"type\":\"ping\",\"channel\":\"bad name\",\"since\":\"x\"}"), 0);
    assert_int_equal(c.type, PG_CMD_PING);
    assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"news\"}"), 0);
    assert_int_equal(c.type, PG_CMD_SUBSCRIBE);
    assert_string_equal(c.channel, "news");
    assert_false(c.has_since);
    assert_int_equal(parse(" {\"channel\":\"news\",\"since\":\"123\",\"type\":\"subscribe\",\"x\":[1]} "), 0);
    assert_int_equal(c.type, PG_CMD_SUBSCRIBE);
    assert_true(c.has_since);
    assert_true(c.since == 123);
    assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"news\",\"since\":0}"), 0);
    assert_true(c.has_since);
    assert_true(c.since == 0);
    assert_int_equal(parse("{\"type\":\"subscribe\",\"channel\":\"news\",\"since\":9007199254740991}"), 0);
    assert_true(c.since == 9007199254740991ull);
    assert_int_equal(parse("{\"type\":\"unsubscribe\",\"channel\":\"user:42\"}"), 0);
    assert_int_equal(c.type, PG_CMD_UNSUBSCRIBE);
    assert_string_equal(c.channel, "user:42");
    /* since means nothing to unsubscribe: ignored, not an error */
    assert_int_equal(parse("{\"type\":\"unsubscribe\",\"channel\":\"a\",\"since\":\"x\"}"), 0);
    assert_false(c.has_since);
    char longname[200];
    memset(longname, 'n', 128);
    longname[128] = '\0';
    char buf[300];
    snprintf(buf, sizeof buf, "{\"type\":\"subscribe\",\"channel\":\"%s\"}", longname);
    assert_int_equal(parse(buf), 0);
    assert_string_equal(c.channel, longname);
}

static void errors(void **state)
{
    (void)state;
    bad("", "bad_json");
    bad("ping", "bad_json");
    bad("[\"ping\"]", "bad_json");
    bad("\"ping\"", "bad_json");
    bad("null", "bad_json");
    bad("{\"type\":\"ping\"", "bad_json");
    bad("{\"type\":\"ping\"} x", "bad_json");
    bad("{\"type\":\"ping\"}{}", "bad_json");
    bad("{\"type\":\"p\xC0\x80\"}", "bad_json");
    bad("{}", "bad_command");
    bad("{\"type\":1}", "bad_command");
    bad("{\"type\":null}", "bad_command");
    bad("{\"Type\":\"ping\"}", "bad_command");
    bad("{\"type\":\"PING\"}", "unknown_type");
    bad("{\"type\":\"publish\",\"channel\":\"a\"}", "unknown_type");
    bad("{\"type\":\"\"}", "unknown_type");
    /* input that carries line breaks must not carry them into the message */
    bad("{\"type\":\"pi\\nng\"}", "unknown_type");
    bad("{\"type\":\"\\r\\nx\"}", "unknown_type");
    bad("{\"type\":\"subscribe\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":5}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"a b\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"user:\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\\u0000b\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\\nb\"}", "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"news\",\"since\":\"1\\n2\"}", "bad_since");
    bad("{\"type\":\"unsubscribe\",\"channel\":\"news*\"}", "bad_channel");
    char buf[300], longname[200];
    memset(longname, 'n', 129);
    longname[129] = '\0';
    snprintf(buf, sizeof buf, "{\"type\":\"subscribe\",\"channel\":\"%s\"}", longname);
    bad(buf, "bad_channel");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":\"\"}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":\"12x\"}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":\"-1\"}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":-1}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":1.5}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":null}", "bad_since");
    bad("{\"type\":\"subscribe\",\"channel\":\"a\",\"since\":\"99999999999999999999\"}", "bad_since");
    /* deeply nested junk is refused, not parsed */
    char deep[100];
    snprintf(deep, sizeof deep, "{\"type\":\"ping\",\"x\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]]}");
    bad(deep, "bad_json");
    /* a frame with a NUL inside */
    assert_int_equal(pg_cmd_parse("{\"type\":\"ping\"}\0", 16, &c, &code, err, sizeof err), -1);
    assert_string_equal(code, "bad_json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good),
        cmocka_unit_test(errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
