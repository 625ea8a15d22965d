/* pg_msg.c - refcounted messages: envelope parse, delivery JSON, WS frame
 * header and SSE text, all built once in one allocation. */
#include "pg_json.h"
#include "pg_msg.h"
#include "pg_buf.h"
#include "pg_util.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* json-c's default nesting limit is 32; publishers do send deeper documents,
 * and anything deeper than this is delivered as a JSON string instead. The
 * serializer and json_object_put recurse, so the limit also bounds the stack. */
#define JSON_DEPTH 64

static size_t ws_hdr_len(size_t n)
{
    return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

/* Server text frame header: FIN | opcode 1, unmasked, RFC 6455 §5.2. */
static void ws_hdr_write(unsigned char *h, size_t n)
{
    h[0] = 0x81;
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
}

/* One block: struct | channel\0 | PRE | json\0 | PRE | sse\0. The caller
 * fills json and sse; the WS header is written here once json_len is known.
 * A single malloc keeps the fan-out path cheap and makes the free trivial. */
static pg_msg_t *msg_alloc(const char *channel, size_t json_len, size_t sse_len)
{
    size_t clen = channel ? strlen(channel) + 1 : 0;
    size_t total = sizeof(pg_msg_t) + clen + PG_MSG_PRE + json_len + 1 + PG_MSG_PRE + sse_len + 1;
    pg_msg_t *m = malloc(total);
    if (!m)
        return NULL;
    char *p = (char *)(m + 1);
    m->refs = 1;
    m->id = 0;
    m->recv_ns = pg_mono_ns();
    m->channel = NULL;
    if (channel) {
        m->channel = p;
        memcpy(p, channel, clen);
        p += clen;
    }
    m->json = p + PG_MSG_PRE;
    m->json_len = json_len;
    m->json[json_len] = '\0';
    m->ws_hdr_len = ws_hdr_len(json_len);
    ws_hdr_write((unsigned char *)m->json - m->ws_hdr_len, json_len);
    m->sse = m->json + json_len + 1 + PG_MSG_PRE;
    m->sse_len = sse_len;
    m->sse[sse_len] = '\0';
    return m;
}

static const char *to_text(json_object *o, size_t *len)
{
    if (!o) {
        *len = 4;
        return "null";
    }
    const char *t = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
    return t;
}

/* The SSE event line uses the raw event: a CR or LF would end the field early
 * and let a publisher inject fields, and a NUL is no text; all become spaces. */
static void copy_sse_event(char *dst, const char *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = ev[i];
        dst[i] = (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
    }
}

/* The SSE text of one delivery: [id: N\n][event: E\n]data: JSON\n\n.
 * idlen 0 means no id line, event NULL no event line. */
static size_t sse_size(size_t idlen, const char *event, size_t elen, size_t json_len)
{
    return (idlen ? 4 + idlen + 1 : 0) + (event ? 7 + elen + 1 : 0) + 6 + json_len + 2;
}

static char *sse_write(char *s, const char *id, size_t idlen, const char *event, size_t elen,
                       const char *json, size_t json_len)
{
    if (idlen) {
        memcpy(s, "id: ", 4);
        memcpy(s + 4, id, idlen);
        s[4 + idlen] = '\n';
        s += 4 + idlen + 1;
    }
    if (event) {
        memcpy(s, "event: ", 7);
        copy_sse_event(s + 7, event, elen);
        s[7 + elen] = '\n';
        s += 7 + elen + 1;
    }
    memcpy(s, "data: ", 6);
    memcpy(s + 6, json, json_len);
    memcpy(s + 6 + json_len, "\n\n", 2);
    return s + 6 + json_len + 2;
}

pg_msg_t *pg_msg_from_payload(const char *channel, const char *payload, size_t len,
                              size_t max_bytes, int *err)
{
    int dummy;
    pg_assert(channel != NULL);
    if (!err)
        err = &dummy;
    *err = 0;
    if (len > max_bytes) {
        *err = PG_MSG_E_TOO_BIG;
        return NULL;
    }

    json_object *root = NULL, *data = NULL;
    const char *event = NULL;
    size_t event_len = 0;
    uint64_t id = 0;
    pg_buf_t str = PG_BUF_INIT;   /* data as a JSON string when not JSON */
    pg_buf_t head = PG_BUF_INIT;  /* {"channel":..,"event":..,"id":"..","data": */
    const char *data_txt;
    size_t data_len;
    pg_msg_t *m = NULL;

    if (pg_json_parse(payload, len, JSON_DEPTH, &root, NULL)) {
        json_object *d;
        if (root && json_object_is_type(root, json_type_object)
            && json_object_object_get_ex(root, "data", &d)) {
            json_object *ev, *idv;
            data = d;
            if (json_object_object_get_ex(root, "event", &ev) && json_object_is_type(ev, json_type_string)) {
                event = json_object_get_string(ev);
                event_len = (size_t)json_object_get_string_len(ev);
            }
            if (json_object_object_get_ex(root, "id", &idv)) {
                uint64_t v;
                if (json_object_is_type(idv, json_type_string)) {
                    if (pg_atou64(json_object_get_string(idv),
                                  (size_t)json_object_get_string_len(idv), &v) == 0)
                        id = v;
                } else if (json_object_is_type(idv, json_type_int)) {
                    /* get_uint64 gives 0 for negatives: ignored like garbage. */
                    id = json_object_get_uint64(idv);
                }
            }
        } else {
            data = root;
        }
        data_txt = to_text(data, &data_len);
        if (!data_txt)
            goto nomem;
    } else {
        if (pg_buf_json_str(&str, payload, len) < 0)
            goto nomem;
        data_txt = str.data;
        data_len = str.len;
    }

    if (pg_buf_puts(&head, "{\"channel\":") < 0
        || pg_buf_json_str(&head, channel, strlen(channel)) < 0)
        goto nomem;
    if (event && (pg_buf_puts(&head, ",\"event\":") < 0
                  || pg_buf_json_str(&head, event, event_len) < 0))
        goto nomem;
    char idbuf[21];
    size_t idlen = 0;
    if (id) {
        idlen = pg_u64toa(id, idbuf);
        if (pg_buf_printf(&head, ",\"id\":\"%s\"", idbuf) < 0)
            goto nomem;
    }
    if (pg_buf_puts(&head, ",\"data\":") < 0)
        goto nomem;

    size_t json_len = head.len + data_len + 1;
    size_t sse_len = sse_size(idlen, event, event_len, json_len);
    m = msg_alloc(channel, json_len, sse_len);
    if (!m)
        goto nomem;
    m->id = id;
    memcpy(m->json, head.data, head.len);
    memcpy(m->json + head.len, data_txt, data_len);
    m->json[json_len - 1] = '}';

    char *end = sse_write(m->sse, idbuf, idlen, event, event_len, m->json, json_len);
    pg_assert(end == m->sse + m->sse_len);
    goto out;

nomem:
    *err = PG_MSG_E_NOMEM;
out:
    json_object_put(root);
    pg_buf_free(&str);
    pg_buf_free(&head);
    return m;
}

pg_msg_t *pg_msg_control(const char *json, size_t len, const char *sse_event)
{
    size_t elen = sse_event ? strlen(sse_event) : 0;
    size_t sse_len = sse_size(0, sse_event, elen, len);
    pg_msg_t *m = msg_alloc(NULL, len, sse_len);
    if (!m)
        return NULL;
    memcpy(m->json, json, len);
    sse_write(m->sse, NULL, 0, sse_event, elen, json, len);
    return m;
}

pg_msg_t *pg_msg_sse_raw(const char *text, size_t len)
{
    pg_msg_t *m = msg_alloc(NULL, 0, len);
    if (!m)
        return NULL;
    memcpy(m->sse, text, len);
    return m;
}

pg_msg_t *pg_msg_keepalive(void)
{
    static const char ping[] = ": ping\n\n";
    /* The ping carries 2 bytes: lws 4.1 hands an empty PONG to nobody
     * (ops-ws.c skips the RECEIVE_PONG callback when it has no payload),
     * and the gateway must see every pong. */
    pg_msg_t *m = msg_alloc(NULL, 2, sizeof(ping) - 1);
    if (!m)
        return NULL;
    memcpy(m->json, "pg", 2);
    memcpy(m->sse, ping, sizeof(ping) - 1);
    /* the text-frame header msg_alloc wrote, 0x81 0x02, becomes 0x89 0x02:
     * FIN | ping */
    pg_assert(m->ws_hdr_len == 2);
    ((unsigned char *)m->json)[-2] = (char)0x89;
    return m;
}

pg_msg_t *pg_msg_sse_with_id(const pg_msg_t *m, const char *id, size_t idlen)
{
    /* what follows the shared view's "id: <digits>\n" */
    const char *rest = m->sse;
    if (m->sse_len > 4 && memcmp(rest, "id: ", 4) == 0) {
        const char *nl = memchr(rest, '\n', m->sse_len);
        if (nl != NULL)
            rest = nl + 1;
    }
    size_t rlen = m->sse_len - (size_t)(rest - m->sse);
    pg_msg_t *c = msg_alloc(m->channel, 0, 4 + idlen + 1 + rlen);
    if (!c)
        return NULL;
    c->id = m->id;
    c->recv_ns = m->recv_ns;
    memcpy(c->sse, "id: ", 4);
    memcpy(c->sse + 4, id, idlen);
    c->sse[4 + idlen] = '\n';
    memcpy(c->sse + 4 + idlen + 1, rest, rlen);
    return c;
}

pg_msg_t *pg_msg_ref(pg_msg_t *m)
{
    /* Taking a reference on a freed message is as much a bug as underflow. */
    pg_assert(m->refs > 0 && m->refs < UINT_MAX);
    m->refs++;
    return m;
}

void pg_msg_unref(pg_msg_t **mp)
{
    if (!mp || !*mp)
        return;
    pg_msg_t *m = *mp;
    *mp = NULL;
    pg_assert(m->refs > 0);
    if (--m->refs == 0)
        free(m);
}
