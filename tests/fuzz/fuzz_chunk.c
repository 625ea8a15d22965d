/* fuzz_chunk - pg_chunk_step() on arbitrary bytes, as a client sends a
 * chunked body.
 *
 * Whatever it is given, the scanner must: never take a byte past what it
 * was given or past the body's end, take something at every step until the
 * body ends or is refused, decide the same whether the bytes come whole or
 * in pieces (the first byte of the input picks the piece size), and decode
 * the same data both ways. A body it says has ended, scanned again alone,
 * ends at the same byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "httpchunk.h"

/* Scan in[0, len) in pieces of step bytes: the bytes taken, or -1. */
static long scan(const uint8_t *in, size_t len, size_t step, uint8_t *out, size_t *outlen,
                 int *done)
{
    pg_chunk_t c = PG_CHUNK_INIT;
    size_t off = 0;
    *outlen = 0;
    while (off < len && !c.done) {
        size_t avail = len - off < step ? len - off : step;
        size_t d;
        long k = pg_chunk_step(&c, (const char *)in + off, avail, &d);
        if (k < 0)
            return -1;
        if (k == 0 || (size_t)k > avail || (d != 0 && d != (size_t)k))
            abort();
        memcpy(out + *outlen, in + off + k - d, d);
        *outlen += d;
        off += (size_t)k;
    }
    *done = c.done;
    return (long)off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
    if (a == NULL || b == NULL)
        abort();
    size_t na, nb;
    int da, db;
    long ka = scan(data, size, size ? size : 1, a, &na, &da);
    long kb = scan(data, size, step, b, &nb, &db);
    if (ka != kb || (ka >= 0 && (da != db || na != nb || memcmp(a, b, na) != 0)))
        abort();
    if (ka > 0 && da) {
        size_t nc;
        int dc;
        if (scan(data, (size_t)ka, step, b, &nc, &dc) != ka || !dc || nc != na)
            abort();
    }
    if (ka >= 0 && na > (size_t)ka)
        abort();
    free(a);
    free(b);
    return 0;
}
