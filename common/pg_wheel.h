/* pg_wheel.h - a hashed timer wheel: O(1) to arm, move or cancel a timer,
 * and a tick costs only the timers filed under that tick's slot.
 *
 * Why not lws's timers or one uv_timer per connection: lws 4.1 keeps every
 * connection's timeouts in one sorted list (O(connections) per insert), and
 * a uv_timer_t costs ~150 bytes and O(log n) per arm. A connection needs a
 * deadline or two (token expiry, recovery timeout, keepalive), re-armed
 * often and almost never cancelled early: the wheel's 24-byte entry fits.
 *
 * Time is in ticks, whatever unit the owner picks (the gateway: 100 ms of
 * CLOCK_MONOTONIC). A timer due further out than the wheel's span stays in
 * its slot and is passed over (one compare) on each lap until it is due.
 * Pure C, single-threaded, no allocation after pg_wheel_init. */
#ifndef PG_WHEEL_H
#define PG_WHEEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct pg_timer pg_timer_t;
typedef void (*pg_timer_cb)(pg_timer_t *t);

/* Embed one in the object it times (container_of to get back); set cb
 * before arming. Zeroed = idle. Linked into the wheel only while armed. */
struct pg_timer {
    pg_timer_t  *next;
    pg_timer_t **pprev;    /* NULL while idle */
    uint64_t     due;      /* tick at which it fires */
    pg_timer_cb  cb;       /* what firing calls */
};

typedef struct pg_wheel pg_wheel_t;

struct pg_wheel {
    pg_timer_t **slots;    /* nslots list heads; slot = due % nslots */
    unsigned     nslots;
    uint64_t     now;      /* last tick processed */
    size_t       armed;
    /* The owner's clock need not tick when no slot is due: it sets wake to
     * the tick it will next advance at, and earlier (if set) is called when
     * a timer is armed to fire before that, so it can wake sooner.
     * wake = 0 turns the calls off (e.g. while advancing). */
    uint64_t     wake;
    void       (*earlier)(pg_wheel_t *w, uint64_t due);
};

/* nslots > 0; now = the current tick. 0, or -1 on out-of-memory. */
int pg_wheel_init(pg_wheel_t *w, unsigned nslots, uint64_t now);
/* Free the slot array; armed timers are simply forgotten (made idle). */
void pg_wheel_free(pg_wheel_t *w);
/* Arm t to fire at tick due (a due at or before w->now fires on the next
 * advance). Re-arming an armed timer moves it. */
void pg_wheel_arm(pg_wheel_t *w, pg_timer_t *t, uint64_t due);
/* Disarm t; idle timers are left alone. */
void pg_wheel_cancel(pg_wheel_t *w, pg_timer_t *t);
/* 1 while t is armed. */
static inline int pg_timer_armed(const pg_timer_t *t) { return t->pprev != NULL; }
/* Process every tick up to now: each timer whose due has come is disarmed,
 * then its cb runs; cb may re-arm it, arm or cancel any other timer.
 * Returns how many fired. */
size_t pg_wheel_advance(pg_wheel_t *w, uint64_t now);
/* The first tick in (now, now + limit] whose slot holds a timer, else
 * now + limit: the owner's clock can sleep until then. A slot holding only
 * timers of a later lap counts as due (one wasted advance, no missed one).
 * O(limit). */
uint64_t pg_wheel_next(const pg_wheel_t *w, unsigned limit);

#endif
