/* httphead.c - strict check of one request head. See httphead.h. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httphead.h"
#include "pg_util.h"

typedef struct field {
    const char *name, *val;
    size_t      nlen, vlen;
    int         skip;        /* left out of the canonical head */
} field_t;

static int refuse(pg_head_t *h, int status, const char *why)
{
    h->status = status;
    h->why = why;
    return PG_OK;
}

/* RFC 9110 §5.6.2 tchar */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 §5.5 field-value octets: VCHAR, obs-text, SP, HTAB. NUL, CR, LF
 * and the other controls are refused, never cut at or passed on. */
static int is_vchar(unsigned char c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static int name_is(const field_t *f, const char *name)
{
    return f->nlen == strlen(name) && strncasecmp(f->name, name, f->nlen) == 0;
}

static int same_name(const field_t *a, const field_t *b)
{
    return a->nlen == b->nlen && strncasecmp(a->name, b->name, a->nlen) == 0;
}

/* How many elements of the list v[0, n) are tok; every non-empty element
 * is also counted in *all. */
static int list_count(const char *v, size_t n, const char *tok, int *all)
{
    size_t tl = strlen(tok), i = 0;
    int hits = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a)
            ++*all;
        if (b - a == tl && strncasecmp(v + a, tok, tl) == 0)
            hits++;
        i = j + 1;
    }
    return hits;
}

/* 1 if the list v[0, n) holds token tok (case-insensitive, OWS around
 * elements ignored). */
static int list_has(const char *v, size_t n, const char *tok)
{
    int all = 0;
    return list_count(v, n, tok, &all) > 0;
}

/* The last element of the list v[0, n), trimmed. */
static void list_last(const char *v, size_t n, const char **e, size_t *elen)
{
    size_t a = n;
    while (a > 0 && v[a - 1] != ',')
        a--;
    size_t b = n;
    while (a < b && (v[a] == ' ' || v[a] == '\t'))
        a++;
    while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
        b--;
    *e = v + a;
    *elen = b - a;
}

/* RFC 6455 §4.1: the key is base64 of 16 bytes: 22 characters, the last
 * of which carries only 2 bits, and "==". */
static int ws_key_ok(const char *v, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n != 24 || v[22] != '=' || v[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (v[i] == 0 || strchr(b64, v[i]) == NULL)
            return 0;
    return strchr("AQgw", v[21]) != NULL;
}

/* RFC 3986 reg-name / IP-literal / port characters. */
static int host_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
              (c != 0 && strchr("-._~%!$&'()*+,;=:[]", c) != NULL)))
            return 0;
    }
    return 1;
}

static int method_known(const char *m, size_t n)
{
    static const char *const known[] = { "GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE",
                                         "PATCH" };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (n == strlen(known[i]) && memcmp(m, known[i], n) == 0)
            return 1;
    return 0;
}

/* Find the end of the head from s: the index just past its empty line, 0
 * when not there yet, or a refusal (bare LF, too long) in h. */
static size_t head_end(const char *buf, size_t len, size_t s, pg_head_t *h, size_t *nlines)
{
    size_t line = s, lim = len - s > PG_HEAD_MAX ? s + PG_HEAD_MAX : len;
    *nlines = 0;
    for (size_t p = s; p < lim; p++) {
        if (buf[p] != '\n')
            continue;
        if (p == s || buf[p - 1] != '\r') {
            refuse(h, 400, "bare LF line end");
            return 0;
        }
        if (p - 1 == line)
            return p + 1;
        ++*nlines;
        line = p + 1;
    }
    if (len - s >= PG_HEAD_MAX)
        refuse(h, *nlines == 0 ? 414 : 431, *nlines == 0 ? "request target too long"
                                                         : "request header fields too large");
    return 0;
}

