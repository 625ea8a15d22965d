/* test_log.c - text and JSON log lines, level filtering. */
#include "test_alloc.h"
#include "pg_log.h"

#include <fcntl.h>

static char line[4096];

/* Run pg_log_emit with stderr pointed at a temp file; return what it wrote. */
static const char *capture_start(int *saved, FILE **f)
{
    *f = tmpfile();
    assert_non_null(*f);
    fflush(stderr);
    *saved = dup(2);
    dup2(fileno(*f), 2);
    return NULL;
}

static const char *capture_end(int saved, FILE *f)
{
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(line, 1, sizeof line - 1, f);
    line[n] = '\0';
    fclose(f);
    return line;
}

static int side_effects;
static int touch(void)
{
    side_effects++;
    return 1;
}

static int is_ts(const char *s)
{
    /* 2026-11-27T20:53:22.123Z */
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (int i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
            return 0;
    }
    return 1;
}

static void levels(void **state)
{
    (void)state;
    assert_int_equal(pg_log_level_parse("error"), PG_LOG_ERROR);
    assert_int_equal(pg_log_level_parse("warn"), PG_LOG_WARN);
    assert_int_equal(pg_log_level_parse("info"), PG_LOG_INFO);
    assert_int_equal(pg_log_level_parse("debug"), PG_LOG_DEBUG);
    assert_int_equal(pg_log_level_parse("INFO"), -1);
    assert_int_equal(pg_log_level_parse("warning"), -1);
    assert_int_equal(pg_log_level_parse(""), -1);
    assert_int_equal(pg_log_level_parse(NULL), -1);
    assert_string_equal(pg_log_level_name(PG_LOG_WARN), "warn");
    assert_string_equal(pg_log_level_name(PG_LOG_ERROR), "error");
    assert_string_equal(pg_log_level_name(99), "?");
}

static void text_lines(void **state)
{
    (void)state;
    int saved;
    FILE *f;
    pg_log_json = 0;
    pg_log_node = "node-1";
    pg_log_level = PG_LOG_INFO;
    capture_start(&saved, &f);
    pg_log(PG_LOG_WARN, "hello %s %d", "world", 42);
    const char *s = capture_end(saved, f);
    assert_true(is_ts(s));
    assert_string_equal(s + 24, " warn node=node-1 hello world 42\n");

    pg_log_node = NULL;
    capture_start(&saved, &f);
    pg_log_emit(PG_LOG_ERROR, "trailing newline dropped\n");
    s = capture_end(saved, f);
    assert_string_equal(s + 24, " error trailing newline dropped\n");
}

static void json_lines(void **state)
{
    (void)state;
    int saved;
    FILE *f;
    pg_log_json = 1;
    pg_log_node = "n\"1";
    pg_log_level = PG_LOG_DEBUG;
    capture_start(&saved, &f);
    pg_log(PG_LOG_DEBUG, "say \"%s\"\tnow\nplease \xFF", "hi");
    const char *s = capture_end(saved, f);
    assert_int_equal(strncmp(s, "{\"ts\":\"", 7), 0);
    assert_true(is_ts(s + 7));
    assert_string_equal(s + 31,
        "\",\"level\":\"debug\",\"node\":\"n\\\"1\",\"msg\":\"say \\\"hi\\\"\\tnow\\nplease \xEF\xBF\xBD\"}\n");
    pg_log_node = NULL;
    capture_start(&saved, &f);
    pg_log(PG_LOG_INFO, "x");
    s = capture_end(saved, f);
    assert_string_equal(s + 31, "\",\"level\":\"info\",\"msg\":\"x\"}\n");
    pg_log_json = 0;
}

static void filtered_args_not_evaluated(void **state)
{
    (void)state;
    int saved;
    FILE *f;
    pg_log_json = 0;
    pg_log_level = PG_LOG_WARN;
    side_effects = 0;
    capture_start(&saved, &f);
    pg_log(PG_LOG_INFO, "%d", touch());
    pg_log(PG_LOG_DEBUG, "%d", touch());
    const char *s = capture_end(saved, f);
    assert_int_equal(side_effects, 0);
    assert_string_equal(s, "");
    capture_start(&saved, &f);
    pg_log(PG_LOG_ERROR, "%d", touch());
    s = capture_end(saved, f);
    assert_int_equal(side_effects, 1);
    assert_non_null(strstr(s, " error 1\n"));
    pg_log_level = PG_LOG_INFO;
}

static void long_message_is_cut_not_lost(void **state)
{
    (void)state;
    int saved;
    FILE *f;
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pg_log_json = 0;
    pg_log_node = NULL;
    capture_start(&saved, &f);
    pg_log(PG_LOG_ERROR, "%s", big);
    const char *s = capture_end(saved, f);
    size_t n = strlen(s);
    assert_true(n > 2000 && n < 2100);
    assert_int_equal(s[n - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(levels),
        cmocka_unit_test(text_lines),
        cmocka_unit_test(json_lines),
        cmocka_unit_test(filtered_args_not_evaluated),
        cmocka_unit_test(long_message_is_cut_not_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
