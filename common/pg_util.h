/* pg_util.h - small shared definitions: error buffers, assertions, string lists,
 * clocks. Pure C; no libwebsockets or hiredis anywhere under common/. */
#ifndef PG_UTIL_H
#define PG_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define PG_ERRLEN 128   /* size of every err[] buffer a parser fills */

#define PG_OK     0
#define PG_ERR   (-1)
#define PG_AGAIN (-2)

/* Invariant check, always on (also in release builds): a failure is a bug in
 * pushgate, never a consequence of what a client or Redis sent. */
#define pg_assert(e) \
    do { if (!(e)) pg_assert_fail(#e, __FILE__, __LINE__); } while (0)
void pg_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Format one error line into err (errlen bytes; NULL or 0: nothing), as
 * every parser's err[] is filled. */
void pg_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An owned list of owned NUL-terminated strings. */
typedef struct pg_strlist {
    char  **v;
    size_t  n;
} pg_strlist_t;

/* Split a comma-separated list into out (which must be zeroed or freed first).
 * Items are trimmed of spaces/tabs; empty items are skipped, so "" and NULL
 * give an empty list. Returns 0, or -1 on out-of-memory (out left empty). */
int pg_strlist_split(const char *csv, pg_strlist_t *out);
/* Walk a comma-separated list: *p starts at the list and is advanced past
 * each item. Returns 1 with [*item, *item + *len) the next item trimmed of
 * spaces and tabs (possibly empty), or 0 when the list is exhausted. "" has
 * one empty item; NULL none. */
int pg_csv_next(const char **p, const char **item, size_t *len);

/* Room for one more element in an array v of n used of *cap, each elem
 * bytes: v itself while n < *cap, else v grown to twice *cap (first when
 * *cap is 0), *cap updated. NULL on out-of-memory, v and *cap untouched.
 *     T *nv = pg_grow(a->v, a->n, &a->cap, sizeof(*nv), 8);
 *     if (nv == NULL) return -1;
 *     a->v = nv; */
void *pg_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first);
/* Append a copy of s. Returns 0 or -1 on out-of-memory. */
int pg_strlist_push(pg_strlist_t *l, const char *s);
/* Free every item and the array; l becomes empty. NULL-safe. */
void pg_strlist_free(pg_strlist_t *l);

/* Milliseconds of CLOCK_MONOTONIC / CLOCK_REALTIME. */
uint64_t pg_mono_ms(void);
uint64_t pg_mono_ns(void);
uint64_t pg_wall_ms(void);

/* Format v as decimal digits into buf (>= 21 bytes); returns the length. */
size_t pg_u64toa(uint64_t v, char *buf);
/* Parse a string of 1..19 decimal digits (nothing else) into *out: returns 0,
 * or -1 if s is empty, has a non-digit or overflows. len = (size_t)-1 means
 * s is NUL-terminated. */
int pg_atou64(const char *s, size_t len, uint64_t *out);

/* Constant-time comparison of two byte strings (the API key check): the time
 * depends only on the lengths. Returns 1 when equal. */
int pg_secure_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
