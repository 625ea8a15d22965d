"""HTTP/1.1 message body framing (RFC 9112 §6-§7).

The body length of a request is decided by Transfer-Encoding, else by
Content-Length, else it is zero (§6.3). A wrong decision desynchronises the
connection: the rest of the body is read as a next request, which behind a
proxy is request smuggling (§11.2). The publish endpoint shows what the
node read: a message in the channel's history (SPEC §3) means it took the
bytes as the body."""

import json
import time

import pytest

from conformkit import (Wire, deviation, exchange, history_len, host,
                        publish_fields, request)

CH = "body"
BODY = json.dumps({"channel": CH, "data": "x"}).encode()


def chunked(body, size=10):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def healthz(node):
    return request("GET", "/healthz", [host(node)])


def test_content_length_body_then_next_request(node, rds):
    """§6.2-§6.3 rule 6: exactly Content-Length bytes are the body; what
    follows is the next request, answered in turn."""
    w = Wire(node.port)
    with w:
        w.send(request("POST", "/api/publish", publish_fields(node, BODY), body=BODY) +
               healthz(node))
        assert w.answer().status == 200
        assert w.answer().status == 200
    assert history_len(rds, CH) == 1


def test_body_of_a_get_is_read_and_skipped(node):
    """§6.3: the framing rules hold whatever the method: a GET with
    Content-Length 5 has a 5-byte body, which is not a next request."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node), ("Content-Length", "5")], body=b"hello") +
               healthz(node))
        assert w.answer().status == 200
        nxt = w.answer()
        assert (nxt.status, nxt.body) == (200, b"ok\n"), nxt
        w.nothing_more()


@pytest.mark.parametrize("order", ["cl_first", "te_first"])
def test_content_length_with_transfer_encoding_never_uses_content_length(node, rds, order):
    """§6.1: "A server MAY reject a request that contains both
    Content-Length and Transfer-Encoding or process such a request in
    accordance with the Transfer-Encoding alone. Regardless, the server
    MUST close the connection after responding to such a request"; §6.3
    rule 3: Transfer-Encoding overrides Content-Length. The body here is
    the JSON itself, which is not chunked framing: read by Content-Length
    it publishes; read as chunked it is malformed. So: a 4xx, nothing
    published, and the connection closed."""
    te, cl = ("Transfer-Encoding", "chunked"), ("Content-Length", str(len(BODY)))
    fields = publish_fields(node) + ([cl, te] if order == "cl_first" else [te, cl])
    a, w = exchange(node, request("POST", "/api/publish", fields, body=BODY) + healthz(node))
    with w:
        assert 400 <= a.status < 500, a
        assert w.closed_within(), "connection kept after a request with both framings"
    assert history_len(rds, CH) == 0


@pytest.mark.parametrize("order", ["cl_first", "te_first"])
def test_both_framings_on_a_kept_alive_connection_are_refused(node, rds, order):
    """The same as above on the second request of a kept-alive connection
    (read by the node's relay, README "How a node works"): a smuggled
    request most often rides behind a proxy's earlier one. A 4xx, nothing
    published, the connection closed."""
    te, cl = ("Transfer-Encoding", "chunked"), ("Content-Length", str(len(BODY)))
    fields = publish_fields(node) + ([cl, te] if order == "cl_first" else [te, cl])
    w = Wire(node.port)
    with w:
        w.send(healthz(node))
        assert w.answer().status == 200
        w.send(request("POST", "/api/publish", fields, body=BODY) + healthz(node))
        a = w.answer()
        assert 400 <= a.status < 500, a
        assert w.closed_within(), "connection kept after a request with both framings"
    assert history_len(rds, CH) == 0


@pytest.mark.parametrize("coding,with_cl", [
    pytest.param("gzip", True, id="gzip_with_content_length"),
    pytest.param("identity", True, id="identity_with_content_length"),
    pytest.param("chunked, gzip", False, id="chunked_then_gzip"),
    pytest.param("gzip", False, id="gzip_alone"),
])
def test_transfer_encoding_not_ending_in_chunked_is_400(node, rds, coding, with_cl):
    """§6.3 rule 4: "If a Transfer-Encoding header field is present in a
    request and the chunked transfer coding is not the final encoding,
    the message body length cannot be determined reliably; the server
    MUST respond with the 400 (Bad Request) status code and then close
    the connection". ("identity" is no transfer coding at all since RFC
    7230: not chunked either.)"""
    fields = publish_fields(node, BODY if with_cl else None) + [("Transfer-Encoding", coding)]
    body = BODY if with_cl else chunked(BODY)
    a, w = exchange(node, request("POST", "/api/publish", fields, body=body))
    with w:
        assert a.status == 400, a
        assert w.closed_within()
    assert history_len(rds, CH) == 0


def test_chunked_body_is_read_or_refused_411_and_closed(node, rds):
    """§7.1: "A recipient MUST be able to parse and decode the chunked
    transfer coding"; §6.3: "A server MAY reject a request that contains a
    message body but not a Content-Length by responding with 411 (Length
    Required)". Read, the message is published (200) and the request
    behind it answered; refused 411, the chunks were not read, so the
    connection must close rather than parse them as a next request."""
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    w = Wire(node.port)
    with w:
        w.send(request("POST", "/api/publish", fields, body=chunked(BODY)) + healthz(node))
        a = w.answer()
        assert a.status in (200, 411), a
        if a.status == 200:
            assert w.answer().status == 200
            assert history_len(rds, CH) == 1
        else:
            assert w.closed_within(), "411, then the chunks were left to be parsed"
            assert history_len(rds, CH) == 0


@pytest.mark.parametrize("value", ["-1", "+31", "0x1f", "abc", "3 1", "31, 5", "31,31x"])
def test_invalid_content_length_is_400_and_closed(node, rds, value):
    """§6.3 rule 5: "If a message is received without Transfer-Encoding and
    with an invalid Content-Length header field, then the message framing
    is invalid [...]. If this is a request message, the server MUST
    respond with a 400 (Bad Request) status code and then close the
    connection". Content-Length = 1*DIGIT (RFC 9110 §8.6)."""
    fields = publish_fields(node) + [("Content-Length", value)]
    a, w = exchange(node, request("POST", "/api/publish", fields, body=BODY))
    with w:
        assert a.status == 400, a
        assert w.closed_within()
    assert history_len(rds, CH) == 0


