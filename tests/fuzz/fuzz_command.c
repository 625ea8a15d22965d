/* fuzz_command - pg_cmd_parse() on arbitrary client text frames.
 *
 * A success must leave a command the hub can trust: a known type and, for
 * subscribe/unsubscribe, a valid channel name; a failure must name one of
 * the documented codes and a NUL-terminated message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_cmd.h"
#include "pg_util.h"

static const char *const codes[] = { "bad_json", "bad_command", "unknown_type",
                                     "bad_channel", "bad_since", "bad_token" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pg_cmd_t cmd;
    const char *code = NULL;
    char err[PG_ERRLEN];

    memset(&cmd, 0xAA, sizeof cmd);
    memset(err, 'x', sizeof err);
    int rc = pg_cmd_parse((const char *)data, size, &cmd, &code, err, sizeof err);
    if (rc == 0) {
        if (cmd.type == PG_CMD_SUBSCRIBE || cmd.type == PG_CMD_UNSUBSCRIBE) {
            size_t n = strnlen(cmd.channel, sizeof cmd.channel);
            if (n == sizeof cmd.channel || !pg_chan_valid(cmd.channel, n))
                abort();
        } else if (cmd.type == PG_CMD_REFRESH) {
            size_t n = strnlen(cmd.token, sizeof cmd.token);
            if (n == 0 || n == sizeof cmd.token)
                abort();
        } else if (cmd.type != PG_CMD_PING) {
            abort();
        }
        return 0;
    }
    if (rc != -1 || !code)
        abort();
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            break;
    if (i == sizeof codes / sizeof codes[0])
        abort();
    if (memchr(err, '\0', sizeof err) == NULL)
        abort();
    return 0;
}
