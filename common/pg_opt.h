/* pg_opt.h - THE option table: argv, PUSHGATE_* environment, --help,
 * defaults and bounds come from one list in pg_opt.c (SPEC §1). */
#ifndef PG_OPT_H
#define PG_OPT_H

#include <stddef.h>
#include <stdio.h>
#include "pg_util.h"
#include "pg_url.h"

typedef struct pg_config {
    char        *listen;              /* "0.0.0.0:8080" */
    char         listen_host[256];    /* parsed; IPv6 without brackets */
    int          listen_port;
    char        *redis_url;
    pg_url_t     redis;               /* parsed redis_url */
    char        *prefix;              /* 1..64 of A-Z a-z 0-9 _ - . : */
    char        *node_id;             /* default <hostname>-<pid> */
    char        *allowed_origins;
    pg_strlist_t origins;             /* split allowed_origins */
    char        *jwt_secret;          /* comma list of HS256 secrets (pg_keys_load splits it) */
    char        *jwt_secret_file;     /* path: one secret a line; checked readable */
    char        *jwt_public_key;      /* comma list of paths, each PEM or JWKS */
    pg_strlist_t jwt_public_keys;     /* split jwt_public_key; every file checked readable */
    char        *jwt_public_pem;      /* the FIRST file's contents, read by pg_opt_parse
                                         (pg_keys_load reads every file itself) */
    size_t       jwt_public_pem_len;
    int          allow_anonymous;
    char        *public_topics;
    pg_strlist_t public_globs;        /* split public_topics */
    char        *api_key;             /* comma list of API keys (pg_keys_load splits it) */
    char        *api_key_file;        /* path: one API key a line; checked readable */
    long         max_connections;     /* 0 = derive from RLIMIT_NOFILE */
    size_t       max_message_bytes;
    size_t       queue_limit_bytes;
    unsigned     ping_interval;       /* seconds */
    unsigned     history_size;
    unsigned     history_ttl;         /* seconds */
    unsigned     drain_timeout;       /* seconds */
    int          log_level;           /* PG_LOG_* */
    int          log_json;
    char        *tls_cert;            /* path; both or neither */
    char        *tls_key;
    int          reuse_port;
    unsigned     revoke_ttl;          /* seconds a revocation lasts (SPEC §7) */
    unsigned     token_refresh_window; /* seconds before exp: "expiring" */
    unsigned     max_conns_per_user;  /* 0 = no limit */
    unsigned     recovery_timeout;    /* seconds a recovery may wait for Redis */
    unsigned     workers;             /* worker processes; 0 = auto (one per CPU) */
    char        *presence_topics;     /* SPEC §8: topics with presence and join/leave */
    pg_strlist_t presence_globs;      /* split presence_topics */
    unsigned     presence_ttl;        /* seconds a dead node's entries still count */
    int          events;              /* SPEC §9: append to <prefix>events */
    unsigned     events_max_len;      /* the stream's approximate cap */
    unsigned     client_send_rate;    /* "send" commands a second per connection */
} pg_config_t;

enum { PG_OPT_RUN = 0, PG_OPT_HELP = 1, PG_OPT_VERSION = 2, PG_OPT_FAIL = -1 };

/* Fill cfg (zeroed by the caller) from defaults, then envp (PUSHGATE_*), then
 * argv (argv[0] is skipped; "--name value" and "--name=value"; boolean
 * options may stand alone or take true/false/1/0/yes/no/on/off). A flag beats
 * the environment. Reads the first --jwt-public-key file and checks every
 * other key file and the TLS files are readable (the keys themselves are
 * parsed by pg_keys_load). Returns PG_OPT_RUN, PG_OPT_HELP, PG_OPT_VERSION, or
 * PG_OPT_FAIL with one line in err naming the option and the problem (never
 * echoing a secret's value). Pure apart from reading those files and
 * gethostname()/getpid() for the default node id. */
int pg_opt_parse(pg_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen);
/* Print every option with its environment name, default and meaning. */
void pg_opt_help(FILE *out);
/* Free everything pg_opt_parse allocated; cfg is zeroed. */
void pg_config_free(pg_config_t *cfg);

#define PG_VERSION "0.1.0"

#endif
