/* pg_since.c - per-channel recovery positions. See pg_since.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_since.h"
#include "pg_util.h"

int pg_since_parse(const char *s, size_t len, size_t max_channels, pg_since_t *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        snprintf(err, errlen, "since is empty");
        return -1;
    }
    /* entries = commas + 1, an upper bound on the array */
    size_t entries = 1;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ',')
            entries++;
    if (entries > max_channels + 1) {
        snprintf(err, errlen, "since lists more than %zu channels", max_channels);
        return -1;
    }
    const char *p = s, *end = s + len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *colon = NULL;
        for (const char *q = p; q < e; q++)
            if (*q == ':')
                colon = q;
        uint64_t id;
        if (colon == NULL) {
            if (pg_atou64(p, (size_t)(e - p), &id) < 0) {
                snprintf(err, errlen, "since: need an id of 1..19 digits or <channel>:<id>");
                return -1;
            }
            if (out->has_all) {
                snprintf(err, errlen, "since has more than one bare id");
                return -1;
            }
            out->has_all = 1;
            out->all = id;
        } else {
            size_t cl = (size_t)(colon - p);
            if (pg_atou64(colon + 1, (size_t)(e - colon - 1), &id) < 0) {
                snprintf(err, errlen, "since: need an id of 1..19 digits after the last ':'");
                return -1;
            }
            if (!pg_chan_valid(p, cl)) {
                snprintf(err, errlen, "since: invalid channel name");
                return -1;
            }
            for (size_t i = 0; i < out->n; i++) {
                if (strlen(out->pos[i].channel) == cl && memcmp(out->pos[i].channel, p, cl) == 0) {
                    snprintf(err, errlen, "since lists a channel twice");
                    return -1;
                }
            }
            if (out->n >= max_channels) {
                snprintf(err, errlen, "since lists more than %zu channels", max_channels);
                return -1;
            }
            if (out->pos == NULL) {
                out->pos = calloc(entries, sizeof(*out->pos));
                if (out->pos == NULL) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
            }
            pg_since_pos_t *pp = &out->pos[out->n++];
            memcpy(pp->channel, p, cl);
            pp->channel[cl] = '\0';
            pp->id = id;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

int pg_since_get(const pg_since_t *p, const char *channel, uint64_t *id)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->pos[i].channel, channel) == 0) {
            *id = p->pos[i].id;
            return 1;
        }
    }
    if (p->has_all) {
        *id = p->all;
        return 1;
    }
    return 0;
}

int pg_since_append(pg_buf_t *b, const char *channel, uint64_t id)
{
    char num[24];
    size_t n = pg_u64toa(id, num);
    if (b->len > 0 && pg_buf_append(b, ",", 1) < 0)
        return -1;
    if (pg_buf_puts(b, channel) < 0 || pg_buf_append(b, ":", 1) < 0 ||
        pg_buf_append(b, num, n) < 0)
        return -1;
    return 0;
}

void pg_since_free(pg_since_t *p)
{
    if (p == NULL)
        return;
    free(p->pos);
    memset(p, 0, sizeof(*p));
}
