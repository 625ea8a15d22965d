"""HTTP/1.1 request line, methods, versions and connection reuse
(RFC 9112 §2-§3, §9; RFC 9110 §6.2, §9).

request-line = method SP request-target SP HTTP-version (RFC 9112 §3),
HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive (§2.3); the
method token is case-sensitive (RFC 9110 §9.1). "Recipients of an invalid
request-line SHOULD respond with either a 400 (Bad Request) error or a 301
(Moved Permanently) redirect" (RFC 9112 §3), and a message that does not
match the grammar "SHOULD" get 400 and a close (§2.2). HTTP/1.1
connections persist unless "close" is said (§9.3), answers to pipelined
requests come in order (§9.3.2)."""

import email.utils
import os
import socket
import time

import pytest

from conformkit import Wire, deviation, exchange, host, request


def test_get_is_answered_and_the_connection_persists(node):
    """RFC 9112 §9.3: HTTP/1.1 defaults to persistent connections: a
    second request on the same connection is answered."""
    a, w = exchange(node, request("GET", "/healthz", [host(node)]))
    with w:
        assert (a.version, a.status, a.body) == ("HTTP/1.1", 200, b"ok\n"), a
        w.send(request("GET", "/healthz", [host(node)]))
        assert w.answer().status == 200


def test_pipelined_requests_are_answered_in_order(node):
    """RFC 9112 §9.3.2: a server "MUST send the corresponding responses in
    the same order that the requests were received"."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]) +
               request("GET", "/readyz", [host(node)]) +
               request("GET", "/nope", [host(node)]))
        got = [(a.status, a.body[:6]) for a in (w.answer(), w.answer(), w.answer())]
        assert got == [(200, b"ok\n"), (200, b"ready\n"), (404, b'{"erro')], got


def test_connection_close_is_honoured(node):
    """RFC 9112 §9.6: "A server that receives a "close" connection option
    MUST initiate closure of the connection after it sends the final
    response to the request that contained the "close" connection option"."""
    a, w = exchange(node, request("GET", "/healthz", [host(node), ("Connection", "close")]))
    with w:
        assert a.status == 200, a
        assert w.closed_within(), "connection left open after Connection: close"


def test_http10_request_without_keep_alive_is_closed_after_the_answer(node):
    """RFC 9112 §9.3: an HTTP/1.0 connection persists only with
    "keep-alive"; without it, it closes after the response."""
    a, w = exchange(node, request("GET", "/healthz", [], version="HTTP/1.0"))
    with w:
        assert a.status == 200, a
        assert w.closed_within()


def test_http10_request_is_answered_as_http11(node):
    """RFC 9110 §6.2: "A server SHOULD send a response version equal to the
    highest version to which the server is conformant that has a major
    version less than or equal to the one received in the request": a
    HTTP/1.1 server answers HTTP/1.1. (SHOULD.)"""
    a, w = exchange(node, request("GET", "/healthz", [], version="HTTP/1.0"))
    with w:
        assert (a.version, a.status) == ("HTTP/1.1", 200), a


def test_higher_minor_version_is_processed_as_http11(node):
    """RFC 9110 §6.2: "A recipient that receives a message with a major
    version number that it implements and a minor version number higher
    than what it implements SHOULD process the message as if it were in
    the highest minor version within that major version": HTTP/1.2 is
    taken as HTTP/1.1, answered HTTP/1.1, and persists. (SHOULD.)"""
    a, w = exchange(node, request("GET", "/healthz", [host(node)], version="HTTP/1.2"))
    with w:
        assert (a.version, a.status) == ("HTTP/1.1", 200), a
        w.send(request("GET", "/healthz", [host(node)]))
        assert w.answer().status == 200


def test_empty_lines_before_the_request_line_are_ignored(node):
    """RFC 9112 §2.2: "a server that is expecting to receive and parse a
    request-line SHOULD ignore at least one empty line (CRLF) received
    prior to the request-line". (SHOULD.)"""
    a, w = exchange(node, b"\r\n" + request("GET", "/healthz", [host(node)]))
    with w:
        assert a.status == 200, a


