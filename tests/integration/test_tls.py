"""TLS in the node itself (--tls-cert/--tls-key): https and wss on the one
port. The certificate is self-signed, made with the openssl CLI at test
time in the test's temp dir; clients pin it as their only trust anchor, so
the handshake really verifies (hostname included)."""

import asyncio
import json
import ssl
import subprocess

import pytest

import hostilekit as hk
from pgtest import API_KEY, async_wait_until, run, wait_until


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
