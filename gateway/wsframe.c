/* wsframe.c - client WebSocket frames, checked. See wsframe.h. */
#include <string.h>

#include "wsframe.h"

static uint16_t fail(pg_wsf_t *f, uint16_t code)
{
    f->done = 1;
    return code;
}

/* One byte of UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF). -1 on an invalid byte. */
static int utf8_step(uint8_t *need, uint8_t *lo, uint8_t *hi, uint8_t c)
{
    if (*need) {
        if (c < *lo || c > *hi)
            return -1;
        (*need)--;
        *lo = 0x80;
        *hi = 0xbf;
        return 0;
    }
    if (c < 0x80)
        return 0;
    if (c < 0xc2 || c > 0xf4)
        return -1;
    *lo = 0x80;
    *hi = 0xbf;
    if (c < 0xe0) {
        *need = 1;
    } else if (c < 0xf0) {
        *need = 2;
        if (c == 0xe0)
            *lo = 0xa0;
        else if (c == 0xed)
            *hi = 0x9f;
    } else {
        *need = 3;
        if (c == 0xf0)
            *lo = 0x90;
        else if (c == 0xf4)
            *hi = 0x8f;
    }
    return 0;
}

static int utf8_run(pg_wsf_t *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x80 && f->utf8_need == 0)
            continue;
        if (utf8_step(&f->utf8_need, &f->utf8_lo, &f->utf8_hi, p[i]) < 0)
            return -1;
    }
    return 0;
}

static int utf8_whole(const uint8_t *p, size_t n)
{
    uint8_t need = 0, lo = 0x80, hi = 0xbf;
    for (size_t i = 0; i < n; i++)
        if (utf8_step(&need, &lo, &hi, p[i]) < 0)
            return 0;
    return need == 0;
}

/* §7.4: codes a Close may carry. 1004-1006 and 1015 must never be sent;
 * 1012-1014 are registered since RFC 6455 and taken. */
static int close_code_ok(uint16_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static int is_data(uint8_t op)
{
    return op < 8;
}

/* The current frame's payload has all come. */
static uint16_t frame_end(pg_wsf_t *f, pg_wsf_cb cb, void *arg)
{
    uint8_t op = f->opcode;
    f->hlen = f->need = 0;
    if (is_data(op))
        return 0;   /* its payload went out as it came; the end was sent with it */
    uint8_t *p = f->ctl;
    size_t n = f->ctl_len;
    f->ctl_len = 0;
    if (op == 0x9)
        return cb(arg, PG_WSF_PING, p, n, 1, 0) ? fail(f, 0) : 0;
    if (op == 0xa)
        return cb(arg, PG_WSF_PONG, p, n, 1, 0) ? fail(f, 0) : 0;
    /* Close (§5.5.1): empty, or a code and a UTF-8 reason */
    uint16_t code = 1000;
    if (n == 1)
        return fail(f, 1002);
    if (n >= 2) {
        code = (uint16_t)(p[0] << 8 | p[1]);
        if (!close_code_ok(code))
            return fail(f, 1002);
        if (!utf8_whole(p + 2, n - 2))
            return fail(f, 1007);
    }
    f->done = 1;   /* §5.5.1: nothing after a Close is data */
    cb(arg, PG_WSF_CLOSE, p, n, 1, code);
    return 0;
}

/* The header in f->hdr is whole: check what it announces. */
static uint16_t header_end(pg_wsf_t *f, uint64_t max, pg_wsf_cb cb, void *arg)
{
    uint8_t l7 = f->hdr[1] & 0x7f;
    uint64_t len = l7;
    if (l7 == 126) {
        len = (uint64_t)f->hdr[2] << 8 | f->hdr[3];
    } else if (l7 == 127) {
        if (f->hdr[2] & 0x80)
            return fail(f, 1002);   /* §5.2: the most significant bit MUST be 0 */
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | f->hdr[i];
    }
    memcpy(f->mask, f->hdr + f->need - 4, 4);
    f->mpos = 0;
    f->remaining = len;
    if (is_data(f->opcode)) {
        if (f->opcode == 0x1) {
            f->msg_len = 0;
            f->utf8_need = 0;
        }
        /* §10.4: refused as soon as the header says so, not after the
         * payload (or never, for a header announcing 2^62 bytes) */
        if (len > max || f->msg_len + len > max)
            return fail(f, 1009);
        f->msg_len += len;
        f->in_message = !f->fin;
        if (len == 0 && f->fin) {
            if (f->utf8_need)
                return fail(f, 1007);   /* the message ends inside a code point */
            if (cb(arg, PG_WSF_TEXT, NULL, 0, 1, 0))
                return fail(f, 0);
        }
    }
    if (len == 0)
        return frame_end(f, cb, arg);
    return 0;
}

/* The first two header bytes: everything that can be refused from them. */
static uint16_t header_start(pg_wsf_t *f)
{
    uint8_t b0 = f->hdr[0], b1 = f->hdr[1];
    f->opcode = b0 & 0x0f;
    f->fin = b0 >> 7;
    if (b0 & 0x70)
        return fail(f, 1002);   /* §5.2: no extension gives RSV bits a meaning */
    if (!(b1 & 0x80))
        return fail(f, 1002);   /* §5.1: a client frame MUST be masked */
    uint8_t l7 = b1 & 0x7f, op = f->opcode;
    if (op >= 8) {
        /* §5.5: control frames are whole and carry at most 125 bytes */
        if (op > 0xa || !f->fin || l7 > 125)
            return fail(f, 1002);
    } else if (op > 2) {
        return fail(f, 1002);   /* reserved data opcode */
    } else if (op == 0 ? !f->in_message : f->in_message) {
        return fail(f, 1002);   /* §5.4: a continuation of nothing, or interleaving */
    } else if (op == 2) {
        return fail(f, 1003);   /* SPEC §6: text only */
    }
    f->need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4);
    return 0;
}

uint16_t pg_wsf_feed(pg_wsf_t *f, uint8_t *buf, size_t len, uint64_t max, pg_wsf_cb cb,
                     void *arg)
{
    size_t i = 0;
    uint16_t rc;
    while (i < len && !f->done) {
        if (f->need == 0 || f->hlen < f->need) {
            f->hdr[f->hlen++] = buf[i++];
            if (f->hlen == 2 && (rc = header_start(f)) != 0)
                return rc;
            if (f->need != 0 && f->hlen == f->need && (rc = header_end(f, max, cb, arg)) != 0)
                return rc;
            continue;
        }
        size_t take = len - i;
        if (take > f->remaining)
            take = (size_t)f->remaining;
        uint8_t *p = buf + i;
        for (size_t k = 0; k < take; k++)
            p[k] ^= f->mask[(f->mpos + k) & 3];
        f->mpos = (uint8_t)((f->mpos + take) & 3);
        f->remaining -= take;
        i += take;
        if (is_data(f->opcode)) {
            if (utf8_run(f, p, take) < 0)
                return fail(f, 1007);
            int last = f->remaining == 0 && f->fin;
            if (last && f->utf8_need)
                return fail(f, 1007);
            if (cb(arg, PG_WSF_TEXT, p, take, last, 0))
                return fail(f, 0);
        } else {
            memcpy(f->ctl + f->ctl_len, p, take);
            f->ctl_len = (uint8_t)(f->ctl_len + take);
        }
        if (f->remaining == 0 && (rc = frame_end(f, cb, arg)) != 0)
            return rc;
    }
    return 0;
}

int pg_wsf_idle(const pg_wsf_t *f)
{
    return f->hlen == 0 && f->need == 0 && !f->in_message && !f->done;
}
