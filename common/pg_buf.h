/* pg_buf.h - growable byte buffer. The buffer owns data; data is always
 * NUL-terminated after len (the NUL is not counted) once anything was added. */
#ifndef PG_BUF_H
#define PG_BUF_H

#include <stddef.h>

typedef struct pg_buf {
    char   *data;
    size_t  len;
    size_t  cap;
} pg_buf_t;

#define PG_BUF_INIT { NULL, 0, 0 }

/* Each returns 0, or -1 on out-of-memory leaving the buffer as it was. */
int pg_buf_reserve(pg_buf_t *b, size_t extra);
int pg_buf_append(pg_buf_t *b, const void *p, size_t n);
int pg_buf_puts(pg_buf_t *b, const char *s);
int pg_buf_printf(pg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal, quotes included. Invalid UTF-8 bytes
 * become U+FFFD so the result is always valid UTF-8 JSON. */
int pg_buf_json_str(pg_buf_t *b, const char *s, size_t n);
/* 1 if s[0..n) is valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
 * past U+10FFFF, no truncated sequence), else 0. */
int pg_utf8_valid(const char *s, size_t n);
void pg_buf_reset(pg_buf_t *b);          /* len = 0, keeps the memory */
void pg_buf_free(pg_buf_t *b);           /* frees data; NULL-safe */
/* Hand data to the caller (who frees it with free()); the buffer becomes empty. */
char *pg_buf_steal(pg_buf_t *b, size_t *len);

#endif
