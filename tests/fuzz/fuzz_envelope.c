/* fuzz_envelope - pg_msg_from_payload() on arbitrary Redis payloads.
 *
 * The payload is whatever a publisher put on a pushgate: channel, so every
 * byte is hostile. The first input byte picks the channel (one of each kind)
 * and the --max-message-bytes limit, so the too-big path is fuzzed as well as
 * the envelope/JSON/string paths. Checks the invariants the writers rely on:
 * the WS view carries a frame header of the documented size for json_len, the
 * JSON view is NUL-terminated, and the SSE view ends with a blank line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_msg.h"

static const char *const channels[] = { "broadcast", "user:42", "news", "a.b:c@d-e_f" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *channel = channels[data[0] & 3];
    size_t max = (data[0] & 4) ? 16 : 65536;
    int err = 0;

    pg_msg_t *m = pg_msg_from_payload(channel, (const char *)data + 1, size - 1, max, &err);
    if (!m) {
        if (err != PG_MSG_E_TOO_BIG && err != PG_MSG_E_NOMEM)
            abort();
        if (err == PG_MSG_E_TOO_BIG && size - 1 <= max)
            abort();
        return 0;
    }
    if (size - 1 > max)
        abort(); /* never delivered in part, never delivered over the limit */
    if (m->json[m->json_len] != '\0' || strlen(m->json) != m->json_len)
        abort();
    if (m->ws_hdr_len != 2 && m->ws_hdr_len != 4 && m->ws_hdr_len != 10)
        abort();
    const unsigned char *h = (const unsigned char *)m->json - m->ws_hdr_len;
    if (h[0] != 0x81)
        abort(); /* FIN + text */
    if (m->sse_len < 2 || memcmp(m->sse + m->sse_len - 2, "\n\n", 2) != 0)
        abort();
    /* The SSE view is whole lines "id: ", "event: " and exactly one
     * "data: ", then a blank line: nothing in the payload may inject a field
     * or end the event early (no CR, no NUL, no extra LF). */
    if (memchr(m->sse, '\r', m->sse_len) || strlen(m->sse) != m->sse_len)
        abort();
    int datas = 0;
    const char *line = m->sse, *end = m->sse + m->sse_len - 1; /* last '\n' */
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line + 1));
        if (!nl)
            abort();
        if (strncmp(line, "data: ", 6) == 0)
            datas++;
        else if (strncmp(line, "id: ", 4) != 0 && strncmp(line, "event: ", 7) != 0)
            abort();
        line = nl + 1;
    }
    if (datas != 1)
        abort();
    pg_msg_t *r = pg_msg_ref(m);
    pg_msg_unref(&r);
    pg_msg_unref(&m);
    if (m)
        abort();
    return 0;
}
