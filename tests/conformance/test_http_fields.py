"""HTTP/1.1 header fields (RFC 9112 §2.2, §3.2, §5; RFC 9110 §5).

field-line = field-name ":" OWS field-value OWS, field-name a token
(RFC 9112 §5). Names are case-insensitive (RFC 9110 §5.1); the value
excludes leading and trailing whitespace (§5.5); "No whitespace is allowed
between the field name and colon" (RFC 9112 §5.1, MUST 400); obs-fold is
rejected or unfolded (§5.2); CR, LF and NUL in a value are rejected or
replaced by SP (RFC 9110 §5.5); an HTTP/1.1 request has exactly one valid
Host (RFC 9112 §3.2, MUST 400). Where the value decides something, the
Authorization of a publish is used: its answer shows what the node made of
the field (200 = the key was read as "Bearer testkey")."""

import pytest

from conformkit import (API_KEY, Wire, exchange, history_len, host, request)

BODY = b'{"channel":"fields","data":"x"}'


def publish_raw(node, head_lines):
    """POST /api/publish: the request line, then head_lines (bytes, each
    without its CRLF) as they are, Content-Length and the body."""
    data = b"POST /api/publish HTTP/1.1\r\n"
    for line in head_lines:
        data += line + b"\r\n"
    data += b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    return exchange(node, data)


def std(node, authorization=b"Authorization: Bearer " + API_KEY.encode()):
    """Host, Authorization (the given raw line), Content-Type."""
    return [b"Host: 127.0.0.1:%d" % node.port, authorization,
            b"Content-Type: application/json"]


def test_field_names_are_case_insensitive(node, rds):
    """RFC 9110 §5.1: "Field names are case-insensitive"."""
    a, w = publish_raw(node, [b"hOST: 127.0.0.1:%d" % node.port,
                              b"authorization: Bearer " + API_KEY.encode(),
                              b"CONTENT-TYPE: application/json"])
    with w:
        assert a.status == 200, a
    assert history_len(rds, "fields") == 1


def test_whitespace_around_a_value_is_not_part_of_it(node, rds):
    """RFC 9110 §5.5: "A field value does not include leading or trailing
    whitespace"; "a parsing implementation MUST exclude such whitespace
    prior to evaluating the field value" (RFC 9112 §5.1)."""
    a, w = publish_raw(node, std(node, b"Authorization: \t Bearer " +
                                 API_KEY.encode() + b" \t"))
    with w:
        assert a.status == 200, a
    assert history_len(rds, "fields") == 1


@pytest.mark.parametrize("line", [
    pytest.param(b"Authorization : Bearer " + API_KEY.encode(), id="authorization"),
    pytest.param(b"X-Extra\t: 1", id="other_field"),
])
def test_whitespace_before_the_colon_is_400(node, rds, line):
    """RFC 9112 §5.1: "A server MUST reject, with a response status code of
    400 (Bad Request), any received request message that contains
    whitespace between a header field name and colon"."""
    lines = std(node)
    if line.startswith(b"Authorization"):
        lines[1] = line
    else:
        lines.append(line)
    a, w = publish_raw(node, lines)
    with w:
        assert a.status == 400, a
    assert history_len(rds, "fields") == 0


def test_obs_fold_is_refused_or_unfolded(node, rds):
    """RFC 9112 §5.2: a server receiving obs-fold "MUST either reject the
    message by sending a 400 (Bad Request) [...] or replace each received
    obs-fold with one or more SP octets prior to interpreting the field
    value". "Bearer" CRLF SP "testkey" is 400, or "Bearer testkey": 200."""
    a, w = publish_raw(node, std(node, b"Authorization: Bearer\r\n " + API_KEY.encode()))
    with w:
        assert a.status in (400, 200), a
    assert history_len(rds, "fields") == (1 if a.status == 200 else 0)


def test_obs_fold_on_any_field_is_refused_or_unfolded(node):
    """RFC 9112 §5.2, on a field the node does not use: 400, or unfolded
    and served (200). An answer either way."""
    a, w = exchange(node, request("GET", "/healthz", [host(node), ("X-Foo", "bar\r\n baz")]))
    with w:
        assert a.status in (400, 200), a


def test_obs_fold_cannot_smuggle_a_content_length(node, rds):
    """RFC 9112 §5.2 and §6.3: a Content-Length hidden in a fold is not a
    Content-Length: refused (400), or unfolded into X-Pad's value, leaving
    a POST without a body (refused 400 / 411). Nothing is published."""
    lines = std(node) + [b"X-Pad: 1", b" Content-Length: %d" % len(BODY)]
    data = b"POST /api/publish HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + BODY
    a, w = exchange(node, data)
    with w:
        assert 400 <= a.status < 500, a
    assert history_len(rds, "fields") == 0


