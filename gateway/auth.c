/* auth.c - token, Origin and channel checks for connections. */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "http.h"
#include "node.h"
#include "pg_chan.h"
#include "pg_origin.h"
#include "pg_log.h"

#define MAX_CHANNELS_PER_REQUEST 64
/* a position list names each requested channel, broadcast and user:<id> */
_Static_assert(PG_SINCE_MAX_ENTRIES == MAX_CHANNELS_PER_REQUEST + 2,
               "pg_since.h's entry limit follows the channel limit");
#define ARG_MAX 8192   /* a token or a channel list in the query string */

int pg_auth_may_read(const pg_identity_t *who, const char *channel)
{
    switch (pg_chan_kind(channel)) {
    case PG_CHAN_BROADCAST:
        return 1;
    case PG_CHAN_USER:
        return pg_chan_is_user(channel, who->sub);
    case PG_CHAN_TOPIC:
        return pg_glob_list_match(&pg_node.cfg.public_globs, channel) ||
               pg_glob_list_match(&who->channels, channel);
    default:
        return 0;
    }
}

/* The token from "Authorization: Bearer" or else ?token=. Returns a pointer
 * into one of the buffers, or NULL. */
static const char *find_token(struct lws *wsi, char *hbuf, size_t hlen, char *abuf, size_t alen)
{
    if (pg_http_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, hbuf, hlen) > 0 &&
        strncasecmp(hbuf, "Bearer ", 7) == 0) {
        const char *t = hbuf + 7;
        while (*t == ' ')
            t++;
        return *t ? t : NULL;
    }
    const char *t = lws_get_urlarg_by_name(wsi, "token=", abuf, (int)alen);
    return (t != NULL && *t) ? t : NULL;
}

int pg_auth_request(struct lws *wsi, int is_sse, pg_auth_result_t *res, char *err, size_t errlen)
{
    static char hbuf[ARG_MAX], abuf[ARG_MAX];
    memset(res, 0, sizeof(*res));

    if (!pg_http_origin_ok(wsi)) {
        snprintf(err, errlen, "origin not allowed");
        return 403;
    }

    const char *token = find_token(wsi, hbuf, sizeof(hbuf), abuf, sizeof(abuf));
    const pg_jwt_keys_t *keys = pg_keys_jwt(pg_node.keys);
    if (keys != NULL) {
        if (token == NULL) {
            if (!pg_node.cfg.allow_anonymous) {
                snprintf(err, errlen, "a token is required");
                return 401;
            }
        } else {
            char why[PG_ERRLEN];
            if (pg_jwt_verify(keys, token, (int64_t)time(NULL), &res->who,
                              why, sizeof(why)) != 0) {
                snprintf(err, errlen, "invalid token: %s", why);
                return 401;
            }
        }
    }

    const char *chans = lws_get_urlarg_by_name(wsi, "channels=", abuf, sizeof(abuf));
    if (chans != NULL && *chans) {
        char why[PG_ERRLEN];
        if (pg_chan_list_parse(chans, MAX_CHANNELS_PER_REQUEST, &res->channels,
                               why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s", why);
            pg_auth_result_free(res);
            return 400;
        }
        for (size_t i = 0; i < res->channels.n; i++) {
            if (!pg_auth_may_read(&res->who, res->channels.v[i])) {
                snprintf(err, errlen, "channel %s is not allowed", res->channels.v[i]);
                pg_auth_result_free(res);
                return 403;
            }
        }
    }

    /* SSE: the browser's own Last-Event-ID beats since= (SPEC §4). Both take
     * one id or a list of per-channel positions (pg_since.h). */
    static char ibuf[PG_AUTH_SINCE_MAX + 1];
    const char *since = NULL;
    int ilen = is_sse ? lws_hdr_custom_length(wsi, "last-event-id:", 14) : 0;
    if (ilen > PG_AUTH_SINCE_MAX) {
        snprintf(err, errlen, "Last-Event-ID is longer than %d bytes", PG_AUTH_SINCE_MAX);
        pg_auth_result_free(res);
        return 400;
    }
    if (ilen > 0 && lws_hdr_custom_copy(wsi, ibuf, sizeof(ibuf), "last-event-id:", 14) > 0)
        since = ibuf;
    if (since == NULL)
        since = lws_get_urlarg_by_name(wsi, "since=", abuf, sizeof(abuf));
    if (since != NULL && *since) {
        char why[PG_ERRLEN];
        size_t len = strlen(since);
        if (len > PG_AUTH_SINCE_MAX) {
            snprintf(err, errlen, "since is longer than %d bytes", PG_AUTH_SINCE_MAX);
            pg_auth_result_free(res);
            return 400;
        }
        /* implicit channels (broadcast, user:<sub>) may have entries too */
        if (pg_since_parse(since, len, PG_SINCE_MAX_ENTRIES, &res->since,
                           why, sizeof(why)) != 0) {
            if (memchr(since, ':', len) == NULL && memchr(since, ',', len) == NULL)
                snprintf(err, errlen, "since must be a message id (decimal digits)");
            else
                snprintf(err, errlen, "%s", why);
            pg_auth_result_free(res);
            return 400;
        }
        res->has_since = 1;
    }
    return 0;
}

void pg_auth_result_free(pg_auth_result_t *res)
{
    pg_identity_free(&res->who);
    pg_strlist_free(&res->channels);
    pg_since_free(&res->since);
    res->has_since = 0;
}
