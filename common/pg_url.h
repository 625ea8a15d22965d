/* pg_url.h - redis://[[user]:password@]host[:port][/db] */
#ifndef PG_URL_H
#define PG_URL_H

#include <stddef.h>

typedef struct pg_url {
    char host[256];      /* hostname, IPv4, or IPv6 without brackets */
    int  port;           /* default 6379 */
    char user[128];      /* "" = none (AUTH <password> only) */
    char password[256];  /* "" = no AUTH */
    int  db;             /* default 0 */
} pg_url_t;

/* Fill u from s. Returns 0, or -1 with a one-line reason in err (never
 * containing the password). Accepts percent-encoding in user and password. */
int pg_url_parse(const char *s, pg_url_t *u, char *err, size_t errlen);

#endif
