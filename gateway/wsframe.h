/* wsframe.h - the node's own reader of client WebSocket frames (RFC 6455
 * §5, §7.4, §8.1), used instead of lws's on plain sockets.
 *
 * lws 4.1 processes unmasked client frames, drops the TCP connection
 * without a Close on an oversized control frame or a bad Close reason,
 * echoes a 1-byte Close, answers data sent after a Close, and waits for
 * the payload a frame header announces however large (2^62 bytes: until
 * the keepalive gives up). This reader fails every such frame with the
 * code the RFC names, as soon as the header shows it, and never holds more
 * than one control payload (125 bytes) of its own: message payload goes
 * straight to the caller, unmasked in place.
 *
 * Pure: no I/O; fuzzed by tests/fuzz/fuzz_wsframe.c. */
#ifndef PG_WSFRAME_H
#define PG_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
    PG_WSF_TEXT = 1,      /* a piece of a text message; fin: the message ends */
    PG_WSF_PING,          /* a whole Ping: answer with its payload */
    PG_WSF_PONG,          /* a whole Pong */
    PG_WSF_CLOSE          /* a valid Close: code (1000 when it had none) */
};

/* One event. For PG_WSF_TEXT, p/n is payload (valid UTF-8 so far, checked
 * across pieces); for control frames, their whole payload. The callback
 * returns 0, or non-zero to stop feeding (the caller is closing). */
typedef int (*pg_wsf_cb)(void *arg, int type, const uint8_t *p, size_t n, int fin,
                         uint16_t code);

typedef struct pg_wsf {
    uint8_t  hdr[14];     /* the frame header gathered so far */
    uint8_t  hlen, need;  /* bytes in hdr / bytes the header has (0: unknown) */
    uint8_t  opcode, fin;
    uint8_t  in_message;  /* a text message is unfinished (fragments) */
    uint8_t  done;        /* a Close was read or the connection failed */
    uint8_t  mask[4];
    uint8_t  mpos;
    uint8_t  utf8_need;   /* continuation bytes still due */
    uint8_t  utf8_lo, utf8_hi; /* range of the next continuation byte */
    uint8_t  ctl_len;
    uint64_t remaining;   /* payload bytes of the current frame still due */
    uint64_t msg_len;     /* bytes of the current message so far */
    uint8_t  ctl[125];    /* a control payload split between reads */
} pg_wsf_t;

/* Feed len bytes read from the client (unmasked in place). max is the
 * message limit. Returns 0, or the close code the connection must be
 * failed with (1002 protocol error, 1003 binary, 1007 bad UTF-8, 1009 too
 * big); after a non-zero return or a Close event, the rest is ignored. */
uint16_t pg_wsf_feed(pg_wsf_t *f, uint8_t *buf, size_t len, uint64_t max, pg_wsf_cb cb,
                     void *arg);
/* 1 when f holds nothing between frames (it may be freed and re-zeroed). */
int pg_wsf_idle(const pg_wsf_t *f);

#endif
