/* pg_cmd.h - client -> server WebSocket commands (SPEC §4). */
#ifndef PG_CMD_H
#define PG_CMD_H

#include <stddef.h>
#include <stdint.h>
#include "pg_chan.h"

typedef enum pg_cmd_type {
    PG_CMD_SUBSCRIBE = 1,
    PG_CMD_UNSUBSCRIBE,
    PG_CMD_PING,
    PG_CMD_REFRESH
} pg_cmd_type_t;

#define PG_CMD_TOKEN_MAX 8192   /* as a token in the query string */

typedef struct pg_cmd {
    pg_cmd_type_t type;
    char          channel[PG_CHAN_MAX + 1]; /* subscribe/unsubscribe: valid name */
    int           has_since;                /* subscribe only */
    uint64_t      since;
    char          token[PG_CMD_TOKEN_MAX + 1]; /* refresh: non-empty, unverified */
} pg_cmd_t;

/* Parse one text frame. Returns 0, or -1 with *code set to a static string
 * ("bad_json": not a JSON object; "bad_command": no string "type";
 * "unknown_type"; "bad_token": refresh without a string "token" of 1..8192
 * bytes; "bad_channel": missing or invalid channel; "bad_since":
 * since present but not a string of digits or a non-negative integer) and a
 * human message in err. */
int pg_cmd_parse(const char *buf, size_t len, pg_cmd_t *out, const char **code,
                 char *err, size_t errlen);

#endif