def test_two_different_content_lengths_are_400_and_closed(node, rds):
    """§6.3 rule 5 / RFC 9110 §8.6: two Content-Length lines that differ
    are an invalid Content-Length."""
    fields = publish_fields(node, BODY) + [("Content-Length", "5")]
    a, w = exchange(node, request("POST", "/api/publish", fields, body=BODY))
    with w:
        assert a.status == 400, a
        assert w.closed_within()
    assert history_len(rds, CH) == 0


def test_same_content_length_twice_is_one_or_refused(node, rds):
    """RFC 9110 §8.6: a list of identical values "MAY either reject the
    message as invalid or replace that invalid field value with a single
    instance of the decimal value": 200 (published) or 400 (closed)."""
    fields = publish_fields(node, BODY) + [("Content-Length", str(len(BODY)))]
    a, w = exchange(node, request("POST", "/api/publish", fields, body=BODY))
    with w:
        assert a.status in (200, 400), a
        if a.status == 400:
            assert w.closed_within()
    assert history_len(rds, CH) == (1 if a.status == 200 else 0)


def test_post_without_length_has_an_empty_body(node, rds):
    """§6.3 rule 7: a request with neither Transfer-Encoding nor
    Content-Length has a zero-length body: the publish has no JSON (400)
    or is refused for want of a length (411, RFC 9110 §15.5.12). The bytes
    sent after the head are not a body."""
    a, w = exchange(node, request("POST", "/api/publish", publish_fields(node), body=BODY))
    with w:
        assert a.status in (400, 411), a
    assert history_len(rds, CH) == 0


