/* pg_url.h - the --redis-url forms of SPEC §10:
 *   redis://[[user]:password@]host[:port][/db]
 *   redis+sentinel://[[user]:password@]s1[:port],s2[:port].../<master>[/db][?sentinel-password=...]
 *   redis+cluster://[[user]:password@]h1[:port],h2[:port]...[/0]
 * Pure C: no loop, no hiredis. */
#ifndef PG_URL_H
#define PG_URL_H

#include <stddef.h>

/* Hosts one URL may list (sentinels or cluster seeds). Sixteen is far more
 * than a Sentinel quorum or a useful seed list; the cap keeps pg_url_t a
 * plain value that the option table can copy. */
#define PG_URL_MAX_HOSTS 16

typedef enum pg_url_kind {
    PG_URL_REDIS = 0,    /* one Redis */
    PG_URL_SENTINEL,     /* ask the Sentinels in hosts[] for master */
    PG_URL_CLUSTER       /* hosts[] are cluster seeds */
} pg_url_kind_t;

typedef struct pg_hostport {
    char host[256];      /* hostname, IPv4, or IPv6 without brackets */
    int  port;
} pg_hostport_t;

typedef struct pg_url {
    pg_url_kind_t kind;
    char host[256];      /* redis://: the host; otherwise hosts[0].host */
    int  port;           /* default 6379 (26379 for a sentinel) */
    char user[128];      /* "" = none (AUTH <password> only); data nodes only */
    char password[256];  /* "" = no AUTH; data nodes only */
    int  db;             /* default 0; a cluster has only 0 */
    int  nhosts;         /* >= 1 after a successful parse */
    pg_hostport_t hosts[PG_URL_MAX_HOSTS]; /* in URL order; redis:// has one */
    char master[128];    /* sentinel: the monitored master's name */
    char sentinel_password[256]; /* sentinel: ?sentinel-password=, "" = none */
} pg_url_t;

/* Fill u from s. Returns 0, or -1 with a one-line reason in err (never
 * containing a password) and no password left in u. Accepts
 * percent-encoding in user, password, master name and query values; a '@'
 * in a query value must be written %40 (the last '@' ends the credentials). */
int pg_url_parse(const char *s, pg_url_t *u, char *err, size_t errlen);

#endif
