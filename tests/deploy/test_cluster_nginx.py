"""A native cluster: Debian's nginx, configured by the project's own
deploy/nginx.conf and deploy/nginx-upstream.conf (rendered for loopback
ports), in front of three real pushgate nodes sharing one real redis-server.
What a user sees through the balancer: one user's devices spread over nodes
and all get that user's messages; SSE arrives unbuffered; WebSocket upgrades
pass; Origin, Host and X-Forwarded-For reach the upstream."""

import asyncio
import json
import socket
import statistics
import threading
import time

import pytest

import deploykit
import pgtest

SECRET = "deploy-test-secret"
ALLOWED = "https://app.example.com"


@pytest.fixture
def cluster(redis_server, gateway_factory, nginx_factory):
    """(nginx, [node1, node2, node3]): HS256 tokens, API key, one allowed
    foreign origin, `news` public."""
    nodes = [gateway_factory(["--api-key", pgtest.API_KEY, "--jwt-secret", SECRET,
                              "--allow-anonymous", "--public-topics", "news",
                              "--allowed-origins", ALLOWED,
                              "--node-id", f"node{i}"], name=f"node{i}")
             for i in (1, 2, 3)]
    ng = nginx_factory(deploykit.render_upstream([n.port for n in nodes]))
    return ng, nodes


def ws_url(ng, query):
    return f"ws://127.0.0.1:{ng.port}/ws?{query}"


async def sse_via(ng, query, headers=None):
    return await pgtest.SSEClient.connect(ng.port, f"/sse?{query}", headers)


def test_one_users_devices_spread_over_nodes_and_all_receive(cluster, rds):
    ng, nodes = cluster
    token = pgtest.mint_hs256(SECRET, {"sub": "42"})

    async def main():
        ws, sse = [], []
        try:
            for i in range(6):      # phone, laptop, tablet... alternating transports
                if i % 2 == 0:
                    ws.append(await pgtest.WSClient.connect(ws_url(ng, f"token={token}")))
                else:
                    s = await sse_via(ng, f"token={token}")
                    assert s.status == 200, (s.status, s.headers)
                    sse.append(s)
            per_node = await pgtest.async_wait_until(
                lambda: (lambda c: sum(c) == 6 and c)(
                    [deploykit.node_connections(n) for n in nodes]),
                timeout=5, msg="6 connections counted by the nodes' /metrics")
            assert sum(1 for c in per_node if c > 0) >= 2, \
                f"least_conn put every device on one node: {per_node}"
            # Every node with a device of user 42 subscribes user:42 once.
            await pgtest.async_wait_until(
                lambda: rds.pubsub_numsub("pushgate:user:42")[0][1] ==
                sum(1 for c in per_node if c > 0),
                timeout=5, msg="user:42 subscribed once per node holding a device")

            payload = json.dumps({"event": "order.shipped", "data": {"order": 7}})
            fid = rds.fcall("pushgate_publish", 0, "user:42", payload)
            r = pgtest.api_publish(ng.port, {"channel": "user:42", "event": "order.paid",
                                             "data": {"order": 8}})
            assert r.status == 200, r
            aid = r.json()["id"]
            want = [{"channel": "user:42", "event": "order.shipped", "id": str(fid),
                     "data": {"order": 7}},
                    {"channel": "user:42", "event": "order.paid", "id": aid,
                     "data": {"order": 8}}]
            for c in ws:
                got = [await c.recv_json(5), await c.recv_json(5)]
                assert got == want
            for s in sse:
                evs = [await s.next_json(5), await s.next_json(5)]
                assert [d for _, d in evs] == want
                assert [(e["id"], e["event"]) for e, _ in evs] == \
                    [(str(fid), "order.shipped"), (aid, "order.paid")]
        finally:
            for c in ws + sse:
                await c.close()

    pgtest.run(main(), timeout=60)


def test_sse_through_nginx_is_unbuffered(cluster, rds):
    """FCALL to the SSE event at a client behind nginx: median of 20 under
    100 ms. A buffering proxy holds small events until its buffer fills or
    the stream ends, which this would see as seconds or a timeout."""
    ng, nodes = cluster

    async def main():
        s = await sse_via(ng, "channels=news")
        try:
            assert s.status == 200
            assert s.headers.get("content-type", "").startswith("text/event-stream")
            await pgtest.async_wait_until(
                lambda: rds.pubsub_numsub("pushgate:news")[0][1] == 1,
                timeout=5, msg="the node holding the stream subscribed to news")
            lat = []
            for i in range(20):
                t0 = time.monotonic()
                mid = rds.fcall("pushgate_publish", 0, "news",
                                json.dumps({"data": {"n": i}}))
                ev, data = await s.next_json(timeout=5)
                lat.append(time.monotonic() - t0)
                assert ev["id"] == str(mid) and data == {"channel": "news", "id": str(mid),
                                                         "data": {"n": i}}
            med = statistics.median(lat)
            assert med < 0.100, f"median FCALL->SSE {med * 1000:.1f} ms; all: " + \
                ", ".join(f"{x * 1000:.1f}" for x in lat)
        finally:
            await s.close()

    pgtest.run(main(), timeout=60)


