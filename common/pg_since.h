/* pg_since.h - recovery positions (SPEC §4 Recovery, §10): what `since=`
 * and `Last-Event-ID` carry. One id is one cut across every channel of a
 * connection, exact on one Redis where ids rise across all channels and
 * reach a node in order. In a Redis Cluster messages of different shards
 * come over different links with no common order and ids rise per channel,
 * so a position is kept per channel:
 *
 *     since=1764277200123000                              one cut for all
 *     since=news:1764277200124000,user:42:1764277200123000 one per channel
 *     since=1764277200000000,news:1764277200124000         both: the number
 *                                                          for the others
 *
 * Each entry splits at its last ':' (ids are digits only; ',' is no channel
 * character, SPEC §2). The same text is what the SSE `id:` of a cluster
 * node carries, so the `Last-Event-ID` a browser sends by itself resumes
 * each channel at its own position. Pure C. */
#ifndef PG_SINCE_H
#define PG_SINCE_H

#include <stddef.h>
#include <stdint.h>

#include "pg_buf.h"
#include "pg_chan.h"

typedef struct pg_since_pos {
    char     channel[PG_CHAN_MAX + 1];
    uint64_t id;
} pg_since_pos_t;

typedef struct pg_since {
    int             has_all;  /* a bare id was given */
    uint64_t        all;      /* it: the position of every unlisted channel */
    pg_since_pos_t *pos;      /* per-channel positions, in the order given */
    size_t          n;
} pg_since_t;

/* Parse s[0..len) into out (which the caller frees with pg_since_free even
 * after an error). At most max_channels per-channel entries and at most one
 * bare id; every id 1..19 digits; every channel valid (SPEC §2) and listed
 * once. Returns 0, or -1 with a one-line reason in err (the 400 body). */
int pg_since_parse(const char *s, size_t len, size_t max_channels, pg_since_t *out,
                   char *err, size_t errlen);
/* The position of channel: 1 and *id from its own entry, else from the
 * bare id; 0 when it has neither (it starts live). */
int pg_since_get(const pg_since_t *p, const char *channel, uint64_t *id);
/* Append one entry "<channel>:<id>" to b, preceded by ',' unless b is
 * empty: the writer of SSE `id:` lists. Returns 0, or -1 when out of memory
 * (b may then end in part of the entry: discard it). */
int pg_since_append(pg_buf_t *b, const char *channel, uint64_t id);
/* What a node accepts in since= / Last-Event-ID (gateway/auth.c): 64
 * requested channels plus broadcast and user:<id> as entries, and the
 * whole text in bytes. A node writes no SSE id past them. */
#define PG_SINCE_MAX_ENTRIES 66
#define PG_SINCE_MAX_BYTES   4096

/* One channel's position for pg_since_write: the last id delivered on it
 * (or where it started, if none yet). channel is borrowed. */
typedef struct pg_since_ent {
    const char *channel;
    uint64_t    id;
} pg_since_ent_t;

/* Write into b (emptied first) the position list of the n channels in v,
 * the SSE `id:` of a cluster node: the highest id, then "<channel>:<id>"
 * for each channel below it, in v's order, so the bare id stands for the
 * channels at the highest (one channel, or all at one position: the bare
 * id alone, as on one Redis). Past PG_SINCE_MAX_ENTRIES entries or
 * max_bytes bytes (at most PG_SINCE_MAX_BYTES: what the node would refuse,
 * or less when the request that brings it back has less room), it writes
 * what still fits and never skips a message: the lowest positions get their
 * own entries, as many as fit (v is sorted by id for that), and the bare id
 * is the lowest position left without one, so a channel above it may see
 * again what it already had (a duplicate, which clients can drop by id),
 * never miss one; the bare id alone (<= 19 bytes) always goes. n == 0
 * leaves b empty. Returns 0, 1 when it had to shorten the list that way,
 * or -1 when out of memory (discard b). */
int pg_since_write(pg_buf_t *b, pg_since_ent_t *v, size_t n, size_t max_bytes);
/* Release what out holds; NULL is a no-op. */
void pg_since_free(pg_since_t *p);

#endif
