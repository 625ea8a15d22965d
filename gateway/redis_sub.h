/* redis_sub.h - the subscriber link: SUBSCRIBE only what the node needs,
 * batched once per loop iteration, and everything again after a reconnect. */
#ifndef PG_REDIS_SUB_H
#define PG_REDIS_SUB_H

/* Start connecting. 0 or -1. */
int pg_sub_start(void);
void pg_sub_stop(void);
/* 1 when connected and every wanted channel is subscribed (for /readyz). */
int pg_sub_ready(void);
/* The hub wants (on=1) or no longer wants (on=0) channel name; the change
 * goes out with the next batch, before the loop sleeps. */
void pg_link_want(const char *name, int on);
/* 1 when Redis confirmed the SUBSCRIBE of name on the current connection. */
int pg_sub_is_subscribed(const char *name);

#endif
