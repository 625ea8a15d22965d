"""The core gateway against a real redis-server (SPEC §1, §2, §3, §4, §5).

Every test starts its own Redis and node(s). Before publishing live-only
messages a test waits until Redis reports the node's subscription (PUBSUB
NUMSUB), the readiness signal a publisher could check too. "Nothing else
arrived" is proven with a FIN sentinel published afterwards: it must be the
next message."""

import asyncio
import json
import re
import signal
import time

import pytest

from pgtest import (API_KEY, WSClient, async_wait_until, metric_value,
                    mint_hs256, proc_cpu_seconds, run, run_pushgate,
                    sse_connect, wait_until, ws_connect, ws_handshake_status, free_port)

SECRET = "s"
BASE_ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
             "--public-topics", "news,public.*"]

EVENT = "order.shipped"
DATA = {"order": 7, "items": [], "price": 1.5, "note": "é ✓", "nested": {"a": None}}


def token(sub=None, **claims):
    if sub is not None:
        claims["sub"] = sub
    return mint_hs256(SECRET, claims)


def numsub(rds, channel):
    return dict(rds.pubsub_numsub(channel)).get(channel, 0)


async def wait_subscribed(rds, channel, nodes=1, timeout=5.0):
    """Until `nodes` gateway nodes are subscribed to the Redis channel."""
    await async_wait_until(lambda: numsub(rds, channel) >= nodes, timeout,
                           msg=f"{nodes} subscriber(s) on {channel}")


async def open_client(transport, gw, query="", headers=None):
    if transport == "ws":
        return await ws_connect(gw, query, headers)
    c = await sse_connect(gw, query, headers)
    if c.status != 200:
        body = await c.read_all(2)
        await c.close()
        raise AssertionError(f"SSE refused: {c.status} {body!r}")
    return c


async def next_delivery(client, timeout=5.0):
    """(SSE event fields or None for WS, the delivered JSON object)."""
    if isinstance(client, WSClient):
        return None, await client.recv_json(timeout)
    return await client.next_json(timeout)


async def publish_fin(rds, prefix="pushgate:"):
    rds.publish(prefix + "broadcast", json.dumps({"event": "FIN", "data": None}))


async def expect_fin_next(client):
    """The next message must be the FIN sentinel (nothing came before it)."""
    ev, msg = await next_delivery(client)
    assert msg.get("event") == "FIN", f"expected only FIN, got {msg}"


async def close_all(*clients):
    for c in clients:
        if c is not None:
            await c.close()


# --------------------------------------------------------------------------
# The delivery matrix: {WS, SSE} x {broadcast, user, topic} x {raw, FCALL, API}


KINDS = {
    # kind: (channel, query string for the client)
    "broadcast": ("broadcast", ""),
    "user": ("user:42", "token=" + token("42")),
    "topic": ("news", "channels=news"),
}


def do_publish(method, gw, rds, channel):
    """Publish EVENT/DATA to channel; returns the id or None (live-only)."""
    if method == "raw":
        rds.publish("pushgate:" + channel, json.dumps({"event": EVENT, "data": DATA}))
        return None
    if method == "fcall":
        rid = rds.execute_command("FCALL", "pushgate_publish", 0, channel,
                                  json.dumps({"event": EVENT, "data": DATA}))
        assert re.fullmatch(r"[0-9]+", rid), rid
        return rid
    r = gw.publish({"channel": channel, "event": EVENT, "data": DATA})
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r
    body = r.json()
    assert set(body) == {"id"}, body
    assert isinstance(body["id"], str) and re.fullmatch(r"[0-9]+", body["id"]), body
    return body["id"]


@pytest.mark.parametrize("method", ["raw", "fcall", "api"])
@pytest.mark.parametrize("kind", ["broadcast", "user", "topic"])
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_delivery_matrix_gives_the_spec_envelope(gateway_factory, rds, transport, kind, method):
    gw = gateway_factory(BASE_ARGS)
    channel, query = KINDS[kind]

    async def scenario():
        c = await open_client(transport, gw, query)
        try:
            await wait_subscribed(rds, "pushgate:" + channel)
            rid = do_publish(method, gw, rds, channel)
            ev, msg = await next_delivery(c)
            want = {"channel": channel, "event": EVENT, "data": DATA}
            if rid is not None:
                want["id"] = rid
            assert msg == want
            if transport == "sse":
                assert ev.get("event") == EVENT
                if rid is None:
                    assert "id" not in ev, f"live-only message got an SSE id: {ev}"
                else:
                    assert ev.get("id") == rid
        finally:
            await c.close()

    run(scenario())