def test_bare_lf_line_ends_are_served_or_refused_400(node):
    """RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line
    terminator"; one that does not, sees an invalid message (400)."""
    raw = f"GET /healthz HTTP/1.1\nHost: 127.0.0.1:{node.port}\n\n".encode()
    a, w = exchange(node, raw)
    with w:
        assert a.status in (200, 400), a


INVALID_LINES = {
    "no_version": ("GET /healthz", "a request line without a version is served (HTTP/1.0 200)"),
    "not_http_name": ("GET /healthz FOO/1.1", "version FOO/1.1 is served (HTTP/1.0 200)"),
    "lower_case_http": ("GET /healthz http/1.1", "version http/1.1 is served (200)"),
    "space_in_target": ("GET /heal thz HTTP/1.1", "a space inside the target: answered 404"),
}


@pytest.mark.parametrize("case", [pytest.param(k)
                                  for k, v in INVALID_LINES.items()])
def test_invalid_request_line_is_400(node, case):
    """RFC 9112 §3: an invalid request-line SHOULD get 400 (or a 301 to a
    properly encoded target); "A recipient SHOULD NOT attempt to
    autocorrect and then process the request without a redirect" (§3.2).
    HTTP-name is case-sensitive "HTTP" (§2.3). (SHOULD.)"""
    line = INVALID_LINES[case][0]
    a, w = exchange(node, f"{line}\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode())
    with w:
        assert a.status in (400, 301), a


NOT_IMPLEMENTED = {
    "lower_case_get": ("get /healthz", "method get (lower case) is served as GET (200)"),
    "unknown_BREW": ("BREW /healthz", "an unknown method: 403 Forbidden, HTML body, HTTP/1.0"),
    "TRACE": ("TRACE /healthz", "TRACE: 403 Forbidden, HTML body, HTTP/1.0"),
    "CONNECT": ("CONNECT 127.0.0.1:80", "CONNECT: held with no answer"),
}


@pytest.mark.parametrize("case", [pytest.param(k)
                                  for k, v in NOT_IMPLEMENTED.items()])
def test_method_the_node_does_not_implement_is_501_or_405(node, case):
    """RFC 9110 §9.1: "The method token is case-sensitive"; "An origin
    server that receives a request method that is unrecognized or not
    implemented SHOULD respond with the 501 (Not Implemented) status
    code"; a known method the resource does not allow gets 405 with an
    Allow field (§15.5.6). "get" is not GET. 403 (Forbidden) says the
    client lacks a right, which is not the case."""
    line = NOT_IMPLEMENTED[case][0]
    a, w = exchange(node, f"{line} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode())
    with w:
        assert a.status in (501, 405, 400), a
        if a.status == 405:
            assert a.header("allow"), a


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/healthz", "GET"), ("DELETE", "/healthz", "GET"),
    ("GET", "/api/publish", "POST"), ("PUT", "/api/publish", "POST"),
])
def test_405_names_the_allowed_methods(node, method, path, allow):
    """RFC 9110 §15.5.6: "The origin server MUST generate an Allow header
    field in a 405 response containing a list of the target resource's
    currently supported methods"."""
    a, w = exchange(node, request(method, path, [host(node), ("Content-Length", "0")]))
    with w:
        assert a.status == 405, a
        assert allow in [m.strip() for m in (a.header("allow") or "").split(",")], a


def test_absolute_form_target_is_accepted(node):
    """RFC 9112 §3.2.2: "a server MUST accept the absolute-form in
    requests even though most HTTP/1.1 clients will only send the
    absolute-form to a proxy"."""
    target = f"http://127.0.0.1:{node.port}/healthz"
    a, w = exchange(node, request("GET", target, [host(node)]))
    with w:
        assert (a.status, a.body) == (200, b"ok\n"), a


