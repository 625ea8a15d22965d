/* test_chunk.c - the chunked body scanner (gateway/httpchunk.c): what it
 * decodes, where it says the body ends, and what it refuses. */
#include "test_alloc.h"
#include "httpchunk.h"

/* Feed in[0, len) in pieces of at most step bytes. Returns the bytes taken
 * (never past the body's end) or -1, with the data decoded in out. */
static long scan(const char *in, size_t len, size_t step, char *out, size_t *outlen,
                 pg_chunk_t *c)
{
    size_t off = 0;
    *outlen = 0;
    while (off < len && !c->done) {
        size_t avail = len - off < step ? len - off : step;
        size_t d;
        long k = pg_chunk_step(c, in + off, avail, &d);
        if (k < 0)
            return -1;
        assert_true(k > 0);
        assert_true((size_t)k <= avail);
        assert_true(d == 0 || d == (size_t)k);
        memcpy(out + *outlen, in + off + k - d, d);
        *outlen += d;
        off += (size_t)k;
    }
    return (long)off;
}

static void decodes_and_stops_at_the_end(void **state)
{
    (void)state;
    static const char in[] = "5\r\nhello\r\n7;ext=\"a b\"\r\n, world\r\n0\r\nX-T: v\r\n\r\nGET / HTTP/1.1\r\n";
    size_t body = strlen(in) - strlen("GET / HTTP/1.1\r\n");
    /* whole, then byte by byte, then in threes: the same result */
    size_t steps[] = { sizeof(in), 1, 3 };
    for (size_t i = 0; i < 3; i++) {
        pg_chunk_t c = PG_CHUNK_INIT;
        char out[64];
        size_t n;
        assert_int_equal(scan(in, strlen(in), steps[i], out, &n, &c), (long)body);
        assert_true(c.done);
        assert_int_equal(n, 12);
        assert_memory_equal(out, "hello, world", 12);
        /* once done, it takes nothing more */
        size_t d;
        assert_int_equal(pg_chunk_step(&c, "GET", 3, &d), 0);
    }
}

static void empty_body_and_hex_case(void **state)
{
    (void)state;
    pg_chunk_t c = PG_CHUNK_INIT;
    char out[64];
    size_t n;
    assert_int_equal(scan("0\r\n\r\n", 5, 5, out, &n, &c), 5);
    assert_true(c.done);
    assert_int_equal(n, 0);

    pg_chunk_t c2 = PG_CHUNK_INIT;
    char big[300];
    memset(big, 0, sizeof(big));
    memcpy(big, "1A\r\n", 4);
    memset(big + 4, 'x', 26);
    memcpy(big + 30, "\r\n0\r\n\r\n", 7);
    assert_int_equal(scan(big, 37, 37, out, &n, &c2), 37);
    assert_int_equal(n, 26);
}

static void incomplete_asks_for_more(void **state)
{
    (void)state;
    pg_chunk_t c = PG_CHUNK_INIT;
    char out[64];
    size_t n;
    assert_int_equal(scan("5\r\nhel", 6, 6, out, &n, &c), 6);
    assert_false(c.done);
    assert_int_equal(n, 3);
    assert_int_equal(scan("lo\r\n0\r\n", 7, 7, out, &n, &c), 7);
    assert_false(c.done);   /* the trailer section's CRLF is still due */
    assert_int_equal(scan("\r\n", 2, 2, out, &n, &c), 2);
    assert_true(c.done);
}

static void refuses_what_the_grammar_does_not_allow(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "zz\r\nhello\r\n0\r\n\r\n",            /* size not hex */
        " 5\r\nhello\r\n0\r\n\r\n",            /* whitespace before the size */
        "5 \r\nhello\r\n0\r\n\r\n",            /* BWS with no extension */
        "5\nhello\r\n0\r\n\r\n",               /* bare LF after the size */
        "4\r\nhello\r\n0\r\n\r\n",             /* data longer than the size */
        "5\r\nhello0\r\n\r\n",                 /* data not followed by CRLF */
        "-5\r\nhello\r\n0\r\n\r\n",            /* a sign */
        "5;a\x01\r\nhello\r\n0\r\n\r\n",       /* a control in an extension */
        "1000000000000000\r\n",                /* 16 hex digits */
        "0\r\n folded: x\r\n\r\n",             /* obs-fold in the trailers */
        "0\r\nno colon\r\n\r\n",               /* a trailer line without colon */
        "0\r\nX: a\rb\r\n\r\n",                /* bare CR in a trailer value */
        "0\r\n\n",                             /* bare LF ending the body */
        "\r\n",                                /* no size at all */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pg_chunk_t c = PG_CHUNK_INIT;
        char out[64];
        size_t n;
        assert_int_equal(scan(bad[i], strlen(bad[i]), 1, out, &n, &c), -1);
        /* and it stays refused */
        size_t d;
        assert_int_equal(pg_chunk_step(&c, "0\r\n\r\n", 5, &d), -1);
    }
}

static void long_lines_are_bounded(void **state)
{
    (void)state;
    /* an extension that never ends, and a trailer section past the limit */
    char *ext = malloc(PG_CHUNK_LINE_MAX + 16);
    assert_non_null(ext);
    memcpy(ext, "5;", 2);
    memset(ext + 2, 'a', PG_CHUNK_LINE_MAX + 13);
    pg_chunk_t c = PG_CHUNK_INIT;
    char out[64];
    size_t n;
    assert_int_equal(scan(ext, PG_CHUNK_LINE_MAX + 15, 64, out, &n, &c), -1);
    free(ext);

    size_t lines = PG_CHUNK_TRAILER_MAX / 10 + 2;
    char *tr = malloc(3 + lines * 10 + 2);
    assert_non_null(tr);
    memcpy(tr, "0\r\n", 3);
    for (size_t i = 0; i < lines; i++)
        memcpy(tr + 3 + i * 10, "X-Abc: v\r\n", 10);
    memcpy(tr + 3 + lines * 10, "\r\n", 2);
    pg_chunk_t c2 = PG_CHUNK_INIT;
    assert_int_equal(scan(tr, 3 + lines * 10 + 2, 100, out, &n, &c2), -1);
    free(tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_and_stops_at_the_end),
        cmocka_unit_test(empty_body_and_hex_case),
        cmocka_unit_test(incomplete_asks_for_more),
        cmocka_unit_test(refuses_what_the_grammar_does_not_allow),
        cmocka_unit_test(long_lines_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
