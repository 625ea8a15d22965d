/* pg_cmd.c - client -> server WebSocket commands (SPEC §4). */
#include "pg_cmd.h"
#include "pg_json.h"
#include "pg_buf.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* A command is a flat object; a deeply nested one is no command at all. */
#define CMD_DEPTH 8


static int bad(const char **code, const char *c, char *err, size_t errlen, const char *msg)
{
    *code = c;
    snprintf(err, errlen, "%s", msg);
    return -1;
}

int pg_cmd_parse(const char *buf, size_t len, pg_cmd_t *out, const char **code,
                 char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_object *o = pg_json_parse_object(buf, len, CMD_DEPTH, NULL), *t, *ch, *since;
    int rc = -1;
    if (!o)
        return bad(code, "bad_json", err, errlen, "a command is a JSON object");
    if (!json_object_object_get_ex(o, "type", &t) || !json_object_is_type(t, json_type_string)) {
        bad(code, "bad_command", err, errlen, "a command needs a string \"type\"");
        goto out;
    }
    const char *type = json_object_get_string(t);
    if (strcmp(type, "ping") == 0) {
        out->type = PG_CMD_PING;
        rc = 0;
        goto out;
    }
    if (strcmp(type, "refresh") == 0) {
        json_object *tok;
        size_t tlen;
        if (!json_object_object_get_ex(o, "token", &tok) ||
            !json_object_is_type(tok, json_type_string) ||
            (tlen = (size_t)json_object_get_string_len(tok)) == 0 || tlen > PG_CMD_TOKEN_MAX) {
            bad(code, "bad_token", err, errlen, "refresh needs a string \"token\"");
            goto out;
        }
        memcpy(out->token, json_object_get_string(tok), tlen + 1);
        out->type = PG_CMD_REFRESH;
        rc = 0;
        goto out;
    }
    if (strcmp(type, "subscribe") == 0) {
        out->type = PG_CMD_SUBSCRIBE;
    } else if (strcmp(type, "unsubscribe") == 0) {
        out->type = PG_CMD_UNSUBSCRIBE;
    } else {
        /* The client's type is not echoed: this text goes back into a JSON
         * frame, and a fixed message needs no escaping. */
        bad(code, "unknown_type", err, errlen, "type must be subscribe, unsubscribe, ping or refresh");
        goto out;
    }
    if (!json_object_object_get_ex(o, "channel", &ch) || !json_object_is_type(ch, json_type_string)) {
        bad(code, "bad_channel", err, errlen, "a string \"channel\" is required");
        goto out;
    }
    const char *name = json_object_get_string(ch);
    size_t nlen = (size_t)json_object_get_string_len(ch);
    if (!pg_chan_valid(name, nlen) || pg_chan_kind(name) == PG_CHAN_INVALID) {
        bad(code, "bad_channel", err, errlen,
            "a channel name is 1..128 of A-Z a-z 0-9 _ - . : @");
        goto out;
    }
    memcpy(out->channel, name, nlen);
    out->channel[nlen] = '\0';
    if (out->type == PG_CMD_SUBSCRIBE && json_object_object_get_ex(o, "since", &since)) {
        int ok = 0;
        if (json_object_is_type(since, json_type_string)) {
            ok = pg_atou64(json_object_get_string(since),
                           (size_t)json_object_get_string_len(since), &out->since) == 0;
        } else if (json_object_is_type(since, json_type_int)) {
            ok = json_object_get_int64(since) >= 0;
            out->since = json_object_get_uint64(since);
        }
        if (!ok) {
            out->since = 0;
            bad(code, "bad_since", err, errlen, "since is a string of decimal digits");
            goto out;
        }
        out->has_since = 1;
    }
    rc = 0;
out:
    json_object_put(o);
    if (rc < 0) {
        out->type = 0;
        out->channel[0] = '\0';
        out->token[0] = '\0';
    }
    return rc;
}