def _gateway_socket_nodelay(gw_pid, gw_port, peer_port):
    """TCP_NODELAY of the gateway's end of the connection from peer_port,
    read from a duplicate of the gateway's own descriptor (pidfd_getfd)."""
    import ctypes
    import os
    import socket
    want = f"{gw_port:04X}", f"{peer_port:04X}"
    inode = None
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(":" + want[0]) and f[2].endswith(":" + want[1]):
            inode = f[9]
    assert inode, f"no gateway socket for peer port {peer_port}"
    fd = None
    for name in os.listdir(f"/proc/{gw_pid}/fd"):
        try:
            if os.readlink(f"/proc/{gw_pid}/fd/{name}") == f"socket:[{inode}]":
                fd = int(name)
        except OSError:
            pass
    assert fd is not None, f"gateway holds no fd for socket {inode}"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(gw_pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)   # pidfd_getfd (x86_64)
        assert dup >= 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        s.detach()
        os.close(dup)


def test_every_accepted_connection_has_nagle_off(gateway):
    """Without TCP_NODELAY a small write behind one not yet acknowledged
    waits for the peer's delayed ACK: each POST /api/publish on a kept-alive
    connection took 44 ms (its headers and body are two writes), and a
    frame written just after another could wait as long."""
    import http.client

    async def scenario():
        ws = await ws_connect(gateway)
        sse = await sse_connect(gateway)
        api = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        try:
            api.request("GET", "/healthz")   # answered: the node has adopted it
            api.getresponse().read()
            peers = {
                "ws": ws.ws.transport.get_extra_info("sockname")[1],
                "sse": sse.writer.get_extra_info("sockname")[1],
                "http": api.sock.getsockname()[1],
            }
            for what, port in peers.items():
                assert _gateway_socket_nodelay(gateway.pid, gateway.port, port) == 1, what
        finally:
            api.close()
            await sse.close()
            await ws.close()

    run(scenario())


def test_sse_response_headers(gateway):
    async def scenario():
        c = await sse_connect(gateway)
        try:
            assert c.status == 200
            assert c.headers.get("content-type", "").split(";")[0].strip() == "text/event-stream"
            assert "no-cache" in c.headers.get("cache-control", "")
            assert c.headers.get("x-accel-buffering") == "no"
        finally:
            await c.close()

    run(scenario())


def test_sse_stream_outlives_the_request_timeout(gateway, rds):
    """lws gives every HTTP request a 10 s content timeout (the node's
    timeout_secs); a stream must not inherit it. Streams used to end,
    cleanly, 10 s after they opened, whatever they were carrying."""
    async def scenario():
        ws = await ws_connect(gateway)   # the control: WebSocket has no such limit
        c = await sse_connect(gateway)
        try:
            opened = time.monotonic()
            i = 0
            while time.monotonic() - opened < 12.5:
                i += 1
                rds.publish("pushgate:broadcast", json.dumps({"data": {"i": i}}))
                assert (await c.next_json())[1]["data"] == {"i": i}
                assert (await ws.recv_json())["data"] == {"i": i}
                await asyncio.sleep(0.5)   # the point of the test is time passing
            assert i >= 20
        finally:
            await c.close()
            await ws.close()

    run(scenario())


def test_payload_that_is_not_an_envelope_is_delivered_as_data(gateway, rds):
    async def scenario():
        c = await ws_connect(gateway)
        try:
            rds.publish("pushgate:broadcast", "[1, 2.50, []]")
            assert (await c.recv_json()) == {"channel": "broadcast", "data": [1, 2.5, []]}
            rds.publish("pushgate:broadcast", "just text")
            assert (await c.recv_json()) == {"channel": "broadcast", "data": "just text"}
            rds.publish("pushgate:broadcast", '{"a":1}')
            assert (await c.recv_json()) == {"channel": "broadcast", "data": {"a": 1}}
        finally:
            await c.close()

    run(scenario())


