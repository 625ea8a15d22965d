/* fuzz_since - pg_since_parse() on arbitrary `since=` / Last-Event-ID text.
 *
 * Any client sends it, on every connect. A success must hold at most the
 * allowed entries, each a valid channel listed once with the id it was
 * given, and must read back the same after being written out again with
 * pg_since_append (the writer of SSE `id:` lists); a failure must leave a
 * NUL-terminated reason and nothing to free but what pg_since_free takes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_since.h"
#include "pg_util.h"

#define MAX_CHANNELS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pg_since_t s, again;
    char err[PG_ERRLEN];

    memset(err, 'x', sizeof err);
    if (pg_since_parse((const char *)data, size, MAX_CHANNELS, &s, err, sizeof err) != 0) {
        if (memchr(err, '\0', sizeof err) == NULL)
            abort();
        pg_since_free(&s);
        return 0;
    }
    if (s.n > MAX_CHANNELS || (s.n == 0 && !s.has_all))
        abort();
    pg_buf_t b = PG_BUF_INIT;
    if (s.has_all) {
        char num[24];
        size_t k = pg_u64toa(s.all, num);
        if (pg_buf_append(&b, num, k) < 0)
            abort();
    }
    for (size_t i = 0; i < s.n; i++) {
        uint64_t id;
        if (!pg_chan_valid(s.pos[i].channel, strlen(s.pos[i].channel)))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(s.pos[i].channel, s.pos[j].channel) == 0)
                abort();
        if (pg_since_get(&s, s.pos[i].channel, &id) != 1 || id != s.pos[i].id)
            abort();
        if (pg_since_append(&b, s.pos[i].channel, s.pos[i].id) < 0)
            abort();
    }
    /* written out and read again: the same positions */
    if (pg_since_parse(b.data, b.len, MAX_CHANNELS, &again, err, sizeof err) != 0 ||
        again.has_all != s.has_all || (s.has_all && again.all != s.all) || again.n != s.n)
        abort();
    for (size_t i = 0; i < s.n; i++)
        if (strcmp(again.pos[i].channel, s.pos[i].channel) != 0 || again.pos[i].id != s.pos[i].id)
            abort();
    pg_since_free(&again);
    pg_since_free(&s);
    pg_buf_free(&b);
    return 0;
}
