/* pg_util.c - string lists, clocks, decimal conversions, assertions. */
#include "pg_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pg_assert_fail(const char *expr, const char *file, int line)
{
    /* stdio may be in any state here; a single fprintf is the best we can do
     * before abort() leaves a core for the post-mortem. */
    fprintf(stderr, "pushgate: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

int pg_strlist_push(pg_strlist_t *l, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return -1;
    char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v) {
        free(copy);
        return -1;
    }
    v[l->n++] = copy;
    l->v = v;
    return 0;
}

void pg_strlist_free(pg_strlist_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int pg_csv_next(const char **p, const char **item, size_t *len)
{
    const char *s = *p;
    if (s == NULL)
        return 0;
    const char *end = strchr(s, ',');
    if (!end)
        end = s + strlen(s);
    const char *a = s, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    *item = a;
    *len = (size_t)(b - a);
    *p = *end ? end + 1 : NULL;   /* NULL: that was the last item */
    return 1;
}

int pg_strlist_split(const char *csv, pg_strlist_t *out)
{
    const char *p = csv, *a;
    size_t len;
    out->v = NULL;
    out->n = 0;
    while (pg_csv_next(&p, &a, &len)) {
        if (len == 0)
            continue;   /* empty items are skipped */
        char *item = strndup(a, len);
        if (!item || pg_strlist_push(out, item) < 0) {
            free(item);
            pg_strlist_free(out);
            return -1;
        }
        free(item);
    }
    return 0;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pg_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t pg_mono_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000u; }
uint64_t pg_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000u; }

size_t pg_u64toa(uint64_t v, char *buf)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

int pg_atou64(const char *s, size_t len, uint64_t *out)
{
    if (!s)
        return -1;
    if (len == (size_t)-1)
        len = strlen(s);
    /* 19 digits always fit in 64 bits, so no overflow arithmetic is needed;
     * 20-digit ids would also exceed the 2^53 the SPEC promises anyway. */
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int pg_secure_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Walk the longer of the two regardless of where they differ, so the
     * time leaks the lengths only, never the position of the first mismatch. */
    const unsigned char *x = a, *y = b;
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char cx = i < alen ? x[i] : 0;
        unsigned char cy = i < blen ? y[i] : 0;
        diff |= (unsigned char)(cx ^ cy);
    }
    return diff == 0;
}

void pg_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void *pg_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : first;
    void *nv = realloc(v, ncap * elem);
    if (nv != NULL)
        *cap = ncap;
    return nv;
}