@pytest.mark.parametrize("ctl", [
    pytest.param(b"\x00", id="NUL"),
    pytest.param(b"\r", id="bare_CR"),
])
def test_nul_or_cr_in_a_value_is_refused_or_made_a_space(node, rds, ctl):
    """RFC 9110 §5.5: "a recipient of CR, LF, or NUL within a field value
    MUST either reject the message or replace each of those characters
    with SP before further processing"; RFC 9112 §2.2 says the same of a
    bare CR. "Bearer testkey junk" is a wrong key (401), a rejection 400:
    never 200."""
    a, w = publish_raw(node, std(node, b"Authorization: Bearer " + API_KEY.encode() +
                                 ctl + b"junk"))
    with w:
        assert a.status in (400, 401), a
    assert history_len(rds, "fields") == 0


@pytest.mark.parametrize("ctl", [
    pytest.param(b"\x00", id="NUL"),
    pytest.param(b"\r", id="bare_CR"),
])
def test_nul_or_cr_in_a_value_on_a_kept_alive_connection_is_refused(node, rds, ctl):
    """The case above on the second request of a connection: the RFC
    makes no exception for it, and behind a proxy that pools upstream
    connections it is where another client's request lands."""
    lines = std(node, b"Authorization: Bearer " + API_KEY.encode() + ctl + b"junk")
    data = b"POST /api/publish HTTP/1.1\r\n" + b"".join(l + b"\r\n" for l in lines)
    data += b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    w = Wire(node.port)
    with w:
        w.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % node.port)
        assert w.answer().status == 200
        w.send(data)
        a = w.answer()
        assert a.status in (400, 401), a
    assert history_len(rds, "fields") == 0


def test_whitespace_before_the_first_field_is_refused_or_skipped(node, rds):
    """RFC 9112 §2.2: "A recipient that receives whitespace between the
    start-line and the first header field MUST either reject the message
    as invalid or consume each whitespace-preceded line without further
    processing of it": a leading " Authorization: ..." line is 400, or
    skipped (no key: 401). Never 200."""
    lines = std(node)
    lines.insert(0, b" " + lines.pop(1))
    a, w = publish_raw(node, lines)
    with w:
        assert a.status in (400, 401), a
    assert history_len(rds, "fields") == 0


@pytest.mark.parametrize("line", [
    pytest.param(b"NoColonHere", id="no_colon"),
    pytest.param(b": value", id="empty_name"),
    pytest.param(b"X(Foo): bar", id="name_not_a_token"),
])
def test_malformed_field_line_is_400(node, line):
    """RFC 9112 §5: field-name is a token followed by ":". A line that does
    not match the grammar is a message the server "SHOULD respond [to]
    with a 400 (Bad Request) response and close the connection" (§2.2).
    (SHOULD; the issue asks for an answer, not a held or dropped socket.)"""
    data = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n\r\n" % (node.port, line)
    a, w = exchange(node, data)
    with w:
        assert a.status == 400, a


@pytest.mark.parametrize("fields", [
    pytest.param([], id="missing"),
    pytest.param([("Host", "127.0.0.1"), ("Host", "evil.example")], id="twice"),
    pytest.param([("Host", "a b")], id="invalid"),
])
def test_host_missing_repeated_or_invalid_is_400(node, fields):
    """RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request)
    status code to any HTTP/1.1 request message that lacks a Host header
    field and to any request message that contains more than one Host
    header field line or a Host header field with an invalid field
    value"."""
    a, w = exchange(node, request("GET", "/healthz", fields))
    with w:
        assert a.status == 400, a


@pytest.mark.parametrize("bad", [
    pytest.param([b"X-Pad: a", b" Content-Length: 2"], id="obs_fold"),
    pytest.param([b"X-Pad: a\x00b"], id="NUL"),
    pytest.param([b"X-Pad: a\rb"], id="bare_CR"),
    pytest.param([b"Transfer-Encoding: chunked"], id="CL_and_TE"),
])
def test_bad_head_on_the_third_pipelined_request_is_refused_in_order(node, rds, bad):
    """Every request of a kept-alive connection gets the checks of the
    first (RFC 9112 §5.2 obs-fold, RFC 9110 §5.5 NUL and CR, RFC 9112
    §6.1 both framings): two GETs and a bad publish in one write get two
    200s, in order, then the 400, and the connection closes; nothing is
    published."""
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % node.port
    lines = std(node) + bad
    data = b"POST /api/publish HTTP/1.1\r\n" + b"".join(l + b"\r\n" for l in lines)
    data += b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    w = Wire(node.port)
    with w:
        w.send(get + get + data)
        assert [w.answer().status for _ in range(2)] == [200, 200]
        a = w.answer()
        assert a.status == 400, a
        assert w.closed_within(), "connection kept after a refused head"
    assert history_len(rds, "fields") == 0
