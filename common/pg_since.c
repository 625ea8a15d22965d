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

static int append_id(pg_buf_t *b, uint64_t id)
{
    char num[24];
    return pg_buf_append(b, num, pg_u64toa(id, num));
}

static int cmp_ent(const void *a, const void *b)
{
    uint64_t x = ((const pg_since_ent_t *)a)->id, y = ((const pg_since_ent_t *)b)->id;
    return x < y ? -1 : x > y;
}

int pg_since_write(pg_buf_t *b, pg_since_ent_t *v, size_t n, size_t max_bytes)
{
    if (max_bytes > PG_SINCE_MAX_BYTES)
        max_bytes = PG_SINCE_MAX_BYTES;
    pg_buf_reset(b);
    if (n == 0)
        return 0;
    uint64_t hi = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].id > hi)
            hi = v[i].id;
    if (append_id(b, hi) < 0)
        return -1;
    size_t entries = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].id >= hi)
            continue;
        if (pg_since_append(b, v[i].channel, v[i].id) < 0)
            return -1;
        entries++;
    }
    if (entries <= PG_SINCE_MAX_ENTRIES && b->len <= max_bytes)
        return 0;

    /* Too long. A bare id too high skips what a channel below it has in
     * flight (the gap this list exists to close); one too low only repeats
     * what a channel above it already delivered. So the lowest positions
     * are listed while they fit, and the bare id is the first position that
     * did not fit: every channel resumes at or below its own position. */
    qsort(v, n, sizeof(*v), cmp_ent);
    pg_buf_t list = PG_BUF_INIT;
    uint64_t bare = 0;
    int have_bare = 0;
    size_t room = max_bytes > 20 ? max_bytes - 20 : 0;   /* the bare id and its ',' */
    entries = 0;
    for (size_t i = 0; i < n; i++) {
        if (have_bare && v[i].id <= bare)
            continue;                           /* the bare id covers it */
        size_t mark = list.len;
        if (entries < PG_SINCE_MAX_ENTRIES) {
            if (pg_since_append(&list, v[i].channel, v[i].id) < 0) {
                pg_buf_free(&list);
                return -1;
            }
            if (list.len <= room) {
                entries++;
                continue;
            }
            list.len = mark;
            list.data[mark] = '\0';
        }
        if (!have_bare) {
            have_bare = 1;
            bare = v[i].id;
        }
    }
    pg_buf_reset(b);
    int rc = append_id(b, have_bare ? bare : hi);
    if (rc == 0 && list.len > 0)
        rc = pg_buf_append(b, ",", 1) < 0 || pg_buf_append(b, list.data, list.len) < 0 ? -1 : 0;
    pg_buf_free(&list);
    return rc < 0 ? -1 : 1;
}

void pg_since_free(pg_since_t *p)
{
    if (p == NULL)
        return;
    free(p->pos);
    memset(p, 0, sizeof(*p));
}
