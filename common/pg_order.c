/* pg_order.c - control orders. See pg_order.h. */
#include "pg_order.h"
#include "pg_json.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define ORDER_DEPTH 4

static int bad_order(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* The string member name of o copied into out (size outlen), or -1. */
static int get_str(json_object *o, const char *name, char *out, size_t outlen, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return -1;
    size_t n = (size_t)json_object_get_string_len(v);
    if (n >= outlen)
        return -1;
    memcpy(out, json_object_get_string(v), n);
    out[n] = '\0';
    if (len != NULL)
        *len = n;
    return 0;
}

int pg_order_parse(const char *buf, size_t len, pg_order_t *o, char *err, size_t errlen)
{
    char type[16], chk[PG_CHAN_MAX + 8];
    size_t n;
    int rc = -1;
    json_object *v;

    memset(o, 0, sizeof(*o));
    json_object *root = pg_json_parse_object(buf, len, ORDER_DEPTH, NULL);
    if (root == NULL)
        return bad_order(err, errlen, "an order is a JSON object");
    if (get_str(root, "type", type, sizeof(type), NULL) != 0) {
        bad_order(err, errlen, "an order needs a string \"type\"");
        goto out;
    }
    if (get_str(root, "user", o->user, sizeof(o->user), &n) != 0 ||
        snprintf(chk, sizeof(chk), "user:%s", o->user) < 0 ||
        pg_chan_kind(chk) != PG_CHAN_USER) {
        bad_order(err, errlen, "an order needs a \"user\" whose user: channel is valid");
        goto out;
    }
    if (strcmp(type, "disconnect") == 0) {
        o->type = PG_ORDER_DISCONNECT;
        if (!json_object_object_get_ex(root, "code", &v) || !json_object_is_type(v, json_type_int) ||
            (json_object_get_int64(v) != 4000 && json_object_get_int64(v) != 4003)) {
            bad_order(err, errlen, "a disconnect needs \"code\" 4000 or 4003");
            goto out;
        }
        o->code = (uint16_t)json_object_get_int64(v);
        /* pg_json_parse_object checked the UTF-8; the length bound keeps
         * it inside one close frame */
        if (json_object_object_get_ex(root, "reason", &v) &&
            get_str(root, "reason", o->reason, sizeof(o->reason), NULL) != 0) {
            bad_order(err, errlen, "a disconnect's \"reason\" is a string of at most 123 bytes");
            goto out;
        }
        if (json_object_object_get_ex(root, "revoked_at", &v)) {
            if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0) {
                bad_order(err, errlen, "\"revoked_at\" is a positive unix time");
                goto out;
            }
            o->revoked_at = json_object_get_int64(v);
        }
    } else if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0) {
        o->type = type[0] == 's' ? PG_ORDER_SUBSCRIBE : PG_ORDER_UNSUBSCRIBE;
        if (get_str(root, "channel", o->channel, sizeof(o->channel), NULL) != 0) {
            bad_order(err, errlen, "a (un)subscribe needs a string \"channel\"");
            goto out;
        }
        pg_chan_kind_t k = pg_chan_kind(o->channel);
        if (k == PG_CHAN_INVALID || k == PG_CHAN_RESERVED) {
            bad_order(err, errlen, "the order's channel is not a valid, unreserved name");
            goto out;
        }
        if (o->type == PG_ORDER_SUBSCRIBE && json_object_object_get_ex(root, "since", &v)) {
            if (!json_object_is_type(v, json_type_string) ||
                pg_atou64(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                          &o->since) != 0) {
                bad_order(err, errlen, "\"since\" is a string of decimal digits");
                goto out;
            }
            o->has_since = 1;
        }
    } else {
        bad_order(err, errlen, "unknown order type");
        goto out;
    }
    rc = 0;
out:
    json_object_put(root);
    if (rc != 0)
        o->type = 0;
    return rc;
}
