"""TLS in the node itself (--tls-cert/--tls-key): https and wss on the one
port. The certificate is self-signed, made with the openssl CLI at test
time in the test's temp dir; clients pin it as their only trust anchor, so
the handshake really verifies (hostname included)."""

import asyncio
import json
import random
import socket
import ssl
import subprocess
import time

import pytest

import hostilekit as hk
from pgtest import API_KEY, async_wait_until, proc_cpu_seconds, run, wait_until


def make_cert(d):
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def client_ctx(cert):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = True
    return ctx


def https(port, cert, method, path, headers=None, body=None, timeout=5.0):
    """(status, body) of one request over verified TLS."""
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                       context=client_ctx(cert))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def tls_node(gateway_factory, tmp_path):
    (tmp_path / "tls").mkdir()
    cert, key = make_cert(tmp_path / "tls")
    # pgtest's readiness probe speaks plain HTTP, so wait for the port to
    # listen and then for https /readyz ourselves.
    gw = gateway_factory(["--tls-cert", cert, "--tls-key", key, "--api-key", API_KEY,
                          "--public-topics", "news"],
                         ready=False)

    def ready():
        try:
            return https(gw.port, cert, "GET", "/readyz", timeout=1)[0] == 200
        except OSError:
            return False
    wait_until(ready, timeout=10, msg="https /readyz 200")
    return gw, cert


def test_https_healthz_and_publish(tls_node):
    gw, cert = tls_node
    st, body = https(gw.port, cert, "GET", "/healthz")
    assert st == 200, body
    st, body = https(gw.port, cert, "POST", "/api/publish",
                     {"Authorization": f"Bearer {API_KEY}",
                      "Content-Type": "application/json"},
                     json.dumps({"channel": "news", "data": 1}))
    assert st == 200 and json.loads(body)["id"].isdigit(), body


def test_wss_client_receives_a_published_message(tls_node, rds):
    import websockets
    gw, cert = tls_node

    async def go():
        ws = await asyncio.wait_for(websockets.connect(
            f"wss://localhost:{gw.port}/ws?channels=news", ssl=client_ctx(cert),
            ping_interval=None, close_timeout=2), 10)
        try:
            await async_wait_until(
                lambda: dict(rds.pubsub_numsub("pushgate:news")).get("pushgate:news", 0) >= 1,
                5, msg="news subscribed")
            st, body = https(gw.port, cert, "POST", "/api/publish",
                             {"Authorization": f"Bearer {API_KEY}",
                              "Content-Type": "application/json"},
                             json.dumps({"channel": "news", "event": "e", "data": {"x": 1}}))
            assert st == 200, body
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert msg["channel"] == "news" and msg["data"] == {"x": 1} and msg["event"] == "e"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        finally:
            await ws.close()
    run(go(), 30)


def test_plain_http_to_the_tls_port_does_not_crash_the_node(tls_node):
    gw, cert = tls_node
    for data in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n",
                 b"\x16\x03\x01\x00\x05hello",  # a broken TLS record
                 bytes(range(256)) * 4):
        with hk.connect(gw.port) as s:
            try:
                s.sendall(data)
            except OSError:
                pass
            raw, closed = hk.recv_until_closed(s, timeout=12)
            assert not raw.startswith(b"HTTP/1.1 200"), raw[:200]
            assert closed, f"connection left open after {data[:20]!r}"
    assert gw.alive()
    assert https(gw.port, cert, "GET", "/healthz")[0] == 200


