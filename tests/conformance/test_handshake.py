"""The opening handshake (RFC 6455 §4).

§4.2.1: the client's handshake is "An HTTP/1.1 or higher GET request",
with a Host, an Upgrade field containing "websocket", a Connection field
including the "Upgrade" token, a Sec-WebSocket-Key "that, when decoded, is
16 bytes in length", and Sec-WebSocket-Version 13; "If the server, while
reading the handshake, finds that the client did not send a handshake that
matches the description below [...], the server MUST stop processing the
client's handshake and return an HTTP response with an appropriate error
code (such as 400 Bad Request)." A version the server does not speak gets
"an appropriate HTTP error code (such as 426 Upgrade Required) and a
|Sec-WebSocket-Version| header field indicating the version(s) the server
is capable of understanding" (§4.2.2, §4.4). Either way: an answer, never
an upgrade and never a silent TCP drop."""

import base64
import os

import pytest

from conformkit import (OP_TEXT, PING_CMD, PONG_CMD, Peer, Wire, accept_key,
                        deviation, exchange, expect_answers, frame,
                        replace, request, without, ws_upgrade_fields)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="            # §1.3's example
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",")]


def assert_upgraded(a, key):
    """§4.2.2 step 5: 101, Upgrade: websocket, Connection: Upgrade, the
    accept value; no subprotocol or extension the client did not get."""
    assert a.status == 101, a
    assert a.version == "HTTP/1.1", a
    assert "websocket" in tokens(a.header("upgrade")), a
    assert "upgrade" in tokens(a.header("connection")), a
    assert a.header("sec-websocket-accept") == accept_key(key), a


def assert_refused(a, statuses=(400,)):
    assert a.status in statuses, f"want {statuses}, got {a}"


@pytest.mark.parametrize("key", [RFC_KEY, base64.b64encode(os.urandom(16)).decode()],
                         ids=["rfc_example", "random"])
def test_valid_handshake_is_upgraded_with_the_right_accept(node, key):
    """§4.2.2: Sec-WebSocket-Accept is base64(SHA-1(key + GUID)); §1.3's
    example key gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    a, w = exchange(node, request("GET", "/ws", ws_upgrade_fields(node, key)))
    with w:
        assert_upgraded(a, key)
        if key == RFC_KEY:
            assert a.header("sec-websocket-accept") == RFC_ACCEPT
        assert a.header("sec-websocket-protocol") is None, a
        assert a.header("sec-websocket-extensions") is None, a


@pytest.mark.parametrize("upgrade,connection", [
    ("WebSocket", "upgrade"), ("websocket", "keep-alive, Upgrade"),
    ("WEBSOCKET", "Upgrade, keep-alive"),
], ids=["mixed_case", "connection_list", "upper_case"])
def test_upgrade_and_connection_tokens_are_case_insensitive_lists(node, upgrade, connection):
    """§4.2.1 items 3-4: "websocket" and "Upgrade" are matched ASCII
    case-insensitively, and Connection is a list (Firefox sends
    "keep-alive, Upgrade")."""
    fields = replace(replace(ws_upgrade_fields(node), "Upgrade", upgrade),
                     "Connection", connection)
    a, w = exchange(node, request("GET", "/ws", fields))
    with w:
        assert_upgraded(a, RFC_KEY)


def test_frame_right_behind_the_handshake_is_processed(node):
    """A client frame in the same segment as the request is read once the
    connection is open (§4.2.2: the connection is established when the
    response is sent)."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/ws", ws_upgrade_fields(node)) + frame(OP_TEXT, PING_CMD))
        a = w.answer()
        assert_upgraded(a, RFC_KEY)
        ws = Peer(w.s, 101, {})
        ws.buf = w.buf
        expect_answers(ws, [(OP_TEXT, PONG_CMD)])


@pytest.mark.parametrize("version", [
    pytest.param(None, id="missing"),
    pytest.param("8", id="8"),
    pytest.param("14", id="14"),
    pytest.param("abc", id="not_a_number"),
])
def test_unsupported_version_gets_426_naming_13(node, version):
    """§4.2.2 / §4.4: a version other than 13 (or none) is refused with a
    4xx (426 Upgrade Required, "such as") and Sec-WebSocket-Version: 13.
    A 426 "MUST send an Upgrade header field" (RFC 9110 §15.5.22)."""
    fields = without(ws_upgrade_fields(node), "Sec-WebSocket-Version")
    if version is not None:
        fields.append(("Sec-WebSocket-Version", version))
    a, w = exchange(node, request("GET", "/ws", fields))
    with w:
        assert 400 <= a.status < 500, a
        if version is not None or a.status == 426:
            assert "13" in tokens(a.header("sec-websocket-version")), a
        if a.status == 426:
            assert "websocket" in tokens(a.header("upgrade")), a