def test_head_is_answered_like_get_without_a_body(node):
    """RFC 9110 §9.1: "All general-purpose servers MUST support the methods
    GET and HEAD"; §9.3.2: HEAD is GET without content, "The server SHOULD
    send the same header fields in response to a HEAD request as it would
    have sent if the request method had been GET". The answer has no body
    (RFC 9112 §6.3): the next bytes on the connection are the next answer."""
    w = Wire(node.port)
    with w:
        w.send(request("HEAD", "/healthz", [host(node)]) +
               request("GET", "/healthz", [host(node)]))
        head = w.answer(head_request=True)
        assert head.status == 200, head
        assert head.header("content-type") == "text/plain", head
        nxt = w.answer()
        assert (nxt.status, nxt.body) == (200, b"ok\n"), f"after HEAD: {nxt}"


def test_answer_to_head_never_has_a_body(node):
    """RFC 9112 §6.3 rule 1 / RFC 9110 §9.3.2: "Any response to a HEAD
    request [...] cannot contain content": HEAD of a path that does not
    exist is 404 with no body; a body would be read as the start of the
    next answer (here, the answer to the GET behind it)."""
    w = Wire(node.port)
    with w:
        w.send(request("HEAD", "/nope", [host(node)]) + request("GET", "/healthz", [host(node)]))
        head = w.answer(head_request=True)
        assert head.status == 404, head
        nxt = w.answer()
        assert (nxt.status, nxt.body) == (200, b"ok\n"), f"after HEAD: {nxt}"


def test_answers_carry_a_date(node):
    """RFC 9110 §6.6.1: "An origin server with a clock [...] MUST generate
    a Date header field" in 2xx, 3xx and 4xx responses, as an IMF-fixdate
    (§5.6.7)."""
    for path, status in (("/healthz", 200), ("/nope", 404)):
        a, w = exchange(node, request("GET", path, [host(node)]))
        with w:
            assert a.status == status, a
            date = a.header("date")
            assert date, f"no Date in {a}"
            assert date.endswith(" GMT"), date
            when = email.utils.parsedate_to_datetime(date).timestamp()
            assert abs(when - time.time()) < 60, date


def test_expect_100_continue_is_answered_before_the_body(node):
    """RFC 9110 §10.1.1: "An origin server MUST, upon receiving an
    HTTP/1.1 (or later) request-line and a complete header section that
    contains a 100-continue expectation and indicates a request message
    body will follow, either send an immediate response with a final
    status code [...] or send an immediate 100 (Continue) response". The
    client holds its body until then; the publish completes after it."""
    body = b'{"channel":"expect","data":1}'
    fields = [host(node), ("Authorization", "Bearer testkey"),
              ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
              ("Expect", "100-continue")]
    w = Wire(node.port)
    with w:
        w.send(request("POST", "/api/publish", fields))
        first = w.answer(timeout=2.0)
        if first.status == 100:
            w.send(body)
            first = w.answer()
        assert first.status == 200, first


# --------------------------------------------------------------------------
# Kept-alive connections: every request after the first goes through the
# node's relay (README "How a node works"), which must keep the stream in
# step: each answer whole, in order, nothing of one request read as another.


def test_three_pipelined_healthz_in_one_send_are_answered_in_order(node):
    """§9.3.2: pipelined requests are answered in order; three identical
    ones in one write, then a fourth on the same connection shows the
    stream stayed in step and persistent (§9.3)."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]) * 3)
        for _ in range(3):
            a = w.answer()
            assert (a.status, a.body) == (200, b"ok\n"), a
        w.nothing_more(0.2)
        w.send(request("GET", "/readyz", [host(node)]))
        a = w.answer()
        assert (a.status, a.body) == (200, b"ready\n"), a


def test_pipelined_head_between_gets_keeps_the_stream_in_step(node):
    """RFC 9112 §6.3 rule 1: the answer to a HEAD has no body, whatever its
    Content-Length says: the GET behind it must get its own answer, not
    the bytes of a body that was never sent."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]) +
               request("HEAD", "/pushgate.js", [host(node)]) +
               request("GET", "/readyz", [host(node)]))
        a = w.answer()
        assert (a.status, a.body) == (200, b"ok\n"), a
        a = w.answer(head_request=True)
        assert a.status == 200 and int(a.header("content-length")) > 1000, a
        a = w.answer()
        assert (a.status, a.body) == (200, b"ready\n"), a
        w.nothing_more(0.2)