def test_websocket_upgrade_and_origin_through_nginx(cluster, rds):
    ng, nodes = cluster

    async def status(origin, path="/ws"):
        import websockets
        try:
            c = await pgtest.WSClient.connect(f"ws://127.0.0.1:{ng.port}{path}",
                                              {"Origin": origin} if origin else {})
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        try:
            # The upgraded socket is a working pushgate WebSocket: a command
            # round trip through nginx.
            await c.send_json({"type": "ping"})
            assert await c.recv_json(5) == {"type": "pong"}
        finally:
            await c.close()
        return 101

    async def main():
        assert await status(ALLOWED) == 101
        assert await status(None) == 101
        assert await status("https://evil.example.net") == 403
        # SSE honours the same Origin rule behind nginx.
        s = await sse_via(ng, "channels=news", {"Origin": "https://evil.example.net"})
        try:
            assert s.status == 403
        finally:
            await s.close()
        s = await sse_via(ng, "channels=news", {"Origin": ALLOWED})
        try:
            assert s.status == 200
        finally:
            await s.close()

    pgtest.run(main(), timeout=60)


def test_same_origin_behind_nginx_keeps_host_port(redis_server, gateway_factory,
                                                  nginx_factory):
    """No --allowed-origins: a page served through nginx at
    http://127.0.0.1:<nginx port> may connect, which needs nginx to pass the
    client's Host with its port; another port of the same host may not."""
    nodes = [gateway_factory(["--node-id", f"node{i}"], name=f"node{i}") for i in (1, 2, 3)]
    ng = nginx_factory(deploykit.render_upstream([n.port for n in nodes]))

    async def main():
        import websockets
        c = await pgtest.WSClient.connect(ws_url(ng, ""),
                                          {"Origin": f"http://127.0.0.1:{ng.port}"})
        await c.close()
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await pgtest.WSClient.connect(ws_url(ng, ""),
                                          {"Origin": f"http://127.0.0.1:{ng.port + 1}"})
        assert e.value.status_code == 403

    pgtest.run(main(), timeout=60)


class HeaderEcho:
    """A stand-in upstream on a loopback port: answers every request with 101
    and then writes, through the upgraded tunnel, the request it received as
    JSON {"line": ..., "headers": {lower-case name: value}}."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = conn.recv(4096)
                        if not d:
                            break
                        buf += d
                    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                    hdrs = {}
                    for line in head[1:]:
                        k, _, v = line.partition(":")
                        hdrs[k.strip().lower()] = v.strip()
                    body = json.dumps({"line": head[0], "headers": hdrs}).encode()
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + body)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def test_nginx_forwards_upgrade_origin_host_and_client_address(nginx_factory):
    """What deploy/nginx.conf hands a node for a WebSocket handshake: the
    Upgrade/Connection pair, the browser's Origin unchanged, Host with its
    port, and X-Forwarded-For with the client address appended. (pushgate
    itself does not log the client address, so a stand-in upstream reads it.)"""
    echo = HeaderEcho()
    try:
        up = f"upstream pushgate {{ server 127.0.0.1:{echo.port}; }}\n"
        ng = nginx_factory(up)
        with socket.create_connection(("127.0.0.1", ng.port), timeout=5) as s:
            s.sendall((f"GET /ws?channels=news HTTP/1.1\r\nHost: 127.0.0.1:{ng.port}\r\n"
                       f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       f"Sec-WebSocket-Version: 13\r\nOrigin: {ALLOWED}\r\n"
                       f"X-Forwarded-For: 203.0.113.7\r\n\r\n").encode())
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                if buf.rstrip().endswith(b"}"):
                    break
        head, _, body = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), buf
        seen = json.loads(body)
        assert seen["line"] == "GET /ws?channels=news HTTP/1.1"
        h = seen["headers"]
        assert h["upgrade"] == "websocket"
        assert h["connection"].lower() == "upgrade"
        assert h["origin"] == ALLOWED
        assert h["host"] == f"127.0.0.1:{ng.port}"
        assert h["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert h["x-real-ip"] == "127.0.0.1"
        assert h["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    finally:
        echo.close()
