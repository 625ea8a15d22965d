/* fuzz_httphead - pg_head_check() on arbitrary bytes, as a client sends them.
 *
 * Whatever it is given, the checker must: decide or ask for more, never
 * read past len (ASan), and when it passes a head on to lws, hand over a
 * canonical one that it passes again unchanged: request line and "name:
 * value" lines with CRLF ends, no NUL, CR or LF inside a line, no byte
 * that lws could read two ways. A head asked to wait must be shorter than
 * the limit; consumed must lie within what was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "httphead.h"
#include "pg_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pg_head_t h, h2;
    pg_buf_t out = PG_BUF_INIT, again = PG_BUF_INIT;

    int rc = pg_head_check((const char *)data, size, &h, &out);
    if (rc == PG_AGAIN) {
        if (size >= PG_HEAD_MAX + 2048 || out.len != 0)
            abort();
        return 0;
    }
    if (rc != PG_OK)
        abort();
    if (h.status != 0) {
        pg_buf_free(&out);
        if (h.status < 400 || h.status > 505 || h.why == NULL || out.len != 0)
            abort();
        return 0;
    }
    if (h.consumed == 0 || h.consumed > size || out.len < 4 ||
        memcmp(out.data + out.len - 4, "\r\n\r\n", 4) != 0)
        abort();
    for (size_t i = 0; i < out.len; i++) {
        unsigned char c = (unsigned char)out.data[i];
        if (c == 0 || (c == '\r' && (i + 1 == out.len || out.data[i + 1] != '\n')) ||
            (c == '\n' && (i == 0 || out.data[i - 1] != '\r')))
            abort();
    }
    /* the canonical head is a fixed point; the one exception is an
     * HTTP/1.0 request without Host, which it writes as HTTP/1.1 */
    if (pg_head_check(out.data, out.len, &h2, &again) != PG_OK)
        abort();
    if (h2.status != 0) {
        if (h2.status != 400 || strcmp(h2.why, "one valid Host field is required") != 0)
            abort();
    } else if (h2.consumed != out.len || again.len != out.len ||
               memcmp(again.data, out.data, out.len) != 0)
        abort();
    pg_buf_free(&out);
    pg_buf_free(&again);
    return 0;
}