int pg_head_check(const char *buf, size_t len, pg_head_t *h, pg_buf_t *out)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;

    /* RFC 9112 §2.2: empty lines before the request line are ignored */
    size_t s = 0;
    while (s + 1 < len && buf[s] == '\r' && buf[s + 1] == '\n' && s < PG_HEAD_MAX)
        s += 2;
    if (s >= PG_HEAD_MAX)
        return refuse(h, 400, "bad request");
    if (len - s < 2)
        return PG_AGAIN;

    size_t nlines;
    size_t end = head_end(buf, len, s, h, &nlines);
    if (h->status)
        return PG_OK;
    if (end == 0)
        return PG_AGAIN;
    h->consumed = end;
    if (nlines - 1 > PG_HEAD_MAX_FIELDS)
        return refuse(h, 431, "too many header fields");

    /* request-line = method SP request-target SP HTTP-version (§3) */
    size_t i = s;
    while (is_tchar((unsigned char)buf[i]))
        i++;
    const char *method = buf + s;
    size_t mlen = i - s;
    if (mlen == 0 || buf[i] != ' ')
        return refuse(h, 400, "bad request line");
    h->is_head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    size_t t = ++i;
    while ((unsigned char)buf[i] >= 0x21 && (unsigned char)buf[i] <= 0x7e)
        i++;
    const char *target = buf + t;
    size_t tlen = i - t;
    if (tlen == 0 || buf[i] != ' ')
        return refuse(h, 400, "bad request line");
    const char *ver = buf + i + 1;
    if (ver + 10 > buf + end || memcmp(ver + 8, "\r\n", 2) != 0 || memcmp(ver, "HTTP/", 5) != 0 ||
        ver[5] < '0' || ver[5] > '9' || ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
        return refuse(h, 400, "bad request line");
    if (!method_known(method, mlen))
        return refuse(h, 501, "method not implemented");
    if (ver[5] != '1')
        return refuse(h, 505, "HTTP version not supported");
    int http10 = ver[7] == '0';

    /* the target: origin-form, absolute-form (cut to its path, §3.2.2), or
     * * for OPTIONS */
    const char *path = target, *authority = NULL;
    size_t plen = tlen, alen = 0;
    if (target[0] != '/') {
        size_t sch = tlen >= 7 && strncasecmp(target, "http://", 7) == 0   ? 7
                   : tlen >= 8 && strncasecmp(target, "https://", 8) == 0 ? 8 : 0;
        if (sch) {
            size_t a = sch;
            while (a < tlen && target[a] != '/' && target[a] != '?')
                a++;
            authority = target + sch;
            alen = a - sch;
            path = target + a;
            plen = tlen - a;
            if (alen == 0 || !host_ok(authority, alen))
                return refuse(h, 400, "bad request target");
        } else if (!(tlen == 1 && target[0] == '*' && mlen == 7 &&
                     memcmp(method, "OPTIONS", 7) == 0))
            return refuse(h, 400, "bad request target");
    }

    /* field lines (§5): name ":" OWS value OWS, nothing else */
    field_t *f = calloc(nlines ? nlines : 1, sizeof(*f));
    if (f == NULL)
        return PG_ERR;
    size_t nf = 0;
    i = (size_t)(ver + 10 - buf);
    while (i < end - 2) {
        size_t b = i;
        while (buf[b] != '\r' || buf[b + 1] != '\n')
            b++;
        if (buf[i] == ' ' || buf[i] == '\t') {
            free(f);
            return refuse(h, 400, "folded or indented header line");
        }
        size_t k = i;
        while (k < b && is_tchar((unsigned char)buf[k]))
            k++;
        if (k == i || k == b || buf[k] != ':') {
            free(f);
            return refuse(h, 400, "malformed header line");
        }
        size_t v = k + 1, w = b;
        while (v < w && (buf[v] == ' ' || buf[v] == '\t'))
            v++;
        while (w > v && (buf[w - 1] == ' ' || buf[w - 1] == '\t'))
            w--;
        for (size_t c = v; c < w; c++)
            if (!is_vchar((unsigned char)buf[c])) {
                free(f);
                return refuse(h, 400, "control character in a header value");
            }
        f[nf].name = buf + i;
        f[nf].nlen = k - i;
        f[nf].val = buf + v;
        f[nf].vlen = w - v;
        nf++;
        i = b + 2;
    }

    /* what the fields mean together */
    int nhost = 0, ncl = 0, nte = 0, nkey = 0, nver = 0, has_ws = 0, conn_upgrade = 0,
        keep_alive = 0, conn_close = 0, key_ok = 0, ver_ok = 0, nchunked = 0, ncodings = 0;
    const char *te_last = NULL;
    size_t te_last_len = 0;
    for (size_t n = 0; n < nf; n++) {
        field_t *x = &f[n];
        if (name_is(x, "host")) {
            nhost++;
            if (!host_ok(x->val, x->vlen))
                nhost = 99;
        } else if (name_is(x, "content-length")) {
            ncl++;
            long long cl = 0;
            if (x->vlen == 0 || x->vlen > 15)
                ncl = 99;
            for (size_t c = 0; c < x->vlen && ncl != 99; c++) {
                if (x->val[c] < '0' || x->val[c] > '9')
                    ncl = 99;
                cl = cl * 10 + (x->val[c] - '0');
            }
            h->content_length = cl;
        } else if (name_is(x, "transfer-encoding")) {
            nte++;
            list_last(x->val, x->vlen, &te_last, &te_last_len);
            nchunked += list_count(x->val, x->vlen, "chunked", &ncodings);
            x->skip = 1;   /* the relay decodes the body (httphead.h) */
        } else if (name_is(x, "connection")) {
            conn_upgrade |= list_has(x->val, x->vlen, "upgrade");
            keep_alive |= list_has(x->val, x->vlen, "keep-alive");
            conn_close |= list_has(x->val, x->vlen, "close");
        } else if (name_is(x, "upgrade")) {
            has_ws |= list_has(x->val, x->vlen, "websocket");
        } else if (name_is(x, "sec-websocket-key")) {
            nkey++;
            key_ok = ws_key_ok(x->val, x->vlen);
        } else if (name_is(x, "sec-websocket-version")) {
            nver++;
            ver_ok = x->vlen == 2 && memcmp(x->val, "13", 2) == 0;
        } else if (name_is(x, "expect")) {
            if (x->vlen != 12 || strncasecmp(x->val, "100-continue", 12) != 0) {
                free(f);
                return refuse(h, 417, "expectation not supported");
            }
            h->expect_continue = 1;
            x->skip = 1;   /* answered by the node, not by lws */
        } else if (name_is(x, "sec-websocket-protocol")) {
            x->skip = 1;   /* the node speaks no subprotocol: answered without one */
        }
    }
    const char *why = NULL;
    int status = 400;
    if (nhost > 1 || (!http10 && nhost != 1))
        why = "one valid Host field is required";
    else if (ncl > 1)
        why = "bad Content-Length";
    else if (nte && (ncl || http10))
        why = "Transfer-Encoding with Content-Length or over HTTP/1.0";
    else if (nte && !(te_last_len == 7 && strncasecmp(te_last, "chunked", 7) == 0))
        why = "Transfer-Encoding must end in chunked";
    else if (nte && ncodings > nchunked) {
        /* RFC 9112 §6.1: a coding the server does not understand, SHOULD 501 */
        why = "transfer coding not implemented";
        status = 501;
    } else if (nchunked > 1)
        why = "chunked applied more than once";   /* RFC 9112 §6.1 MUST NOT */
    else if (has_ws) {
        if (mlen != 3 || memcmp(method, "GET", 3) != 0)
            why = "a WebSocket handshake is a GET";
        else if (http10)
            why = "a WebSocket handshake needs HTTP/1.1";
        else if (!conn_upgrade)
            why = "a WebSocket handshake needs Connection: Upgrade";
        else if (nte || h->content_length > 0)
            why = "a WebSocket handshake has no body";   /* its bytes would be frames */
        else if (nkey != 1 || !key_ok)
            why = "bad Sec-WebSocket-Key";
        else if (nver != 1 || !ver_ok) {
            why = "unsupported WebSocket version";
            status = 426;
            h->ws_version = 1;
        }
    }
    if (why != NULL) {
        free(f);
        return refuse(h, status, why);
    }
    if (!has_ws)
        for (size_t n = 0; n < nf; n++)
            if (name_is(&f[n], "upgrade"))
                f[n].skip = 1;   /* an upgrade the node does not do: ignored (RFC 9110 §7.8) */
    int close_10 = http10 && !keep_alive;
    h->has_body = nte > 0 || h->content_length > 0;
    h->chunked = nte > 0;
    h->upgrade = has_ws;
    h->persistent = http10 ? keep_alive && !conn_close : !conn_close;

    /* the canonical head */
    pg_buf_append(out, method, mlen);
    pg_buf_puts(out, " ");
    if (plen == 0 || path[0] == '?')
        pg_buf_puts(out, "/");
    pg_buf_append(out, path, plen);
    pg_buf_puts(out, " HTTP/1.1\r\n");
    for (size_t n = 0; n < nf; n++) {
        if (f[n].skip || (close_10 && name_is(&f[n], "connection")))
            continue;
        pg_buf_append(out, f[n].name, f[n].nlen);
        pg_buf_puts(out, ": ");
        if (authority != NULL && name_is(&f[n], "host")) {
            pg_buf_append(out, authority, alen);
            pg_buf_puts(out, "\r\n");
            continue;
        }
        /* repeated lines become one list (RFC 9110 §5.3); empty elements
         * are dropped, as a list's reader would */
        int any = 0;
        for (size_t m = n; m < nf; m++) {
            if ((m > n && f[m].skip) || !same_name(&f[n], &f[m]))
                continue;
            f[m].skip = 1;
            if (f[m].vlen == 0)
                continue;
            if (any)
                pg_buf_puts(out, ", ");
            pg_buf_append(out, f[m].val, f[m].vlen);
            any = 1;
        }
        pg_buf_puts(out, "\r\n");
    }
    if (close_10)
        pg_buf_puts(out, "connection: close\r\n");
    int rc = pg_buf_puts(out, "\r\n");
    free(f);
    return rc < 0 ? PG_ERR : PG_OK;
}
