/* pg_url.c - redis://[[user]:password@]host[:port][/db] */
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

int pg_url_parse(const char *s, pg_url_t *u, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!s || strncmp(s, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, errlen, "must start with redis://");
        return -1;
    }
    const char *p = s + sizeof scheme - 1;
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
    const char *hend;
    const char *h = p;
    int bracketed = *p == '[';
    if (bracketed) {
        h = p + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h) {
            snprintf(err, errlen, "bad IPv6 address: missing ']'");
            goto fail;
        }
        p = hend + 1;
    } else {
        hend = p + strcspn(p, ":/");
        p = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0) {
        snprintf(err, errlen, "missing host");
        goto fail;
    }
    if (hlen >= sizeof u->host) {
        snprintf(err, errlen, "host name too long");
        goto fail;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '@' || c == '[' || c == ']'
            || (c == ':' && !bracketed)) {
            snprintf(err, errlen, "bad character in host");
            goto fail;
        }
    }
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    if (*p == ':') {
        p++;
        size_t plen = strcspn(p, "/");
        uint64_t port;
        if (pg_atou64(p, plen, &port) < 0 || port < 1 || port > 65535) {
            snprintf(err, errlen, "port must be a number in 1..65535");
            goto fail;
        }
        u->port = (int)port;
        p += plen;
    }
    if (*p == '/') {
        p++;
        if (*p) {
            uint64_t db;
            if (pg_atou64(p, (size_t)-1, &db) < 0 || db > INT_MAX) {
                snprintf(err, errlen, "database must be a number (redis://host:port/0)");
                goto fail;
            }
            u->db = (int)db;
            p += strlen(p);
        }
    }
    if (*p) {
        snprintf(err, errlen, "unexpected text after the host");
        goto fail;
    }
    return 0;
fail:
    memset(u->password, 0, sizeof u->password);
    return -1;
}
