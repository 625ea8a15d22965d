/* pg_chan.h - channel names (SPEC §2) and the globs used by --public-topics
 * and the token's channels claim. */
#ifndef PG_CHAN_H
#define PG_CHAN_H

#include <stddef.h>
#include "pg_util.h"

#define PG_CHAN_MAX 128

typedef enum pg_chan_kind {
    PG_CHAN_INVALID = 0,
    PG_CHAN_BROADCAST,   /* exactly "broadcast" */
    PG_CHAN_USER,        /* "user:<id>" with a non-empty id */
    PG_CHAN_TOPIC,       /* any other valid name */
    PG_CHAN_RESERVED     /* valid characters but starts with '_' */
} pg_chan_kind_t;

/* 1 if name[0..len) is 1..128 bytes of A-Z a-z 0-9 _ - . : @, else 0. */
int pg_chan_valid(const char *name, size_t len);
/* Classify a NUL-terminated name; PG_CHAN_INVALID when not valid ("user:" alone
 * is invalid). */
pg_chan_kind_t pg_chan_kind(const char *name);
/* The user channel of user id `user` written into out: "user:<user>".
 * Returns 0, or -1 when that is no valid user channel (empty id, bad
 * characters, over 128 bytes in all). The one place that builds it. */
int pg_chan_user(const char *user, char out[PG_CHAN_MAX + 1]);
/* 1 if channel is exactly "user:<user>" (user NULL: never). */
int pg_chan_is_user(const char *channel, const char *user);
/* Glob match: '*' matches any run of characters (also empty, also across '.'
 * and ':'), '?' exactly one, everything else itself. No backtracking blow-up:
 * linear in practice (the classic two-pointer algorithm). 1 = match. */
int pg_glob_match(const char *pattern, const char *name);
/* 1 if any glob in list matches name. */
int pg_glob_list_match(const pg_strlist_t *list, const char *name);
/* Split a client-supplied comma list of channels (the channels= query arg)
 * into out, validating each. Returns 0; or -1 with err naming the bad entry;
 * more than max entries is an error too. */
int pg_chan_list_parse(const char *csv, size_t max, pg_strlist_t *out, char *err, size_t errlen);

#endif