# --------------------------------------------------------------------------
# Users across nodes


def test_user_message_reaches_all_their_connections_on_all_nodes_only(gateway_factory, rds):
    gw1 = gateway_factory(BASE_ARGS, name="node1")
    gw2 = gateway_factory(BASE_ARGS, name="node2")

    async def scenario():
        u42_ws = u42_sse = u43 = anon = None
        try:
            u42_ws = await open_client("ws", gw1, "token=" + token("42"))
            u42_sse = await open_client("sse", gw2, "token=" + token("42"))
            u43 = await open_client("ws", gw1, "token=" + token("43"))
            anon = await open_client("sse", gw2)
            await wait_subscribed(rds, "pushgate:user:42", nodes=2)
            await wait_subscribed(rds, "pushgate:user:43", nodes=1)

            r = gw1.publish({"channel": "user:42", "data": {"n": 1}})
            assert r.status == 200, r
            rid = r.json()["id"]
            await publish_fin(rds)
            for c in (u42_ws, u42_sse):
                _, msg = await next_delivery(c)
                assert msg == {"channel": "user:42", "id": rid, "data": {"n": 1}}
                await expect_fin_next(c)
            await expect_fin_next(u43)
            await expect_fin_next(anon)

            # Broadcast reaches everyone, anonymous included.
            r = gw2.publish({"channel": "broadcast", "data": "all"})
            assert r.status == 200, r
            for c in (u42_ws, u42_sse, u43, anon):
                _, msg = await next_delivery(c)
                assert msg == {"channel": "broadcast", "id": r.json()["id"], "data": "all"}
        finally:
            await close_all(u42_ws, u42_sse, u43, anon)

    run(scenario())


# --------------------------------------------------------------------------
# Topic permissions


def test_forbidden_topic_is_refused_403_before_upgrade_or_stream(gateway_factory):
    gw = gateway_factory(BASE_ARGS)

    async def scenario():
        assert await ws_handshake_status(gw, "channels=secret") == 403
        assert await ws_handshake_status(gw, "channels=news,secret") == 403
        assert await ws_handshake_status(gw, "channels=secret&token=" + token("42")) == 403
        for q in ("channels=secret", "channels=news,secret"):
            c = await sse_connect(gw, q)
            try:
                assert c.status == 403
                assert "text/event-stream" not in c.headers.get("content-type", "")
            finally:
                await c.close()
        # Still serving the allowed ones.
        assert await ws_handshake_status(gw, "channels=news,public.eu") == 101

    run(scenario())


def test_token_channels_claim_allows_matching_topic(gateway_factory, rds):
    gw = gateway_factory(BASE_ARGS)
    tok = token("42", channels=["secret*", "orders.eu"])

    async def scenario():
        assert await ws_handshake_status(gw, f"channels=secret&token={tok}") == 101
        ws = await open_client("ws", gw, f"channels=secret.x,orders.eu&token={tok}")
        sse = await open_client("sse", gw, f"channels=secret&token={tok}")
        try:
            await wait_subscribed(rds, "pushgate:secret")
            await wait_subscribed(rds, "pushgate:secret.x")
            rds.publish("pushgate:secret", json.dumps({"data": 1}))
            rds.publish("pushgate:secret.x", json.dumps({"data": 2}))
            _, msg = await next_delivery(sse)
            assert msg == {"channel": "secret", "data": 1}
            _, msg = await next_delivery(ws)
            assert msg == {"channel": "secret.x", "data": 2}
        finally:
            await close_all(ws, sse)

    run(scenario())


def test_token_is_accepted_from_authorization_header(gateway_factory, rds):
    gw = gateway_factory(BASE_ARGS)
    hdr = {"Authorization": "Bearer " + token("7", channels=["vip"])}

    async def scenario():
        ws = await open_client("ws", gw, "channels=vip", hdr)
        sse = await open_client("sse", gw, "channels=vip", hdr)
        try:
            await wait_subscribed(rds, "pushgate:user:7")
            r = gw.publish({"channel": "user:7", "data": 1})
            assert r.status == 200, r
            for c in (ws, sse):
                _, msg = await next_delivery(c)
                assert msg["channel"] == "user:7" and msg["data"] == 1
        finally:
            await close_all(ws, sse)

    run(scenario())


