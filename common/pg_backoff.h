/* pg_backoff.h - capped exponential backoff with jitter for reconnects. */
#ifndef PG_BACKOFF_H
#define PG_BACKOFF_H

#include <stdint.h>

typedef struct pg_backoff {
    unsigned base_ms;
    unsigned cap_ms;
    unsigned attempt;
} pg_backoff_t;

void pg_backoff_init(pg_backoff_t *b, unsigned base_ms, unsigned cap_ms);
/* Next delay: d = min(cap, base * 2^attempt) (no overflow for any attempt),
 * returns a value in [d/2, d] drawn with rng(ctx) ("equal jitter", so
 * reconnecting nodes spread out but never retry at once), then attempt++. */
unsigned pg_backoff_next(pg_backoff_t *b, uint32_t (*rng)(void *ctx), void *ctx);
/* After a success: the next delay starts from base again. */
void pg_backoff_reset(pg_backoff_t *b);

/* An rng for pg_backoff_next from random(3): for callers that need no
 * reproducible draw (tests pass their own). ctx is unused. */
uint32_t pg_backoff_random(void *ctx);

#endif
