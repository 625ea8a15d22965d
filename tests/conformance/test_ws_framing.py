"""WebSocket framing (Autobahn|Testsuite group 1; RFC 6455 §5.1-§5.3, §5.6).

A text frame carries a ping command (SPEC §4), answered {"type":"pong"}:
that answer is the node's "echo". Every server frame read is checked by
conformkit.Peer (unmasked, no RSV bit, well-formed control frames)."""

import os
import struct

import pytest

from conformkit import (OP_BIN, OP_TEXT, PING_CMD, PONG_CMD, Peer, deviation,
                        expect_answers, expect_fail, expect_pong_cmd, frame,
                        padded_cmd)


@pytest.mark.parametrize("n", [22, 125, 126, 127, 128, 65535, 65536])
def test_text_frame_of_each_length_encoding_is_processed(node, n):
    """Autobahn 1.1.x. Payload lengths 0-125 take the 7-bit form, 126-65535 the
    16-bit form, more the 64-bit form (§5.2); every one is one whole text
    message, answered once. 65536 is the node's default limit, allowed."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, padded_cmd(n)))
        expect_pong_cmd(ws)


def test_empty_text_frame_is_processed(node):
    """Autobahn 1.1.1. A 0-byte text frame is a valid (empty) message (§5.6): the
    node's command parser answers it with an error frame, and the connection
    stays (SPEC §4)."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, b""))
        op, payload = ws.next_frame()
        assert op == OP_TEXT and b'"type":"error"' in payload, (op, payload)
        ws.send(frame(OP_TEXT, PING_CMD))
        expect_pong_cmd(ws)


@pytest.mark.parametrize("n", [22, 126, 65536])
def test_text_frame_chopped_into_single_bytes_is_processed(node, n):
    """Autobahn 1.1.8 / 1.2.8. A frame whose bytes arrive one TCP write at a time
    is the same frame (§5: framing is independent of TCP segmentation)."""
    with Peer.open(node.port) as ws:
        data = frame(OP_TEXT, padded_cmd(n))
        if n > 200:
            ws.send(data[:-200])        # the tail, header and mask included
            ws.send_chopped(data[-200:])  # above, is what matters most
        else:
            ws.send_chopped(data)
        expect_pong_cmd(ws)


def test_frames_sharing_one_tcp_segment_are_each_processed(node):
    """§5 (framing, not TCP writes, delimits messages). Three frames in one write
    are three messages, answered in order."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, PING_CMD) * 3)
        expect_answers(ws, [(OP_TEXT, PONG_CMD)] * 3)


def test_zero_masking_key_is_a_valid_mask(node):
    """§5.3: the masking key is any 32-bit value, zero included."""
    with Peer.open(node.port) as ws:
        ws.send(bytes([0x81, 0x80 | len(PING_CMD)]) + b"\0\0\0\0" + PING_CMD)
        expect_pong_cmd(ws)


@pytest.mark.parametrize("n", [0, 16, 125, 126, 65535])
def test_binary_frame_is_closed_1003(node, n):
    """Autobahn 1.2.x. pushgate accepts text only (SPEC §6): a binary message
    gets Close 1003, "received a type of data it cannot accept (e.g., an
    endpoint that understands only text data MAY send this if it receives a
    binary message)" (§7.4.1). The command behind it is not answered."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_BIN, os.urandom(n)) + frame(OP_TEXT, PING_CMD))
        expect_fail(ws, 1003)


def test_unmasked_client_frame_closes_the_connection(node):
    """§5.1: "The server MUST close the connection upon receiving a frame
    that is not masked. In this case, a server MAY send a Close frame with
    a status code of 1002 (protocol error)". Nothing may be answered: not
    the unmasked frame, not the masked one behind it."""
    with Peer.open(node.port) as ws:
        ws.send(bytes([0x81, len(PING_CMD)]) + PING_CMD + frame(OP_TEXT, PING_CMD))
        out = ws.outcome()
        assert out.frames == [], out.describe()
        assert out.tcp_closed or out.code == 1002, out.describe()
        ws.reply_close(out.code)


def test_64bit_length_with_the_top_bit_set_fails_the_connection(node):
    """§5.2: in the 64-bit length form "the most significant bit MUST be
    0". Such a frame is invalid and fails the connection (§7.1.7): a Close
    with 1002 (protocol error) or 1009 (too big: the length is also past
    any limit) before the TCP close."""
    with Peer.open(node.port) as ws:
        ws.send(b"\x81\xff" + struct.pack("!Q", (1 << 63) | 20) + b"\0" * 4 + b"x" * 20)
        out = ws.outcome()
        assert out.frames == [] and out.code in (1002, 1009), out.describe()
