"""Close handling (Autobahn|Testsuite group 7; RFC 6455 §5.5.1, §7).

"If an endpoint receives a Close frame and did not previously send a Close
frame, the endpoint MUST send a Close frame in response", typically
echoing the status code; after a Close "a peer discards any further data
received" (§1.4) and sends no more data frames (§5.5.1); the server closes
the TCP connection first (§7.1.1). A Close body is empty or a 2-byte code
then a UTF-8 reason (§5.5.1); codes 0-999, 1004-1006, 1015 and the
unassigned rest of 1000-2999 are not valid in a Close frame (§7.4): the
connection fails with 1002."""

import struct
import time

import pytest

from pgtest import metric_value, wait_until
from conformkit import (API_KEY, OP_CLOSE, OP_PING, OP_TEXT, PING_CMD, PONG_CMD, Peer,
                        deviation, expect_close_reply, expect_fail, frame,
                        serves_fresh_client)


def close_frame(code=None, reason=b""):
    return frame(OP_CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def test_close_1000_is_echoed_and_tcp_closed(node):
    """§5.5.1, §7.1.1. Autobahn 7.1.1 / 7.3.3. A Close 1000 gets a Close 1000,
    then the server closes TCP."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000))
        expect_close_reply(ws, (1000,))


def test_connection_ends_when_the_client_closes_tcp_after_the_handshake(node):
    """§7.1.1: after the Close handshake the server closes TCP first, then
    reads the socket out until the client's FIN (closing with unread bytes
    would reset the Close away). That FIN ends the connection: the node
    does not keep it, and hold a drain up, until its 2 s read-out limit."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000))
        expect_close_reply(ws, (1000,))
    # well inside the 2 s limit the FIN used to wait for
    wait_until(lambda: metric_value(node.metrics(), "pushgate_connections",
                                    {"transport": "ws"}) == 0, 1.5, 0.01,
               msg="the node's connection ended by the client's FIN")


def test_close_with_empty_body_gets_a_close(node):
    """§5.5.1, §7.4.1. Autobahn 7.3.1. An empty Close: the reply is empty too or
    carries 1000; 1005 ("no status code was actually present") MUST NOT be put
    in a frame."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame())
        expect_close_reply(ws, (None, 1000))


@pytest.mark.parametrize("reason", [b"bye", "κόσμε".encode(), b"r" * 123],
                         ids=["ascii", "utf8", "123_bytes"])
def test_close_with_code_and_reason_is_answered(node, reason):
    """§5.5, §5.5.1. Autobahn 7.3.4-7.3.5. A code and a UTF-8 reason, up to the
    125-byte control frame limit (2 + 123)."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000, reason))
        expect_close_reply(ws, (1000,))


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 3000, 3999, 4000, 4999])
def test_valid_close_code_is_answered(node, code):
    """Autobahn 7.7.x. Codes defined by §7.4.1, and the registered (3000-3999)
    and private (4000-4999) ranges of §7.4.2: the reply echoes the code or
    says 1000."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(code))
        expect_close_reply(ws, (code, 1000))


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999])
def test_invalid_close_code_fails_the_connection_1002(node, code):
    """Autobahn 7.9.x. "Status codes in the range 0-999 are not used"; 1004 is
    reserved, 1005, 1006 and 1015 "MUST NOT be set as a status code in a
    Close control frame by an endpoint"; 1016-2999 are unassigned protocol
    codes (§7.4). Such a Close is a protocol error: Close 1002."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(code))
        expect_fail(ws, 1002)


def test_close_with_one_byte_body_fails_1002(node):
    """Autobahn 7.3.2. "If there is a body, the first two bytes of the body MUST
    be a 2-byte unsigned integer" (§5.5.1): one byte is a protocol error."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_CLOSE, b"\x03"))
        expect_fail(ws, 1002)


def test_close_over_125_bytes_fails_1002(node):
    """Autobahn 7.3.6. A 124-byte reason makes a 126-byte control frame (§5.5)."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000, b"r" * 124))
        expect_fail(ws, 1002)


def test_close_reason_not_utf8_fails_1007(node):
    """Autobahn 7.5.1. The reason "MUST be UTF-8" (§5.5.1); data that is not
    UTF-8 fails the connection with 1007 (§8.1)."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
        expect_fail(ws, 1007)


def test_data_after_close_is_discarded(node):
    """Autobahn 7.1.4. A text message behind the Close: "after receiving a
    control frame indicating the connection should be closed, a peer discards
    any further data received" (§1.4). The Close is answered, the command is
    not."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000) + frame(OP_TEXT, PING_CMD))
        expect_close_reply(ws, (1000,))


def test_ping_after_close_is_not_answered(node):
    """Autobahn 7.1.3. A Ping behind the Close gets no Pong: the connection is
    closing (§5.5.2: a Pong is owed "unless it already received a Close
    frame")."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000) + frame(OP_PING, b"late"))
        expect_close_reply(ws, (1000,))


def test_second_close_is_ignored(node):
    """§5.5.1 (§1.4: data after a Close is discarded). Autobahn 7.1.2. Two
    Closes: one reply, then the TCP close."""
    with Peer.open(node.port) as ws:
        ws.send(close_frame(1000) + close_frame(1000))
        expect_close_reply(ws, (1000,))


def test_close_inside_a_fragmented_message_is_answered(node):
    """Autobahn 7.1.5. The first fragment of a message, then a Close (a control
    frame may come between fragments, §5.4): the Close is answered and
    the unfinished message dropped."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, PING_CMD[:7], fin=False) + close_frame(1000))
        expect_close_reply(ws, (1000,))


def test_messages_before_close_are_answered_first(node):
    """§5.5.1, §7.1.2. Autobahn 7.1.6 (small): what the client sent before its
    Close is processed, answered, then the Close reply."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, PING_CMD) * 3 + close_frame(1000))
        expect_close_reply(ws, (1000,), answered=[(OP_TEXT, PONG_CMD)] * 3)


def test_failing_the_connection_closes_tcp_without_waiting(node):
    """§7.1.7: to _Fail the WebSocket Connection_ an endpoint sends a Close
    and proceeds "to _Close the WebSocket Connection_" (close TCP, §7.1.1);
    it "MUST NOT continue to attempt to process data (including a
    responding Close frame) from the remote endpoint". A client that sent
    a reserved opcode and never replies must see TCP closed promptly."""
    with Peer.open(node.port) as ws:
        ws.send(frame(3, b"reserved"))
        out = ws.outcome()
        assert out.code == 1002, out.describe()
        assert ws.tcp_closed_within(2.0), "TCP still open 2 s after the node's Close"


def test_nothing_follows_the_nodes_close_not_even_its_keepalive(gateway_factory, rds):
    """§5.5.1: after sending a Close an endpoint sends nothing more. With a
    1 s keepalive, a connection the node fails (a reserved opcode) and whose
    client never answers the Close gets nothing after that Close, no Ping
    either, until TCP closes (issue 14: lws held such a connection 5 s and
    the keepalive kept pinging through it)."""
    gw = gateway_factory(["--api-key", API_KEY, "--ping-interval", "1"])
    with Peer.open(gw.port) as ws:
        ws.send(frame(3, b""))
        out = ws.outcome()
        assert out.close is not None and out.close[0] == 1002, out.describe()
        deadline = time.monotonic() + 3.5
        while True:
            try:
                op, payload = ws.next_frame(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            except (ConnectionError, OSError):
                break
            raise AssertionError(f"the node sent {(op, payload[:40])} after its Close")
    serves_fresh_client(gw, rds)
