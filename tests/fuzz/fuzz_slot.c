/* fuzz_slot - Redis Cluster key slots, slot maps and MOVED / ASK errors
 * (common/pg_slot.c) on arbitrary bytes.
 *
 * Every name a node hashes comes from a client (a channel) and every range
 * and redirection from Redis, which may be broken or hostile: none of it may
 * crash a node, and what a node concludes must hold:
 * - a key's slot is below 16384 and is its hash tag's slot whenever it has a
 *   non-empty tag, so "{tag}", "<prefix>{tag}:history" and the tag itself
 *   agree (a channel's keys and pub/sub channel share one slot);
 * - after any sequence of assignments, valid or not, each slot's owner is
 *   the last address validly assigned to it, a refused assignment changed
 *   nothing, and covered / complete count exactly the owned slots;
 * - a redirection that parses names a slot below 16384, a port in 1..65535
 *   and a host with no space, and written out again parses the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pg_slot.h"

/* The addresses an assignment may name: ordinary, IPv6, empty, the longest
 * that fits pg_hostport_t and one byte too long. */
#define NHOSTS 6
static const char *host_of(unsigned i, char *longest, char *too_long)
{
    static const char *fixed[] = { "127.0.0.1", "10.0.0.2", "::1", "" };
    if (i < 4)
        return fixed[i];
    return i == 4 ? longest : too_long;
}

static int assign_valid(unsigned lo, unsigned hi, const char *host, int port)
{
    size_t hl = strlen(host);
    return lo <= hi && hi < PG_SLOT_COUNT && hl > 0 &&
           hl < sizeof(((pg_hostport_t *)0)->host) && port >= 1 && port <= 65535;
}

static void check_key(const uint8_t *data, size_t size)
{
    const char *key = (const char *)data;
    unsigned slot = pg_slot_of_key(key, size);
    if (slot >= PG_SLOT_COUNT)
        abort();
    const char *open = memchr(key, '{', size);
    const char *close = open ? memchr(open + 1, '}', size - (size_t)(open - key) - 1) : NULL;
    if (close == NULL || close == open + 1) {
        if (slot != pg_slot_crc16(key, size) % PG_SLOT_COUNT)
            abort();
        return;
    }
    const char *tag = open + 1;
    size_t tl = (size_t)(close - tag);
    if (slot != pg_slot_crc16(tag, tl) % PG_SLOT_COUNT)
        abort();
    /* the tag holds no '}', so it hashes whole, braced or with a prefix
     * and suffix as the cluster names of a channel are */
    char *k = malloc(tl + 32);
    if (k == NULL)
        abort();
    if (pg_slot_of_key(tag, tl) != slot)
        abort();
    k[0] = '{';
    memcpy(k + 1, tag, tl);
    k[tl + 1] = '}';
    if (pg_slot_of_key(k, tl + 2) != slot)
        abort();
    memcpy(k, "pushgate:{", 10);
    memcpy(k + 10, tag, tl);
    memcpy(k + 10 + tl, "}:history", 9);
    if (pg_slot_of_key(k, tl + 19) != slot)
        abort();
    free(k);
}

/* Assignments read 6 bytes at a time: lo and hi (16 bits each, so some
 * beyond 16383), the host (one of NHOSTS) and the port's low byte (0 = the
 * invalid port 0, 255 = 65536). */
