"""Limits (Autobahn|Testsuite group 9's ground, by the node's own limits).

WebSocket: --max-message-bytes (65536 by default, SPEC §1) bounds a
message; past it the node closes 1009, "a message that is too big for it
to process" (RFC 6455 §7.4.1), and "Implementations that have
implementation- and/or platform-specific limitations regarding the frame
size or total message size after reassembly from multiple frames MUST
protect themselves against exceeding those limits" (§10.4). A frame header
announces its length, so a frame past the limit can be refused at once.

HTTP: "A server that receives a request header field line, field value, or
set of fields larger than it wishes to process MUST respond with an
appropriate 4xx (Client Error) status code" (RFC 9110 §5.4), a request
target longer than it parses gets 414 (RFC 9112 §3), a body past the limit
413 (RFC 9110 §15.5.14, SPEC §6)."""

import json
import struct

import pytest

from conformkit import (OP_CONT, OP_TEXT, PING_CMD, Peer, Wire, deviation,
                        exchange, expect_fail, expect_pong_cmd, frame, history_len,
                        host, padded_cmd, publish_fields, request)

MAX = 65536


def test_message_of_exactly_the_limit_is_processed(node):
    """RFC 6455 §10.4, SPEC §1: a message of exactly --max-message-bytes
    (65536) is within the limit and processed."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, padded_cmd(MAX)))
        expect_pong_cmd(ws)


def test_message_one_byte_over_the_limit_is_closed_1009(node):
    """RFC 6455 §7.4.1, §10.4, SPEC §6: one byte past the limit is Close
    1009, the command behind it unanswered."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, padded_cmd(MAX + 1)) + frame(OP_TEXT, PING_CMD))
        expect_fail(ws, 1009)


def test_fragments_adding_up_past_the_limit_are_closed_1009(node):
    """RFC 6455 §10.4, §5.4. Each fragment is small; the message they make is
    not."""
    with Peer.open(node.port) as ws:
        payload = padded_cmd(MAX + 100)
        ws.send(frame(OP_TEXT, payload[:40000], fin=False) +
                frame(OP_CONT, payload[40000:], fin=True) + frame(OP_TEXT, PING_CMD))
        expect_fail(ws, 1009)


@pytest.mark.parametrize("announced", [
    pytest.param(MAX + 1, id="limit_plus_1"),
    pytest.param(1 << 62, id="2e62"),
])
def test_frame_header_announcing_too_much_is_closed_1009_at_once(node, announced):
    """A header (with its mask) announcing more than the limit, and no
    payload byte after it: the node knows the message is too big and must
    not wait for bytes it will refuse (§10.4): Close 1009 within a few
    seconds, not after the next missed keepalive pings."""
    with Peer.open(node.port) as ws:
        ws.send(b"\x81\xff" + struct.pack("!Q", announced) + b"\x12\x34\x56\x78")
        out = ws.outcome()
        assert out.frames == [] and out.code == 1009, out.describe()


# --------------------------------------------------------------------------
# HTTP


def test_request_target_too_long_is_414(node):
    """RFC 9112 §3: "A server that receives a request-target longer than
    any URI it wishes to parse MUST respond with a 414 (URI Too Long)
    status code"."""
    a, w = exchange(node, request("GET", "/healthz?" + "a" * 10000, [host(node)]))
    with w:
        assert a.status == 414, a


def test_long_but_parsed_request_target_is_served(node):
    """RFC 9112 §3 (the other side of 414). A 3000-byte query is within what the
    node parses: served."""
    a, w = exchange(node, request("GET", "/healthz?" + "a" * 3000, [host(node)]))
    with w:
        assert a.status == 200, a


def test_header_field_too_large_is_431(node):
    """RFC 9110 §5.4: a field larger than the server wishes to process
    MUST get "an appropriate 4xx"; that is 431 Request Header Fields Too
    Large (RFC 6585 §5), or 400."""
    a, w = exchange(node, request("GET", "/healthz", [host(node), ("X-Big", "a" * 9000)]))
    with w:
        assert a.status in (431, 400), a


def test_header_section_too_large_is_431(node):
    """RFC 9110 §5.4: the same for the set of fields: 100 lines of 1 KiB."""
    fields = [host(node)] + [(f"X-Pad-{i}", "a" * 1024) for i in range(100)]
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", fields))
        a = w.answer()
        assert a.status in (431, 400), a


def test_many_repeated_header_lines_are_answered(node):
    """100 lines of one known field, 1.7 KiB in all (well under the 8 KiB
    head the node accepts): served, or refused with a 4xx (431 / 400) as
    RFC 9110 §5.4 requires when it will not process them; never dropped
    without an answer."""
    fields = [host(node)] + [("Accept", f"text/x{i}") for i in range(100)]
    a, w = exchange(node, request("GET", "/healthz", fields))
    with w:
        assert a.status == 200 or a.status in (431, 400), a


def test_many_distinct_header_lines_are_served(node):
    """RFC 9110 §5.4 (the other side of 431). 200 short distinct fields (3.3
    KiB): an ordinary head, served."""
    fields = [host(node)] + [(f"X-Header-{i}", "v") for i in range(200)]
    a, w = exchange(node, request("GET", "/healthz", fields))
    with w:
        assert a.status == 200, a


def test_body_over_the_limit_is_413(node, rds):
    """RFC 9110 §15.5.14 / SPEC §6: a publish body past --max-message-bytes
    is refused 413 and nothing is published."""
    body = json.dumps({"channel": "limits", "data": "x" * (MAX + 10)}).encode()
    a, w = exchange(node, request("POST", "/api/publish", publish_fields(node, body),
                                  body=body))
    with w:
        assert a.status == 413, a
    assert history_len(rds, "limits") == 0
