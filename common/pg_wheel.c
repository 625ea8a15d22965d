/* pg_wheel.c - a hashed timer wheel. See pg_wheel.h. */
#include "pg_wheel.h"

#include <stdlib.h>

int pg_wheel_init(pg_wheel_t *w, unsigned nslots, uint64_t now)
{
    w->slots = calloc(nslots ? nslots : 1, sizeof(*w->slots));
    if (w->slots == NULL)
        return -1;
    w->nslots = nslots ? nslots : 1;
    w->now = now;
    w->armed = 0;
    w->wake = 0;
    w->earlier = NULL;
    return 0;
}

void pg_wheel_free(pg_wheel_t *w)
{
    for (unsigned i = 0; w->slots != NULL && i < w->nslots; i++) {
        pg_timer_t *t = w->slots[i];
        while (t != NULL) {
            pg_timer_t *n = t->next;
            t->next = NULL;
            t->pprev = NULL;
            t = n;
        }
    }
    free(w->slots);
    w->slots = NULL;
    w->armed = 0;
}

static void link_timer(pg_wheel_t *w, pg_timer_t **head, pg_timer_t *t);

static void unlink_timer(pg_wheel_t *w, pg_timer_t *t)
{
    *t->pprev = t->next;
    if (t->next != NULL)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
    w->armed--;
}

void pg_wheel_cancel(pg_wheel_t *w, pg_timer_t *t)
{
    if (t->pprev != NULL)
        unlink_timer(w, t);
}

void pg_wheel_arm(pg_wheel_t *w, pg_timer_t *t, uint64_t due)
{
    if (t->pprev != NULL)
        unlink_timer(w, t);
    /* A due already past goes in the next tick's slot, so it fires on the
     * next advance instead of waiting out a whole lap. */
    if (due <= w->now)
        due = w->now + 1;
    t->due = due;
    link_timer(w, &w->slots[due % w->nslots], t);
    if (due < w->wake && w->earlier != NULL)
        w->earlier(w, due);
}

static void link_timer(pg_wheel_t *w, pg_timer_t **head, pg_timer_t *t)
{
    t->next = *head;
    if (*head != NULL)
        (*head)->pprev = &t->next;
    *head = t;
    t->pprev = head;
    w->armed++;
}

size_t pg_wheel_advance(pg_wheel_t *w, uint64_t now)
{
    size_t fired = 0;
    if (now <= w->now)
        return 0;
    /* After a long gap, one lap visits every slot: later ticks would only
     * revisit the same slots. */
    uint64_t from = w->now + 1;
    if (now - w->now > w->nslots)
        from = now - w->nslots + 1;
    for (uint64_t tick = from; tick <= now; tick++) {
        pg_timer_t **slot = &w->slots[tick % w->nslots];
        /* Move what is due to a private list first: a callback may re-arm
         * its timer into this very slot (which must then wait), and may
         * cancel or move another due timer, which stays armed (linked) on
         * the private list until it fires so that works as anywhere else. */
        pg_timer_t *pending = NULL;
        pg_timer_t *t = *slot;
        while (t != NULL) {
            pg_timer_t *n = t->next;
            if (t->due <= now) {
                unlink_timer(w, t);
                link_timer(w, &pending, t);
            }
            t = n;
        }
        w->now = tick;
        while ((t = pending) != NULL) {
            unlink_timer(w, t);
            fired++;
            t->cb(t);
        }
    }
    w->now = now;
    return fired;
}

uint64_t pg_wheel_next(const pg_wheel_t *w, unsigned limit)
{
    for (uint64_t tick = w->now + 1; tick <= w->now + limit; tick++)
        if (w->slots[tick % w->nslots] != NULL)
            return tick;
    return w->now + limit;
}
