/* httpchunk.h - where a chunked request body ends, and what it holds
 * (RFC 9112 §7.1), read a piece at a time as the bytes arrive.
 *
 * lws 4.1 reads request bodies by Content-Length only. The relay (relay.h)
 * decodes a chunked body with this scanner, gives lws the data with a
 * Content-Length, and must never take a byte past the body's end: what
 * follows is the next request. So the scanner says exactly how many bytes
 * each step takes, and refuses what the grammar does not allow (a bare LF,
 * whitespace before a size, a size of more than 15 hex digits, data not
 * followed by CRLF, obs-fold or a malformed line in the trailers) instead of
 * guessing where the body ends. Chunk extensions are skipped, trailer fields
 * discarded (RFC 9112 §7.1.1, §7.1.2 allow both).
 *
 * Pure: no I/O, no globals, no allocation; fuzzed by tests/fuzz/fuzz_chunk.c. */
#ifndef PG_HTTPCHUNK_H
#define PG_HTTPCHUNK_H

#include <stddef.h>
#include <stdint.h>

#define PG_CHUNK_LINE_MAX    4096   /* a size line or a trailer line, CRLF included */
#define PG_CHUNK_TRAILER_MAX 8000   /* the whole trailer section, as PG_HEAD_MAX */

typedef struct pg_chunk {
    int      state;     /* private */
    uint64_t left;      /* data bytes left in the current chunk */
    size_t   line;      /* bytes of the current size or trailer line */
    size_t   trailer;   /* bytes of the trailer section so far */
    int      ndigits;
    int      done;      /* 1 once the body has ended */
} pg_chunk_t;

#define PG_CHUNK_INIT { 0, 0, 0, 0, 0, 0 }

/* Take the next piece of a chunked body from in[0, len). Returns how many
 * bytes it takes (0 only when len is 0 or the body has ended), never one
 * past the body's end; *data is set to how many of them, at the end of the
 * piece, are chunk data (a piece is either framing, *data 0, or data,
 * *data equal to the return). -1 when the body is malformed (c is then
 * stuck there). Call again with what is left until it returns 0 or
 * c->done. */
long pg_chunk_step(pg_chunk_t *c, const char *in, size_t len, size_t *data);

#endif