# --------------------------------------------------------------------------
# WebSocket commands


def test_ws_subscribe_unsubscribe_ping_and_errors(gateway_factory, rds):
    gw = gateway_factory(BASE_ARGS)

    async def scenario():
        c = await ws_connect(gw)
        try:
            await c.send_json({"type": "subscribe", "channel": "news"})
            assert await c.recv_json() == {"type": "subscribed", "channel": "news"}
            await wait_subscribed(rds, "pushgate:news")
            rds.publish("pushgate:news", json.dumps({"data": "n1"}))
            assert await c.recv_json() == {"channel": "news", "data": "n1"}

            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}

            await c.send_json({"type": "unsubscribe", "channel": "news"})
            assert await c.recv_json() == {"type": "unsubscribed", "channel": "news"}
            rds.publish("pushgate:news", json.dumps({"data": "n2"}))
            await publish_fin(rds)
            await expect_fin_next(c)

            for bad in ("not json", "[1,2]", json.dumps({"type": "dance"}),
                        json.dumps({"channel": "news"}),
                        json.dumps({"type": "subscribe", "channel": "bad name"}),
                        json.dumps({"type": "subscribe", "channel": "secret"})):
                await c.send(bad)
                msg = await c.recv_json()
                assert msg.get("type") == "error", (bad, msg)
                assert isinstance(msg.get("code"), str) and msg["code"], (bad, msg)
                assert isinstance(msg.get("message"), str) and msg["message"], (bad, msg)
                # ... and the connection stays usable.
                await c.send_json({"type": "ping"})
                assert await c.recv_json() == {"type": "pong"}, bad

            # The refused subscribe did not subscribe.
            rds.publish("pushgate:secret", json.dumps({"data": "s"}))
            await publish_fin(rds)
            await expect_fin_next(c)
        finally:
            await c.close()

    run(scenario())


# --------------------------------------------------------------------------
# On-demand Redis subscriptions


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_node_subscribes_user_and_topic_channels_only_while_connected(
        gateway_factory, rds, transport):
    gw = gateway_factory(BASE_ARGS + ["--prefix", "od.t1:"])

    def channels():
        return set(rds.pubsub_channels("od.t1:*"))

    async def scenario():
        assert channels() == {"od.t1:broadcast"}
        c = await open_client(transport, gw, "channels=news&token=" + token("42"))
        try:
            await async_wait_until(
                lambda: channels() == {"od.t1:broadcast", "od.t1:user:42", "od.t1:news"},
                msg="user and topic channels subscribed")
        finally:
            await c.close()
        await async_wait_until(lambda: channels() == {"od.t1:broadcast"},
                               msg="user and topic channels unsubscribed after disconnect")

    run(scenario())


def test_last_of_two_connections_leaving_unsubscribes(gateway_factory, rds):
    gw = gateway_factory(BASE_ARGS)

    async def scenario():
        a = await open_client("ws", gw, "token=" + token("42"))
        b = await open_client("sse", gw, "token=" + token("42"))
        await wait_subscribed(rds, "pushgate:user:42")
        await a.close()
        # b still holds user:42: the channel must stay subscribed and deliver.
        r = gw.publish({"channel": "user:42", "data": "still"})
        _, msg = await next_delivery(b)
        assert msg == {"channel": "user:42", "id": r.json()["id"], "data": "still"}
        assert numsub(rds, "pushgate:user:42") == 1
        await b.close()
        await async_wait_until(lambda: numsub(rds, "pushgate:user:42") == 0,
                               msg="unsubscribe after the last connection")

    run(scenario())


# --------------------------------------------------------------------------
# POST /api/publish


