/* pg_opt.c - THE option table. argv, the PUSHGATE_* environment, --help,
 * defaults and bounds all come from opts[] below, so they cannot disagree. */
#include "pg_opt.h"
#include "pg_log.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum {
    O_ADDR,      /* host:port or [v6]:port -> listen_host, listen_port */
    O_URL,       /* redis URL -> redis (pg_url_t) */
    O_PREFIX,    /* 1..64 of A-Z a-z 0-9 _ - . : */
    O_NODEID,    /* 1..64 printable, no space */
    O_ORIGINS,   /* comma list -> origins */
    O_TOPICS,    /* comma list of names/globs -> public_globs */
    O_SECRET,    /* non-empty; never echoed */
    O_KEYFILES,  /* comma list of readable paths -> jwt_public_keys; the first one's
                    contents -> jwt_public_pem */
    O_FILE,      /* readable path */
    O_BOOL,      /* int 0/1 */
    O_LONG,      /* long, bounded */
    O_SIZE,      /* size_t, bounded */
    O_UINT,      /* unsigned, bounded */
    O_LEVEL,     /* error|warn|info|debug -> int */
    O_WORKERS,   /* auto (0) or a whole number, bounded -> unsigned */
    O_FORMAT     /* text|json -> int */
} otype_t;

typedef struct opt {
    const char *name;     /* without the leading "--" */
    otype_t     type;
    const char *def;      /* NULL = none */
    uint64_t    min, max; /* integer bounds */
    const char *unit;     /* integers: "seconds", "bytes"... for messages */
    size_t      off;      /* the raw string field (char *) in pg_config_t */
    size_t      val;      /* the typed field, for those that have one */
    const char *arg;      /* metavar in --help */
    const char *help;
} opt_t;

#define F(f) offsetof(pg_config_t, f)
#define NONE ((size_t)-1)

