/* pg_order.h - control orders (SPEC §7) as the Redis functions publish them
 * on <prefix>_control, parsed into a plain struct. The functions validate
 * every argument before publishing, but the channel is open to anyone who
 * can PUBLISH, so a node validates again and ignores what does not parse. */
#ifndef PG_ORDER_H
#define PG_ORDER_H

#include <stddef.h>
#include <stdint.h>
#include "pg_chan.h"

typedef enum pg_order_type {
    PG_ORDER_DISCONNECT = 1,
    PG_ORDER_SUBSCRIBE,
    PG_ORDER_UNSUBSCRIBE
} pg_order_type_t;

#define PG_ORDER_REASON_MAX 123   /* a close frame's reason: 125 - 2 code bytes */

typedef struct pg_order {
    pg_order_type_t type;
    char     user[PG_CHAN_MAX + 1];     /* the id: user:<user> is a valid channel */
    char     channel[PG_CHAN_MAX + 1];  /* subscribe / unsubscribe: valid, not reserved */
    int      has_since;                 /* subscribe */
    uint64_t since;
    uint16_t code;                      /* disconnect: 4000 or 4003 */
    char     reason[PG_ORDER_REASON_MAX + 1]; /* disconnect: valid UTF-8, may be "" */
    int64_t  revoked_at;                /* disconnect with revoke: unix s; else 0 */
} pg_order_t;

/* Parse one order. Returns 0 with o filled, or -1 with why in err. */
int pg_order_parse(const char *buf, size_t len, pg_order_t *o, char *err, size_t errlen);

#endif
