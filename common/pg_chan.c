/* pg_chan.c - channel names, kinds, globs and the channels= list. */
#include "pg_chan.h"

#include <stdio.h>
#include <string.h>

static int chan_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '_' || c == '-' || c == '.' || c == ':' || c == '@';
}

int pg_chan_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > PG_CHAN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!chan_char((unsigned char)name[i]))
            return 0;
    return 1;
}

pg_chan_kind_t pg_chan_kind(const char *name)
{
    if (!name)
        return PG_CHAN_INVALID;
    size_t len = strnlen(name, PG_CHAN_MAX + 1);
    if (!pg_chan_valid(name, len))
        return PG_CHAN_INVALID;
    if (name[0] == '_')
        return PG_CHAN_RESERVED;
    if (strcmp(name, "broadcast") == 0)
        return PG_CHAN_BROADCAST;
    if (strncmp(name, "user:", 5) == 0)
        return name[5] ? PG_CHAN_USER : PG_CHAN_INVALID;
    return PG_CHAN_TOPIC;
}

int pg_glob_match(const char *pattern, const char *name)
{
    /* Two pointers plus one remembered star: on a mismatch we only retry from
     * the most recent '*', one character further. Earlier stars never need
     * revisiting (a later star can absorb anything they could), so the cost
     * is O(|pattern| * |name|) at worst, not exponential as a naive recursive
     * matcher is on "a*a*a*a*b". */
    const char *p = pattern, *n = name;
    const char *star = NULL, *retry = NULL;
    if (!p || !n)
        return 0;
    while (*n) {
        if (*p == '*') {
            star = ++p;
            retry = n;
        } else if (*p == '?' || *p == *n) {
            p++;
            n++;
        } else if (star) {
            p = star;
            n = ++retry;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int pg_glob_list_match(const pg_strlist_t *list, const char *name)
{
    if (!list)
        return 0;
    for (size_t i = 0; i < list->n; i++)
        if (pg_glob_match(list->v[i], name))
            return 1;
    return 0;
}

/* Quote a client-supplied entry for an error line: at most 40 bytes, and
 * nothing unprintable, so a hostile query cannot forge log or body text. */
static void quote(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (n > 40 && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

int pg_chan_list_parse(const char *csv, size_t max, pg_strlist_t *out, char *err, size_t errlen)
{
    out->v = NULL;
    out->n = 0;
    if (!csv || !*csv)
        return 0;
    const char *p = csv, *a;
    size_t len;
    while (pg_csv_next(&p, &a, &len)) {
        /* An empty entry ("a,,b", "a,") is refused rather than skipped: it is
         * almost always a client building the list wrong. */
        if (!pg_chan_valid(a, len)) {
            char q[64];
            quote(q, sizeof q, a, len);
            snprintf(err, errlen, "invalid channel name \"%s\"", q);
            goto fail;
        }
        char name[PG_CHAN_MAX + 1];
        memcpy(name, a, len);
        name[len] = '\0';
        /* Duplicates are dropped so the caller never subscribes a
         * connection twice to one channel. */
        int dup = 0;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = strcmp(out->v[i], name) == 0;
        if (!dup) {
            if (out->n >= max) {
                snprintf(err, errlen, "too many channels (at most %zu)", max);
                goto fail;
            }
            if (pg_strlist_push(out, name) < 0) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
        }
    }
    return 0;
fail:
    pg_strlist_free(out);
    return -1;
}

int pg_chan_user(const char *user, char out[PG_CHAN_MAX + 1])
{
    size_t n = user != NULL ? strlen(user) : 0;
    if (n == 0 || n > PG_CHAN_MAX - 5)
        return -1;
    memcpy(out, "user:", 5);
    memcpy(out + 5, user, n + 1);
    return pg_chan_valid(out, n + 5) ? 0 : -1;
}

int pg_chan_is_user(const char *channel, const char *user)
{
    return user != NULL && strncmp(channel, "user:", 5) == 0 && strcmp(channel + 5, user) == 0;
}