static const opt_t opts[] = {
    /* name               type       default                    min  max         unit           raw field               typed field             arg */
    { "listen",           O_ADDR,    "0.0.0.0:8080",             0, 0,            NULL,          F(listen),              NONE,                   "HOST:PORT",
      "address:port of the one HTTP/WebSocket port ([v6]:port for IPv6)" },
    { "redis-url",        O_URL,     "redis://127.0.0.1:6379/0", 0, 0,            NULL,          F(redis_url),           NONE,                   "URL",
      "redis://[[user]:password@]host[:port][/db], redis+sentinel://[[user]:password@]s1:port[,s2:port...]/master[/db][?sentinel-password=P] or redis+cluster://[[user]:password@]h1:port[,h2:port...]" },
    { "prefix",           O_PREFIX,  "pushgate:",                0, 0,            NULL,          F(prefix),              NONE,                   "PREFIX",
      "prefix of every Redis channel and key (1..64 of A-Z a-z 0-9 _ - . :)" },
    { "node-id",          O_NODEID,  NULL,                       0, 0,            NULL,          F(node_id),             NONE,                   "ID",
      "name of this node in logs, metrics and presence" },
    { "allowed-origins",  O_ORIGINS, "",                         0, 0,            NULL,          F(allowed_origins),     F(origins),             "LIST",
      "comma list of exact origins or https://*.example.com; * allows any; empty: same host only" },
    { "jwt-secret",       O_SECRET,  NULL,                       0, 0,            NULL,          F(jwt_secret),          NONE,                   "LIST",
      "comma list of HS256 keys for client tokens (a token may match any of them)" },
    { "jwt-secret-file",  O_FILE,    NULL,                       0, 0,            NULL,          F(jwt_secret_file),     NONE,                   "FILE",
      "HS256 keys for client tokens, one a line (blank and # lines skipped); re-read on SIGHUP" },
    { "jwt-public-key",   O_KEYFILES, NULL,                      0, 0,            NULL,          F(jwt_public_key),      F(jwt_public_keys),     "FILES",
      "comma list of files, each a PEM public key (RS256: RSA, ES256: EC P-256) or a JWKS; re-read on SIGHUP" },
    { "allow-anonymous",  O_BOOL,    "false",                    0, 0,            NULL,          NONE,                   F(allow_anonymous),     NULL,
      "with a JWT key set, also accept connections without a token" },
    { "public-topics",    O_TOPICS,  "",                         0, 0,            NULL,          F(public_topics),       F(public_globs),        "LIST",
      "comma list of topic names or globs anyone may subscribe to" },
    { "api-key",          O_SECRET,  NULL,                       0, 0,            NULL,          F(api_key),             NONE,                   "LIST",
      "comma list of secrets for /api/*; with none (nor --api-key-file), /api/* answers 403" },
    { "api-key-file",     O_FILE,    NULL,                       0, 0,            NULL,          F(api_key_file),        NONE,                   "FILE",
      "secrets for /api/*, one a line (blank and # lines skipped); re-read on SIGHUP" },
    { "max-connections",  O_LONG,    NULL,                       1, 10000000,     "connections", NONE,                   F(max_connections),     "N",
      "beyond it, new connections get 503" },
    { "max-message-bytes", O_SIZE,   "65536",                    16, 67108864,    "bytes",       NONE,                   F(max_message_bytes),   "BYTES",
      "largest publish payload and largest client frame" },
    { "queue-limit-bytes", O_SIZE,   "1048576",                  1024, 1073741824, "bytes",      NONE,                   F(queue_limit_bytes),   "BYTES",
      "bytes queued for one connection before it is dropped as slow" },
    { "ping-interval",    O_UINT,    "25",                       1, 3600,         "seconds",     NONE,                   F(ping_interval),       "SECONDS",
      "WebSocket ping / SSE comment keepalive" },
    { "history-size",     O_UINT,    "100",                      1, 100000,       "messages",    NONE,                   F(history_size),        "N",
      "messages kept per channel for recovery" },
    { "history-ttl",      O_UINT,    "300",                      1, 604800,       "seconds",     NONE,                   F(history_ttl),         "SECONDS",
      "how long a channel's history lives after its last message" },
    { "drain-timeout",    O_UINT,    "10",                       0, 3600,         "seconds",     NONE,                   F(drain_timeout),       "SECONDS",
      "on SIGTERM, how long to flush before exiting" },
    { "log-level",        O_LEVEL,   "info",                     0, 0,            NULL,          NONE,                   F(log_level),           "LEVEL",
      "error, warn, info or debug" },
    { "log-format",       O_FORMAT,  "text",                     0, 0,            NULL,          NONE,                   F(log_json),            "FORMAT",
      "text, or json (one object a line)" },
    { "tls-cert",         O_FILE,    NULL,                       0, 0,            NULL,          F(tls_cert),            NONE,                   "FILE",
      "PEM certificate chain: serve HTTPS/WSS (needs --tls-key)" },
    { "tls-key",          O_FILE,    NULL,                       0, 0,            NULL,          F(tls_key),             NONE,                   "FILE",
      "PEM private key for --tls-cert" },
    { "reuse-port",       O_BOOL,    "false",                    0, 0,            NULL,          NONE,                   F(reuse_port),          NULL,
      "set SO_REUSEPORT so several processes can share --listen" },
    { "workers",          O_WORKERS, "1",                        1, 1024,         "processes",   NONE,                   F(workers),             "N|auto",
      "worker processes sharing --listen under a supervisor (auto: one per CPU it may run on)" },
    { "revoke-ttl",       O_UINT,    "86400",                    1, 31536000,     "seconds",     NONE,                   F(revoke_ttl),          "SECONDS",
      "how long a revocation (disconnect with revoke) refuses a user's older tokens" },
    { "token-refresh-window", O_UINT, "30",                      0, 86400,        "seconds",     NONE,                   F(token_refresh_window), "SECONDS",
      "how long before a token's exp a connection is sent \"expiring\" (WebSocket frame, SSE event)" },
    { "max-connections-per-user", O_UINT, "0",                   0, 1000000,      "connections", NONE,                   F(max_conns_per_user),  "N",
      "one user's WebSocket + SSE connections on this node; past it 4029 / 429 (0: no limit)" },
    { "recovery-timeout", O_UINT,    "10",                       1, 3600,         "seconds",     NONE,                   F(recovery_timeout),    "SECONDS",
      "how long a resuming connection waits for history before it gets the live stream" },
    { "presence-topics",  O_TOPICS,  "",                         0, 0,            NULL,          F(presence_topics),     F(presence_globs),      "LIST",
      "comma list of topic names or globs whose members are recorded in presence and get join/leave" },
    { "presence-ttl",     O_UINT,    "60",                       3, 86400,        "seconds",     NONE,                   F(presence_ttl),        "SECONDS",
      "a node that stops without closing drops out of presence within this time" },
    { "events",           O_BOOL,    "false",                    0, 0,            NULL,          NONE,                   F(events),              NULL,
      "append connect, disconnect, subscribe, unsubscribe and client messages to <prefix>events" },
    { "events-max-len",   O_UINT,    "100000",                   1, 1000000000,   "entries",     NONE,                   F(events_max_len),      "N",
      "approximate cap of the events stream (XADD MAXLEN ~)" },
    { "client-send-rate", O_UINT,    "20",                       1, 100000,       "messages",    NONE,                   F(client_send_rate),    "N",
      "\"send\" commands a second one connection may make before they are refused" },
};
#define NOPTS (sizeof opts / sizeof opts[0])

