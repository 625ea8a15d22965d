"""UTF-8 handling (Autobahn|Testsuite group 6; RFC 6455 §5.6, §8.1).

"The "Payload data" is text data encoded as UTF-8", and "When an endpoint
is to interpret a byte stream as UTF-8 but finds that the byte stream is
not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
Connection_": Close 1007 (§7.4.1). UTF-8 is RFC 3629: no overlong form, no
surrogate (U+D800-U+DFFF), nothing past U+10FFFF, no byte C0, C1, F5-FF.
Validity is of the whole message, so a code point may be split between
fragments. Each valid case wraps the text in a ping command's string
member: {"type":"pong"} means the node took it."""

import pytest

from conformkit import (OP_CONT, OP_TEXT, PING_CMD, PONG_CMD, Peer, deviation,
                        expect_answers, expect_fail, expect_pong_cmd, frame)

AFTER = frame(OP_TEXT, PING_CMD)
HEAD, TAIL = b'{"type":"ping","x":"', b'"}'

VALID = {
    "hello_mixed": "Hello-µ@ßöäüàá-UTF-8!!".encode(),        # 6.2.x
    "kosme": "κόσμε".encode(),                                # 6.5.x
    "first_2_byte_U+0080": b"\xc2\x80",
    "last_2_byte_U+07FF": b"\xdf\xbf",
    "first_3_byte_U+0800": b"\xe0\xa0\x80",
    "last_before_surrogates_U+D7FF": b"\xed\x9f\xbf",
    "first_after_surrogates_U+E000": b"\xee\x80\x80",
    "noncharacter_U+FFFE": b"\xef\xbf\xbe",
    "last_3_byte_U+FFFF": b"\xef\xbf\xbf",
    "first_4_byte_U+10000": b"\xf0\x90\x80\x80",
    "last_code_point_U+10FFFF": b"\xf4\x8f\xbf\xbf",
    "emoji_U+1F600": b"\xf0\x9f\x98\x80",
}

INVALID = {
    "lone_continuation_80": b"\x80",
    "lone_continuation_bf": b"\xbf",
    "overlong_2_byte_c0_80": b"\xc0\x80",
    "overlong_2_byte_c1_bf": b"\xc1\xbf",
    "overlong_3_byte_e0_80_af": b"\xe0\x80\xaf",
    "overlong_4_byte_f0_80_80_af": b"\xf0\x80\x80\xaf",
    "surrogate_high_U+D800": b"\xed\xa0\x80",
    "surrogate_low_U+DFFF": b"\xed\xbf\xbf",
    "surrogate_pair_encoded": b"\xed\xa0\xbd\xed\xb8\x80",
    "past_U+10FFFF_f4_90": b"\xf4\x90\x80\x80",
    "byte_f5": b"\xf5\x80\x80\x80",
    "five_byte_form_f8": b"\xf8\x88\x80\x80\x80",
    "byte_fe": b"\xfe",
    "byte_ff": b"\xff",
    "truncated_3_byte_then_ascii": b"\xe2\x82x",
    "truncated_4_byte_then_ascii": b"\xf0\x9f\x98x",
}


@pytest.mark.parametrize("case", list(VALID))
def test_valid_utf8_text_is_processed(node, case):
    """§5.6, §8.1, RFC 3629. Autobahn 6.2-6.5, 6.6.x valid rows: every valid
    sequence, boundary code points and noncharacters included (they are valid
    UTF-8)."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + VALID[case] + TAIL))
        expect_pong_cmd(ws)


def test_valid_code_points_split_between_fragments(node):
    """Autobahn 6.4.x valid rows / §5.6: a 2-byte and a 4-byte code point each
    cut between two fragments: valid as a message, processed."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + b"\xce", fin=False) +
                frame(OP_CONT, b"\xba\xf0\x9f", fin=False) +
                frame(OP_CONT, b"\x98", fin=False) + frame(OP_CONT, b"\x80" + TAIL))
        expect_pong_cmd(ws)


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_utf8_fails_the_connection_1007(node, case):
    """§8.1, §7.4.1, RFC 3629. Autobahn 6.3, 6.6-6.21 invalid rows: the message
    is not UTF-8, Close 1007, the command behind it unanswered."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + INVALID[case] + TAIL) + AFTER)
        expect_fail(ws, 1007)


def test_message_ending_inside_a_code_point_fails_1007(node):
    """§8.1. A single-frame message whose last bytes start a 3-byte sequence that
    never ends."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + b"\xe2\x82") + AFTER)
        expect_fail(ws, 1007)


def test_invalid_sequence_split_between_fragments_fails_1007(node):
    """§5.6, §8.1. Autobahn 6.4.x: a surrogate (ED A0 80) cut after its first
    byte: each fragment alone looks harmless, the message is not UTF-8."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + b"\xed", fin=False) +
                frame(OP_CONT, b"\xa0\x80" + TAIL) + AFTER)
        expect_fail(ws, 1007)


def test_invalid_first_fragment_fails_before_the_message_ends(node):
    """§8.1. Autobahn 6.4.1-6.4.4 ("fail fast"): the first fragment already holds
    an impossible byte; the node fails the connection without waiting for the
    rest of the message, which never comes."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + b"\xf4\x90\x80\x80", fin=False))
        expect_fail(ws, 1007)


def test_fragmented_message_ending_inside_a_code_point_fails_1007(node):
    """The last data fragment ends with the first two bytes of a 3-byte
    sequence and an empty final fragment closes the message: the message
    is not valid UTF-8 (§5.6, §8.1), Close 1007."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + b"\xe2\x82", fin=False) + frame(OP_CONT, b"") + AFTER)
        expect_fail(ws, 1007)


def test_valid_text_then_invalid_text_answers_the_first_only(node):
    """§8.1. Validity is per connection state, not sticky: a valid message is
    answered, the next invalid one fails the connection."""
    with Peer.open(node.port) as ws:
        ws.send(frame(OP_TEXT, HEAD + "κόσμε".encode() + TAIL))
        expect_answers(ws, [(OP_TEXT, PONG_CMD)])
        ws.send(frame(OP_TEXT, HEAD + b"\xc0\xaf" + TAIL) + AFTER)
        expect_fail(ws, 1007)
