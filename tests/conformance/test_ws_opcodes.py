"""Opcodes (Autobahn|Testsuite group 4; RFC 6455 §5.2).

"%x3-7 are reserved for further non-control frames", "%xB-F are reserved
for further control frames", and "If an unknown opcode is received, the
receiving endpoint MUST _Fail the WebSocket Connection_": Close 1002
(§7.4.1), with what came before answered and nothing after (§7.1.7)."""

import pytest

from conformkit import (OP_PING, OP_TEXT, PING_CMD, PONG_CMD, Peer, expect_fail,
                        frame)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("payload", [b"", b"reserved"], ids=["empty", "payload"])
def test_reserved_opcode_fails_the_connection_1002(node, opcode, payload):
    """§5.2. Autobahn 4.1.x (non-control 3-7) and 4.2.x (control 11-15): a valid
    command first, answered; the reserved frame; a command and a Ping behind
    it, neither answered."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, PING_CMD) + frame(opcode, payload) +
                frame(OP_TEXT, PING_CMD) + frame(OP_PING, b"after"))
        expect_fail(ws, 1002, answered=[(OP_TEXT, PONG_CMD)])