/* Largest --jwt-public-key file we read: a PEM public key is a few KB, a
 * JWKS tens of KB (pg_keys.c reads with the same bound). */
#define PEM_MAX (1u << 20)

enum { SRC_DEFAULT, SRC_ENV, SRC_ARGV };

/* A user-supplied value as it may appear in the error line: cut to 64 bytes,
 * anything unprintable shown as '?', so the line stays one line. */
static const char *shown(const char *v, char buf[80])
{
    size_t o = 0, i;
    for (i = 0; v[i] && o < 64; i++) {
        unsigned char c = (unsigned char)v[i];
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (v[i]) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static void env_name(const opt_t *o, char out[64])
{
    size_t n = (size_t)snprintf(out, 64, "PUSHGATE_");
    for (const char *p = o->name; *p && n < 63; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const opt_t *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static int parse_bool(const char *v)
{
    static const char *const yes[] = { "true", "1", "yes", "on" };
    static const char *const no[] = { "false", "0", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int parse_listen(pg_config_t *cfg, const char *v, char *e, size_t el, const char *name)
{
    const char *h = v, *hend, *colon;
    char sb[80];
    if (*v == '[') {
        h = v + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h || hend[1] != ':') {
            pg_errf(e, el, "%s: \"%s\" is not [IPv6]:port", name, shown(v, sb));
            return -1;
        }
        colon = hend + 1;
    } else {
        colon = strchr(v, ':');
        if (!colon || strchr(colon + 1, ':')) {
            pg_errf(e, el, "%s: \"%s\" is not host:port (write IPv6 as [addr]:port)", name, shown(v, sb));
            return -1;
        }
        hend = colon;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= sizeof cfg->listen_host) {
        pg_errf(e, el, "%s: \"%s\" has no usable host", name, shown(v, sb));
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '[' || c == ']' || c == '@') {
            pg_errf(e, el, "%s: \"%s\" has a bad character in the host", name, shown(v, sb));
            return -1;
        }
    }
    uint64_t port;
    if (pg_atou64(colon + 1, (size_t)-1, &port) < 0 || port < 1 || port > 65535) {
        pg_errf(e, el, "%s: \"%s\" needs a port in 1..65535", name, shown(v, sb));
        return -1;
    }
    memcpy(cfg->listen_host, h, hlen);
    cfg->listen_host[hlen] = '\0';
    cfg->listen_port = (int)port;
    return 0;
}

/* 0 when path opens and reads (an empty file does), else -1 with *eno:
 * fopen() alone would accept a directory. */
static int readable(const char *path, int *eno)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *eno = errno;
        return -1;
    }
    errno = 0;
    (void)fgetc(f);
    int bad = ferror(f);
    *eno = bad ? (errno ? errno : EIO) : 0;
    fclose(f);
    return bad ? -1 : 0;
}

static int read_file(const char *path, char **out, size_t *outlen, int *eno)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *eno = errno;
        return -1;
    }
    char *buf = malloc(PEM_MAX + 1);
    if (!buf) {
        fclose(f);
        *eno = ENOMEM;
        return -1;
    }
    size_t n = fread(buf, 1, PEM_MAX + 1, f);
    int bad = ferror(f);
    *eno = bad ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (bad || n > PEM_MAX) {
        if (!bad)
            *eno = EFBIG;
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* Convert one raw value into cfg. name is how the user wrote the option
 * ("--x" or "PUSHGATE_X (--x)") so the error points at the right place. */
static int apply(pg_config_t *cfg, const opt_t *o, const char *v, const char *name,
                 char *e, size_t el)
{
    char *base = (char *)cfg;
    char sb[80];
    if (o->off != NONE) {
        char **slot = (char **)(base + o->off);
        if (!(*slot = strdup(v))) {
            pg_errf(e, el, "%s: out of memory", name);
            return -1;
        }
    }
    switch (o->type) {
    case O_ADDR:
        return parse_listen(cfg, v, e, el, name);
    case O_URL: {
        char uerr[PG_ERRLEN];
        /* pg_url_parse never puts the password in uerr, and we do not echo
         * the URL itself, which may carry it. */
        if (pg_url_parse(v, &cfg->redis, uerr, sizeof uerr) < 0) {
            pg_errf(e, el, "%s: %s", name, uerr);
            return -1;
        }
        return 0;
    }
    case O_PREFIX: {
        size_t n = strlen(v);
        int ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)v[i]) || strchr("_.:-", v[i]);
        if (!ok) {
            pg_errf(e, el, "%s: \"%s\" is not 1..64 of A-Z a-z 0-9 _ - . :", name, shown(v, sb));
            return -1;
        }
        return 0;
    }
    case O_NODEID: {
        size_t n = strlen(v);
        int ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = v[i] > ' ' && v[i] < 0x7f;
        if (!ok) {
            pg_errf(e, el, "%s: \"%s\" is not 1..64 printable characters without spaces",
                 name, shown(v, sb));
            return -1;
        }
        return 0;
    }
    case O_ORIGINS:
    case O_TOPICS: {
        pg_strlist_t *l = (pg_strlist_t *)(base + o->val);
        pg_strlist_free(l);
        if (pg_strlist_split(v, l) < 0) {
            pg_errf(e, el, "%s: out of memory", name);
            return -1;
        }
        for (size_t i = 0; i < l->n; i++) {
            const char *it = l->v[i];
            int ok = 1;
            if (o->type == O_TOPICS) {
                ok = strlen(it) <= 128;
                for (const char *p = it; ok && *p; p++)
                    ok = isalnum((unsigned char)*p) || strchr("_-.:@*?", *p);
            } else if (strcmp(it, "*") != 0) {
                const char *sep = strstr(it, "://");
                ok = sep && sep > it && sep[3];
                for (const char *p = it; ok && *p; p++)
                    ok = *p > ' ' && *p < 0x7f;
            }
            if (!ok) {
                pg_errf(e, el, "%s: \"%s\" is not %s", name, shown(it, sb),
                     o->type == O_TOPICS ? "a channel name or glob"
                                         : "an origin (scheme://host[:port]) or *");
                return -1;
            }
        }
        return 0;
    }
    case O_SECRET:
        if (!*v) {
            pg_errf(e, el, "%s: must not be empty", name);
            return -1;
        }
        return 0;
    case O_KEYFILES: {
        pg_strlist_t *l = (pg_strlist_t *)(base + o->val);
        pg_strlist_free(l);
        if (pg_strlist_split(v, l) < 0) {
            pg_errf(e, el, "%s: out of memory", name);
            return -1;
        }
        if (l->n == 0) {
            pg_errf(e, el, "%s: names no file", name);
            return -1;
        }
        for (size_t i = 0; i < l->n; i++) {
            int eno;
            /* The first file's text stays in cfg for callers that take one
             * PEM; every file is read again, and parsed, by pg_keys_load. */
            int rc = i == 0 ? read_file(l->v[i], &cfg->jwt_public_pem, &cfg->jwt_public_pem_len, &eno)
                            : readable(l->v[i], &eno);
            if (rc < 0) {
                if (eno == ENOMEM)
                    pg_errf(e, el, "%s: out of memory", name);
                else
                    pg_errf(e, el, "%s: cannot read \"%s\": %s", name, shown(l->v[i], sb),
                           eno == EFBIG ? "larger than 1 MiB" : strerror(eno));
                return -1;
            }
        }
        return 0;
    }
    case O_FILE: {
        int eno;
        if (readable(v, &eno) < 0) {
            pg_errf(e, el, "%s: cannot read \"%s\": %s", name, shown(v, sb), strerror(eno));
            return -1;
        }
        return 0;
    }
    case O_BOOL: {
        int b = parse_bool(v);
        if (b < 0) {
            pg_errf(e, el, "%s: \"%s\" is not true/false/1/0/yes/no/on/off", name, shown(v, sb));
            return -1;
        }
        *(int *)(base + o->val) = b;
        return 0;
    }
    case O_WORKERS:
        if (strcmp(v, "auto") == 0) {
            *(unsigned *)(base + o->val) = 0;
            return 0;
        }
        /* a number: as O_UINT */
        __attribute__((fallthrough));
    case O_LONG:
    case O_SIZE:
    case O_UINT: {
        uint64_t n;
        if (pg_atou64(v, (size_t)-1, &n) < 0 || n < o->min || n > o->max) {
            pg_errf(e, el, "%s: \"%s\" is not a whole number of %s (%llu..%llu)", name, shown(v, sb),
                 o->unit, (unsigned long long)o->min, (unsigned long long)o->max);
            return -1;
        }
        if (o->type == O_LONG)
            *(long *)(base + o->val) = (long)n;
        else if (o->type == O_SIZE)
            *(size_t *)(base + o->val) = (size_t)n;
        else
            *(unsigned *)(base + o->val) = (unsigned)n;
        return 0;
    }
    case O_LEVEL: {
        int l = pg_log_level_parse(v);
        if (l < 0) {
            pg_errf(e, el, "%s: \"%s\" is not one of error, warn, info, debug", name, shown(v, sb));
            return -1;
        }
        *(int *)(base + o->val) = l;
        return 0;
    }
    case O_FORMAT:
        if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
            pg_errf(e, el, "%s: \"%s\" is not text or json", name, shown(v, sb));
            return -1;
        }
        *(int *)(base + o->val) = strcmp(v, "json") == 0;
        return 0;
    }
    return 0;
}