def test_tls_client_with_the_wrong_trust_anchor_is_refused(tls_node, tmp_path):
    gw, cert = tls_node
    (tmp_path / "other").mkdir()
    other, _ = make_cert(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        https(gw.port, other, "GET", "/healthz")
    assert https(gw.port, cert, "GET", "/healthz")[0] == 200


def test_sse_over_https_receives_a_published_message(tls_node, rds):
    gw, cert = tls_node
    raw = __import__("socket").create_connection(("127.0.0.1", gw.port), timeout=5)
    with client_ctx(cert).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /sse?channels=news HTTP/1.1\r\nHost: localhost\r\n"
                  b"Accept: text/event-stream\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            assert d, f"closed before the head: {buf!r}"
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"text/event-stream" in head.lower(), head
        wait_until(lambda: dict(rds.pubsub_numsub("pushgate:news")).get("pushgate:news", 0) >= 1,
                   5, msg="news subscribed")
        st, body = https(gw.port, cert, "POST", "/api/publish",
                         {"Authorization": f"Bearer {API_KEY}",
                          "Content-Type": "application/json"},
                         json.dumps({"channel": "news", "data": "over-tls"}))
        assert st == 200, body
        while b'"over-tls"' not in buf:
            d = s.recv(4096)
            assert d, f"stream ended: {buf!r}"
            buf += d
        assert b'data: {"channel":"news"' in buf, buf


# --------------------------------------------------------------------------
# Keep-alive and pipelining over TLS, where lws reads requests itself


def answers(w, want):
    """Up to `want` answers on hostilekit.Wire w, in order, and whether the
    node then closed the connection (looked at for half a second when all
    came, in which nothing else may arrive)."""
    got = []
    while len(got) < want:
        try:
            got.append(w.answer())
        except hk.NoAnswer:
            break
    return got, w.eof or (len(got) == want and w.closed_within(0.5))


def post(n, extra=b""):
    body = json.dumps({"channel": "news", "data": n}).encode()
    return (b"POST /api/publish HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body + extra)


GET = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


def assert_node_idle_and_answering(gw, cert, what):
    """The node answers a new client, and is not spinning (lws 4.1 could be
    left calling back for bytes it never consumed, at full CPU for good)."""
    st, _ = https(gw.port, cert, "GET", "/healthz", timeout=3)
    assert st == 200, what
    before = proc_cpu_seconds(gw.pid)
    t0 = time.monotonic()
    # an idle second: at most a little CPU (pings, the clock)
    wait_until(lambda: time.monotonic() - t0 >= 1.0, timeout=3, msg="one second")
    used = proc_cpu_seconds(gw.pid) - before
    assert used < 0.3, f"{what}: the idle node used {used:.2f} s of CPU in 1 s"


class Subscriber:
    """What the node published on news, seen from Redis itself (the ids of
    the envelopes), so that a publish nobody was answered for would show."""

    def __init__(self, gw, cert, rds):
        self.ps = rds.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe("pushgate:news")
        self.ids = []

    def collect(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while len(self.ids) < n and time.monotonic() < deadline:
            m = self.ps.get_message(timeout=0.2)
            if m is not None:
                self.ids.append(json.loads(m["data"])["id"])
        return self.ids

    def close(self):
        self.ps.close()


PIPELINES = {
    "post-post": [post(1), post(2)],
    "get-post": [GET, post(1)],
    "post-get": [post(1), GET],
    "post-then-garbage": [post(1, extra=b"xxxxx")],
    "get-with-a-body-then-get": [b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Content-Length: 5\r\n\r\nhello", GET],
    "post-post-post": [post(1), post(2), post(3)],
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_pipelined_requests_over_tls_are_answered_in_order_and_never_wedge_the_node(
        tls_node, rds, name):
    """Requests sent back to back in one write over TLS. The first is
    answered; the node then closes the connection rather than let lws 4.1
    parse what it read ahead (which left it calling back at full CPU, for
    good, and no longer answering anyone). Nothing it did not answer was
    published; what it answered 200 was."""
    gw, cert = tls_node
    sub = Subscriber(gw, cert, rds)
    try:
        with hk.Wire(gw.port, tls=True) as w:
            w.send(b"".join(PIPELINES[name]))
            got, closed = answers(w, len(PIPELINES[name]))
        assert got, f"{name}: no answer"
        assert got[0].status == 200, got[0]
        assert len(got) == len(PIPELINES[name]) or closed, \
            f"{name}: {len(got)} answers and the connection left open"
        if len(got) < len(PIPELINES[name]):
            assert got[-1].header("connection") == "close", got[-1]
        ids = [a.json()["id"] for a in got if a.body.startswith(b'{"id"')]
        assert sub.collect(len(ids) + 1, timeout=1.5) == ids
        assert_node_idle_and_answering(gw, cert, name)
    finally:
        sub.close()


def test_pipelined_requests_over_tls_split_anywhere_never_wedge_the_node(tls_node, rds):
    """Three requests (two publishes and a GET) as one byte stream, cut at
    random places and written with small pauses, 25 times: each time the
    answers come in order, whatever was answered 200 is delivered and
    nothing else, and the node stays idle and answering."""
    gw, cert = tls_node
    sub = Subscriber(gw, cert, rds)
    rng = random.Random(7)
    answered = []
    try:
        for k in range(25):
            stream = post(2 * k) + post(2 * k + 1) + GET
            cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 4)))
            with hk.Wire(gw.port, tls=True) as w:
                prev = 0
                for c in cuts + [len(stream)]:
                    w.send(stream[prev:c])   # closed after an answer: the rest is not wanted
                    prev = c
                    time.sleep(rng.choice([0, 0, 0.001, 0.005]))
                got, closed = answers(w, 3)
            assert got and got[0].status == 200, f"round {k}: {got}"
            assert [a.status for a in got] == [200] * len(got), f"round {k}: {got}"
            assert len(got) == 3 or closed, f"round {k}: left open after {len(got)}"
            answered += [a.json()["id"] for a in got if a.body.startswith(b'{"id"')]
        assert sub.collect(len(answered) + 1, timeout=2) == answered
        assert_node_idle_and_answering(gw, cert, "random splits")
    finally:
        sub.close()


def test_tls_publisher_keeps_its_connection_and_a_get_closes_it(tls_node, rds):
    """Keep-alive over TLS stays for what a publisher does (POST after POST
    on one connection, each answered before the next is sent); an answer
    that did not wait for a body says Connection: close and ends the
    connection (lws could not be trusted with a request read ahead of it)."""
    gw, cert = tls_node
    with hk.Wire(gw.port, tls=True) as w:
        for n in range(5):
            w.send(post(n))
            got, closed = answers(w, 1)
            assert [a.status for a in got] == [200] and not closed, (n, got, closed)
            assert got[0].header("connection") != "close", got[0]
        w.send(GET)
        got, closed = answers(w, 1)
        assert got[0].status == 200 and got[0].header("connection") == "close", got
        assert closed


def test_hostile_traffic_over_tls_never_wedges_the_node(tls_node):
    """80 seeded connections of mixed requests (pipelined, cut anywhere,
    bad lengths, chunked, Expect, garbage) and WebSocket upgrades followed
    by mixed frames (fragments, control frames, reserved opcodes, unmasked,
    garbage), all over TLS where lws parses them: every ten, the node must
    be idle and answering a new client. (The pipelining defect of lws 4.1
    wedged the old node within the first ten.)"""
    gw, cert = tls_node
    rng = random.Random(2)
    upgrade = (b"GET /ws?channels=news HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")

    def junk(lo, hi):
        return bytes(rng.randrange(256) for _ in range(rng.randint(lo, hi)))

    requests = [
        lambda: GET, lambda: b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        lambda: (b"OPTIONS /api/publish HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a\r\n"
                 b"Access-Control-Request-Method: POST\r\n\r\n"),
        lambda: post(rng.randrange(1000)),
        lambda: post(rng.randrange(1000))[:-rng.randint(1, 10)],      # body cut short
        lambda: post(rng.randrange(1000), extra=junk(1, 20)),         # bytes past it
        lambda: (b"POST /api/publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                 + API_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        lambda: (b"POST /api/publish HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                 b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"),
        lambda: b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nabcd",
        lambda: b"GET /sse?channels=news HTTP/1.1\r\nHost: localhost\r\n\r\n",
        lambda: b"PUT /api/publish HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
        lambda: junk(1, 40),
    ]
    frames = [
        lambda: hk.client_frame(1, b'{"type":"ping"}'),
        lambda: hk.client_frame(9, b"p"), lambda: hk.client_frame(10, b""),
        lambda: hk.client_frame(1, b"x" * rng.randint(0, 300), fin=False) + hk.client_frame(0, b"}"),
        lambda: hk.client_frame(rng.choice([3, 4, 11, 12]), b"z"),
        lambda: hk.client_frame(8, b"\x03\xe8"),
        lambda: hk.client_frame(1, junk(1, 50)),
        lambda: hk.client_frame(2, b"\0" * rng.randint(0, 2000)),
        lambda: b"\x81\x01a",                                           # unmasked
        lambda: junk(1, 30),
    ]
    for k in range(80):
        if rng.random() < 0.6:
            data = b"".join(rng.choice(requests)() for _ in range(rng.randint(1, 4)))
        else:
            data = upgrade + b"".join(rng.choice(frames)() for _ in range(rng.randint(1, 6)))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 3))))
        with hk.connect(gw.port, tls=True) as s:
            prev = 0
            try:
                for c in cuts + [len(data)]:
                    s.sendall(data[prev:c])
                    prev = c
            except (ssl.SSLError, OSError):
                pass   # the node closed on what it got: fine
            s.settimeout(0.3)
            try:
                while s.recv(65536):
                    pass
            except (socket.timeout, ssl.SSLError, OSError):
                pass
        if k % 10 == 9:
            assert_node_idle_and_answering(gw, cert, f"after case {k}: {data[:120]!r}")