def test_connection_close_on_a_later_request_is_honoured(node):
    """§9.6 on the second request of a connection: its answer, then the
    close; a request pipelined behind it is not answered."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]))
        assert w.answer().status == 200
        w.send(request("GET", "/readyz", [host(node), ("Connection", "close")]) +
               request("GET", "/healthz", [host(node)]))
        a = w.answer()
        assert (a.status, a.body) == (200, b"ready\n"), a
        assert w.closed_within(), "connection left open after Connection: close"


def test_client_reading_nothing_of_a_large_answer_blocks_no_other_client(node):
    """A client that asks for much (200 pipelined GETs of the 50 KiB
    /pushgate.js: 10 MB, more than loopback's socket buffers hold, about
    4 MB) and reads nothing must not hold up the node: another client is
    answered at once. When it does read, every answer is there, whole and
    in order."""
    n = 200
    slow = Wire(node.port, timeout=10)
    with slow:
        slow.send(request("GET", "/pushgate.js", [host(node)]) * n +
                  request("GET", "/healthz", [host(node)]))
        t0 = time.monotonic()
        a, other = exchange(node, request("GET", "/healthz", [host(node)]))
        with other:
            assert (a.status, a.body) == (200, b"ok\n"), a
        assert time.monotonic() - t0 < 1.0, "another client waited"
        sizes = {len(slow.answer(timeout=10).body) for _ in range(n)}
        assert len(sizes) == 1 and sizes.pop() > 40000, sizes
        a = slow.answer()
        assert (a.status, a.body) == (200, b"ok\n"), a


def test_sse_stream_as_the_second_request_of_a_kept_alive_connection(node):
    """EventSource on a connection that served the page first (browsers
    reuse it): the GET is answered, then the stream starts (200,
    text/event-stream) and a message published to the node arrives on
    it as an event."""
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]) +
               request("GET", "/sse", [host(node), ("Accept", "text/event-stream")]))
        a = w.answer()
        assert (a.status, a.body) == (200, b"ok\n"), a
        deadline = time.monotonic() + 3
        while b"\r\n\r\n" not in w.buf:
            assert w._more(deadline), f"no stream head: {w.buf!r}"
        head, _, w.buf = w.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head.lower(), head
        tag = os.urandom(6).hex().encode()
        r = node.publish({"channel": "broadcast", "event": "kept", "data": tag.decode()})
        assert r.status == 200, r
        while tag not in w.buf:
            assert w._more(deadline), f"no event: {w.buf!r}"


def test_expect_100_continue_on_a_later_request(node, rds):
    """RFC 9110 §10.1.1 on the second request of a connection: the 100
    (or the final answer) comes at once, after the first request's answer,
    never inside it; then the body is read and published."""
    body = b'{"channel":"expect","data":2}'
    fields = [host(node), ("Authorization", "Bearer testkey"),
              ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
              ("Expect", "100-continue")]
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]) + request("POST", "/api/publish", fields))
        a = w.answer()
        assert (a.status, a.body) == (200, b"ok\n"), a
        first = w.answer(timeout=2.0)
        assert first.status == 100, first
        w.send(body)
        a = w.answer()
        assert a.status == 200, a
    assert rds.xlen("pushgate:history:expect") == 1


def test_half_closed_client_still_gets_every_answer(node, rds):
    """A client may shut its sending side after its last request (RFC 9112
    §9.6 describes closing in steps): a GET and a publish pipelined, then
    FIN; both answers come, in order, then the node closes; the message is
    published once."""
    body = b'{"channel":"halfclose","data":1}'
    fields = [host(node), ("Authorization", "Bearer testkey"),
              ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    w = Wire(node.port)
    with w:
        w.send(request("GET", "/healthz", [host(node)]))
        assert w.answer().status == 200
        w.send(request("GET", "/healthz", [host(node)]) +
               request("POST", "/api/publish", fields, body=body))
        w.s.shutdown(socket.SHUT_WR)
        assert [w.answer().status for _ in range(2)] == [200, 200]
        assert w.closed_within(), "connection left open after the client's FIN"
    assert rds.xlen("pushgate:history:halfclose") == 1
