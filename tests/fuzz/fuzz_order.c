/* fuzz_order - pg_order_parse() on arbitrary payloads of <prefix>_control.
 *
 * Anyone who can PUBLISH reaches that channel, so a success must leave an
 * order the session can act on without checking again: a known type, a
 * user whose user: channel is valid, a valid unreserved channel for
 * (un)subscribe, code 4000 or 4003 and a NUL-terminated reason for a
 * disconnect; a failure must leave a NUL-terminated message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_order.h"
#include "pg_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pg_order_t o;
    char err[PG_ERRLEN], chan[PG_CHAN_MAX + 1];

    memset(&o, 0xAA, sizeof o);
    memset(err, 'x', sizeof err);
    if (pg_order_parse((const char *)data, size, &o, err, sizeof err) != 0) {
        if (o.type != 0 || memchr(err, '\0', sizeof err) == NULL)
            abort();
        return 0;
    }
    if (pg_chan_user(o.user, chan) != 0)
        abort();
    switch (o.type) {
    case PG_ORDER_DISCONNECT:
        if ((o.code != 4000 && o.code != 4003) || memchr(o.reason, '\0', sizeof o.reason) == NULL ||
            o.revoked_at < 0)
            abort();
        break;
    case PG_ORDER_SUBSCRIBE:
    case PG_ORDER_UNSUBSCRIBE: {
        pg_chan_kind_t k = pg_chan_kind(o.channel);
        if (k == PG_CHAN_INVALID || k == PG_CHAN_RESERVED)
            abort();
        break;
    }
    default:
        abort();
    }
    return 0;
}
