/* pg_origin.c - the --allowed-origins check of SPEC §1. */
#include "pg_origin.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

typedef struct origin {
    char scheme[16];
    char host[256];   /* lower case; IPv6 keeps its brackets */
    int  port;        /* explicit, else the scheme's default; 0 = unknown */
} origin_t;

static int default_port(const char *scheme)
{
    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "ws") == 0)
        return 80;
    if (strcmp(scheme, "https") == 0 || strcmp(scheme, "wss") == 0)
        return 443;
    return 0;
}

/* host[:port] (or [v6][:port]) of s[0..n) into o->host/o->port; the port
 * defaults to dport. Returns 0 or -1 when malformed. */
static int parse_hostport(const char *s, size_t n, int dport, origin_t *o)
{
    const char *colon = NULL;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return -1;
        hlen = (size_t)(rb - s) + 1;
        if (hlen < n) {
            if (s[hlen] != ':')
                return -1;
            colon = s + hlen;
        }
    } else {
        colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
    }
    if (hlen == 0 || hlen >= sizeof o->host)
        return -1;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#')
            return -1;
        o->host[i] = (char)tolower(c);
    }
    o->host[hlen] = '\0';
    o->port = dport;
    if (colon) {
        size_t plen = n - (size_t)(colon + 1 - s);
        long port = 0;
        if (plen == 0 || plen > 5)
            return -1;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)colon[1 + i]))
                return -1;
            port = port * 10 + (colon[1 + i] - '0');
        }
        if (port < 1 || port > 65535)
            return -1;
        o->port = (int)port;
    }
    return 0;
}

/* scheme://host[:port], nothing after it except, when lenient (a list entry
 * an operator typed), one trailing '/'. */
static int parse_origin(const char *s, int lenient, origin_t *o)
{
    const char *sep = strstr(s, "://");
    if (!sep || sep == s || (size_t)(sep - s) >= sizeof o->scheme)
        return -1;
    for (const char *p = s; p < sep; p++) {
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return -1;
        o->scheme[p - s] = (char)tolower((unsigned char)*p);
    }
    o->scheme[sep - s] = '\0';
    const char *h = sep + 3;
    size_t n = strlen(h);
    if (lenient && n > 0 && h[n - 1] == '/')
        n--;
    return parse_hostport(h, n, default_port(o->scheme), o);
}

static int entry_allows(const char *entry, const origin_t *o)
{
    origin_t e;
    if (parse_origin(entry, 1, &e) < 0)
        return 0;
    if (strcmp(e.scheme, o->scheme) != 0 || e.port != o->port)
        return 0;
    if (strncmp(e.host, "*.", 2) == 0) {
        /* "*.example.com": at least one label before ".example.com", and the
         * bare domain itself does not match (same as browsers' cookie rules
         * would suggest, and what operators expect from the star). */
        size_t sl = strlen(e.host) - 1, hl = strlen(o->host);
        return hl > sl && strcmp(o->host + hl - sl, e.host + 1) == 0;
    }
    return strcmp(e.host, o->host) == 0;
}

int pg_origin_allowed(const pg_strlist_t *allowed, const char *origin, const char *host)
{
    if (!origin)
        return 1;
    size_t n = allowed ? allowed->n : 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(allowed->v[i], "*") == 0)
            return 1;
    origin_t o;
    if (parse_origin(origin, 0, &o) < 0)
        return 0;
    if (n > 0) {
        for (size_t i = 0; i < n; i++)
            if (entry_allows(allowed->v[i], &o))
                return 1;
        return 0;
    }
    /* Same-origin rule: the page was served by this very host. */
    if (!host)
        return 0;
    origin_t h;
    if (parse_hostport(host, strlen(host), o.port ? default_port(o.scheme) : 0, &h) < 0)
        return 0;
    return strcmp(h.host, o.host) == 0 && h.port == o.port;
}