def test_api_publish_to_several_channels_answers_one_id_each(gateway_factory, rds):
    gw = gateway_factory(BASE_ARGS)

    async def scenario():
        news = await open_client("ws", gw, "channels=news")
        u42 = await open_client("sse", gw, "token=" + token("42"))
        try:
            await wait_subscribed(rds, "pushgate:news")
            await wait_subscribed(rds, "pushgate:user:42")
            r = gw.publish({"channels": ["news", "user:42"], "event": "multi",
                            "data": {"x": [1]}})
            assert r.status == 200, r
            body = r.json()
            assert set(body) == {"id", "ids"}, body
            ids = body["ids"]
            assert len(ids) == 2 and all(re.fullmatch(r"[0-9]+", i) for i in ids), body
            assert int(ids[0]) < int(ids[1]) and body["id"] == ids[1]
            _, msg = await next_delivery(news)
            assert msg == {"channel": "news", "event": "multi", "id": ids[0], "data": {"x": [1]}}
            ev, msg = await next_delivery(u42)
            assert msg == {"channel": "user:42", "event": "multi", "id": ids[1],
                           "data": {"x": [1]}}
            assert ev["id"] == ids[1] and ev["event"] == "multi"
            # Published with history: the function's stream holds each.
            hist = rds.xrange("pushgate:history:news")
            assert [e[0] for e in hist] == [ids[0] + "-0"]
        finally:
            await close_all(news, u42)

    run(scenario())


def test_api_publish_id_is_the_id_delivered_and_ids_rise(gateway, rds):
    async def scenario():
        c = await ws_connect(gateway)
        try:
            got = []
            for i in range(5):
                r = gateway.publish({"channel": "broadcast", "data": i})
                assert r.status == 200, r
                msg = await c.recv_json()
                assert msg == {"channel": "broadcast", "id": r.json()["id"], "data": i}
                got.append(int(msg["id"]))
            assert got == sorted(set(got))
        finally:
            await c.close()

    run(scenario())


# --------------------------------------------------------------------------
# Other endpoints


SPEC_METRICS = [
    "pushgate_connections", "pushgate_messages_received_total",
    "pushgate_deliveries_total", "pushgate_slow_consumer_disconnects_total",
    "pushgate_publish_requests_total", "pushgate_redis_connected",
    "pushgate_redis_reconnects_total", "pushgate_subscribed_channels",
]


def test_health_ready_metrics_and_demo_page(gateway):
    assert gateway.get("/healthz").status == 200
    assert gateway.get("/readyz").status == 200

    async def scenario():
        ws = await ws_connect(gateway)
        sse = await open_client("sse", gateway)
        try:
            r = gateway.publish({"channel": "broadcast", "data": 1})
            assert r.status == 200
            await next_delivery(ws)
            await next_delivery(sse)
            m = gateway.get("/metrics")
            assert m.status == 200
            assert m.headers.get("content-type", "").startswith("text/plain"), m.headers
            text = m.body.decode()
            for name in SPEC_METRICS:
                assert re.search(rf"^{name}(\{{|\s)", text, re.M), f"{name} missing:\n{text}"
            conns = {}
            for line in text.splitlines():
                mm = re.match(r'^pushgate_connections\{.*transport="([^"]+)".*\}\s+(\S+)', line)
                if mm:
                    conns[mm.group(1)] = float(mm.group(2))
            assert len(conns) == 2 and sorted(conns.values()) == [1.0, 1.0], conns
            assert metric_value(text, "pushgate_redis_connected") == 1
            assert metric_value(text, "pushgate_subscribed_channels") >= 1
        finally:
            await close_all(ws, sse)

    run(scenario())

    page = gateway.get("/")
    assert page.status == 200
    assert page.headers.get("content-type", "").startswith("text/html")
    assert b"<html" in page.body.lower() or b"<!doctype html" in page.body.lower()


