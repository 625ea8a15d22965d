/* fuzz_wsframe - pg_wsf_feed() on arbitrary client bytes.
 *
 * The reader must never read or write out of bounds (ASan), and what it
 * reports must not depend on how TCP cut the bytes: the input fed whole
 * and fed in two pieces (cut where its first byte says) gives the same
 * events and the same close code. Every whole text message it reports is
 * valid UTF-8 and within the limit, every control payload at most 125
 * bytes, a Close code one that may be sent, and nothing follows a Close. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wsframe.h"
#include "pg_buf.h"

#define MAX_MSG 1000

typedef struct run {
    pg_buf_t msg;      /* the text message being put together */
    pg_buf_t log;      /* what was reported, in order */
    int      closed;
} run_t;

static int on_event(void *arg, int type, const uint8_t *p, size_t n, int fin, uint16_t code)
{
    run_t *r = arg;
    if (r->closed)
        abort();   /* nothing after a Close */
    switch (type) {
    case PG_WSF_TEXT:
        if (n)
            pg_buf_append(&r->msg, p, n);
        if (r->msg.len > MAX_MSG)
            abort();
        if (fin) {
            if (!pg_utf8_valid(r->msg.data ? r->msg.data : "", r->msg.len))
                abort();
            pg_buf_printf(&r->log, "T%zu:", r->msg.len);
            pg_buf_append(&r->log, r->msg.data ? r->msg.data : "", r->msg.len);
            pg_buf_reset(&r->msg);
        }
        break;
    case PG_WSF_PING:
    case PG_WSF_PONG:
        if (n > 125 || !fin)
            abort();
        pg_buf_printf(&r->log, "%c%zu:", type == PG_WSF_PING ? 'I' : 'O', n);
        pg_buf_append(&r->log, p, n);
        break;
    case PG_WSF_CLOSE:
        if (n > 125 || n == 1 || code < 1000 || code > 4999 || code == 1005 || code == 1006)
            abort();
        pg_buf_printf(&r->log, "C%u", code);
        r->closed = 1;
        break;
    default:
        abort();
    }
    return 0;
}

static uint16_t feed(const uint8_t *data, size_t size, size_t cut, run_t *r)
{
    pg_wsf_t f;
    memset(&f, 0, sizeof(f));
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    uint16_t code = pg_wsf_feed(&f, copy, cut, MAX_MSG, on_event, r);
    if (code == 0)
        code = pg_wsf_feed(&f, copy + cut, size - cut, MAX_MSG, on_event, r);
    free(copy);
    return code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = data[0] % size;
    data++;
    size--;
    if (cut > size)
        cut = size;
    run_t a = { PG_BUF_INIT, PG_BUF_INIT, 0 }, b = { PG_BUF_INIT, PG_BUF_INIT, 0 };
    uint16_t ca = feed(data, size, size, &a);
    uint16_t cb = feed(data, size, cut, &b);
    if (ca != cb || a.log.len != b.log.len ||
        (a.log.len && memcmp(a.log.data, b.log.data, a.log.len) != 0))
        abort();
    if (ca != 0 && ca != 1002 && ca != 1003 && ca != 1007 && ca != 1009)
        abort();
    pg_buf_free(&a.msg);
    pg_buf_free(&a.log);
    pg_buf_free(&b.msg);
    pg_buf_free(&b.log);
    return 0;
}
