/* httpchunk.c - the chunked body scanner. See httpchunk.h. */
#include <string.h>

#include "httpchunk.h"

enum {
    S_SIZE,        /* the first hex digit of a chunk size */
    S_SIZE_MORE,   /* more digits, or what ends the size */
    S_SIZE_WS,     /* BWS after the size: only a chunk-ext may follow */
    S_EXT,         /* chunk-ext, up to the CR */
    S_SIZE_LF,
    S_DATA,
    S_DATA_CR,     /* the CRLF that ends a chunk's data */
    S_DATA_LF,
    S_TR_START,    /* a trailer line, or the CRLF that ends the body */
    S_TR_NAME,
    S_TR_VALUE,
    S_TR_LF,
    S_END_LF,
    S_FAILED
};

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 9110 §5.6.2 tchar */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value and chunk-ext octets: VCHAR, obs-text, SP, HTAB */
static int is_text(unsigned char c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static long broken(pg_chunk_t *c)
{
    c->state = S_FAILED;
    return -1;
}

long pg_chunk_step(pg_chunk_t *c, const char *in, size_t len, size_t *data)
{
    *data = 0;
    if (c->state == S_FAILED)
        return -1;
    if (c->done || len == 0)
        return 0;
    if (c->state == S_DATA) {
        size_t n = c->left < len ? (size_t)c->left : len;
        c->left -= n;
        if (c->left == 0)
            c->state = S_DATA_CR;
        *data = n;
        return (long)n;
    }
    size_t i = 0;
    for (; i < len && c->state != S_DATA && !c->done; i++) {
        unsigned char b = (unsigned char)in[i];
        if (c->state <= S_SIZE_LF || c->state >= S_TR_START) {
            /* a size or trailer line: bounded, so framing cannot go on
             * forever between two data bytes */
            if (++c->line > PG_CHUNK_LINE_MAX)
                return broken(c);
            if (c->state >= S_TR_START && ++c->trailer > PG_CHUNK_TRAILER_MAX)
                return broken(c);
        }
        switch (c->state) {
        case S_SIZE:
        case S_SIZE_MORE: {
            int v = hexval(b);
            if (v >= 0) {
                if (++c->ndigits > 15)   /* past any body the node takes */
                    return broken(c);
                c->left = c->left * 16 + (uint64_t)v;
                c->state = S_SIZE_MORE;
            } else if (c->state == S_SIZE)
                return broken(c);
            else if (b == '\r')
                c->state = S_SIZE_LF;
            else if (b == ';')
                c->state = S_EXT;
            else if (b == ' ' || b == '\t')
                c->state = S_SIZE_WS;
            else
                return broken(c);
            break;
        }
        case S_SIZE_WS:
            if (b == ';')
                c->state = S_EXT;
            else if (b != ' ' && b != '\t')
                return broken(c);
            break;
        case S_EXT:
            if (b == '\r')
                c->state = S_SIZE_LF;
            else if (!is_text(b))
                return broken(c);
            break;
        case S_SIZE_LF:
            if (b != '\n')
                return broken(c);
            c->line = 0;
            c->ndigits = 0;
            c->state = c->left ? S_DATA : S_TR_START;
            break;
        case S_DATA_CR:
            if (b != '\r')
                return broken(c);
            c->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (b != '\n')
                return broken(c);
            c->state = S_SIZE;
            c->line = 0;
            break;
        case S_TR_START:
            if (b == '\r')
                c->state = S_END_LF;
            else if (is_tchar(b))
                c->state = S_TR_NAME;
            else   /* obs-fold, whitespace or junk where a name starts */
                return broken(c);
            break;
        case S_TR_NAME:
            if (b == ':')
                c->state = S_TR_VALUE;
            else if (!is_tchar(b))
                return broken(c);
            break;
        case S_TR_VALUE:
            if (b == '\r')
                c->state = S_TR_LF;
            else if (!is_text(b))
                return broken(c);
            break;
        case S_TR_LF:
            if (b != '\n')
                return broken(c);
            c->line = 0;
            c->state = S_TR_START;
            break;
        case S_END_LF:
            if (b != '\n')
                return broken(c);
            c->done = 1;
            break;
        default:
            return broken(c);
        }
    }
    return (long)i;
}