static void check_map(const uint8_t *data, size_t size)
{
    static int16_t want_host[PG_SLOT_COUNT]; /* -1 = no owner */
    static int32_t want_port[PG_SLOT_COUNT];
    char longest[sizeof(((pg_hostport_t *)0)->host)];
    char too_long[sizeof longest + 1];
    memset(longest, 'h', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 'h', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';

    pg_slot_map_t m;
    pg_slot_map_init(&m);
    for (unsigned s = 0; s < PG_SLOT_COUNT; s++)
        want_host[s] = -1;
    for (size_t off = 0; off + 6 <= size && off < 6 * 64; off += 6) {
        const uint8_t *p = data + off;
        unsigned lo = (unsigned)p[0] << 8 | p[1], hi = (unsigned)p[2] << 8 | p[3];
        unsigned hi_ = p[4] % NHOSTS;
        int port = p[5] == 255 ? 65536 : p[5] * 257;
        const char *host = host_of(hi_, longest, too_long);
        /* keep most ranges valid: the high bits of lo and hi pick the slot */
        if ((p[0] & 0xC0) != 0xC0)
            lo %= PG_SLOT_COUNT;
        if ((p[2] & 0xC0) != 0xC0)
            hi %= PG_SLOT_COUNT;
        size_t nshards = m.nshards;
        int idx = pg_slot_map_assign(&m, lo, hi, host, port);
        if (assign_valid(lo, hi, host, port) != (idx >= 0))
            abort(); /* refused a valid one, or took an invalid one */
        if (idx < 0) {
            if (m.nshards != nshards)
                abort();
            continue;
        }
        if ((size_t)idx >= m.nshards || m.shards[idx].port != port ||
            strcmp(m.shards[idx].host, host) != 0)
            abort();
        for (unsigned s = lo; s <= hi; s++) {
            want_host[s] = (int16_t)hi_;
            want_port[s] = port;
        }
    }
    unsigned owned = 0;
    for (unsigned s = 0; s < PG_SLOT_COUNT; s++) {
        const pg_hostport_t *o = pg_slot_map_owner(&m, s);
        int i = pg_slot_map_shard(&m, s);
        if (want_host[s] < 0) {
            if (o != NULL || i != -1)
                abort();
            continue;
        }
        owned++;
        if (o == NULL || i < 0 || (size_t)i >= m.nshards || o != &m.shards[i] ||
            o->port != want_port[s] ||
            strcmp(o->host, host_of((unsigned)want_host[s], longest, too_long)) != 0)
            abort();
    }
    if (m.covered != owned || pg_slot_map_complete(&m) != (owned == PG_SLOT_COUNT) ||
        pg_slot_map_owner(&m, PG_SLOT_COUNT) != NULL || pg_slot_map_shard(&m, PG_SLOT_COUNT) != -1)
        abort();
    /* one entry per distinct address */
    for (size_t i = 0; i < m.nshards; i++)
        for (size_t j = 0; j < i; j++)
            if (m.shards[i].port == m.shards[j].port &&
                strcmp(m.shards[i].host, m.shards[j].host) == 0)
                abort();
    pg_slot_map_free(&m);
    if (m.shards != NULL || m.nshards != 0 || m.covered != 0)
        abort();
}

static void check_redirect(const uint8_t *data, size_t size)
{
    unsigned slot = 99999;
    pg_hostport_t to;
    memset(&to, 'x', sizeof to);
    to.port = -7;
    pg_slot_redirect_t kind = pg_slot_parse_redirect((const char *)data, size, &slot, &to);
    if (kind == PG_SLOT_NOT_REDIRECT) {
        /* touches nothing */
        if (slot != 99999 || to.port != -7)
            abort();
        return;
    }
    if (kind != PG_SLOT_MOVED && kind != PG_SLOT_ASK)
        abort();
    size_t hl = strnlen(to.host, sizeof to.host);
    if (slot >= PG_SLOT_COUNT || to.port < 1 || to.port > 65535 || hl == sizeof to.host ||
        memchr(to.host, ' ', hl) != NULL)
        abort();
    /* written out as Redis would, the host bracketed, and read again */
    char text[sizeof to.host + 32];
    size_t n = 0;
    const char *word = kind == PG_SLOT_MOVED ? "MOVED " : "ASK ";
    memcpy(text, word, strlen(word));
    n += strlen(word);
    char num[16];
    int k = 0;
    unsigned v = slot;
    do {
        num[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        text[n++] = num[--k];
    text[n++] = ' ';
    text[n++] = '[';
    memcpy(text + n, to.host, hl);
    n += hl;
    text[n++] = ']';
    text[n++] = ':';
    v = (unsigned)to.port;
    do {
        num[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        text[n++] = num[--k];
    unsigned slot2;
    pg_hostport_t to2;
    if (pg_slot_parse_redirect(text, n, &slot2, &to2) != kind || slot2 != slot ||
        to2.port != to.port || strcmp(to2.host, to.host) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pg_slot_crc16("123456789", 9) != 0x31C3)
        abort();
    check_key(data, size);
    check_map(data, size);
    check_redirect(data, size);
    return 0;
}
