/* pg_backoff.c - capped exponential backoff with equal jitter. */
#include "pg_backoff.h"

#include <stdlib.h>

void pg_backoff_init(pg_backoff_t *b, unsigned base_ms, unsigned cap_ms)
{
    b->base_ms = base_ms;
    b->cap_ms = cap_ms;
    b->attempt = 0;
}

unsigned pg_backoff_next(pg_backoff_t *b, uint32_t (*rng)(void *ctx), void *ctx)
{
    /* base * 2^attempt in 64 bits: base < 2^32 and the shift stops at 31,
     * so nothing overflows; past that the cap has long been reached. */
    uint64_t d = b->cap_ms;
    if (b->attempt < 32) {
        uint64_t x = (uint64_t)b->base_ms << b->attempt;
        if (x < d)
            d = x;
    }
    if (b->attempt < 64)
        b->attempt++;
    uint64_t half = d / 2;
    uint64_t span = d - half + 1;  /* values in [half, d] */
    uint64_t r = rng ? rng(ctx) : 0;
    return (unsigned)(half + (rng ? r % span : span - 1));
}

void pg_backoff_reset(pg_backoff_t *b)
{
    b->attempt = 0;
}

uint32_t pg_backoff_random(void *ctx)
{
    (void)ctx;
    return (uint32_t)random();
}
