/* pushgate-bench: the few HTTP/1.1 pieces both the clients and the publisher
 * need. No full parser: a head is read whole, then searched. */
#ifndef PG_BENCH_HTTP_H
#define PG_BENCH_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Chunked transfer decoding state; zero-initialise. */
typedef struct chunker {
    int      state;     /* CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE */
    uint64_t left;      /* bytes left in the current chunk */
} chunker_t;

/* Moves decoded body bytes from in to out (or drops them when out is NULL).
 * Returns 1 once the last chunk and trailer are consumed, 0 when it needs more
 * input, -1 on malformed input. */
int http_chunk_feed(chunker_t *ch, struct evbuffer *in, struct evbuffer *out);

/* If in holds a whole response head, copies it NUL-terminated and lower-cased
 * into lc (at most lclen-1 bytes), removes it from in, and returns the status
 * code; 0 when the head is incomplete; -1 if it is malformed or too long. */
int http_read_head(struct evbuffer *in, char *lc, size_t lclen);

/* Value of header name (lower-case, without ':') in a lower-cased head, or
 * NULL; *len gets its length without surrounding blanks. */
const char *http_header(const char *lc, const char *name, size_t *len);

#endif