int pg_opt_parse(pg_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen)
{
    const char *raw[NOPTS];
    int src[NOPTS];
    int help = 0, version = 0;
    char name[96], env[64];

    for (size_t i = 0; i < NOPTS; i++) {
        raw[i] = opts[i].def;
        src[i] = SRC_DEFAULT;
    }

    for (char **ep = envp; ep && *ep; ep++) {
        if (strncmp(*ep, "PUSHGATE_", 9) != 0)
            continue;
        const char *eq = strchr(*ep, '=');
        if (!eq || !eq[1])
            continue;   /* empty counts as unset: "FOO= cmd" is how people unset */
        for (size_t i = 0; i < NOPTS; i++) {
            env_name(&opts[i], env);
            if (strlen(env) == (size_t)(eq - *ep) && memcmp(env, *ep, (size_t)(eq - *ep)) == 0) {
                raw[i] = eq + 1;
                src[i] = SRC_ENV;
            }
        }
    }

    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            help = 1;
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            version = 1;
            continue;
        }
        char sb[80];
        if (strncmp(arg, "--", 2) != 0) {
            pg_errf(err, errlen, "unexpected argument \"%s\" (options are --name value)", shown(arg, sb));
            return PG_OPT_FAIL;
        }
        const char *nm = arg + 2;
        const char *eq = strchr(nm, '=');
        size_t nlen = eq ? (size_t)(eq - nm) : strlen(nm);
        const opt_t *o = find(nm, nlen);
        if (!o) {
            /* The name only: "--jwt-secrte=hunter2" must not print hunter2. */
            char nb[80];
            size_t cut = nlen < 64 ? nlen : 64;
            memcpy(nb, nm, cut);
            nb[cut] = '\0';
            pg_errf(err, errlen, "--%s: unknown option (see --help)", shown(nb, sb));
            return PG_OPT_FAIL;
        }
        size_t i = (size_t)(o - opts);
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == O_BOOL) {
            /* A boolean stands alone unless the next word is a boolean. */
            v = "true";
            if (a + 1 < argc && parse_bool(argv[a + 1]) >= 0)
                v = argv[++a];
        } else {
            if (a + 1 >= argc || strncmp(argv[a + 1], "--", 2) == 0) {
                pg_errf(err, errlen, "--%s: missing value", o->name);
                return PG_OPT_FAIL;
            }
            v = argv[++a];
        }
        raw[i] = v;
        src[i] = SRC_ARGV;
    }
    if (help)
        return PG_OPT_HELP;
    if (version)
        return PG_OPT_VERSION;

    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        if (!raw[i])
            continue;
        if (src[i] == SRC_ENV) {
            env_name(o, env);
            snprintf(name, sizeof name, "%s (--%s)", env, o->name);
        } else {
            snprintf(name, sizeof name, "--%s", o->name);
        }
        if (apply(cfg, o, raw[i], name, err, errlen) < 0)
            goto fail;
    }

    if (!cfg->node_id) {
        char host[256];
        if (gethostname(host, sizeof host) != 0 || !host[0])
            snprintf(host, sizeof host, "pushgate");
        host[sizeof host - 1] = '\0';
        /* Keep within the 64 bytes --node-id allows, and printable. */
        for (char *p = host; *p; p++)
            if (*p <= ' ' || *p >= 0x7f)
                *p = '_';
        char id[80];
        snprintf(id, sizeof id, "%.40s-%ld", host, (long)getpid());
        if (!(cfg->node_id = strdup(id))) {
            pg_errf(err, errlen, "--node-id: out of memory");
            goto fail;
        }
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        pg_errf(err, errlen, "--tls-cert and --tls-key go together: give both or neither");
        goto fail;
    }
    return PG_OPT_RUN;