BAD = {
    "no_key": (lambda f: without(f, "Sec-WebSocket-Key"),
               "no Sec-WebSocket-Key: TCP dropped with no answer"),
    "key_of_5_bytes": (lambda f: replace(f, "Sec-WebSocket-Key", "c2hvcnQ="),
                       "a Sec-WebSocket-Key of 5 bytes: upgraded (101)"),
    "key_not_base64": (lambda f: replace(f, "Sec-WebSocket-Key", "!" * 24),
                       "a Sec-WebSocket-Key that is not base64: upgraded (101)"),
    "key_twice": (lambda f: f + [("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode())],
                  "two Sec-WebSocket-Key lines: upgraded (101)"),
    "no_connection": (lambda f: without(f, "Connection"),
                      "no Connection field: TCP dropped with no answer"),
    "connection_close": (lambda f: replace(f, "Connection", "close"),
                         "Connection: close: TCP dropped with no answer"),
    "upgrade_h2c": (lambda f: replace(f, "Upgrade", "h2c"),
                    "Upgrade: h2c: TCP dropped with no answer"),
    "no_host": (lambda f: without(f, "Host"),
                "no Host: TCP dropped with no answer"),
}


@pytest.mark.parametrize("case", [pytest.param(k) for k, v in BAD.items()])
def test_invalid_handshake_is_400(node, case):
    """§4.2.1: a handshake missing or botching a required field is refused
    400. The key must decode to 16 bytes (§4.1), may appear once (§11.3.1),
    Connection must carry "Upgrade", Upgrade must be "websocket", and an
    HTTP/1.1 request needs a Host (§4.2.1 item 2, RFC 9112 §3.2)."""
    fields = BAD[case][0](ws_upgrade_fields(node))
    a, w = exchange(node, request("GET", "/ws", fields))
    with w:
        assert_refused(a)


def test_no_upgrade_field_is_400(node):
    """§4.2.1 item 3: without Upgrade it is a plain GET of /ws, which
    the node refuses 400 (SPEC: WebSocket upgrade required)."""
    a, w = exchange(node, request("GET", "/ws", without(ws_upgrade_fields(node), "Upgrade")))
    with w:
        assert_refused(a)


def test_http10_handshake_is_400(node):
    """§4.2.1 item 1: "An HTTP/1.1 or higher GET request"."""
    a, w = exchange(node, request("GET", "/ws", ws_upgrade_fields(node), version="HTTP/1.0"))
    with w:
        assert_refused(a, (400, 505))


def test_post_handshake_is_refused_400_or_405(node):
    """§4.2.1 item 1: the handshake is a GET. A POST to /ws is refused 400
    (§4.2.1) or 405 (RFC 9110 §15.5.6: the method is not supported by an
    existing resource); not 404, which says /ws does not exist."""
    fields = ws_upgrade_fields(node) + [("Content-Length", "0")]
    a, w = exchange(node, request("POST", "/ws", fields))
    with w:
        assert_refused(a, (400, 405))
        if a.status == 405:
            assert a.header("allow"), a


@pytest.mark.parametrize("path", ["/sse", "/healthz", "/nope"])
def test_handshake_to_a_path_without_websocket_is_404(node, path):
    """§4.2.2 item 1 (/resource name/): "If the requested service is not
    available, the server MUST send an appropriate HTTP error code (such
    as 404 Not Found) and abort the WebSocket handshake"."""
    a, w = exchange(node, request("GET", path, ws_upgrade_fields(node)))
    with w:
        assert_refused(a, (404,))


def test_unknown_subprotocol_is_answered(node):
    """§4.2.2 step 5: with no subprotocol it wants, the server answers with
    none ("it MUST NOT send back a |Sec-WebSocket-Protocol| header field")
    and the client decides; or it refuses the connection with an HTTP
    error ("If the server chooses not to accept the connection, it MUST
    reply with an appropriate HTTP status code"). Not a silent drop."""
    fields = ws_upgrade_fields(node) + [("Sec-WebSocket-Protocol", "chat, superchat")]
    a, w = exchange(node, request("GET", "/ws", fields))
    with w:
        if a.status == 101:
            assert_upgraded(a, RFC_KEY)
            assert a.header("sec-websocket-protocol") is None, a
        else:
            assert 400 <= a.status < 500, a


@pytest.mark.parametrize("offer", [
    "x-unknown-extension",
    "permessage-deflate; client_max_window_bits",
], ids=["unknown", "permessage_deflate"])
def test_extensions_offered_are_only_answered_if_agreed(node, offer):
    """§9.1: the server answers Sec-WebSocket-Extensions only with
    extensions the client offered; an unknown one is ignored. (Whether
    permessage-deflate is taken is issue 14 item 3; if it is, the answer
    names it.)"""
    fields = ws_upgrade_fields(node) + [("Sec-WebSocket-Extensions", offer)]
    a, w = exchange(node, request("GET", "/ws", fields))
    with w:
        assert_upgraded(a, RFC_KEY)
        ext = a.header("sec-websocket-extensions")
        assert ext is None or ext.split(";")[0].strip() == offer.split(";")[0], a


@pytest.mark.parametrize("pipelined", [pytest.param(False, id="after_the_answer"),
                                       pytest.param(True, id="pipelined")])
def test_upgrade_as_the_second_request_of_a_kept_alive_connection(node, rds, pipelined):
    """A kept-alive connection's second request may be the handshake (a
    browser reuses the connection that loaded the page): the GET is
    answered first, then 101 (§4.2.2); a frame right behind the handshake
    is answered, and a message published to the node arrives on it."""
    get = request("GET", "/healthz", [("Host", f"127.0.0.1:{node.port}")])
    up = request("GET", "/ws", ws_upgrade_fields(node)) + frame(OP_TEXT, PING_CMD)
    w = Wire(node.port)
    with w:
        if pipelined:
            w.send(get + up)
        else:
            w.send(get)
        a = w.answer()
        assert (a.status, a.body) == (200, b"ok\n"), a
        if not pipelined:
            w.send(up)
        assert_upgraded(w.answer(), RFC_KEY)
        ws = Peer(w.s, 101, {})
        ws.buf = w.buf
        expect_answers(ws, [(OP_TEXT, PONG_CMD)])
        tag = os.urandom(6).hex()
        r = node.publish({"channel": "broadcast", "event": "kept", "data": tag})
        assert r.status == 200, r
        msg = ws.recv_json(3.0)
        assert (msg.get("channel"), msg.get("data")) == ("broadcast", tag), msg
