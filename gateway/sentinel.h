/* sentinel.h - redis+sentinel:// (SPEC §10): where the master is.
 *
 * Every data link asks afresh at each (re)connect: a one-shot query
 * (SENTINEL get-master-addr-by-name) to the Sentinels in URL order, starting
 * with the last one that answered, each given a short timeout. One watch
 * link per Sentinel keeps SUBSCRIBE open to +switch-master and to the
 * leader's promotion steps, and moves the data links as soon as a replica
 * is being promoted (while that lasts, a locate answers the replica without
 * asking). redis_link then checks ROLE before any role uses a link.
 *
 * io layer, above redis_link: it reaches the data links only through
 * redis_link's locator seam and pg_link_master_moved(). */
#ifndef PG_SENTINEL_H
#define PG_SENTINEL_H

/* With a redis+sentinel:// URL, register the locator for the data links and
 * start the watch link; call before the data links start. With any other
 * URL, do nothing. 0, or -1 (logged). */
int pg_sentinel_start(void);
/* Cancel every query and close the watch link (shutdown). */
void pg_sentinel_stop(void);

#endif
