/* pg_url.c - the three --redis-url forms (pg_url.h). */
#include "pg_url.h"
#include "pg_util.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out (size cap). A decoded NUL is refused: the
 * result goes to AUTH as a C string and would be cut there silently. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* One host[:port] (or [v6][:port]) at *pp, ending at one of stop (or the
 * end); *pp moves past it. The messages are the ones redis:// always gave. */
static int parse_host(const char **pp, const char *stop, int defport, pg_hostport_t *hp,
                      char *err, size_t errlen)
{
    const char *p = *pp, *h = p, *hend;
    int bracketed = *p == '[';
    if (bracketed) {
        h = p + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h) {
            snprintf(err, errlen, "bad IPv6 address: missing ']'");
            return -1;
        }
        p = hend + 1;
    } else {
        hend = p + strcspn(p, stop);
        p = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0) {
        snprintf(err, errlen, "missing host");
        return -1;
    }
    if (hlen >= sizeof hp->host) {
        snprintf(err, errlen, "host name too long");
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '@' || c == '[' || c == ']'
            || c == ',' || (c == ':' && !bracketed)) {
            snprintf(err, errlen, "bad character in host");
            return -1;
        }
    }
    memcpy(hp->host, h, hlen);
    hp->host[hlen] = '\0';
    hp->port = defport;
    if (*p == ':') {
        p++;
        /* the port runs to the next separator of this form (never ':') */
        size_t plen = strcspn(p, stop + 1);
        uint64_t port;
        if (pg_atou64(p, plen, &port) < 0 || port < 1 || port > 65535) {
            snprintf(err, errlen, "port must be a number in 1..65535");
            return -1;
        }
        hp->port = (int)port;
        p += plen;
    }
    *pp = p;
    return 0;
}

/* A database number running to one of stop (or the end). */
static int parse_db(const char **pp, const char *stop, int *db, char *err, size_t errlen,
                    const char *example)
{
    size_t n = strcspn(*pp, stop);
    uint64_t v;
    if (n == 0)
        return 0;
    if (pg_atou64(*pp, n, &v) < 0 || v > INT_MAX) {
        snprintf(err, errlen, "database must be a number (%s)", example);
        return -1;
    }
    *db = (int)v;
    *pp += n;
    return 0;
}

/* ?sentinel-password=...: the one query parameter (sentinel URLs only). An
 * unknown name is refused rather than ignored, so a typo cannot silently
 * leave the Sentinels without their password. */
static int parse_query(const char *p, pg_url_t *u, char *err, size_t errlen)
{
    static const char key[] = "sentinel-password=";
    while (*p) {
        size_t n = strcspn(p, "&");
        if (n >= sizeof key - 1 && memcmp(p, key, sizeof key - 1) == 0) {
            const char *v = p + sizeof key - 1;
            if (pct_decode(v, n - (sizeof key - 1), u->sentinel_password,
                           sizeof u->sentinel_password) < 0) {
                snprintf(err, errlen, "bad sentinel-password (bad %%-escape or too long)");
                return -1;
            }
        } else if (n > 0) {
            snprintf(err, errlen, "unknown URL parameter (only sentinel-password= is known)");
            return -1;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return 0;
}

int pg_url_parse(const char *s, pg_url_t *u, char *err, size_t errlen)
{
    static const struct { const char *scheme; pg_url_kind_t kind; int port; } schemes[] = {
        { "redis://", PG_URL_REDIS, 6379 },
        { "redis+sentinel://", PG_URL_SENTINEL, 26379 },
        { "redis+cluster://", PG_URL_CLUSTER, 6379 },
    };
    memset(u, 0, sizeof *u);
    u->port = 6379;
    const char *p = NULL;
    int defport = 6379;
    for (size_t i = 0; s && i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncmp(s, schemes[i].scheme, n) == 0) {
            p = s + n;
            u->kind = schemes[i].kind;
            defport = schemes[i].port;
            break;
        }
    }
    if (p == NULL) {
        snprintf(err, errlen, "must start with redis://, redis+sentinel:// or redis+cluster://");
        return -1;
    }
    /* Host, port and db never contain '@', so the last '@' ends the
     * credentials even when an unencoded password holds '@' or '/'. */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen, "credentials must be written [user]:password@");
            return -1;
        }
        if (pct_decode(p, (size_t)(colon - p), u->user, sizeof u->user) < 0) {
            snprintf(err, errlen, "bad user name (bad %%-escape or too long)");
            return -1;
        }
        if (pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password) < 0) {
            snprintf(err, errlen, "bad password (bad %%-escape or too long)");
            memset(u->password, 0, sizeof u->password);
            return -1;
        }
        p = at + 1;
    }
    /* One host for redis://, where ',' and '?' are bad characters as they
     * always were; a comma list for the other two. The first character of
     * each stop set is ':' (the port follows), the rest end a port. */
    const char *stop = u->kind == PG_URL_REDIS ? ":/" : ":/,?";
    for (;;) {
        if (u->nhosts == PG_URL_MAX_HOSTS) {
            snprintf(err, errlen, "more than %d hosts", PG_URL_MAX_HOSTS);
            goto fail;
        }
        if (parse_host(&p, stop, defport, &u->hosts[u->nhosts], err, errlen) < 0)
            goto fail;
        u->nhosts++;
        if (u->kind == PG_URL_REDIS || *p != ',')
            break;
        p++;
    }
    memcpy(u->host, u->hosts[0].host, sizeof u->host);
    u->port = u->hosts[0].port;

    switch (u->kind) {
    case PG_URL_REDIS:
        if (*p == '/') {
            p++;
            if (parse_db(&p, "", &u->db, err, errlen, "redis://host:port/0") < 0)
                goto fail;
        }
        break;
    case PG_URL_SENTINEL: {
        if (*p != '/' || p[1] == '\0' || p[1] == '/' || p[1] == '?') {
            snprintf(err, errlen, "missing master name (redis+sentinel://s1:26379,s2:26379/mymaster)");
            goto fail;
        }
        p++;
        size_t n = strcspn(p, "/?");
        if (pct_decode(p, n, u->master, sizeof u->master) < 0) {
            snprintf(err, errlen, "bad master name (bad %%-escape or too long)");
            goto fail;
        }
        for (const char *m = u->master; *m; m++) {
            if ((unsigned char)*m <= ' ' || (unsigned char)*m >= 0x7f) {
                snprintf(err, errlen, "bad character in master name");
                goto fail;
            }
        }
        p += n;
        if (*p == '/') {
            p++;
            if (parse_db(&p, "?", &u->db, err, errlen, "redis+sentinel://s1,s2/mymaster/0") < 0)
                goto fail;
        }
        if (*p == '?' && parse_query(p + 1, u, err, errlen) < 0)
            goto fail;
        if (*p == '?')
            p += strlen(p);
        break;
    }
    case PG_URL_CLUSTER:
        if (*p == '/') {
            p++;
            if (parse_db(&p, "", &u->db, err, errlen, "redis+cluster://h1,h2/0") < 0)
                goto fail;
            if (u->db != 0) {
                snprintf(err, errlen, "a Redis Cluster has only database 0");
                goto fail;
            }
        }
        break;
    }
    if (*p) {
        snprintf(err, errlen, "unexpected text after the host");
        goto fail;
    }
    return 0;
fail:
    memset(u->password, 0, sizeof u->password);
    memset(u->sentinel_password, 0, sizeof u->sentinel_password);
    return -1;
}
