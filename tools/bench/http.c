/* pushgate-bench: HTTP/1.1 response heads and chunked bodies. */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

enum { CH_SIZE = 0, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

/* Takes one line (without its CRLF) into buf; returns its length, -1 when no
 * whole line is buffered, -2 when the line is too long for buf. */
static long take_line(struct evbuffer *in, char *buf, size_t buflen)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (p.pos < 0)
        return evbuffer_get_length(in) > buflen ? -2 : -1;
    if ((size_t)p.pos >= buflen)
        return -2;
    evbuffer_remove(in, buf, (size_t)p.pos);
    buf[p.pos] = '\0';
    evbuffer_drain(in, eol_len);
    return (long)p.pos;
}

int http_chunk_feed(chunker_t *ch, struct evbuffer *in, struct evbuffer *out)
{
    char line[256];
    for (;;) {
        long n;
        switch (ch->state) {
        case CH_SIZE:
            n = take_line(in, line, sizeof line);
            if (n == -1)
                return 0;
            if (n < 0 || !isxdigit((unsigned char)line[0]))
                return -1;
            ch->left = strtoull(line, NULL, 16);
            ch->state = ch->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t have = evbuffer_get_length(in);
            if (have == 0)
                return 0;
            size_t take = have < ch->left ? have : (size_t)ch->left;
            if (out)
                evbuffer_remove_buffer(in, out, take);
            else
                evbuffer_drain(in, take);
            ch->left -= take;
            if (ch->left == 0)
                ch->state = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            n = take_line(in, line, sizeof line);
            if (n == -1)
                return 0;
            if (n != 0)
                return -1;
            ch->state = CH_SIZE;
            break;
        case CH_TRAILER:
            n = take_line(in, line, sizeof line);
            if (n == -1)
                return 0;
            if (n < 0)
                return -1;
            if (n == 0) {
                ch->state = CH_DONE;
                return 1;
            }
            break;
        default:
            return 1;
        }
    }
}

int http_read_head(struct evbuffer *in, char *lc, size_t lclen)
{
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (p.pos < 0)
        return evbuffer_get_length(in) >= lclen ? -1 : 0;
    size_t hl = (size_t)p.pos + 4;
    if (hl >= lclen)
        return -1;
    evbuffer_remove(in, lc, hl);
    lc[hl] = '\0';
    for (size_t i = 0; i < hl; i++)
        lc[i] = (char)tolower((unsigned char)lc[i]);
    int status = 0;
    if (sscanf(lc, "http/1.%*d %d", &status) != 1 || status < 100 || status > 999)
        return -1;
    return status;
}

const char *http_header(const char *lc, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = lc;
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            if (!e)
                e = v + strlen(v);
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *len = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}