def publish_body(data):
    return json.dumps({"channel": CH, "data": data}).encode()


def test_chunked_publish_then_another_on_a_kept_alive_connection(node, rds):
    """§7.1: the chunked body is decoded (the relay gives lws its data with
    a Content-Length); the next request starts exactly after the last
    chunk's CRLF: a second publish, Content-Length this time, on the same
    connection. Two 200s, two messages, each once."""
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    second = publish_body("second")
    w = Wire(node.port)
    with w:
        w.send(request("POST", "/api/publish", fields, body=chunked(publish_body("first"))))
        assert w.answer().status == 200
        w.send(request("POST", "/api/publish", publish_fields(node, second), body=second))
        assert w.answer().status == 200
        w.nothing_more(0.2)
    assert history_len(rds, CH) == 2


def test_chunked_body_split_across_many_sends(node, rds):
    """The chunks arrive a few bytes per write (sizes, extensions, data and
    the final CRLF cut anywhere): one message, then a GET behind it on the
    same connection is answered."""
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    data = chunked(BODY, size=7).replace(b"\r\n", b";ext=1\r\n", 1)
    w = Wire(node.port)
    with w:
        w.send(request("POST", "/api/publish", fields))
        for i in range(0, len(data), 3):
            w.send(data[i:i + 3])
            time.sleep(0.005)
        assert w.answer().status == 200
        w.send(healthz(node))
        assert w.answer().status == 200
    assert history_len(rds, CH) == 1


def test_chunked_pipelined_between_requests_on_a_kept_alive_connection(node, rds):
    """A GET, a chunked publish and a GET in one write on a connection
    already used: three answers in order, one message. The chunk data
    holds a whole request line that must stay data."""
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    inner = publish_body("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    w = Wire(node.port)
    with w:
        w.send(healthz(node))
        assert w.answer().status == 200
        w.send(healthz(node) + request("POST", "/api/publish", fields, body=chunked(inner)) +
               healthz(node))
        assert [w.answer().status for _ in range(3)] == [200, 200, 200]
        w.nothing_more(0.2)
    assert history_len(rds, CH) == 1


@pytest.mark.parametrize("body", [
    pytest.param(b"zz\r\n" + BODY + b"\r\n0\r\n\r\n", id="size_not_hex"),
    pytest.param(b"%x\r\n" % (len(BODY) - 1) + BODY + b"\r\n0\r\n\r\n", id="data_longer_than_size"),
    pytest.param(b"%x\n" % len(BODY) + BODY + b"\n0\n\n", id="bare_lf"),
    pytest.param(b" %x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n", id="space_before_size"),
    pytest.param(b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n folded: x\r\n\r\n",
                 id="trailer_obs_fold"),
])
def test_malformed_chunked_body_is_400_and_closed(node, rds, body):
    """§7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; where
    the framing is broken the body's end is unknown, so the request is
    refused and the connection closed (§6.3 rule 4 by analogy: a framing
    the server cannot read is a 400 and a close). Nothing published; on a
    connection already used, after the first answer."""
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    w = Wire(node.port)
    with w:
        w.send(healthz(node))
        assert w.answer().status == 200
        w.send(request("POST", "/api/publish", fields, body=body) + healthz(node))
        a = w.answer()
        assert a.status == 400, a
        assert w.closed_within(), "connection kept after a malformed chunked body"
    assert history_len(rds, CH) == 0


def test_chunked_body_over_the_limit_is_413_and_closed(node, rds):
    """A chunked body past --max-message-bytes (65536): 413 (RFC 9110
    §15.5.14) once the limit is passed, without waiting for the rest;
    nothing published."""
    big = publish_body("x" * 70000)
    fields = publish_fields(node) + [("Transfer-Encoding", "chunked")]
    w = Wire(node.port)
    with w:
        w.send(healthz(node))
        assert w.answer().status == 200
        w.send(request("POST", "/api/publish", fields, body=chunked(big, 4096)))
        a = w.answer()
        assert a.status == 413, a
        assert w.closed_within()
    assert history_len(rds, CH) == 0
