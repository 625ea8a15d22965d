"""Reserved bits (Autobahn|Testsuite group 3; RFC 6455 §5.2).

"RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension is
negotiated that defines meanings for non-zero values. If a nonzero value
is received and none of the negotiated extensions defines the meaning of
such a nonzero value, the receiving endpoint MUST _Fail the WebSocket
Connection_." pushgate negotiates no extension, so every RSV bit fails the
connection: Close 1002 (protocol error, §7.4.1). Each case sends a valid
command first (answered) and one behind the bad frame (not answered:
§7.1.7, no data is processed once the connection is failed)."""

import pytest

from conformkit import (OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                        PING_CMD, PONG_CMD, Peer, expect_fail, frame)

GOOD = frame(OP_TEXT, PING_CMD)
AFTER = frame(OP_TEXT, PING_CMD) + frame(OP_PING, b"after")

CASES = {
    # Autobahn 3.1-3.7: each RSV value, over the frame types
    "text_rsv1": (frame(OP_TEXT, PING_CMD, rsv=4), False),
    "text_rsv2": (frame(OP_TEXT, PING_CMD, rsv=2), False),
    "text_rsv3_chopped": (frame(OP_TEXT, PING_CMD, rsv=1), True),
    "text_rsv1_rsv2_rsv3": (frame(OP_TEXT, PING_CMD, rsv=7), False),
    "binary_rsv1_rsv3": (frame(OP_BIN, b"\x00\xff", rsv=5), False),
    "ping_rsv2_rsv3": (frame(OP_PING, b"p", rsv=3), False),
    "pong_rsv1": (frame(OP_PONG, b"p", rsv=4), False),
    "close_rsv1_rsv2": (frame(OP_CLOSE, b"\x03\xe8", rsv=6), False),
    "continuation_rsv1": (frame(OP_TEXT, PING_CMD[:5], fin=False) +
                          frame(OP_CONT, PING_CMD[5:], rsv=4), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reserved_bit_fails_the_connection_1002(node, case):
    """RFC 6455 §5.2 (Autobahn 3.1-3.7): an RSV bit with no extension
    negotiated fails the connection with 1002 (§7.1.7, §7.4.1)."""
    bad, chopped = CASES[case]
    with Peer.open(node.port) as ws:
        ws.send(GOOD)
        if chopped:
            ws.send_chopped(bad)
            ws.send(AFTER)
        else:
            ws.send(bad + AFTER)
        expect_fail(ws, 1002, answered=[(OP_TEXT, PONG_CMD)])