def test_sigterm_closes_ws_1001_ends_sse_after_retry_and_exits_zero(gateway_factory):
    """What a connected user sees on SIGTERM (SPEC §6): WebSocket close 1001,
    SSE a `retry:` hint then the end of the stream; the node exits 0."""
    gw = gateway_factory(BASE_ARGS + ["--drain-timeout", "2"])

    async def scenario():
        ws = await ws_connect(gw)
        sse = await open_client("sse", gw)
        try:
            # both adopted by the node (WS answers a ping; SSE is counted)
            await ws.send_json({"type": "ping"})
            assert await ws.recv_json() == {"type": "pong"}
            await async_wait_until(
                lambda: metric_value(gw.metrics(), "pushgate_connections",
                                     {"transport": "sse"}) == 1,
                msg="SSE connection counted")
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(ws.ws.wait_closed(), 8)
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
            events = []
            while True:
                ev = await sse.next_event(8)
                if ev is None:
                    break
                events.append(ev)
            assert any("retry" in ev for ev in events), f"no retry: hint before the end: {events}"
            await async_wait_until(lambda: gw.proc.poll() is not None, 8,
                                   msg="node exit after SIGTERM")
            assert gw.proc.returncode == 0
            assert time.monotonic() - t0 < 8
        finally:
            await close_all(ws, sse)

    run(scenario())


def test_sse_clients_closing_leave_the_node_idle(gateway_factory):
    """200 SSE clients come and go; afterwards the idle node must not spin
    (lws HTTP/1.1 SSE connections can leave a busy loop behind)."""
    gw = gateway_factory(BASE_ARGS)

    def sse_conns():
        text = gw.metrics()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("pushgate_connections{") and '"sse"' in line:
                total += float(line.split()[-1])
        return total

    async def scenario():
        clients = await asyncio.gather(*(sse_connect(gw) for _ in range(200)))
        try:
            assert [c.status for c in clients] == [200] * 200
            await async_wait_until(lambda: sse_conns() == 200, timeout=10,
                                   msg="200 SSE connections counted")
            r = gw.publish({"channel": "broadcast", "data": "x"})
            assert r.status == 200
            evs = await asyncio.gather(*(c.next_json() for c in clients))
            assert all(m["data"] == "x" for _, m in evs)
        finally:
            await asyncio.gather(*(c.close() for c in clients))
        await async_wait_until(lambda: sse_conns() == 0, timeout=10,
                               msg="all SSE connections gone")

    run(scenario())
    before = proc_cpu_seconds(gw.pid)
    time.sleep(2.0)  # measuring idle CPU: the one place to wait on purpose
    used = proc_cpu_seconds(gw.pid) - before
    assert used < 0.2, f"idle node used {used:.2f}s CPU in 2s after SSE clients left"
    assert gw.get("/healthz").status == 200


# --------------------------------------------------------------------------
# Command line


SPEC_OPTIONS = [
    "listen", "redis-url", "prefix", "node-id", "allowed-origins", "jwt-secret",
    "jwt-public-key", "allow-anonymous", "public-topics", "api-key",
    "max-connections", "max-message-bytes", "queue-limit-bytes", "ping-interval",
    "history-size", "history-ttl", "drain-timeout", "log-level", "log-format",
]


def test_help_lists_every_option_and_exits_zero():
    p = run_pushgate(["--help"])
    assert p.returncode == 0, p.stderr
    for opt in SPEC_OPTIONS:
        assert f"--{opt}" in p.stdout, f"--{opt} missing from --help"
    # Defaults are shown.
    for default in ("0.0.0.0:8080", "pushgate:", "65536", "1048576"):
        assert default in p.stdout


def test_version_prints_version_and_exits_zero():
    p = run_pushgate(["--version"])
    assert p.returncode == 0
    assert re.search(r"\d+\.\d+", p.stdout), p.stdout