fail:
    pg_config_free(cfg);
    return PG_OPT_FAIL;
}

void pg_opt_help(FILE *out)
{
    char env[64], left[64];
    fprintf(out, "usage: pushgate [--option value]...\n"
                 "Every option also reads PUSHGATE_<OPTION> from the environment; a flag wins.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const opt_t *o = &opts[i];
        env_name(o, env);
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        const char *def = o->def;
        if (o->type == O_NODEID)
            def = "<hostname>-<pid>";
        else if (o->type == O_LONG && !def)
            def = "derived from the fd limit";
        else if (o->type == O_BOOL)
            def = "off";
        fprintf(out, "  %-32s %s\n  %-32s env %s, default: %s\n", left, o->help, "", env,
                !def ? "none" : !*def ? "empty" : def);
    }
    fprintf(out, "  %-32s %s\n  %-32s %s\n", "--help", "print this and exit", "--version",
            "print the version and exit");
}

void pg_config_free(pg_config_t *cfg)
{
    if (!cfg)
        return;
    char *base = (char *)cfg;
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].off == NONE)
            continue;
        char *v = *(char **)(base + opts[i].off);
        if (v && opts[i].type == O_SECRET)
            explicit_bzero(v, strlen(v));
        free(v);
    }
    pg_strlist_free(&cfg->origins);
    pg_strlist_free(&cfg->public_globs);
    pg_strlist_free(&cfg->presence_globs);
    pg_strlist_free(&cfg->jwt_public_keys);
    free(cfg->jwt_public_pem);
    /* The redis password and the secrets lived here too: wipe, not just zero
     * the pointers, so a later core dump shows less. */
    explicit_bzero(&cfg->redis, sizeof cfg->redis);
    memset(cfg, 0, sizeof *cfg);
}
