"""Fragmentation (Autobahn|Testsuite group 5; RFC 6455 §5.4, §5.5).

A message is a first frame with opcode text/binary and FIN clear, any
number of continuation frames (opcode 0), the last with FIN set. "Control
frames MAY be injected in the middle of a fragmented message", "Control
frames themselves MUST NOT be fragmented", and a continuation with no
message to continue, or a new data frame inside an unfinished message, is
a protocol error: the connection fails with Close 1002 (§7.1.7, §7.4.1)."""

import pytest

from conformkit import (OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                        PING_CMD, PONG_CMD, Peer, expect_answers, expect_fail,
                        expect_pong_cmd, frame)

AFTER = frame(OP_TEXT, PING_CMD)     # behind a violation: must not be answered


def fragments(payload, sizes, opcode=OP_TEXT):
    """payload cut into frames of the given sizes (the last takes the rest)."""
    out, pos = [], 0
    for i, n in enumerate(sizes + [len(payload)]):
        part = payload[pos:pos + n] if i < len(sizes) else payload[pos:]
        pos += len(part)
        last = i == len(sizes)
        out.append(frame(opcode if i == 0 else OP_CONT, part, fin=last))
    return out


def test_text_message_in_two_fragments(node):
    """§5.4. Autobahn 5.3. Two frames, one message, one answer."""
    with Peer.open(node.port) as ws:
        ws.send(b"".join(fragments(PING_CMD, [7])))
        expect_pong_cmd(ws)


def test_text_message_in_two_fragments_sent_apart(node):
    """§5.4. Autobahn 5.5. The continuation arrives in its own write, after a
    pause the node cannot tell from a slow client."""
    with Peer.open(node.port) as ws:
        first, second = fragments(PING_CMD, [7])
        ws.send(first)
        ws.send_chopped(second)
        expect_pong_cmd(ws)


def test_text_message_in_one_byte_fragments(node):
    """§5.4. Every payload byte its own frame: still one message."""
    with Peer.open(node.port) as ws:
        ws.send(b"".join(fragments(PING_CMD, [1] * (len(PING_CMD) - 1))))
        expect_pong_cmd(ws)


def test_empty_fragments_are_part_of_the_message(node):
    """Autobahn 6.1.2-6.1.3 style: empty first, middle and last fragments are
    legal (§5.4: a fragment may have any length, 0 included)."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, PING_CMD[:5], fin=False) +
                frame(OP_CONT, b"", fin=False) + frame(OP_CONT, PING_CMD[5:], fin=False) +
                frame(OP_CONT, b"", fin=True))
        expect_pong_cmd(ws)


@pytest.mark.parametrize("chopped", [False, True], ids=["whole", "chopped"])
def test_ping_between_fragments_is_answered_and_the_message_completes(node, chopped):
    """§5.4, §5.5.2. Autobahn 5.6-5.8. A Ping injected between fragments gets its
    Pong, and the message around it is whole."""
    a, b = fragments(PING_CMD, [7])
    data = a + frame(OP_PING, b"between") + b
    with Peer.open(node.port) as ws:
        (ws.send_chopped if chopped else ws.send)(data)
        expect_answers(ws, [(OP_PONG, b"between"), (OP_TEXT, PONG_CMD)])


def test_several_pings_between_several_fragments(node):
    """§5.4, §5.5.2. Autobahn 5.19-5.20. Five fragments; a Ping after the second,
    answered while the message is unfinished; two more fragments, another
    Ping, the last fragment: both Pongs and the one message. (Autobahn pauses
    between the two halves; here the first Pong is awaited: two Pings in one
    burst are test_ws_pings.py's case.)"""
    f = fragments(PING_CMD, [3, 3, 3, 3])
    with Peer.open(node.port) as ws:
        ws.send(f[0] + f[1] + frame(OP_PING, b"one"))
        expect_answers(ws, [(OP_PONG, b"one")])
        ws.send(f[2] + f[3] + frame(OP_PING, b"two") + f[4])
        expect_answers(ws, [(OP_PONG, b"two"), (OP_TEXT, PONG_CMD)])


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE],
                         ids=["ping", "pong", "close"])
def test_fragmented_control_frame_fails_the_connection_1002(node, opcode):
    """Autobahn 5.1-5.2. "Control frames themselves MUST NOT be fragmented"
    (§5.5)."""
    payload = b"\x03\xe8" if opcode == OP_CLOSE else b"fragmented"
    with Peer.open(node.port) as ws:
        ws.send(frame(opcode, payload[:1], fin=False) + frame(OP_CONT, payload[1:]) + AFTER)
        expect_fail(ws, 1002)


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "no_fin"])
def test_continuation_with_nothing_to_continue_fails_1002(node, fin):
    """§5.4, §7.4.1. Autobahn 5.9-5.14. A continuation frame as the first frame
    of a message."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_CONT, PING_CMD, fin=fin) + AFTER)
        expect_fail(ws, 1002)


def test_continuation_after_a_finished_message_fails_1002(node):
    """§5.4, §7.4.1. Autobahn 5.15. A fragmented message completes (answered),
    then a stray continuation."""
    with Peer.open(node.port) as ws:
        ws.send(b"".join(fragments(PING_CMD, [7])) +
                frame(OP_CONT, b"stray", fin=False) + AFTER)
        expect_fail(ws, 1002, answered=[(OP_TEXT, PONG_CMD)])


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BIN], ids=["text", "binary"])
def test_new_data_frame_inside_an_unfinished_message_fails_1002(node, opcode):
    """Autobahn 5.17-5.18. "fragments of one message MUST NOT be interleaved
    between fragments of another message" (§5.4): a text or binary frame while
    a text message waits for its continuation."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, PING_CMD[:7], fin=False) + frame(opcode, PING_CMD) + AFTER)
        expect_fail(ws, 1002)


def test_fragmented_binary_message_is_closed_1003(node):
    """A binary message, fragmented, is still binary: Close 1003 (SPEC §6,
    §7.4.1), the command behind it unanswered."""
    with Peer.open(node.port) as ws:
        ws.send(b"".join(fragments(b"\x00\x01\x02\x03", [2], OP_BIN)) + AFTER)
        expect_fail(ws, 1003)