@pytest.mark.parametrize("args,env,mention", [
    (["--bogus"], {}, "bogus"),
    (["--bogus", "1"], {}, "bogus"),
    (["--listen", "nope"], {}, "listen"),
    (["--listen", "127.0.0.1:99999"], {}, "listen"),
    (["--listen"], {}, "listen"),
    (["--ping-interval", "abc"], {}, "ping-interval"),
    (["--max-message-bytes", "-5"], {}, "max-message-bytes"),
    (["--log-level", "loud"], {}, "log-level"),
    (["--log-format", "xml"], {}, "log-format"),
    (["--redis-url", "http://127.0.0.1:6379"], {}, "redis-url"),
    (["--redis-url", "redis+cluster://127.0.0.1:7000,bad host:7001"], {}, "redis-url"),
    (["--jwt-public-key", "/nonexistent/key.pem"], {}, "jwt-public-key"),
    ([], {"PUSHGATE_HISTORY_SIZE": "many"}, "history"),
])
def test_bad_option_exits_2_with_one_line(tmp_path, args, env, mention):
    port = free_port()
    p = run_pushgate(["--listen", f"127.0.0.1:{port}"] + args, env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"want one line on stderr, got {p.stderr!r}"
    # One line also means no "listening on" log line came before the error.
    assert mention.lower() in lines[0].lower(), lines[0]


def test_environment_sets_options_and_flag_beats_it(gateway_factory, rds):
    gw = gateway_factory(["--api-key", "flagkey"], env={"PUSHGATE_API_KEY": "envkey",
                                                        "PUSHGATE_PREFIX": "envp:"})
    assert numsub(rds, "envp:broadcast") == 1, "PUSHGATE_PREFIX ignored"
    assert gw.publish({"channel": "a", "data": 1}, api_key="flagkey").status == 200
    assert gw.publish({"channel": "a", "data": 1}, api_key="envkey").status == 401


# --------------------------------------------------------------------------
# The Redis function the node loads (SPEC §3)


def test_node_loads_function_library_rendered_with_its_settings(gateway_factory, rds):
    gateway_factory(["--api-key", API_KEY, "--prefix", "app1:", "--history-size", "2",
                     "--history-ttl", "50", "--max-message-bytes", "100"])
    names = [lib[1] for lib in rds.execute_command("FUNCTION", "LIST")]
    assert names == ["app1_lib"]
    ids = [rds.execute_command("FCALL", "app1_publish", 0, "news", str(i)) for i in range(3)]
    assert [e[0] for e in rds.xrange("app1:history:news")] == [i + "-0" for i in ids[1:]]
    assert 0 < rds.ttl("app1:history:news") <= 50
    assert rds.get("app1:seq") == ids[-1]
    with pytest.raises(Exception, match="too large"):
        rds.execute_command("FCALL", "app1_publish", 0, "news", "x" * 101)


def test_function_library_is_loaded_again_after_redis_restart(gateway_factory,
                                                              redis_server, rds):
    """A Redis restart without persistence loses the functions; the node
    reloads them when it reconnects, so FCALL keeps working."""
    gw = gateway_factory(BASE_ARGS)
    redis_server.restart_hard()
    rds2 = redis_server.client()
    wait_until(lambda: "pushgate_lib" in [lib[1] for lib in
                                          rds2.execute_command("FUNCTION", "LIST")],
               timeout=15, msg="function library reloaded after Redis restart")
    wait_until(lambda: gw.readyz() == 200, timeout=15, msg="node ready again")
    rid = rds2.execute_command("FCALL", "pushgate_publish", 0, "news", "1")
    assert rid.isdigit()


def test_two_deployments_with_different_prefixes_share_one_redis(gateway_factory, rds):
    a = gateway_factory(BASE_ARGS + ["--prefix", "appA:"], name="appA")
    b = gateway_factory(BASE_ARGS + ["--prefix", "app.b:"], name="appB")
    names = sorted(lib[1] for lib in rds.execute_command("FUNCTION", "LIST"))
    assert names == ["appA_lib", "app_b_lib"]

    async def scenario():
        ca = await ws_connect(a)
        cb = await open_client("sse", b)
        try:
            ra = a.publish({"channel": "broadcast", "data": "for A"})
            rb = b.publish({"channel": "broadcast", "data": "for B"})
            assert ra.status == 200 and rb.status == 200
            rds.execute_command("FCALL", "app_b_publish", 0, "broadcast", '"B again"')
            rds.publish("appA:broadcast", json.dumps({"event": "FIN", "data": None}))
            rds.publish("app.b:broadcast", json.dumps({"event": "FIN", "data": None}))
            _, msg = await next_delivery(ca)
            assert msg == {"channel": "broadcast", "id": ra.json()["id"], "data": "for A"}
            await expect_fin_next(ca)
            _, msg = await next_delivery(cb)
            assert msg == {"channel": "broadcast", "id": rb.json()["id"], "data": "for B"}
            _, msg = await next_delivery(cb)
            assert msg["data"] == "B again"
            await expect_fin_next(cb)
        finally:
            await close_all(ca, cb)

    run(scenario())
