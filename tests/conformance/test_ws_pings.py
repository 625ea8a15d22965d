"""Pings and pongs (Autobahn|Testsuite group 2; RFC 6455 §5.5.2, §5.5.3).

"Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
response" with "identical Application data"; an unsolicited Pong "serves
as a unidirectional heartbeat. A response to an unsolicited Pong frame is
not expected." Control frames carry at most 125 bytes (§5.5)."""

import os

import pytest

from conformkit import (OP_PING, OP_PONG, OP_TEXT, PING_CMD, PONG_CMD, Peer,
                        deviation, expect_answers, expect_fail, expect_pong_cmd,
                        frame)


@pytest.mark.parametrize("payload", [
    pytest.param(b"", id="empty"),
    pytest.param(b"Hello, world!", id="text"),
    pytest.param(bytes(range(0, 125)), id="binary"),
    pytest.param(os.urandom(125), id="125_bytes"),
])
def test_ping_is_answered_with_a_pong_of_identical_payload(node, payload):
    """Autobahn 2.1-2.4. A Ping gets a Pong with the same Application data
    (§5.5.3)."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_PING, payload))
        expect_answers(ws, [(OP_PONG, payload)])


def test_ping_chopped_into_single_bytes_is_answered(node):
    """§5.5.2-§5.5.3. Autobahn 2.6. A 125-byte Ping whose bytes arrive one write
    at a time."""
    payload = os.urandom(125)
    with Peer.open(node.port) as ws:
        ws.send_chopped(frame(OP_PING, payload))
        expect_answers(ws, [(OP_PONG, payload)])


def test_ping_over_125_bytes_fails_the_connection_1002(node):
    """Autobahn 2.5. "All control frames MUST have a payload length of 125 bytes
    or less" (§5.5): a longer one is a protocol error, Close 1002 (§7.4.1),
    and the command behind it is not answered (§7.1.7)."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_PING, b"p" * 126) + frame(OP_TEXT, PING_CMD))
        expect_fail(ws, 1002)


def test_pong_over_125_bytes_fails_the_connection_1002(node):
    """§5.5: the 125-byte limit holds for every control frame, Pong too."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_PONG, b"p" * 126) + frame(OP_TEXT, PING_CMD))
        expect_fail(ws, 1002)


@pytest.mark.parametrize("payload", [b"", b"unsolicited"], ids=["empty", "payload"])
def test_unsolicited_pong_is_ignored(node, payload):
    """Autobahn 2.7-2.8. An unsolicited Pong needs no answer (§5.5.3): nothing
    comes back for it and the connection carries on."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_PONG, payload) + frame(OP_TEXT, PING_CMD))
        expect_pong_cmd(ws)


def test_unsolicited_pong_then_ping_answers_only_the_ping(node):
    """§5.5.2-§5.5.3. Autobahn 2.9. The Pong gets nothing, the Ping its own Pong."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_PONG, b"unsolicited") + frame(OP_PING, b"solicited") +
                frame(OP_TEXT, PING_CMD))
        expect_answers(ws, [(OP_PONG, b"solicited"), (OP_TEXT, PONG_CMD)])


def test_ten_pings_in_one_burst_get_a_pong_for_the_last(node):
    """Autobahn 2.10. "If an endpoint receives a Ping frame and has not yet sent
    Pong frame(s) in response to previous Ping frame(s), the endpoint MAY
    elect to send a Pong frame for only the most recently processed Ping
    frame" (§5.5.3): Pongs may be skipped, but every Pong echoes one of the
    Pings, in order, and the last Ping is answered."""
    pings = [f"ping-{i}".encode() for i in range(10)]
    with Peer.open(node.port) as ws:
        ws.send(b"".join(frame(OP_PING, p) for p in pings) + frame(OP_TEXT, PING_CMD))
        pongs = ws.pongs_until_quiet()
        assert pongs and pongs == sorted(pongs, key=pings.index), pongs
        assert set(pongs) <= set(pings) and pongs[-1] == pings[-1], \
            f"Pongs {pongs}: the last Ping ({pings[-1]}) is not answered"


def test_ten_pings_one_at_a_time_get_ten_pongs(node):
    """Autobahn 2.11 (sent apart): each Ping answered before the next is sent
    gets its own Pong (§5.5.2: MUST)."""
    with Peer.open(node.port) as ws:
        for i in range(10):
            ws.send(frame(OP_PING, f"ping-{i}".encode()))
            expect_answers(ws, [(OP_PONG, f"ping-{i}".encode())])
